"""The warm-up before "ready": one generation, then a full batch of rows at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nuwa.serving.limits import ServingLimits
from nuwa.serving.warm_up import warm_up


class RecordingPipeline:
    """Records calls; the batch's calls (``guidance_scale`` given) wait for each other at a
    barrier, which breaks (failing the warm-up) unless ``batch`` of them run at once."""

    def __init__(self, batch: int, fail_on_seed: int | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.together = threading.Barrier(batch, timeout=30)
        self.fail_on_seed = fail_on_seed

    def __call__(self, task: str, prompt: str, **options: Any) -> None:
        with self.lock:
            self.calls.append({"task": task, **options})
        if "guidance_scale" in options:
            self.together.wait()
        if options["seed"] == self.fail_on_seed:
            raise RuntimeError("the engine failed")


def test_one_generation_then_max_rows_at_once() -> None:
    pipeline = RecordingPipeline(batch=6)
    warm_up(pipeline, ServingLimits(max_rows=6))  # type: ignore[arg-type]
    first, *batch = pipeline.calls
    assert "guidance_scale" not in first  # the model's defaults
    assert len(batch) == 6 and all(c["guidance_scale"] == 1.0 for c in batch)  # one row each


def test_a_failing_warm_up_fails_the_start() -> None:
    with pytest.raises(RuntimeError, match="the engine failed"):
        warm_up(RecordingPipeline(4, fail_on_seed=3), ServingLimits(max_rows=4))  # type: ignore[arg-type]
