"""A task request checked and laid out in NumPy before any model runs (DESIGN §3).

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

:func:`check_task_request` checks every input (which go together, types, sizes, the prompt, the
memory limit of :mod:`nuwa.runtime.limits`) and reads them at the model's size
(:mod:`nuwa.runtime.input_reading`, :mod:`nuwa.runtime.region_masks`), tokenizing the prompt
once; it needs the model's spec and input rules, not a backend, so ``nuwa generate`` runs it
before the model loads. :mod:`nuwa.runtime.tasks` then encodes the request on a backend.
A sketch condition has ``min(num_frames, sketch_frames)`` frames; the given sketch frames are
spread over them (one sketch PNG holds for the whole clip). Video tasks default to the trained
number of frames; more frames slide the decoder's window (DESIGN §5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from nuwa.runtime.input_reading import as_frames, fit_frames, sketch_class_maps, spread_frames
from nuwa.runtime.limits import check_request_size
from nuwa.runtime.region_masks import pixel_mask, tokens_to_generate
from nuwa.runtime.request_checks import check_int, check_prompts, task_info
from nuwa.spec.errors import NuwaInputError, NuwaInputWarning
from nuwa.spec.input_rules import InputRules
from nuwa.spec.model_spec import ModelSpec
from nuwa.spec.tasks import TaskInfo
from nuwa.spec.tokenizer import ByteTokenizer, PromptError

INPUT_HINTS = {
    "prompt": "the text",
    "sketch": "palette-coloured RGB or class ids",
    "image": "an RGB image",
    "mask": "the region to generate: x0,y0,x1,y1 in pixels, or a mask picture (white = generate)",
    "video": "RGB frames",
}


@dataclass
class TaskRequest:
    """A checked request: what the backend encodes and what the decode loop forces."""

    info: TaskInfo
    num_frames: int
    prompts: list[str]  # per batch row (prompt-major); empty without a text prompt
    condition: np.ndarray  # text ids (rows, L) or sketch class maps (rows, Ts, S, S)
    uncondition: np.ndarray | None  # the same for classifier-free guidance; None: no guidance
    source: np.ndarray | None  # (T0, S, S, 3) uint8 frames whose tokens are forced where marked
    forced: np.ndarray | None  # bool (T0*h*w,): which of the source's tokens are forced

    @property
    def rows(self) -> int:
        return int(self.condition.shape[0])


class UnknownWordsWarning(NuwaInputWarning):
    """A prompt holds words the model never saw in a caption (its ``input_rules.json``)."""


def warn_unknown_words(prompts: list[str], rules: InputRules) -> None:
    """One :class:`UnknownWordsWarning` per prompt with words the model never saw, naming the
    nearest known words; generation goes on."""
    for text in dict.fromkeys(prompts):
        message = rules.unknown_words_message(text)
        if message is not None:
            warnings.warn(message, UnknownWordsWarning, stacklevel=5)


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


def encode_prompts(tokenizer: ByteTokenizer, prompts: list[str]) -> np.ndarray:
    """Token ids ``(len(prompts), L)``; a prompt the tokenizer refuses is an input error."""
    if not prompts:
        raise NuwaInputError("the prompt is empty")
    try:
        return tokenizer.encode_batch(prompts)
    except PromptError as exc:
        raise NuwaInputError(str(exc)) from None


def check_task_request(
    spec: ModelSpec,
    rules: InputRules,
    task: str,
    *,
    prompt: str | list[str] | None = None,
    sketch: np.ndarray | None = None,
    image: np.ndarray | None = None,
    mask: object = None,
    video: np.ndarray | None = None,
    num_frames: int | None = None,
    batch: int = 1,
    guidance: bool = False,
) -> TaskRequest:
    """Check a request's inputs and lay them out; nothing is encoded.

    ``mask``: ``bool (H, W)`` (True = region to generate), a rectangle ``(x0, y0, x1, y1)`` in
    the input's pixels or the string ``"x0,y0,x1,y1"``. Inputs of another size than the model's
    are resized with a warning. ``guidance``: the request samples with classifier-free guidance
    (the tasks that take it get an unconditional condition). ``rules``: the model's input rules:
    how sketches, masks and sizes are read, and the words a prompt is checked against (unknown
    words get an :class:`UnknownWordsWarning`). A request over the memory limit is refused.
    """
    info = task_info(task)
    batch = check_int(batch, "batch", 1)  # type: ignore[assignment]
    num_frames = check_int(num_frames, "num_frames", 1, optional=True)
    if not info.video and num_frames not in (None, 1):
        raise NuwaInputError(f"{info.name} makes one image; num-frames must be 1, not {num_frames}")
    inputs = {"prompt": prompt, "sketch": sketch, "image": image, "mask": mask, "video": video}
    check_task_inputs(info, {name: x is not None for name, x in inputs.items()})
    prompts = check_prompts(prompt) if prompt is not None else None
    rows = len(prompts) if prompts is not None and info.name in ("t2i", "t2v") else 1
    if not info.video:
        frames = 1
    elif info.name == "tv2v" and isinstance(video, np.ndarray):
        frames = min(num_frames or video.shape[0], video.shape[0] if video.ndim == 4 else 1)
    else:
        frames = num_frames or spec.frames
    check_request_size(spec, rows, batch, frames, guidance)
    tok = ByteTokenizer(spec.max_text_len)
    ids = None
    if prompts is not None:
        ids = encode_prompts(tok, prompts)  # once; a bad prompt fails before any input is read
        warn_unknown_words(prompts, rules)
    guided = guidance and info.guided
    empty_ids = tok.empty()  # the unconditional prompt, tokenized once
    empty = np.stack([empty_ids] * batch)
    source = forced = None
    row_prompts: list[str] = []

    if info.condition == "sketch":
        assert sketch is not None
        maps = sketch_class_maps(sketch, spec, info.video, rules)
        frames = 1 if not info.video else (num_frames or spec.frames)
        maps = spread_frames(maps, min(frames, spec.sketch_frames))
        condition = np.repeat(maps[None], batch, axis=0)
        uncondition = np.zeros_like(condition) if guided else None
        return TaskRequest(info, frames, [], condition, uncondition, None, None)

    if info.name in ("t2i", "t2v"):
        assert prompts is not None and ids is not None
        row_prompts = [p for p in prompts for _ in range(batch)]
        condition = np.repeat(ids, batch, axis=0)
        frames = 1 if not info.video else (num_frames or spec.frames)
    elif info.name in ("i2i", "ti2i"):
        assert image is not None
        frames = 1
        source, forced = forced_outside(
            as_frames(image, "image", video=False), mask, "image", spec, rules
        )
        condition = empty
    elif info.name == "v2v":
        assert video is not None
        source = fit_frames(
            as_frames(video, "video", video=True), rules.frame_size, "video", rules.resize_filter
        )
        frames = num_frames or spec.frames
        if frames <= source.shape[0]:
            raise NuwaInputError(
                f"video prediction continues the given {source.shape[0]} frame(s); num-frames "
                f"({frames}) must be larger"
            )
        forced = np.ones(source.shape[0] * spec.tokens_per_frame, dtype=bool)
        condition = empty
    else:  # tv2v
        assert video is not None
        frames_in = as_frames(video, "video", video=True)
        if num_frames is not None:
            if num_frames > frames_in.shape[0]:
                raise NuwaInputError(
                    f"the video has {frames_in.shape[0]} frames; num-frames ({num_frames}) can "
                    "be at most that for manipulation"
                )
            frames_in = frames_in[:num_frames]
        frames = frames_in.shape[0]
        source, forced = forced_outside(frames_in, mask, "video", spec, rules)
    if info.name in ("ti2i", "tv2v"):
        assert prompts is not None and ids is not None
        row_prompts = prompts * batch
        condition = np.concatenate([ids] * batch)
    uncondition = np.stack([empty_ids] * len(condition)) if guided else None
    return TaskRequest(info, frames, row_prompts, condition, uncondition, source, forced)


def forced_outside(
    source: np.ndarray, mask: object, what: str, spec: ModelSpec, rules: InputRules
) -> tuple[np.ndarray, np.ndarray]:
    """``source`` at the model's size and its forced tokens: every token the (pixel) mask does
    not select, the same region in every frame. A rectangle is in ``source``'s pixels; a mask
    array or picture covers the whole frame (one of another size than the model's is scaled to
    it with a warning); then ``source`` is resized to the model's size (with a warning)."""
    height, width = source.shape[1:3]
    pixels = pixel_mask(mask, height, width, rules.frame_size, rules.mask_threshold)
    generate = tokens_to_generate(pixels, (spec.grid_h, spec.grid_w))
    source = fit_frames(source, rules.frame_size, what, rules.resize_filter)
    return source, np.tile(~generate.reshape(-1), source.shape[0])
