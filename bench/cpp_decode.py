"""The C++ runtime's whole generation beside the Python runtime's, in one run (issue 39).

Text→video of the trained 8 frames on the demo's FP32 export (``model/checkpoints/demo/onnx``),
greedy (temperature 0, as in the runs bench/RESULTS.md records), ONNX Runtime's CPU, one intra-op
thread, with and without guidance (two rows / one). Each runtime runs in a process of its own,
pinned to one core or free to use every core: ``libnuwa_runtime.so`` through ctypes
(``nuwa_generate``, its ``nuwa_last_generate_stats`` timing the whole call, every ONNX Runtime
run inside it and the decoder steps among them) and ``nuwa.runtime.Pipeline`` (the wall time of
the call). Medians over ``--repeats`` generations after one warm-up; the two runtimes' tokens
are checked equal.

Target (issue 39): the C++ whole generation ≤ 1.05× the sum of its own decoder steps. Both
runtimes decode finished frames (the VQ decoder) on the calling thread while the decode loop's
thread steps on, so the VQ decoder's time can hide behind the steps only where a second core is
free; pinned to one core (the C++ runtime then runs the two in turn on one thread) it adds.

    python3 bench/cpp_decode.py [--lib build/runtime-cpp-tests/libnuwa_runtime.so]
                                [--repeats 5] [--no-write]

The library is the tests' build (``python3 -m pytest tests/runtime_cpp`` makes it) unless
``--lib`` names another. Writes the ``cpp_decode`` section of ``bench/RESULTS.md`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_setup import cpu_name
from results_file import write_marked_section

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "model" / "checkpoints" / "demo" / "onnx"
LIB = ROOT / "build" / "runtime-cpp-tests" / "libnuwa_runtime.so"
PROMPT = "a red square at the top left moves right"
FRAMES = 8
TARGET = 1.05  # C++ whole generation / the sum of its decoder steps


def load_capi() -> Any:
    """The tests' ctypes bindings of nuwa.h (tests/runtime_cpp/capi.py), loaded by path."""
    path = ROOT / "tests" / "runtime_cpp" / "capi.py"
    spec = importlib.util.spec_from_file_location("nuwa_capi_bindings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cpp_worker(spec: dict[str, Any]) -> dict[str, Any]:
    capi = load_capi()
    lib = capi.load(Path(spec["lib"]))
    model = capi.open_model(lib, EXPORT, threads=1)
    out: dict[str, Any] = {"runs": []}
    request, _keep = capi.make_request(
        lib, "t2v", [PROMPT.encode()], FRAMES, 1, 0.0, spec["guidance"]
    )
    for i in range(spec["repeats"] + 1):  # the first: warm-up (sessions made)
        start = time.perf_counter()
        result = capi.generate(lib, model, request)
        wall = time.perf_counter() - start
        stats = capi.last_stats(lib)
        if i:
            out["runs"].append(
                {
                    "wall": wall,
                    "total": stats.total_seconds,
                    "ort": stats.ort_seconds,
                    "steps": stats.step_seconds,
                    "step_runs": stats.step_runs,
                }
            )
        out["tokens"] = result.tokens.reshape(-1).tolist()
    lib.nuwa_close(model)
    return out


def python_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from nuwa.runtime import Pipeline
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend.from_model_dir(EXPORT, device="cpu", threads=1)
    pipe = Pipeline(backend, progress=False)
    out: dict[str, Any] = {"runs": []}
    for i in range(spec["repeats"] + 1):
        start = time.perf_counter()
        result = pipe(
            "t2v", PROMPT, num_frames=FRAMES, temperature=0.0, guidance_scale=spec["guidance"]
        )
        wall = time.perf_counter() - start
        if i:
            out["runs"].append({"wall": wall})
        out["tokens"] = result.tokens.reshape(-1).tolist()
    return out


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One runtime and guidance setting in a process of its own (``spec["pinned"]``: to one
    core, else free to use all)."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def format_section(rows: list[dict[str, Any]], meta: dict[str, str]) -> str:
    lines = [
        "## C++ runtime: whole generation beside the Python runtime (`bench/cpp_decode.py`)",
        "",
        f"{meta['machine']}; {meta['date']} UTC; ONNX Runtime {meta['ort']}; "
        f"{meta['repeats']} generations per row after a warm-up (medians). Text→video, "
        f"{FRAMES} frames (512 positions), the demo's FP32 export, greedy, one intra-op thread, "
        "each runtime in its own process, pinned to one core (one core) or free to use every "
        f"core (all cores). {meta['load']}",
        "",
        "| cores | guidance | rows | C++ whole (s) | C++ in ORT (s) | C++ steps (s) | encoders + "
        f"VQ decoder (s) | whole / steps (target ≤ {TARGET}) | whole / ORT | Python whole (s) | "
        "Python / C++ | tokens equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cores']} | {r['guidance']:g} | {r['rows']} | {r['cpp_whole']:.3f} | "
            f"{r['cpp_ort']:.3f} | "
            f"{r['cpp_steps']:.3f} | {r['cpp_ort'] - r['cpp_steps']:.3f} | "
            f"{r['whole_over_steps']:.3f} | {r['whole_over_ort']:.3f} | "
            f"{r['py_whole']:.3f} | {r['py_over_cpp']:.2f} | {r['equal']} |"
        )
    lines += ["", verdict(rows)]
    lines += [
        "",
        "C++ whole: `nuwa_generate` (text encoder, 512 decoder steps with greedy choice and "
        "guidance, the VQ decoder per frame); in ORT: every ONNX Runtime run in it, on both of "
        "its threads; steps: the decoder-step runs (`nuwa_last_generate_stats`). Python whole: "
        "`Pipeline.__call__` (checks, the same graphs, the continuous-batching scheduler alone, "
        "frames decoded as they finish). Both runtimes run the decode loop on a thread of its "
        "own and VQ-decode each finished frame on the calling thread meanwhile: with a core free "
        "for it the VQ decoder's time hides behind the steps (all cores: whole / ORT below 1, "
        "the two threads' ORT time overlapping); on one core it cannot, and the C++ runtime then "
        "runs the loop and the frames' decoding in turn on the calling thread, so whole / steps "
        "holds the VQ decoder's and encoders' time. With all cores the C++ runtime also runs "
        "the conditional and unconditional rows' encoders side by side (guidance 2); what is "
        "left beyond the steps is the encoders before the first step and the last frame's VQ "
        "decoding after the last one.",
    ]
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    """One line: whole / steps pinned (nothing can overlap) and free, against the target."""

    def span(cores: str) -> str:
        ratios = [r["whole_over_steps"] for r in rows if r["cores"] == cores]
        return f"{min(ratios):.3f}–{max(ratios):.3f}" if ratios else "not measured"

    free = [r["whole_over_steps"] for r in rows if r["cores"] == "all cores"]
    met = "met" if free and max(free) <= TARGET else "not met"
    return (
        f"C++ whole / steps: pinned to one core {span('one core')} (no overlap is possible there: "
        f"the encoders' and the VQ decoder's compute adds to the steps'); free to use both cores "
        f"{span('all cores')}: the target ≤ {TARGET} is {met} where a second core is free."
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lib", default=str(LIB), help="libnuwa_runtime.so to time")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--load", default="", help="what else ran on the machine meanwhile (said in the section)"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        if spec["pinned"]:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        work = cpp_worker if spec["runtime"] == "cpp" else python_worker
        print(json.dumps(work(spec)))
        return 0
    if not Path(args.lib).is_file():
        print(f"{args.lib} is missing: build it (python3 -m pytest tests/runtime_cpp) or --lib")
        return 2
    rows = []
    for cores in ("one core", "all cores"):
        for guidance in (1.0, 2.0):
            rows.append(measure(args, guidance, cores == "one core") | {"cores": cores})
    import onnxruntime

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    vendor = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                   if ln.startswith("Model name")), cpu_name())  # fmt: skip
    meta = {
        "machine": f"{vendor} (lscpu), {os.cpu_count()} cores visible, no GPU",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "ort": onnxruntime.__version__,
        "repeats": str(args.repeats),
        "load": args.load,
    }
    section = format_section(rows, meta)
    print(section)
    if not args.no_write:
        write_marked_section(section, "cpp_decode")
    return 0


def measure(args: argparse.Namespace, guidance: float, pinned: bool) -> dict[str, Any]:
    """One row: the C++ and the Python runtime, each in a worker process."""
    base = {"lib": args.lib, "repeats": args.repeats, "guidance": guidance, "pinned": pinned}
    cpp = run_worker({**base, "runtime": "cpp"})
    py = run_worker({**base, "runtime": "python"})
    whole, steps = median(cpp["runs"], "total"), median(cpp["runs"], "steps")
    return {
        "guidance": guidance,
        "rows": 2 if guidance != 1.0 else 1,
        "cpp_whole": whole,
        "cpp_ort": median(cpp["runs"], "ort"),
        "cpp_steps": steps,
        "whole_over_steps": whole / steps,
        "whole_over_ort": whole / median(cpp["runs"], "ort"),
        "py_whole": median(py["runs"], "wall"),
        "py_over_cpp": median(py["runs"], "wall") / whole,
        "equal": "yes" if cpp["tokens"] == py["tokens"] else "**no**",
    }


if __name__ == "__main__":
    raise SystemExit(main())
