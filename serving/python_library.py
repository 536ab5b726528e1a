"""The environment Triton's Python backend needs to run under this interpreter.

Triton's Python-backend stub (``triton_python_backend_stub``, shipped in the PyTriton wheel) links
``libpython3.X.so.1.0`` and the dynamic loader finds the system's copy first. Under another
interpreter of the same version (pyenv, a conda env, a source build) the stub then runs the
system's libpython against this interpreter's standard library and the model fails to load
(``'_thread.RLock' object has no attribute '_recursion_count'``). Putting this interpreter's own
library folder first on ``LD_LIBRARY_PATH`` makes the stub load the matching libpython; the
Triton server copies the environment when it starts, so setting it in this process before the
start is enough (no re-exec).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import MutableMapping
from pathlib import Path


def interpreter_library_dir() -> Path | None:
    """The folder holding this interpreter's shared ``libpython`` (``None`` for a static
    build, where the stub can only use the system's)."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not name or not (Path(libdir) / name).exists():
        return None
    return Path(libdir)


def with_interpreter_library(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``env`` with this interpreter's libpython folder first on ``LD_LIBRARY_PATH`` (changed
    in place and returned; unchanged where there is no such folder or it is first already)."""
    libdir = interpreter_library_dir()
    if libdir is None:
        return env
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if parts[:1] != [str(libdir)]:
        rest = [p for p in parts if p != str(libdir)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *rest])
    return env


def prepare_python_backend() -> None:
    """Set this process's environment so that a Triton server started from it runs the Python
    backend on this interpreter (the module docstring)."""
    with_interpreter_library(os.environ)


def python_version_tag() -> str:
    """``3.11``: the stub folder of the PyTriton wheel that matches this interpreter."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"
