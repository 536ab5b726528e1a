"""The ctypes loader: search order, clear errors, and what the built library reports."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nuwa.model.attention3d import NearbyAttentionSpec
from nuwa.plugins import library


def test_import_needs_neither_library_nor_torch() -> None:
    code = (
        "import sys; import nuwa.plugins as p; "
        "assert 'torch' not in sys.modules; assert p.BUILD_COMMAND.startswith('cmake')"
    )
    env = {"NUWA_PLUGINS_LIB": "/nonexistent/libnuwa_plugins.so", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_missing_library_error_says_how_to_build(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(library, "candidate_paths", lambda: [tmp_path / library.LIBRARY_NAME])
    with pytest.raises(library.PluginLibraryError, match="cmake -S . -B build"):
        library.library_path()


def test_env_var_folder_is_searched_first(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(library.ENV_VAR, str(tmp_path))
    paths = library.candidate_paths()
    assert paths[0] == tmp_path / library.LIBRARY_NAME
    # then a source checkout's build/ (a build by hand; an editable install runs from one), then
    # where the install put it
    checkout = library._source_checkout()
    hand_built = [checkout / "build" / library.LIBRARY_NAME] if checkout else []
    assert paths[1:] == hand_built + [d / library.LIBRARY_NAME for d in library.package_dirs()]
    assert Path(library.__file__).resolve().parent in library.package_dirs()


def test_env_var_file_overrides_everything(monkeypatch, tmp_path: Path) -> None:
    lib = tmp_path / "custom.so"
    lib.write_bytes(b"")
    monkeypatch.setenv(library.ENV_VAR, str(lib))
    assert library.library_path() == lib


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="no C++ compiler"
)
def test_the_install_built_the_library_into_the_package(monkeypatch) -> None:
    """With a C++ compiler, `pip install [-e] .` builds libnuwa_plugins.so into nuwa/plugins/,
    where the loader finds it without NUWA_PLUGINS_LIB or a build/ folder."""
    monkeypatch.delenv(library.ENV_VAR, raising=False)
    installed = [
        d / library.LIBRARY_NAME
        for d in library.package_dirs()
        if (d / library.LIBRARY_NAME).is_file()
    ]
    assert installed, (
        f"no {library.LIBRARY_NAME} in {library.package_dirs()}: the install did not build it "
        f"although a C++ compiler is on PATH; reinstall with `pip install -e .` (-v shows CMake)"
    )
    lib = ctypes.CDLL(str(installed[0]))
    assert lib.nuwa_3dna_api_version() == library.API_VERSION


def test_library_reads_the_attributes_the_model_writes(plugin_lib) -> None:
    """The C API's (and TensorRT creator's) field table == NearbyAttentionSpec.onnx_attributes():
    names, order, int32/float32 and lengths. Runs in every build (no TensorRT headers needed)."""
    spec = NearbyAttentionSpec((4, 8, 8), (2, 4, 4), (3, 1, -1), causal=False, scale=0.5)
    written = spec.onnx_attributes(64, 16)
    expected = library.expected_attribute_fields(written)
    assert library.attribute_fields() == expected
    assert [name for name, _, _ in expected] == list(written)
    renamed = {("softmax_scale" if k == "scale" else k): v for k, v in written.items()}
    assert library.expected_attribute_fields(renamed) != expected  # the comparison can fail


def test_library_reports_itself(plugin_lib) -> None:
    assert plugin_lib.nuwa_3dna_api_version() == library.API_VERSION
    assert library.build_info().startswith("nuwa_plugins")
    assert library.cuda_device_count() >= 0


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_kernels_compiled_in_when_nvcc_present(plugin_lib) -> None:
    assert library.cuda_compiled(), (
        f"nvcc is on PATH but {library.library_path()} was built without CUDA: "
        f"{library.build_info()}"
    )
    sym = plugin_lib.nuwa_3dna_forward_cuda
    assert isinstance(sym, ctypes._CFuncPtr)


def test_cuda_call_without_device_is_a_clear_error(plugin_lib) -> None:
    """No GPU (or no CUDA build): a CUDA call returns an error status, never crashes."""
    if library.cuda_device_count() > 0:
        pytest.skip("a GPU is present; covered by test_3dna_cuda_kernel.py")
    attrs = {
        "q_grid": [1, 2, 2],
        "k_grid": [1, 2, 2],
        "extents": [1, 1, 1],
        "causal": 0,
        "ring_cache": 0,
        "scale": 0.5,
        "num_heads": 1,
    }
    with pytest.raises((library.PluginCallError, library.PluginLibraryError)) as info:
        library.nearby_attention_cuda_ptr(attrs, (1, 1, 4, 4), (1, 1, 4, 4), "float16", 8, 8, 8, 8)
    if isinstance(info.value, library.PluginCallError):
        assert info.value.status == 4 and "CUDA" in str(info.value)
