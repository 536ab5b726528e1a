"""Freed heap memory handed back after generations: the returner trims after a generation ends,
never more often than its interval, in its own thread; a Pipeline call ends with one."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.freed_memory import FREED_MEMORY, FreedMemoryReturner, glibc_malloc_trim


class CountingTrim:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.threads: set[str] = set()
        self.called = threading.Event()

    def __call__(self) -> None:
        self.calls.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        self.called.set()


def wait_for(condition, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_ends_in_a_burst_share_one_trim_and_the_interval_holds() -> None:
    trim = CountingTrim()
    returner = FreedMemoryReturner(trim, min_interval_s=0.3)
    try:
        assert returner.trims == 0  # nothing before a generation ended
        for _ in range(50):
            returner.generation_ended()
        wait_for(lambda: returner.trims >= 1)
        time.sleep(0.8)  # ends after the first trim started share one more, after the interval
        burst = returner.trims
        assert burst in (1, 2)
        time.sleep(0.5)  # no end since: no trim
        assert returner.trims == burst
        returner.generation_ended()
        wait_for(lambda: returner.trims == burst + 1)
        gaps = [b - a for a, b in zip(trim.calls, trim.calls[1:], strict=False)]
        assert min(gaps) >= 0.3 - 0.01, gaps
        assert trim.threads == {"nuwa-freed-memory"}  # never in the caller's thread
    finally:
        returner.close()


def test_without_malloc_trim_nothing_runs() -> None:
    returner = FreedMemoryReturner(None)
    returner.generation_ended()
    assert returner._thread is None and returner.trims == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_has_malloc_trim_and_it_runs() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    trim()


def test_a_pipeline_call_ends_with_a_trim(ort_backend, monkeypatch) -> None:
    trim = CountingTrim()
    returner = FreedMemoryReturner(trim, min_interval_s=0.0)
    monkeypatch.setattr("nuwa.runtime.pipeline.FREED_MEMORY", returner)
    try:
        Pipeline(ort_backend, progress=False)("t2i", "a red square", seed=0)
        assert trim.called.wait(10)
    finally:
        returner.close()
    assert FREED_MEMORY is not returner
