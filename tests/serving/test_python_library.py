"""The environment Triton's Python backend stub needs: this interpreter's libpython folder first
on LD_LIBRARY_PATH (the server tests start `nuwa serve` without it, as a shell would)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from nuwa.serving.python_library import interpreter_library_dir, with_interpreter_library


def test_the_interpreters_library_folder_goes_first_once() -> None:
    libdir = interpreter_library_dir()
    if libdir is None:  # a static interpreter: nothing to put first, the env is left alone
        assert with_interpreter_library({"LD_LIBRARY_PATH": "/x"}) == {"LD_LIBRARY_PATH": "/x"}
        return
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    assert (Path(libdir) / name).exists()
    assert with_interpreter_library({}) == {"LD_LIBRARY_PATH": str(libdir)}
    env = with_interpreter_library({"LD_LIBRARY_PATH": f"/usr/lib:{libdir}:/opt"})
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/usr/lib:/opt"
    assert with_interpreter_library(dict(env)) == env
