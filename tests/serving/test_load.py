"""A small load test: good and bad clients at once for a bounded time, over HTTP, gRPC and the
stream. Every good request is answered with its frames (its own seed back; greedy ones equal a
lone request's), every bad one with its error, none lost or duplicated; the server is alive and
ready at the end."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from nuwa.serving.client import generate, stream  # noqa: E402
from nuwa.serving.errors import error_line  # noqa: E402

from .serving_requests import SIZE, sketch  # noqa: E402

DURATION_S = 8.0
# memory flat: the engine's RSS after the load (settled: freed memory goes back within a second,
# nuwa.runtime.freed_memory) at most this much above its RSS before it, once every kind of
# request the load sends has run (their graphs' sessions made) and the warm-up's full batch grew
# the buffers that concurrency needs
MEMORY_GROWTH = 1.10
SETTLE_S = 2.0
GREEDY = {"prompt": "a magenta triangle", "temperature": 0.0, "seed": 0}


def good_clients(server) -> dict[str, Callable[[int], tuple[np.ndarray, int]]]:
    """Name -> one request of that client with a given seed: (frames, seed answered)."""

    def streamed(seed: int) -> tuple[np.ndarray, int]:
        got = list(
            stream(server.grpc(), "t2v", prompt="a red square moves left", num_frames=2, seed=seed)
        )
        assert [i for i, _ in got] == [0, 1]
        return np.stack([f for _, f in got]), seed

    return {
        "http t2i": lambda seed: generate(server.http(), "t2i", prompt="a red square", seed=seed),
        "grpc s2v": lambda seed: generate(
            server.grpc(), "s2v", sketch=sketch(2), num_frames=2, seed=seed
        ),
        "stream t2v": streamed,
        "greedy": lambda seed: generate(server.http(), "t2i", **{**GREEDY, "seed": seed}),
    }  # fmt: skip


BAD_CLIENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "bad task": ("t2x", {"prompt": "a red square"}),
    "bad option": ("t2v", {"prompt": "a red square", "top_k": -2}),
}


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_good_and_bad_clients_at_once(server) -> None:
    lone_greedy, _ = generate(server.http(), "t2i", **GREEDY)
    for request in good_clients(server).values():  # every graph the load runs has its session
        request(0)
    time.sleep(SETTLE_S)
    rss_before = rss_mib(server.process.pid)
    sent: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    failures: list[str] = []
    seeds: dict[str, list[int]] = {}
    lock = threading.Lock()
    stop = time.monotonic() + DURATION_S
    goods = good_clients(server)

    def good(name: str) -> None:
        seed = 1000 * (list(goods).index(name) + 1)
        while time.monotonic() < stop:
            seed += 1
            with lock:
                sent[name] += 1
            try:
                frames, got_seed = goods[name](seed)
            except Exception as exc:
                failures.append(f"{name} seed {seed}: {exc}")
                continue
            ok = (
                frames.dtype == np.uint8
                and frames.shape[1:] == (SIZE, SIZE, 3)
                and got_seed == seed
            )
            if name == "greedy":
                ok = ok and np.array_equal(frames, lone_greedy)
            with lock:
                answered[name] += ok
                seeds.setdefault(name, []).append(got_seed)
            if not ok:
                failures.append(f"{name} seed {seed}: wrong answer {frames.shape} seed {got_seed}")

    def bad(name: str) -> None:
        task, values = BAD_CLIENTS[name]
        client = server.grpc() if name == "bad task" else server.http()
        while time.monotonic() < stop:
            with lock:
                sent[name] += 1
            try:
                generate(client, task, **values)
                failures.append(f"{name}: answered with frames")
            except InferenceServerException as exc:
                found = error_line(str(exc.message()))
                with lock:
                    answered[name] += found is not None and found[0] == "InvalidRequestError"
            time.sleep(0.05)

    threads = [threading.Thread(target=good, args=(n,)) for n in goods]
    threads += [threading.Thread(target=bad, args=(n,)) for n in BAD_CLIENTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION_S + 120)
    assert not failures, failures[:5]
    assert answered == sent, (answered, sent)  # every request answered once
    assert all(sent[n] >= 2 for n in (*goods, *BAD_CLIENTS)), sent
    for name, got in seeds.items():
        assert len(set(got)) == len(got), name  # no answer twice
    client = server.http()
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("nuwa")
    time.sleep(SETTLE_S)
    rss_after = rss_mib(server.process.pid)  # the engine's process: where memory could pile up
    print(f"nuwa serve RSS {rss_before:.0f} MiB before the load, {rss_after:.0f} after")
    assert rss_after <= MEMORY_GROWTH * rss_before, (rss_before, rss_after)
