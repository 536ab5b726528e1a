"""Backend registry: which backends exist, whether each can run here, and loading one.

``can_run(name)`` answers without importing heavy libraries where it can and gives the reason
when the answer is no; :func:`load_backend` turns every "no" into a
:class:`~nuwa.spec.errors.BackendUnavailableError` that names what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.install_hints import BACKEND_HINTS
from nuwa.spec.manifest import MANIFEST_FILE
from nuwa.spec.model_spec import CONFIG_FILE

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "Condition",
    "DEFAULT_BACKEND",
    "can_run",
    "check_backend",
    "check_precision",
    "load_backend",
]

BACKENDS: tuple[str, ...] = ("onnxruntime", "torch", "tensorrt")
DEFAULT_BACKEND = "onnxruntime"
# Precisions each backend can run (fp16/int8 graphs come from nuwa.calibration when present).
PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "torch": ("fp32", "fp16", "bf16"),
    "tensorrt": ("fp32", "fp16", "int8"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def can_run(name: str) -> tuple[bool, str]:
    """(usable, reason) for backend ``name`` on this machine."""
    if name not in BACKENDS:
        return False, f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}"
    module = {"onnxruntime": "onnxruntime", "torch": "torch", "tensorrt": "tensorrt"}[name]
    if not _installed(module):
        return False, f"{name} is not installed: {BACKEND_HINTS[name]}"
    return True, "installed"


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        )


def check_precision(backend: str, precision: str) -> None:
    check_backend(backend)
    allowed = PRECISIONS[backend]
    if precision not in allowed:
        raise BackendUnavailableError(
            f"unknown precision {precision!r} for the {backend} backend; choose one of: "
            f"{', '.join(allowed)}"
        )


def load_backend(
    name: str,
    model_dir: str | Path,
    precision: str | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> Backend:
    """Load ``model_dir`` on backend ``name``.

    ``model_dir``: a checkpoint directory (``config.json`` + safetensors) or, for onnxruntime
    and tensorrt, an export directory written by ``nuwa export`` or ``nuwa quantize``
    (``manifest.json``; tensorrt needs ``--target tensorrt``), or for tensorrt an engine
    directory written by ``nuwa build-engine`` (``engines.json``). tensorrt builds the engines
    of an export on this GPU on first use and caches them (a checkpoint is exported first):
    :mod:`nuwa.runtime.backends.tensorrt.engine_cache`.
    ``precision``: None runs the directory's default: for a checkpoint on onnxruntime's CPU
    the precision its ``runtime_defaults.json`` names (the shipped demo: int8, from its bundled
    ``onnx_int8/``; fp32 with a one-line note through ``log`` where this CPU refuses that
    export), else fp32; the manifest's precision for an export; fp32 on torch and tensorrt.
    A value that the directory does not hold is an error.
    ``device``: "cpu" (default for onnxruntime), "cuda", "tensorrt" (onnxruntime's TensorRT
    execution provider), or None for the backend's default. ``log`` receives one-line notices
    (e.g. "exporting on first use", "building TensorRT engines"); ``progress``: a progress bar
    while a first use exports.
    """
    check_backend(name)
    if precision is not None:
        check_precision(name, precision)
    ok, reason = can_run(name)
    if not ok:
        raise BackendUnavailableError(reason)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NuwaInputError(f"model directory {model_dir} does not exist")
    if name == "torch":
        if not (model_dir / CONFIG_FILE).is_file() and (model_dir / MANIFEST_FILE).is_file():
            raise NuwaInputError(
                f"{model_dir} is an ONNX export; the torch backend runs the checkpoint "
                f"directory it was exported from ({CONFIG_FILE} + safetensors)"
            )
        from nuwa.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(model_dir, precision=precision or "fp32", device=device)
    if name == "onnxruntime":
        from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_model_dir(
            model_dir, precision=precision, device=device, log=log, progress=progress
        )
    from nuwa.runtime.backends.tensorrt.backend import TensorRTBackend

    return TensorRTBackend.from_model_dir(
        model_dir, precision=precision or "fp32", device=device, log=log, progress=progress
    )
