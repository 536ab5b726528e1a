"""Admission on arrival: how many decoder rows run at once and how many requests may wait.

A request holds ``rows`` decoder rows while it runs (two per sample with classifier-free
guidance). It starts at once while the rows in flight stay within ``max_rows``; otherwise it
waits, first come first served, if fewer than ``max_queue`` requests wait already, and is
refused at once with :class:`ServerBusyError` if not. A request waits at most until its
deadline (:class:`RequestTimeoutError`). A request larger than ``max_rows`` could never run and
is refused on arrival too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from nuwa.serving.errors import RequestTimeoutError, ServerBusyError


class Admission:
    """Rows in flight and the waiting queue, shared by every request thread."""

    def __init__(self, max_rows: int, max_queue: int) -> None:
        if max_rows < 1 or max_queue < 0:
            raise ValueError(f"need max_rows >= 1 and max_queue >= 0, got {max_rows}, {max_queue}")
        self.max_rows = max_rows
        self.max_queue = max_queue
        self._lock = threading.Condition()
        self._rows = 0  # rows of the requests running
        self._waiting: deque[object] = deque()  # tickets of the requests waiting, in order

    @property
    def rows_in_flight(self) -> int:
        with self._lock:
            return self._rows

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._waiting)

    @contextmanager
    def admitted(self, rows: int, deadline: float | None = None) -> Iterator[None]:
        """Hold ``rows`` rows for the ``with`` body; wait in the queue if they are not free
        now. Raises :class:`ServerBusyError` at once when the queue is full (or the request
        can never fit) and :class:`RequestTimeoutError` when ``deadline``
        (``time.monotonic()``) passes while waiting."""
        self._acquire(rows, deadline)
        try:
            yield
        finally:
            with self._lock:
                self._rows -= rows
                self._lock.notify_all()

    def _acquire(self, rows: int, deadline: float | None) -> None:
        if rows > self.max_rows:
            raise ServerBusyError(
                f"the request needs {rows} decoder rows; this server runs at most "
                f"{self.max_rows} (nuwa serve --max-rows)"
            )
        with self._lock:
            if not self._waiting and self._rows + rows <= self.max_rows:
                self._rows += rows
                return
            if len(self._waiting) >= self.max_queue:
                raise ServerBusyError(
                    f"server busy: {self._rows} decoder rows in flight (--max-rows "
                    f"{self.max_rows}) and {len(self._waiting)} requests waiting (--max-queue "
                    f"{self.max_queue}); try again later"
                )
            ticket = object()
            self._waiting.append(ticket)
            try:
                while not (self._waiting[0] is ticket and self._rows + rows <= self.max_rows):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise RequestTimeoutError(
                            "the request waited in the queue past the server's timeout "
                            "(nuwa serve --timeout)"
                        )
                    self._lock.wait(left)
                self._rows += rows
            finally:
                self._waiting.remove(ticket)
                self._lock.notify_all()
