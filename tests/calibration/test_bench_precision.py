"""bench/precision.py writes only its own section of bench/RESULTS.md, with a verdict."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_precision", ROOT / "bench" / "precision.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(precision: str, ms: float, weight: float) -> dict:
    return {
        "precision": precision,
        "batch": 1,
        "median_ms": ms,
        "p90_ms": ms * 1.1,
        "speedup": 8.0 / ms,
        "cpu_ms": ms * 0.9,
        "cpu_speedup": 8.0 / ms,
        "weight_ms": weight,
        "other_ms": ms - weight,
        "total_ms": ms,
    }


def test_section_and_marked_replacement() -> None:
    bench = _bench()
    gate_row = {
        "token_agreement": 0.97,
        "sampling_divergence": 0.0123,
        "sequence_agreement": 0.8,
        "metric": "all",
        "fp32": 0.8,
        "candidate": 0.79,
        "scores": {
            "all": {"fp32": 0.8, "candidate": 0.79, "paired_stderr": 0.01, "ok": True},
            "colour": {"fp32": 0.9, "candidate": 0.85, "paired_stderr": 0.02, "ok": False},
        },
        "passed": False,
    }
    # a row written before per-score gates and the divergence existed: headline only
    old_row = {k: v for k, v in gate_row.items() if k not in ("scores", "sampling_divergence")}
    result = {
        "graph": "decoder_step.text",
        "position": 292,
        "threads": 1,
        "steps": 10,
        "weights": "demo preset",
        "machine": "test cpu",
        "onnxruntime": "1.x",
        "calib_count": 2,
        "calib_method": "percentile",
        "weight_max": 127,
        "rows": [_row("fp32", 8.0, 1.6), _row("int8", 7.0, 0.6), _row("fp16", 9.0, 2.0)],
        "gates": {
            "int8": {
                "passed": True,
                "config": {"count": 4, "seed": 1234, "streams": 2},
                "executed_on": "onnxruntime CPU (int8 kernels)",
                "tasks": {"T2V": gate_row, "T2I": old_row},
            },
            "fp16": None,
        },
    }
    text = bench.section(result)
    assert "**NOT met** (1.14x)" in text
    assert "8-bit ([-127, 127]) per-channel weights, calibrated (percentile) on 2 samples" in text
    row = "| int8 | 1 | 7.00 | 7.70 | 6.30 | 1.14x / 1.14x | 1.14-1.14x | — | 0.60 | 6.40 |"
    assert row in text
    assert "median of 1 x 10 interleaved steps" in text  # a result from before the blocks
    row = "| T2V | 0.970 | 0.0123 | 0.800 | all 0.800 -> 0.790 (+-0.010); "
    row += "**colour 0.900 -> 0.850 (+-0.020)** | no |"
    assert row in text
    assert "| T2I | 0.970 | — | 0.800 | **all 0.800 -> 0.790** | no |" in text
    assert "fp16: not run in this benchmark" in text
    assert "int8: passed (4 held-out samples per task x 2 sampling streams per side, seed" in text
    before = f"head\n\n{bench.BEGIN}\nOLD-SECTION\n{bench.END}\n\ntail {{other}}\n"
    after = bench.replace_marked_section(before, text)
    assert after.startswith("head\n\n") and after.endswith("\n\ntail {other}\n")
    assert "OLD-SECTION" not in after and text.strip() in after
    appended = bench.replace_marked_section("only\n", text)
    assert appended.startswith("only\n\n" + bench.BEGIN)


@pytest.mark.slow  # the benchmark end to end: about a minute on 2 cores
def test_a_short_run_times_every_graph_as_the_runtime_runs_it(
    tiny_portable: Path, tiny_int8: Path, tiny_fp16: Path
) -> None:
    """The benchmark end to end on the tiny exports (a few steps): a row per graph and batch,
    FP32 also as exported, every step timed and profiled."""
    import argparse

    bench = _bench()
    args = argparse.Namespace(
        onnx_dir=str(tiny_portable),
        int8_dir=str(tiny_int8),
        fp16_dir=str(tiny_fp16),
        model_dir=None,
        work_dir=None,
        gates=False,
        gate_count=2,
        gate_tasks=["T2I"],
        calib_count=2,
        batches=[1, 2],
        steps=3,
        rounds=2,
        cold_steps=2,
        threads=1,
    )
    result = bench.run(args)
    names = {r["precision"] for r in result["rows"]}
    assert {"fp32", "fp32-exported", "int8", "fp16"} <= names
    assert len(result["rows"]) == 2 * len(names)
    assert all(len(r["round_cpu_speedups"]) == 2 for r in result["rows"])
    assert all(r["cold_cpu_ms"] > 0 and r["cold_cpu_speedup"] > 0 for r in result["rows"])
    for row in result["rows"]:
        assert row["median_ms"] > 0 and row["total_ms"] > 0 and row["weight_ms"] > 0, row
    text = bench.section(result)
    assert "`fp32-exported` is the FP32 file as written" in text
    assert "one block of consecutive steps per precision" in text and "cold caches" in text
