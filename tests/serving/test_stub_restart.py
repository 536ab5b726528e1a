"""A forwarding stub that dies (Triton's Python backend never restarts one: every request routed
to it would fail "Stub process ... is not healthy") is replaced: ``nuwa serve`` loads ``nuwa``
again, later requests succeed, and the replaced version's leftover stubs are gone after the
request timeout."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from nuwa.serving.client import generate  # noqa: E402
from nuwa.serving.contract import MODEL  # noqa: E402
from nuwa.serving.forwarder_watchdog import stub_pids, tritonserver_pids  # noqa: E402
from nuwa.serving.model_configs import MODEL_FILES  # noqa: E402

from .conftest import Server, start_server, stop_server  # noqa: E402

TIMEOUT_S = 4.0  # the request timeout: also how long a replaced version's stubs may stay


@pytest.fixture(scope="module")
def lone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    s = start_server(log, "--max-rows", "2", "--max-queue", "0", "--timeout", str(TIMEOUT_S))
    yield s
    stop_server(s)


def forwarding_stubs(server: Server) -> list[int]:
    source = MODEL_FILES[MODEL].read_bytes()
    return [p for t in tritonserver_pids(server.process.pid) for p in stub_pids(t, source)]


def wait_for(condition, what: str, server: Server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{server.log_tail()}"
        time.sleep(0.2)


def test_a_dead_forwarding_stub_is_replaced(lone_server) -> None:
    first = forwarding_stubs(lone_server)
    assert len(first) == 3  # max rows + max queue + 1
    os.kill(first[0], signal.SIGSEGV)  # as a crash inside libpython ends
    wait_for(
        lambda: "stub processes of 'nuwa' died; loading it again" in lone_server.log.read_text(),
        "no reload",
        lone_server,
    )
    http = lone_server.http()
    wait_for(lambda: http.is_model_ready(MODEL, "2"), "version 2 not ready", lone_server)
    for seed in range(6):  # round robin over the instances: every one of them answers
        frames, got = generate(http, "t2i", prompt="a red square", seed=seed)
        assert got == seed and frames.shape[0] == 1
    # the replaced version's live stubs get nothing more and are gone after the timeout
    wait_for(lambda: not set(forwarding_stubs(lone_server)) & set(first), "old", lone_server)
    assert len(forwarding_stubs(lone_server)) == 3
    # ready again once Triton has let the replaced version go
    wait_for(lambda: http.is_server_ready() and http.is_model_ready(MODEL), "ready", lone_server)
