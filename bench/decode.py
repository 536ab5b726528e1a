"""Decoder-step latency on the CPU: ONNX Runtime FP32 vs our PyTorch eager KV-cache path.

    python bench/decode.py [--model DIR] [--onnx DIR] [--int8-onnx DIR] [--threads 1,2]
                           [--frames 16] [--no-write]

Configuration "demo-video" (DESIGN §11): 8 frames x 8x8 tokens, d_model 256, 4 decoder layers,
8 heads, 3DNA video extents (3,3,3), batch 1, a text condition, no guidance. The model is the
shipped demo checkpoint when it is there, else the ``demo`` preset with random weights (seed 0) —
latency does not depend on the weights; the table says which was used.

Each (backend, threads) runs in its own process so thread settings and peak memory (``ru_maxrss``)
are its own:

- ``onnxruntime``: the runtime's default path (IO binding, ring cache written in place);
- ``onnxruntime (session.run)``: the plain path, NumPy in/out each step, for comparison;
- ``onnxruntime-int8``: the default path on an INT8 export (``--int8-onnx``, else quantized here
  without gates);
- ``torch eager``: ``nuwa.model.generate.DecodeState.step`` — PyTorch tensors end to end, no
  NumPy conversions (the reference KV-cache loop at its best).

Per step: wall time of one ``decoder_step`` (one token, batch 1) over ``--frames`` frames of
positions (default 16 = twice the trained length, so the second half runs on the sliding ring
cache). Reported: median over all steps after a warm-up, median over the trained length and over
the sliding part, and the least-squares slope of per-frame median step time over position
(flat = the window cache works). Whole video: ``Pipeline.text_to_video`` (text encoder, 512
sampled steps, VQ decoder), median of ``--videos`` runs. The table, with the machine and
whether a training job shared the CPU, replaces what lies between the
``<!-- BEGIN decode -->`` / ``<!-- END decode -->`` markers of bench/RESULTS.md.

``--device cuda`` (or ``cuda:N``, or ``cpu``) runs only the PyTorch eager loop, in this process,
on that device, at each ``--batch`` size (default 1,64): greedy ``DecodeState.step`` over
``--frames`` frames of positions, each step bracketed by a device synchronize (CUDA work is
asynchronous), FP32. It prints a table and one JSON object (``--json FILE`` writes it too) and
leaves bench/RESULTS.md alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- BEGIN decode -->", "<!-- END decode -->"
PROMPT = "a red square moves left"
WARMUP = 16
BACKENDS = ("onnxruntime", "onnxruntime-run", "onnxruntime-int8", "torch")
LABELS = {
    "onnxruntime": "ORT FP32 (IO binding)",
    "onnxruntime-run": "ORT FP32 (session.run)",
    "onnxruntime-int8": "ORT INT8 (IO binding)",
    "torch": "torch eager",
}
TARGET_MS = 2.0  # DESIGN §11: ORT FP32 <= 2 ms/token at 1 thread
TARGET_SPEEDUP = 2.0  # ORT >= 2x torch eager


# ---- one worker process per (backend, threads) ----------------------------------------------


def _peak_mib() -> float:
    """This process's peak RSS: ``VmHWM`` (``ru_maxrss`` would include the parent's before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _summary(times: list[float], cpu: list[float], per_frame: int, trained: int) -> dict[str, Any]:
    t = np.asarray(times) * 1e3  # ms
    pos = np.arange(t.size)
    keep = pos >= WARMUP
    slope = np.polyfit(pos[keep], t[keep], 1)[0] * 1000  # ms per 1000 positions
    inside = keep & (pos < trained * per_frame)
    sliding = pos >= trained * per_frame
    c = np.asarray(cpu) * 1e3
    # slope of the per-frame medians over the frame's middle position: robust to the odd slow
    # step (a shared VM), which a per-step least-squares fit turns into a spurious trend
    frames = [(f * per_frame, (f + 1) * per_frame) for f in range(t.size // per_frame)]
    mids = [(a + b - 1) / 2 for a, b in frames]
    meds = [float(np.median(c[max(a, WARMUP) : b])) for a, b in frames]
    cpu_slope = np.polyfit(mids, meds, 1)[0] * 1000 if len(meds) > 1 else 0.0
    return {
        "cpu_ms": float(np.median(c[keep])),
        "cpu_trained_ms": float(np.median(c[inside])),
        "cpu_sliding_ms": float(np.median(c[sliding])) if sliding.any() else None,
        "cpu_slope_ms_per_1000": float(cpu_slope),
        "median_ms": float(np.median(t[keep])),
        "p90_ms": float(np.percentile(t[keep], 90)),
        "median_trained_ms": float(np.median(t[inside])),
        "median_sliding_ms": float(np.median(t[sliding])) if sliding.any() else None,
        "slope_ms_per_1000": float(slope),
        "steps": int(t.size),
    }


def interleaved_cpu_ms(
    early: Callable[[int], object], late: Callable[[int], object], count: int
) -> tuple[float, float]:
    """Median CPU ms of ``early(i)`` and ``late(i)`` for ``i < count``, called alternately: a
    fresh request at positions ``0..count-1`` and one already ``N`` positions in, so a drift in
    machine speed over the run (a shared VM) hits both alike."""
    a, b = [], []
    for i in range(count):
        for fn, out in ((early, a), (late, b)):
            start = time.process_time()
            fn(i)
            out.append(time.process_time() - start)
    return float(np.median(a) * 1e3), float(np.median(b) * 1e3)


def time_decode(
    new_state: Callable[[], Any], bos: Any, per_frame: int, frames: int
) -> tuple[list[float], list[float], tuple[float, float]]:
    """Greedy decode of ``frames`` frames in a fresh request (``new_state()``, any backend whose
    state has ``step(prev, position) -> logits``): wall and CPU seconds per step; then the
    early / late comparison of :func:`interleaved_cpu_ms` against a second fresh request."""
    state = new_state()
    prev = bos
    times, cpu = [], []
    n = frames * per_frame
    for pos in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        logits = state.step(prev, pos)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        prev = logits.argmax(-1)
    fresh = new_state()
    early_late = interleaved_cpu_ms(
        lambda i: fresh.step(bos, i), lambda i: state.step(bos, n + i), 2 * per_frame
    )
    return times, cpu, early_late


def worker(backend: str, threads: int, model_dir: str, export_dir: str, frames: int, videos: int):
    """Measure one configuration; print one JSON line."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        from nuwa.model.generate import DecodeState
        from nuwa.model.nuwa import NuwaModel
        from nuwa.runtime.backends.torch_backend import TorchBackend

        model = NuwaModel.from_pretrained(model_dir).eval()
        runtime_backend: Any = TorchBackend(model=model, device="cpu")
        cfg = model.config.transformer
        per_frame, trained = cfg.tokens_per_frame, cfg.frames
        with torch.inference_mode():
            cond = model.text_condition([PROMPT])
            times, cpu, early_late = time_decode(
                lambda: DecodeState(model.transformer, cond, None, frames),
                torch.full((1,), cfg.bos_id, dtype=torch.long),
                per_frame,
                frames,
            )
    else:
        from nuwa.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
        from nuwa.runtime.engine import DecodeState as RuntimeState
        from nuwa.runtime.tasks import plan_task

        runtime_backend = OnnxRuntimeBackend.from_model_dir(
            export_dir, threads=threads, io_binding=backend != "onnxruntime-run"
        )
        spec = runtime_backend.spec
        per_frame, trained = spec.tokens_per_frame, spec.frames
        plan = plan_task(runtime_backend, "t2v", prompt=PROMPT, num_frames=frames)
        times, cpu, early_late = time_decode(
            lambda: RuntimeState(runtime_backend, plan.cond, None, frames),
            np.full((1,), spec.bos_id, dtype=np.int64),
            per_frame,
            frames,
        )
    n = frames * per_frame

    from nuwa.runtime.pipeline import Pipeline

    pipe = Pipeline(runtime_backend, progress=False)
    walls = []
    for i in range(videos):
        start = time.perf_counter()
        pipe.text_to_video(PROMPT, seed=i, temperature=1.0, top_k=16)
        walls.append(time.perf_counter() - start)
    result = _summary(times, cpu, per_frame, trained)
    result.update(
        cpu_early_ms=early_late[0],
        cpu_late_ms=early_late[1],
        late_position=n,
        interleaved_count=2 * per_frame,
        backend=backend,
        threads=threads,
        video_s=float(np.median(walls)),
        peak_mib=_peak_mib(),
        torch_imported="torch" in sys.modules,
    )
    print(json.dumps(result))


# ---- the driver -------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_running() -> bool:
    """Whether a ``nuwa train`` process is running (a stopped one, ``kill -STOP``, is not)."""
    proc = subprocess.run(["pgrep", "-f", "nuwa train"], capture_output=True, text=True)
    for pid in proc.stdout.split():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("T", "t", "Z"):
            return True
    return False


def prepare_model(model: str | None, work: Path) -> tuple[Path, str]:
    """(model directory, description): the given one, the demo checkpoint, or random demo."""
    from nuwa.runtime.pipeline import default_model_dir

    if model:
        return Path(model), f"`{model}`"
    demo = default_model_dir()
    if (demo / "config.json").is_file():
        return demo, "the shipped demo checkpoint (`model/checkpoints/demo`)"
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    torch.manual_seed(0)
    out = work / "demo_random"
    NuwaModel(NuwaConfig.from_name("demo")).save_pretrained(out)
    return out, "the `demo` preset with random weights (the demo checkpoint was not there yet)"


def run_worker(backend: str, threads: int, args: argparse.Namespace, model: Path, onnx: Path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",  # idle OpenMP threads sleep, as ORT's do (no spinning)
    }
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        backend,
        str(threads),
        str(model),
        str(args.int8_onnx if backend == "onnxruntime-int8" else onnx),
        str(args.frames),
        str(args.videos),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench/decode.py: {backend} x{threads} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_section(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def f(x: float | None, nd: int = 2) -> str:
        return "—" if x is None else f"{x:.{nd}f}"

    torch_ms = {r["threads"]: r["cpu_ms"] for r in rows if r["backend"] == "torch"}
    lines = [
        "## Decoder step on the CPU (`bench/decode.py`)",
        "",
        f"Machine: {meta['machine']}. Measured {meta['date']} UTC, onnxruntime "
        f"{meta['ort']}, torch {meta['torch']}. Model: {meta['model']}.",
        "",
        "Configuration demo-video (DESIGN §11): 8 frames × 8×8 tokens, d 256, 4 decoder layers, "
        "8 heads, 3DNA (3,3,3), batch 1, text condition, no guidance. One `decoder_step` per "
        f"token over {meta['steps']} positions ({meta['frames']} frames = "
        f"{meta['frames'] / 8:g}× the trained length; the positions past 512 slide the ring "
        f"cache), first {WARMUP} steps dropped. **CPU** = process CPU time per step "
        "(`time.process_time`): at 1 thread every op runs on the calling thread, so this is the "
        "step's latency on a core of its own, unaffected by other processes taking the CPU; "
        "**wall** = `perf_counter` per step, which includes waiting for the CPU. Slope: "
        "least-squares fit of the per-frame median CPU times, ms per 1000 positions. Early / "
        "late: a fresh request at positions 0–127 and the finished one going on from its last "
        "position, stepped alternately (median CPU ms). Video: "
        "`Pipeline.text_to_video` (encoder + "
        f"512 sampled steps + VQ decoder), wall, median of {meta['videos']}. Peak memory: the "
        "worker process's VmHWM.",
        "",
        "| backend | threads | CPU ms/token | wall ms/token | wall p90 | CPU, trained part "
        "| CPU, sliding part | CPU slope /1000 pos | CPU early / late, interleaved "
        "| vs torch eager (CPU) | video s (wall) | peak RSS MiB | torch imported |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = torch_ms.get(r["threads"])
        ratio = "—" if base is None else f"{base / r['cpu_ms']:.2f}×"
        lines.append(
            f"| {LABELS[r['backend']]} | {r['threads']} | {f(r['cpu_ms'], 3)} | "
            f"{f(r['median_ms'], 3)} | {f(r['p90_ms'], 3)} | {f(r['cpu_trained_ms'], 3)} | "
            f"{f(r['cpu_sliding_ms'], 3)} | {f(r['cpu_slope_ms_per_1000'], 3)} | "
            f"{f(r['cpu_early_ms'], 3)} / {f(r['cpu_late_ms'], 3)} | {ratio} | "
            f"{f(r['video_s'])} | {f(r['peak_mib'], 0)} | "
            f"{'yes' if r['torch_imported'] else 'no'} |"
        )
    ort1 = next((r for r in rows if r["backend"] == "onnxruntime" and r["threads"] == 1), None)
    if ort1 is None:
        return "\n".join(lines)
    ms = ort1["cpu_ms"]
    speedup = torch_ms[1] / ms if 1 in torch_ms else None
    # flat: a step far into the video costs what an early one does, measured interleaved
    # (so a change of machine speed during the run cannot fake or hide a trend)
    early, late = ort1["cpu_early_ms"], ort1["cpu_late_ms"]
    flat = abs(late - early) <= 0.1 * early
    lines += [
        "",
        "Targets (DESIGN §11), ORT FP32 with IO binding at 1 thread, CPU time per token:",
        "",
        f"- ≤ {TARGET_MS:g} ms/token: **{ms:.3f} ms — {'met' if ms <= TARGET_MS else 'NOT met'}**;",
        "- ≥ 2× torch eager: "
        + (
            "**not measured** (torch eager did not finish in this run);"
            if speedup is None
            else f"**{speedup:.2f}× — {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}**;"
        ),
        f"- flat in position: positions 0–{ort1['interleaved_count'] - 1} vs "
        f"{ort1['late_position']}–{ort1['late_position'] + ort1['interleaved_count'] - 1}, "
        f"stepped alternately: {early:.3f} vs {late:.3f} "
        f"ms — **{'met' if flat else 'NOT met'}** (within 10%; the sequential run's slope, "
        f"{ort1['cpu_slope_ms_per_1000']:+.3f} ms per 1000 positions, and trained part "
        f"{ort1['cpu_trained_ms']:.3f} vs sliding part {f(ort1['cpu_sliding_ms'], 3)} ms also "
        "carry the machine's drift over the run).",
    ]
    int8 = next((r for r in rows if r["backend"] == "onnxruntime-int8" and r["threads"] == 1), None)
    if int8 is not None:
        lines.append(
            f"- INT8 ≥ 1.8× FP32 (`bench/precision.py` is the benchmark of record): here "
            f"{ms / int8['cpu_ms']:.2f}× ({int8['cpu_ms']:.3f} ms; one run of each)."
        )
    lines.append("")
    if meta["shared"]:
        lines.append(
            "**A training job (`nuwa train`, at a higher priority) shared the 2-core CPU during "
            "this run**, so wall times are inflated and noisy; the CPU-time columns are the "
            "numbers to read (caches and memory bandwidth were still shared)."
        )
    else:
        lines.append("No training job was running during this run.")
    if meta.get("profile"):
        lines += [
            "",
            "Where ORT's step time goes (ONNX Runtime profiler, 1 thread, share of kernel time "
            f"by op type): {meta['profile']}.",
        ]
    return "\n".join(lines)


def write_section(text: str, path: Path = RESULTS) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def profile_ops(onnx: Path, frames: int) -> str:
    """Share of ORT kernel time by op type over a video's steps (1 thread)."""
    import collections

    import onnx as onnx_lib
    import onnxruntime as ort

    from nuwa.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from nuwa.runtime.engine import DecodeState
    from nuwa.runtime.tasks import plan_task

    backend = OnnxRuntimeBackend.from_model_dir(onnx, threads=1, io_binding=False)
    plan = plan_task(backend, "t2v", prompt=PROMPT)
    graph = backend.step_graph(plan.cond, frames)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "nuwa_decode_profile")
    model = backend.prepare_graph(graph.name, onnx_lib.load(str(backend.manifest.path(graph.name))))
    session = ort.InferenceSession(model.SerializeToString(), opts)  # as the backend runs it
    backend._sessions[graph.name] = session
    state = DecodeState(backend, plan.cond, None, frames)
    prev = np.full((1,), backend.spec.bos_id, dtype=np.int64)
    for pos in range(4 * backend.spec.tokens_per_frame):
        prev = state.step(prev, pos).argmax(-1)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    return ", ".join(f"{op} {100 * t / total:.0f}%" for op, t in by_op.most_common(6))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: demo checkpoint, else random demo)")
    p.add_argument("--onnx", help="an existing export of --model (default: export it now)")
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts")
    p.add_argument("--frames", type=int, default=16, help="frames of positions to time")
    p.add_argument("--videos", type=int, default=3, help="whole videos per configuration")
    p.add_argument(
        "--int8-onnx",
        help="an INT8 export of --model (`nuwa quantize`; default: quantize it now, no gates)",
    )
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--device",
        help="run only the torch eager loop on this device (cuda, cuda:N, cpu) at --batch sizes",
    )
    p.add_argument("--batch", default="1,64", help="batch sizes of a --device run")
    p.add_argument("--json", help="with --device: also write the results to this file")
    args = p.parse_args()
    if args.device is not None:
        try:
            batches = [int(b) for b in args.batch.split(",")]
        except ValueError:
            p.error(f"--batch must be comma-separated integers, got {args.batch!r}")
        if min(batches) < 1 or args.frames < 1:
            p.error("--batch sizes and --frames must be >= 1")
        return device_main(args.device, batches, args.frames, args.model, args.json)
    threads = sorted({int(t) for t in args.threads.split(",")})
    shared = training_running()
    with tempfile.TemporaryDirectory(prefix="nuwa-bench-") as tmp:
        model, described = prepare_model(args.model, Path(tmp))
        from nuwa.export import export_model

        onnx = Path(args.onnx) if args.onnx else Path(tmp) / "onnx"
        if not args.onnx:
            export_model(model, onnx)
        if "onnxruntime-int8" in args.backends.split(",") and not args.int8_onnx:
            from nuwa.calibration.capture import CalibrationSet
            from nuwa.calibration.quantize import quantize_export

            args.int8_onnx = str(Path(tmp) / "int8")
            quantize_export(onnx, args.int8_onnx, "int8", CalibrationSet(count=2), None)
        profile = profile_ops(onnx, 8)
        rows: list[dict[str, Any]] = []
        for backend in args.backends.split(","):
            for n in threads:
                print(f"bench/decode.py: {LABELS[backend]}, {n} thread(s) ...", file=sys.stderr)
                rows.append(run_worker(backend, n, args, model, onnx))
                shared = shared or training_running()
                text = format_section(rows, _meta(rows, args, described, shared, profile))
                if not args.no_write:  # after every configuration: a cut-off run keeps its rows
                    write_section(text)
    print(text)
    if not args.no_write:
        print(f"wrote the decode section of {RESULTS}", file=sys.stderr)
    return 0


def torch_device_decode(model_dir: Path, device: str, batch: int, frames: int) -> dict[str, Any]:
    """Greedy torch eager decode of ``batch`` rows over ``frames`` frames of positions on
    ``device``: wall ms per step, each step between two device synchronizations."""
    import torch

    from nuwa.model.generate import DecodeState
    from nuwa.model.nuwa import NuwaModel

    model = NuwaModel.from_pretrained(model_dir).eval().to(device)
    cfg = model.config.transformer
    steps = frames * cfg.tokens_per_frame
    if steps <= WARMUP:
        raise ValueError(f"{frames} frame(s) = {steps} steps, not more than the {WARMUP} warm-up")
    on_cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    times = []
    with torch.inference_mode():
        state = DecodeState(model.transformer, model.text_condition([PROMPT] * batch), None, frames)
        prev = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=device)
        for pos in range(steps):
            sync()
            start = time.perf_counter()
            prev = state.step(prev, pos).argmax(-1)
            sync()
            times.append(time.perf_counter() - start)
    t = np.asarray(times[WARMUP:]) * 1e3
    trained_steps = cfg.frames * cfg.tokens_per_frame  # past these the ring cache slides
    trained = np.asarray(times[WARMUP:trained_steps]) * 1e3
    sliding = np.asarray(times[max(WARMUP, trained_steps) :]) * 1e3
    median = float(np.median(t))
    return {
        "batch": batch,
        "steps": steps,
        "median_step_ms": median,  # ms per token of each row (the latency of one token)
        "p90_step_ms": float(np.percentile(t, 90)),
        "median_trained_ms": float(np.median(trained)) if trained.size else None,
        "median_sliding_ms": float(np.median(sliding)) if sliding.size else None,
        "tokens_per_s": batch / (median * 1e-3),
    }


def device_main(
    device: str, batches: list[int], frames: int, model: str | None, json_path: str | None
) -> int:
    """The ``--device`` run: torch eager on one device at each batch size; table + JSON."""
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print(f"bench/decode.py --device {device}: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nuwa-bench-") as tmp:
        model_dir, described = prepare_model(model, Path(tmp))
        rows = [torch_device_decode(model_dir, device, b, frames) for b in batches]
    on_cuda = torch.device(device).type == "cuda"
    result = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
        "torch": torch.__version__,
        "precision": "fp32",
        "model": described,
        "frames": frames,
        "warmup_steps": WARMUP,
        "rows": rows,
    }
    print(f"torch eager decode on {result['device_name']} ({device}), torch {torch.__version__}")
    print("| batch | ms/step (median) | p90 | trained part | sliding part | tokens/s |")
    print("|---:|---:|---:|---:|---:|---:|")

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    for r in rows:
        print(
            f"| {r['batch']} | {f(r['median_step_ms'])} | {f(r['p90_step_ms'])} | "
            f"{f(r['median_trained_ms'])} | {f(r['median_sliding_ms'])} | "
            f"{r['tokens_per_s']:.0f} |"
        )
    print(json.dumps(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _meta(
    rows: list[dict[str, Any]], args: argparse.Namespace, model: str, shared: bool, profile: str
) -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores visible, no GPU ({platform.system()})",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "ort": onnxruntime.__version__,
        "torch": torch.__version__,
        "model": model,
        "steps": rows[0]["steps"],
        "frames": args.frames,
        "videos": args.videos,
        "shared": shared,
        "profile": profile,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        b, n, m, o, fr, v = sys.argv[2:8]
        worker(b, int(n), m, o, int(fr), int(v))
        sys.exit(0)
    sys.exit(main())
