"""The C++ runtime built with AddressSanitizer + UBSan (``-DNUWA_RUNTIME_SANITIZE=ON``): the
example app (a C++ process, so leak checking covers everything the library allocates) runs good
requests and bad ones on the tiny and demo exports, and exports with a broken graph (an error on
the decode loop's worker thread, one on the calling thread mid-call); any leak, out-of-bounds
access or undefined behaviour fails the run. Slow: the sanitized build takes about a minute."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.spec.sketch_palette import SKETCH_PALETTE

from .conftest import SANITIZED_BUILD_DIR, build_library

DEMO_EXPORT = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "onnx"
SANITIZERS = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=98",
}


@pytest.fixture(scope="module")
def sanitized_app() -> Path:
    app = build_library(SANITIZED_BUILD_DIR, sanitize=True).parent / "nuwa_generate"
    assert app.is_file(), "examples/cpp/nuwa_generate was not built (libpng-dev missing?)"
    return app


def run_app(app: Path, args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SANITIZERS)
    done = subprocess.run(
        [str(app), *args, "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in done.stderr, done.stderr[-4000:]
    assert done.returncode in (0, 1, 2), done.stderr[-4000:]  # 1: a device refused
    return done


def pictures(folder: Path) -> dict[str, str]:
    """PNG inputs: a tiny (16x16) sketch, image, two video frames, a mask; a 64x64 demo frame
    pair; a sketch with colours outside the palette; an image of another size."""
    rng = np.random.default_rng(0)
    classes = np.zeros((16, 16), dtype=np.int64)
    classes[3:10, 4:12] = 2
    bad = SKETCH_PALETTE[classes].copy()
    bad[0, 0] = (10, 200, 30)
    mask = np.zeros((16, 16, 3), dtype=np.uint8)
    mask[8:, :] = 255
    demo = np.zeros((64, 64, 3), dtype=np.uint8)
    demo[8:24, 4:20] = (255, 0, 0)
    arrays = {
        "sketch": SKETCH_PALETTE[classes],
        "bad_sketch": bad,
        "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "frame0": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "frame1": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "mask": mask,
        "small": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "demo0": demo,
        "demo1": np.roll(demo, 3, axis=1),
    }
    out = {}
    for name, array in arrays.items():
        out[name] = str(folder / f"{name}.png")
        Image.fromarray(array.astype(np.uint8)).save(out[name])
    alpha_mask = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    out["alpha_mask"] = str(folder / "alpha_mask.png")
    Image.fromarray(alpha_mask, "RGBA").save(out["alpha_mask"])
    return out


@pytest.mark.slow
def test_sanitized_runs(sanitized_app: Path, tiny_export_dir: Path, tmp_path: Path) -> None:
    tiny = str(tiny_export_dir)
    png = pictures(tmp_path)
    video = ["--video", png["frame0"], "--video", png["frame1"]]
    good = [
        [tiny, "t2v", "a ball moves left", "--frames", "5", "--guidance", "2", "--batch", "2",
         "--gif", "4"],
        [tiny, "t2i", "ＡＢ İ ﬁ ΟΔΟΣ 東 😀", "--device", "CPU:0"],  # NFKC, lower case (ICU)
        [tiny, "s2v", "--sketch", png["sketch"], "--frames", "3", "--guidance", "2"],
        [tiny, "i2i", "--image", png["image"], "--mask", "0,8,16,16", "--batch", "2"],
        [tiny, "ti2i", "a red square", "--image", png["image"], "--mask", png["mask"],
         "--guidance", "2"],
        [tiny, "v2v", *video, "--frames", "5"],  # 2 frames prefilled
        [tiny, "tv2v", "a ball", *video, "--mask", png["mask"], "--guidance", "1.5"],
        [tiny, "i2i", "--image", png["image"], "--mask", png["alpha_mask"]],  # RGBA: luma, alpha
        [tiny, "i2i", "--image", png["small"], "--mask", "0,0,4,4"],  # 8x8: resized
        [str(DEMO_EXPORT), "t2v", "a red square moves left", "--guidance", "2"],
        [str(DEMO_EXPORT), "t2i", "a blu sqare at the centr", "--guidance", "2"],  # warned
        [str(DEMO_EXPORT), "v2v", "--video", png["demo0"], "--video", png["demo1"], "--frames",
         "3"],
    ]  # fmt: skip
    for i, args in enumerate(good):
        done = run_app(sanitized_app, args, tmp_path / f"good{i}")
        assert done.returncode == 0 and done.stdout.count(".png") >= 1
        assert done.stdout.count(".gif") == (2 if "--gif" in args else 0)
        assert ("warning: the model never saw" in done.stderr) == ("sqare" in args[2])
    bad = [
        [tiny, "t2x", "a"],
        [tiny, "t2i", ""],
        [tiny, "t2v", "a", "--frames", "-1"],
        [str(tmp_path / "missing"), "t2i", "a"],
        [tiny, "s2i", "--sketch", png["bad_sketch"]],
        [tiny, "i2i", "--image", png["image"], "--mask", "16,0,20,8"],
        [tiny, "i2i", "--image", png["image"]],
        [tiny, "v2v", *video, "--frames", "2"],
        [tiny, "i2i", "--image", png["image"], "--mask", str(tmp_path / "notes.png")],  # not PNG
        [tiny, "t2i", "ab\udcffc"],  # not UTF-8
    ]
    (tmp_path / "notes.png").write_text("not a picture")
    for i, args in enumerate(bad):
        done = run_app(sanitized_app, args, tmp_path / f"bad{i}")
        assert done.returncode == 2 and done.stderr.count("error: ") == 1
    for graph_file in ("decoder_step.text.cpu.onnx", "vq_decoder.onnx"):  # fails on the worker
        broken = tmp_path / f"broken_{graph_file}"  # thread / on the calling thread, mid-call
        shutil.copytree(tiny_export_dir, broken)
        (broken / graph_file).write_bytes(b"not an onnx model")
        done = run_app(sanitized_app, [str(broken), "t2v", "a", "--frames", "6"], tmp_path / "bg")
        assert done.returncode == 1 and done.stderr.count("error: ") == 1, done.stderr[-2000:]
        assert f"{graph_file}: Load model from" in done.stderr
    import onnxruntime

    gpu_less = "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    for device in ["gpu", "cuda:x"] + (["cuda:1", "tensorrt"] if gpu_less else []):  # refused
        done = run_app(sanitized_app, [tiny, "t2i", "a", "--device", device], tmp_path / "dev")
        assert done.returncode == 1 and done.stderr.count("error: ") == 1
