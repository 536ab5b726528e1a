"""ONNX Runtime's TensorRT execution provider setup (``providers_for("tensorrt", ...)``), checked
without a GPU: the EP gets the library that registers the 3DNA plugin when it is dlopened
(``libnuwa_trt_register.so``; ``libnuwa_plugins.so`` registers nothing at load), and its engine
cache folder is keyed by TensorRT version, GPU, precision and the plugin library's hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from nuwa.plugins import library
from nuwa.runtime.backends.onnxruntime import providers as ort_backend


@pytest.fixture
def tensorrt_ep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An onnxruntime that offers the TensorRT and CUDA EPs (as onnxruntime-gpu does)."""
    monkeypatch.setattr(
        ort_backend.ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))


def _trt_options(precision: str = "fp16") -> dict[str, object]:
    providers = ort_backend.providers_for("tensorrt", 0, precision)
    assert providers[0][0] == "TensorrtExecutionProvider"
    assert [p if isinstance(p, str) else p[0] for p in providers[1:]] == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    return providers[0][1]


def test_extra_plugin_library_is_the_static_registration_library(tensorrt_ep: None) -> None:
    options = _trt_options()
    try:
        has_plugin = library.tensorrt_compiled()
    except library.PluginLibraryError:  # not built at all: nothing to register either
        assert "trt_extra_plugin_lib_paths" not in options
        return
    if not has_plugin:
        assert "trt_extra_plugin_lib_paths" not in options  # nothing to register
        with pytest.raises(library.PluginLibraryError, match="without the TensorRT plugin"):
            library.register_library_path()
        return
    path = Path(str(options["trt_extra_plugin_lib_paths"]))
    assert path.name == library.REGISTER_LIBRARY_NAME and path.is_file()
    assert path.parent == library.library_path().parent


def test_engine_cache_is_keyed_by_precision_and_plugin(
    tensorrt_ep: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fp16 = Path(str(_trt_options("fp16")["trt_engine_cache_path"]))
    int8 = Path(str(_trt_options("int8")["trt_engine_cache_path"]))
    assert fp16.is_dir() and int8.is_dir()
    assert fp16.parent == int8.parent == tmp_path / "cache" / "trt_engines"
    assert fp16 != int8 and len(fp16.name) == 16
    assert Path(str(_trt_options("fp16")["trt_engine_cache_path"])) == fp16  # stable
    rebuilt = tmp_path / "libnuwa_plugins.so"
    rebuilt.write_bytes(b"another build of the plugin")
    monkeypatch.setattr(ort_backend, "plugin_library", lambda: str(rebuilt))
    monkeypatch.setattr(ort_backend, "tensorrt_registration_library", lambda: str(rebuilt))
    assert Path(str(_trt_options("fp16")["trt_engine_cache_path"])) != fp16
