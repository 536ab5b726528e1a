"""Calibration: run the FP32 graphs on real samples of every task and record the ranges of the
activations that INT8 will quantize.

What runs (all from :class:`CalibrationSet`, deterministic in ``seed``):

- prompts (T2I captions without motion, T2V captions), sketches (S2I one frame, S2V all
  frames) and videos (V2V, the first frames given) of ``count`` training-split samples per task;
- each request is generated with the evaluation's sampling (temperature 0.5, top-k 16, guidance
  2, seeded), so the decoder-step inputs seen are those of real generations: the text / sketch
  encoders, every decoder step along the way (ring KV cache, conditional and unconditional
  rows), the VQ encoder (V2V's given frames) and the VQ decoder (the generated grids);
- videos are generated at the trained length (the common request); with ``every_length``
  also at the longest length each other exported decoder-step graph serves (sketch conditions
  have one graph per frame count), else those graphs borrow the ranges of their family
  (``nuwa.calibration.quantize``).

Nothing is stored between steps: :class:`~nuwa.calibration.onnx_runner.ExportRunner` fetches the
observed tensors on each run and a :class:`~nuwa.calibration.ranges.RangeObserver` per graph
keeps the running max |x|.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nuwa.calibration.onnx_runner import ExportRunner
from nuwa.calibration.ranges import CALIBRATION_METHODS, RangeObserver
from nuwa.calibration.task_samples import (
    TASKS,
    dataset_for,
    generate,
    generation_options,
    make_batch,
)
from nuwa.spec.generation_config import GenerationConfig


@dataclass(frozen=True)
class CalibrationSet:
    """Which real samples calibrate: ``count`` per task from the training split at ``seed``."""

    count: int = 8
    seed: int = 0
    tasks: tuple[str, ...] = TASKS
    split: str = "train"
    every_length: bool = False  # also generate videos at every exported decoder-step length
    method: str = "max"  # activation ranges: max |x| or a percentile of |x| (ranges.py)
    percentile: float = 99.99  # used by method="percentile"

    def validate(self) -> None:
        if self.count < 1:
            raise ValueError(f"--calib-count must be >= 1, got {self.count}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"unknown calibration method {self.method!r}; choose from {CALIBRATION_METHODS}"
            )
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"--calib-percentile must be in (0, 100], got {self.percentile}")
        if self.seed < 0:
            raise ValueError(f"--calib-seed must be >= 0, got {self.seed}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown calibration tasks {unknown}; choose from {TASKS}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["source"] = "nuwa.data.synthetic_data.SyntheticVideoDataset"
        d["sampling"] = {"temperature": 0.5, "top_k": 16, "guidance_scale": 2.0, "seed": self.seed}
        return d


def video_frame_counts(runner: ExportRunner, condition: str) -> list[int]:
    """Video lengths (> 1 frame) that reach every exported decoder-step graph of a condition
    kind once: the longest request each graph serves."""
    longest: dict[str, int] = {}
    for step in runner.manifest.decoder_steps:
        kind = "text" if step.condition == "text" else "sketch"
        if kind == condition:
            longest[step.graph] = max(longest.get(step.graph, 0), step.frames)
    return sorted({f for f in longest.values() if f > 1})


def calibrate(
    fp32_dir: str | Path,
    observe: dict[str, list[str]],
    calib: CalibrationSet,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, RangeObserver], dict[str, int]]:
    """Run ``calib``'s requests on the FP32 export and return (per graph: observed ranges of the
    ``observe`` tensors, per graph: number of runs). A graph no request reaches has an empty
    observer (``nuwa.calibration.quantize`` decides what to do with it)."""
    calib.validate()
    observers = {g: RangeObserver(histogram=calib.method == "percentile") for g in observe}
    runs: dict[str, int] = {}

    def on_run(graph: str, feeds: dict[str, Any], extras: dict[str, Any]) -> None:
        runs[graph] = runs.get(graph, 0) + 1
        if graph in observers:
            observers[graph].observe_all(extras)

    runner = ExportRunner(fp32_dir, observe=observe, on_run=on_run)
    spec = runner.spec
    ds = dataset_for(spec, calib.count, calib.seed, "train")
    indices = list(range(calib.count))
    generation = GenerationConfig.load(fp32_dir)
    for task in calib.tasks:
        options = generation_options(calib.seed, task, generation)
        if task in ("T2I", "S2I"):
            frame_counts = [1]
        elif task == "V2V":
            frame_counts = [spec.frames] if spec.frames > 1 else []
        else:
            kind = "text" if task == "T2V" else "sketch"
            lengths = video_frame_counts(runner, kind)
            frame_counts = lengths if calib.every_length else lengths[-1:]
        for frames in frame_counts:
            if log:
                log(f"calibrating on {calib.count} {task} samples ({frames} frame(s))")
            batch = make_batch(task, ds, indices, frames)
            tokens = generate(runner, batch, options)
            runner.codes_to_frames(tokens)  # the VQ decoder sees real generated grids
    return observers, runs
