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
Sizes, one rule for images, videos, masks and sketches: an input whose side is not the model's
(``image_size`` / ``sketch_size``) is resized to it with a one-line :class:`NuwaInputWarning`
(images and videos bicubic, sketches nearest so class colours stay exact, masks by the any-pixel
rule); a rectangle mask is in the input's own pixels, and one reaching outside the frame is
clipped to it with a warning (wholly outside: an error).
How inputs are read comes from the model directory's input rules (``input_rules.json``,
:mod:`nuwa.spec.input_rules`; :func:`load_input_rules`): the sketch palette (a colour within the
snapping distance of exactly one palette colour snaps to it), the mask threshold, the frame size
and resize filter, and the caption words: a prompt with others gets one
:class:`UnknownWordsWarning` naming the nearest known words, and generation goes on.
A sketch condition has ``min(num_frames, sketch_frames)`` frames; the given sketch frames are
spread over them (one sketch PNG holds for the whole clip). Video tasks default to the trained
number of frames; more frames slide the decoder's window (DESIGN §5).
Everything here is NumPy; the backend encodes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.limits import check_request_size
from nuwa.runtime.media import resize_frames, resize_labels
from nuwa.spec.errors import NuwaInputError, NuwaInputWarning, warn_input
from nuwa.spec.input_rules import InputRules, InputRulesError
from nuwa.spec.model_spec import ModelSpec
from nuwa.spec.tokenizer import ByteTokenizer, PromptError


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
    if not isinstance(task, str):
        raise NuwaInputError(f"task must be a string (t2i ... tv2v), got {type(task).__name__}")
    info = TASKS.get(task.lower())
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


def is_int(value: object) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def check_int(value: object, name: str, minimum: int, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (``None`` passes when ``optional``); a wrong type or
    value is a :class:`NuwaInputError` naming the argument and what was given."""
    if value is None and optional:
        return None
    if not is_int(value):
        allowed = "an int" + (" or None" if optional else "")
        raise NuwaInputError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if int(value) < minimum:  # type: ignore[call-overload]
        raise NuwaInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)  # type: ignore[call-overload]


def check_prompt_text(text: object, what: str = "the prompt") -> str:
    """A prompt as text: a ``str`` that is valid Unicode (no lone surrogates: what Python makes
    of a command-line argument that is not UTF-8), or UTF-8 ``bytes``."""
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NuwaInputError(
                f"{what} is not valid UTF-8: byte 0x{text[exc.start]:02x} at position {exc.start}"
            ) from None
    if not isinstance(text, str):
        also = " (or a list of strings)" if what == "the prompt" else ""
        raise NuwaInputError(f"{what} must be a string{also}, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(text[exc.start])
        if 0xDC80 <= char <= 0xDCFF:  # surrogateescape: a raw byte of non-UTF-8 input
            raise NuwaInputError(
                f"{what} is not valid UTF-8: byte 0x{char - 0xDC00:02x} at position "
                f"{exc.start} (pass the text in UTF-8)"
            ) from None
        raise NuwaInputError(
            f"{what} is not valid Unicode text: lone surrogate U+{char:04X} at position {exc.start}"
        ) from None
    return text


def check_prompts(prompt: object) -> list[str]:
    """A prompt or list of prompts -> the list, each checked (:func:`check_prompt_text`)."""
    if isinstance(prompt, (str, bytes)):
        return [check_prompt_text(prompt)]
    if not isinstance(prompt, (list, tuple)):
        raise NuwaInputError(
            f"prompt must be a string or a list of strings, got {type(prompt).__name__}"
        )
    return [check_prompt_text(p, f"prompt[{i}]") for i, p in enumerate(prompt)]


def parse_rect(text: str) -> Rect:
    parts = text.split(",")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise NuwaInputError(
            f"mask {text!r} is neither a file nor a rectangle x0,y0,x1,y1 in pixels"
        ) from None
    return x0, y0, x1, y1


def check_rect(rect: object) -> Rect:
    """A rectangle ``(x0, y0, x1, y1)`` of four ints."""
    if not (isinstance(rect, tuple) and len(rect) == 4 and all(is_int(v) for v in rect)):
        raise NuwaInputError(f"a mask rectangle must be four ints (x0, y0, x1, y1), got {rect!r}")
    x0, y0, x1, y1 = (int(v) for v in rect)
    return x0, y0, x1, y1


def rect_mask(rect: Rect, height: int, width: int) -> np.ndarray:
    """The pixels of ``rect`` (x1, y1 exclusive) in a ``height x width`` frame. A rectangle that
    reaches outside the frame (negative coordinates included) is clipped to it with a warning;
    an empty one, or one wholly outside, is an error saying so."""
    x0, y0, x1, y1 = rect
    text = f"mask rectangle {x0},{y0},{x1},{y1}"
    if x0 >= x1 or y0 >= y1:
        raise NuwaInputError(
            f"{text} is empty, so it selects nothing (need x0 < x1 and y0 < y1; x1 and y1 are "
            "exclusive)"
        )
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise NuwaInputError(
            f"{text} lies wholly outside the {width}x{height} input, so it selects nothing "
            f"(x runs 0..{width}, y 0..{height})"
        )
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        warn_input(
            f"{text} reaches outside the {width}x{height} input; using the part inside: "
            f"{cx0},{cy0},{cx1},{cy1}"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[cy0:cy1, cx0:cx1] = True
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
    if not isinstance(x, np.ndarray):
        raise NuwaInputError(f"{what} must be a NumPy array or a file path, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise NuwaInputError(f"{what} must be RGB (H, W, 3) or frames (T, H, W, 3), got {x.shape}")
    if not video and x.shape[0] != 1:
        x = x[:1]
    if x.dtype != np.uint8:
        raise NuwaInputError(f"{what} must be uint8 RGB, got {x.dtype}")
    return x


def fit_frames(frames: np.ndarray, size: int, what: str, resample: str = "bicubic") -> np.ndarray:
    """``(T, H, W, 3)`` at the model's ``size x size``: resized (``resample``, the model's input
    rules) with a warning."""
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return frames
    warn_input(f"the {what} is {width}x{height} pixels; resized to the model's {size}x{size}")
    return resize_frames(frames, size, resample)


def builtin_input_rules(spec: ModelSpec) -> InputRules:
    """The rules of a model directory without ``input_rules.json``: today's behaviour at the
    spec's sizes (exact palette colours, no vocabulary; :meth:`InputRules.builtin`)."""
    return InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames)


def load_input_rules(model_dir: str | Path, spec: ModelSpec) -> InputRules:
    """``model_dir``'s ``input_rules.json`` (schema-checked, and its sizes and sketch classes
    checked against the model's config), or :func:`builtin_input_rules` without one."""
    try:
        rules = InputRules.load(model_dir)
    except InputRulesError as exc:
        raise NuwaInputError(str(exc)) from None
    if rules is None:
        return builtin_input_rules(spec)
    for field, value, expected in (
        ("frame_size", rules.frame_size, spec.image_size),
        ("frames", rules.frames, spec.frames),
        ("sketch.size", rules.sketch.size, spec.sketch_size),
        ("sketch.palette (classes)", len(rules.sketch.classes), spec.sketch_classes),
    ):
        if value != expected:
            raise NuwaInputError(
                f"{rules.where}: {field} is {value} but the model's config says {expected}"
            )
    return rules


class UnknownWordsWarning(NuwaInputWarning):
    """A prompt holds words the model never saw in a caption (its ``input_rules.json``)."""


def warn_unknown_words(prompts: list[str], rules: InputRules) -> None:
    """One :class:`UnknownWordsWarning` per prompt with words the model never saw, naming the
    nearest known words; generation goes on."""
    for text in dict.fromkeys(prompts):
        message = rules.unknown_words_message(text)
        if message is not None:
            warnings.warn(message, UnknownWordsWarning, stacklevel=4)


def sketch_class_maps(
    sketch: np.ndarray, spec: ModelSpec, video: bool, rules: InputRules | None = None
) -> np.ndarray:
    """A sketch as palette RGB ``([T,] S, S, 3)`` or class ids ``([T,] S, S)`` -> ``(T, S, S)``.
    Colours are read by the model's input rules (``rules``, default :func:`builtin_input_rules`):
    its palette, a colour within the snapping distance of exactly one palette colour snapping
    to it."""
    rules = rules or builtin_input_rules(spec)
    if not isinstance(sketch, np.ndarray):
        raise NuwaInputError(
            f"sketch must be a NumPy array or a file path, got {type(sketch).__name__}"
        )
    s = sketch
    if s.ndim >= 3 and s.shape[-1] == 3 and s.dtype == np.uint8:
        try:
            s = rules.sketch.to_classes(s)
        except ValueError as exc:
            raise NuwaInputError(f"sketch: {exc}") from None
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[0] == 0:
        raise NuwaInputError(
            f"a sketch must be (H, W) class ids or (H, W, 3) colours, got {s.shape}"
        )
    if not np.issubdtype(s.dtype, np.integer):
        raise NuwaInputError(f"sketch class ids must be integers, got {s.dtype}")
    size = rules.sketch.size
    if s.shape[1:] != (size, size):
        warn_input(
            f"the sketch is {s.shape[2]}x{s.shape[1]} pixels; resized to the model's "
            f"{size}x{size} (nearest: colours stay exact)"
        )
        s = resize_labels(s, size)
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


INPUT_HINTS = {
    "prompt": "the text",
    "sketch": "palette-coloured RGB or class ids",
    "image": "an RGB image",
    "mask": "the region to generate: x0,y0,x1,y1 in pixels, or a mask picture (white = generate)",
    "video": "RGB frames",
}


def check_task_inputs(info: TaskInfo, given: dict[str, bool]) -> None:
    """The inputs a task takes, given: ``given`` says which of prompt, sketch, image, mask and
    video the request has. Combinations a user gets wrong get a message saying what was probably
    meant; an input the task does not take is an error, never silently dropped."""
    if given["image"] and given["video"]:
        raise NuwaInputError("an image and a video were given together: give one of them")
    if given["mask"] and not (given["image"] or given["video"]):
        raise NuwaInputError(
            "a mask was given without an image or a video: the mask marks the region of that "
            "input to generate"
        )
    if info.name == "v2v" and given["prompt"] and given["video"] and not given["mask"]:
        raise NuwaInputError(
            "a prompt with a video and no mask: text-guided video manipulation (tv2v) needs a "
            "mask of the region to change; video prediction (v2v) takes no prompt"
        )
    for name, present in given.items():
        if present and name not in info.needs:
            raise NuwaInputError(f"{info.name} ({info.title}) takes no {name}")
    for name in info.needs:
        if not given[name]:
            raise NuwaInputError(f"{info.name} ({info.title}) needs a {name}: {INPUT_HINTS[name]}")


def _prompts(prompt: str | list[str] | None, batch: int) -> list[str]:
    if prompt is None:
        raise NuwaInputError("this task needs a prompt")
    prompts = check_prompts(prompt)
    if not prompts:
        raise NuwaInputError("the prompt is empty")
    return [p for p in prompts for _ in range(batch)]


def _encode(tokenizer: ByteTokenizer, prompts: list[str]) -> np.ndarray:
    try:
        return tokenizer.encode_batch(prompts)
    except PromptError as exc:
        raise NuwaInputError(str(exc)) from None


def _text(backend: Backend, tokenizer: ByteTokenizer, prompts: list[str]) -> Condition:
    return backend.text_condition(_encode(tokenizer, prompts))


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
    rules: InputRules | None = None,
) -> TaskPlan:
    """Check a request's inputs and lay out its conditions and forced tokens.

    ``mask``: ``bool (H, W)`` (True = region to generate), a rectangle ``(x0, y0, x1, y1)`` in
    the input's pixels or the string ``"x0,y0,x1,y1"``. Inputs of another size than the model's
    are resized with a warning (the module docstring). ``guidance``: also encode the
    unconditional condition (classifier-free guidance). Every check runs before anything is
    encoded; a request over the memory limit (:mod:`.limits`) is refused. ``rules``: the
    model's input rules (:func:`load_input_rules`; default :func:`builtin_input_rules`): how
    sketches, masks and sizes are read, and the words a prompt is checked against (unknown
    words get an :class:`UnknownWordsWarning`).
    """
    info = task_info(task)
    spec = backend.spec
    batch = check_int(batch, "batch", 1)  # type: ignore[assignment]
    num_frames = check_int(num_frames, "num_frames", 1, optional=True)
    if not info.video and num_frames not in (None, 1):
        raise NuwaInputError(f"{info.name} makes one image; num-frames must be 1, not {num_frames}")
    inputs = {"prompt": prompt, "sketch": sketch, "image": image, "mask": mask, "video": video}
    check_task_inputs(info, {name: x is not None for name, x in inputs.items()})
    rows = len(check_prompts(prompt)) if info.name in ("t2i", "t2v") else 1
    if not info.video:
        frames = 1
    elif info.name == "tv2v" and isinstance(video, np.ndarray):
        frames = min(num_frames or video.shape[0], video.shape[0] if video.ndim == 4 else 1)
    else:
        frames = num_frames or spec.frames
    check_request_size(spec, rows, batch, frames, guidance)
    tok = ByteTokenizer(spec.max_text_len)
    rules = rules or builtin_input_rules(spec)
    if prompt is not None:
        _encode(tok, check_prompts(prompt))  # a bad prompt fails before any input is encoded
        warn_unknown_words(check_prompts(prompt), rules)
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
        maps = sketch_class_maps(sketch, spec, info.video, rules)
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
        known, known_mask = _forced_outside(backend, source, mask, batch, "image", rules)
        if info.name == "ti2i":
            prompts = _prompts(prompt, 1) * batch
            cond = _text(backend, tok, prompts)
            if guidance:
                uncond = _empty_text(backend, tok, batch)
        else:
            cond = _empty_text(backend, tok, batch)

    elif info.name == "v2v":
        assert video is not None
        given = fit_frames(
            as_frames(video, "video", video=True), rules.frame_size, "video", rules.resize_filter
        )
        frames = num_frames or spec.frames
        if frames <= given.shape[0]:
            raise NuwaInputError(
                f"video prediction continues the given {given.shape[0]} frame(s); num-frames "
                f"({frames}) must be larger"
            )
        codes = _codes(backend, given, rules)  # (1, T0, h, w)
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
        known, known_mask = _forced_outside(backend, source, mask, batch, "video", rules)
        prompts = _prompts(prompt, 1) * batch
        cond = _text(backend, tok, prompts)
        if guidance:
            uncond = _empty_text(backend, tok, batch)

    return TaskPlan(info.name, cond, uncond, frames, known, known_mask, prompts)


def _codes(backend: Backend, frames: np.ndarray, rules: InputRules) -> np.ndarray:
    """``(T, H, W, 3)`` at any size -> codes ``(1, T, h, w)``."""
    frames = resize_frames(frames, rules.frame_size, rules.resize_filter)
    return backend.frames_to_codes(frames[None])


def _forced_outside(
    backend: Backend,
    source: np.ndarray,
    mask: np.ndarray | Rect | str | None,
    batch: int,
    what: str,
    rules: InputRules,
) -> tuple[np.ndarray, np.ndarray]:
    """Forced tokens: the source's codes everywhere the (pixel) mask does not select. A
    rectangle is in ``source``'s pixels; a mask array or picture covers the whole frame (one of
    another size than the model's is scaled to it with a warning); then ``source`` is resized
    to the model's size (with a warning)."""
    spec = backend.spec
    height, width = source.shape[1:3]
    size = rules.frame_size
    if isinstance(mask, str):
        mask = parse_rect(mask)
    if isinstance(mask, tuple):
        pixel = rect_mask(check_rect(mask), height, width)
    elif isinstance(mask, np.ndarray):
        pixel = mask
        if pixel.ndim == 3 and pixel.shape[-1] in (3, 4):
            pixel = pixel[..., :3].max(-1) > rules.mask_threshold
        if pixel.ndim != 2 or 0 in pixel.shape:
            raise NuwaInputError(
                f"a mask must be (H, W) or a picture (H, W, 3), got shape {mask.shape}"
            )
        if pixel.shape != (size, size):
            warn_input(
                f"the mask is {pixel.shape[1]}x{pixel.shape[0]} pixels; scaled to the model's "
                f"{size}x{size} (a token is generated if any of its pixels is masked)"
            )
        pixel = pixel.astype(bool)
    else:
        raise NuwaInputError(
            "mask must be a bool array, a rectangle (x0, y0, x1, y1), 'x0,y0,x1,y1' or a mask "
            f"picture's path, got {type(mask).__name__}"
        )
    if not pixel.any():
        raise NuwaInputError("the mask selects nothing (no pixel is set): no region to generate")
    tokens = pixel_mask_to_tokens(pixel, (spec.grid_h, spec.grid_w))
    source = fit_frames(source, size, what, rules.resize_filter)
    codes = _codes(backend, source, rules).reshape(1, -1)  # (1, T*h*w)
    t = source.shape[0]
    sample = np.tile(tokens.reshape(-1), t)  # same region in every frame
    known = np.repeat(codes, batch, axis=0)
    known_mask = np.repeat(~sample[None], batch, axis=0)
    return known, known_mask
