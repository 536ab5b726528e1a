"""Under greedy decoding the C API's tokens and frames equal the Python runtime's
(``nuwa.runtime.Pipeline`` on ONNX Runtime, one thread, ``temperature=0``), guidance rows
included; the frame callback sees every frame as the result holds it."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

from . import capi

DEMO_EXPORT = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "onnx"

# (task, prompts, num_frames (0: the default), batch, guidance)
TINY_CASES = [
    ("t2i", ["a red square"], 0, 1, 1.0),
    ("t2i", ["a red square", "  Two  BLUE\tcircles "], 0, 2, 2.0),
    ("t2v", ["a ball moves left"], 0, 1, 1.0),
    ("t2v", ["a ball moves left"], 2, 1, 3.0),
    ("t2v", ["a ball moves left", "green"], 5, 1, 2.0),  # past the 3 trained frames: ring slides
]
DEMO_CASES = [
    ("t2i", ["a red square"], 0, 1, 2.0),
    ("t2v", ["a red square moves left"], 0, 1, 2.0),  # the 8 trained frames
    ("t2v", ["a blue circle moves right"], 10, 1, 1.0),  # past the trained frames
]


def python_pipeline(export_dir: Path) -> Pipeline:
    return Pipeline(
        OnnxRuntimeBackend.from_model_dir(export_dir, device="cpu", threads=1), progress=False
    )


def check_parity(
    lib: ctypes.CDLL,
    model: ctypes.c_void_p,
    pipe: Pipeline,
    task: str,
    prompts: list[str],
    num_frames: int,
    batch: int,
    guidance: float,
) -> None:
    request, _keep = capi.make_request(
        lib, task, [p.encode() for p in prompts], num_frames, batch, 0.0, guidance
    )
    got = capi.generate(lib, model, request)
    want = pipe(
        task,
        prompts if len(prompts) > 1 else prompts[0],
        num_frames=num_frames or None,
        batch=batch,
        temperature=0.0,
        guidance_scale=guidance,
    )
    assert got.tokens.shape == want.tokens.shape
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.frames, want.frames)
    assert sorted(got.streamed) == list(range(want.frames.shape[1]))
    for frame, pixels in got.streamed.items():
        np.testing.assert_array_equal(pixels, got.frames[:, frame])


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_export_dir: Path) -> Pipeline:
    return python_pipeline(tiny_export_dir)


def case_id(case: tuple) -> str:
    task, prompts, frames, batch, guidance = case
    return f"{task}-p{len(prompts)}-f{frames}-b{batch}-g{guidance}"


@pytest.mark.parametrize("case", TINY_CASES, ids=case_id)
def test_tiny_greedy_equals_python(lib, tiny_c_model, tiny_pipeline, case) -> None:
    check_parity(lib, tiny_c_model, tiny_pipeline, *case)


@pytest.mark.slow
@pytest.mark.parametrize("case", DEMO_CASES, ids=case_id)
def test_demo_greedy_equals_python(lib, case) -> None:
    model = capi.open_model(lib, DEMO_EXPORT, threads=1)
    try:
        check_parity(lib, model, python_pipeline(DEMO_EXPORT), *case)
    finally:
        lib.nuwa_close(model)


def test_version_and_abi(lib, runtime_lib_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    cmake = (root / "CMakeLists.txt").read_text()
    version = cmake.split("project(nuwa_plugins VERSION ", 1)[1].split()[0]
    assert lib.nuwa_version().decode() == version
    header = (root / "include" / "nuwa" / "nuwa.h").read_text()
    abi = int(header.split("#define NUWA_ABI_VERSION ", 1)[1].split()[0])
    assert lib.nuwa_abi_version() == abi
    # the SONAME carries the ABI version: libnuwa_runtime.so -> libnuwa_runtime.so.<abi>
    assert runtime_lib_path.resolve().name.startswith(f"libnuwa_runtime.so.{abi}.")


def test_model_info(lib, tiny_c_model, tiny_pipeline) -> None:
    info = capi.ModelInfo()
    info.struct_size = ctypes.sizeof(capi.ModelInfo)
    capi.check(lib, lib.nuwa_model_get_info(tiny_c_model, ctypes.byref(info)))
    spec = tiny_pipeline.spec
    got = (info.image_size, info.frames, info.grid_h, info.grid_w, info.vocab_size)
    assert got == (spec.image_size, spec.frames, spec.grid_h, spec.grid_w, spec.image_vocab_size)
    assert info.max_prompt_bytes == spec.max_prompt_bytes


def test_callback_stops_generation(lib, tiny_c_model) -> None:
    request, _keep = capi.make_request(lib, "t2v", [b"a ball"], 3)
    shape = capi.OutputShape()
    capi.check(
        lib, lib.nuwa_request_shape(tiny_c_model, ctypes.byref(request), ctypes.byref(shape))
    )
    frames = np.zeros(shape.frame_bytes, dtype=np.uint8)
    seen: list[int] = []

    def stop_after_first(_user: object, frame: int, _pixels: object, _rows: int, _size: int) -> int:
        seen.append(frame)
        return 1

    callback = capi.FRAME_CALLBACK(stop_after_first)
    status = capi.generate_into(lib, tiny_c_model, request, frames, callback=callback)
    assert status == capi.NUWA_ERROR_CANCELLED
    assert seen == [0]
    assert lib.nuwa_last_error().decode() == "cancelled by the frame callback"
