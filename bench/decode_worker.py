"""One ``bench/decode.py`` configuration (backend, threads) measured in a process of its own, so
its thread settings and peak memory are its own: a greedy decode over ``frames`` frames of
positions (wall and CPU time per step), the early / late comparison stepped alternately, whole
videos through ``Pipeline.text_to_video``; and the ONNX Runtime op profile of a video's steps.
The driver starts it with :func:`run_worker` (this file run with ``--worker``)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_setup import PROMPT, WARMUP


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
        from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
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


def profile_ops(onnx: Path, frames: int) -> str:
    """Share of ORT kernel time by op type over a video's steps (1 thread)."""
    import collections

    import onnx as onnx_lib
    import onnxruntime as ort

    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
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
    backend.sessions.use_session(graph.name, session)
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
    if not total:
        raise RuntimeError(f"the profile of {graph.name} holds no kernel events")
    return ", ".join(f"{op} {100 * t / total:.0f}%" for op, t in by_op.most_common(6))


if __name__ == "__main__":
    if len(sys.argv) != 8 or sys.argv[1] != "--worker":
        sys.exit(
            "usage: python bench/decode_worker.py --worker BACKEND THREADS MODEL ONNX FRAMES VIDEOS"
        )
    b, n, m, o, fr, v = sys.argv[2:8]
    worker(b, int(n), m, o, int(fr), int(v))
