"""The task table: the eight tasks a NÜWA model runs (DESIGN §3), defined once.

| task | title                          | out   | cond.     | needs               | cfg | trained |
|------|--------------------------------|-------|-----------|---------------------|-----|---------|
| t2i  | text to image                  | image | text      | prompt              | yes | yes     |
| s2i  | sketch to image                | image | sketch    | sketch              | yes | yes     |
| i2i  | image completion               | image | text      | image, mask         | no  | no      |
| ti2i | text-guided image manipulation | image | text      | prompt, image, mask | yes | no      |
| t2v  | text to video                  | video | text      | prompt              | yes | yes     |
| s2v  | sketch to video                | video | sketch    | sketch              | yes | yes     |
| v2v  | video prediction               | video | text      | video               | no  | yes     |
| tv2v | text-guided video manipulation | video | text      | prompt, video, mask | yes | no      |

A task has two spellings: its ``name`` in lower case (``t2v``: the runtime, the CLI,
``generation_config.json``) and its ``code`` in upper case (``T2V``: training, calibration,
evaluation, score files). ``guided``: the task takes classifier-free guidance (i2i and v2v do
not: their condition is the empty prompt, so there is nothing to guide towards). ``trained``:
the model is trained on the task; the others run on the same model by forcing the given tokens.

Plain Python (no NumPy, no torch), read by every part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ConditionKind = Literal["text", "sketch"]


@dataclass(frozen=True)
class TaskInfo:
    """One row of the task table."""

    name: str  # lower case: t2i ... tv2v
    title: str
    video: bool  # the output is a clip
    condition: ConditionKind  # what the encoder reads
    needs: tuple[str, ...]  # required inputs among prompt, sketch, image, mask, video
    guided: bool  # takes classifier-free guidance
    trained: bool  # trained on (the others force given tokens on the same model)

    @property
    def code(self) -> str:
        """The upper-case spelling (``T2V``)."""
        return self.name.upper()


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("t2i", "text to image", False, "text", ("prompt",), True, True),
        TaskInfo("s2i", "sketch to image", False, "sketch", ("sketch",), True, True),
        TaskInfo("i2i", "image completion", False, "text", ("image", "mask"), False, False),
        TaskInfo(
            "ti2i",
            "text-guided image manipulation",
            False,
            "text",
            ("prompt", "image", "mask"),
            True,
            False,
        ),
        TaskInfo("t2v", "text to video", True, "text", ("prompt",), True, True),
        TaskInfo("s2v", "sketch to video", True, "sketch", ("sketch",), True, True),
        TaskInfo("v2v", "video prediction", True, "text", ("video",), False, True),
        TaskInfo(
            "tv2v",
            "text-guided video manipulation",
            True,
            "text",
            ("prompt", "video", "mask"),
            True,
            False,
        ),
    )
}

# lower-case names in the table's order (images, then videos)
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
# the tasks whose condition is the empty prompt: guidance stays 1
UNGUIDED_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if not t.guided)

# Upper-case codes in the order training, calibration and evaluation list them: the trained
# tasks (text, sketch, prediction; image before video), then the manipulation tasks.
TASK_CODES: tuple[str, ...] = tuple(
    TASKS[n].code for n in ("t2i", "t2v", "s2i", "s2v", "v2v", "i2i", "ti2i", "tv2v")
)
TRAINED_TASK_CODES: tuple[str, ...] = tuple(c for c in TASK_CODES if TASKS[c.lower()].trained)
TRAINED_VIDEO_TASK_CODES: tuple[str, ...] = tuple(
    c for c in TRAINED_TASK_CODES if TASKS[c.lower()].video
)


def find_task(task: str) -> TaskInfo | None:
    """The row of ``task`` in either spelling (``t2v`` or ``T2V``), ``None`` if unknown."""
    return TASKS.get(task.lower()) if isinstance(task, str) else None
