"""``manifest.json``: the single contract between ``nuwa export`` and the runtime (STYLE §2).

Like onnxruntime-genai's ``genai_config.json``, it says which graph files exist, the exact I/O
names (with the decoder's patterns ``past_key_values.%d.key`` ...), shapes with symbolic dims,
dtypes, the cache geometry, the model config, opset, target, precision, and a SHA-256 per file.
The runtime reads it with :func:`load_manifest`; no shape or name is defined twice.

This module imports no torch (an edge device reads it without PyTorch). The entries live in
:mod:`nuwa.spec.manifest_entries`, the file hashes in :mod:`nuwa.spec.file_hashes`, the schema
checks of an untrusted file in :mod:`nuwa.spec.manifest_checks`; graph and tensor names in
:mod:`nuwa.spec.graph_names`.

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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuwa.spec import graph_names as names
from nuwa.spec.file_hashes import CHECKPOINT_FILES, checkpoint_sha256, sha256_file
from nuwa.spec.manifest_checks import (
    check_external_data_locations,
    check_inside,
    check_manifest_schema,
)
from nuwa.spec.manifest_entries import (
    PREPARED_CPU,
    PREPARED_CPU_MATMULNBITS,
    ConditionInfo,
    DecoderInfo,
    DecoderStepInfo,
    GraphInfo,
    PreparedGraph,
    TensorInfo,
)

# The manifest module is where callers find everything an export directory's manifest holds:
# the entries (nuwa.spec.manifest_entries) and the file hashes it records (nuwa.spec.file_hashes).
__all__ = [
    "CHECKPOINT_FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "GRAPH_REVISION",
    "MANIFEST_FILE",
    "PREPARED_CPU",
    "PREPARED_CPU_MATMULNBITS",
    "TARGETS",
    "ConditionInfo",
    "DecoderInfo",
    "DecoderStepInfo",
    "GraphInfo",
    "Manifest",
    "ManifestError",
    "PreparedGraph",
    "TensorInfo",
    "checkpoint_sha256",
    "load_manifest",
    "sha256_file",
    "write_manifest",
]

MANIFEST_FILE = "manifest.json"
FORMAT = "nuwa-onnx"
FORMAT_VERSION = 1
# Revision of the graphs the exporter writes for a given checkpoint (not of this schema). Export
# caches (nuwa.runtime.export_cache) are keyed by it, so a changed exporter re-exports.
# 2: decode-step graphs without shape arithmetic, scatter ring writes, position-table 3DNA bodies.
# 3: grid-table 3DNA bodies for whole-grid calls (encoders, prefill).
# 4: the decoder steps' prepared CPU form written beside them (graphs.<name>.prepared.cpu).
GRAPH_REVISION = 4
TARGETS = ("portable", "tensorrt")


class ManifestError(RuntimeError):
    """A missing, malformed or stale export directory."""


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

    def prepared_path(self, graph: str, key: str) -> Path | None:
        """The file of ``graph``'s prepared form ``key`` (``PREPARED_CPU``, ...), ``None`` when
        the export carries none (the runtime then prepares the graph in memory)."""
        prepared = self.graph(graph).prepared.get(key)
        return None if prepared is None else self.directory / prepared.file

    def graph(self, name: str) -> GraphInfo:
        if name not in self.graphs:
            raise ManifestError(
                f"{self.directory}: no graph {name!r} in the manifest; it has {sorted(self.graphs)}"
            )
        return self.graphs[name]

    def condition_key(self, kind: str, cond_frames: int = 1) -> str:
        """Key of :attr:`conditions` for a ``"text"`` or ``"sketch"`` condition of
        ``cond_frames`` sketch frames (``min(num_frames, sketch_frames)``)."""
        if kind == names.TEXT_CONDITION:
            key = names.TEXT_CONDITION
        elif kind == "sketch":
            key = names.sketch_condition_key(cond_frames)
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


def _check_file(manifest_path: Path, file: Path, digest: str | None, what: str) -> None:
    """A :class:`ManifestError` when ``file`` (a ``what`` the manifest lists) is missing or,
    with ``digest``, does not match that SHA-256."""
    if not file.is_file():
        raise ManifestError(f"{manifest_path}: {what} {file} is missing")
    if digest is not None and sha256_file(file) != digest:
        raise ManifestError(
            f"{file} does not match its SHA-256 in {manifest_path} (modified or corrupt; re-export)"
        )


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
            for key, prepared in (graph.get("prepared") or {}).items():
                check_inside(directory, prepared["file"], f"graphs.{name}.prepared.{key}.file")
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
        files = [(name, graph.file, graph.sha256)]
        files += [(f"{name} ({key})", p.file, p.sha256) for key, p in graph.prepared.items()]
        for what, file_name, digest in files:
            file = directory / file_name
            _check_file(path, file, digest if verify_hashes else None, f"graph {what!r} file")
            try:
                check_external_data_locations(file, directory)
            except ValueError as exc:
                raise ManifestError(f"{path}: graph {what!r}: {exc}") from None
            except Exception as exc:  # onnx raises its own types for a file that is no graph
                raise ManifestError(
                    f"{path}: graph {what!r} file {file} is not an ONNX graph: {exc}"
                ) from None
    for name, digest in manifest.external_data.items():
        _check_file(path, directory / name, digest if verify_hashes else None, "weights file")
    for c in manifest.conditions.values():
        manifest.graph(c.encoder)
    for s in manifest.decoder_steps:
        manifest.graph(s.graph)
    for graph in manifest.decoder_prefills.values():
        manifest.graph(graph)
    return manifest
