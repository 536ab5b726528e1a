"""Servers for the serving tests: ``nuwa serve`` started the way a user starts it (a subprocess
of this interpreter, ``LD_LIBRARY_PATH`` as the shell left it) on free loopback ports with the
demo checkpoint (its bundled ONNX export; no torch), stopped at the end.

The server tests need the ``[serve]`` extra (PyTriton, tritonclient): each such module calls
:func:`require_serve_extra` first, which skips it without the extra, unless
``NUWA_REQUIRE_SERVE=1`` (CI sets it where it installs the extra) makes that an error.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "model" / "checkpoints" / "demo"
START_TIMEOUT_S = 180.0
SERVE_MODULES = ("pytriton", "tritonclient.http", "tritonclient.grpc")


def require_serve_extra() -> None:
    """Skip the calling test module without the ``[serve]`` extra (an error where
    ``NUWA_REQUIRE_SERVE=1``)."""
    for module in SERVE_MODULES:
        if os.environ.get("NUWA_REQUIRE_SERVE") == "1":
            importlib.import_module(module)
        else:
            pytest.importorskip(module, reason='needs the [serve] extra: pip install ".[serve]"')


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def http(self):
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(self.http_url, network_timeout=300.0)

    def grpc(self):
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.grpc_url)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(server: Server, timeout_s: float = START_TIMEOUT_S) -> None:
    client = server.http()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"nuwa serve exited ({server.process.returncode}):\n{server.log_tail()}"
            )
        try:
            models = ("nuwa", "nuwa_stream")
            if client.is_server_ready() and all(client.is_model_ready(m) for m in models):
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError(f"nuwa serve not ready after {timeout_s:g} s:\n{server.log_tail()}")


def start_server(log: Path, *args: str) -> Server:
    """``nuwa serve`` of the demo checkpoint with ``args``, ready."""
    ports = free_ports(3)
    command = [
        sys.executable, "-m", "nuwa.cli", "serve", "--model", str(DEMO), "--host", "127.0.0.1",
        "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
        "--metrics-port", str(ports[2]), *args,
    ]  # fmt: skip
    return start_process(command, ports, log)


def start_process(command: list[str], ports: list[int], log: Path) -> Server:
    """A server started by ``command`` on ``ports`` (HTTP, gRPC, metrics), ready; the
    environment as a shell leaves it (no LD_LIBRARY_PATH: the server sets what it needs)."""
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(process, *ports, log)
    try:
        wait_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    """SIGINT (a clean stop), then the whole process group killed after 10 s: Triton waits up
    to 30 s for work in flight, which no test needs."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # stubs and tritonserver left behind
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The suite's main server: room for the load test's clients."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    s = start_server(log, "--max-rows", "4", "--max-queue", "4", "--max-frames", "8")
    yield s
    stop_server(s)


class Call(threading.Thread):
    """One request on its own thread and client; its result or error and when it ended."""

    def __init__(self, server: Server, task: str, **values: object) -> None:
        super().__init__(daemon=True)
        self.server, self.task, self.values = server, task, values
        self.result: object = None
        self.error: str | None = None
        self.ended = 0.0

    def run(self) -> None:
        from tritonclient.utils import InferenceServerException

        from nuwa.serving.client import generate

        try:
            self.result = generate(self.server.http(), self.task, **self.values)
        except InferenceServerException as exc:
            self.error = str(exc.message())
        self.ended = time.monotonic()
