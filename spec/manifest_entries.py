"""The entries of ``manifest.json`` (:mod:`nuwa.spec.manifest`): one graph
(:class:`GraphInfo` with its :class:`TensorInfo` inputs and outputs), the decoder's geometry and
I/O names (:class:`DecoderInfo`, names from :mod:`nuwa.spec.graph_names`), a condition
(:class:`ConditionInfo`) and a decoder step's frame count (:class:`DecoderStepInfo`), each with
its JSON form. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nuwa.spec import graph_names as names


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy name: float32, float16, int64, int32, ...
    shape: tuple[int | str, ...]  # ints are fixed, strings are symbolic ("batch")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))


# The prepared forms of a graph an export may carry (``graphs.<name>.prepared``): the graph as
# one runtime runs it, written once by the exporter (or ``nuwa quantize``) instead of being
# rewritten in memory by every client. "cpu": as ONNX Runtime's CPU runs it (the decoder step's
# ring-cache writes as ScatterND; Q/DQ weight layers as written). "cpu-matmulnbits": the same
# with an INT8 export's Q/DQ weight layers as com.microsoft::MatMulNBits (its int8 CPU kernels).
PREPARED_CPU = "cpu"
PREPARED_CPU_MATMULNBITS = "cpu-matmulnbits"


@dataclass(frozen=True)
class PreparedGraph:
    """A prepared form of a graph: its file (same inputs, outputs and external weights) and
    SHA-256."""

    file: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparedGraph:
        return cls(str(d["file"]), str(d["sha256"]))


@dataclass(frozen=True)
class GraphInfo:
    name: str  # key in the manifest, the file stem
    file: str
    kind: str  # one of nuwa.spec.graph_names.GRAPH_KINDS
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    attention_nodes: int = 0  # NearbyAttention3D nodes in the graph
    meta: dict[str, Any] = field(default_factory=dict)
    # ONNX Runtime vs PyTorch on random inputs at export: max_abs_error, code_mismatch, batch,
    # tolerance (empty when the export ran without verification)
    check: dict[str, Any] = field(default_factory=dict)
    # prepared forms by runtime key (PREPARED_CPU, ...); empty when the export carries none
    prepared: dict[str, PreparedGraph] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "sha256": self.sha256,
            "attention_nodes": self.attention_nodes,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "meta": self.meta,
            "check": self.check,
            **(
                {"prepared": {k: v.to_dict() for k, v in self.prepared.items()}}
                if self.prepared
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> GraphInfo:
        return cls(
            name=name,
            file=str(d["file"]),
            kind=str(d["kind"]),
            sha256=str(d["sha256"]),
            inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
            attention_nodes=int(d.get("attention_nodes", 0)),
            meta=dict(d.get("meta", {})),
            check=dict(d.get("check", {})),
            prepared={k: PreparedGraph.from_dict(v) for k, v in d.get("prepared", {}).items()},
        )


@dataclass(frozen=True)
class DecoderInfo:
    """Geometry and I/O names of every ``decoder_step`` graph."""

    num_layers: int
    num_heads: int
    head_dim: int
    cache_slots: int
    vocab_size: int
    bos_id: int
    grid: tuple[int, int, int]  # trained target grid (T, H, W)
    input_ids: str = names.INPUT_IDS
    positions: str = names.POSITIONS
    logits: str = names.LOGITS
    past_key: str = names.PAST_KEY
    past_value: str = names.PAST_VALUE
    present_key: str = names.PRESENT_KEY
    present_value: str = names.PRESENT_VALUE
    cross_key: str = names.CROSS_KEY
    cross_value: str = names.CROSS_VALUE
    cache_layout: tuple[str, ...] = names.CACHE_LAYOUT

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "cache_slots": self.cache_slots,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "grid": list(self.grid),
            "cache_layout": list(self.cache_layout),
            "inputs": {
                "input_ids": self.input_ids,
                "positions": self.positions,
                "past_key": self.past_key,
                "past_value": self.past_value,
                "cross_key": self.cross_key,
                "cross_value": self.cross_value,
            },
            "outputs": {
                "logits": self.logits,
                "present_key": self.present_key,
                "present_value": self.present_value,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderInfo:
        return cls(
            num_layers=int(d["num_layers"]),
            num_heads=int(d["num_heads"]),
            head_dim=int(d["head_dim"]),
            cache_slots=int(d["cache_slots"]),
            vocab_size=int(d["vocab_size"]),
            bos_id=int(d["bos_id"]),
            grid=tuple(int(x) for x in d["grid"]),  # type: ignore[arg-type]
            cache_layout=tuple(d.get("cache_layout", cls.cache_layout)),
            **{k: str(v) for k, v in d["inputs"].items()},
            **{k: str(v) for k, v in d["outputs"].items()},
        )

    def past_names(self) -> list[str]:
        return names.kv_names(self.past_key, self.past_value, self.num_layers)

    def present_names(self) -> list[str]:
        return names.kv_names(self.present_key, self.present_value, self.num_layers)

    def cross_names(self) -> list[str]:
        return names.kv_names(self.cross_key, self.cross_value, self.num_layers)


@dataclass(frozen=True)
class ConditionInfo:
    key: str  # "text" | "sketch_t{Ts}"
    encoder: str  # graph name producing the cross K/V
    grid: tuple[int, int, int]  # condition token grid: (1, 1, L) or (Ts, h, w)
    cross_extents: tuple[int, int, int]  # 3DNA extents of decoder -> condition attention

    @property
    def kind(self) -> str:
        return names.condition_kind(self.key)


@dataclass(frozen=True)
class DecoderStepInfo:
    graph: str
    condition: str
    frames: int  # query-grid frames T = min(num_frames, trained frames)
    target_grid: tuple[int, int, int]
