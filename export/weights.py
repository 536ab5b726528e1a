"""One external-data file for the weights of every graph of an export, stored compactly.

The condition encoders (one per sketch frame count) share the encoder's weights, and every
``decoder_step`` graph shares the decoder's. Saved inline, each graph would carry its own copy
(the demo model: ~16 MB per decoder step). :class:`SharedWeights` stores each distinct
initializer once in ``weights.bin`` and points the graphs' initializers at it with ONNX
external data (``location``/``offset``/``length``), which ONNX Runtime, Polygraphy, the ONNX
checker (given the file path) and TensorRT's parser resolve next to the ``.onnx`` file.

How a float32 initializer of at least :data:`MIN_EXTERNAL_BYTES` is stored (the storage pass,
:meth:`SharedWeights.externalize`):

- the exact transpose of a 2-D tensor already stored (the decoder steps' ``Gemm`` reads ``W``,
  the prefill's ``MatMul`` reads ``Wᵀ``; the VQ codebook and its transpose): a ``Transpose``
  node of that tensor, no bytes;
- else, when every value is exactly a float16 value (the checkpoints are float16): a float16
  initializer (half the bytes) and a ``Cast(to=FLOAT)`` node;
- else (sums the exporter folded, e.g. position embeddings): float32 as it is.

The ``Cast``/``Transpose`` nodes produce the initializer's original name and read only
initializers: constant subgraphs that ONNX Runtime and TensorRT fold once when they load the
graph, so every graph computes with bit-identical float32 values (tested against
:func:`materialize_weights`, which folds them back in NumPy: the plain form, for tools that look
for weight initializers, e.g. ``nuwa quantize``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS_FILE = "weights.bin"
MIN_EXTERNAL_BYTES = 1024  # smaller tensors stay inline
ALIGNMENT = 64  # byte alignment of each tensor in the file
STORED_SUFFIX = "/stored"  # initializer name of a stored form, before its Cast/Transpose
NODE_PREFIX = "weights/"  # names of the Cast/Transpose nodes the storage pass adds
FOLDED_OPS = ("Cast", "Transpose")
# nodes whose initializer inputs are stored as they are (see SharedWeights.externalize)
PLAIN_OPS = ("QuantizeLinear", "DequantizeLinear", "MatMulNBits")


@dataclass(frozen=True)
class StoredTensor:
    """A blob of ``weights.bin`` as the graphs read it: where, which dtype and shape, and
    whether it is float16 standing for float32 values."""

    offset: int
    length: int
    data_type: int  # onnx.TensorProto data type of the stored bytes
    dims: tuple[int, ...]
    cast_to_float: bool  # float16 bytes of float32 values: read through Cast(to=FLOAT)


@dataclass(frozen=True)
class Placement:
    """How one initializer's value is read: ``stored``, cast, then transposed when
    ``transpose`` (a 2-D value stored as its transpose)."""

    stored: StoredTensor
    transpose: bool = False


def content_key(value: np.ndarray) -> str:
    """SHA-256 of a value's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def is_float16_exact(value: np.ndarray) -> bool:
    """Whether a float32 array survives float32 -> float16 -> float32 bit for bit."""
    if value.dtype != np.float32:
        return False
    with np.errstate(over="ignore"):  # out-of-range values become inf: not exact
        back = value.astype(np.float16).astype(np.float32)
    return bool(np.array_equal(back.view(np.uint32), value.view(np.uint32)))


class SharedWeights:
    """Append-only, content-deduplicated store of initializers in one file (see module
    docstring). ``compact=False`` stores every initializer as it is (plain float32)."""

    def __init__(self, path: Path, compact: bool = True) -> None:
        self.path = path
        self.compact = compact
        self._offsets: dict[str, tuple[int, int]] = {}  # sha256 of bytes -> (offset, length)
        self._placements: dict[str, Placement] = {}  # content_key of a value -> placement
        self._size = 0
        path.write_bytes(b"")

    @property
    def tensors(self) -> int:
        return len(self._offsets)

    @property
    def nbytes(self) -> int:
        return self._size

    def _store(self, data: bytes) -> tuple[int, int]:
        key = hashlib.sha256(data).hexdigest()
        if key not in self._offsets:
            pad = (-self._size) % ALIGNMENT
            with open(self.path, "ab") as f:
                f.write(b"\0" * pad + data)
            self._offsets[key] = (self._size + pad, len(data))
            self._size += pad + len(data)
        return self._offsets[key]

    def place(self, value: np.ndarray, plain: bool = False) -> Placement:
        """Where ``value`` is read from, storing it first if no stored form gives it.
        ``plain``: stored as it is (its own dtype, no Cast/Transpose), whatever ``compact``."""
        if plain:
            offset, length = self._store(np.ascontiguousarray(value).tobytes())
            data_type = helper.np_dtype_to_tensor_dtype(value.dtype)
            return Placement(StoredTensor(offset, length, data_type, tuple(value.shape), False))
        key = content_key(value)
        if key in self._placements:
            return self._placements[key]
        if self.compact and value.dtype == np.float32 and value.ndim == 2:
            source = self._placements.get(content_key(value.T))
            if source is not None and not source.transpose:
                self._placements[key] = Placement(source.stored, transpose=True)
                return self._placements[key]
        as_half = self.compact and is_float16_exact(value)
        stored_value = value.astype(np.float16) if as_half else value
        offset, length = self._store(np.ascontiguousarray(stored_value).tobytes())
        data_type = helper.np_dtype_to_tensor_dtype(stored_value.dtype)
        stored = StoredTensor(offset, length, data_type, tuple(value.shape), as_half)
        self._placements[key] = Placement(stored)
        return self._placements[key]

    def _external(self, name: str, stored: StoredTensor) -> TensorProto:
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = stored.data_type
        tensor.dims.extend(stored.dims)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", self.path.name),
            ("offset", str(stored.offset)),
            ("length", str(stored.length)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    def externalize(self, model: onnx.ModelProto, base_dir: Path | None = None) -> int:
        """Move ``model``'s large initializers into the file (in place), each as its
        :class:`Placement`: a plain external initializer, or a stored form behind ``Cast`` /
        ``Transpose`` nodes (prepended to the graph) that produce the original name. What a
        quantization node reads (:data:`PLAIN_OPS`: int8 weights, scales, zero points, the
        packed weights of ``MatMulNBits``) is stored as it is: ONNX Runtime's int8 fusions and
        pre-packing want those as initializers. ``base_dir``: initializers stored in other
        files there (the TorchScript exporter writes a graph over 2 GB so, one file per tensor)
        are read one at a time and moved in too, so the whole model is never in memory at once.
        Returns how many initializers moved."""
        graph = model.graph
        plain = quantization_inputs(graph)
        taken = _names(graph)
        initializers: list[TensorProto] = []
        nodes: list[onnx.NodeProto] = []
        moved = 0
        for tensor in graph.initializer:
            if tensor.data_location == TensorProto.EXTERNAL:
                if base_dir is None or external_location(tensor) == self.path.name:
                    initializers.append(tensor)
                    continue
                value = numpy_helper.to_array(tensor, base_dir=str(base_dir))
            else:
                value = numpy_helper.to_array(tensor)
            if value.nbytes < MIN_EXTERNAL_BYTES:  # inline (read from its file if it had one)
                initializers.append(
                    tensor
                    if tensor.data_location != TensorProto.EXTERNAL
                    else numpy_helper.from_array(value, tensor.name)
                )
                continue
            moved += 1
            placement = self.place(value, plain=tensor.name in plain)
            stored = placement.stored
            if not (stored.cast_to_float or placement.transpose):
                initializers.append(self._external(tensor.name, stored))
                continue
            source = _fresh(f"{tensor.name}{STORED_SUFFIX}", taken)
            initializers.append(self._external(source, stored))
            steps: list[tuple[str, dict[str, object]]] = []
            if stored.cast_to_float:
                steps.append(("Cast", {"to": TensorProto.FLOAT}))
            if placement.transpose:
                steps.append(("Transpose", {"perm": [1, 0]}))
            for i, (op, attrs) in enumerate(steps):
                last = i == len(steps) - 1
                out = tensor.name if last else _fresh(f"{tensor.name}/{op.lower()}", taken)
                nodes.append(
                    helper.make_node(
                        op, [source], [out], name=_fresh(f"{NODE_PREFIX}{op}:{out}", taken), **attrs
                    )
                )
                source = out
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        rest = list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes + rest)
        return moved


def external_location(tensor: TensorProto) -> str:
    """The file an external tensor's bytes are in (its ``location`` entry)."""
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def quantization_inputs(graph: onnx.GraphProto) -> set[str]:
    """Names read by the graph's :data:`PLAIN_OPS` nodes."""
    return {name for n in graph.node if n.op_type in PLAIN_OPS for name in n.input}


def _names(graph: onnx.GraphProto) -> set[str]:
    """Every value and node name of ``graph`` (to pick fresh ones)."""
    names = {t.name for t in graph.initializer}
    names |= {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    for node in graph.node:
        names.update(node.output)
        names.add(node.name)
    return names


def _fresh(name: str, taken: set[str]) -> str:
    out, i = name, 0
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    taken.add(out)
    return out


def _used_names(graph: onnx.GraphProto) -> set[str]:
    """Names read by ``graph``'s nodes (subgraphs included) or listed as its outputs."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                used |= _used_names(sub)
    return used


def _fold(node: onnx.NodeProto, value: np.ndarray) -> np.ndarray | None:
    """``node`` (a Cast between float types or a Transpose) applied to ``value`` in NumPy, or
    ``None`` for anything else."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Transpose":
        perm = attrs.get("perm")
        return np.ascontiguousarray(np.transpose(value, perm))
    if node.op_type == "Cast" and set(attrs) == {"to"}:
        floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
        if value.dtype.kind == "f" and attrs["to"] in floats:
            return value.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    return None


def materialize_weights(model: onnx.ModelProto) -> int:
    """Fold, in place, every ``Cast`` (between float types) and ``Transpose`` node of the main
    graph whose input is an initializer into a plain initializer of its output (repeatedly: a
    ``Transpose`` of a ``Cast``), and drop the stored forms nothing else reads: the storage
    pass undone, every weight a plain initializer of the value the graph computes with. The
    model's external data must be loaded (``onnx.load`` does by default). Returns how many
    nodes were folded."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    kept: list[onnx.NodeProto] = []
    sources: set[str] = set()
    folded = 0
    for node in graph.node:
        value = None
        if (
            node.op_type in FOLDED_OPS
            and node.domain in ("", "ai.onnx")
            and len(node.input) == 1
            and len(node.output) == 1
            and node.input[0] in inits
        ):
            value = _fold(node, numpy_helper.to_array(inits[node.input[0]]))
        if value is None:
            kept.append(node)
            continue
        inits[node.output[0]] = numpy_helper.from_array(value, node.output[0])
        sources.add(node.input[0])
        folded += 1
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(kept)
    used = _used_names(graph)
    del graph.initializer[:]
    graph.initializer.extend(t for name, t in inits.items() if name not in sources or name in used)
    return folded


def with_plain_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` itself when no weight is stored behind ``Cast``/``Transpose`` nodes, else a
    copy with :func:`materialize_weights` applied (``model`` is left as it is)."""
    if not _has_foldable_node(model.graph):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    materialize_weights(out)
    return out


def _has_foldable_node(graph: onnx.GraphProto) -> bool:
    inits = {t.name for t in graph.initializer}
    return any(
        n.op_type in FOLDED_OPS and len(n.input) == 1 and n.input[0] in inits for n in graph.node
    )
