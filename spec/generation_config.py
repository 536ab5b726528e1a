"""A model directory's sampling defaults, per task: ``generation_config.json`` (the role of
Hugging Face's file of that name).

    {
      "defaults": {"temperature": 0.5, "top_k": 16, "top_p": null, "guidance_scale": 2.0},
      "tasks": {"v2v": {"temperature": 0.8}},
      "note": "how the values were chosen"
    }

``defaults`` applies to every task and ``tasks`` overrides it per task (lower-case task names,
t2i ... tv2v); ``null`` turns top-k / top-p off. Image completion and video prediction (i2i,
v2v) take no guidance (their condition is the empty prompt) and always get 1. What the file does
not set comes from :data:`nuwa.spec.sampling.BUILTIN_SAMPLING` (also what a directory without
the file gets); the task names and which tasks take guidance are :mod:`nuwa.spec.tasks`'s.
``nuwa generate``, the :class:`nuwa.runtime.pipeline.Pipeline`, ``nuwa evaluate`` and the
quantization gates use these values unless the caller passes its own; ``nuwa export`` and
``nuwa quantize`` carry the file along.

JSON only (no torch), so the runtime can read it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the task table and the sampling defaults are defined in nuwa.spec.tasks / nuwa.spec.sampling
from nuwa.spec.sampling import BUILTIN_SAMPLING, NO_GUIDANCE, SAMPLING_KEYS
from nuwa.spec.tasks import TASK_NAMES, UNGUIDED_TASKS

__all__ = [
    "BUILTIN_SAMPLING",
    "GENERATION_CONFIG_FILE",
    "SAMPLING_KEYS",
    "TASK_NAMES",
    "UNGUIDED_TASKS",
    "GenerationConfig",
    "GenerationConfigError",
    "copy_generation_config",
]

GENERATION_CONFIG_FILE = "generation_config.json"


class GenerationConfigError(ValueError):
    """A ``generation_config.json`` that cannot be used; the message names the file and field."""


def _check_values(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise GenerationConfigError(f"{where} must be an object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SAMPLING_KEYS))
    if unknown:
        raise GenerationConfigError(
            f"{where}: unknown sampling options {unknown}; known: {list(SAMPLING_KEYS)}"
        )
    out = dict(values)
    for key, value in out.items():
        if value is None and key in ("top_k", "top_p"):
            continue
        real = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not real or not math.isfinite(value):
            raise GenerationConfigError(f"{where}.{key} must be a number, got {value!r}")
        if key == "top_k" and (value != int(value) or value < 1):
            raise GenerationConfigError(
                f"{where}.top_k must be an integer >= 1 (or null), got {value}"
            )
        if key == "top_p" and not 0 < value <= 1:
            raise GenerationConfigError(f"{where}.top_p must be in (0, 1] (or null), got {value}")
        if key in ("temperature", "guidance_scale") and value < 0:
            raise GenerationConfigError(f"{where}.{key} must be >= 0, got {value}")
        out[key] = int(value) if key == "top_k" else float(value)
    return out


@dataclass
class GenerationConfig:
    """Sampling defaults of a model: ``defaults`` for every task, ``tasks`` per task."""

    defaults: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        self.defaults = _check_values(self.defaults, "defaults")
        unknown = sorted(set(self.tasks) - set(TASK_NAMES))
        if unknown:
            raise GenerationConfigError(
                f"tasks: unknown tasks {unknown}; known: {list(TASK_NAMES)}"
            )
        self.tasks = {t: _check_values(v, f"tasks.{t}") for t, v in self.tasks.items()}
        for task in UNGUIDED_TASKS:
            if self.tasks.get(task, {}).get("guidance_scale", 1.0) != 1.0:
                raise GenerationConfigError(
                    f"tasks.{task}.guidance_scale: {task} takes no classifier-free guidance "
                    "(its condition is the empty prompt)"
                )

    def for_task(self, task: str) -> dict[str, Any]:
        """Every sampling option (:data:`SAMPLING_KEYS`) for ``task`` (any case); guidance 1
        for the tasks that take none (:data:`UNGUIDED_TASKS`)."""
        name = task.lower()
        if name not in TASK_NAMES:
            raise GenerationConfigError(f"unknown task {task!r}; known: {list(TASK_NAMES)}")
        values = {**BUILTIN_SAMPLING, **self.defaults, **self.tasks.get(name, {})}
        if name in UNGUIDED_TASKS:
            values["guidance_scale"] = NO_GUIDANCE
        return values

    def resolve(
        self,
        task: str,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`for_task` with the values a caller gives (not ``None``) on top; a given
        ``top_k`` of 0 turns top-k off. Keys are the sampling options' field names."""
        values = self.for_task(task)
        given = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "guidance_scale": guidance_scale,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        if values["top_k"] == 0:
            values["top_k"] = None
        return values

    def to_dict(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "tasks": self.tasks, "note": self.note}

    @classmethod
    def from_dict(cls, data: Any) -> GenerationConfig:
        if not isinstance(data, dict):
            raise GenerationConfigError(f"must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"defaults", "tasks", "note"})
        if unknown:
            raise GenerationConfigError(f"unknown fields {unknown}; known: defaults, tasks, note")
        tasks = data.get("tasks", {})
        if not isinstance(tasks, dict):
            raise GenerationConfigError(f"tasks must be an object, got {type(tasks).__name__}")
        note = data.get("note", "")
        if not isinstance(note, str):
            raise GenerationConfigError(f"note must be a string, got {type(note).__name__}")
        return cls(data.get("defaults", {}), tasks, note)

    @classmethod
    def load(cls, model_dir: str | Path) -> GenerationConfig:
        """The directory's ``generation_config.json``; the built-in defaults if it has none."""
        path = Path(model_dir) / GENERATION_CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenerationConfigError(f"{path} is not valid JSON: {exc}") from None
        except GenerationConfigError as exc:
            raise GenerationConfigError(f"{path}: {exc}") from None

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / GENERATION_CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def copy_generation_config(src_dir: str | Path, dst_dir: str | Path) -> None:
    """Carry ``src_dir``'s file (checked) into ``dst_dir``; remove a stale one if it has none."""
    src = Path(src_dir) / GENERATION_CONFIG_FILE
    dst = Path(dst_dir) / GENERATION_CONFIG_FILE
    if src.is_file():
        GenerationConfig.load(src_dir).save(dst_dir)
    else:
        dst.unlink(missing_ok=True)
