"""Where the ONNX Runtime backend finds its graphs: an export directory (with ``manifest.json``)
given directly, the export bundled in a model directory, or the export cache, filled on first
use. The TensorRT backend's engine cache (:mod:`nuwa.runtime.backends.tensorrt.engine_cache`)
takes a checkpoint's ``tensorrt``-target export from here too (``ensure_export(...,
target="tensorrt")``).

- A model directory may carry its exports, one directory per precision: ``onnx/`` (FP32),
  ``onnx_int8/`` and ``onnx_fp16/`` (written by ``nuwa quantize``) — the Hugging Face / Optimum
  layout of a model repository; the shipped demo bundles FP32 and INT8. One is used when its
  manifest's ``model.checkpoint_sha256`` is the checkpoint's
  (:func:`nuwa.spec.manifest.checkpoint_sha256`) and it is an export of the precision and for
  the target asked for (portable for ONNX Runtime). Nothing is exported and PyTorch is never
  needed. Which precision ONNX Runtime runs on the CPU when none is asked for is the
  directory's ``runtime_defaults.json`` (:class:`nuwa.runtime.model_directory.RuntimeDefaults`).
- Otherwise the cache, ``$NUWA_CACHE_DIR/onnx/<key>/`` (default ``~/.cache/nuwa``), keyed by a
  SHA-256 over the model directory's files, the target and the exporter's graph revision, so a
  changed checkpoint or exporter is exported again. Exporting needs PyTorch (``nuwa.export``)
  and takes about a minute for the demo, shown as a progress bar; using a filled cache does not
  import it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nuwa.spec import environment
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.install_hints import TORCH
from nuwa.spec.manifest import MANIFEST_FILE

# a model directory's own exports, one directory per precision (Hugging Face / Optimum layout)
BUNDLED_EXPORT_DIRS = {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"}
BUNDLED_EXPORT_DIR = BUNDLED_EXPORT_DIRS["fp32"]


def check_cache_root(write: bool) -> Path:
    """The cache root (:func:`nuwa.spec.environment.cache_dir`), usable: a directory (or one
    that can be made), writable when ``write``; else a :class:`NuwaInputError` naming
    ``NUWA_CACHE_DIR``."""
    root = environment.cache_dir()
    env = environment.CACHE_DIR
    name = f"{env}={root}" if environment.value(env) else f"the cache {root}"
    hint = f"set {env} to a writable directory"
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        what = "is a file" if blocker == root else f"is under {blocker}, which is a file"
        raise NuwaInputError(f"{name} {what}, not a directory: {hint}")
    if write:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NuwaInputError(f"{name} cannot be created ({exc.strerror}): {hint}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise NuwaInputError(f"{name} is not writable: {hint}")
    return root


def model_key(model_dir: str | Path) -> str:
    """SHA-256 over every file of a model directory (names and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def export_dir_for(model_dir: str | Path, target: str = "portable") -> Path:
    """Cache entry of a checkpoint: its files' hash, the target and the exporter's graph
    revision (an upgraded exporter writes faster graphs: a stale entry is not reused)."""
    from nuwa.spec.manifest import GRAPH_REVISION  # no torch

    entry = f"{model_key(model_dir)[:16]}-{target}-r{GRAPH_REVISION}"
    return environment.cache_dir() / "onnx" / entry


def bundled_export(
    model_dir: str | Path, target: str = "portable", precision: str = "fp32"
) -> Path | None:
    """``model_dir``'s bundled export of ``precision`` (``onnx/`` for fp32, ``onnx_int8/``,
    ``onnx_fp16/``: :data:`BUNDLED_EXPORT_DIRS`) when it is a ``precision`` export for
    ``target`` of exactly this checkpoint (its manifest's ``model.checkpoint_sha256``), else
    ``None``. The files' own SHA-256 are checked when the backend loads the manifest."""
    from nuwa.spec.manifest import checkpoint_sha256  # no torch

    if precision not in BUNDLED_EXPORT_DIRS:
        return None
    path = Path(model_dir) / BUNDLED_EXPORT_DIRS[precision]
    raw = _bundled_manifest(path)
    if raw is None:
        return None
    try:
        model, found, held = raw.get("model") or {}, raw.get("target"), raw.get("precision")
        recorded = model.get("checkpoint_sha256")
    except AttributeError:
        return None
    if found != target or held != precision:
        return None
    return path if recorded == checkpoint_sha256(model_dir) else None


def _bundled_manifest(path: Path) -> dict[str, Any] | None:
    if not is_export_dir(path):
        return None
    try:
        raw = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def quality_gates_passed(export_dir: str | Path) -> bool:
    """Whether ``nuwa quantize`` ran its quality gates on ``export_dir`` and they passed (its
    manifest's ``quality_gates.passed``); an FP32 export has none to pass and is True."""
    raw = _bundled_manifest(Path(export_dir)) or {}
    if raw.get("precision") == "fp32":
        return True
    gates = raw.get("quality_gates")
    return isinstance(gates, dict) and gates.get("passed") is True


def check_checkpoint_precision(precision: str, target: str = "portable") -> None:
    """A checkpoint is exported on first use at fp32 only; other precisions need an export
    converted beforehand (:class:`BackendUnavailableError` saying how)."""
    if precision == "fp32":
        return
    if target == "portable":
        raise BackendUnavailableError(
            f"precision {precision} on onnxruntime needs a converted export: convert the model "
            "with nuwa.calibration and pass that directory as the model (or bundle it in the "
            f"model directory as {BUNDLED_EXPORT_DIRS.get(precision, 'onnx_' + precision)}/)"
        )
    raise BackendUnavailableError(
        f"precision {precision} on {target} needs a converted export: `nuwa export --target "
        f"{target}`, then `nuwa quantize --precision {precision}` it, and pass that directory "
        "as the model"
    )


def ensure_export(
    model_dir: str | Path,
    precision: str = "fp32",
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    target: str = "portable",
) -> Path:
    """The export directory of ``model_dir``: itself if it holds a manifest, else its bundled
    export of ``precision`` (:func:`bundled_export`), else (fp32 only) the cache entry for
    ``target`` (``"portable"``: ONNX Runtime; ``"tensorrt"``: the graphs engines are built
    from), exported now if missing (needs PyTorch; ``progress``: a progress bar over the graphs
    on stderr)."""
    model_dir = Path(model_dir)
    if is_export_dir(model_dir):
        return model_dir
    bundled = bundled_export(model_dir, target, precision)
    if bundled is not None:
        return bundled
    check_checkpoint_precision(precision, target)
    if log and is_export_dir(model_dir / BUNDLED_EXPORT_DIR):
        log(
            f"ignoring {model_dir / BUNDLED_EXPORT_DIR}: not a {target} fp32 export of this "
            "checkpoint (manifest target, precision or checkpoint_sha256 differ)"
        )
    check_cache_root(write=False)
    out = export_dir_for(model_dir, target)
    if is_export_dir(out):
        return out
    try:
        from nuwa.export.exporter import export_model
    except ImportError as exc:
        command = "nuwa export" if target == "portable" else f"nuwa export --target {target}"
        raise BackendUnavailableError(
            f"{model_dir} has not been exported to ONNX yet and exporting needs PyTorch: "
            f"{TORCH}, or run `{command}` elsewhere and pass the export directory as the "
            f"model ({exc})"
        ) from exc
    check_cache_root(write=True)
    if log:
        log(
            f"exporting {model_dir} to ONNX in {out} (first use of this checkpoint: a minute "
            "or two on a laptop CPU; later runs reuse it)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    export_model(model_dir, out, target=target, progress=progress)
    return out
