"""The ``tensorrt`` backend with fakes (no TensorRT or GPU here): its checks before TensorRT
touches an engine (engines from another TensorRT version, GPU, precision or plugin library are
refused clearly; the engine cache key), the engine runner (BF16 I/O, out-of-profile shapes), the
once-per-process plugin registration and the cache buffers' dtype."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest

from nuwa.runtime.backends import load_backend
from nuwa.runtime.backends.tensorrt import backend as trt_backend
from nuwa.runtime.backends.tensorrt.device_memory import DeviceArray, numpy_dtype
from nuwa.runtime.backends.tensorrt.engine_runner import EngineRunner
from nuwa.runtime.backends.tensorrt.engines_json import (
    ENGINES_FILE,
    EngineInfo,
    EngineMetadata,
    EngineMetadataError,
    EngineMismatchError,
    check_compatible,
    engine_cache_key,
    load_metadata,
    write_metadata,
)
from nuwa.spec import environment
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import Manifest

H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
ORIN = {"name": "Orin", "compute_capability": "8.7"}


def _metadata(directory: Path, manifest_dir: Path, precision: str = "fp16") -> EngineMetadata:
    (directory / "decoder_step.text.engine").write_bytes(b"plan")
    meta = EngineMetadata(
        tensorrt_version="10.14.1",
        gpu=H100,
        plugin={"library": "/nowhere/libnuwa_plugins.so", "sha256": "0" * 64, "version": "1"},
        precision=precision,
        build={"strongly_typed": True, "max_batch": 8, "opt_batch": 2},
        onnx_manifest=json.loads((manifest_dir / "manifest.json").read_text()),
        engines={
            "decoder_step.text": EngineInfo(
                "decoder_step.text", "decoder_step.text.engine", "0" * 64, []
            )
        },
    )
    write_metadata(directory, meta)
    return meta


def test_metadata_round_trip_and_missing_files(tmp_path: Path, tiny_tensorrt: Path) -> None:
    meta = _metadata(tmp_path, tiny_tensorrt)
    assert load_metadata(tmp_path) == meta
    (tmp_path / "decoder_step.text.engine").unlink()
    with pytest.raises(EngineMetadataError, match="engine file"):
        load_metadata(tmp_path)
    with pytest.raises(EngineMetadataError, match="nuwa build-engine"):
        load_metadata(tmp_path / "nothing")
    (tmp_path / ENGINES_FILE).write_text("{")
    with pytest.raises(EngineMetadataError, match="malformed"):
        load_metadata(tmp_path)


def test_check_compatible(tmp_path: Path, tiny_tensorrt: Path) -> None:
    meta = _metadata(tmp_path, tiny_tensorrt)
    check_compatible(meta, "10.14.1", dict(H100))
    with pytest.raises(
        EngineMismatchError, match=r"TensorRT 10\.14\.1.*TensorRT 10\.3\.0.*rebuild"
    ):
        check_compatible(meta, "10.3.0", H100)
    with pytest.raises(EngineMismatchError, match=r"built for NVIDIA H100.*this machine has Orin"):
        check_compatible(meta, "10.14.1", ORIN)


@pytest.fixture
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT 10.3.0 on an Orin, as far as the backend's checks can tell."""
    fake = types.SimpleNamespace(__version__="10.3.0")
    monkeypatch.setattr(trt_backend, "_import_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_backend, "_gpu_identity", lambda index: dict(ORIN))


def test_backend_refuses_foreign_engines(
    tmp_path: Path, tiny_tensorrt: Path, fake_tensorrt: None
) -> None:
    _metadata(tmp_path, tiny_tensorrt)
    with pytest.raises(
        EngineMismatchError, match="TensorRT 10.14.1, this machine has TensorRT 10.3.0"
    ):
        trt_backend.TensorRTBackend(tmp_path, precision="fp16")


def test_backend_checks_precision_device_and_directory(
    tmp_path: Path, tiny_tensorrt: Path, fake_tensorrt: None
) -> None:
    _metadata(tmp_path, tiny_tensorrt, precision="int8")
    with pytest.raises(NuwaInputError, match="are int8, not fp16"):
        trt_backend.TensorRTBackend(tmp_path, precision="fp16")
    with pytest.raises(NuwaInputError, match="cuda devices"):
        trt_backend.TensorRTBackend(tmp_path, precision="int8", device="cpu")
    with pytest.raises(NuwaInputError, match="not a TensorRT engine directory"):
        trt_backend.TensorRTBackend(tmp_path / "missing", precision="int8")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="checks the message shown where TensorRT is missing",
)
def test_missing_tensorrt_names_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match='pip install "nuwa-edge\\[trt\\]"'):
        trt_backend.TensorRTBackend(tmp_path)
    with pytest.raises(BackendUnavailableError, match="tensorrt is not installed"):
        load_backend("tensorrt", tmp_path)


# ---- the engine runner, plugin registration and cache buffers, with fakes ----------------------


class _DataType:
    """A TensorRT ``DataType`` member as far as the backend looks at it (its ``name``)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _FakeCudart:
    """cuda-python's runtime API: ``(err, value)`` tuples, pointers as counters."""

    class cudaMemcpyKind:  # noqa: N801 - cuda-python's name
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2
        cudaMemcpyDeviceToDevice = 3

    def __init__(self) -> None:
        self.next_ptr = 4096
        self.allocated: list[int] = []

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:  # noqa: N802
        self.next_ptr += max(nbytes, 1)
        self.allocated.append(nbytes)
        return 0, self.next_ptr

    def cudaMemsetAsync(self, *args: object) -> tuple[int]:  # noqa: N802
        return (0,)

    def cudaMemcpyAsync(self, *args: object) -> tuple[int]:  # noqa: N802
        return (0,)

    def cudaStreamSynchronize(self, *args: object) -> tuple[int]:  # noqa: N802
        return (0,)

    def cudaFree(self, *args: object) -> tuple[int]:  # noqa: N802
        return (0,)


class _FakeEngine:
    def __init__(self, tensors: dict[str, tuple[str, str]], profile: tuple[list[int], ...]) -> None:
        self.tensors = tensors  # name -> (mode, DataType name)
        self.num_io_tensors = len(tensors)
        self.profile = profile
        self.context = _FakeContext(profile)

    def get_tensor_name(self, i: int) -> str:
        return list(self.tensors)[i]

    def get_tensor_mode(self, name: str) -> str:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> _DataType:
        return _DataType(self.tensors[name][1])

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[list[int], ...]:
        return self.profile

    def create_execution_context(self) -> _FakeContext:
        return self.context


class _FakeContext:
    """Accepts input shapes inside [min, max] of the profile, like TensorRT's context."""

    def __init__(self, profile: tuple[list[int], ...]) -> None:
        self.low, _, self.high = profile
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.executed = False

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        inside = all(lo <= d <= hi for lo, d, hi in zip(self.low, shape, self.high, strict=True))
        if inside:
            self.shapes[name] = tuple(shape)
        return inside

    def set_tensor_address(self, name: str, ptr: int) -> None:
        pass

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes["x"]

    def execute_async_v3(self, stream: int) -> bool:
        self.executed = True
        return True


def _runner(tmp_path: Path, dtype: str, profile: tuple[list[int], ...]):
    engine = _FakeEngine({"x": ("INPUT", dtype), "y": ("OUTPUT", dtype)}, profile)
    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="INPUT"))
    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda plan: engine)
    path = tmp_path / "decoder_step.text.engine"
    path.write_bytes(b"plan")
    return EngineRunner(trt, runtime, path, _FakeCudart(), 0), engine


@pytest.mark.parametrize(
    ("name", "expected"),
    [("FLOAT", "float32"), ("HALF", "float16"), ("BF16", "bfloat16"), ("INT64", "int64")],
)
def test_tensorrt_types_map_to_numpy_bf16_included(name: str, expected: str) -> None:
    assert numpy_dtype(_DataType(name)) == np.dtype(expected)


def test_types_without_a_host_type_are_named() -> None:
    with pytest.raises(BackendUnavailableError, match="tensor type INT4 has no host"):
        numpy_dtype(_DataType("INT4"))


def test_bf16_engine_io_runs_and_converts(tmp_path: Path) -> None:
    runner, engine = _runner(tmp_path, "BF16", ([1, 4], [2, 4], [8, 4]))
    assert runner.dtypes == {"x": np.dtype("bfloat16"), "y": np.dtype("bfloat16")}
    out = runner.run({"x": np.ones((3, 4), np.float32)})
    assert engine.context.executed
    assert out["y"].dtype == np.dtype("bfloat16") and out["y"].nbytes == 3 * 4 * 2


def test_out_of_profile_shape_names_the_profile_range(tmp_path: Path) -> None:
    runner, engine = _runner(tmp_path, "FLOAT", ([1, 4], [2, 4], [8, 4]))
    with pytest.raises(
        NuwaInputError,
        match=r"input 'x' has shape \(9, 4\); the engine's profile allows "
        r"\(1, 4\) \.\. \(8, 4\).*--max-batch",
    ):
        runner.run({"x": np.zeros((9, 4), np.float32)})
    assert not engine.context.executed


def test_device_buffer_of_another_dtype_is_refused(tmp_path: Path) -> None:
    runner, _ = _runner(tmp_path, "HALF", ([1, 4], [2, 4], [8, 4]))
    wrong = DeviceArray(_FakeCudart(), (2, 4), np.float32)
    with pytest.raises(ValueError, match="'x' is float32, the engine takes float16"):
        runner.run({"x": wrong})


class _FakeRegistry:
    """TensorRT's plugin registry: ``load_library`` registers the library's creators and, like
    TensorRT, fails (None) when one is registered already."""

    def __init__(self) -> None:
        self.creators: list[tuple[str, str, str]] = []
        self.loads = 0

    def get_creator(self, name: str, version: str, namespace: str) -> object | None:
        return (name, version, namespace) if (name, version, namespace) in self.creators else None

    def load_library(self, path: str) -> object | None:
        self.loads += 1
        creator = ("NearbyAttention3D", "1", "nuwa")
        if creator in self.creators:
            return None
        self.creators.append(creator)
        return object()


def test_plugin_library_is_registered_once_per_process(tmp_path: Path, monkeypatch) -> None:
    from nuwa.runtime.backends.tensorrt import engine_build

    monkeypatch.setattr(engine_build, "_REGISTERED_LIBRARIES", {})
    library = tmp_path / "libnuwa_plugins.so"
    library.write_bytes(b"a")
    registry = _FakeRegistry()
    for _ in range(3):  # build, then two backends, in one process
        engine_build.register_plugin_library(registry, library, "a" * 64)
    assert registry.loads == 1 and len(registry.creators) == 1
    other = tmp_path / "other.so"
    other.write_bytes(b"b")
    with pytest.raises(engine_build.EngineBuildError, match="already registered.*restart"):
        engine_build.register_plugin_library(registry, other, "b" * 64)
    with pytest.raises(engine_build.EngineBuildError, match="changed since this process"):
        engine_build.register_plugin_library(registry, library, "c" * 64)


def test_registered_statically_elsewhere_is_not_loaded_again(tmp_path: Path, monkeypatch) -> None:
    """libnuwa_trt_register.so (ONNX Runtime's TensorRT EP) registered the creator first."""
    from nuwa.runtime.backends.tensorrt import engine_build

    monkeypatch.setattr(engine_build, "_REGISTERED_LIBRARIES", {})
    registry = _FakeRegistry()
    registry.creators.append(("NearbyAttention3D", "1", "nuwa"))
    engine_build.register_plugin_library(registry, tmp_path / "lib.so", "a" * 64)
    assert registry.loads == 0


def test_a_library_that_registers_nothing_is_refused(tmp_path: Path, monkeypatch) -> None:
    from nuwa.runtime.backends.tensorrt import engine_build

    monkeypatch.setattr(engine_build, "_REGISTERED_LIBRARIES", {})
    registry = types.SimpleNamespace(
        get_creator=lambda *a: None, load_library=lambda path: object()
    )
    with pytest.raises(engine_build.EngineBuildError, match="did not register nuwa::"):
        engine_build.register_plugin_library(registry, tmp_path / "lib.so", "a" * 64)


@pytest.mark.parametrize("cache_dtype", ["float32", "float16"])
def test_cache_buffers_take_the_graphs_cache_dtype(tiny_tensorrt: Path, cache_dtype: str) -> None:
    d = json.loads((tiny_tensorrt / "manifest.json").read_text())
    past = set()
    for graph in d["graphs"].values():
        for t in graph["inputs"]:
            if t["name"].startswith("past_key_values."):
                t["dtype"] = cache_dtype
                past.add(t["name"])
    backend = object.__new__(trt_backend.TensorRTBackend)
    backend.manifest = Manifest.from_dict(tiny_tensorrt, d)
    backend.cudart, backend.stream = _FakeCudart(), 0
    cache = backend.new_cache(rows=3)
    dec = backend.manifest.decoder
    assert not cache.in_place  # two sets: ping-pong
    assert len(cache.past) == len(cache.present) == len(past) == 2 * dec.num_layers
    for buf in cache.past + cache.present:
        assert buf.dtype == np.dtype(cache_dtype)
        assert buf.nbytes == 3 * dec.num_heads * dec.cache_slots * dec.head_dim * buf.dtype.itemsize


@pytest.mark.parametrize("given", ["file", "folder"])
def test_backend_refuses_engines_of_another_plugin_library(
    tmp_path: Path, tiny_tensorrt: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """NUWA_PLUGINS_LIB (the one name nuwa.plugins reads too: a file or its folder) overrides
    the library engines.json records; a library of another hash is refused."""
    library = tmp_path / "libnuwa_plugins.so"
    library.write_bytes(b"a rebuilt plugin library")
    _metadata(tmp_path, tiny_tensorrt)  # built with a library of SHA-256 000...
    monkeypatch.setenv(environment.PLUGINS_LIB, str(library if given == "file" else tmp_path))
    monkeypatch.setattr(
        trt_backend, "_import_tensorrt", lambda: types.SimpleNamespace(__version__="10.14.1")
    )
    monkeypatch.setattr(trt_backend, "_gpu_identity", lambda index: dict(H100))
    with pytest.raises(EngineMismatchError, match="another plugin library.*nuwa build-engine"):
        trt_backend.TensorRTBackend(tmp_path, precision="fp16")


def test_engine_cache_key_covers_version_gpu_precision_and_plugin(
    tmp_path: Path, tiny_tensorrt: Path
) -> None:
    meta = _metadata(tmp_path, tiny_tensorrt)
    base = engine_cache_key("10.14.1", H100, "fp16", "0" * 64)
    assert meta.cache_key == base and len(base) == 16
    assert json.loads((tmp_path / ENGINES_FILE).read_text())["cache_key"] == base
    others = {
        engine_cache_key("10.3.0", H100, "fp16", "0" * 64),
        engine_cache_key("10.14.1", ORIN, "fp16", "0" * 64),
        engine_cache_key("10.14.1", {**H100, "compute_capability": "9.1"}, "fp16", "0" * 64),
        engine_cache_key("10.14.1", H100, "int8", "0" * 64),
        engine_cache_key("10.14.1", H100, "fp16", "1" * 64),
    }
    assert base not in others and len(others) == 5
    with pytest.raises(EngineMismatchError, match="are fp16, not int8"):
        check_compatible(meta, "10.14.1", H100, "int8")
    data = json.loads((tmp_path / ENGINES_FILE).read_text())
    data["tensorrt_version"] = "10.3.0"  # edited by hand: the key no longer matches
    (tmp_path / ENGINES_FILE).write_text(json.dumps(data))
    with pytest.raises(EngineMetadataError, match="cache_key .* does not match"):
        load_metadata(tmp_path)
