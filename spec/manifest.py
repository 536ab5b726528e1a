"""``manifest.json``: the single contract between ``nuwa export`` and the runtime (STYLE §2).

Like onnxruntime-genai's ``genai_config.json``, it says which graph files exist, the exact I/O
names (with the decoder's patterns ``past_key_values.%d.key`` ...), shapes with symbolic dims,
dtypes, the cache geometry, the model config, opset, target, precision, and a SHA-256 per file.
The runtime reads it with :func:`load_manifest`; no shape or name is defined twice.

This module imports no torch (an edge device reads it without PyTorch).

Schema (``format_version`` 1)::

    {
      "format": "nuwa-onnx", "format_version": 1,
      "target": "portable" | "tensorrt", "opset": 18, "precision": "fp32",
      "model": {"name": "tiny", "checkpoint_sha256": "..."},
      "config": {... NuwaConfig.to_dict() ...},
      "decoder": {"num_layers", "num_heads", "head_dim", "cache_slots", "vocab_size", "bos_id",
                  "grid": [T, H, W], "cache_layout": ["batch", "heads", "slots", "head_dim"],
                  "inputs": {"input_ids", "positions", "past_key", "past_value",
                             "cross_key", "cross_value"},
                  "outputs": {"logits", "present_key", "present_value"}},
      "conditions": {"text": {"encoder": "text_encoder", "grid": [1, 1, L],
                              "cross_extents": [...]},
                     "sketch_t1": {"encoder": "sketch_condition_encoder.t1", ...}},
      "decoder_steps": [{"graph": "decoder_step.text", "condition": "text", "frames": 1,
                         "target_grid": [1, H, W]}, ...],   # one entry per (condition, frames)
      "decoder_prefills": {"text": "decoder_prefill.text"},
      "graphs": {"vq_encoder": {"file": "vq_encoder.onnx", "kind": "vq_encoder",
                                "sha256": "...", "attention_nodes": 0,
                                "inputs": [{"name": "frames", "dtype": "float32",
                                            "shape": ["batch", 3, 16, 16]}],
                                "outputs": [...], "meta": {...},
                                "check": {"max_abs_error": 0.0, "code_mismatch": 0.0,
                                          "batch": 2, "tolerance": 1e-4}}, ...},
      "external_data": {"weights.bin": "<sha256>"}   # initializers shared by all graphs
    }
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuwa.spec.manifest_checks import (
    check_external_data_locations,
    check_inside,
    check_manifest_schema,
)

MANIFEST_FILE = "manifest.json"
FORMAT = "nuwa-onnx"
FORMAT_VERSION = 1
# Revision of the graphs the exporter writes for a given checkpoint (not of this schema). Export
# caches (nuwa.runtime.export_cache) are keyed by it, so a changed exporter re-exports.
# 2: decode-step graphs without shape arithmetic, scatter ring writes, position-table 3DNA bodies.
# 3: grid-table 3DNA bodies for whole-grid calls (encoders, prefill).
GRAPH_REVISION = 3
TARGETS = ("portable", "tensorrt")


class ManifestError(RuntimeError):
    """A missing, malformed or stale export directory."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The files whose bytes identify a checkpoint, in hashing order (nuwa.model.checkpoint's
# CONFIG_FILE and WEIGHT_FILES; that module imports torch, this one may not).
CHECKPOINT_FILES = (
    "config.json",
    "transformer.safetensors",
    "vqgan.safetensors",
    "vqgan_seg.safetensors",
)


def checkpoint_sha256(model_dir: str | Path) -> str:
    """SHA-256 over a checkpoint's config and weight files (names and bytes; absent files
    skipped): the manifest's ``model.checkpoint_sha256``, which ties an export to the
    checkpoint it was made from. Equals ``nuwa.model.checkpoint.checkpoint_hash`` (tested)."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


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


@dataclass(frozen=True)
class GraphInfo:
    name: str  # key in the manifest, the file stem
    file: str
    kind: str  # vq_encoder | vq_decoder | sketch_encoder | condition_encoder | decoder_step
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    attention_nodes: int = 0  # NearbyAttention3D nodes in the graph
    meta: dict[str, Any] = field(default_factory=dict)
    # ONNX Runtime vs PyTorch on random inputs at export: max_abs_error, code_mismatch, batch,
    # tolerance (empty when the export ran without verification)
    check: dict[str, Any] = field(default_factory=dict)

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
    input_ids: str = "input_ids"
    positions: str = "positions"
    logits: str = "logits"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    cross_key: str = "cross_key_values.%d.key"
    cross_value: str = "cross_key_values.%d.value"
    cache_layout: tuple[str, ...] = ("batch", "heads", "slots", "head_dim")

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
        return [p % i for i in range(self.num_layers) for p in (self.past_key, self.past_value)]

    def present_names(self) -> list[str]:
        return [
            p % i for i in range(self.num_layers) for p in (self.present_key, self.present_value)
        ]

    def cross_names(self) -> list[str]:
        return [p % i for i in range(self.num_layers) for p in (self.cross_key, self.cross_value)]


@dataclass(frozen=True)
class ConditionInfo:
    key: str  # "text" | "sketch_t{Ts}"
    encoder: str  # graph name producing the cross K/V
    grid: tuple[int, int, int]  # condition token grid: (1, 1, L) or (Ts, h, w)
    cross_extents: tuple[int, int, int]  # 3DNA extents of decoder -> condition attention

    @property
    def kind(self) -> str:
        return "text" if self.key == "text" else "sketch"


@dataclass(frozen=True)
class DecoderStepInfo:
    graph: str
    condition: str
    frames: int  # query-grid frames T = min(num_frames, trained frames)
    target_grid: tuple[int, int, int]


@dataclass(frozen=True)
class Manifest:
    directory: Path
    target: str
    opset: int
    precision: str
    model: dict[str, Any]
    config: dict[str, Any]
    decoder: DecoderInfo
    conditions: dict[str, ConditionInfo]
    decoder_steps: tuple[DecoderStepInfo, ...]
    graphs: dict[str, GraphInfo]
    external_data: dict[str, str] = field(default_factory=dict)  # weights file -> SHA-256
    decoder_prefills: dict[str, str] = field(default_factory=dict)  # condition -> graph name
    # `nuwa quantize`'s scheme (weight range, ...); empty for an FP32 export
    quantization: dict[str, Any] = field(default_factory=dict)

    def path(self, graph: str) -> Path:
        return self.directory / self.graph(graph).file

    def graph(self, name: str) -> GraphInfo:
        if name not in self.graphs:
            raise ManifestError(
                f"{self.directory}: no graph {name!r} in the manifest; it has {sorted(self.graphs)}"
            )
        return self.graphs[name]

    def condition_key(self, kind: str, cond_frames: int = 1) -> str:
        """Key of :attr:`conditions` for a ``"text"`` or ``"sketch"`` condition of
        ``cond_frames`` sketch frames (``min(num_frames, sketch_frames)``)."""
        if kind == "text":
            key = "text"
        elif kind == "sketch":
            key = f"sketch_t{cond_frames}"
        else:
            raise ManifestError(f"unknown condition kind {kind!r}; expected 'text' or 'sketch'")
        if key not in self.conditions:
            raise ManifestError(
                f"{self.directory}: no {kind} condition with {cond_frames} frame(s); exported: "
                f"{sorted(self.conditions)} (re-export with more frames)"
            )
        return key

    def decoder_step(self, condition: str, num_frames: int) -> GraphInfo:
        """The ``decoder_step`` graph for a condition kind and a request's frame count."""
        frames = min(num_frames, self.decoder.grid[0])
        for step in self.decoder_steps:
            if step.condition == condition and step.frames == frames:
                return self.graph(step.graph)
        have = [(s.condition, s.frames) for s in self.decoder_steps]
        raise ManifestError(
            f"{self.directory}: no decoder_step for condition {condition!r} with {frames} "
            f"frame(s); exported: {have} (re-export with --frames)"
        )

    def decoder_prefill(self, condition: str) -> GraphInfo:
        """The ``decoder_prefill`` graph of a condition kind: known prefix frames
        ``target_tokens (B, F, H, W)`` + cross K/V -> ``present.*`` ring caches after positions
        ``0 .. F*H*W-1``; decoding goes on at position ``F*H*W`` with token ``F*H*W-1``."""
        if condition not in self.decoder_prefills:
            raise ManifestError(
                f"{self.directory}: no decoder_prefill for condition {condition!r}; exported: "
                f"{sorted(self.decoder_prefills)} (feed the prefix through decoder_step)"
            )
        return self.graph(self.decoder_prefills[condition])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "opset": self.opset,
            "precision": self.precision,
            "model": self.model,
            "config": self.config,
            "decoder": self.decoder.to_dict(),
            "conditions": {
                k: {
                    "encoder": c.encoder,
                    "grid": list(c.grid),
                    "cross_extents": list(c.cross_extents),
                }
                for k, c in self.conditions.items()
            },
            "decoder_steps": [
                {
                    "graph": s.graph,
                    "condition": s.condition,
                    "frames": s.frames,
                    "target_grid": list(s.target_grid),
                }
                for s in self.decoder_steps
            ],
            "decoder_prefills": self.decoder_prefills,
            "graphs": {name: g.to_dict() for name, g in self.graphs.items()},
            "external_data": self.external_data,
            **({"quantization": self.quantization} if self.quantization else {}),
        }

    @property
    def int8_weight_max(self) -> int | None:
        """Largest |int8 weight| of a Q/DQ export (63: 7-bit, 127: full range), else None."""
        bounds = self.quantization.get("weight_range")
        return int(bounds[1]) if self.precision == "int8" and bounds else None

    @classmethod
    def from_dict(cls, directory: Path, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT or int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise ManifestError(
                f"{directory / MANIFEST_FILE}: not a {FORMAT} v{FORMAT_VERSION} manifest"
            )
        return cls(
            directory=directory,
            target=str(d["target"]),
            opset=int(d["opset"]),
            precision=str(d["precision"]),
            model=dict(d.get("model", {})),
            config=dict(d["config"]),
            decoder=DecoderInfo.from_dict(d["decoder"]),
            conditions={
                k: ConditionInfo(
                    k,
                    str(c["encoder"]),
                    tuple(c["grid"]),  # type: ignore[arg-type]
                    tuple(c["cross_extents"]),  # type: ignore[arg-type]
                )
                for k, c in d["conditions"].items()
            },
            decoder_steps=tuple(
                DecoderStepInfo(
                    str(s["graph"]),
                    str(s["condition"]),
                    int(s["frames"]),
                    tuple(s["target_grid"]),  # type: ignore[arg-type]
                )
                for s in d["decoder_steps"]
            ),
            graphs={name: GraphInfo.from_dict(name, g) for name, g in d["graphs"].items()},
            external_data={str(k): str(v) for k, v in d.get("external_data", {}).items()},
            decoder_prefills={str(k): str(v) for k, v in d.get("decoder_prefills", {}).items()},
            quantization=dict(d.get("quantization") or {}),
        )


def write_manifest(manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename): never a partial manifest."""
    path = manifest.directory / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


def load_manifest(directory: str | Path, verify_hashes: bool = True) -> Manifest:
    """Read and validate an export directory's manifest; with ``verify_hashes`` every graph
    file must exist and match its SHA-256."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path} is missing: not a nuwa export directory (run `nuwa export`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    try:  # untrusted input: every field typed, every path inside the directory
        check_manifest_schema(data)
        for name, graph in data["graphs"].items():
            check_inside(directory, graph["file"], f"graphs.{name}.file")
        for name in data.get("external_data") or {}:
            check_inside(directory, name, "external_data file")
    except ValueError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    try:
        manifest = Manifest.from_dict(directory, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path} is malformed: {exc!r}") from exc
    if manifest.target not in TARGETS:
        raise ManifestError(f"{path}: unknown target {manifest.target!r}")
    for name, graph in manifest.graphs.items():
        file = directory / graph.file
        if not file.is_file():
            raise ManifestError(f"{path}: graph {name!r} file {file} is missing")
        if verify_hashes and sha256_file(file) != graph.sha256:
            raise ManifestError(
                f"{file} does not match its SHA-256 in {path} (modified or corrupt; re-export)"
            )
        try:
            check_external_data_locations(file, directory)
        except ValueError as exc:
            raise ManifestError(f"{path}: graph {name!r}: {exc}") from None
        except Exception as exc:  # onnx raises its own types for a file that is no graph
            raise ManifestError(
                f"{path}: graph {name!r} file {file} is not an ONNX graph: {exc}"
            ) from None
    for name, digest in manifest.external_data.items():
        file = directory / name
        if not file.is_file():
            raise ManifestError(f"{path}: weights file {file} is missing")
        if verify_hashes and sha256_file(file) != digest:
            raise ManifestError(
                f"{file} does not match its SHA-256 in {path} (modified or corrupt; re-export)"
            )
    for c in manifest.conditions.values():
        manifest.graph(c.encoder)
    for s in manifest.decoder_steps:
        manifest.graph(s.graph)
    for graph in manifest.decoder_prefills.values():
        manifest.graph(graph)
    return manifest
