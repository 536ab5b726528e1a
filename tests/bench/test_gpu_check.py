"""bench/gpu_check.sh is ready for a lent GPU machine: valid bash, and its ``--dry-run`` (GPU parts
stubbed, CPU variants where there are some) runs every stage and leaves the ``$OUT`` layout a GPU
run leaves, within what the device tool brings back (at most 8 files)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"
STAGES = ["env", "build", "tests", "memcheck", "racecheck", "decode", "attention"]
FILES = {
    "summary.md",
    "summary.json",
    "gpu_check.log",
    "attention.md",
    "decode_cuda.json",
    "build_info.txt",
}


def run_script(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bash_syntax() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow  # the whole script end to end (tests, decode bench), ~30 s
def test_dry_run_runs_every_stage_and_writes_the_layout(tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "out"
    proc = run_script(out, "--dry-run", NUWA_GPU_CHECK_MODEL=str(tiny_model_dir))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert names == FILES
    assert all(p.is_file() for p in out.iterdir())  # no folders: all come back

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dry-run"
    assert [s["stage"] for s in summary["stages"]] == STAGES
    assert {s["status"] for s in summary["stages"]} == {"ok"}, summary["stages"]
    detail = {s["stage"]: s["detail"] for s in summary["stages"]}
    collected = re.search(r"(\d+) gpu test\(s\) collected", detail["tests"])
    assert collected and int(collected.group(1)) > 0, detail["tests"]
    for tool in ("memcheck", "racecheck"):
        selected = re.search(rf"{tool} on (\d+) test\(s\)", detail[tool])
        assert selected and int(selected.group(1)) > 0, detail[tool]

    md = (out / "summary.md").read_text()
    for stage in STAGES:
        assert f"| {stage} | ok |" in md

    log = (out / "gpu_check.log").read_text()
    for stage in STAGES:
        assert f"===== stage {stage}: ok" in log
    assert "(dry-run) would run: nvidia-smi" in log
    # `nuwa` came from the repository: through the script's symlink, or where this repository is
    # installed editable (the install's import hook comes before PYTHONPATH) from it directly;
    # never from an installed copy
    imported = re.search(r"nuwa imported from (\S+)", log)
    assert imported, log[-2000:]
    source, repo_init = imported.group(1), str(SCRIPT.parents[1] / "__init__.py")
    assert source.endswith("/src/nuwa/__init__.py") or source == repo_init, source
    assert "would run: cmake -S" in log and "-DCMAKE_CUDA_ARCHITECTURES=" in log
    assert "compute-sanitizer --tool memcheck" in log.replace("(dry-run) would run: env ", "")
    assert "bench/decode.py --device cuda --batch 1\\,64" in log

    # the decode stage's CPU variant ran the --device code path of bench/decode.py
    decode = json.loads((out / "decode_cuda.json").read_text())
    assert decode["device"] == "cpu"
    assert [r["batch"] for r in decode["rows"]] == [1, 2]
    assert all(r["median_step_ms"] > 0 and r["steps"] == 32 for r in decode["rows"])


def test_spent_budget_skips_every_stage_and_still_writes_the_layout(tmp_path) -> None:
    out = tmp_path / "out"
    proc = run_script(out, "--dry-run", GPU_CHECK_BUDGET_S="0")
    assert proc.returncode == 1
    assert {p.name for p in out.iterdir()} == FILES
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [
        (stage, "skipped") for stage in STAGES
    ]


def test_a_subset_of_stages_runs_in_the_fixed_order(tmp_path) -> None:
    out = tmp_path / "out"
    proc = run_script(out, "--dry-run", GPU_CHECK_STAGES="attention,build")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [
        ("build", "ok"),
        ("attention", "ok"),
    ]
    assert {p.name for p in out.iterdir()} == FILES


def test_bad_arguments_are_refused_before_any_work(tmp_path) -> None:
    proc = run_script(tmp_path / "out", "--bogus")
    assert proc.returncode == 2
    assert "unknown argument '--bogus'" in proc.stderr
    proc = run_script(tmp_path / "out2", "--dry-run", GPU_CHECK_BUDGET_S="5m")
    assert proc.returncode == 2
    assert "GPU_CHECK_BUDGET_S must be a whole number" in proc.stderr
    proc = run_script(tmp_path / "out3", "--dry-run", GPU_CHECK_STAGES="build benchmark")
    assert proc.returncode == 2
    assert "unknown stage 'benchmark'" in proc.stderr
    assert not any((tmp_path / name).exists() for name in ("out", "out2", "out3"))
