"""``nuwa serve`` under load, on loopback (DESIGN §11 serving targets, issue 38).

Starts ``nuwa serve`` (the demo checkpoint unless ``--model``) as a subprocess on free loopback
ports, then for text→image and text→video (the trained frames unless ``--num-frames``):

- a lone request through the Python API in this process and through the server (median of
  ``--lone`` each): target server ≤ 1.2× the Python API;
- closed-loop load at 1, 2, 4, 8, 16 clients (each its own tritonclient HTTP client, one
  request after another) for ``--seconds`` per level: requests/s, p50/p90/p99 latency; targets
  8 clients ≥ 3× one client's requests/s, p99 ≤ 3× a lone request's latency;
- time to the first streamed frame of text→video over gRPC (``nuwa_stream``) and to its last;
- the server's memory (RSS of ``nuwa serve``, where the engine lives, and of the whole process
  tree: tritonserver and its Python-backend stubs) after warm-up and at the end.

``--soak N``: N requests from 4 clients, one in four of them bad (errors expected), and the RSS
after the soak against the RSS before it, after the load levels (warm under load: the engine's
and ONNX Runtime's buffers for batched steps exist only after concurrent requests ran; target:
within 10%).

    python3 bench/serve.py [--clients 1,2,4,8,16] [--seconds 15] [--soak 200] [--no-write]

Needs the ``[serve]`` extra. Writes the ``serve`` section of ``bench/RESULTS.md`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_setup import cpu_name
from results_file import write_marked_section

PROMPTS = {"t2i": "a red square at the top left", "t2v": "a red square at the top left moves right"}
BAD = {"task": "t2x", "prompt": "a red square"}
# memory is read this long after the last request: freed heap memory goes back to the system
# within a second of a generation's end (nuwa.runtime.freed_memory)
SETTLE_S = 2.0  # an unknown task: answered with its error


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_parts_mib(pid: int) -> str:
    """The RSS's parts: anonymous (heap: the engine, Python, ONNX Runtime) and shared memory
    (PyTriton's tensor store, whose segments are kept for reuse)."""
    parts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssShmem"):
            parts[key] = int(value.split()[0]) / 1024.0
    return f"anonymous {parts.get('RssAnon', 0):.0f}, shared {parts.get('RssShmem', 0):.0f}"


def tree_rss_mib(root: int) -> float:
    """RSS of ``root`` and every process below it (shared pages counted in each)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            rss = rss_mib(pid)
        except OSError:  # exited meanwhile
            continue
        if rss == rss:  # a zombie or kernel thread has no VmRSS (nan)
            total += rss
        todo += children.get(pid, [])
    return total


class Server:
    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        self.http_port, self.grpc_port, metrics = free_ports(3)
        command = [
            sys.executable, "-m", "nuwa.cli", "serve", "--host", "127.0.0.1",
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(metrics), "--max-rows", str(args.max_rows),
            "--max-queue", str(args.max_queue), "--max-frames", "64",
        ]  # fmt: skip
        if args.model:
            command += ["--model", args.model]
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        env.setdefault("OMP_NUM_THREADS", "1")
        self.out = log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self.out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"nuwa serve exited; see {log}")
            try:
                # "nuwa" loads last (it forwards to nuwa_stream): ready means it is ready
                if self.http().is_model_ready("nuwa"):
                    return
            except Exception:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"nuwa serve not ready after 300 s; see {log}")

    def http(self) -> Any:
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(
            f"127.0.0.1:{self.http_port}", network_timeout=600.0
        )

    def grpc(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.out.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def closed_loop(server: Server, clients: int, seconds: float, values: dict[str, Any]) -> dict:
    """``clients`` clients sending one request after another for ``seconds``."""
    from nuwa.serving.client import generate

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        http = server.http()
        seed = 1000 * index
        while time.monotonic() < stop:
            seed += 1
            start = time.perf_counter()
            try:
                generate(http, seed=seed, **values)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[-200:]}")
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    for why in sorted(set(errors))[:3]:
        print(f"{clients} clients: failed request: {why}", file=sys.stderr)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p90": percentile(latencies, 90) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
    }


def lone_latencies(args: argparse.Namespace, server: Server, values: dict[str, Any]) -> tuple:
    """Medians (s) of the same lone request: the Python API, ``nuwa`` over HTTP, over gRPC."""
    from nuwa.runtime import Pipeline
    from nuwa.serving.client import generate

    pipe = Pipeline.from_pretrained(args.model, progress=False)
    call = {k: v for k, v in values.items() if k != "task"}
    api, http, grpc = [], [], []
    clients = ((http, server.http()), (grpc, server.grpc()))
    for i in range(args.lone + 1):  # the first of each is a warm-up
        start = time.perf_counter()
        pipe(values["task"], seed=i, progress=False, **call)
        api.append(time.perf_counter() - start)
        for times, client in clients:
            start = time.perf_counter()
            generate(client, seed=i, **values)
            times.append(time.perf_counter() - start)
    return tuple(statistics.median(t[1:]) for t in (api, http, grpc))


def first_frame(server: Server, values: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Median seconds to the first and to the last streamed frame of a lone request."""
    from nuwa.serving.client import stream

    firsts, lasts = [], []
    for i in range(repeats):
        start = time.perf_counter()
        times = [time.perf_counter() - start for _ in stream(server.grpc(), seed=i, **values)]
        firsts.append(times[0])
        lasts.append(times[-1])
    return statistics.median(firsts), statistics.median(lasts)


def soak(server: Server, total: int, values: dict[str, Any]) -> dict[str, Any]:
    from nuwa.serving.client import generate

    counts: dict[str, Any] = {"good": 0, "bad": 0, "wrong": 0, "why": []}
    lock = threading.Lock()
    numbers = iter(range(total))

    def client() -> None:
        http = server.http()
        while (n := next(numbers, None)) is not None:
            bad = n % 4 == 3
            why = None
            try:
                generate(http, **BAD) if bad else generate(http, seed=n, **values)
                kind = "wrong" if bad else "good"
            except Exception as exc:
                kind = "bad" if bad else "wrong"
                why = f"{type(exc).__name__}: {str(exc)[-160:]}"
            with lock:
                counts[kind] += 1
                if kind == "wrong" and why:
                    counts["why"].append(why)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the demo checkpoint)")
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--tasks", default="t2i,t2v")
    parser.add_argument("--num-frames", type=int, default=None, help="t2v frames (default 8)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per load level")
    parser.add_argument("--lone", type=int, default=5, help="lone requests timed per task")
    parser.add_argument("--max-rows", type=int, default=16)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="also soak N requests")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "nuwa_bench_serve.log"
    server = Server(args, log)
    try:
        report = run(args, server)
    finally:
        server.stop()
    print(report)
    if not args.no_write:
        write_marked_section(report, "serve")


def run(args: argparse.Namespace, server: Server) -> str:
    pid = server.process.pid
    rss_warm, tree_warm, parts_warm = rss_mib(pid), tree_rss_mib(pid), rss_parts_mib(pid)
    clients = [int(c) for c in args.clients.split(",")]
    lines = [
        "## Serving: `nuwa serve` on loopback (PyTriton)",
        "",
        f"`python bench/serve.py` — {cpu_name()}, {os.cpu_count()} logical CPUs; "
        f"{datetime.date.today()}; demo checkpoint unless stated ({args.model or 'demo'}); "
        f"server --max-rows {args.max_rows} --max-queue {args.max_queue}; closed loop, "
        f"{args.seconds:g} s per level, HTTP clients. Targets (DESIGN §11): 8 clients ≥ 3x one "
        "client's requests/s; p99 ≤ 3x a lone request's latency; a lone request through the "
        "server ≤ 1.2x the Python API.",
        "",
    ]
    for task in args.tasks.split(","):
        values: dict[str, Any] = {"task": task, "prompt": PROMPTS[task]}
        if task == "t2v" and args.num_frames:
            values["num_frames"] = args.num_frames
        api, served, served_grpc = lone_latencies(args, server, values)
        levels = [closed_loop(server, n, args.seconds, values) for n in clients]
        one = next((lv for lv in levels if lv["clients"] == 1), levels[0])
        lines += [
            f"### {task}" + (f" ({args.num_frames} frames)" if "num_frames" in values else ""),
            "",
            f"Lone request: Python API {api:.3f} s; through the server over HTTP {served:.3f} s "
            f"({served / api:.2f}x), over gRPC {served_grpc:.3f} s ({served_grpc / api:.2f}x); "
            "target ≤ 1.2x.",
            "",
            "| clients | requests | errors | requests/s | vs 1 client | p50 s | p90 s | p99 s "
            "| p99 / lone |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in levels:
            lines.append(
                f"| {lv['clients']} | {lv['requests']} | {lv['errors']} | {lv['rps']:.2f} | "
                f"{lv['rps'] / one['rps']:.2f}x | {lv['p50']:.3f} | {lv['p90']:.3f} | "
                f"{lv['p99']:.3f} | {lv['p99'] / served:.2f}x |"
            )
        if task == "t2v":
            first, last = first_frame(server, values, args.lone)
            lines += ["", f"Streamed (gRPC, `nuwa_stream`, lone): first frame after {first:.3f} "
                      f"s, last after {last:.3f} s."]  # fmt: skip
        lines.append("")
    time.sleep(SETTLE_S)
    rss_end, tree_end, parts_end = rss_mib(pid), tree_rss_mib(pid), rss_parts_mib(pid)
    lines.append(
        f"Memory: `nuwa serve` RSS {rss_warm:.0f} MiB after warm-up ({parts_warm}), "
        f"{rss_end:.0f} MiB after the load ({parts_end}); whole process tree (tritonserver, "
        f"Python-backend stubs) {tree_warm:.0f} -> {tree_end:.0f} MiB (shared pages counted per "
        "process)."
    )
    if args.soak:
        values = {"task": "t2i", "prompt": PROMPTS["t2i"]}
        counts = soak(server, args.soak, values)
        time.sleep(SETTLE_S)
        after, parts_after = rss_mib(pid), rss_parts_mib(pid)
        lines += [
            "",
            f"Soak: {args.soak} requests from 4 clients (one in four bad): {counts['good']} "
            f"answered, {counts['bad']} refused with their error, {counts['wrong']} wrong. "
            f"`nuwa serve` RSS after the soak {after:.0f} MiB ({parts_after}): "
            f"{after / rss_warm - 1:+.1%} against after its warm-up (target within 10%), "
            f"{after / rss_end - 1:+.1%} against after the load above.",
            *(f"- failed good request: {w}" for w in sorted(set(counts["why"]))[:3]),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
