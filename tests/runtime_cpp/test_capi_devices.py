"""The execution provider through the C API (nuwa_open_options.device): the Python runtime's
device choice (runtime/backends/onnxruntime/providers.py), its messages taken live from
``parse_device`` / ``providers_for`` on the same device strings. On a CPU-only onnxruntime (this
machine's wheel) "cuda" and "tensorrt" are refused as Python refuses them; with a GPU build of
ONNX Runtime the same tests expect them to open, but nothing here has run on a GPU."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nuwa.runtime.backends.onnxruntime.providers import parse_device, providers_for
from nuwa.spec.errors import BackendUnavailableError
from nuwa.spec.manifest import load_manifest

from . import capi

DEVICES = [
    "cpu", "CPU", "cpu:0", "cpu:", "", "cuda", "cuda:1", "CUDA:0", "tensorrt", "TensorRT:0",
    "gpu", "cuda:x", "cpu:-1", "cuda:1:2", "cuda: 1", " cpu", "it's", 'say "x"', "a\tb",
    "tensorrt:00", "trt", "cpu:99999999999",
]  # fmt: skip


def python_refusal(device: str, precision: str) -> str | None:
    """The Python runtime's message for ``device`` (parse_device, then providers_for), or None
    when it takes the device."""
    try:
        providers_for(*parse_device(device), precision)
    except BackendUnavailableError as error:
        return str(error)
    return None


def open_status(lib: ctypes.CDLL, export: Path, device: str | None) -> tuple[int, str]:
    options = capi.OpenOptions()
    lib.nuwa_open_options_init(ctypes.byref(options))
    options.threads = 1
    options.device = None if device is None else device.encode()
    handle = ctypes.c_void_p()
    status = lib.nuwa_open(str(export).encode(), ctypes.byref(options), ctypes.byref(handle))
    message = lib.nuwa_last_error().decode()
    lib.nuwa_close(handle)
    return status, message


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where TensorRT's engine folders go, should a TensorRT build take the device."""
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("device", DEVICES)
def test_device_choice_as_python(lib: ctypes.CDLL, tiny_export_dir: Path, device: str) -> None:
    precision = load_manifest(tiny_export_dir).precision
    want = python_refusal(device, precision)
    status, message = open_status(lib, tiny_export_dir, device)
    if want is None:
        assert (status, message) == (capi.NUWA_OK, "")
    else:
        assert (status, message) == (capi.NUWA_ERROR_BACKEND, want)


def test_cpu_only_wheel_refuses_gpus(lib: ctypes.CDLL, tiny_export_dir: Path) -> None:
    """On this machine's wheel (no CUDA provider) the GPU devices are refused with Python's
    messages, word for word: the case the parametrized test covers, asserted to be the case."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal case is not this machine's")
    for device in ("cuda", "cuda:1", "tensorrt", "cuda:99999999999"):
        status, message = open_status(lib, tiny_export_dir, device)
        assert status == capi.NUWA_ERROR_BACKEND
        assert message.startswith(f"onnxruntime {onnxruntime.__version__} here has no CUDA")
        assert message == python_refusal(device, "fp32")


def test_bad_device_checked_before_the_directory(lib: ctypes.CDLL, tmp_path: Path) -> None:
    status, message = open_status(lib, tmp_path / "missing", "gpu:0")
    with pytest.raises(BackendUnavailableError) as caught:
        parse_device("gpu:0")
    assert (status, message) == (capi.NUWA_ERROR_BACKEND, str(caught.value))


def greedy_tokens(lib: ctypes.CDLL, model: ctypes.c_void_p) -> np.ndarray:
    request, _keep = capi.make_request(lib, "t2i", [b"a red square moves left"], batch=2)
    return capi.generate(lib, model, request).tokens


@pytest.mark.parametrize("device", [None, "", "cpu", "cpu:0", "CPU"])
def test_cpu_devices_give_the_default_tokens(
    lib: ctypes.CDLL, tiny_c_model: ctypes.c_void_p, tiny_export_dir: Path, device: str | None
) -> None:
    model = capi.open_model(lib, tiny_export_dir, threads=1, device=device)
    try:
        np.testing.assert_array_equal(greedy_tokens(lib, model), greedy_tokens(lib, tiny_c_model))
    finally:
        lib.nuwa_close(model)


def test_abi2_options_still_open(
    lib: ctypes.CDLL, tiny_c_model: ctypes.c_void_p, tiny_export_dir: Path
) -> None:
    """A caller built against the first ABI-2 header (struct_size, threads) still opens, on the
    CPU; a field past its struct_size is never read (here a bad device left behind it)."""
    full = capi.OpenOptions()
    lib.nuwa_open_options_init(ctypes.byref(full))
    assert full.struct_size == ctypes.sizeof(capi.OpenOptions) > ctypes.sizeof(capi.OpenOptionsAbi2)
    full.struct_size = ctypes.sizeof(capi.OpenOptionsAbi2)
    full.threads = 1
    full.device = b"gpu"  # past struct_size: not read
    handle = ctypes.c_void_p()
    status = lib.nuwa_open(str(tiny_export_dir).encode(), ctypes.byref(full), ctypes.byref(handle))
    assert (status, lib.nuwa_last_error()) == (capi.NUWA_OK, b"")
    try:
        np.testing.assert_array_equal(greedy_tokens(lib, handle), greedy_tokens(lib, tiny_c_model))
    finally:
        lib.nuwa_close(handle)

    old = capi.OpenOptionsAbi2(ctypes.sizeof(capi.OpenOptionsAbi2), 1)
    as_new = ctypes.cast(ctypes.pointer(old), ctypes.POINTER(capi.OpenOptions))
    handle = ctypes.c_void_p()
    status = lib.nuwa_open(str(tiny_export_dir).encode(), as_new, ctypes.byref(handle))
    assert (status, lib.nuwa_last_error()) == (capi.NUWA_OK, b"")
    lib.nuwa_close(handle)

    old.struct_size = ctypes.sizeof(ctypes.c_size_t)  # not even threads: refused
    status = lib.nuwa_open(str(tiny_export_dir).encode(), as_new, ctypes.byref(handle))
    assert status == capi.NUWA_ERROR_INPUT
    assert lib.nuwa_last_error() == (
        b"nuwa_open_options.struct_size is too small: call nuwa_open_options_init() first"
    )


def test_example_device_flag(build_dir: Path, tiny_export_dir: Path, tmp_path: Path) -> None:
    """examples/cpp's --device: a refused device exits 1 with the Python runtime's message; cpu
    runs."""
    app = build_dir / "nuwa_generate"
    env = {**os.environ, "LD_LIBRARY_PATH": str(build_dir)}
    base = [str(app), str(tiny_export_dir), "t2i", "a red square", "--threads", "1"]
    done = subprocess.run([*base, "--device", "gpu"], capture_output=True, text=True, env=env)
    with pytest.raises(BackendUnavailableError) as caught:
        parse_device("gpu")
    assert done.returncode == 1
    assert f"error: {caught.value}\n" in done.stderr
    out = str(tmp_path / "out")
    done = subprocess.run(
        [*base, "--device", "cpu:0", "--out", out], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"{out}_r0_f0.png"]


@pytest.fixture(scope="module")
def options_driver(tmp_path_factory: pytest.TempPathFactory, build_dir: Path) -> Path:
    """tests/runtime_cpp/provider_options_driver.cpp over execution_providers.cpp (no GPU needed:
    it prints the TensorRT options without creating them in ONNX Runtime); ONNX Runtime's
    library found by its SONAME link in the runtime's build folder."""
    from .conftest import ROOT, ort_include_dir, ort_library

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("providers") / "provider_options"
    cpp = ROOT / "runtime/cpp"
    sources = [cpp / "execution_providers.cpp", cpp / "ort_api.cpp", cpp / "python_text.cpp",
               ROOT / "tests/runtime_cpp/provider_options_driver.cpp"]  # fmt: skip
    build = ["c++", "-std=c++17", "-O1", f"-I{cpp}", f"-I{ROOT / 'include'}",
             f"-I{ort_include_dir()}", *map(str, sources), str(ort_library()),
             f"-Wl,-rpath,{build_dir}", "-o", str(out)]  # fmt: skip
    subprocess.run(build, check=True)
    return out


@pytest.mark.parametrize(("device", "precision"), [("tensorrt", "fp32"), ("tensorrt:1", "fp16"),
                                                   ("TensorRT:2", "int8")])  # fmt: skip
def test_tensorrt_options_as_python(
    options_driver: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str,
    precision: str,
) -> None:  # fmt: skip
    """The TensorRT provider's options are providers_for's (Python asked as if this onnxruntime
    had TensorRT), but for the cache folder: the caller's, engines and timing cache together."""
    from nuwa.runtime.backends.onnxruntime import providers

    plugin = tmp_path / "libnuwa_trt_register.so"
    plugin.write_bytes(b"not a library: only its path is passed on")
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: gpu)
    monkeypatch.setattr(providers, "tensorrt_registration_library", lambda: str(plugin))
    monkeypatch.setattr(providers, "plugin_library", lambda: str(plugin))
    trt, cuda, cpu = providers_for(*parse_device(device), precision)
    assert (trt[0], cuda, cpu) == (
        "TensorrtExecutionProvider",
        ("CUDAExecutionProvider", {"device_id": parse_device(device)[1]}),
        "CPUExecutionProvider",
    )  # the order append_providers appends (TensorRT, CUDA; the CPU is ONNX Runtime's own)
    cache = tmp_path / "engines"
    done = subprocess.run(
        [str(options_driver), device, precision, str(plugin), str(cache)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got = dict(line.split("=", 1) for line in done.stdout.splitlines())
    want = {k: str(int(v)) if isinstance(v, bool | int) else str(v) for k, v in trt[1].items()}
    want["trt_engine_cache_path"] = want["trt_timing_cache_path"] = str(cache)
    assert got == want


@pytest.mark.parametrize(
    ("env", "folder"),
    [
        ({"NUWA_CACHE_DIR": "/c/n", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c/n"),
        ({"NUWA_CACHE_DIR": "", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/nuwa"),
        ({"XDG_CACHE_HOME": "~/x", "HOME": "/h"}, "/h/x/nuwa"),
        ({"HOME": "/h"}, "/h/.cache/nuwa"),
    ],
)
def test_tensorrt_default_cache_folder(
    options_driver: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], folder: str
) -> None:
    """With no folder given: <spec/environment.py cache_dir()>/trt_engines/capi/<precision>."""
    from nuwa.spec.environment import cache_dir

    for name in ("NUWA_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert str(cache_dir()) == folder
    done = subprocess.run(
        [str(options_driver), "tensorrt", "fp16", "", ""],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert got["trt_engine_cache_path"] == f"{folder}/trt_engines/capi/fp16"
    assert "trt_extra_plugin_lib_paths" not in got
