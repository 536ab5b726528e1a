"""Inputs that are used after a one-line warning (resized, clipped), the CLI's warning and seed
lines, and the limits named before any work (cache directory, non-UTF-8 arguments, the memory
estimate). All on the tiny test model; the refused inputs are test_bad_input.py's."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from nuwa.cli import main
from nuwa.runtime import Pipeline
from nuwa.runtime.limits import MAX_REQUEST_BYTES
from nuwa.runtime.media import write_image
from nuwa.runtime.tasks import sketch_class_maps
from nuwa.spec.errors import NuwaInputError, NuwaInputWarning


@pytest.fixture(scope="module")
def pipe(tiny_export_dir) -> Pipeline:
    return Pipeline.from_pretrained(tiny_export_dir, progress=False)


def _warnings(call: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, NuwaInputWarning)]


def test_every_input_of_another_size_is_resized_with_a_warning(pipe, task_inputs) -> None:
    """One rule for images, videos, masks and sketches: resized to the model's size, warned."""
    big = np.repeat(np.repeat(task_inputs["image"], 2, axis=0), 2, axis=1)  # 32x32
    mask = np.zeros((32, 32), bool)
    mask[:, 16:] = True
    clip = np.repeat(np.repeat(task_inputs["video"], 2, axis=1), 2, axis=2)
    small_sketch = task_inputs["sketch_ids"][0][::2, ::2]  # 8x8 class ids
    cases = [
        (lambda: pipe.prepare("i2i", image=big, mask=(16, 0, 32, 32)), ["the image is 32x32"]),
        (
            lambda: pipe.prepare("i2i", image=task_inputs["image"], mask=mask),
            ["the mask is 32x32 pixels; scaled to the model's 16x16"],
        ),
        (lambda: pipe.prepare("v2v", video=clip[:1]), ["the video is 32x32"]),
        (
            lambda: pipe.prepare("tv2v", "a", video=clip, mask=(0, 0, 16, 32)),
            ["the video is 32x32"],
        ),
        (lambda: pipe.prepare("s2i", sketch=small_sketch), ["the sketch is 8x8 pixels; resized"]),
    ]
    for call, expected in cases:
        messages = _warnings(call)
        assert len(messages) == len(expected), messages
        for message, part in zip(messages, expected, strict=True):
            assert part in message, message
    # the same region as the input given at the model's size
    with pytest.warns(NuwaInputWarning):
        a = pipe.prepare("i2i", image=big, mask=(16, 0, 32, 32))
    b = pipe.prepare("i2i", image=big[::2, ::2], mask=(8, 0, 16, 16))
    np.testing.assert_array_equal(a.plan.known_mask, b.plan.known_mask)
    with pytest.warns(NuwaInputWarning):  # nearest: each class id stays, 2x2 per pixel
        maps = sketch_class_maps(small_sketch, pipe.spec, video=False)
    np.testing.assert_array_equal(maps[0], small_sketch.repeat(2, axis=0).repeat(2, axis=1))


def test_a_rectangle_partly_outside_is_clipped_with_a_note(pipe, task_inputs) -> None:
    image = task_inputs["image"]
    messages = _warnings(lambda: pipe.prepare("i2i", image=image, mask=(-4, 8, 40, 20)))
    assert messages == [
        "mask rectangle -4,8,40,20 reaches outside the 16x16 input; using the part inside: "
        "0,8,16,16"
    ]
    clipped = pipe.prepare("i2i", image=image, mask=(0, 8, 16, 16))
    with pytest.warns(NuwaInputWarning):
        outside = pipe.prepare("i2i", image=image, mask=(-4, 8, 40, 20))
    np.testing.assert_array_equal(clipped.plan.known_mask, outside.plan.known_mask)


def test_cli_prints_warnings_as_one_line_and_the_seed_with_no_progress(
    tiny_export_dir, tmp_path, capsys
) -> None:
    big = tmp_path / "big.png"
    write_image(big, np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / "out.png"
    argv = ["--image", str(big), "--mask=-4,0,8,40", "-o", str(out)]  # (= before a minus)
    rc = main(["generate", *argv, "--model", str(tiny_export_dir), "--seed", "7", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert lines[0] == (
        "nuwa generate: warning: mask rectangle -4,0,8,40 reaches outside the 32x32 input; "
        "using the part inside: 0,0,8,32"
    )
    assert (
        lines[1]
        == "nuwa generate: warning: the image is 32x32 pixels; resized to the model's 16x16"
    )
    assert "seed 7" in lines[2] and len(lines) == 3, err  # the seed line, also with --no-progress
    assert out.is_file()
    rc = main(
        [
            "generate",
            "p",
            "-o",
            str(tmp_path / "t.png"),
            "--model",
            str(tiny_export_dir),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and ", seed " in err, err  # a fresh seed is printed too


def test_an_unwritable_cache_dir_is_named(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """(Made unwritable by stubbing os.access: these tests may run as root, who writes anyway.)"""
    import nuwa.runtime.export_cache as export_cache

    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(export_cache.os, "access", lambda path, mode: False)
    with pytest.raises(NuwaInputError, match=r"NUWA_CACHE_DIR=.*/cache is not writable: set"):
        Pipeline.from_pretrained(tiny_model_dir, progress=False)


def test_a_non_utf8_argument_in_a_real_process(tiny_export_dir, tmp_path) -> None:
    """The bytes of a command line that is not UTF-8 reach the prompt check as such."""
    argv = [sys.executable, "-m", "nuwa.cli", "generate", b"caf\xe9"]
    argv += ["--model", str(tiny_export_dir), "-o", str(tmp_path / "a.gif"), "--no-progress"]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().strip() == (
        "nuwa generate: error: the prompt is not valid UTF-8: byte 0xe9 at position 3 "
        "(pass the text in UTF-8)"
    )


def test_the_memory_estimate_and_its_boundary(pipe) -> None:
    """The ring-cache term is what RingCache allocates (the obvious reference); a request at
    the reported limit is taken, one more row or frame is refused."""
    from nuwa.runtime.kv_cache import RingCache
    from nuwa.runtime.limits import check_request_size, request_bytes, ring_cache_bytes

    spec = pipe.spec
    assert ring_cache_bytes(spec, 3) == RingCache.zeros(spec, 3).nbytes
    for guided in (False, True):
        rows = MAX_REQUEST_BYTES // request_bytes(spec, 1, spec.frames, guided)
        check_request_size(spec, 1, rows, spec.frames, guided)  # fits
        with pytest.raises(NuwaInputError, match=f"or batch {rows} at {spec.frames} frames"):
            check_request_size(spec, 1, rows + 1, spec.frames, guided)
        frames = next(
            f
            for f in range(10**6, 10**9, 10**6)
            if request_bytes(spec, 2, f, guided) > MAX_REQUEST_BYTES
        )
        with pytest.raises(NuwaInputError, match=r"at most \d+ frames at batch 2") as info:
            check_request_size(spec, 1, 2, frames, guided)
        most = int(str(info.value).split("at most ")[1].split(" ")[0])
        check_request_size(spec, 1, 2, most, guided)
        with pytest.raises(NuwaInputError):
            check_request_size(spec, 1, 2, most + 1, guided)
