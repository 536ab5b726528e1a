"""Continuous batching (DESIGN §12): requests in flight share decoder steps.

A :class:`DecodeScheduler` runs one loop on a daemon thread while requests are in flight (the
thread ends when none is left and starts again with the next). Each request arrives as a
:class:`~nuwa.runtime.engine.TokenWalk` whose forced prefix its own thread already fed; at the
next step boundary it joins the group of requests that run the same decoder graph (equal
:attr:`~nuwa.runtime.backends.base.RequestState.graph_key`: the backend's
:class:`~nuwa.runtime.backends.base.StepPool` packs their rows into one run), or steps alone
where the backend cannot share. Every loop turn steps every group once: each member moves one
position, each at its own position, with its own sampler and random stream, and a member that is
done, cancelled or failed leaves at once. What a request does per position is
:meth:`TokenWalk.accept <nuwa.runtime.engine.TokenWalk.accept>`, the code a lone
:func:`~nuwa.runtime.engine.generate_tokens` runs, so greedy tokens in company equal a lone
request's (up to the rounding of batched kernels).

The request's own thread waits in :meth:`DecodeScheduler.run` and runs its step observer there
(a stream's frame decoding never stalls the shared loop); an observer that raises cancels its
request alone, which leaves the batch at the next boundary. A failing member fails alone; a
failing shared run fails the members of that run.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from nuwa.runtime.backends.base import Backend, RequestState, StepPool
from nuwa.runtime.engine import StepObserver, TokenWalk


class AlonePool(StepPool):
    """One request stepping alone (a backend without a pool, or a state that cannot share)."""

    def __init__(self) -> None:
        self.members: dict[Hashable, RequestState] = {}

    def add(self, member: Hashable, state: RequestState) -> None:
        if self.members:
            raise ValueError("an AlonePool holds one request")
        self.members[member] = state

    def remove(self, member: Hashable) -> None:
        del self.members[member]

    def __len__(self) -> int:
        return len(self.members)

    def step(self, feeds: Mapping[Hashable, tuple[np.ndarray, int]]) -> dict[Hashable, np.ndarray]:
        out = {}
        for member, (tokens, position) in feeds.items():
            positions = np.full((len(tokens),), position, dtype=np.int64)
            out[member] = self.members[member].step(tokens, positions)
        return out


class Ticket:
    """A request in the scheduler: its walk, the events its own thread reads, its fate."""

    def __init__(self, walk: TokenWalk, every: int = 1) -> None:
        self.walk = walk
        self.every = every  # observe the positions that end a run of ``every`` (a frame, say)
        self.events: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self.cancelled = False  # set by the request's thread; read by the loop

    def observe(self, position: int, tokens: np.ndarray) -> None:
        if (position + 1) % self.every == 0:
            self.events.put(("step", position, tokens))

    def finish(self) -> None:
        self.events.put(("done", None, None))

    def fail(self, exc: BaseException) -> None:
        self.events.put(("error", exc, None))


class Group:
    """Requests stepped in one pool."""

    def __init__(self, pool: StepPool) -> None:
        self.pool = pool
        self.tickets: list[Ticket] = []

    def leave(self, ticket: Ticket) -> None:
        self.pool.remove(ticket)
        self.tickets.remove(ticket)


class DecodeScheduler:
    """The shared decode loop of one backend (see the module text). :meth:`run` is safe to call
    from any number of threads at once."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Condition()
        self._arrivals: list[Ticket] = []
        self._groups: dict[Hashable, Group] = {}
        self._thread: threading.Thread | None = None
        self._alone = itertools.count()  # keys of groups of one
        self.steps = 0  # shared runs so far (for tests and benchmarks)

    def run(
        self, walk: TokenWalk, observer: StepObserver | None = None, every: int = 1
    ) -> np.ndarray:
        """Decode a started walk (its prefix fed) to the end beside whatever else is in flight;
        ``observer`` runs in this thread after each position that ends a run of ``every``
        positions (1: all; a frame's tokens: the last one of each frame). Returns the token
        grid."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        ticket = Ticket(walk, every)
        if observer is not None:
            walk.callback = ticket.observe
        with self._lock:
            self._arrivals.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nuwa-decode", daemon=True)
                self._thread.start()
            self._lock.notify()
        try:
            while True:
                kind, value, tokens = ticket.events.get()
                if kind == "step":
                    if observer is not None:
                        observer(value, tokens)
                elif kind == "done":
                    return walk.tokens()
                else:
                    raise value
        except BaseException:
            ticket.cancelled = True  # leaves the batch at the next boundary
            raise
        finally:
            # the walk calls the ticket, which holds the walk: without this the request's cache
            # (its memory maps) waited for Python's cycle collector, and a server's memory grew
            # by a few hundred MiB before it ran
            walk.callback = None
            walk.close()

    @property
    def in_flight(self) -> int:
        """Requests waiting to join or being stepped, not counting those whose caller has left
        (cancelled: they leave the batch at the loop's next step)."""
        with self._lock:
            tickets = [*self._arrivals, *(t for g in self._groups.values() for t in g.tickets)]
            return sum(not t.cancelled for t in tickets)

    @property
    def looping(self) -> bool:
        """Whether the loop's thread runs (it ends once the last request, cancelled ones
        included, has left the batch)."""
        with self._lock:
            return self._thread is not None

    # ---- the loop (its own thread) -----------------------------------------------------

    def _loop(self) -> None:
        self.backend.use_in_thread()
        while True:
            with self._lock:
                if not self._arrivals and not self._groups:
                    self._thread = None  # nothing in flight: the next run starts a new loop
                    return
                arrivals, self._arrivals = self._arrivals, []
            try:
                for ticket in arrivals:
                    self._join(ticket)
                for key, group in list(self._groups.items()):
                    self._step(group)
                    if not group.tickets:
                        del self._groups[key]
            except BaseException as exc:  # a fault of the loop itself: fail what is in flight
                for group in self._groups.values():
                    for ticket in group.tickets:
                        ticket.fail(exc)
                self._groups.clear()

    def _join(self, ticket: Ticket) -> None:
        if ticket.cancelled:
            return
        state = ticket.walk.state.request
        key: Hashable = state.graph_key
        try:
            group = self._groups.get(key) if key is not None else None
            if group is None:
                pool = self.backend.new_step_pool(state) if key is not None else None
                if pool is None:
                    key, pool = ("alone", next(self._alone)), AlonePool()
                group = self._groups[key] = Group(pool)
            group.pool.add(ticket, state)
        except BaseException as exc:  # this request fails alone
            ticket.fail(exc)
            return
        group.tickets.append(ticket)

    def _step(self, group: Group) -> None:
        for ticket in [t for t in group.tickets if t.cancelled]:
            group.leave(ticket)
        if not group.tickets:
            return
        feeds = {t: (t.walk.feed(), t.walk.position) for t in group.tickets}
        try:
            logits = group.pool.step(feeds)
        except BaseException as exc:  # the shared run failed: so did its members
            for ticket in group.tickets:
                ticket.fail(exc)
            group.tickets.clear()
            return
        self.steps += 1
        for ticket in list(group.tickets):
            try:
                ticket.walk.accept(logits[ticket])
            except BaseException as exc:  # a member's own failure (its sampler, its input)
                group.leave(ticket)
                ticket.fail(exc)
                continue
            if ticket.walk.done:
                group.leave(ticket)
                ticket.finish()
