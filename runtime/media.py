"""Reading and writing pictures and clips: PNG, GIF and MP4 in, PNG / GIF / MP4 out, and contact
sheets for videos. Pillow for PNG/GIF, imageio with imageio-ffmpeg for MP4. NumPy at the edges:
images ``uint8 (H, W, 3)``, clips ``uint8 (T, H, W, 3)``, masks ``bool (H, W)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from nuwa.spec.errors import NuwaInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".gif", ".mp4")
OUTPUT_SUFFIXES = (".png", ".gif", ".mp4")
DEFAULT_FPS = 4.0


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a directory (a file given as a
    directory: ``notes.txt/x.png``), else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_input_file(path: str | Path, what: str) -> Path:
    """``path`` names a readable file; else a one-line :class:`NuwaInputError` saying which
    way it is wrong (a directory, a file used as a directory, missing)."""
    path = Path(path)
    if path.is_dir():
        raise NuwaInputError(f"{what} {path} is a directory, not a file")
    if not path.exists():
        blocker = _file_in_the_way(path)
        if blocker is not None:
            raise NuwaInputError(f"{what} {path}: {blocker} is a file, not a directory")
        raise NuwaInputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise NuwaInputError(f"{what} {path} is not a regular file")
    return path


def check_input_directory(path: str | Path, what: str) -> Path:
    """``path`` names a directory; else a one-line :class:`NuwaInputError` (a file, missing)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise NuwaInputError(f"{what} {path} is a file, not a directory")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise NuwaInputError(f"{what} {path}: {blocker} is a file, not a directory")
    raise NuwaInputError(f"{what} {path} does not exist")


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """An image file -> ``uint8 (H, W, 3)`` RGB (transparency composited on black)."""
    path = Path(path)
    check_input_file(path, what)
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NuwaInputError(f"cannot read {what} {path}: not a readable image ({exc})") from exc


def read_frames(path: str | Path, what: str = "video") -> np.ndarray:
    """A GIF, MP4 or still image -> ``uint8 (T, H, W, 3)``."""
    path = Path(path)
    check_input_file(path, what)
    if path.suffix.lower() == ".mp4":
        try:
            import imageio.v3 as iio

            frames = np.asarray(iio.imread(path, index=None))
        except Exception as exc:  # imageio raises many types for a bad file
            raise NuwaInputError(f"cannot read {what} {path}: not a readable MP4 ({exc})") from exc
        if frames.ndim != 4 or frames.shape[-1] < 3 or frames.shape[0] == 0:
            raise NuwaInputError(f"cannot read {what} {path}: no RGB frames found")
        return np.ascontiguousarray(frames[..., :3], dtype=np.uint8)
    try:
        with Image.open(path) as img:
            frames = [_to_rgb(f.copy()) for f in ImageSequence.Iterator(img)]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NuwaInputError(f"cannot read {what} {path}: not a readable image ({exc})") from exc
    return np.stack(frames)


def read_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """A mask image -> ``bool (H, W)``: True where a pixel is bright (> ``threshold`` in grey,
    the model's input rules) or, for an image with transparency, where it is opaque and bright."""
    path = Path(path)
    check_input_file(path, "mask")
    try:
        with Image.open(path) as img:
            img.load()
            grey = np.asarray(img.convert("L"), dtype=np.uint8)
            if "A" in img.getbands():
                grey = np.where(np.asarray(img.getchannel("A")) > 127, grey, 0)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NuwaInputError(f"cannot read mask {path}: not a readable image ({exc})") from exc
    return grey > threshold


def resize_frames(frames: np.ndarray, size: int, resample: str = "bicubic") -> np.ndarray:
    """Resize ``(..., H, W, 3)`` uint8 to ``size x size`` with ``resample`` (bicubic, bilinear or
    nearest: the model's input rules); a no-op at that size."""
    if frames.shape[-3:-1] == (size, size):
        return frames
    method = Image.Resampling[resample.upper()]
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = [np.asarray(Image.fromarray(f).resize((size, size), method)) for f in flat]
    return np.stack(out).reshape(*frames.shape[:-3], size, size, 3)


def resize_labels(maps: np.ndarray, size: int) -> np.ndarray:
    """Resize label maps ``(..., H, W)`` (sketch class ids) to ``size x size`` by nearest
    neighbour, so every value stays one of the given labels; a no-op at that size."""
    height, width = maps.shape[-2:]
    if (height, width) == (size, size):
        return maps
    rows = ((np.arange(size) + 0.5) * height / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * width / size).astype(np.int64)
    return maps[..., rows[:, None], cols[None, :]]


def check_fps(fps: object) -> float:
    """Frames per second of a written video: a finite number > 0."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise NuwaInputError(f"fps must be a number, got {type(fps).__name__} {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise NuwaInputError(f"fps must be a finite number > 0, got {fps}")
    return float(fps)


def contact_sheet(frames: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` side by side in a grid (``columns`` default: up to 8), on grey."""
    t, h, w, c = frames.shape
    columns = columns or min(t, 8)
    rows = math.ceil(t / columns)
    sheet = np.full(
        (rows * h + (rows + 1) * pad, columns * w + (columns + 1) * pad, c), 128, np.uint8
    )
    for i, frame in enumerate(frames):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        sheet[y : y + h, x : x + w] = frame
    return sheet


def write_image(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path


def write_video(path: str | Path, frames: np.ndarray, fps: float = DEFAULT_FPS) -> Path:
    """``(T, H, W, 3)`` -> ``.gif`` (looping), ``.mp4`` (H.264) or ``.png`` (contact sheet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    fps = check_fps(fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    if suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            path,
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
            optimize=False,
        )
    elif suffix == ".mp4":
        import imageio.v2 as imageio

        with imageio.get_writer(
            path, fps=fps, codec="libx264", quality=8, macro_block_size=16, format="FFMPEG"
        ) as writer:
            for f in frames:
                writer.append_data(f)
    elif suffix == ".png":
        write_image(path, contact_sheet(frames))
    else:
        raise NuwaInputError(
            f"cannot write {path}: the output must end in one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    return path


def check_output_path(path: str | Path) -> Path:
    """An output file name: a PNG/GIF/MP4 suffix, not a directory, under a directory (or one
    that can be made: no file in the way)."""
    path = Path(path)
    if path.is_dir():
        raise NuwaInputError(f"output {path} is a directory, not a file (name the file to write)")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise NuwaInputError(
            f"output {path} must end in one of {', '.join(OUTPUT_SUFFIXES)} (PNG, GIF or MP4)"
        )
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise NuwaInputError(f"output {path}: {blocker} is a file, not a directory")
    return path
