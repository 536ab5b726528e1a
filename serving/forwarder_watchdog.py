"""Keeps the ``nuwa`` model's forwarding instances alive under ``nuwa serve``.

Triton's Python backend (the one in the PyTriton 0.7 wheel; measured) never restarts an
instance whose stub process died: every later request that Triton routes to that instance fails
with ``Stub process 'nuwa_0_N' is not healthy.``, and the model stays ready. Measured: after one
forwarding stub was killed with SIGSEGV, 3 of the next 12 requests failed, and as many 20 s
later. Forwarding stubs crashed on their own under load while they forwarded through BLS
(segfaults inside ``libpython``: :mod:`nuwa.serving.repository_forward_model`); they forward
over gRPC now and have not crashed since, but a stub can still die (killed, out of memory).

:class:`ForwarderWatchdog` watches the stubs of the loaded version (the tritonserver children
that run the forwarding model's ``model.py``, new since the load) every :data:`CHECK_EVERY_S`;
when one is gone, it loads ``nuwa`` again as the next version through Triton's model-load API:
the new version's instances serve as soon as they are ready (measured: the request inside the
crashed stub and at most one more failed, none after). Triton does not unload a version one of
whose stubs died (measured: its live stubs stay, with nothing routed to them; a version without
a dead stub is unloaded after a reload), so the watchdog kills those stubs after
``grace_s`` (the request timeout: what they still run has ended by then). A standalone
``tritonserver`` (the model repository) has no such watchdog: there, liveness is the
orchestrator's (README).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOG = logging.getLogger("nuwa.serving")

CHECK_EVERY_S = 1.0


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == parent and state != "Z":  # a zombie is a dead stub not reaped yet
            pids.append(int(entry.name))
    return pids


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def tritonserver_pids(parent: int | None = None) -> list[int]:
    """The ``tritonserver`` processes started by ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    return [pid for pid in _children(parent) if Path(_argv(pid)[0]).name == "tritonserver"]


def stub_pids(server: int, model_source: bytes) -> list[int]:
    """The live stub processes of ``server`` that run a ``model.py`` equal to ``model_source``
    (a stub's first argument is its model's ``model.py``)."""
    found = []
    for pid in _children(server):
        argv = _argv(pid)
        if len(argv) < 2 or not argv[0].endswith("triton_python_backend_stub"):
            continue
        try:
            if Path(argv[1]).read_bytes() == model_source:
                found.append(pid)
        except OSError:
            continue
    return found


class ForwarderWatchdog:
    """Loads the forwarding model again when a stub of its loaded version is gone."""

    def __init__(
        self,
        model_source: bytes,
        instances: int,
        reload: Callable[[], None],
        grace_s: float,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.model_source = model_source
        self.instances = instances  # stubs of a loaded version
        self.reload = reload
        self.grace_s = grace_s
        self.check_every_s = check_every_s
        self.reloads = 0
        self.current: set[int] = set()  # stubs of the loaded version
        self.retired: dict[int, float] = {}  # stubs of versions replaced -> when to kill them
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nuwa-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching the version loaded now."""
        self.current = set(self.stubs())
        self._thread.start()

    def stop_soon(self) -> None:
        """No reload from now on (safe in a signal handler: the server is stopping)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def stubs(self) -> list[int]:
        return [p for s in tritonserver_pids() for p in stub_pids(s, self.model_source)]

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every_s):
            alive = set(self.stubs())
            self._kill_retired(alive)
            live = len(self.current & alive)  # (one may have died before the first look)
            if live >= self.instances or self._stop.is_set():
                continue
            LOG.warning(
                "nuwa serve: %d of the %d stub processes of 'nuwa' died; loading it again",
                self.instances - live,
                self.instances,
            )
            try:
                self.reload()
            except Exception:  # Triton refused, or is stopping: try again at the next check
                LOG.exception("nuwa serve: loading 'nuwa' again failed")
                continue
            self.reloads += 1
            deadline = time.monotonic() + self.grace_s
            self.retired.update((pid, deadline) for pid in self.current & alive)
            self.current = set(self.stubs()) - set(self.retired)

    def _kill_retired(self, alive: set[int]) -> None:
        now = time.monotonic()
        for pid, deadline in list(self.retired.items()):
            if pid not in alive:
                del self.retired[pid]
            elif now >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
