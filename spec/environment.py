"""The environment variables nuwa reads: each name defined once here, read everywhere else.

- ``NUWA_CACHE_DIR``: where exports made on first use (and ONNX Runtime's TensorRT engines) are
  cached; default ``$XDG_CACHE_HOME/nuwa`` or ``~/.cache/nuwa``.
- ``NUWA_PLUGINS_LIB``: the native plugin library ``libnuwa_plugins.so`` (a file, or a folder
  holding it); overrides ``build/`` and the installed package's copy, and the library recorded
  in a TensorRT engine directory's ``engines.json``.
- ``NUWA_GPU_CHECK_MODEL``: the model ``bench/gpu_check.sh`` decodes with (shell only).

Torch-free and import-light: every floor may read it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = "NUWA_CACHE_DIR"
PLUGINS_LIB = "NUWA_PLUGINS_LIB"
GPU_CHECK_MODEL = "NUWA_GPU_CHECK_MODEL"
XDG_CACHE_HOME = "XDG_CACHE_HOME"  # the freedesktop base directory, read for the default cache

__all__ = ["CACHE_DIR", "GPU_CHECK_MODEL", "PLUGINS_LIB", "XDG_CACHE_HOME", "cache_dir", "value"]


def value(name: str) -> str | None:
    """The variable's value, or ``None`` when it is unset or empty."""
    return os.environ.get(name) or None


def cache_dir() -> Path:
    """The cache root: ``$NUWA_CACHE_DIR``, else ``$XDG_CACHE_HOME/nuwa``, else
    ``~/.cache/nuwa``."""
    env = value(CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = value(XDG_CACHE_HOME)
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nuwa"
