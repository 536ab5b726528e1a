"""Bad inputs of the picture tasks through the C API: the status and the Python runtime's
one-line message (taken from the Python runtime itself) — missing and unwanted inputs, wrong
sketch colours and class ids, masks that select nothing, frame counts, sampling options.
(Pictures of another size than the model's are resized, not refused: test_resizing.py.)"""

from __future__ import annotations

import ctypes
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.errors import NuwaInputError, NuwaInputWarning

from . import capi

RNG = np.random.default_rng(1)
IMAGE = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
VIDEO = RNG.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
SKETCH_IDS = np.zeros((16, 16), dtype=np.int64)
SKETCH_IDS[4:9, 4:9] = 2
BAD_COLOURS = np.zeros((16, 16, 3), dtype=np.uint8)
BAD_COLOURS[2:5, 2:5] = (10, 200, 30)
BAD_COLOURS[7, 0:6] = np.arange(6)[:, None] * 40 + 5  # six more colours: "and N more"
BAD_IDS = SKETCH_IDS.copy()
BAD_IDS[0, 0] = 7

# (id, the request's arguments: the Python call's, which the C request mirrors)
BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    ("s2i without sketch", {"task": "s2i"}),
    ("s2i with a prompt", {"task": "s2i", "prompt": "a", "sketch": SKETCH_IDS}),
    ("i2i without mask", {"task": "i2i", "image": IMAGE}),
    ("mask without image", {"task": "t2i", "prompt": "a", "mask": (0, 0, 4, 4)}),
    ("image and video", {"task": "tv2v", "prompt": "a", "image": IMAGE, "video": VIDEO,
                         "mask": (0, 0, 4, 4)}),
    ("v2v with a prompt", {"task": "v2v", "prompt": "a", "video": VIDEO}),
    ("ti2i without prompt", {"task": "ti2i", "image": IMAGE, "mask": (0, 0, 4, 4)}),
    ("tv2v without video", {"task": "tv2v", "prompt": "a", "mask": (0, 0, 4, 4)}),
    ("s2v with an image", {"task": "s2v", "sketch": SKETCH_IDS, "image": IMAGE}),
    ("sketch colours", {"task": "s2i", "sketch": BAD_COLOURS}),
    ("sketch class ids", {"task": "s2v", "sketch": BAD_IDS}),
    ("mask wholly outside", {"task": "i2i", "image": IMAGE, "mask": (16, 0, 20, 8)}),
    ("mask left of the frame", {"task": "ti2i", "prompt": "a", "image": IMAGE,
                                "mask": (-9, 0, 0, 8)}),
    ("mask empty", {"task": "i2i", "image": IMAGE, "mask": (5, 5, 5, 9)}),
    ("mask selects nothing", {"task": "i2i", "image": IMAGE,
                              "mask": np.zeros((16, 16), dtype=bool)}),
    ("dark mask picture", {"task": "tv2v", "prompt": "a", "video": VIDEO,
                           "mask": np.full((16, 16, 3), 127, dtype=np.uint8)}),
    ("mask channels", {"task": "i2i", "image": IMAGE, "mask": np.ones((16, 16, 2), np.uint8)}),
    ("image not rgb", {"task": "i2i", "image": IMAGE[..., 0].astype(np.int64),
                       "mask": (0, 0, 4, 4)}),
    ("video not rgb", {"task": "v2v", "video": VIDEO[0, ..., 0].astype(np.int64)}),
    ("sketch of no frames", {"task": "s2v", "sketch": np.zeros((0, 16, 16), np.int64)}),
    ("v2v frames", {"task": "v2v", "video": VIDEO, "num_frames": 3}),
    ("tv2v frames", {"task": "tv2v", "prompt": "a", "video": VIDEO, "mask": (0, 0, 4, 4),
                     "num_frames": 4}),
    ("i2i guidance", {"task": "i2i", "image": IMAGE, "mask": (0, 0, 4, 4),
                      "guidance_scale": 2.0}),
    ("top_k", {"task": "t2i", "prompt": "a", "top_k": -1}),
    ("top_p", {"task": "t2i", "prompt": "a", "top_p": 2.0}),
    ("top_p nan", {"task": "s2i", "sketch": SKETCH_IDS, "top_p": float("nan")}),
]  # fmt: skip


def c_request(lib: ctypes.CDLL, call: dict[str, Any]) -> tuple[capi.Request, object]:
    prompt = call.get("prompt")
    return capi.make_request(
        lib,
        call["task"],
        None if prompt is None else [prompt.encode()],
        call.get("num_frames") or 0,
        1,
        call.get("temperature", 0.0),
        call.get("guidance_scale"),
        top_k=call.get("top_k"),
        top_p=call.get("top_p"),
        sketch=call.get("sketch"),
        image=call.get("image"),
        video=call.get("video"),
        mask=call.get("mask"),
    )


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_export_dir: Path) -> Pipeline:
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)
    return Pipeline(backend, progress=False)


def c_status(lib: ctypes.CDLL, model: ctypes.c_void_p, call: dict[str, Any]) -> tuple[int, str]:
    request, _keep = c_request(lib, call)
    shape = capi.OutputShape()
    status = lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape))
    return status, lib.nuwa_last_error().decode()


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_has_python_message(lib, tiny_c_model, tiny_pipeline, case) -> None:
    call = dict(case[1])
    task = call.pop("task")
    with pytest.raises(NuwaInputError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore", NuwaInputWarning)
        tiny_pipeline.prepare(task, **{"temperature": 0.0, **call})
    want = str(caught.value)
    assert c_status(lib, tiny_c_model, case[1]) == (capi.NUWA_ERROR_INPUT, want)
