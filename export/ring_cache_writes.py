"""How the decoder step writes its new K/V into the ring cache on ONNX Runtime's CPU (DESIGN §5).

The exported ``decoder_step`` writes each layer's new key and value with one ``ScatterElements``
(axis 2) into its ``past`` cache ``(B, heads, slots, head_dim)``, the indices being the ring
slot ``position % slots`` broadcast to ``(B, heads, 1, head_dim)``
(:meth:`nuwa.model.transformer.SelfAttention.decode`). That file is what every runtime and
TensorRT read. ONNX Runtime's CPU ``ScatterElements`` walks the indices element by element
(~10 us a write, 8 writes a step on the demo model: more than the step's embedding and norms
together); ``ScatterND`` with one ``(b, head, slot)`` index per row copies ``head_dim``
contiguous values at a time and writes the same result.

:func:`rewrite_ring_writes_to_scatter_nd` makes that change in memory when a CPU session is
created (the file on disk is never changed): one small index computation per step shared by all
layers, then every ring write becomes a ``ScatterND`` with the same data, updates and output, so
the cache is still written in place under IO binding
(:attr:`.backend.OnnxRuntimeBackend.cache_in_place`).
It only rewrites the pattern the exporter writes (checked node by node) and leaves any other
graph as it is. The tests compare the rewritten step with the exported one on random inputs
(bit-identical outputs) and ``bench/precision.py`` times the step as the runtime runs it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["rewrite_ring_writes_to_scatter_nd"]
PREFIX = "ring_write_nd"  # names of the nodes and tensors the rewrite adds


def _constant(
    name: str, producer: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> np.ndarray | None:
    """The value of an initializer or a ``Constant`` node's output, else ``None``."""
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producer.get(name)
    if node is not None and node.op_type == "Constant" and len(node.attribute) == 1:
        attr = node.attribute[0]
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
    return None


def _ring_slot(
    indices: str,
    producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> tuple[str, int] | None:
    """``(slot, heads)`` when ``indices`` is the exporter's broadcast ring slot
    ``Add(Reshape(slot, [-1, 1, 1, 1]), zeros(1, heads, 1, head_dim))``: ``slot`` is the
    ``(B, 1, 1, 1)`` tensor, one slot per row. ``None`` for anything else."""
    add = producer.get(indices)
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        return None
    for i in (0, 1):
        zeros = _constant(add.input[1 - i], producer, inits)
        if zeros is None or zeros.ndim != 4 or zeros.any():
            continue
        if zeros.shape[0] != 1 or zeros.shape[2] != 1:
            continue
        reshape = producer.get(add.input[i])
        if reshape is None or reshape.op_type != "Reshape":
            continue
        shape = _constant(reshape.input[1], producer, inits)
        if shape is None or shape.tolist() != [-1, 1, 1, 1]:
            continue
        return add.input[i], int(zeros.shape[1])
    return None


def rewrite_ring_writes_to_scatter_nd(
    model: onnx.ModelProto, past: list[str], present: list[str]
) -> int:
    """Rewrite, in place, each ring-cache write ``present = ScatterElements(past, slot, new,
    axis=2)`` of a decoder step as ``ScatterND(past, (b, head, slot), new)``; returns how many
    were rewritten (0 leaves ``model`` untouched). All writes must share one slot tensor (one
    position per row, as exported); otherwise nothing is rewritten."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    writes = dict(zip(past, present, strict=True))
    found: list[onnx.NodeProto] = []
    slots: set[tuple[str, int]] = set()
    for node in graph.node:
        if node.op_type != "ScatterElements" or node.input[0] not in writes:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("axis") != 2 or attrs.get("reduction", b"none") not in (b"none", "none"):
            return 0
        if list(node.output) != [writes[node.input[0]]]:
            return 0
        slot = _ring_slot(node.input[1], producer, inits)
        if slot is None:
            return 0
        found.append(node)
        slots.add(slot)
    if not found or len(slots) != 1:
        return 0
    (slot, heads) = slots.pop()
    index = f"{PREFIX}/indices"

    def name(s: str) -> str:
        return f"{PREFIX}/{s}"

    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0, np.int64), name("zero")),
            numpy_helper.from_array(np.array(1, np.int64), name("one")),
            numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), name("row_shape")),
            numpy_helper.from_array(np.array([heads, 1, 1], np.int64), name("head_dims")),
            numpy_helper.from_array(
                np.arange(heads, dtype=np.int64).reshape(1, heads, 1, 1), name("heads")
            ),
        ]
    )
    index_nodes = [
        helper.make_node("Cast", [slot], [name("slot")], to=TensorProto.INT64),
        helper.make_node("Shape", [name("slot")], [name("rows")], start=0, end=1),
        helper.make_node("Squeeze", [name("rows")], [name("rows_scalar")]),
        helper.make_node("Range", [name("zero"), name("rows_scalar"), name("one")], [name("r")]),
        helper.make_node("Reshape", [name("r"), name("row_shape")], [name("row")]),
        helper.make_node("Concat", [name("rows"), name("head_dims")], [name("grid")], axis=0),
        helper.make_node("Expand", [name("row")], [name("row_index")]),
        helper.make_node("Expand", [name("heads")], [name("head_index")]),
        helper.make_node("Expand", [name("slot")], [name("slot_index")]),
        helper.make_node(
            "Concat",
            [name("row_index"), name("head_index"), name("slot_index")],
            [index],
            axis=3,
        ),
    ]
    for node in index_nodes:
        node.name = f"{PREFIX}/{node.output[0].rsplit('/', 1)[-1]}"
        if node.op_type == "Expand":
            node.input.append(name("grid"))
    for node in found:
        node.op_type = "ScatterND"
        del node.attribute[:]
        node.input[1] = index
    # the index nodes go right after the slot's producer (the graph stays topologically sorted)
    nodes = list(graph.node)
    at = nodes.index(producer[slot]) + 1 if slot in producer else 0
    del graph.node[:]
    graph.node.extend(nodes[:at] + index_nodes + nodes[at:])
    return len(found)
