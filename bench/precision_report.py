"""The ``precision`` section of bench/RESULTS.md: ``bench/precision.py``'s result as a table of
decoder-step times per precision and batch, the INT8 target's verdict, where the time goes, and
the quantized exports' quality gates.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import results_file

NAME = "precision"  # the section's markers in bench/RESULTS.md
BEGIN, END = results_file.markers(NAME)
TARGET_SPEEDUP = 1.8  # DESIGN §8: INT8 >= 1.8x FP32, batch 1, CPU time


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
    "run time; `nuwa.runtime.backends.onnxruntime.int8_cpu_kernels`), `int8-qdq` the Q/DQ "
    "graph as written (QGemm with the calibrated static activation scales).",
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
            "`ScatterND`, `nuwa.export.ring_cache_writes`); "
            "`fp32-exported` is the FP32 file as written (`ScatterElements` ring writes), for "
            "comparison."
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
    """``text`` (bench/RESULTS.md) with the precision section replaced by ``body``."""
    return results_file.replace_marked_section(text, body, NAME)
