"""Task plans: a checked request (:mod:`nuwa.runtime.task_request`) encoded on a backend into
what the decode loop runs: the condition (and the unconditional one for classifier-free
guidance) and the forced tokens.

The task table is :mod:`nuwa.spec.tasks`'s; how inputs are checked and read is
:mod:`nuwa.runtime.task_request`'s. :func:`plan_task` does both for callers that hold a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.input_reading import sketch_class_maps
from nuwa.runtime.model_directory import builtin_input_rules, load_input_rules
from nuwa.runtime.region_masks import Rect, parse_rect
from nuwa.runtime.request_checks import task_info
from nuwa.runtime.task_request import TaskRequest, UnknownWordsWarning, check_task_request
from nuwa.spec.input_rules import InputRules
from nuwa.spec.tasks import TASKS, TaskInfo

__all__ = [  # the names `nuwa.runtime.tasks` has always offered, from their homes
    "TASKS",
    "Rect",
    "TaskInfo",
    "TaskPlan",
    "UnknownWordsWarning",
    "builtin_input_rules",
    "encode_request",
    "load_input_rules",
    "parse_rect",
    "plan_task",
    "sketch_class_maps",
    "task_info",
]


@dataclass
class TaskPlan:
    """What the decode loop runs for one task request."""

    task: str
    cond: Condition
    uncond: Condition | None  # None: the request samples without guidance
    num_frames: int
    known: np.ndarray | None  # (B, N) int64
    known_mask: np.ndarray | None  # (B, N) bool: True = forced
    prompts: list[str]


def encode_request(backend: Backend, request: TaskRequest) -> TaskPlan:
    """Encode ``request``'s condition(s) and the codes of its forced frames on ``backend``."""
    spec = backend.spec
    kind = request.info.condition  # "text" or "sketch"
    encode = backend.sketch_condition if kind == "sketch" else backend.text_condition
    cond = encode(request.condition)
    uncond = None
    if request.uncondition is not None:  # the same for every request of a shape: kept
        uncond = backend.unconditional(kind, request.uncondition)
    known = known_mask = None
    if request.source is not None and request.forced is not None:
        codes = backend.frames_to_codes(request.source[None]).reshape(-1)  # (T0*h*w,)
        n = request.num_frames * spec.tokens_per_frame
        known = np.zeros((request.rows, n), dtype=np.int64)
        known_mask = np.zeros((request.rows, n), dtype=bool)
        known[:, : codes.size] = codes
        known_mask[:, : codes.size] = request.forced
    return TaskPlan(
        request.info.name, cond, uncond, request.num_frames, known, known_mask, request.prompts
    )


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
    """Check a request (:func:`~nuwa.runtime.task_request.check_task_request`: every check runs
    before anything is encoded) and encode it on ``backend`` (:func:`encode_request`).
    ``rules``: the model's input rules (default
    :func:`~nuwa.runtime.model_directory.builtin_input_rules`)."""
    request = check_task_request(
        backend.spec,
        rules or builtin_input_rules(backend.spec),
        task,
        prompt=prompt,
        sketch=sketch,
        image=image,
        mask=mask,
        video=video,
        num_frames=num_frames,
        batch=batch,
        guidance=guidance,
    )
    return encode_request(backend, request)
