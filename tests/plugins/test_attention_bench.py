"""bench/attention.py is ready for a GPU: its masks match the oracle, it writes only its own
section of bench/RESULTS.md, and its target verdicts read the rows right (all without a GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "attention.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nuwa_bench_attention", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_self_check_passes_without_gpu(bench, plugin_lib) -> None:
    assert bench.self_check() == 0


def test_help_runs_without_cuda() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "--self-check" in run.stdout, run.stderr


def test_results_section_replaces_only_its_markers(bench) -> None:
    others = "# Benchmark results\n\n<!-- BEGIN decode -->\nCPU numbers\n<!-- END decode -->\n"
    first = bench.replace_marked_section(others, "## old\nold table")
    assert first.startswith(others.rstrip("\n")) and "old table" in first
    second = bench.replace_marked_section(first + "\ntrailing text\n", "## new\nnew table")
    assert "old table" not in second and "new table" in second
    assert "CPU numbers" in second and second.endswith("trailing text\n")
    assert second.count(bench.BEGIN) == 1 and second.count(bench.END) == 1


def test_verdicts_compare_against_the_targets(bench) -> None:
    row = bench.Row
    rows = [
        row("prefill x", "fused 3DNA (nuwa)", 1.0),
        row("prefill x", "FlexAttention + block mask", 3.0),
        row("prefill x", "dense SDPA + bool mask", 4.0),
        row("decode y", "fused 3DNA decode (nuwa)", 0.01, "3.5x the 1.00 us bandwidth floor"),
    ]
    text = "\n".join(bench.verdicts(rows))
    assert "3.00x faster than FlexAttention + block mask (target 2.0x: met)" in text
    assert "4.00x faster than dense SDPA + bool mask (target 5.0x: NOT met)" in text
    assert "3.5x the bandwidth floor (target <= 2x: NOT met)" in text


def test_decode_floor_counts_q_window_rows_and_out(bench) -> None:
    # 16x32x32, 16 heads x 64, FP16, an interior query: 172 keys (plugins/README.md)
    assert bench.decode_floor_bytes(1, 16, 64, 172) == 708_608
