"""Argument checks of a request: the task name, ints, real numbers, flags and prompt text.

Each check raises a one-line :class:`~nuwa.spec.errors.NuwaInputError` naming the argument and
what was given, before any work starts. The task table itself is :mod:`nuwa.spec.tasks`'s.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from nuwa.spec.errors import NuwaInputError
from nuwa.spec.tasks import TASKS, TaskInfo, find_task


def task_info(task: object) -> TaskInfo:
    """The task table's row of ``task`` (any case)."""
    if not isinstance(task, str):
        raise NuwaInputError(f"task must be a string (t2i ... tv2v), got {type(task).__name__}")
    info = find_task(task)
    if info is None:
        raise NuwaInputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return info


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


def check_real(value: object, name: str) -> None:
    """``None`` or a finite real number (int or float, not bool)."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise NuwaInputError(
            f"{name} must be a number (or None), got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise NuwaInputError(f"{name} must be a finite number, got {value}")


def check_flag(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise NuwaInputError(f"{name} must be True or False, got {type(value).__name__}")


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
