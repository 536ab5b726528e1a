"""``nuwa generate``: valid outputs, and the error table — every bad input ends as one line on
stderr and exit code 2, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.cli import build_parser, main
from nuwa.runtime import backends
from nuwa.runtime.generate_cli import infer_task
from nuwa.runtime.media import write_image
from nuwa.spec.generation_config import GENERATION_CONFIG_FILE, GenerationConfig


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["generate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def read_gif(path: Path) -> list[np.ndarray]:
    frames = []
    with Image.open(path) as img:
        assert img.format == "GIF"
        for i in range(img.n_frames):
            img.seek(i)
            frames.append(np.asarray(img.convert("RGB")))
    return frames


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_generate_writes_a_gif_and_a_contact_sheet(
    backend: str, tiny_model_dir, tiny_export_dir, tmp_path: Path, capsys
) -> None:
    model = tiny_model_dir if backend == "torch" else tiny_export_dir
    out = tmp_path / "out.gif"
    args = ["a red square moves left", "-o", str(out), "--model", str(model)]
    rc, stdout, err = run_cli([*args, "--backend", backend, "--seed", "0", "--no-progress"], capsys)
    assert rc == 0, err
    frames = read_gif(out)
    assert len(frames) == 3 and frames[0].shape == (16, 16, 3)
    assert Image.open(tmp_path / "out.sheet.png").size[0] > 3 * 16
    assert str(out) in stdout


def test_task_follows_from_the_inputs_and_the_suffix() -> None:
    parser = build_parser()
    cases = [
        (["p", "-o", "a.gif"], "t2v"),
        (["p"], "t2v"),
        (["p", "-o", "a.png"], "t2i"),
        (["--sketch", "s.png", "-o", "a.png"], "s2i"),
        (["--sketch", "s.png", "-o", "a.mp4"], "s2v"),
        (["--image", "i.png", "--mask", "0,0,1,1"], "i2i"),
        (["p", "--image", "i.png", "--mask", "0,0,1,1"], "ti2i"),
        (["--video", "v.gif"], "v2v"),
        (["p", "--video", "v.gif", "--mask", "m.png"], "tv2v"),
        (["p", "--task", "T2I", "-o", "a.gif"], "t2i"),
    ]
    for argv, task in cases:
        assert infer_task(parser.parse_args(["generate", *argv])) == task, argv


def test_onnxruntime_exports_a_checkpoint_once_into_the_cache(
    tiny_model_dir, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    args = ["a red square", "-o", str(tmp_path / "a.png"), "--model", str(tiny_model_dir)]
    rc, _, err = run_cli([*args, "--seed", "0", "--no-progress"], capsys)
    assert rc == 0, err
    assert "exporting" in err
    manifests = list((tmp_path / "cache").rglob("manifest.json"))
    assert len(manifests) == 1
    rc, _, err = run_cli([*args, "--seed", "0", "--no-progress"], capsys)
    assert rc == 0 and "exporting" not in err
    first = np.asarray(Image.open(tmp_path / "a.png"))
    assert first.shape == (16, 16, 3)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, task_inputs) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    write_image(d / "small_sketch.png", task_inputs["sketch_rgb"][0][:8, :8])
    odd = task_inputs["sketch_rgb"][0].copy()
    odd[0, 0] = (1, 2, 3)
    write_image(d / "odd_colours.png", odd)
    write_image(d / "image.png", task_inputs["image"])
    write_image(d / "black_mask.png", np.zeros((16, 16, 3), dtype=np.uint8))
    return d


ERROR_TABLE = [
    ("unknown task", ["p", "--task", "x2y"], "unknown task 'x2y'"),
    ("empty prompt", [""], "the prompt is empty"),
    ("blank prompt", ["   "], "the prompt is empty"),
    ("over-long prompt", ["a" * 60], "at most 47 bytes"),
    ("missing image", ["--image", "{d}/nope.png", "--mask", "0,0,8,8"], "does not exist"),
    ("corrupt image", ["--image", "{d}/corrupt.png", "--mask", "0,0,8,8"], "not a readable"),
    ("sketch colours", ["--sketch", "{d}/odd_colours.png"], "outside the palette"),
    ("empty rect mask", ["--image", "{d}/image.png", "--mask", "4,4,4,9"], "selects nothing"),
    ("rect outside", ["--image", "{d}/image.png", "--mask", "20,20,30,30"], "selects nothing"),
    (
        "black mask png",
        ["--image", "{d}/image.png", "--mask", "{d}/black_mask.png"],
        "selects nothing",
    ),
    ("bad rect text", ["--image", "{d}/image.png", "--mask", "left half"], "rectangle"),
    ("num-frames 0", ["p", "--num-frames", "0"], "num-frames must be >= 1"),
    ("num-frames < 0", ["p", "--num-frames", "-3"], "num-frames must be >= 1"),
    ("unknown backend", ["p", "--backend", "tflite"], "unknown backend 'tflite'"),
    ("unknown precision", ["p", "--precision", "int4"], "unknown precision 'int4'"),
    (
        "precision not held",
        ["p", "--backend", "onnxruntime", "--precision", "int8"],
        "nuwa quantize",
    ),
    ("backend missing", ["p", "--backend", "tensorrt"], "tensorrt is not installed"),
    ("torch on an export", ["p", "--backend", "torch"], "is an ONNX export"),
    ("unknown device", ["p", "--device", "npu"], "unknown onnxruntime device 'npu'"),
    ("output suffix", ["p", "-o", "{d}/out.jpg"], "must end in one of"),
    ("prompt not taken", ["p", "--task", "v2v", "--video", "{d}/image.png"], "takes no prompt"),
    ("video too long", ["--video", "{d}/image.png", "--num-frames", "1"], "must be larger"),
    ("bad temperature", ["p", "--temperature", "-1"], "temperature must be >= 0"),
    (
        "guidance on v2v",
        ["--video", "{d}/image.png", "--guidance-scale", "3"],
        "v2v (video prediction) takes no classifier-free guidance",
    ),
]


@pytest.mark.parametrize(("case", "argv", "message"), ERROR_TABLE, ids=[c[0] for c in ERROR_TABLE])
def test_error_table(case, argv, message, bad_files, tiny_export_dir, tmp_path, capsys) -> None:
    """On the default backend (onnxruntime) with the tiny model's export."""
    argv = [a.replace("{d}", str(bad_files)) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / ("out.png" if "--image" in argv else "out.gif"))]
    rc, stdout, err = run_cli([*argv, "--model", str(tiny_export_dir), "--no-progress"], capsys)
    assert rc == 2, (case, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nuwa generate: error:"), err
    assert message in lines[0], lines[0]
    assert not list(tmp_path.glob("out*")), "no output on error"


def test_sampling_defaults_come_from_the_models_generation_config(
    tiny_model_dir, tmp_path: Path, capsys
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    GenerationConfig({"temperature": 0.9}, {"t2v": {"top_k": 4, "guidance_scale": 3}}).save(model)
    out = tmp_path / "a.gif"
    args = ["a red square moves left", "-o", str(out), "--model", str(model), "--seed", "0"]
    rc, _, err = run_cli([*args, "--backend", "torch"], capsys)
    assert rc == 0, err
    assert "seed 0, temperature 0.9, top-k 4, guidance 3" in err  # the log line says what ran
    rc, _, err = run_cli(
        [*args, "--backend", "torch", "--top-k", "0", "--temperature", "0"], capsys
    )
    assert rc == 0 and "seed 0, greedy, guidance 3" in err  # flags override; top-k 0 is off

    (model / GENERATION_CONFIG_FILE).write_text('{"defaults": {"temperature": -2}}')
    rc, _, err = run_cli([*args, "--backend", "torch", "--no-progress"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "generation_config.json: defaults.temperature must be >= 0" in err


def test_onnxruntime_missing_is_reported(monkeypatch, tiny_model_dir, tmp_path, capsys) -> None:
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda m: m != "onnxruntime" and real(m))
    rc, _, err = run_cli(
        ["p", "-o", str(tmp_path / "a.gif"), "--model", str(tiny_model_dir)], capsys
    )
    assert rc == 2 and "onnxruntime is not installed: pip install" in err


def test_missing_model_directory(tmp_path, capsys) -> None:
    rc, _, err = run_cli(
        ["p", "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "a.gif")], capsys
    )
    assert rc == 2 and "does not exist" in err


def test_a_real_process_prints_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nuwa.cli", "generate", "p", "--task", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "nuwa generate: error: unknown task 'nope'; choose one of: t2i, s2i, i2i, ti2i, t2v, "
        "s2v, v2v, tv2v"
    )
