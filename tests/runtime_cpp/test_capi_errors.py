"""Bad input through the C API: a status code and the Python runtime's one-line message (taken
from the Python runtime itself, not written here), never a crash; nothing the caller owns is
written when a request is refused."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.manifest import ManifestError, load_manifest

from . import capi

# (id, C request arguments, the Python call's arguments): each is a NuwaInputError in Python
BAD_REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("unknown task", {"task": "t2x", "prompts": [b"a"]}, {"task": "t2x", "prompt": "a"}),
    ("empty prompt", {"task": "t2i", "prompts": [b""]}, {"task": "t2i", "prompt": ""}),
    ("blank prompt", {"task": "t2v", "prompts": [b" \t\n "]}, {"task": "t2v", "prompt": " \t\n "}),
    ("no prompt", {"task": "t2i", "prompts": None}, {"task": "t2i", "prompt": None}),
    (
        "empty second prompt",
        {"task": "t2i", "prompts": [b"a", b"   "]},
        {"task": "t2i", "prompt": ["a", "   "]},
    ),
    (
        "long prompt",
        {"task": "t2i", "prompts": [b"x" * 500]},
        {"task": "t2i", "prompt": "x" * 500},
    ),
    (
        "not utf-8",
        {"task": "t2i", "prompts": [b"ab\xffc"]},
        {"task": "t2i", "prompt": b"ab\xffc"},
    ),
    (
        "bad num_frames",
        {"task": "t2v", "prompts": [b"a"], "num_frames": -2},
        {"task": "t2v", "prompt": "a", "num_frames": -2},
    ),
    (
        "num_frames of an image",
        {"task": "t2i", "prompts": [b"a"], "num_frames": 2},
        {"task": "t2i", "prompt": "a", "num_frames": 2},
    ),
    (
        "too many frames",
        {"task": "t2v", "prompts": [b"a"], "num_frames": 50_000_000},
        {"task": "t2v", "prompt": "a", "num_frames": 50_000_000},
    ),
    (
        "bad batch",
        {"task": "t2i", "prompts": [b"a"], "batch": 0},
        {"task": "t2i", "prompt": "a", "batch": 0},
    ),
    (
        "negative guidance",
        {"task": "t2i", "prompts": [b"a"], "guidance_scale": -1.0},
        {"task": "t2i", "prompt": "a", "guidance_scale": -1.0},
    ),
    (
        "guidance of an unguided task",
        {"task": "v2v", "prompts": None, "guidance_scale": 2.5},
        {"task": "v2v", "guidance_scale": 2.5},
    ),
    (
        "temperature nan",
        {"task": "t2i", "prompts": [b"a"], "temperature": float("nan")},
        {"task": "t2i", "prompt": "a", "temperature": float("nan")},
    ),
    (
        "negative temperature",
        {"task": "t2i", "prompts": [b"a"], "temperature": -0.5},
        {"task": "t2i", "prompt": "a", "temperature": -0.5},
    ),
]


def python_message(pipe: Pipeline, call: dict[str, Any]) -> str:
    call = dict(call)
    task = call.pop("task")
    call.setdefault("temperature", 0.0)  # the C request's defaults (nuwa_request_init)
    if task != "v2v":
        call.setdefault("guidance_scale", 1.0)
    with pytest.raises(NuwaInputError) as caught:
        pipe.prepare(task, **call)
    return str(caught.value)


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_export_dir: Path) -> Pipeline:
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)
    return Pipeline(backend, progress=False)


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_has_python_message(lib, tiny_c_model, tiny_pipeline, case) -> None:
    _, c_args, py_args = case
    want = python_message(tiny_pipeline, py_args)
    request, _keep = capi.make_request(lib, **c_args)
    shape = capi.OutputShape()
    status = lib.nuwa_request_shape(tiny_c_model, ctypes.byref(request), ctypes.byref(shape))
    assert (status, lib.nuwa_last_error().decode()) == (capi.NUWA_ERROR_INPUT, want)
    frames = np.full(64, 7, dtype=np.uint8)  # refused before anything is written
    status = capi.generate_into(lib, tiny_c_model, request, frames)
    assert (status, lib.nuwa_last_error().decode()) == (capi.NUWA_ERROR_INPUT, want)
    assert (frames == 7).all()


def test_missing_directory(lib, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-export"
    with pytest.raises(NuwaInputError) as caught:
        Pipeline.from_pretrained(missing)
    with pytest.raises(capi.CApiError) as got:
        capi.open_model(lib, missing)
    assert (got.value.status, str(got.value)) == (capi.NUWA_ERROR_INPUT, str(caught.value))


def test_directory_without_manifest(lib, tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    with pytest.raises(capi.CApiError) as got:
        capi.open_model(lib, tmp_path)
    assert (got.value.status, str(got.value)) == (capi.NUWA_ERROR_MODEL, str(caught.value))


def test_bad_manifest_is_an_error_not_a_crash(lib, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "nuwa-onnx", "format_version": 1')
    with pytest.raises(capi.CApiError) as got:
        capi.open_model(lib, tmp_path)
    assert got.value.status == capi.NUWA_ERROR_MODEL
    assert "manifest.json is not valid JSON" in str(got.value)
    (tmp_path / "manifest.json").write_text('{"format": "nuwa-onnx", "format_version": 1}')
    with pytest.raises(capi.CApiError) as got:
        capi.open_model(lib, tmp_path)
    assert got.value.status == capi.NUWA_ERROR_MODEL
    assert "manifest.json is malformed" in str(got.value)


def test_null_arguments_and_small_buffers(lib, tiny_c_model) -> None:
    handle = ctypes.c_void_p()
    assert lib.nuwa_open(None, None, ctypes.byref(handle)) == capi.NUWA_ERROR_INPUT
    assert handle.value is None
    request, _keep = capi.make_request(lib, "t2i", [b"a"])
    null = ctypes.POINTER(ctypes.c_uint8)()
    status = lib.nuwa_generate(
        None, ctypes.byref(request), null, 0, None, 0, capi.FRAME_CALLBACK(), None
    )
    assert status == capi.NUWA_ERROR_INPUT
    assert lib.nuwa_last_error().decode() == "nuwa_generate: model and request must not be NULL"
    frames = np.zeros(10, dtype=np.uint8)
    status = capi.generate_into(lib, tiny_c_model, request, frames)
    assert status == capi.NUWA_ERROR_INPUT
    assert lib.nuwa_last_error().decode().startswith("the frames buffer holds 10 bytes;")
    lib.nuwa_close(None)  # closing nothing is fine


def test_error_message_is_per_thread(lib, tiny_c_model) -> None:
    import threading

    request, _keep = capi.make_request(lib, "t2x", [b"a"])
    shape = capi.OutputShape()
    lib.nuwa_request_shape(tiny_c_model, ctypes.byref(request), ctypes.byref(shape))
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(lib.nuwa_last_error().decode()))
    thread.start()
    thread.join()
    assert seen == [""]
    assert lib.nuwa_last_error().decode().startswith("unknown task 't2x'")
