"""``engines.json``: what ``nuwa build-engine`` built and for which TensorRT, GPU and plugin —
the contract between the engine builder and the ``tensorrt`` runtime backend.

A serialized TensorRT engine only runs on the TensorRT version that built it and on the GPU
model it was tuned for (we build neither version-compatible nor hardware-compatible engines:
both cost speed). The backend checks both *before* deserializing, with
:func:`check_compatible`, so the user gets "rebuild for this machine" instead of a TensorRT
deserialization error. The source ONNX manifest is stored alongside (``onnx_manifest``), so the
engine directory alone tells the runtime every I/O name, shape and the model config.

This module needs neither TensorRT nor a GPU (tests run it with fake metadata).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENGINES_FILE = "engines.json"
FORMAT = "nuwa-tensorrt-engines"
FORMAT_VERSION = 1


class EngineMetadataError(RuntimeError):
    """A missing or malformed engine directory."""


class EngineMismatchError(RuntimeError):
    """Engines built for another TensorRT version or GPU than this machine's."""


def engine_cache_key(
    tensorrt_version: str, gpu: dict[str, Any], precision: str, plugin_sha256: str
) -> str:
    """What a serialized engine depends on, as one key (16 hex digits): the TensorRT version
    that built it, the GPU model it was tuned for (name and compute capability), the precision
    of its graphs and the SHA-256 of the plugin library whose kernels it embeds. Engines and
    timing caches are only reused under an equal key."""
    parts = {
        "tensorrt": str(tensorrt_version),
        "gpu": str(gpu.get("name")),
        "compute_capability": str(gpu.get("compute_capability")),
        "precision": str(precision),
        "plugin_sha256": str(plugin_sha256),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EngineInfo:
    graph: str  # manifest graph name
    file: str  # <graph>.engine
    sha256: str
    # one dict per optimization profile: input name -> {"min": [...], "opt": [...], "max": [...]}
    profiles: list[dict[str, dict[str, list[int]]]]


@dataclass(frozen=True)
class EngineMetadata:
    tensorrt_version: str
    gpu: dict[str, Any]  # {"name": ..., "compute_capability": "9.0"}
    plugin: dict[str, Any]  # {"library", "sha256", "op", "namespace", "version"}
    precision: str  # of the source graphs: fp32 | fp16 | int8
    build: dict[str, Any]  # strongly_typed, max/opt batch, workspace, timing cache
    onnx_manifest: dict[str, Any]  # the source manifest.json, verbatim
    engines: dict[str, EngineInfo] = field(default_factory=dict)
    built_at: str = ""

    @property
    def cache_key(self) -> str:
        """:func:`engine_cache_key` of what these engines were built with."""
        return engine_cache_key(
            self.tensorrt_version, self.gpu, self.precision, str(self.plugin.get("sha256"))
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["engines"] = {k: asdict(v) for k, v in self.engines.items()}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **d,
            "cache_key": self.cache_key,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineMetadata:
        if d.get("format") != FORMAT or int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise EngineMetadataError(f"not a {FORMAT} v{FORMAT_VERSION} file")
        return cls(
            tensorrt_version=str(d["tensorrt_version"]),
            gpu=dict(d["gpu"]),
            plugin=dict(d["plugin"]),
            precision=str(d["precision"]),
            build=dict(d["build"]),
            onnx_manifest=dict(d["onnx_manifest"]),
            engines={k: EngineInfo(**v) for k, v in d["engines"].items()},
            built_at=str(d.get("built_at", "")),
        )


def write_metadata(directory: str | Path, meta: EngineMetadata) -> Path:
    """Write ``engines.json`` atomically."""
    path = Path(directory) / ENGINES_FILE
    tmp = path.with_name(f".{ENGINES_FILE}.tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


def load_metadata(directory: str | Path) -> EngineMetadata:
    directory = Path(directory)
    path = directory / ENGINES_FILE
    if not path.is_file():
        raise EngineMetadataError(
            f"{path} is missing: not a TensorRT engine directory (run `nuwa build-engine`)"
        )
    try:
        meta = EngineMetadata.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EngineMetadataError(f"{path} is malformed: {exc!r}") from exc
    except EngineMetadataError as exc:
        raise EngineMetadataError(f"{path}: {exc}") from exc
    stored = json.loads(path.read_text()).get("cache_key")
    if stored is not None and stored != meta.cache_key:
        raise EngineMetadataError(
            f"{path}: cache_key {stored} does not match its TensorRT version, GPU, precision and "
            "plugin SHA-256 (edited by hand?); rebuild with `nuwa build-engine`"
        )
    for info in meta.engines.values():
        if not (directory / info.file).is_file():
            raise EngineMetadataError(f"{path}: engine file {directory / info.file} is missing")
    return meta


def check_compatible(
    meta: EngineMetadata,
    tensorrt_version: str,
    gpu: dict[str, Any],
    precision: str | None = None,
    plugin_sha256: str | None = None,
) -> None:
    """Refuse engines built for another TensorRT version, GPU model, precision or plugin library
    (the parts of :func:`engine_cache_key`; clear message, before TensorRT tries to deserialize
    them). ``precision`` / ``plugin_sha256``: checked when given."""
    rebuild = "rebuild them on this machine with `nuwa build-engine`"
    if meta.tensorrt_version != tensorrt_version:
        raise EngineMismatchError(
            f"these engines were built with TensorRT {meta.tensorrt_version}, this machine has "
            f"TensorRT {tensorrt_version}; {rebuild}"
        )
    built_cc, here_cc = meta.gpu.get("compute_capability"), gpu.get("compute_capability")
    built_name, here_name = meta.gpu.get("name"), gpu.get("name")
    if built_cc != here_cc or built_name != here_name:
        raise EngineMismatchError(
            f"these engines were built for {built_name} (compute capability {built_cc}), this "
            f"machine has {here_name} (compute capability {here_cc}); {rebuild}"
        )
    if precision is not None and meta.precision != precision:
        raise EngineMismatchError(
            f"these engines are {meta.precision}, not {precision}: ask for --precision "
            f"{meta.precision} or build engines from a {precision} export"
        )
    if plugin_sha256 is not None and meta.plugin.get("sha256") != plugin_sha256:
        raise EngineMismatchError(
            f"these engines were built with another plugin library (SHA-256 "
            f"{str(meta.plugin.get('sha256'))[:12]}…, this one is {plugin_sha256[:12]}…); {rebuild}"
        )
