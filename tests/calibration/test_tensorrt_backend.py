"""The ``tensorrt`` backend's checks before TensorRT touches an engine, with fake metadata and a
fake ``tensorrt`` module: engines from another TensorRT version or GPU are refused clearly."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest

from nuwa.calibration.engine_metadata import (
    ENGINES_FILE,
    EngineInfo,
    EngineMetadata,
    EngineMetadataError,
    EngineMismatchError,
    check_compatible,
    load_metadata,
    write_metadata,
)
from nuwa.runtime.backends import load_backend
from nuwa.runtime.backends import tensorrt_backend as trt_backend
from nuwa.runtime.errors import BackendUnavailableError, NuwaInputError

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
