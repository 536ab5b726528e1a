"""The TensorRT engine cache with fakes (no TensorRT or GPU here): ``load_backend("tensorrt",
DIR)`` on an engine directory, a ``tensorrt`` export or a checkpoint (through the export cache,
or its bundled ``tensorrt`` export). The builder, TensorRT's version, the GPU and the CUDA
runtime are replaced; the cache entry, its key, the atomic first-use build and the refusals are
the real code."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path
from typing import Any

import pytest

from nuwa.runtime import backends
from nuwa.runtime.backends.tensorrt import backend as trt_backend
from nuwa.runtime.backends.tensorrt import engine_build, engine_cache
from nuwa.runtime.backends.tensorrt.engines_json import (
    ENGINES_FILE,
    EngineInfo,
    EngineMetadata,
    engine_cache_key,
    load_metadata,
    write_metadata,
)
from nuwa.runtime.export_cache import BUNDLED_EXPORT_DIR, bundled_export, export_dir_for, model_key
from nuwa.spec import environment
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import MANIFEST_FILE, load_manifest, sha256_file

H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
ORIN = {"name": "Orin", "compute_capability": "8.7"}


class _FakeTensorRT:
    """The few TensorRT names the backend touches once its checks pass."""

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    def __init__(self, version: str) -> None:
        self.__version__ = version

    def init_libnvinfer_plugins(self, logger: object, namespace: str) -> None:
        pass

    def Runtime(self, logger: object) -> object:  # noqa: N802 - TensorRT's name
        return object()


class _Machine:
    """This machine as the backend sees it: TensorRT version, GPU, and the builder's record."""

    def __init__(self) -> None:
        self.version = "10.3.0"
        self.gpu: dict[str, Any] = dict(ORIN)
        self.builder_gpu: dict[str, Any] | None = None  # the GPU the builder sees (default gpu)
        self.fail = False
        self.builds: list[dict[str, Any]] = []
        self.exports: list[dict[str, Any]] = []

    def build_engines(
        self,
        onnx_dir: Path,
        plugin_lib: Path,
        out_dir: Path,
        opts: engine_build.BuildOptions | None = None,
        log: Any = None,
    ) -> EngineMetadata:
        """``build_engines`` as far as the cache sees it: engine files, then ``engines.json``."""
        self.builds.append({"onnx_dir": Path(onnx_dir), "out_dir": Path(out_dir), "opts": opts})
        manifest = load_manifest(onnx_dir)
        out_dir = Path(out_dir)
        engines = {}
        for name in manifest.graphs:
            (out_dir / f"{name}.engine").write_bytes(f"plan of {name}".encode())
            engines[name] = EngineInfo(
                name, f"{name}.engine", sha256_file(out_dir / f"{name}.engine"), []
            )
            if self.fail:  # TensorRT gives up half way, after writing an engine
                raise engine_build.EngineBuildError(f"TensorRT failed to build {name}.onnx")
        meta = EngineMetadata(
            tensorrt_version=self.version,
            gpu=dict(self.builder_gpu or self.gpu),
            plugin={"library": str(plugin_lib), "sha256": sha256_file(plugin_lib), "version": "1"},
            precision=manifest.precision,
            build={"strongly_typed": True, "timing_cache": opts.timing_cache if opts else None},
            onnx_manifest=json.loads((Path(onnx_dir) / MANIFEST_FILE).read_text()),
            engines=engines,
        )
        write_metadata(out_dir, meta)
        return meta


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Machine:
    """A GPU machine with TensorRT as far as the backend can tell, a plugin library in
    ``$NUWA_PLUGINS_LIB`` and an empty cache of its own."""
    m = _Machine()
    monkeypatch.setenv(environment.CACHE_DIR, str(tmp_path / "cache"))
    library = tmp_path / "libnuwa_plugins.so"
    library.write_bytes(b"plugin build 1")
    monkeypatch.setenv(environment.PLUGINS_LIB, str(library))
    monkeypatch.setattr(trt_backend, "_import_tensorrt", lambda: _FakeTensorRT(m.version))
    monkeypatch.setattr(trt_backend, "_gpu_identity", lambda index: dict(m.gpu))
    fake_cudart = types.SimpleNamespace(
        cudaSetDevice=lambda index: (0,), cudaStreamCreate=lambda: (0, 7)
    )
    monkeypatch.setattr(trt_backend, "cudart", lambda: fake_cudart)
    monkeypatch.setattr(trt_backend.TensorRTBackend, "_load_plugin", lambda self, trt, lib: None)
    monkeypatch.setattr(engine_build, "build_engines", m.build_engines)
    return m


def _plugin() -> Path:
    return Path(str(environment.value(environment.PLUGINS_LIB)))


def _entry(export: Path, m: _Machine, precision: str = "fp32") -> Path:
    key = engine_cache_key(m.version, m.gpu, precision, sha256_file(_plugin()))
    return environment.cache_dir() / "engines" / f"{model_key(export)[:16]}-{key}"


def _entries() -> list[str]:
    """Every name in the engine cache but the timing caches: entries and leftovers alike."""
    root = environment.cache_dir() / "engines"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    return [n for n in names if not n.startswith("timing-")]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_first_use_builds_into_the_cache_and_later_uses_reuse_it(
    tiny_tensorrt: Path, machine: _Machine
) -> None:
    notes: list[str] = []
    first = trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt, log=notes.append)
    entry = _entry(tiny_tensorrt, machine)
    assert first.directory == entry
    assert _entries() == [entry.name]
    assert [b["onnx_dir"] for b in machine.builds] == [tiny_tensorrt]
    built_in = machine.builds[0]["out_dir"]
    assert built_in.parent == entry.parent and built_in != entry and not built_in.exists()
    key = entry.name.split("-", 1)[1]
    assert machine.builds[0]["opts"].timing_cache == str(entry.parent / f"timing-{key}.cache")
    assert len(notes) == 1
    assert notes[0].startswith(f"building TensorRT engines for {tiny_tensorrt} in {entry}: ")
    assert "first use on this GPU" in notes[0] and notes[0].endswith("later runs reuse them")
    meta = load_metadata(entry)
    assert meta.cache_key == key and set(meta.engines) == set(load_manifest(tiny_tensorrt).graphs)
    assert first.manifest.graphs == load_manifest(tiny_tensorrt).graphs  # the export's facts

    second = trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt, log=notes.append)
    assert second.directory == entry
    assert len(machine.builds) == 1 and len(notes) == 1


def test_load_backend_takes_an_export_through_the_cache(
    tiny_tensorrt: Path, machine: _Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "can_run", lambda name: (True, "installed"))
    backend = backends.load_backend("tensorrt", tiny_tensorrt)
    assert isinstance(backend, trt_backend.TensorRTBackend)
    assert backend.directory == _entry(tiny_tensorrt, machine)
    assert len(machine.builds) == 1


def test_an_engine_directory_is_used_as_it_is(
    tmp_path: Path, tiny_tensorrt: Path, machine: _Machine
) -> None:
    engines = tmp_path / "engines"
    engines.mkdir()
    machine.build_engines(tiny_tensorrt, _plugin(), engines)
    backend = trt_backend.TensorRTBackend.from_model_dir(engines)
    assert backend.directory == engines
    assert len(machine.builds) == 1 and _entries() == []


def test_another_gpu_tensorrt_or_plugin_gets_its_own_entry(
    tiny_tensorrt: Path, machine: _Machine
) -> None:
    dirs = [trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt).directory]
    machine.gpu = dict(H100)
    dirs.append(trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt).directory)
    machine.version = "10.14.1"
    dirs.append(trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt).directory)
    _plugin().write_bytes(b"plugin build 2")
    dirs.append(trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt).directory)
    assert len(machine.builds) == 4 and len(set(dirs)) == 4
    assert _entries() == sorted(d.name for d in dirs)
    prefix = model_key(tiny_tensorrt)[:16]
    assert all(d.name.startswith(prefix + "-") for d in dirs)
    for d in dirs:  # each entry holds what its name says
        meta = load_metadata(d)
        assert d.name == f"{prefix}-{meta.cache_key}"
    # every entry is reused: nothing is built again
    machine.gpu, machine.version = dict(ORIN), "10.3.0"
    _plugin().write_bytes(b"plugin build 1")
    assert trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt).directory == dirs[0]
    assert len(machine.builds) == 4


def test_another_precision_gets_its_own_entry(
    tmp_path: Path, tiny_tensorrt: Path, machine: _Machine
) -> None:
    plugin_sha = sha256_file(_plugin())
    fp32 = engine_cache.engine_dir_for(tiny_tensorrt, "10.3.0", ORIN, "fp32", plugin_sha)
    fp16 = engine_cache.engine_dir_for(tiny_tensorrt, "10.3.0", ORIN, "fp16", plugin_sha)
    assert fp32 != fp16 and fp32.name[:16] == fp16.name[:16]
    # an fp16 export (its manifest says so; the fake builder reads nothing else)
    export = tmp_path / "fp16_export"
    shutil.copytree(tiny_tensorrt, export)
    raw = json.loads((export / MANIFEST_FILE).read_text())
    raw["precision"] = "fp16"
    (export / MANIFEST_FILE).write_text(json.dumps(raw))
    a = trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt, precision="fp32")
    b = trt_backend.TensorRTBackend.from_model_dir(export, precision="fp16")
    assert b.directory == _entry(export, machine, "fp16") != a.directory
    assert load_metadata(b.directory).precision == "fp16" and b.precision == "fp16"
    assert len(machine.builds) == 2


def test_a_failed_build_leaves_no_entry(tiny_tensorrt: Path, machine: _Machine) -> None:
    machine.fail = True
    with pytest.raises(BackendUnavailableError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt)
    assert _one_line(exc).startswith("TensorRT failed to build")
    assert _entries() == []  # neither an entry nor the half-built directory
    machine.fail = False
    backend = trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt)
    assert backend.directory == _entry(tiny_tensorrt, machine)
    assert len(machine.builds) == 2


def test_engines_built_for_another_gpu_are_not_cached(
    tiny_tensorrt: Path, machine: _Machine
) -> None:
    machine.builder_gpu = dict(H100)  # the builder ran on another GPU than the one asked for
    with pytest.raises(BackendUnavailableError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt)
    assert "on NVIDIA H100 80GB HBM3, not TensorRT 10.3.0 on Orin" in _one_line(exc)
    assert _entries() == []


def test_a_portable_export_is_refused_in_one_line(tiny_portable: Path, machine: _Machine) -> None:
    with pytest.raises(NuwaInputError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_portable)
    assert "is a portable export" in _one_line(exc)
    assert "nuwa export --target tensorrt" in str(exc.value)
    assert machine.builds == [] and _entries() == []


def test_a_precision_the_export_does_not_hold_is_refused_in_one_line(
    tiny_tensorrt: Path, tiny_model_dir: Path, machine: _Machine
) -> None:
    with pytest.raises(NuwaInputError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt, precision="fp16")
    assert "is fp32, not fp16: ask for --precision fp32" in _one_line(exc)
    with pytest.raises(BackendUnavailableError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_model_dir, precision="int8")
    assert "precision int8 on tensorrt needs a converted export" in _one_line(exc)
    assert machine.builds == [] and _entries() == []


def test_other_directories_and_devices_are_refused(tmp_path: Path, machine: _Machine) -> None:
    with pytest.raises(NuwaInputError, match="not a TensorRT engine directory .*checkpoint"):
        trt_backend.TensorRTBackend.from_model_dir(tmp_path)
    with pytest.raises(NuwaInputError, match="cuda devices, not 'cpu'"):
        trt_backend.TensorRTBackend.from_model_dir(tmp_path, device="cpu")
    with pytest.raises(NuwaInputError, match="index must be a number"):
        trt_backend.TensorRTBackend.from_model_dir(tmp_path, device="cuda:x")


def test_a_missing_plugin_library_is_the_clear_message(
    tmp_path: Path, tiny_tensorrt: Path, machine: _Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "libnuwa_plugins.so"
    monkeypatch.setenv(environment.PLUGINS_LIB, str(missing))
    monkeypatch.setattr("nuwa.plugins.library.candidate_paths", lambda: [missing])
    with pytest.raises(BackendUnavailableError) as exc:
        trt_backend.TensorRTBackend.from_model_dir(tiny_tensorrt)
    assert f"libnuwa_plugins.so not found (looked at {missing})" in _one_line(exc)
    assert machine.builds == [] and _entries() == []


def test_a_checkpoint_goes_through_the_tensorrt_export_cache(
    tiny_model_dir: Path, tiny_tensorrt: Path, machine: _Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def export_model(model_dir: Path, out: Path, target: str = "portable", **kw: Any) -> None:
        """The exporter as far as the cache sees it: the session's tensorrt export, copied."""
        machine.exports.append({"model_dir": Path(model_dir), "out": Path(out), "target": target})
        assert target == "tensorrt"
        shutil.copytree(tiny_tensorrt, out)

    monkeypatch.setattr("nuwa.export.exporter.export_model", export_model)
    notes: list[str] = []
    backend = trt_backend.TensorRTBackend.from_model_dir(tiny_model_dir, log=notes.append)
    export = export_dir_for(tiny_model_dir, "tensorrt")
    assert export.name.split("-")[1] == "tensorrt"
    assert machine.exports == [{"model_dir": tiny_model_dir, "out": export, "target": "tensorrt"}]
    assert [b["onnx_dir"] for b in machine.builds] == [export]
    assert backend.directory == _entry(export, machine)
    assert notes[0].startswith(f"exporting {tiny_model_dir} to ONNX in {export}")
    assert notes[1].startswith(f"building TensorRT engines for {export} in {backend.directory}")
    assert not export_dir_for(tiny_model_dir).exists()  # the portable entry is not touched
    again = trt_backend.TensorRTBackend.from_model_dir(tiny_model_dir, log=notes.append)
    assert again.directory == backend.directory
    assert len(machine.exports) == 1 and len(machine.builds) == 1 and len(notes) == 2
    assert ENGINES_FILE in {p.name for p in backend.directory.iterdir()}


def test_a_checkpoint_bundling_its_tensorrt_export_builds_from_it(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_portable: Path,
    tiny_tensorrt: Path,
    machine: _Machine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_export(*args: Any, **kw: Any) -> None:
        raise AssertionError("a bundled export of the right target is not exported again")

    monkeypatch.setattr("nuwa.export.exporter.export_model", no_export)
    portable = tmp_path / "portable_bundle"
    shutil.copytree(tiny_model_dir, portable)
    shutil.copytree(tiny_portable, portable / BUNDLED_EXPORT_DIR)
    assert bundled_export(portable) == portable / BUNDLED_EXPORT_DIR  # ONNX Runtime's, as before
    assert bundled_export(portable, "tensorrt") is None  # not the graphs engines are built from

    model = tmp_path / "tensorrt_bundle"
    shutil.copytree(tiny_model_dir, model)
    shutil.copytree(tiny_tensorrt, model / BUNDLED_EXPORT_DIR)
    assert bundled_export(model, "tensorrt") == model / BUNDLED_EXPORT_DIR
    assert bundled_export(model) is None
    backend = trt_backend.TensorRTBackend.from_model_dir(model)
    assert [b["onnx_dir"] for b in machine.builds] == [model / BUNDLED_EXPORT_DIR]
    assert backend.directory == _entry(model / BUNDLED_EXPORT_DIR, machine)
    assert not (environment.cache_dir() / "onnx").exists()  # nothing exported
