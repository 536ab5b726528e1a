"""Admission's rules without a server: rows in flight, the queue in arrival order, refusal at
once when full, a deadline while waiting."""

from __future__ import annotations

import threading
import time

import pytest

from nuwa.serving.admission import Admission
from nuwa.serving.errors import RequestTimeoutError, ServerBusyError


def admit(a: Admission, rows: int, deadline: float | None = None) -> None:
    """Be admitted and leave at once."""
    with a.admitted(rows, deadline):
        pass


def test_rows_within_the_limit_run_at_once() -> None:
    a = Admission(max_rows=3, max_queue=0)
    with a.admitted(2), a.admitted(1):
        assert a.rows_in_flight == 3
        with pytest.raises(ServerBusyError, match="--max-queue 0"):
            admit(a, 1)
    assert a.rows_in_flight == 0


def test_a_request_larger_than_the_server_is_refused() -> None:
    with pytest.raises(ServerBusyError, match="needs 3 decoder rows.*at most 2"):
        admit(Admission(max_rows=2, max_queue=5), 3)


def test_waiting_requests_run_in_arrival_order() -> None:
    a = Admission(max_rows=2, max_queue=3)
    order: list[int] = []

    def wait_then_record(i: int, rows: int) -> None:
        with a.admitted(rows):
            order.append(i)

    with a.admitted(2):
        threads = []
        for i, rows in enumerate([2, 1, 1]):
            threads.append(threading.Thread(target=wait_then_record, args=(i, rows)))
            threads[-1].start()
            while a.queued < i + 1:
                time.sleep(0.001)
        with pytest.raises(ServerBusyError, match="3 requests waiting"):
            admit(a, 1)
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2] and a.rows_in_flight == 0 and a.queued == 0


def test_waiting_past_the_deadline_is_a_timeout() -> None:
    a = Admission(max_rows=1, max_queue=1)
    with a.admitted(1):
        start = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="waited in the queue"):
            admit(a, 1, deadline=time.monotonic() + 0.05)
        assert time.monotonic() - start < 1.0
    assert a.queued == 0 and a.rows_in_flight == 0
