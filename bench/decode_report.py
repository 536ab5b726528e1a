"""The ``decode`` section of bench/RESULTS.md: ``bench/decode.py``'s rows as a table (CPU and
wall ms per token, trained vs sliding part, slope over position, early / late, video time, peak
memory), the DESIGN §11 targets' verdicts, and whether a training job shared the CPU."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
import results_file
from decode_setup import LABELS, WARMUP, cpu_name

RESULTS = results_file.RESULTS

NAME = "decode"  # the section's markers in bench/RESULTS.md
BEGIN, END = results_file.markers(NAME)
TARGET_MS = 2.0  # DESIGN §11: ORT FP32 <= 2 ms/token at 1 thread
TARGET_SPEEDUP = 2.0  # ORT >= 2x torch eager


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


def write_section(text: str, path: Path = results_file.RESULTS) -> None:
    """Rewrite the decode section of ``path`` (bench/RESULTS.md) with ``text``."""
    results_file.write_marked_section(text, NAME, path)


def meta(
    rows: list[dict[str, Any]], args: argparse.Namespace, model: str, shared: bool, profile: str
) -> dict[str, Any]:
    """What the section says about the run: machine, date, versions, model, sizes."""
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
