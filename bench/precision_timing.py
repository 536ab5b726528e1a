"""Timing one decoder step as the runtime runs it (``bench/precision.py``'s measurement).

The step's feeds (:func:`step_feeds`) are bound the way the runtime binds them on the CPU
(:func:`bind_step`: IO binding, the ring cache written in place); :func:`time_alone` times one
graph stepping alone in a process of its own (this file run with ``--worker``), as a generation
runs it; :func:`time_steps` steps several graphs in turn in this process (every step with cold
caches); :func:`profile_split` splits a step's kernel time into the weight layers and the rest
from an ONNX Runtime node profile.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# op types of weight layers (MatMul / FusedMatMul only with a constant weight: see profile_split)
WEIGHT_OPS = {"MatMul", "Gemm", "MatMulIntegerToFloat", "QuantizeLinear", "DequantizeLinear"}
WEIGHT_OPS |= {"DynamicQuantizeMatMul", "QLinearMatMul", "MatMulInteger", "FusedMatMul"}
WEIGHT_OPS |= {"QGemm", "MatMulNBits"}


def step_feeds(runner: Any, graph: str, batch: int, position: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    d = runner.manifest.decoder
    feeds: dict[str, np.ndarray] = {}
    for t in runner.manifest.graph(graph).inputs:
        shape = [batch if isinstance(s, str) else s for s in t.shape]
        if t.name == d.positions:
            feeds[t.name] = np.full(shape, position, dtype=np.int64)
        elif t.dtype == "int64":
            feeds[t.name] = rng.integers(0, d.vocab_size, shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def bind_step(sess: Any, feeds: dict[str, np.ndarray], cache: dict[str, str]) -> Any:
    """An IO binding of one decoder step the way the runtime binds it on the CPU: inputs as
    preallocated OrtValues, each ``present`` output bound to its ``past`` input's buffer (the
    ring cache written in place: ``OnnxRuntimeBackend.cache_in_place``), logits preallocated.
    ``cache`` maps present output names to past input names."""
    import onnxruntime as ort

    values = {k: ort.OrtValue.ortvalue_from_numpy(np.array(v)) for k, v in feeds.items()}
    binding = sess.io_binding()
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        if out.name in cache:
            binding.bind_ortvalue_output(out.name, values[cache[out.name]])
        else:
            shape = [feeds[sess.get_inputs()[0].name].shape[0], *out.shape[1:]]
            value = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
            binding.bind_ortvalue_output(out.name, value)
    return binding


def time_steps(
    sessions: dict[str, Any], feeds: dict[str, np.ndarray], steps: int, cache: dict[str, str]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved timing (one step of each precision in turn) through IO bindings as the
    runtime makes them (:func:`bind_step`), after a warm-up: (wall times, process CPU times).
    With one intra-op thread the CPU time is what the step costs even when the machine is
    shared; the wall time is what a user waits."""
    bindings = {name: bind_step(sess, feeds, cache) for name, sess in sessions.items()}
    for name, sess in sessions.items():
        for _ in range(10):
            sess.run_with_iobinding(bindings[name])
    wall: dict[str, list[float]] = {k: [] for k in sessions}
    cpu: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(steps):
        for name, sess in sessions.items():
            t0, c0 = time.perf_counter(), time.process_time()
            sess.run_with_iobinding(bindings[name])
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def time_alone(
    model_path: Path,
    feeds_path: Path,
    cache: dict[str, str],
    threads: int,
    steps: int,
    warmup: int = 20,
) -> tuple[list[float], list[float]]:
    """Time ``steps`` consecutive steps of one graph in a process of its own (after ``warmup``
    untimed ones): how a generation runs, one session stepping alone, its weights and cache
    warm in the CPU caches. (Sessions of several graphs stepped in turn in one process, as
    :func:`time_steps` does, cycle all their weights through the caches: FP32, INT8 and FP16
    together are ~45 MB against a 32 MB L3 on the development VM, every step starts cold.)
    Returns (wall seconds, CPU seconds) per step."""
    result = _run_worker(model_path, feeds_path, cache, threads, steps, warmup)
    return result["wall"], result["cpu"]


def run_alone(
    model_path: Path,
    feeds_path: Path,
    cache: dict[str, str],
    threads: int,
    steps: int,
    warmup: int = 20,
) -> dict[str, Any]:
    """:func:`time_alone`, with the worker process's peak RSS: ``{"wall": [...], "cpu": [...],
    "maxrss_kib": int}`` (the session, its weights and one IO binding)."""
    return _run_worker(model_path, feeds_path, cache, threads, steps, warmup)


def _run_worker(
    model_path: Path,
    feeds_path: Path,
    cache: dict[str, str],
    threads: int,
    steps: int,
    warmup: int,
    profile: bool = False,
) -> dict[str, Any]:
    """Run :func:`worker` in a fresh process; its one line of JSON."""
    spec = {
        "model": str(model_path),
        "feeds": str(feeds_path),
        "cache": cache,
        "threads": threads,
        "steps": steps,
        "warmup": warmup,
        "profile": profile,
    }
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"timing worker failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(spec_json: str) -> None:
    """The process :func:`time_alone` starts: one session, one IO binding, the timed steps."""
    import onnxruntime as ort

    from nuwa.calibration.onnx_runner import session_options

    spec = json.loads(spec_json)
    with np.load(spec["feeds"]) as data:
        feeds = {k: data[k] for k in data.files}
    options = session_options(spec["threads"])
    if spec["profile"]:
        tmp = Path(tempfile.mkdtemp(prefix="nuwa-precision-profile-"))
        options.enable_profiling = True
        options.profile_file_prefix = str(tmp / "profile")
        options.optimized_model_filepath = str(tmp / "optimized.onnx")
    sess = ort.InferenceSession(spec["model"], options, ["CPUExecutionProvider"])
    binding = bind_step(sess, feeds, spec["cache"])
    if spec["profile"]:
        split = _profile(sess, binding, tmp / "optimized.onnx", spec["warmup"], spec["steps"])
        shutil.rmtree(tmp)
        print(json.dumps(split))
        return
    for _ in range(spec["warmup"]):
        sess.run_with_iobinding(binding)
    wall, cpu = [], []
    for _ in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        sess.run_with_iobinding(binding)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"wall": wall, "cpu": cpu, "maxrss_kib": peak_rss_kib()}))


def peak_rss_kib() -> int:
    """This process's peak resident set (KiB): ``VmHWM`` of its own address space. (Linux's
    ``ru_maxrss`` also counts the parent's peak when the process was spawned by ``vfork`` +
    ``exec``, as ``subprocess`` does.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def profile_split(
    model_path: Path, feeds_path: Path, cache: dict[str, str], threads: int
) -> dict[str, float]:
    """ms per step in weight layers vs everything else: an ONNX Runtime node profile of the
    graph stepping alone in a process of its own, bound as the runtime binds it, warm (the
    profile counts the runs after 20 untimed ones). The profiler's own cost per node inflates
    every node's time (measured: profiled sums ~2-3x the unprofiled step), the rest's ~125
    small nodes most, so the split says where precisions differ, not absolute times. A weight
    layer is a node of the optimized graph that multiplies by a constant
    weight (Gemm, QGemm, MatMulNBits, MatMulIntegerToFloat, ..., or a MatMul / FusedMatMul
    whose second input is an initializer), or a Q/DQ node feeding one; the attention's
    MatMuls over the cache are not."""
    return _run_worker(model_path, feeds_path, cache, threads, 30, 20, profile=True)


def _profile(sess: Any, binding: Any, optimized: Path, warmup: int, runs: int) -> dict:
    """The weight / rest split of a session made with profiling on (see profile_split)."""
    import onnx

    weight_nodes = weight_layer_nodes(onnx.load(str(optimized), load_external_data=False).graph)
    for _ in range(warmup + runs):
        sess.run_with_iobinding(binding)
    events = json.loads(Path(sess.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    begin = starts[warmup] if len(starts) > warmup else 0
    weight = total = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < begin:
            continue
        total += event["dur"]
        if event["name"].removesuffix("_kernel_time") in weight_nodes:
            weight += event["dur"]
    weight, total = weight / runs / 1e3, total / runs / 1e3
    return {"weight_ms": weight, "other_ms": total - weight, "total_ms": total}


def weight_layer_nodes(graph: Any) -> set[str]:
    """Names of the nodes of an (ONNX Runtime optimized) graph that make up its weight layers."""
    consts = {t.name for t in graph.initializer}
    names = set()
    for node in graph.node:
        matmul = node.op_type in ("MatMul", "FusedMatMul")
        if (matmul and node.input[1] in consts) or (not matmul and node.op_type in WEIGHT_OPS):
            names.add(node.name)
    return names


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit(
            "usage: python bench/precision_timing.py --worker SPEC (bench/precision.py runs it)"
        )
    worker(sys.argv[2])
