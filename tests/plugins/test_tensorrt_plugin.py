"""The TensorRT plugin in libnuwa_plugins.so (only in builds that found TensorRT headers).

Without a TensorRT runtime this checks what the headers allow: the exported entry points and the
header-only check program (creator fields, shapes, formats, serialization round trip).
"""

from __future__ import annotations

import ctypes
import subprocess

import pytest

from nuwa.plugins import library


@pytest.fixture(scope="module")
def trt_lib(plugin_lib):
    if not library.tensorrt_compiled():
        pytest.skip("libnuwa_plugins was built without TensorRT headers (set TensorRT_ROOT)")
    return plugin_lib


def test_exports_dynamic_plugin_entry_points(trt_lib) -> None:
    assert hasattr(trt_lib, "getCreators") and hasattr(trt_lib, "setLoggerFinder")


def test_register_without_tensorrt_in_process_is_harmless(trt_lib) -> None:
    fn = trt_lib.nuwa_3dna_register_tensorrt_plugin
    fn.restype = ctypes.c_int32
    assert fn() in (0, 1)  # 0: no TensorRT loaded in this process


def test_header_only_plugin_checks(trt_lib) -> None:
    exe = library.library_path().parent / "nuwa_trt_plugin_check"
    assert exe.is_file(), f"{exe} missing: rebuild with TensorRT headers"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
