"""The whole ``paper`` preset (NÜWA's 870M shape, random weights) through ``nuwa export`` and one
Pipeline generation on the export, within the machine's memory (issue 37): per graph the wall
time and the peak RSS of the exporting process, then one text->image on ONNX Runtime (CPU) with
its load time, time per token and peak RSS.

Stages, each in a process of its own (its peak RSS is its own):

- ``make``: random weights (seed 0) saved as a checkpoint (``bench/decode_scale.py``'s stage);
- ``export``: :func:`nuwa.export.exporter.export_model` (what ``nuwa export`` runs, every graph
  verified against PyTorch) with ``--frames``; a thread samples RSS every 10 ms and the export's
  log line per graph marks where each graph starts;
- ``generate``: ``Pipeline.from_pretrained(EXPORT).text_to_image(...)``, timing its callback's
  events (one per token).

    python3 bench/paper_export.py --work /tmp/paper --frames 1,10
    python3 bench/paper_export.py --work /tmp/paper --stage generate

Prints JSON lines; writes nothing into bench/RESULTS.md (its ``paper_export`` section is
written by hand from these lines). The checkpoint and export (~12 GB) stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


class GraphMeter:
    """Peak RSS and wall time per stretch of work, the stretches named by log lines."""

    def __init__(self) -> None:
        self.name, self.start, self.peak = "load model", time.time(), rss_bytes()
        self.rows: list[dict[str, Any]] = []
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.01)

    def close(self) -> None:
        row = {
            "graph": self.name,
            "seconds": round(time.time() - self.start, 1),
            "peak_gib": round(max(self.peak, rss_bytes()) / 2**30, 2),
        }
        self.rows.append(row)
        _emit(row)

    def log(self, msg: str) -> None:
        if msg.startswith("exporting "):
            self.close()
            self.name, self.start, self.peak = msg.removeprefix("exporting "), time.time(), 0
        else:
            _emit({"log": msg})


def stage_make(work: Path) -> None:
    """The paper checkpoint, as ``bench/decode_scale.py`` makes it (its own process)."""
    decode_scale = Path(__file__).resolve().parent / "decode_scale.py"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(decode_scale), "--stage", "make", "paper", str(work)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def stage_export(work: Path, frames: list[int] | None) -> None:
    import torch

    from nuwa.export.exporter import export_model

    torch.set_num_threads(1)
    t0 = time.time()
    meter = GraphMeter()
    export_model(work / "model", work / "export", frames=frames, log=meter.log)
    meter.close()  # the last graph, the prepared CPU forms and the manifest
    _emit({"total_seconds": round(time.time() - t0, 1), "rows": meter.rows})


# The runtime refuses a request over nuwa.runtime.limits.MAX_REQUEST_BYTES (2 GiB, a small
# machine's policy); a paper text->image with guidance counts ~5.7 GiB there (two sets of ring
# caches and of a 4,410-token condition's cross K/V per row, rows doubled by guidance).
PAPER_REQUEST_BYTES = 8 << 30


def stage_generate(work: Path, prompt: str) -> None:
    t0 = time.perf_counter()
    from nuwa.runtime import Pipeline, limits

    limits.MAX_REQUEST_BYTES = PAPER_REQUEST_BYTES

    pipe = Pipeline.from_pretrained(work / "export", progress=False)
    loaded = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    events: list[float] = []
    t1 = time.perf_counter()
    result = pipe.text_to_image(
        prompt, seed=0, callback=lambda _e: events.append(time.perf_counter())
    )
    total = time.perf_counter() - t1
    gaps = sorted(b - a for a, b in zip(events, events[1:], strict=False))
    _emit(
        {
            "backend": pipe.describe(),
            "load_s": round(loaded, 1),
            "peak_rss_after_load_gib": round(rss_loaded, 2),
            "generate_s": round(total, 1),
            "events": len(events),
            "first_event_s": round(events[0] - t1, 2),
            "median_ms_between_events": round(1e3 * gaps[len(gaps) // 2], 1),
            "after_last_event_s": round(t1 + total - events[-1], 2),
            "frames_shape": list(result.frames.shape),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    )


def _run(args: list[str]) -> None:
    here = str(Path(__file__).resolve())
    if subprocess.run([sys.executable, here, *args], check=False).returncode != 0:
        raise SystemExit(f"[paper_export] {' '.join(args)} failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="checkpoint and export go here (~12 GB)")
    p.add_argument("--frames", default="", help="nuwa export --frames (default: every length)")
    p.add_argument("--stage", choices=("make", "export", "generate"), help="one stage, here")
    p.add_argument("--prompt", default="a red car on a road")
    args = p.parse_args(argv)
    work = Path(args.work)
    frames = [int(f) for f in args.frames.split(",") if f] or None
    stages: dict[str, Callable[[], None]] = {
        "make": lambda: stage_make(work),
        "export": lambda: stage_export(work, frames),
        "generate": lambda: stage_generate(work, args.prompt),
    }
    if args.stage:
        stages[args.stage]()
        return 0
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "model").is_dir():
        stage_make(work)
    base = ["--work", str(work), "--frames", args.frames, "--prompt", args.prompt]
    _run([*base, "--stage", "export"])
    _run([*base, "--stage", "generate"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
