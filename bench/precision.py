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

This file is the benchmark's run: the exports it times (:func:`prepare`), the rows it measures
(:func:`run`) and its command line; the timing itself is ``precision_timing.py``, the section it
writes ``precision_report.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.spec.manifest import MANIFEST_FILE
from nuwa.spec.model_spec import CONFIG_FILE
from nuwa.spec.tasks import TRAINED_TASK_CODES

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from precision_report import (
    BEGIN,
    END,
    TARGET_SPEEDUP,
    machine,
    replace_marked_section,
    section,
)
from precision_timing import profile_split, step_feeds, time_alone, time_steps, worker
from results_file import RESULTS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = ROOT / "model" / "checkpoints" / "demo"
__all__ = ["BEGIN", "END", "TARGET_SPEEDUP", "prepare", "replace_marked_section", "run", "section"]


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
        if model_dir is None and DEMO_CHECKPOINT.joinpath(CONFIG_FILE).is_file():
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    from nuwa.calibration.onnx_runner import ExportRunner, portable_copy, session_options
    from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import resolve_int8_kernels
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
    raws = {name: json.loads((dirs[name] / MANIFEST_FILE).read_text()) for name in ("int8", "fp16")}
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
    p.add_argument("--gate-tasks", nargs="+", default=list(TRAINED_TASK_CODES))
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
