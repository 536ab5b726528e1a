"""Decoder-step latency FP32 vs INT8 vs FP16 on ONNX Runtime CPU (DESIGN §8, §11; issue 7).

Usage::

    python bench/precision.py                       # demo checkpoint if present, else demo preset
    python bench/precision.py --model-dir DIR --gates --gate-count 16   # also the quality gates
    python bench/precision.py --onnx-dir EXPORT --int8-dir Q8 --fp16-dir F16   # reuse exports

What it does: export the model (portable target), ``nuwa quantize`` it to INT8 and FP16 (the
same code as the CLI), then time the ``decoder_step`` graph of a text-conditioned video (the
demo-video configuration: 8 frames x 8x8 tokens, d 256, 4 decoder layers, 8 heads, 3DNA
(3,3,3)) at one position in the middle of a video (the ring cache has wrapped), batch 1 and 2
(guidance), one intra-op thread, all precisions in the same process, each step through an IO
binding as the runtime makes it on the CPU (ring cache written in place), each graph as the
runtime's CPU backend runs it (``OnnxRuntimeBackend.prepare_graph``: ring-cache writes as
``ScatterND``, INT8 weight layers on the runtime's kernels). Beside them, for comparison:
``fp32-exported``, the FP32 file as written (``ScatterElements`` ring writes), and ``int8-qdq``,
the Q/DQ weight layers as written, where the runtime's INT8 kernels differ.

How steps are timed: as a generation runs them, one session stepping on its own with its weights
warm in the CPU caches — ``--rounds`` rounds, each timing one block of consecutive steps per
precision in a process of its own (after 20 untimed ones), the order rotated every round, so a
drift of the machine's speed hits every precision alike. Beside that, ``--cold-steps`` steps with
the precisions stepped in turn (how the tables before 2026-12-05 were made): then every step
finds the caches full of the other graphs' weights — FP32, INT8 and FP16 together are ~45 MB
against a 32 MB L3 on the development VM — a regime no single generation is in.

An ONNX Runtime profile splits each step into the weight layers (nodes multiplying by a constant
weight, and their Q/DQ — what INT8 speeds up) and the rest (the 3DNA attention over the cache,
which stays FP32, norms, adds, cache writes, ...).

Writes its section of ``bench/RESULTS.md`` (between ``<!-- BEGIN precision -->`` and
``<!-- END precision -->``) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- BEGIN precision -->", "<!-- END precision -->"
DEMO_CHECKPOINT = ROOT / "model" / "checkpoints" / "demo"
# op types of weight layers (MatMul / FusedMatMul only with a constant weight: see profile_split)
WEIGHT_OPS = {"MatMul", "Gemm", "MatMulIntegerToFloat", "QuantizeLinear", "DequantizeLinear"}
WEIGHT_OPS |= {"DynamicQuantizeMatMul", "QLinearMatMul", "MatMulInteger", "FusedMatMul"}
WEIGHT_OPS |= {"QGemm", "MatMulNBits"}
TARGET_SPEEDUP = 1.8


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path, str]:
    """(fp32, int8, fp16) export dirs and a description of the weights."""
    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.quantize import quantize_export
    from nuwa.quality.gate_config import GateConfig
    from nuwa.quality.precision_gates import PrecisionGates

    if args.onnx_dir:
        fp32 = Path(args.onnx_dir)
        weights = f"export {fp32}"
    else:
        import torch

        from nuwa.export.exporter import export_model

        torch.set_num_threads(1)
        model_dir = Path(args.model_dir) if args.model_dir else None
        if model_dir is None and DEMO_CHECKPOINT.joinpath("config.json").is_file():
            model_dir = DEMO_CHECKPOINT
        if model_dir is None:
            from nuwa.model.nuwa import NuwaModel
            from nuwa.spec.config import NuwaConfig

            torch.manual_seed(0)
            model_dir = work / "demo_random"
            NuwaModel(NuwaConfig.from_name("demo")).eval().save_pretrained(model_dir)
            weights = "demo preset, random weights (no trained checkpoint found)"
        else:
            weights = f"checkpoint {model_dir}"
        fp32 = work / "fp32"
        _log(f"exporting {model_dir} -> {fp32}")
        export_model(model_dir, fp32, target="portable", verify=False)
    gates = (
        PrecisionGates(GateConfig(count=args.gate_count, tasks=tuple(args.gate_tasks)))
        if args.gates
        else None
    )
    calib = CalibrationSet(count=args.calib_count, seed=0)
    out = []
    for precision, given in (("int8", args.int8_dir), ("fp16", args.fp16_dir)):
        if given:
            out.append(Path(given))
            continue
        dst = work / precision
        _log(f"quantizing -> {dst} ({precision})")
        try:
            quantize_export(fp32, dst, precision, calib, gates, log=_log)
        except RuntimeError as exc:  # a failed gate still leaves the graphs and the results
            _log(f"warning: {exc}")
        out.append(dst)
    return fp32, out[0], out[1], weights


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
    print(json.dumps({"wall": wall, "cpu": cpu}))


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    from nuwa.calibration.onnx_runner import ExportRunner, portable_copy, session_options
    from nuwa.runtime.backends.int8_cpu_kernels import resolve_int8_kernels
    from nuwa.spec.manifest import load_manifest

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="nuwa-precision-"))
    fp32, int8, fp16, weights = prepare(args, work)
    dirs = {"fp32": fp32, "int8": int8, "fp16": fp16}
    runner = ExportRunner(fp32)
    opset = runner.manifest.opset
    frames = runner.spec.frames
    graph = runner.manifest.decoder_step("text", frames).name
    position = (frames // 2) * runner.spec.tokens_per_frame + runner.spec.tokens_per_frame // 2
    models = {}
    kernels = resolve_int8_kernels("auto")
    for name, d in dirs.items():
        # each graph as the runtime's CPU backend runs it (OnnxRuntimeBackend.prepare_graph:
        # int8 kernels, ring-cache writes as ScatterND), plus two graphs for comparison
        m = portable_copy(onnx.load(str(ExportRunner(d).manifest.path(graph))), opset)
        if name == "fp32":  # the file as exported (ScatterElements ring writes)
            models["fp32-exported"] = m.SerializeToString()
        if name == "int8" and kernels != "qdq":  # the Q/DQ weight layers as written
            qdq = ExportRunner(d, int8_kernels="qdq")
            models["int8-qdq"] = qdq.prepare_graph(graph, copy_model(m)).SerializeToString()
        models[name] = ExportRunner(d).prepare_graph(graph, m).SerializeToString()
    rows = []
    dec = runner.manifest.decoder
    cache = dict(zip(dec.present_names(), dec.past_names(), strict=True))
    for batch in args.batches:
        feeds = step_feeds(runner, graph, batch, position)
        times: dict[str, list[float]] = {k: [] for k in models}
        cpu: dict[str, list[float]] = {k: [] for k in models}
        round_speedups: dict[str, list[float]] = {k: [] for k in models}
        block = max(1, args.steps // args.rounds)
        names = list(models)
        tmp = Path(tempfile.mkdtemp(prefix="nuwa-precision-timing-"))
        paths = {}
        for k, v in models.items():
            paths[k] = tmp / f"{k}.onnx"
            paths[k].write_bytes(v)
        feeds_path = tmp / "feeds.npz"
        np.savez(feeds_path, **feeds)
        for r in range(args.rounds):
            _log(
                f"timing {graph}, batch {batch}, round {r + 1}/{args.rounds}: {block} steps "
                "per precision, each in a process of its own"
            )
            order = names[r % len(names) :] + names[: r % len(names)]  # rotated each round
            cpu_r = {}
            for k in order:
                wall_k, cpu_k = time_alone(paths[k], feeds_path, cache, args.threads, block)
                times[k] += wall_k
                cpu[k] += cpu_k
                cpu_r[k] = float(np.median(cpu_k))
            for k in models:
                round_speedups[k].append(cpu_r["fp32"] / cpu_r[k])
        cold_cpu: dict[str, list[float]] = {k: [] for k in models}
        if args.cold_steps:
            sessions = {
                k: ort.InferenceSession(v, session_options(args.threads), ["CPUExecutionProvider"])
                for k, v in models.items()
            }
            _log(f"timing {graph}, batch {batch}: {args.cold_steps} steps in turn (cold caches)")
            _, cold_cpu = time_steps(sessions, feeds, args.cold_steps, cache)
            del sessions
        split = {k: profile_split(paths[k], feeds_path, cache, args.threads) for k in models}
        shutil.rmtree(tmp)
        base = float(np.median(times["fp32"]))
        base_cpu = float(np.median(cpu["fp32"]))
        for name, t in times.items():
            med = float(np.median(t))
            med_cpu = float(np.median(cpu[name]))
            rows.append(
                {
                    "precision": name,
                    "batch": batch,
                    "median_ms": med * 1e3,
                    "p90_ms": float(np.percentile(t, 90)) * 1e3,
                    "speedup": base / med,
                    "cpu_ms": med_cpu * 1e3,
                    "cpu_speedup": base_cpu / med_cpu,
                    "round_cpu_speedups": [round(x, 3) for x in round_speedups[name]],
                    **cold_columns(cold_cpu, name),
                    **{k: round(v, 3) for k, v in split[name].items()},
                }
            )
    gates = {}
    raws = {
        name: json.loads((dirs[name] / "manifest.json").read_text()) for name in ("int8", "fp16")
    }
    for name, raw in raws.items():
        gates[name] = raw.get("quality_gates")
    int8 = raws["int8"]
    return {
        "graph": graph,
        "position": position,
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
        "cold_steps": args.cold_steps,
        "weights": weights,
        "rows": rows,
        "gates": gates,
        "machine": machine(),
        "onnxruntime": ort.__version__,
        "dirs": {k: str(v) for k, v in dirs.items()},
        # what the INT8 export was made with (it may be a reused --int8-dir)
        "calib_count": int8["calibration"]["count"],
        "calib_method": int8["calibration"].get("method", "max"),
        "int8_kernels": kernels,
        "weight_max": load_manifest(dirs["int8"]).int8_weight_max,
    }


def cold_columns(cold_cpu: dict[str, list[float]], name: str) -> dict[str, float]:
    """The step-interleaved (cache-cold) CPU median and speedup of one precision, if timed."""
    if not cold_cpu.get(name):
        return {}
    med = float(np.median(cold_cpu[name]))
    return {"cold_cpu_ms": med * 1e3, "cold_cpu_speedup": float(np.median(cold_cpu["fp32"])) / med}


def copy_model(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def weight_bits(weight_max: int) -> str:
    """How the INT8 weights' range reads: [-63, 63] is 7-bit, [-127, 127] 8-bit."""
    return {63: "7-bit ([-63, 63])", 127: "8-bit ([-127, 127])"}.get(
        weight_max, f"[-{weight_max}, {weight_max}]"
    )


KERNEL_NOTES = {
    "qdq": "`int8` runs the Q/DQ graph as written (ONNX Runtime's QGemm, static activation "
    "scales).",
    "matmulnbits": "`int8` is what the runtime runs on this CPU: every weight layer as ONNX "
    "Runtime's 8-bit `MatMulNBits` (the same int8 weights, activations quantized per block at "
    "run time; `nuwa.runtime.backends.int8_cpu_kernels`), `int8-qdq` the Q/DQ graph as written "
    "(QGemm with the calibrated static activation scales).",
}


def timing_note(result: dict[str, Any]) -> str:
    """How the steps were timed (results written before blocks existed were interleaved)."""
    steps, rounds = result["steps"], result.get("rounds", 1)
    if "cold_steps" not in result:
        return f"median of {rounds} x {steps} interleaved steps per precision."
    note = (
        f"median of {steps} steps per precision, timed as a generation runs: {rounds} rounds, "
        "each one block of consecutive steps per precision in a process of its own (one "
        "session, after 20 untimed steps), the precisions' order rotated every round."
    )
    if result["cold_steps"]:
        note += (
            f" Beside it, {result['cold_steps']} steps with the precisions stepped in turn, "
            "so every step finds the caches holding the other graphs' weights (all of them "
            "together do not fit in this CPU's cache): the cold regime of earlier tables."
        )
    return note


def section(result: dict[str, Any]) -> str:
    lines = [
        "## Precision: decoder-step latency FP32 vs INT8 vs FP16 (ONNX Runtime CPU)",
        "",
        f"`python bench/precision.py` — {result['machine']}; ONNX Runtime "
        f"{result['onnxruntime']}, {result['threads']} intra-op thread; graph "
        f"`{result['graph']}` (demo-video: 8x8x8 tokens, d 256, 4 decoder layers, 8 heads, 3DNA "
        f"(3,3,3)) at position {result['position']}; {result['weights']}; {timing_note(result)} "
        "INT8: Q/DQ, "
        f"{weight_bits(result.get('weight_max', 63))} per-channel weights, calibrated "
        f"({result.get('calib_method', 'max')}) on {result['calib_count']} samples per task; "
        f"{KERNEL_NOTES[result.get('int8_kernels', 'qdq')]}"
        + (
            " Every graph runs as the runtime's CPU backend runs it (ring-cache writes as "
            "`ScatterND`, `nuwa.runtime.backends.ring_cache_writes`); `fp32-exported` is the "
            "FP32 file as written (`ScatterElements` ring writes), for comparison."
            if any(r["precision"] == "fp32-exported" for r in result["rows"])
            else ""
        ),
        "",
        "| precision | batch | median wall ms/step | p90 wall ms | median CPU ms/step "
        "| speedup vs FP32 (wall / CPU) | CPU speedup per round (min-max) "
        "| stepped in turn, cold caches: CPU ms (speedup) | profiled: weight layers ms "
        "| profiled: rest (cache writes, 3DNA, norms, ...) ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        per_round = r.get("round_cpu_speedups") or [r["cpu_speedup"]]
        cold = (
            f"{r['cold_cpu_ms']:.2f} ({r['cold_cpu_speedup']:.2f}x)" if "cold_cpu_ms" in r else "—"
        )
        lines.append(
            f"| {r['precision']} | {r['batch']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['cpu_ms']:.2f} | {r['speedup']:.2f}x / {r['cpu_speedup']:.2f}x | "
            f"{min(per_round):.2f}-{max(per_round):.2f}x | {cold} | "
            f"{r['weight_ms']:.2f} | {r['other_ms']:.2f} |"
        )
    int8 = [r for r in result["rows"] if r["precision"] == "int8" and r["batch"] == 1]
    if int8:
        s = int8[0]["cpu_speedup"]
        verdict = "met" if s >= TARGET_SPEEDUP else "NOT met"
        fp32 = next(r for r in result["rows"] if r["precision"] == "fp32" and r["batch"] == 1)
        cold = (
            f"; stepped in turn with cold caches {int8[0]['cold_cpu_speedup']:.2f}x"
            if "cold_cpu_speedup" in int8[0]
            else ""
        )
        lines += [
            "",
            f"Target INT8 >= {TARGET_SPEEDUP}x FP32 (batch 1, CPU time): **{verdict}** "
            f"({s:.2f}x{cold}). Where the time goes (ONNX Runtime profile of each graph "
            "stepping alone; the profiler's own cost per node makes the profiled sums exceed "
            "the measured steps, the rest's ~125 small nodes most, so they say where the "
            "precisions differ, not how long anything takes): FP32's weight layers "
            f"{fp32['weight_ms']:.2f} of {fp32['total_ms']:.2f} ms, INT8's "
            f"{int8[0]['weight_ms']:.2f} of {int8[0]['total_ms']:.2f} ms; the rest — the "
            "ring-cache writes, the 3DNA attention over the cache (FP32 by design), layer "
            "norms, residual adds, and with Q/DQ kernels the activation QuantizeLinear nodes — "
            "is the same work at every precision.",
        ]
    lines += ["", "Quality gates (from the quantized manifests):", ""]
    for name, gates in result["gates"].items():
        if not gates or "tasks" not in gates:
            lines.append(f"- {name}: not run in this benchmark (run with `--gates`)")
            continue
        lines.append(
            f"- {name}: {'passed' if gates['passed'] else 'FAILED'} "
            f"({gates['config']['count']} held-out samples per task"
            + (
                f" x {gates['config']['streams']} sampling streams per side"
                if gates["config"].get("streams", 1) > 1
                else ""
            )
            + f", seed {gates['config']['seed']}, {gates.get('executed_on', '')})"
        )
        lines.append("")
        lines.append(
            "  | task | token agreement (teacher-forced) | sampling divergence (teacher-forced) "
            f"| sequence agreement | checker scores: FP32 -> {name} (+- s.e. of the paired "
            "difference) | ok |"
        )
        lines.append("  |---|---|---|---|---|---|")
        for task, row in gates["tasks"].items():
            divergence = row.get("sampling_divergence")  # rows written before it existed
            lines.append(
                f"  | {task} | {row['token_agreement']:.3f} | "
                f"{'—' if divergence is None else f'{divergence:.4f}'} | "
                f"{row['sequence_agreement']:.3f} | "
                f"{gate_scores_cell(row)} | {'yes' if row['passed'] else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def gate_scores_cell(row: dict) -> str:
    """Every gated score of a task row, a failing one in bold (rows written before the gates
    compared every score carry only the headline)."""
    scores = row.get("scores") or {
        row["metric"]: {"fp32": row["fp32"], "candidate": row["candidate"], "ok": row["passed"]}
    }
    parts = []
    for metric, v in scores.items():
        text = f"{metric} {v['fp32']:.3f} -> {v['candidate']:.3f}"
        if "paired_stderr" in v:
            text += f" (+-{v['paired_stderr']:.3f})"
        parts.append(text if v["ok"] else f"**{text}**")
    return "; ".join(parts)


def replace_marked_section(text: str, body: str) -> str:
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", help="model directory (default: the demo checkpoint)")
    p.add_argument("--onnx-dir", help="an existing FP32 portable export (skips exporting)")
    p.add_argument("--int8-dir", help="an existing INT8 export (skips quantizing)")
    p.add_argument("--fp16-dir", help="an existing FP16 export (skips converting)")
    p.add_argument("--work-dir", help="where exports go (default: a temporary directory)")
    p.add_argument(
        "--steps", type=int, default=2000, help="timed steps per precision, over all rounds"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds of fresh sessions, each timing one block of steps per precision "
        "(placement in memory moves a step's time by a few %%)",
    )
    p.add_argument(
        "--cold-steps",
        type=int,
        default=300,
        help="also time this many steps with the precisions stepped in turn, every step with "
        "cold caches (0: skip)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    p.add_argument("--calib-count", type=int, default=2)
    p.add_argument("--gates", action="store_true", help="also run the quality gates")
    p.add_argument("--gate-count", type=int, default=16)
    p.add_argument("--gate-tasks", nargs="+", default=["T2I", "T2V", "S2I", "S2V", "V2V"])
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = p.parse_args(argv)
    result = run(args)
    text = section(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.write_text(replace_marked_section(RESULTS.read_text(), text))
        _log(f"wrote {RESULTS.relative_to(ROOT)} (between {BEGIN} and {END})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
