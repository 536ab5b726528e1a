"""The C++ runtime's tests: ``libnuwa_runtime.so`` built once per session from the root
CMakeLists.txt (or taken from ``NUWA_RUNTIME_LIB``), driven through ctypes (:mod:`.capi`).

The library needs ONNX Runtime's C API header (``ONNXRUNTIME_INCLUDE_DIR``, else
``../shared/third_party/onnxruntime/include`` beside the repository), the ``onnxruntime``
wheel's library, nlohmann-json, ICU, libpng and giflib. Without them the tests skip, unless
``NUWA_REQUIRE_CPP_RUNTIME=1`` (CI) makes that an error."""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import capi

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "runtime-cpp-tests"
SANITIZED_BUILD_DIR = ROOT / "build" / "runtime-cpp-asan"  # AddressSanitizer + UBSan


def ort_library() -> Path:
    import onnxruntime

    capi_dir = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi_dir.glob("libonnxruntime.so.1*"))
    if not found:
        raise FileNotFoundError(f"no libonnxruntime.so.1* in {capi_dir}")
    return found[-1]


def ort_include_dir() -> Path:
    given = os.environ.get("ONNXRUNTIME_INCLUDE_DIR")
    shared = ROOT.parent / "shared" / "third_party" / "onnxruntime" / "include"
    return Path(given) if given else shared


def unavailable(reason: str) -> None:
    if os.environ.get("NUWA_REQUIRE_CPP_RUNTIME") == "1":
        pytest.fail(f"the C++ runtime cannot be built: {reason}")
    pytest.skip(f"the C++ runtime cannot be built: {reason}")


def build_library(build_dir: Path, sanitize: bool = False) -> Path:
    """Configure and build the ``nuwa_runtime`` and ``nuwa_generate`` targets into
    ``build_dir`` (incremental; one process at a time: pytest-xdist workers share the folder)."""
    include = ort_include_dir()
    if not (include / "onnxruntime_c_api.h").is_file():
        unavailable(f"{include}/onnxruntime_c_api.h is missing (set ONNXRUNTIME_INCLUDE_DIR)")
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        unavailable("cmake and a C++ compiler are needed")
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f".{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo" if sanitize else "-DCMAKE_BUILD_TYPE=Release",
            "-DNUWA_ENABLE_CUDA=OFF", "-DNUWA_ENABLE_TENSORRT=OFF",
            f"-DNUWA_RUNTIME_SANITIZE={'ON' if sanitize else 'OFF'}",
            f"-DONNXRUNTIME_INCLUDE_DIR={include}", f"-DONNXRUNTIME_LIBRARY={ort_library()}",
        ]  # fmt: skip
        done = subprocess.run(configure, capture_output=True, text=True)
        needs = done.stderr.find("nuwa: libnuwa_runtime.so needs")
        if done.returncode != 0 and needs >= 0:  # a library to install (nlohmann-json, ICU, ...)
            unavailable(" ".join(done.stderr[needs:].split("\n\n")[0].split()))
        if done.returncode != 0:
            pytest.fail(f"cmake configure failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        if "libnuwa_runtime.so ON" not in done.stdout:
            lines = [line for line in done.stdout.splitlines() if "runtime" in line]
            unavailable(lines[0] if lines else done.stdout[-500:])
        targets = ["nuwa_runtime", "nuwa_generate"]  # the library and examples/cpp's app
        build = ["cmake", "--build", str(build_dir), "--target", *targets, "-j", "2"]
        done = subprocess.run(build, capture_output=True, text=True)
        if done.returncode != 0:
            output = done.stdout[-4000:] + done.stderr[-3000:]
            pytest.fail(f"building libnuwa_runtime.so failed:\n{output}")
    return build_dir / "libnuwa_runtime.so"


@pytest.fixture(scope="session")
def runtime_lib_path() -> Path:
    given = os.environ.get("NUWA_RUNTIME_LIB")
    return Path(given) if given else build_library(BUILD_DIR)


@pytest.fixture(scope="session")
def build_dir(runtime_lib_path: Path) -> Path:
    """The folder the library was built in (the example app and libonnxruntime.so.1 beside it)."""
    return runtime_lib_path.parent


@pytest.fixture(scope="session")
def lib(runtime_lib_path: Path) -> ctypes.CDLL:
    return capi.load(runtime_lib_path)


@pytest.fixture(scope="session")
def tiny_c_model(lib: ctypes.CDLL, tiny_export_dir: Path):
    handle = capi.open_model(lib, tiny_export_dir, threads=1)
    yield handle
    lib.nuwa_close(handle)
