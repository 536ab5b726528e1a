"""Continuous batching: requests share decoder steps, joining and leaving at step boundaries.

The ORT CPU :class:`RowPool` against each member's own request state stepped alone (random
memberships and positions); the :class:`DecodeScheduler` behind concurrent Pipeline calls: all
eight tasks mixed give a lone call's tokens (greedy and seeded sampling), steps are shared, and a
call that is cancelled or fails ends alone."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import row_pool
from nuwa.runtime.backends.onnxruntime.row_pool import RowPool
from nuwa.runtime.decode_scheduler import DecodeScheduler
from nuwa.runtime.engine import DecodeState, start_walk
from nuwa.runtime.tasks import TASKS
from tests.runtime.test_tasks import task_kwargs


def run_concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on threads released together; results (or exceptions) in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call never returned"
    return results


# ---- the pool against each request alone ----------------------------------------------------


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 6), st.integers(1, 9), st.booleans()), min_size=1, max_size=4
    ),
    seed=st.integers(0, 2**16),
)
def test_row_pool_steps_each_member_as_its_own_state_would(
    ort_backend, monkeypatch, plan, seed
) -> None:
    """Members join at random steps (``start``), run random lengths, with 1 or 2 rows, each at
    its own positions; a member's logits in the pool equal its own state's, step by step. The
    pool starts with one row, so joins also grow it."""
    monkeypatch.setattr(row_pool, "MIN_CAPACITY", 1)
    spec = ort_backend.spec
    rng = np.random.default_rng(seed)
    members = []
    for i, (start, length, two_rows) in enumerate(plan):
        rows = 2 if two_rows else 1
        text = np.zeros((rows, spec.max_text_len), np.int64)
        text[:, :8] = rng.integers(4, 40, (rows, 8))
        cond = ort_backend.text_condition(text)
        tokens = rng.integers(0, spec.image_vocab_size, (length, rows))
        lone = DecodeState(ort_backend, cond, None, 3)
        expect = [
            lone.step(tokens[p], p) if p else lone.step(np.full(rows, spec.bos_id), 0)
            for p in range(length)
        ]
        members.append(
            (i, start, length, rows, DecodeState(ort_backend, cond, None, 3), tokens, expect)
        )

    pool = None
    done = 0
    step = 0
    while done < len(members):
        feeds = {}
        for i, start, length, rows, state, tokens, _ in members:
            p = step - start
            if p == 0:
                pool = pool or RowPool(state.request.graph)
                pool.add(i, state.request)
            if 0 <= p < length:
                feeds[i] = (np.full(rows, spec.bos_id) if p == 0 else tokens[p], p)
        if feeds:
            out = pool.step(feeds)
            for i, start, length, _, _, _, expect in members:
                p = step - start
                if 0 <= p < length:
                    np.testing.assert_allclose(out[i], expect[p], rtol=1e-5, atol=1e-5)
                    if p == length - 1:
                        pool.remove(i)
                        done += 1
        step += 1
    assert pool is not None and len(pool) == 0 and pool.size == 0


# ---- the scheduler behind concurrent Pipeline calls -------------------------------------------


@pytest.mark.parametrize("options", [{"temperature": 0.0}, {"temperature": 1.0, "top_k": 8}])
def test_concurrent_calls_of_all_eight_tasks_equal_lone_calls(
    ort_backend, task_inputs, options
) -> None:
    pipe = Pipeline(ort_backend, progress=False)
    # the model's guidance (2 rows a sample) for the guided tasks; repeats with 2 samples and
    # without guidance: requests of one graph certainly overlap, with different row counts
    requests = [(task, {}) for task in sorted(TASKS)]
    requests += [("t2v", {"batch": 2}), ("t2i", {"guidance_scale": 1.0})]
    tasks = [task for task, _ in requests]
    calls = [
        (
            lambda task=task, seed=seed, extra=extra: pipe(
                task, **task_kwargs(task, task_inputs), seed=seed, **options, **extra
            )
        )
        for seed, (task, extra) in enumerate(requests)
    ]
    lone = [call() for call in calls]
    steps_alone = pipe.scheduler.steps
    together = run_concurrently(calls)
    for task, a, b in zip(tasks, lone, together, strict=True):
        assert not isinstance(b, BaseException), f"{task}: {b!r}"
        np.testing.assert_array_equal(b.tokens, a.tokens, err_msg=task)
        np.testing.assert_array_equal(b.frames, a.frames, err_msg=task)
    shared = pipe.scheduler.steps - steps_alone
    assert shared < steps_alone, f"no step was shared: {shared} runs vs {steps_alone} alone"


def test_a_call_whose_callback_raises_ends_alone(ort_backend) -> None:
    pipe = Pipeline(ort_backend, progress=False)
    greedy = {"temperature": 0.0}
    lone = pipe("t2v", "a red square moves left", **greedy)

    class Gone(Exception):
        pass

    def leave_at_five(event) -> None:
        if event.position == 5:
            raise Gone("the client went away")

    results = run_concurrently(
        [
            lambda: pipe("t2v", "a blue circle", callback=leave_at_five, **greedy),
            lambda: pipe("t2v", "a red square moves left", **greedy),
        ]
    )
    assert isinstance(results[0], Gone)
    np.testing.assert_array_equal(results[1].tokens, lone.tokens)
    assert pipe.scheduler.in_flight == 0


def test_a_request_failing_inside_the_loop_fails_alone(ort_backend) -> None:
    spec = ort_backend.spec
    scheduler = DecodeScheduler(ort_backend)
    text = np.zeros((1, spec.max_text_len), np.int64)
    text[0, :3] = [5, 6, 7]
    cond = ort_backend.text_condition(text)

    def broken(position: int, logits: np.ndarray) -> np.ndarray:
        if position == 3:
            raise RuntimeError("a sampler fault")
        return logits.argmax(-1)

    greedy = lambda position, logits: logits.argmax(-1)  # noqa: E731
    alone = scheduler.run(start_walk(ort_backend, cond, 3, choose=greedy, progress=False))
    walks = [
        start_walk(ort_backend, cond, 3, choose=broken, progress=False),
        start_walk(ort_backend, cond, 3, choose=greedy, progress=False),
    ]
    results = run_concurrently([lambda w=w: scheduler.run(w) for w in walks])
    assert isinstance(results[0], RuntimeError) and "sampler fault" in str(results[0])
    np.testing.assert_array_equal(results[1], alone)
    assert scheduler.in_flight == 0


def test_backends_without_a_pool_step_each_request_alone(torch_backend, task_inputs) -> None:
    pipe = Pipeline(torch_backend, progress=False)
    calls = [
        (lambda task=task: pipe(task, **task_kwargs(task, task_inputs), temperature=0.0, seed=1))
        for task in ("t2i", "t2v", "v2v")
    ]
    lone = [call() for call in calls]
    for a, b in zip(lone, run_concurrently(calls), strict=True):
        np.testing.assert_array_equal(b.tokens, a.tokens)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_pool_rows_cost_memory_only_when_used() -> None:
    """The pool's buffers are lazily zeroed maps: 256 MiB of rows cost nothing until touched,
    and what is touched goes back to the OS with the array."""
    before = _rss_mib()
    rows = row_pool.lazy_zeros((256, 1 << 18), np.float32)  # 256 rows of 1 MiB
    assert rows.shape == (256, 1 << 18) and not rows[::17, ::4099].any()
    assert _rss_mib() - before < 32
    rows[:8] = 1.0  # 8 rows used
    assert 6 < _rss_mib() - before < 40
    del rows
    assert _rss_mib() - before < 32


def _request_objects() -> list[Any]:
    from nuwa.runtime.backends.base import RequestState
    from nuwa.runtime.decode_scheduler import Ticket
    from nuwa.runtime.engine import TokenWalk

    kinds = (TokenWalk, DecodeState, RequestState, Ticket)
    return [o for o in gc.get_objects() if isinstance(o, kinds)]


def test_a_finished_call_frees_its_request_without_the_cycle_collector(ort_backend) -> None:
    """A request's cache (memory maps of its own) goes back when the call returns, not when
    Python's cycle collector happens to run: a server's memory grew by hundreds of MiB when
    each request's walk and ticket held each other."""
    pipe = Pipeline(ort_backend, progress=False)
    greedy = {"temperature": 0.0}

    class Gone(Exception):
        pass

    def leave_at_five(event) -> None:
        if event.position == 5:
            raise Gone("the client went away")

    gc.collect()
    gc.disable()
    try:
        pipe("t2i", "a red square", **greedy)
        pipe("t2v", "a blue circle", callback=lambda event: None, **greedy)
        results = run_concurrently(
            [
                lambda: pipe("t2v", "a blue circle", callback=leave_at_five, **greedy),
                lambda: pipe("t2i", "a red square moves left", seed=3),
            ]
        )
        assert isinstance(results[0], Gone)
        results.clear()  # the exception's traceback holds run_concurrently's frame, which holds it
        deadline = time.monotonic() + 10
        while pipe.scheduler.looping and time.monotonic() < deadline:
            time.sleep(0.01)  # the cancelled request leaves at the loop's next step
        assert not pipe.scheduler.looping
        left = _request_objects()
        assert not left, f"requests kept alive after their calls: {left}"
    finally:
        gc.enable()
