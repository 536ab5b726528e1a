"""Continuous batching in the runtime's engine (issue 38): what sharing decoder steps buys, and
what requests joining cost a request already running.

Through ``Pipeline`` on the demo's exports (ONNX Runtime, CPU, one intra-op thread per session;
FP32 and the INT8 export that is the CPU's default), concurrent calls from threads, each as a
server's request thread would make them:

- **throughput**: N concurrent text→video calls (8 frames, no guidance) — tokens/s of all of
  them together, with the steps shared (the default) and with every request stepping alone
  (the backend's pool turned off), side by side in one run;
- **gaps while others join**: one text→video call runs while text→image calls arrive one after
  another (each encodes its prompt in its own thread, then joins at a step boundary, decodes its
  64 tokens and leaves); the running call's gaps between its tokens, timed where its tokens are
  chosen (the shared loop's thread): median and p99. Target: p99 ≤ 2× median.

    python3 bench/continuous_batching.py [--exports DIR ...] [--clients 1 2 4 8] [--joiners 24]
        [--no-write]

Writes the ``continuous_batching`` section of ``bench/RESULTS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_setup import cpu_name
from results_file import write_marked_section

DEMO = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "demo"
DEMO_EXPORTS = [DEMO / "onnx", DEMO / "onnx_int8"]  # FP32, INT8 (the CPU default)
PROMPTS = ["a red square moves right", "a blue circle moves left", "a green square moves up"]
GAP_TARGET = 2.0  # p99 gap / median gap of a running request while others join


def load(directory: Path) -> Any:
    from nuwa.runtime import Pipeline
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return Pipeline(OnnxRuntimeBackend.from_model_dir(directory, threads=1), progress=False)


def concurrent(calls: list[Any]) -> float:
    """Run the calls on threads released together; the wall time until all are done."""
    barrier = threading.Barrier(len(calls) + 1)
    errors: list[BaseException] = []

    def work(call: Any) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def throughput(pipe: Any, clients: list[int], repeats: int) -> list[dict[str, Any]]:
    """Tokens/s of N concurrent t2v calls, shared steps vs each request alone."""
    backend = pipe.backend
    pooled = backend.new_step_pool
    per_call = pipe.spec.tokens_per_frame * pipe.spec.frames
    rows = []
    for n in clients:
        res: dict[str, Any] = {"clients": n}
        for mode in ("shared", "alone"):
            backend.new_step_pool = pooled if mode == "shared" else (lambda state: None)
            calls = [
                (lambda i=i: pipe("t2v", PROMPTS[i % len(PROMPTS)], seed=i, guidance_scale=1.0))
                for i in range(n)
            ]
            walls = [concurrent(calls) for _ in range(repeats)]
            res[mode] = n * per_call / float(np.median(walls))
        backend.new_step_pool = pooled
        rows.append(res)
    return rows


def gaps_while_joining(pipe: Any, joiners: int) -> dict[str, Any]:
    """The gaps of one running t2v call while ``joiners`` t2i calls arrive one after another."""
    from nuwa.runtime.engine import start_walk
    from nuwa.runtime.sampler import Sampler, SamplingOptions

    stamps: list[float] = []
    sampler = Sampler(SamplingOptions(temperature=1.0, seed=0))

    def choose(position: int, logits: np.ndarray) -> np.ndarray:
        stamps.append(time.perf_counter())  # on the shared loop's thread, as the token is chosen
        return sampler(logits)

    plan = pipe.prepare("t2v", PROMPTS[0], seed=0, guidance_scale=1.0).plan
    walk = start_walk(pipe.backend, plan.cond, plan.num_frames, choose=choose, progress=False)
    runner = threading.Thread(target=pipe.scheduler.run, args=(walk,))
    state = {"done": 0}

    def arrivals() -> None:
        threads = []
        for i in range(joiners):
            while len(stamps) < 32 + i * 12:  # one joiner every ~12 of the runner's tokens
                time.sleep(0.0005)
            t = threading.Thread(
                target=lambda i=i: pipe("t2i", PROMPTS[i % 3], seed=i, guidance_scale=1.0)
            )
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        state["done"] = len(threads)

    feeder = threading.Thread(target=arrivals)
    runner.start()
    feeder.start()
    runner.join()
    feeder.join()
    gaps = np.diff(np.asarray(stamps)) * 1e3
    busy = gaps[16 : 32 + joiners * 12]  # the stretch in which calls join and leave
    quiet = gaps[-64:] if len(gaps) > 32 + joiners * 12 + 64 else gaps[:16]
    return {
        "tokens": len(stamps),
        "joiners": state["done"],
        "median_ms": float(np.median(busy)),
        "p99_ms": float(np.percentile(busy, 99)),
        "quiet_median_ms": float(np.median(quiet)),
    }


def section(result: dict[str, Any]) -> str:
    lines = [
        f"`python bench/continuous_batching.py` — {result['date']}, {result['machine']}; the "
        "demo's exports on ONNX Runtime, one intra-op thread per session; concurrent `Pipeline` "
        f"calls from threads; medians over {result['repeats']} runs. {result['note']}",
        "",
        "| precision | concurrent t2v calls | tokens/s, steps shared | tokens/s, each alone | "
        "shared / alone | shared vs 1 call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for precision, res in result["precisions"].items():
        one = res["throughput"][0]["shared"]
        for row in res["throughput"]:
            lines.append(
                f"| {precision} | {row['clients']} | {row['shared']:.0f} | {row['alone']:.0f} | "
                f"{row['shared'] / row['alone']:.2f}x | {row['shared'] / one:.2f}x |"
            )
    lines.append("")
    for precision, res in result["precisions"].items():
        g = res["gaps"]
        verdict = "met" if g["p99_ms"] <= GAP_TARGET * g["median_ms"] else "not met"
        lines.append(
            f"{precision}: gaps of a running t2v call while {g['joiners']} t2i calls join one "
            "after another (each encodes its prompt in its own thread, joins, decodes 64 tokens, "
            f"leaves): median {g['median_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms = "
            f"{g['p99_ms'] / g['median_ms']:.2f}x the median (target <= {GAP_TARGET}x: "
            f"{verdict}); alone its median gap is {g['quiet_median_ms']:.2f} ms."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exports", nargs="+", default=[str(d) for d in DEMO_EXPORTS])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--joiners", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--note", default="", help="a sentence on the run's conditions")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    precisions = {}
    for directory in args.exports:
        pipe = load(Path(directory))
        pipe("t2i", PROMPTS[0], seed=0)  # warm: sessions made
        precisions[pipe.backend.precision] = {
            "throughput": throughput(pipe, args.clients, args.repeats),
            "gaps": gaps_while_joining(pipe, args.joiners),
        }
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": cpu_name(),
        "repeats": args.repeats,
        "note": args.note,
        "precisions": precisions,
    }
    text = section(result)
    print(text)
    if not args.no_write:
        write_marked_section(text, "continuous_batching")
    return 0


if __name__ == "__main__":
    sys.exit(main())
