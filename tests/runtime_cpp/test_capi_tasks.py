"""All eight tasks through the C API under greedy decoding: tokens and frames equal the Python
runtime's (``nuwa.runtime.Pipeline`` on ONNX Runtime, one thread, ``temperature=0``) with its
inputs — sketches as palette RGB or class ids, images, videos, masks as rectangles or pictures —
guidance rows, forced tokens and the video prefix through ``decoder_prefill`` included; the
model directory's ``input_rules.json`` (palette snapping, mask threshold) read as Python reads
it; streamed frames (a prefix's frames included) as the result holds them."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.input_rules import InputRules
from nuwa.spec.sketch_palette import SKETCH_PALETTE

from . import capi

DEMO_EXPORT = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "onnx"


def python_pipeline(export_dir: Path) -> Pipeline:
    """The Python runtime on ``export_dir`` with the directory's input rules (the built-in ones
    without a file), one thread."""
    backend = OnnxRuntimeBackend.from_model_dir(export_dir, device="cpu", threads=1)
    rules = InputRules.load(export_dir)
    return Pipeline(backend, progress=False, input_rules=rules)


def check_parity(lib: ctypes.CDLL, model: ctypes.c_void_p, pipe: Pipeline, call: dict) -> None:
    """``call``: the Python runtime's keyword arguments (task, prompt, inputs, num_frames, batch,
    guidance_scale); the C request is the same."""
    request, _keep = capi.request_for_call(lib, call, temperature=0.0)
    got = capi.generate(lib, model, request)
    want = pipe(**call, temperature=0.0)
    assert got.tokens.shape == want.tokens.shape
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.frames, want.frames)
    assert sorted(got.streamed) == list(range(want.frames.shape[1]))
    for frame, pixels in got.streamed.items():
        np.testing.assert_array_equal(pixels, got.frames[:, frame])


def tiny_cases(inputs: dict[str, np.ndarray]) -> list[tuple[str, dict[str, Any]]]:
    image, video = inputs["image"], inputs["video"]
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    picture[3:9, 5:14] = (200, 90, 40)  # brightest channel over 127: generate
    picture[10:12, 0:4] = (100, 120, 60)  # under it: keep
    four = np.concatenate([video, video[:1]])  # 4 frames: past the tiny model's 3
    return [
        ("s2i rgb", {"task": "s2i", "sketch": inputs["sketch_rgb"][0], "guidance_scale": 2.0}),
        ("s2i ids batch", {"task": "s2i", "sketch": inputs["sketch_ids"][1], "batch": 2,
                           "guidance_scale": 1.0}),
        ("s2v rgb", {"task": "s2v", "sketch": inputs["sketch_rgb"], "guidance_scale": 2.5}),
        ("s2v one frame held", {"task": "s2v", "sketch": inputs["sketch_ids"][:1],
                                "num_frames": 2, "guidance_scale": 1.0}),
        ("s2v past trained", {"task": "s2v", "sketch": inputs["sketch_ids"], "num_frames": 5,
                              "guidance_scale": 2.0}),
        ("i2i rect", {"task": "i2i", "image": image, "mask": (0, 8, 16, 16)}),
        ("i2i rect clipped", {"task": "i2i", "image": image, "mask": "-3,-2,7,9", "batch": 2}),
        ("i2i picture", {"task": "i2i", "image": image, "mask": picture}),
        ("i2i bool mask 8x8", {"task": "i2i", "image": image,
                               "mask": np.eye(8, dtype=bool)}),  # another size: any-pixel rule
        ("ti2i", {"task": "ti2i", "prompt": "a red square", "image": image,
                  "mask": (4, 4, 12, 12), "guidance_scale": 2.0}),
        ("ti2i prompts batch", {"task": "ti2i", "prompt": ["red", "a blue circle"], "image": image,
                                "mask": picture, "batch": 2, "guidance_scale": 1.5}),
        ("v2v one frame", {"task": "v2v", "video": video[:1]}),
        ("v2v two frames batch", {"task": "v2v", "video": video[:2], "num_frames": 3, "batch": 2}),
        ("v2v whole window", {"task": "v2v", "video": video, "num_frames": 5}),
        ("v2v prefix past trained", {"task": "v2v", "video": four, "num_frames": 6}),
        ("tv2v", {"task": "tv2v", "prompt": "a ball", "video": video, "mask": (8, 0, 16, 16),
                  "guidance_scale": 2.0}),
        ("tv2v frames", {"task": "tv2v", "prompt": "a ball", "video": video, "mask": picture,
                         "num_frames": 2, "guidance_scale": 1.0}),
    ]  # fmt: skip


CASE_IDS = [c[0] for c in tiny_cases({k: np.zeros((3, 16, 16, 3), np.uint8) for k in
                                      ("image", "video", "sketch_rgb", "sketch_ids")})]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_export_dir: Path) -> Pipeline:
    return python_pipeline(tiny_export_dir)


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_tiny_task_greedy_equals_python(
    lib, tiny_c_model, tiny_pipeline, task_inputs, index: int
) -> None:
    _, call = tiny_cases(task_inputs)[index]
    check_parity(lib, tiny_c_model, tiny_pipeline, call)


@pytest.mark.parametrize(
    ("given", "frames", "decodes"),
    [(2, 3, 2), (4, 6, 3)],  # 4 given: 3 (the trained frames) prefilled, 1 stepped
)
def test_prefix_goes_through_decoder_prefill(
    lib, tiny_c_model, task_inputs, given: int, frames: int, decodes: int
) -> None:
    """The stats count the graph runs: the whole given frames in one decoder_prefill run (up to
    the trained frames), then one step per position left; the prefix's frames decoded in one
    VQ run, then each new frame."""
    video = np.concatenate([task_inputs["video"]] * 2)[:given]
    request, _keep = capi.make_request(lib, "v2v", None, frames, 1, 0.0, None, video=video)
    capi.generate(lib, tiny_c_model, request)
    stats = capi.last_stats(lib)
    tokens_per_frame = 16  # the tiny model's 4x4 grid
    decoded_positions = (frames - given) * tokens_per_frame
    stepped_prefix = max(0, given - 3) * tokens_per_frame
    assert stats.step_runs == stepped_prefix + decoded_positions
    text_encoder, vq_encoder, prefill = 1, 1, 1
    assert stats.ort_runs == text_encoder + vq_encoder + prefill + stats.step_runs + decodes
    assert 0 < stats.step_seconds <= stats.ort_seconds
    # the steps run on one thread within the call; the VQ decoder's runs on the calling thread
    # may overlap them, so all runs together stay within two threads' time
    assert stats.step_seconds <= stats.total_seconds
    assert stats.ort_seconds <= 2 * stats.total_seconds


def test_input_rules_from_the_model_directory(lib, tiny_export_dir: Path, tmp_path, task_inputs):
    """A directory's input_rules.json is read: palette colours within its snapping distance
    snap, and its mask threshold decides a mask picture's pixels (both as Python reads them)."""
    export = tmp_path / "export"
    shutil.copytree(tiny_export_dir, export)
    backend = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1)
    spec = backend.spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    rules["sketch"]["snap_distance"] = 30.0
    rules["mask"]["threshold"] = 200
    InputRules.from_dict(rules).save(export)
    sketch = task_inputs["sketch_rgb"][0].astype(np.int16)
    # near a palette colour, not on it
    sketch[sketch[..., 0] == 255] -= np.array([20, 0, 0], dtype=np.int16)
    sketch = sketch.clip(0, 255).astype(np.uint8)
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    picture[2:9, 3:11] = 180  # under 200: kept
    picture[9:15, 6:16] = 230  # over it: generated
    pipe = python_pipeline(export)
    model = capi.open_model(lib, export, threads=1)
    try:
        check_parity(lib, model, pipe, {"task": "s2i", "sketch": sketch, "guidance_scale": 2.0})
        image = task_inputs["image"]
        check_parity(lib, model, pipe, {"task": "i2i", "image": image, "mask": picture})
    finally:
        lib.nuwa_close(model)


def demo_inputs() -> dict[str, np.ndarray]:
    """64x64 inputs in the demo's palette: a square sketch (its edge anti-aliased within the
    snapping distance), a video of a red square moving right, an image."""
    classes = np.zeros((64, 64), dtype=np.int64)
    classes[20:40, 10:30] = 1
    sketch = SKETCH_PALETTE[classes].astype(np.uint8)
    sketch[20, 10:30] = (230, 70, 60)  # within 48 of square's (255, 64, 64)
    video = np.zeros((8, 64, 64, 3), dtype=np.uint8)
    for t in range(8):
        video[t, 8:24, 4 + 3 * t : 20 + 3 * t] = (255, 0, 0)
    return {"sketch": sketch, "video": video}


DEMO_CASES = ["s2i", "s2v", "i2i", "v2v", "ti2i", "tv2v"]  # (t2i, t2v: test_capi_parity)


@pytest.mark.slow
@pytest.mark.parametrize("task", DEMO_CASES)
def test_demo_task_greedy_equals_python(lib, task: str) -> None:
    inputs = demo_inputs()
    call = {
        "s2i": {"task": "s2i", "sketch": inputs["sketch"], "guidance_scale": 2.0},
        "s2v": {"task": "s2v", "sketch": inputs["sketch"], "num_frames": 3, "guidance_scale": 2.0},
        "i2i": {"task": "i2i", "image": inputs["video"][0], "mask": (0, 0, 32, 64)},
        "tv2v": {"task": "tv2v", "prompt": "a red square moves left", "video": inputs["video"],
                 "mask": (0, 0, 32, 64), "num_frames": 3, "guidance_scale": 2.0},
        "v2v": {"task": "v2v", "video": inputs["video"][:2], "num_frames": 4},
        "ti2i": {"task": "ti2i", "prompt": "a green circle", "image": inputs["video"][0],
                 "mask": (32, 32, 64, 64), "guidance_scale": 2.0},
    }[task]  # fmt: skip
    model = capi.open_model(lib, DEMO_EXPORT, threads=1)
    try:
        check_parity(lib, model, python_pipeline(DEMO_EXPORT), call)
    finally:
        lib.nuwa_close(model)
