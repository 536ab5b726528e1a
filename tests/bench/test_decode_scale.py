"""bench/decode_scale.py: the scaled demo configurations are the demo with only its token grid
changed, and ``--quick`` (the tiny preset) runs every stage and reports both precisions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nuwa.spec.config import NuwaConfig

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def decode_scale():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("decode_scale", BENCH / "decode_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("grid", [8, 16, 21])
def test_a_scaled_demo_is_the_demo_with_its_token_grid_changed(decode_scale, grid: int) -> None:
    demo = NuwaConfig.from_name("demo")
    cfg = decode_scale.config_for(f"demo-{grid}x{grid}")
    t = cfg.transformer
    assert (t.grid_h, t.grid_w, t.sketch_grid_h, t.sketch_grid_w) == (grid,) * 4
    assert cfg.vqgan.token_grid == cfg.vqgan_seg.token_grid == (grid, grid)
    same = ("grid_h", "grid_w", "sketch_grid_h", "sketch_grid_w")
    assert dataclasses.replace(t, **{f: getattr(demo.transformer, f) for f in same}) == (
        demo.transformer
    )
    assert NuwaConfig.from_dict(cfg.to_dict()) == cfg  # a valid config (checked on load)
    assert decode_scale.config_for("paper") == NuwaConfig.from_name("paper")


def test_quick_runs_every_stage_and_reports_both_precisions(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "decode_scale.py"), "--quick", "--json", str(out)]
        + ["--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (entry,) = json.loads(out.read_text())["configs"]
    assert entry["config"] == "tiny" and set(entry["stages"]) == {"make", "export", "int8", "time"}
    rows = entry["stages"]["time"]["rows"]
    assert set(rows) == {"fp32", "int8"}
    for row in rows.values():
        assert row["step_ms"] > 0 and row["floor_ms"] > 0 and row["layers"] > 0
        assert row["ratio"] == pytest.approx(row["step_ms"] / row["floor_ms"])
        assert row["step_maxrss_kib"] > 0
    assert rows["int8"]["weight_bytes"] < rows["fp32"]["weight_bytes"]
    assert all(s["peak_rss_mib"] > 0 for s in entry["stages"].values())
    assert "| tiny | 4x4 |" in proc.stdout
