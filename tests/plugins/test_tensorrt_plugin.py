"""The TensorRT plugin in libnuwa_plugins.so (only in builds that found TensorRT headers).

CI has no TensorRT headers, so there these tests SKIP (reason given) and only the CPU/C API tests
run — including test_plugins_library.py::test_library_reads_the_attributes_the_model_writes, which
checks the field table the creator is built from against the model's ONNX attributes. With headers
(``cmake -S . -B build -DTensorRT_INCLUDE_DIR=.../include``; checked against TensorRT 10.3.0 and
11.1 headers) they check, without a TensorRT runtime, what the headers allow: the exported entry
points, registration being harmless without TensorRT, the separate static-registration library,
and the header-only check program (creator fields == the model's attributes, shapes, formats,
v/q_positions/key-count checks, serialization round trip, bad fields, getCreators stable).
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

from nuwa.model.attention3d import NearbyAttentionSpec
from nuwa.plugins import library


@pytest.fixture(scope="module")
def trt_lib(plugin_lib):
    if not library.tensorrt_compiled():
        pytest.skip(
            "libnuwa_plugins was configured without TensorRT headers (CI has none), so the plugin "
            "is not in this build; configure with -DTensorRT_INCLUDE_DIR=<TensorRT>/include"
        )
    return plugin_lib


def test_exports_dynamic_plugin_entry_points(trt_lib) -> None:
    assert hasattr(trt_lib, "getCreators") and hasattr(trt_lib, "setLoggerFinder")


def test_register_without_tensorrt_in_process_is_harmless(trt_lib) -> None:
    maps = Path("/proc/self/maps").read_text()
    if "libnvinfer" in maps:
        pytest.skip("a TensorRT runtime is loaded in this process")
    fn = trt_lib.nuwa_3dna_register_tensorrt_plugin
    fn.restype = ctypes.c_int32
    assert fn() == 0  # no registry to register with, and no crash


def test_static_registration_lives_in_its_own_library(trt_lib) -> None:
    """libnuwa_plugins.so is a TensorRT dynamic plugin library (loadLibrary); the load-time
    registration for dlopen-only loaders (ONNX Runtime's TensorRT EP) is libnuwa_trt_register.so,
    which needs libnuwa_plugins.so beside it ($ORIGIN) and is harmless without TensorRT."""
    path = library.register_library_path()
    assert path.parent == library.library_path().parent
    dynamic = subprocess.run(
        ["readelf", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Shared library: [libnuwa_plugins.so]" in dynamic
    assert "$ORIGIN" in dynamic
    if "libnvinfer" in Path("/proc/self/maps").read_text():
        pytest.skip("a TensorRT runtime is loaded in this process")
    ctypes.CDLL(str(path))  # its constructor finds no TensorRT registry: nothing happens
    exports = subprocess.run(
        ["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "getCreators" not in exports  # never a loadLibrary target


def test_header_only_plugin_checks(trt_lib) -> None:
    exe = library.library_path().parent / "nuwa_trt_plugin_check"
    assert exe.is_file(), f"{exe} missing: rebuild with TensorRT headers"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("creator fields: "))
    creator = library.parse_attribute_fields(line.removeprefix("creator fields: "))
    spec = NearbyAttentionSpec((16, 32, 32), (16, 32, 32), (3, 3, 3), causal=True)
    assert creator == library.expected_attribute_fields(spec.onnx_attributes(64, 16))
