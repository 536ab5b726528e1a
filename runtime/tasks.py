"""The eight tasks (DESIGN §3): input checks and the layout of conditions and forced tokens.

| task  | condition            | unconditional (CFG) | forced tokens                          |
|-------|----------------------|---------------------|----------------------------------------|
| t2i   | text                 | empty text          | none                                   |
| t2v   | text                 | empty text          | none                                   |
| s2i   | sketch (1 frame)     | blank sketch        | none                                   |
| s2v   | sketch (Ts frames)   | blank sketch        | none                                   |
| i2i   | empty text           | (no guidance)       | the image outside the mask             |
| ti2i  | edit text            | empty text          | the image outside the region to change |
| v2v   | empty text           | (no guidance)       | the given first frame(s)               |
| tv2v  | edit text            | empty text          | the frames outside the region          |

Pixel masks map to token masks: a token is sampled if any pixel of its patch is masked.
A sketch condition has ``min(num_frames, sketch_frames)`` frames; the given sketch frames are
spread over them (one sketch PNG holds for the whole clip). Video tasks default to the trained
number of frames; more frames slide the decoder's window (DESIGN §5).
Everything here is NumPy; the backend encodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nuwa.model.synthetic_data import rgb_to_sketch
from nuwa.model.tokenizer import ByteTokenizer, PromptError

from .backends.base import Backend, Condition
from .errors import NuwaInputError
from .media import resize_frames
from .spec import ModelSpec


@dataclass(frozen=True)
class TaskInfo:
    name: str
    title: str
    video: bool  # output is a clip
    condition: str  # "text" or "sketch" (what the encoder reads)
    needs: tuple[str, ...]  # required inputs among prompt, sketch, image, mask, video


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("t2i", "text to image", False, "text", ("prompt",)),
        TaskInfo("s2i", "sketch to image", False, "sketch", ("sketch",)),
        TaskInfo("i2i", "image completion", False, "text", ("image", "mask")),
        TaskInfo(
            "ti2i", "text-guided image manipulation", False, "text", ("prompt", "image", "mask")
        ),
        TaskInfo("t2v", "text to video", True, "text", ("prompt",)),
        TaskInfo("s2v", "sketch to video", True, "sketch", ("sketch",)),
        TaskInfo("v2v", "video prediction", True, "text", ("video",)),
        TaskInfo(
            "tv2v", "text-guided video manipulation", True, "text", ("prompt", "video", "mask")
        ),
    )
}

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)


def task_info(task: str) -> TaskInfo:
    info = TASKS.get(str(task).lower())
    if info is None:
        raise NuwaInputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return info


@dataclass
class TaskPlan:
    """What the decode loop runs for one task request."""

    task: str
    cond: Condition
    uncond: Condition | None  # None: the task takes no guidance
    num_frames: int
    known: np.ndarray | None  # (B, N) int64
    known_mask: np.ndarray | None  # (B, N) bool: True = forced
    prompts: list[str]


# ---- inputs --------------------------------------------------------------------------------


def parse_rect(text: str) -> Rect:
    parts = text.split(",")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise NuwaInputError(
            f"mask {text!r} is neither a file nor a rectangle x0,y0,x1,y1 in pixels"
        ) from None
    return x0, y0, x1, y1


def rect_mask(rect: Rect, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = rect
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise NuwaInputError(
            f"mask rectangle {x0},{y0},{x1},{y1} selects nothing inside the {width}x{height} "
            "image (need 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height)"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def pixel_mask_to_tokens(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``bool (H, W)`` -> ``bool (h, w)``: a token is True if any pixel of its patch is."""
    height, width = mask.shape
    h, w = grid
    out = np.zeros((h, w), dtype=bool)
    for i in range(h):
        r0, r1 = (i * height) // h, math.ceil((i + 1) * height / h)
        for j in range(w):
            c0, c1 = (j * width) // w, math.ceil((j + 1) * width / w)
            out[i, j] = bool(mask[r0:r1, c0:c1].any())
    return out


def as_frames(x: np.ndarray, what: str, video: bool) -> np.ndarray:
    """An image ``(H, W, 3)`` or clip ``(T, H, W, 3)`` -> ``(T, H, W, 3)`` uint8."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise NuwaInputError(f"{what} must be RGB (H, W, 3) or frames (T, H, W, 3), got {x.shape}")
    if not video and x.shape[0] != 1:
        x = x[:1]
    if x.dtype != np.uint8:
        raise NuwaInputError(f"{what} must be uint8 RGB, got {x.dtype}")
    return x


def sketch_class_maps(sketch: np.ndarray, spec: ModelSpec, video: bool) -> np.ndarray:
    """A sketch as palette RGB ``([T,] S, S, 3)`` or class ids ``([T,] S, S)`` -> ``(T, S, S)``."""
    s = np.asarray(sketch)
    if s.ndim >= 3 and s.shape[-1] == 3 and s.dtype == np.uint8:
        try:
            s = rgb_to_sketch(s)
        except ValueError as exc:
            raise NuwaInputError(f"sketch: {exc}") from None
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[0] == 0:
        raise NuwaInputError(
            f"a sketch must be (H, W) class ids or (H, W, 3) colours, got {s.shape}"
        )
    size = spec.sketch_size
    if s.shape[1:] != (size, size):
        raise NuwaInputError(
            f"the sketch is {s.shape[2]}x{s.shape[1]} pixels; this model takes {size}x{size} "
            "sketches"
        )
    if not video:
        s = s[:1]
    s = s.astype(np.int64)
    if s.min() < 0 or s.max() >= spec.sketch_classes:
        raise NuwaInputError(
            f"sketch class ids must be in [0, {spec.sketch_classes}), got "
            f"[{int(s.min())}, {int(s.max())}]"
        )
    return s


def spread_frames(maps: np.ndarray, frames: int) -> np.ndarray:
    """Spread a sketch's ``Ts`` frames evenly over ``frames`` condition frames (nearest in time):
    one sketch frame is held for the whole clip; a longer sketch is subsampled."""
    idx = (np.arange(frames) * maps.shape[0]) // frames
    return maps[idx]


# ---- planning ------------------------------------------------------------------------------


def _prompts(prompt: str | list[str] | None, batch: int) -> list[str]:
    if prompt is None:
        raise NuwaInputError("this task needs a prompt")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise NuwaInputError("the prompt is empty")
    return [p for p in prompts for _ in range(batch)]


def _text(backend: Backend, tokenizer: ByteTokenizer, prompts: list[str]) -> Condition:
    try:
        ids = tokenizer.encode_batch(prompts)
    except PromptError as exc:
        raise NuwaInputError(str(exc)) from None
    return backend.text_condition(ids)


def _empty_text(backend: Backend, tokenizer: ByteTokenizer, rows: int) -> Condition:
    return backend.text_condition(np.stack([tokenizer.empty()] * rows))


def plan_task(
    backend: Backend,
    task: str,
    *,
    prompt: str | list[str] | None = None,
    sketch: np.ndarray | None = None,
    image: np.ndarray | None = None,
    mask: np.ndarray | Rect | str | None = None,
    video: np.ndarray | None = None,
    num_frames: int | None = None,
    batch: int = 1,
    guidance: bool = False,
) -> TaskPlan:
    """Check a request's inputs and lay out its conditions and forced tokens.

    ``mask``: ``bool (H, W)`` in the input image's pixels (True = region to generate), a
    rectangle ``(x0, y0, x1, y1)`` or the string ``"x0,y0,x1,y1"``. ``guidance``: also encode the
    unconditional condition (classifier-free guidance).
    """
    info = task_info(task)
    spec = backend.spec
    if batch < 1:
        raise NuwaInputError(f"batch must be >= 1, got {batch}")
    if num_frames is not None and num_frames <= 0:
        raise NuwaInputError(f"num-frames must be >= 1, got {num_frames}")
    if not info.video and num_frames not in (None, 1):
        raise NuwaInputError(f"{info.name} makes one image; num-frames must be 1, not {num_frames}")
    for name in info.needs:
        if {"prompt": prompt, "sketch": sketch, "image": image, "mask": mask, "video": video}[
            name
        ] is None:
            raise NuwaInputError(f"{info.name} ({info.title}) needs a {name}")
    tok = ByteTokenizer(spec.max_text_len)
    known = known_mask = None
    uncond = None
    prompts: list[str] = []

    if info.name in ("t2i", "t2v"):
        prompts = _prompts(prompt, batch)
        frames = 1 if info.name == "t2i" else (num_frames or spec.frames)
        cond = _text(backend, tok, prompts)
        if guidance:
            uncond = _empty_text(backend, tok, len(prompts))

    elif info.name in ("s2i", "s2v"):
        assert sketch is not None
        maps = sketch_class_maps(sketch, spec, info.video)
        frames = 1 if info.name == "s2i" else (num_frames or spec.frames)
        maps = spread_frames(maps, min(frames, spec.sketch_frames))
        rows = np.repeat(maps[None], batch, axis=0)
        cond = backend.sketch_condition(rows)
        if guidance:
            uncond = backend.sketch_condition(np.zeros_like(rows))

    elif info.name in ("i2i", "ti2i"):
        assert image is not None
        source = as_frames(image, "image", video=False)
        frames = 1
        known, known_mask = _forced_outside(backend, source, mask, batch)
        if info.name == "ti2i":
            prompts = _prompts(prompt, 1) * batch
            cond = _text(backend, tok, prompts)
            if guidance:
                uncond = _empty_text(backend, tok, batch)
        else:
            cond = _empty_text(backend, tok, batch)

    elif info.name == "v2v":
        assert video is not None
        given = as_frames(video, "video", video=True)
        frames = num_frames or spec.frames
        if frames <= given.shape[0]:
            raise NuwaInputError(
                f"video prediction continues the given {given.shape[0]} frame(s); num-frames "
                f"({frames}) must be larger"
            )
        codes = _codes(backend, given)  # (1, T0, h, w)
        n = frames * spec.tokens_per_frame
        known = np.zeros((batch, n), dtype=np.int64)
        known_mask = np.zeros((batch, n), dtype=bool)
        prefix = codes.reshape(-1)
        known[:, : prefix.size] = prefix
        known_mask[:, : prefix.size] = True
        cond = _empty_text(backend, tok, batch)

    else:  # tv2v
        assert video is not None
        source = as_frames(video, "video", video=True)
        if num_frames is not None:
            if num_frames > source.shape[0]:
                raise NuwaInputError(
                    f"the video has {source.shape[0]} frames; num-frames ({num_frames}) can "
                    "be at most that for manipulation"
                )
            source = source[:num_frames]
        frames = source.shape[0]
        known, known_mask = _forced_outside(backend, source, mask, batch)
        prompts = _prompts(prompt, 1) * batch
        cond = _text(backend, tok, prompts)
        if guidance:
            uncond = _empty_text(backend, tok, batch)

    return TaskPlan(info.name, cond, uncond, frames, known, known_mask, prompts)


def _codes(backend: Backend, frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` at any size -> codes ``(1, T, h, w)``."""
    return backend.frames_to_codes(resize_frames(frames, backend.spec.image_size)[None])


def _forced_outside(
    backend: Backend, source: np.ndarray, mask: np.ndarray | Rect | str | None, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Forced tokens: the source's codes everywhere the (pixel) mask does not select."""
    spec = backend.spec
    height, width = source.shape[1:3]
    if isinstance(mask, str):
        mask = parse_rect(mask)
    if isinstance(mask, tuple):
        pixel = rect_mask(mask, height, width)
    else:
        pixel = np.asarray(mask)
        if pixel.ndim == 3 and pixel.shape[-1] in (3, 4):
            pixel = pixel[..., :3].max(-1) > 127
        if pixel.shape != (height, width):
            raise NuwaInputError(
                f"the mask is {pixel.shape[1]}x{pixel.shape[0]} pixels; it must match the "
                f"{width}x{height} input"
            )
        pixel = pixel.astype(bool)
    tokens = pixel_mask_to_tokens(pixel, (spec.grid_h, spec.grid_w))
    if not tokens.any():
        raise NuwaInputError("the mask selects nothing: there is no region to generate")
    codes = _codes(backend, source).reshape(1, -1)  # (1, T*h*w)
    t = source.shape[0]
    sample = np.tile(tokens.reshape(-1), t)  # same region in every frame
    known = np.repeat(codes, batch, axis=0)
    known_mask = np.repeat(~sample[None], batch, axis=0)
    return known, known_mask
