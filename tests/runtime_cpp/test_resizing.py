"""Pictures of another size than the model's in the C++ runtime, resized as the Python runtime
resizes them: ``runtime/cpp/pil_resize.cpp`` gives Pillow's pixels exactly (bicubic, bilinear,
nearest; random sizes up and down, random and smooth pictures; the pass order of Pillow 13.0)
and ``resize_labels``' sketch maps; through the C API, off-size images, videos and sketches give
the Python runtime's tokens, frames and warnings under each filter of ``input_rules.json``."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.media import resize_labels
from nuwa.spec.errors import NuwaInputWarning
from nuwa.spec.input_rules import InputRules

from . import capi
from .test_capi_tasks import python_pipeline

ROOT = Path(__file__).resolve().parents[2]
FILTERS = ["bicubic", "bilinear", "nearest"]


@pytest.fixture(scope="module")
def resize_lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """pil_resize.cpp alone (no ONNX Runtime), built with the runtime's float flags."""
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("pil_resize") / "libpil_resize.so"
    sources = [ROOT / "runtime/cpp/pil_resize.cpp", ROOT / "tests/runtime_cpp/pil_resize_shim.cpp"]
    build = ["c++", "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC",
             f"-I{ROOT / 'runtime/cpp'}", *map(str, sources), "-o", str(out)]  # fmt: skip
    subprocess.run(build, check=True)
    lib = ctypes.CDLL(str(out))
    u8, i = ctypes.c_void_p, ctypes.c_int
    lib.resize_rgb.argtypes = [u8, i, i, i, ctypes.c_char_p, u8]
    lib.resize_labels.argtypes = [u8, i, i, i, i, u8]
    return lib


def c_resize(lib: ctypes.CDLL, rgb: np.ndarray, size: int, method: str) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    lib.resize_rgb(
        rgb.ctypes.data, rgb.shape[0], rgb.shape[1], size, method.encode(), out.ctypes.data
    )
    return out


@pytest.mark.parametrize("method", FILTERS)
def test_pixels_are_pillow_s(resize_lib, method: str) -> None:
    rng = np.random.default_rng(FILTERS.index(method))
    for i in range(400):
        height, width = (int(v) for v in rng.integers(1, 130, 2))
        size = int(rng.choice([16, 64, int(rng.integers(1, 100))]))
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if i % 2:  # smooth: rounding near-ties instead of clipping
            rgb = np.clip(np.cumsum(rgb.astype(int) - 128, axis=1) // 6 + 128, 0, 255)
            rgb = rgb.astype(np.uint8)
        want = np.asarray(
            Image.fromarray(rgb).resize((size, size), Image.Resampling[method.upper()])
        )
        got = c_resize(resize_lib, rgb, size, method)
        assert np.array_equal(got, want), (method, height, width, size)


def test_pass_order_is_pillow_s(resize_lib) -> None:
    """Pillow 13.0 resamples vertically first when the height shrinks by more than twice what
    the width does; these sizes sit on both sides of that rule."""
    rng = np.random.default_rng(9)
    for height, width, size in [(83, 73, 64), (80, 73, 64), (82, 73, 64), (66, 35, 16),
                                (53, 37, 16), (80, 42, 64), (19, 6, 64), (48, 47, 16)]:  # fmt: skip
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))
        assert np.array_equal(c_resize(resize_lib, rgb, size, "bicubic"), want)


def test_labels_are_resize_labels(resize_lib) -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        frames, height, width = (int(v) for v in rng.integers(1, 40, 3))
        size = int(rng.integers(1, 40))
        maps = rng.integers(0, 7, (frames, height, width), dtype=np.uint8)
        out = np.zeros((frames, size, size), dtype=np.uint8)
        resize_lib.resize_labels(maps.ctypes.data, frames, height, width, size, out.ctypes.data)
        np.testing.assert_array_equal(out, resize_labels(maps, size))


@pytest.fixture(scope="module", params=FILTERS)
def filtered_export(request, lib, tiny_export_dir: Path, tmp_path_factory):
    """The tiny export whose input rules resize with one filter: (Python pipeline, C model)."""
    export = tmp_path_factory.mktemp(f"resize_{request.param}") / "export"
    shutil.copytree(tiny_export_dir, export)
    spec = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1).spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    rules["resize"] = {"filter": request.param}
    InputRules.from_dict(rules).save(export)
    model = capi.open_model(lib, export, threads=1)
    yield python_pipeline(export), model
    lib.nuwa_close(model)


RNG = np.random.default_rng(4)
SKETCH = np.zeros((2, 21, 13), dtype=np.int64)
SKETCH[:, 5:15, 3:9] = 2
SKETCH[1, 0:4, :] = 4
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("i2i up", {"task": "i2i", "image": RNG.integers(0, 256, (11, 9, 3), np.uint8),
                "mask": (0, 5, 9, 11)}),
    ("ti2i down", {"task": "ti2i", "prompt": "a ball", "image":
                   RNG.integers(0, 256, (40, 23, 3), np.uint8), "mask": (2, 2, 20, 30)}),
    ("v2v tall", {"task": "v2v", "video": RNG.integers(0, 256, (2, 37, 14, 3), np.uint8),
                  "num_frames": 3}),
    ("tv2v wide", {"task": "tv2v", "prompt": "a ball", "video":
                   RNG.integers(0, 256, (2, 12, 30, 3), np.uint8), "mask": (0, 0, 15, 12)}),
    ("s2v ids", {"task": "s2v", "sketch": SKETCH, "num_frames": 2}),
]  # fmt: skip


@pytest.mark.parametrize("case", CALLS, ids=[c[0] for c in CALLS])
def test_off_size_inputs_give_python_s_tokens(lib, filtered_export, case) -> None:
    pipe, model = filtered_export
    call = dict(case[1])
    prompt = call.get("prompt")
    request, _keep = capi.make_request(
        lib, call["task"], None if prompt is None else [prompt.encode()],
        call.get("num_frames") or 0, 1, 0.0, 1.0 if call["task"] != "v2v" else None,
        sketch=call.get("sketch"), image=call.get("image"), video=call.get("video"),
        mask=call.get("mask"),
    )  # fmt: skip
    got = capi.generate(lib, model, request)
    c_warnings = lib.nuwa_last_warnings().decode().split("\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guidance = {} if call["task"] == "v2v" else {"guidance_scale": 1.0}
        want = pipe(**call, temperature=0.0, **guidance)
    py_warnings = [str(w.message) for w in caught if issubclass(w.category, NuwaInputWarning)]
    assert c_warnings == py_warnings and "resized to the model's 16x16" in c_warnings[-1]
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.frames, want.frames)


def test_unknown_filter_is_refused_as_python_refuses_it(
    lib, tiny_export_dir: Path, tmp_path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(tiny_export_dir, export)
    spec = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1).spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    rules["resize"] = {"filter": "lanczos"}
    (export / "input_rules.json").write_text(json.dumps(rules))
    with pytest.raises(Exception) as caught:
        InputRules.load(export)
    want = "resize.filter must be one of ['bicubic', 'bilinear', 'nearest'], got 'lanczos'"
    assert want in str(caught.value)
    options = capi.OpenOptions()
    lib.nuwa_open_options_init(ctypes.byref(options))
    handle = ctypes.c_void_p()
    status = lib.nuwa_open(str(export).encode(), ctypes.byref(options), ctypes.byref(handle))
    assert status == capi.NUWA_ERROR_MODEL
    assert lib.nuwa_last_error().decode().endswith(f"input_rules.json: {want}")
