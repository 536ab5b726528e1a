"""Picture files in the C++ runtime (nuwa_png_size, nuwa_read_png_rgb, nuwa_read_png_mask,
nuwa_write_png, nuwa_write_gif): random PNGs of every colour type and bit depth read as the Python
runtime reads them (``nuwa.runtime.media.read_image`` / ``read_mask`` through Pillow: the same
pixels, the same mask under the model's threshold, transparency as Python treats it), bad files
with Python's messages, a mask file giving the Python runtime's tokens, and GIFs that Pillow reads
back with the frames, size, timing and loop Python's write_video gives."""

from __future__ import annotations

import ctypes
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.runtime import media
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.input_rules import InputRules

from . import capi, capi_files
from .test_capi_tasks import python_pipeline

# (colour type, bit depths) of the PNG standard: grey, RGB, palette, grey + alpha, RGBA
PNG_KINDS = [(0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_raw_png(
    path: Path, samples: np.ndarray, colour: int, depth: int, **chunks: bytes
) -> None:
    """``samples (H, W, C)`` (values < 2**depth) as a PNG of that colour type and bit depth, with
    extra chunks (PLTE, tRNS) before the data: every kind, also those Pillow cannot write."""
    height, width, _ = samples.shape
    if depth == 16:
        rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    elif depth == 8:
        rows = samples.astype(np.uint8).reshape(height, -1)
    else:
        rows = np.packbits(
            np.unpackbits(samples.astype(np.uint8)[..., None], axis=-1)[..., 8 - depth :].reshape(
                height, -1
            ),
            axis=-1,
        )
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    extra = b"".join(png_chunk(k.encode(), v) for k, v in chunks.items())
    data = png_chunk(b"IHDR", header) + extra + png_chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data + png_chunk(b"IEND", b""))


def random_png(path: Path, rng: np.random.Generator, colour: int, depth: int) -> None:
    height, width = (int(v) for v in rng.integers(1, 24, 2))
    top = 2**depth
    samples = rng.integers(0, top, (height, width, CHANNELS[colour]))
    if rng.random() < 0.3 and colour in (4, 6):  # alpha of mostly 0 / full / near 127, 128
        alpha = rng.choice([0, top - 1, top // 2 - 1, top // 2], (height, width))
        samples[..., -1] = alpha
    chunks: dict[str, bytes] = {}
    if colour == 3:
        entries = int(rng.integers(1, 2**depth + 1))
        chunks["PLTE"] = rng.integers(0, 256, entries * 3, dtype=np.uint8).tobytes()
        samples %= entries
        if rng.random() < 0.6:
            chunks["tRNS"] = rng.integers(
                0, 256, int(rng.integers(1, entries + 1)), np.uint8
            ).tobytes()
    elif colour in (0, 2) and rng.random() < 0.4:  # one transparent colour: no alpha band
        chunks["tRNS"] = struct.pack(">" + "H" * CHANNELS[colour], *samples[0, 0].tolist())
    write_raw_png(path, samples, colour, depth, **chunks)


@pytest.fixture(scope="module")
def files_lib(lib: ctypes.CDLL) -> ctypes.CDLL:
    return capi_files.declare(lib)


@pytest.fixture(scope="module")
def threshold_model(lib, tiny_export_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny export with another mask threshold (input_rules.json) than the built-in 127."""
    export = tmp_path_factory.mktemp("mask_threshold") / "export"
    shutil.copytree(tiny_export_dir, export)
    spec = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1).spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    rules["mask"]["threshold"] = 40
    InputRules.from_dict(rules).save(export)
    model = capi.open_model(lib, export, threads=1)
    yield model
    lib.nuwa_close(model)


@pytest.mark.parametrize("colour,depth", [(c, d) for c, depths in PNG_KINDS for d in depths])
def test_random_pngs_read_as_python_reads_them(
    files_lib, tiny_c_model, threshold_model, tmp_path: Path, colour: int, depth: int
) -> None:
    rng = np.random.default_rng(colour * 100 + depth)
    for i in range(12):
        path = tmp_path / f"p{i}.png"
        random_png(path, rng, colour, depth)
        rgb = capi_files.read_rgb(files_lib, path)
        assert isinstance(rgb, np.ndarray), rgb
        np.testing.assert_array_equal(rgb, media.read_image(path))
        for model, threshold in ((tiny_c_model, 127), (threshold_model, 40)):
            got = capi_files.read_mask(files_lib, model, path)
            assert isinstance(got, np.ndarray), got
            np.testing.assert_array_equal(got, python_mask(path, threshold))


def python_mask(path: Path, threshold: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow: a palette's transparency given as bytes
        return media.read_mask(path, threshold)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16"])
def test_pillow_written_pngs_read_as_python_reads_them(
    files_lib, tiny_c_model, tmp_path: Path, mode: str
) -> None:
    """PNGs as Pillow writes them (what a Python user makes), random pixels, palette and alpha."""
    rng = np.random.default_rng(len(mode))
    for i in range(6):
        size = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        rgba = Image.fromarray(rng.integers(0, 256, (*size, 4), dtype=np.uint8), "RGBA")
        picture = (
            rgba.convert(mode)
            if mode not in ("P", "PA")
            else rgba.convert("RGB").quantize(int(rng.integers(2, 200)))
        )
        if mode == "PA":
            picture.info["transparency"] = bytes(rng.integers(0, 256, 40, dtype=np.uint8))
        path = tmp_path / f"{mode.replace(';', '')}{i}.png"
        picture.save(path)
        np.testing.assert_array_equal(capi_files.read_rgb(files_lib, path), media.read_image(path))
        got = capi_files.read_mask(files_lib, tiny_c_model, path)
        np.testing.assert_array_equal(got, python_mask(path, 127))


def python_error(call: object) -> str:
    with pytest.raises(NuwaInputError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value)


def test_bad_files_have_python_messages(files_lib, tiny_c_model, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    broken = tmp_path / "broken.png"
    random_png(broken, np.random.default_rng(0), 2, 8)
    broken.write_bytes(broken.read_bytes()[:-30])  # the data cut short
    cases = [tmp_path / "missing.png", tmp_path, text / "x.png"]
    for path in cases:  # whole messages: the file's checks
        assert capi_files.read_mask(files_lib, tiny_c_model, path) == python_error(
            lambda path=path: media.read_mask(path)
        )
        assert capi_files.read_rgb(files_lib, path, "video") == python_error(
            lambda path=path: media.read_image(path, "video")
        )
    for path in (text, broken):  # unreadable: the message up to the decoder's own words
        got = capi_files.read_mask(files_lib, tiny_c_model, path)
        want = python_error(lambda path=path: media.read_mask(path))
        assert isinstance(got, str) and got.split(" (")[0] == want.split(" (")[0], (got, want)
    small = np.zeros(3, dtype=np.uint8)
    random_png(broken, np.random.default_rng(1), 0, 8)
    status = files_lib.nuwa_read_png_rgb(str(broken).encode(), b"image", capi_files.u8(small), 3)
    assert capi_files.failure(files_lib, status)[0] == capi.NUWA_ERROR_INPUT


def test_mask_file_gives_python_s_tokens(
    lib, files_lib, tiny_c_model, tiny_export_dir: Path, task_inputs, tmp_path: Path
) -> None:
    """i2i with a mask PNG whose alpha and luma decide (the brightest channel would not):
    nuwa_read_png_mask's mask through the C API, the path through the Python runtime."""
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[2:9, 3:12] = (250, 20, 20, 255)  # brightest 250, luma 91: keep
    rgba[9:14, 1:10] = (30, 240, 60, 255)  # luma 155: generate
    rgba[0:4, 10:16] = (255, 255, 255, 100)  # white but transparent: keep
    path = tmp_path / "mask.png"
    Image.fromarray(rgba, "RGBA").save(path)
    mask = capi_files.read_mask(files_lib, tiny_c_model, path)
    assert isinstance(mask, np.ndarray) and mask.sum() == 5 * 9
    request, _keep = capi.make_request(lib, "i2i", None, image=task_inputs["image"], mask=mask)
    got = capi.generate(lib, tiny_c_model, request)
    want = python_pipeline(tiny_export_dir)(
        task="i2i", image=task_inputs["image"], mask=str(path), temperature=0.0
    )
    np.testing.assert_array_equal(got.tokens, want.tokens)


def write_gif(lib: ctypes.CDLL, path: Path, frames: np.ndarray, fps: float) -> tuple | None:
    data = np.ascontiguousarray(frames, dtype=np.uint8)
    count, height, width = (int(v) for v in data.shape[:3])
    status = lib.nuwa_write_gif(str(path).encode(), capi_files.u8(data), count, height, width, fps)
    return capi_files.failure(lib, status)


def gif_frames(path: Path) -> tuple[np.ndarray, dict]:
    with Image.open(path) as img:
        info = {"n_frames": img.n_frames, "size": img.size, "duration": img.info.get("duration"),
                "loop": img.info.get("loop")}  # fmt: skip
        return media.read_frames(path), info


@pytest.mark.parametrize("fps", [4.0, 7.0, 0.5, 3000.0])
def test_gif_of_few_colours_is_exact(files_lib, tmp_path: Path, fps: float) -> None:
    rng = np.random.default_rng(int(fps))
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    frames = palette[rng.integers(0, 200, (5, 20, 13))]
    assert write_gif(files_lib, tmp_path / "c.gif", frames, fps) is None
    got, info = gif_frames(tmp_path / "c.gif")
    media.write_video(tmp_path / "py.gif", frames, fps=fps)
    _, want = gif_frames(tmp_path / "py.gif")
    assert info == want  # frame count, size, duration, loop: Python's
    np.testing.assert_array_equal(got, frames)


def test_gif_of_many_colours_is_close(files_lib, tmp_path: Path) -> None:
    """More than 256 colours a frame: giflib's median cut (5 bits a channel) and two k-means
    rounds on smooth frames, about as close as Pillow's quantiser."""
    y, x = np.mgrid[0:32, 0:32]
    frames = np.stack(
        [np.stack([x * 8, y * 8, (x + y + 6 * t) * 3 % 256], -1) for t in range(4)]
    ).astype(np.uint8)
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 256
    assert write_gif(files_lib, tmp_path / "m.gif", frames, 4.0) is None
    got, info = gif_frames(tmp_path / "m.gif")
    assert (info["n_frames"], info["size"]) == (4, (32, 32))
    error = np.abs(got.astype(int) - frames.astype(int))
    media.write_video(tmp_path / "py.gif", frames, fps=4.0)  # Pillow's own quantiser
    pillow = np.abs(media.read_frames(tmp_path / "py.gif").astype(int) - frames.astype(int))
    # measured: giflib + refinement 3.86 mean, 27 max; Pillow 3.27, 16
    assert error.mean() <= 1.25 * pillow.mean() and error.max() <= 32, (error.mean(), error.max())


def test_gif_bad_arguments(files_lib, tmp_path: Path) -> None:
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert write_gif(files_lib, tmp_path / "a.gif", frames, 0.0) == (
        capi.NUWA_ERROR_INPUT,
        python_error(lambda: media.check_fps(0.0)),
    )
    assert write_gif(files_lib, tmp_path / "a.gif", frames, float("nan")) == (
        capi.NUWA_ERROR_INPUT,
        python_error(lambda: media.check_fps(float("nan"))),
    )
    status, message = write_gif(files_lib, tmp_path / "no" / "dir" / "a.gif", frames, 4.0)
    assert status == capi.NUWA_ERROR_INPUT and message.startswith("cannot write ")
