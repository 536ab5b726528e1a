"""A whole generation against the sum of its decoder steps (issue 37: a whole generation should
cost at most 15% more than its steps), plus cold start and peak memory.

Text→video of the trained 8 frames through ``Pipeline`` on ONNX Runtime's CPU (one intra-op
thread), FP32 (the demo's export) and INT8 (quantized from it unless ``--int8-dir``), without
guidance (one row) and with it (two rows: the conditional and unconditional one). In the same
process the backend's calls are timed where they happen — each request state's ``step``, the
text encoder (``text_condition``), the VQ decoder (``codes_to_frames``), the step pool's runs
(the Pipeline steps its requests through the continuous-batching scheduler, alone here) — so a
generation splits into steps, encoders, VQ decoder and the rest (sampling, guidance, callbacks,
Python), medians over ``--repeats`` generations. Each precision runs in processes of its own
(this file with ``--worker``), one pinned to one core and one free to use every core (the VQ
decoder then runs beside the decode loop), each of which also reports the **cold start** (from
the worker script's first line to the first token of its first generation: nuwa's imports,
session creation, the text encoder) and its peak RSS.

    python3 bench/decode_whole.py [--int8-dir Q] [--repeats 5] [--no-write]

Writes the ``decode_whole`` section of ``bench/RESULTS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from cpu_exports import add_export_options, int8_export, report
from decode_setup import cpu_name

START = time.perf_counter()  # a worker's cold start counts from here (nuwa's imports included)
PROMPT = "a red square at the top left moves right"
TARGET = 1.15  # whole generation / sum of its steps


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One precision: cold start, then ``repeats`` timed generations per guidance setting;
    ``one_core``: the process (every thread it makes) pinned to one CPU."""
    if spec.get("one_core"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np

    from nuwa.runtime import Pipeline
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from nuwa.spec.generation_config import GenerationConfig

    timers: dict[str, float] = {"steps": 0.0, "encoder": 0.0, "vq_decoder": 0.0}
    counts: dict[str, int] = {"steps": 0}

    def timed(fn: Any, key: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[key] += time.perf_counter() - t0
                counts[key] = counts.get(key, 0) + 1

        return call

    backend = OnnxRuntimeBackend.from_model_dir(spec["dir"], threads=1)
    start_request = backend.start_request

    def start(cond: Any, num_frames: int) -> Any:
        state = start_request(cond, num_frames)
        state.step = timed(state.step, "steps")  # type: ignore[method-assign]
        return state

    backend.start_request = start  # type: ignore[method-assign]
    new_step_pool = backend.new_step_pool

    def pool(state: Any) -> Any:  # the Pipeline's requests step in a pool (continuous batching)
        made = new_step_pool(state)
        if made is not None:
            made.step = timed(made.step, "steps")  # type: ignore[method-assign]
        return made

    backend.new_step_pool = pool  # type: ignore[method-assign]
    backend.text_condition = timed(backend.text_condition, "encoder")  # type: ignore[method-assign]
    backend.codes_to_frames = timed(backend.codes_to_frames, "vq_decoder")  # type: ignore[method-assign]
    pipe = Pipeline(backend, progress=False, generation_config=GenerationConfig.load(spec["dir"]))
    first: list[float] = []

    def on_step(event: Any) -> None:
        if not first:
            first.append(time.perf_counter())

    pipe("t2v", PROMPT, seed=0, guidance_scale=1.0, callback=on_step)
    cold = first[0] - START
    rows = {}
    for guidance in (1.0, 2.0):
        runs = []
        for r in range(spec["repeats"]):
            for k in timers:
                timers[k] = 0.0
            counts["steps"] = 0
            t0 = time.perf_counter()
            pipe("t2v", PROMPT, seed=r, guidance_scale=guidance)
            wall = time.perf_counter() - t0
            runs.append({**timers, "wall": wall, "positions": counts["steps"]})
        med = {k: float(np.median([run[k] for run in runs])) for k in runs[0]}
        # the VQ decoder runs in the calling thread while the loop steps (frames decoded as they
        # finish), so only what it adds to the wall time is in "rest", with the Python
        med["rest"] = med["wall"] - med["steps"] - med["encoder"]
        med["ratio"] = float(np.median([run["wall"] / run["steps"] for run in runs]))
        rows["guided" if guidance != 1.0 else "unguided"] = med
    return {"cold_start_s": cold, "peak_rss_mib": _peak_mib(), "rows": rows}


def run_worker(directory: Path, repeats: int, one_core: bool) -> dict[str, Any]:
    spec = json.dumps({"dir": str(directory), "repeats": repeats, "one_core": one_core})
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", spec],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the worker for {directory} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def section(result: dict[str, Any]) -> str:
    lines = [
        f"`python bench/decode_whole.py` — {result['date']}, {result['machine']}; text→video, "
        f"{result['frames']} frames, one intra-op thread, each precision in a process of its "
        f"own, pinned to one core or free to use all; medians over {result['repeats']} "
        "generations. The VQ decoder decodes each frame in the calling thread as the frame "
        "finishes, while the decode loop's thread steps on (with a second core free, its time "
        "hides behind the steps).",
        "",
        "| precision | guidance (rows) | whole s | steps s | encoder s | VQ decoder s | rest s | "
        "whole / steps | target | ms/token whole, step |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, res in result["precisions"].items():
        for guided, row in res["rows"].items():
            rows = 2 if guided == "guided" else 1
            verdict = "met" if row["ratio"] <= TARGET else "not met"
            per = 1e3 / row["positions"]
            lines.append(
                f"| {name} | {guided} ({rows}) | {row['wall']:.3f} | {row['steps']:.3f} | "
                f"{row['encoder']:.3f} | {row['vq_decoder']:.3f} | {row['rest']:.3f} | "
                f"{row['ratio']:.2f}x | <= {TARGET}x: {verdict} | "
                f"{row['wall'] * per:.2f}, {row['steps'] * per:.2f} |"
            )
    lines += [""]
    for name, res in result["precisions"].items():
        lines.append(
            f"{name}: cold start (from the worker's first line to its first token: nuwa's "
            "imports, the sessions, the encoder) "
            f"{res['cold_start_s']:.2f} s; peak RSS {res['peak_rss_mib']:.0f} MiB."
        )
    lines += [
        "",
        "`rest` = whole − steps − encoder: sampling, guidance, the engine's and the pipeline's "
        "Python, and whatever of the VQ decoder's time did not hide behind the steps; steps are "
        "timed on the loop's thread, so on one core they also hold the time the VQ decoder took "
        "from them.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_export_options(p)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    fp32 = Path(args.onnx_dir)
    int8 = int8_export(args, "decode_whole")
    from nuwa.spec.manifest import load_manifest

    frames = int(load_manifest(fp32, verify_hashes=False).decoder.grid[0])
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": cpu_name(),
        "frames": frames,
        "repeats": args.repeats,
        "precisions": {
            f"{name}, {cores}": run_worker(d, args.repeats, cores == "one core")
            for name, d in (("fp32", fp32), ("int8", int8))
            for cores in ("one core", "all cores")
        },
    }
    report(section(result), result, args, "decode_whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
