"""How the CPU decoder step's cost grows with the work (issue 37, DESIGN §11): ms per token, peak
memory and the ratio to its floor, FP32 and INT8, one intra-op thread, for 8x8 -> 16x16 -> 21x21
tokens per frame at the demo width (the ``demo`` preset, random weights, its VQ grid changed)
and for the ``paper`` preset (NÜWA's 870M shape: d 1280, 24 decoder layers, 21x21 tokens,
12,288 codes; random weights).

Each configuration runs in stages, each in a process of its own so that its peak RSS (``VmHWM``)
is its own:

- ``make``: random weights (seed 0) saved as a checkpoint (``save_pretrained``);
- ``export``: its text-conditioned decoder step through the exporter's own per-graph path
  (:func:`nuwa.export.exporter.export_graph` into a shared external weights file, then its
  prepared ``cpu`` form, the file ONNX Runtime's CPU runs) — ``nuwa export`` does this for
  every graph in turn;
- ``int8``: that step quantized as ``nuwa quantize`` writes it (8-bit per-channel weights,
  ``insert_qdq``) and its prepared ``cpu-matmulnbits`` form, what the runtime runs on a CPU with
  VNNI. The activation ranges are placeholders (1.0): the ``MatMulNBits`` form quantizes
  activations itself at run time and never reads them, so the timed graph is the one a
  calibrated export runs; calibrating would need generations (one paper-size video is 4,410
  steps);
- ``time``: per precision, the step, its floor (:func:`decode_floor.floor_model`: the step's own
  weight layers cut out, each on an input of its own) and a read of its ring KV cache
  (:func:`decode_floor.cache_read_model`), each stepping alone in a process of its own
  (:func:`precision_timing.run_alone`), in rounds that alternate them (as
  ``bench/decode_floor.py``); peak RSS of the process stepping the step.

    python3 bench/decode_scale.py                       # all four; writes bench/RESULTS.md
    python3 bench/decode_scale.py --configs demo-8x8,demo-16x16 --no-write
    python3 bench/decode_scale.py --quick               # the tiny preset, a few steps: smoke test

Writes the ``decode_scale`` section of ``bench/RESULTS.md`` unless ``--no-write`` (or
``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_floor import cache_read_model, floor_feeds, floor_model
from decode_setup import cpu_name
from precision_timing import peak_rss_kib, run_alone, step_feeds
from results_file import write_marked_section

CONFIGS = ("demo-8x8", "demo-16x16", "demo-21x21", "paper")
QUICK_CONFIGS = ("tiny",)
# steps per round and rounds: about a second of stepping per round for each size
SCHEDULE = {"tiny": (10, 1), "demo": (300, 5), "paper": (4, 3)}
PAPER_WARMUP = 2  # paper steps take a second or so: a short warm-up


def _log(msg: str) -> None:
    print(f"[decode_scale] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    """``lscpu``'s model name, CPUs and caches, and the int8 dot-product flags: the machine kind
    the numbers belong to."""
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    dot = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags] or ["no VNNI"]
    parts = [
        fields.get("Model name", "").strip() or cpu_name(),
        f"{fields.get('CPU(s)', '?').strip()} CPUs",
        *(f"{k} {fields[k].strip()}" for k in ("L2 cache", "L3 cache") if k in fields),
        "/".join(dot),
    ]
    return ", ".join(parts)


def config_for(name: str) -> Any:
    """``demo-GxG``: the demo preset with a G x G token grid (frames and sketches 8G pixels
    through its 8x VQ-GAN); ``paper`` / ``tiny``: the presets."""
    from nuwa.spec.config import NuwaConfig

    if not name.startswith("demo-"):
        return NuwaConfig.from_name(name)
    grid = int(name.removeprefix("demo-").split("x")[0])
    demo = NuwaConfig.from_name("demo")
    side = grid * demo.vqgan.downsample
    return dataclasses.replace(
        demo,
        name=name,
        vqgan=dataclasses.replace(demo.vqgan, image_size=side),
        vqgan_seg=dataclasses.replace(demo.vqgan_seg, image_size=side),
        transformer=dataclasses.replace(
            demo.transformer, grid_h=grid, grid_w=grid, sketch_grid_h=grid, sketch_grid_w=grid
        ),
    )


# ---- the stages (each run in a process of its own: `--stage NAME CONFIG WORK`) --------------


def stage_make(config: str, work: Path) -> dict[str, Any]:
    import torch

    from nuwa.model.nuwa import NuwaModel

    torch.manual_seed(0)
    model = NuwaModel(config_for(config))
    params = sum(p.numel() for p in model.transformer.parameters())
    model.save_pretrained(work / "model")
    return {"transformer_params": params}


def stage_export(config: str, work: Path) -> dict[str, Any]:
    import torch

    from nuwa.export.exporter import DEFAULT_OPSET, decoder_info, export_graph
    from nuwa.export.graph_specs import build_graph_specs
    from nuwa.export.prepared_graphs import write_prepared_cpu
    from nuwa.export.weights import WEIGHTS_FILE, SharedWeights
    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.graph_names import DECODER_STEP_KIND

    torch.set_num_threads(1)
    model = NuwaModel.from_pretrained(work / "model")
    spec = next(
        s
        for s in build_graph_specs(model, [1])
        if s.kind == DECODER_STEP_KIND and s.meta["condition"] == "text"
    )
    out = work / "fp32"
    out.mkdir(exist_ok=True)
    weights = SharedWeights(out / WEIGHTS_FILE)
    info = export_graph(spec, model, out / spec.file, "portable", DEFAULT_OPSET, False, weights)
    decoder = decoder_info(model)
    info = write_prepared_cpu(out, info, decoder)
    return {"graph": info.to_dict(), "name": info.name, "decoder": decoder.to_dict()}


def stage_int8(config: str, work: Path) -> dict[str, Any]:
    import onnx

    from nuwa.calibration.qdq import INT8_MAX, find_targets, insert_qdq
    from nuwa.export.prepared_graphs import write_prepared_cpu_matmulnbits
    from nuwa.export.weights import WEIGHTS_FILE, SharedWeights, materialize_weights
    from nuwa.spec.manifest_entries import DecoderInfo, GraphInfo

    exported = json.loads((work / "export.json").read_text())
    info = GraphInfo.from_dict(exported["name"], exported["graph"])
    decoder = DecoderInfo.from_dict(exported["decoder"])
    model = onnx.load(str(work / "fp32" / info.file))
    materialize_weights(model)
    targets = find_targets(model)
    qdq = insert_qdq(model, targets, {t.activation: 1.0 for t in targets}, INT8_MAX, True)
    del model
    out = work / "int8"
    out.mkdir(exist_ok=True)
    store = SharedWeights(out / WEIGHTS_FILE)
    entry = write_prepared_cpu_matmulnbits(
        out, dataclasses.replace(info, prepared={}), decoder, qdq, store
    )
    return {"prepared": {k: v.to_dict() for k, v in entry.prepared.items()}, "layers": len(targets)}


def _save(model: Any, path: Path) -> None:
    """``model`` with its weights in a file beside it (graphs over 2 GB cannot be one file)."""
    import onnx

    onnx.save(
        model, str(path), save_as_external_data=True, location=f"{path.name}.data", size_threshold=0
    )


def stage_time(config: str, work: Path, batch: int = 1) -> dict[str, Any]:
    """Step, floor and cache read of each precision, in alternating rounds."""
    import onnx

    from nuwa.export.weights import materialize_weights
    from nuwa.spec.manifest_entries import (
        PREPARED_CPU,
        PREPARED_CPU_MATMULNBITS,
        DecoderInfo,
        GraphInfo,
    )

    exported = json.loads((work / "export.json").read_text())
    info = GraphInfo.from_dict(exported["name"], exported["graph"])
    decoder = DecoderInfo.from_dict(exported["decoder"])
    runner = SimpleNamespace(manifest=SimpleNamespace(decoder=decoder, graph=lambda _: info))
    frames, grid = decoder.grid[0], decoder.grid[1] * decoder.grid[2]
    position = (frames // 2) * grid + grid // 2  # mid-video: the ring has wrapped
    cache = dict(zip(decoder.present_names(), decoder.past_names(), strict=True))
    sources = {"fp32": work / "fp32" / info.prepared[PREPARED_CPU].file}
    int8 = json.loads((work / "int8.json").read_text()) if (work / "int8.json").is_file() else None
    if int8 is not None:
        sources["int8"] = work / "int8" / int8["prepared"][PREPARED_CPU_MATMULNBITS]["file"]
    files: dict[str, dict[str, tuple[Path, Path, dict[str, str]]]] = {}
    rows: dict[str, dict[str, Any]] = {}
    feeds = step_feeds(runner, info.name, batch, position)
    for name, source in sources.items():
        step = onnx.load(str(source))
        materialize_weights(step)  # the stored weights' Cast/Transpose folded, as ORT folds them
        floor, layers, size = floor_model(step, batch)
        reader, cache_bytes = cache_read_model(step, decoder.past_names(), batch)
        del step
        files[name] = {}
        for what, model, inputs, bound in (
            ("step", None, feeds, cache),
            ("floor", floor, floor_feeds(floor), {}),
            ("cache", reader, floor_feeds(reader), {}),
        ):
            path = source if model is None else work / f"{name}-{what}.onnx"
            if model is not None:
                _save(model, path)
            np.savez(work / f"{name}-{what}.npz", **inputs)
            files[name][what] = (path, work / f"{name}-{what}.npz", bound)
        del floor, reader
        rows[name] = {"layers": layers, "weight_bytes": size, "cache_bytes": cache_bytes}
        rows[name].update({f"{w}_cpu": [] for w in ("step", "floor", "cache")})
        rows[name]["step_maxrss_kib"] = 0
    family = config.split("-")[0]
    block, rounds = SCHEDULE[family]
    warmup = PAPER_WARMUP if family == "paper" else 20
    order = [(n, w) for n in rows for w in ("step", "floor", "cache")]
    for r in range(rounds):
        _log(f"{config}: round {r + 1}/{rounds}, {block} steps of each graph")
        for name, what in order[r % len(order) :] + order[: r % len(order)]:
            path, feeds_path, bound = files[name][what]
            result = run_alone(path, feeds_path, bound, 1, block, warmup)
            rows[name][f"{what}_cpu"].append(float(np.median(result["cpu"])) * 1e3)
            if what == "step":
                rss = max(rows[name]["step_maxrss_kib"], int(result["maxrss_kib"]))
                rows[name]["step_maxrss_kib"] = rss
    for row in rows.values():
        for what in ("step", "floor", "cache"):
            row[f"{what}_ms"] = float(np.median(row[f"{what}_cpu"]))
        row["ratio"] = row["step_ms"] / row["floor_ms"]
        row["ratio_with_cache"] = row["step_ms"] / (row["floor_ms"] + row["cache_ms"])
    return {"rows": rows, "steps_per_round": block, "rounds": rounds, "position": position}


STAGES = {"make": stage_make, "export": stage_export, "int8": stage_int8, "time": stage_time}


def run_stage(stage: str, config: str, work: Path) -> dict[str, Any]:
    """``stage`` in a process of its own; its result with its peak RSS and wall time. The result
    is also kept as ``WORK/STAGE.json`` (the later stages read it)."""
    out = work / f"{stage}.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--stage", stage, config, str(work)],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"[decode_scale] stage {stage} of {config} failed ({proc.returncode})")
    result = json.loads(out.read_text())
    result["seconds"] = time.perf_counter() - t0
    return result


def measure_config(config: str, root: Path, int8: bool) -> dict[str, Any]:
    work = root / config
    work.mkdir(parents=True, exist_ok=True)
    stages = ["make", "export", *(["int8"] if int8 else []), "time"]
    results: dict[str, Any] = {}
    for stage in stages:
        _log(f"{config}: {stage}")
        results[stage] = run_stage(stage, config, work)
        _log(
            f"{config}: {stage} done in {results[stage]['seconds']:.0f} s, peak RSS "
            f"{results[stage]['peak_rss_mib']:.0f} MiB"
        )
    cfg = config_for(config).transformer
    return {
        "config": config,
        "tokens_per_frame": f"{cfg.grid_h}x{cfg.grid_w}",
        "frames": cfg.frames,
        "d_model": cfg.d_model,
        "decoder_layers": cfg.n_decoder_layers,
        "transformer_params": results["make"]["transformer_params"],
        "stages": results,
    }


def section(result: dict[str, Any]) -> str:
    lines = [
        f"`python bench/decode_scale.py` — {result['date']}, {result['machine']}; batch 1, one "
        "intra-op thread, random weights, the text-conditioned decoder step at mid-video; each "
        "graph stepping alone in a process of its own, rounds alternating step / floor / cache "
        "read; medians of CPU time. Two other agents shared the 2 cores during the run: absolute "
        "times are noisy, compare the ratios (each measured side by side in one run).",
        "",
        "| config | tokens/frame | d, layers, params | precision | ms/token | floor ms | "
        "step / floor | step / (floor + cache read) | weight MB | KV cache MB | peak RSS "
        "stepping MiB | export: s, peak RSS MiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in result["configs"]:
        stages = entry["stages"]
        rows = stages["time"]["rows"]
        for precision, row in rows.items():
            made = stages["export"] if precision == "fp32" else stages["int8"]
            how = "export" if precision == "fp32" else "quantize + MatMulNBits form"
            lines.append(
                f"| {entry['config']} | {entry['tokens_per_frame']} | {entry['d_model']}, "
                f"{entry['decoder_layers']}, {entry['transformer_params'] / 1e6:.3g}M | "
                f"{precision} | {row['step_ms']:.3f} | {row['floor_ms']:.3f} | "
                f"{row['ratio']:.2f}x | {row['ratio_with_cache']:.2f}x | "
                f"{row['weight_bytes'] / 1e6:.1f} | {row['cache_bytes'] / 1e6:.1f} | "
                f"{row['step_maxrss_kib'] / 1024:.0f} | {how}: {made['seconds']:.0f} s, "
                f"{made['peak_rss_mib']:.0f} |"
            )
    speedups = [
        f"{e['config']} {e['stages']['time']['rows']['fp32']['step_ms'] / r['step_ms']:.2f}x"
        for e in result["configs"]
        if (r := e["stages"]["time"]["rows"].get("int8")) is not None
    ]
    lines += [
        "",
        f"INT8 step vs FP32 (same run): {', '.join(speedups) or 'not measured'}. "
        "INT8: the step's weight layers as `nuwa quantize` writes them (8-bit per-channel weights) "
        "in their `MatMulNBits` form, which quantizes activations at run time (placeholder "
        "activation ranges, never read on this path; no calibration). Floor: the step's own "
        "weight layers cut out (`bench/decode_floor.py`'s probe). Peak RSS stepping: the process "
        "holding one session of the step and its IO binding.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", nargs=3, metavar=("STAGE", "CONFIG", "WORK"), help=argparse.SUPPRESS)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"default {','.join(CONFIGS)}")
    p.add_argument("--quick", action="store_true", help="the tiny preset only; writes nothing")
    p.add_argument("--no-int8", default="", help="configs without the INT8 stage (comma list)")
    p.add_argument("--work", help="keep the checkpoints and graphs here (default: a temp dir)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = p.parse_args(argv)
    if args.stage:
        stage, config, work = args.stage
        result = STAGES[stage](config, Path(work))
        result["peak_rss_mib"] = peak_rss_kib() / 1024  # this stage's process alone
        (Path(work) / f"{stage}.json").write_text(json.dumps(result))
        return 0
    configs = QUICK_CONFIGS if args.quick else tuple(c for c in args.configs.split(",") if c)
    unknown = [c for c in configs if c not in (*CONFIGS, *QUICK_CONFIGS)]
    if unknown:
        p.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    no_int8 = {c for c in args.no_int8.split(",") if c}
    root = Path(args.work or tempfile.mkdtemp(prefix="nuwa-decode-scale-"))
    try:
        result = {
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "configs": [measure_config(c, root, c not in no_int8) for c in configs],
        }
    finally:
        if not args.work:  # the checkpoints and graphs (the paper's: ~8 GB) are not kept
            shutil.rmtree(root, ignore_errors=True)
    text = section(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if not (args.no_write or args.quick):
        write_marked_section(text, "decode_scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
