"""One inference request's tensors (DESIGN §12) -> the arguments of one ``Pipeline`` call.

Every tensor is checked (known name, dtype, rank, one element where the contract says ``[1]``,
UTF-8 text) and the sampling options are resolved against the model's defaults
(:func:`nuwa.runtime.request_sampling.resolve_sampling`) before any work starts, so a bad
request gets the same one-line :class:`~nuwa.spec.errors.NuwaInputError` the CLI prints. A
request that gives no seed gets one drawn here: the response's ``seed`` repeats it.

What admission needs is known here too: the decoder rows the request holds (two per sample with
classifier-free guidance: the unconditional row) and the frames it makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nuwa.runtime.request_checks import task_info
from nuwa.runtime.request_sampling import resolve_sampling
from nuwa.serving.contract import INPUT_BY_NAME, TensorSpec
from nuwa.serving.frame_count import request_frames
from nuwa.serving.seeds import draw_seed
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.model_spec import ModelSpec

TEXT_INPUTS = ("task", "prompt")
IMAGE_INPUTS = ("image", "sketch", "video", "mask")
INT_OPTIONS = ("num_frames", "seed", "top_k")
REAL_OPTIONS = ("temperature", "top_p", "guidance_scale")


@dataclass(frozen=True)
class ServingRequest:
    """A decoded request: the keyword arguments of its ``Pipeline`` call and what it holds."""

    task: str
    call: dict[str, Any]  # Pipeline(**call) keyword arguments, the seed resolved
    seed: int
    rows: int  # decoder rows in flight: 2 with classifier-free guidance, else 1
    frames: int  # frames the request makes


def _checked_tensor(spec: TensorSpec, value: object) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise NuwaInputError(f"input {spec.name} must be a tensor, got {type(value).__name__}")
    if len(value.shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, value.shape, strict=True)
    ):
        shape = "[" + ", ".join("N" if d == -1 else str(d) for d in spec.shape) + "]"
        raise NuwaInputError(f"input {spec.name} must have shape {shape}, got {list(value.shape)}")
    if spec.dtype is np.bytes_:
        if value.dtype.kind not in "OSU":
            raise NuwaInputError(f"input {spec.name} must be BYTES (UTF-8 text), got {value.dtype}")
    elif value.dtype != np.dtype(spec.dtype):
        raise NuwaInputError(
            f"input {spec.name} must be {spec.triton_dtype}, got {value.dtype.name.upper()}"
        )
    if 0 in value.shape:
        raise NuwaInputError(f"input {spec.name} is empty (shape {list(value.shape)})")
    return value


def _text(value: np.ndarray, name: str) -> str:
    item = value.reshape(-1)[0]
    if isinstance(item, str):
        return item
    try:
        return bytes(item).decode("utf-8")
    except UnicodeDecodeError:
        raise NuwaInputError(f"input {name} is not UTF-8 text") from None


def decode_request(
    inputs: Mapping[str, object],
    spec: ModelSpec,
    generation: GenerationConfig,
    max_frames: int | None = None,
) -> ServingRequest:
    """Check one request's tensors and turn them into a ``Pipeline`` call; ``max_frames`` is
    the server's limit of frames per request."""
    unknown = sorted(set(inputs) - set(INPUT_BY_NAME))
    if unknown:
        raise NuwaInputError(
            f"unknown input {unknown[0]!r}; the inputs are: {', '.join(INPUT_BY_NAME)}"
        )
    if "task" not in inputs:
        raise NuwaInputError("input task is missing: one of t2i s2i i2i ti2i t2v s2v v2v tv2v")
    given = {name: _checked_tensor(INPUT_BY_NAME[name], v) for name, v in inputs.items()}
    values: dict[str, Any] = {}
    for name in TEXT_INPUTS:
        if name in given:
            values[name] = _text(given[name], name)
    for name in INT_OPTIONS:
        if name in given:
            values[name] = int(given[name].reshape(-1)[0])
    for name in REAL_OPTIONS:
        if name in given:
            values[name] = float(given[name].reshape(-1)[0])
    info = task_info(values["task"])
    if "num_frames" in values and values["num_frames"] < 1:
        raise NuwaInputError(f"num_frames must be >= 1, got {values['num_frames']}")
    seed = values.get("seed")
    if seed is None:
        seed = draw_seed()
    options = resolve_sampling(
        generation,
        info.name,
        values.get("temperature"),
        values.get("top_k"),
        values.get("top_p"),
        values.get("guidance_scale"),
        seed,
    )
    pictures: dict[str, Any] = {}
    if "image" in given:
        pictures["image"] = given["image"]
    if "video" in given:
        pictures["video"] = given["video"]
    if "sketch" in given:
        sketch = given["sketch"]
        pictures["sketch"] = sketch[0] if sketch.shape[0] == 1 else sketch
    if "mask" in given:
        pictures["mask"] = given["mask"] != 0
    video = given.get("video")
    video_frames = int(video.shape[0]) if video is not None else None
    frames = request_frames(info.name, values.get("num_frames"), video_frames, spec.frames)
    if max_frames is not None and frames > max_frames:
        raise NuwaInputError(
            f"the request makes {frames} frames; this server allows at most {max_frames} per "
            "request (nuwa serve --max-frames)"
        )
    call: dict[str, Any] = {
        "task": info.name,
        "prompt": values.get("prompt"),
        **pictures,
        "num_frames": values.get("num_frames"),
        "seed": seed,
        **{name: getattr(options, name) for name in ("temperature", "top_k", "top_p")},
        "guidance_scale": options.guidance_scale,
    }
    rows = 2 if options.uses_guidance else 1
    return ServingRequest(info.name, call, seed, rows, frames)
