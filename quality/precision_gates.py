"""Quality gates: a quantized export against its FP32 source on the same held-out requests and
the same seeds (DESIGN §8, §10).

Per task (T2I, T2V, S2I, S2V, V2V; ``count`` held-out samples each):

- **token agreement** (teacher-forced): the FP32 export decodes greedily (with the evaluation's
  guidance); the candidate is fed the same tokens step by step and we count how often its argmax
  is the FP32 token. Teacher forcing measures the graphs, not the butterfly effect of one early
  flip on everything after it;
- **sampling divergence** (teacher-forced, reported, not gated): FP32 and the candidate are fed
  the same tokens and, per position, the total-variation distance between their sampling
  distributions (the evaluation's temperature / top-k after guidance) is averaged: the chance
  that one sampled token differs under the best coupling. Deterministic, and blind to near-ties
  of the top logits that argmax agreement counts;
- **sequence agreement**: share of equal tokens when both generate freely with the same sampling
  seed (reported, not gated: one flip changes the rest of a sampled sequence);
- **quality checker**: every score the checker reports for the task (``GATED_SCORES``: T2I/T2V
  each attribute's accuracy and all-attributes accuracy, S2I/S2V IoU, V2V position error in
  px) from each export's own generated pixels, same seed. Each row also carries the standard
  error of the paired per-sample difference, so a reader can tell a real loss from sampling
  noise (one flipped sample moves an accuracy on 8 samples by 12.5 points).

  Defaults: 32 samples x 4 streams per task. A quantized model's samples diverge from FP32's
  somewhere (INT8's per-token divergence is ~0.002-0.007 on the demo: most videos change), and
  a diverged sample is a fresh draw, so with one generation per sample a 2-point gate on 32
  samples fails on one sample drawn differently: measured on the demo checkpoint (2026-12-05),
  8-bit INT8 failed T2I colour and T2V shape by one sample each at 32 x 1 and passed every task
  at 32 x 4 (bench/RESULTS.md). 16 x 4 (the default for a day) was still noise-bound: the
  stage-6 demo weights' INT8 failed T2I colour by two generations of 64 and T2V shape by three
  (paired s.e. 2.1 and 4.1 points; T2I all and T2V all rose) and passed both at 32 x 4 (s.e. 1.1 and
  0.8). 32 x 4 generations make one changed generation 0.8 points.

  With ``streams`` > 1 both sides generate every sample that many times, sampling seeds
  ``seed .. seed+streams-1``, and a sample's score is its mean over the streams
  (:func:`pool_streams`). One sampled stream per side is noisy in a way the paired error cannot
  see: every video diverges somewhere, so FP32's own streams differ by several points of T2V
  accuracy at 64 samples (bench/RESULTS.md), and a high or low FP32 stream moves the verdict.

Gates: teacher-forced agreement >= ``min_token_agreement``; every accuracy/IoU no more than
``tolerance_points`` percentage points below FP32 (2 points: DESIGN §10 "within a point or
two"); position error no more than ``tolerance_px`` pixels above FP32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.calibration.onnx_runner import ExportRunner
from nuwa.calibration.task_samples import (
    HEADLINE,
    LOWER_IS_BETTER,
    dataset_for,
    generate,
    generation_options,
    make_batch,
    sampled_reference,
    sampling_divergence,
    score,
    teacher_forced_agreement,
    teacher_forced_logits,
)
from nuwa.data import quality_checker as qc
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.quality.gate_config import GateConfig
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.manifest import MANIFEST_FILE, sha256_file

# the quality-checker scores each task's gate compares (the first is the task's headline)
GATED_SCORES: dict[str, tuple[str, ...]] = {
    "T2I": ("all", "shape", "colour", "position"),
    "T2V": ("all", "shape", "colour", "position", "direction"),
    "S2I": ("iou",),
    "S2V": ("iou",),
    "V2V": ("position_error",),
}
Scores = list[dict[str, Any]]
# FP32 reference runs per (export dir, its manifest's hash, task, count, seed): gating INT8 and
# FP16 of one export in one process decodes the reference once
_REFERENCE_RUNS: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray, Scores]] = {}


def _quality_ok(metric: str, ref: float, cand: float, cfg: GateConfig) -> bool:
    if metric in LOWER_IS_BETTER:
        return bool(cand <= ref + cfg.tolerance_px)
    return bool(100.0 * (ref - cand) <= cfg.tolerance_points + 1e-9)


def pool_streams(streams: list[Scores]) -> Scores:
    """Per sample, each score's mean over the streams that have it (booleans as 0/1): the
    scores of ``len(streams)`` generations of the same samples, as one list of samples."""
    if not streams or len({len(s) for s in streams}) != 1:
        raise ValueError("pool_streams needs one or more streams over the same samples")
    pooled: Scores = []
    for per_stream in zip(*streams, strict=True):
        keys = dict.fromkeys(k for sample in per_stream for k in sample)
        pooled.append(
            {
                k: float(np.mean([float(sample[k]) for sample in per_stream if k in sample]))
                for k in keys
            }
        )
    return pooled


def compare_scores(
    reference: Scores, candidate: Scores, metrics: tuple[str, ...], cfg: GateConfig
) -> dict[str, dict[str, Any]]:
    """Per metric: both means, the standard error of the paired per-sample difference
    (candidate - FP32, over the samples where both have the metric; 0 with one sample) and
    whether the candidate is within the gate's tolerance."""
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        pairs = [
            (float(r[metric]), float(c[metric]))
            for r, c in zip(reference, candidate, strict=True)
            if metric in r and metric in c
        ]
        if not pairs:
            continue
        ref, cand = (np.array(v) for v in zip(*pairs, strict=True))
        diff = cand - ref
        stderr = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        ref_mean = float(qc.summarise([r for r in reference if metric in r])[metric])
        cand_mean = float(qc.summarise([c for c in candidate if metric in c])[metric])
        out[metric] = {
            "fp32": round(ref_mean, 4),
            "candidate": round(cand_mean, 4),
            "paired_stderr": round(stderr, 4),
            "ok": _quality_ok(metric, ref_mean, cand_mean, cfg),
        }
    return out


def task_gate(
    reference: ExportRunner,
    candidate: ExportRunner,
    task: str,
    dataset: SyntheticVideoDataset,
    cfg: GateConfig,
    generation: GenerationConfig | None = None,
) -> dict[str, Any]:
    """Both gates for one task (see module docstring), sampling with the model's defaults for
    it (``generation``: its ``generation_config.json``)."""
    frames = reference.spec.frames
    batch = make_batch(task, dataset, list(range(cfg.count)), frames)
    stream_options = [
        generation_options(cfg.seed + k, task, generation) for k in range(cfg.streams)
    ]
    options = stream_options[0]
    greedy = SamplingOptions(temperature=0.0, guidance_scale=options.guidance_scale)
    metric = HEADLINE[task]
    key = (
        str(reference.manifest.directory.resolve()),
        sha256_file(reference.manifest.directory / MANIFEST_FILE),  # lists every graph's hash
        task,
        cfg.count,
        cfg.seed,
        cfg.streams,
    )
    guidance = options.guidance_scale
    if key not in _REFERENCE_RUNS:  # FP32's side is the same for every candidate
        ref_greedy = generate(reference, batch, greedy)
        ref_logits = teacher_forced_logits(reference, batch, ref_greedy, guidance)
        ref_streams = [generate(reference, batch, o) for o in stream_options]
        ref_scores = pool_streams([score(batch, reference.codes_to_frames(t)) for t in ref_streams])
        _REFERENCE_RUNS[key] = (ref_greedy, ref_logits, ref_streams[0], ref_scores)
    ref_greedy, ref_logits, ref_tokens, ref_scores = _REFERENCE_RUNS[key]
    cand_logits = teacher_forced_logits(candidate, batch, ref_greedy, guidance)
    agreement = teacher_forced_agreement(
        cand_logits, sampled_reference(batch, ref_greedy, reference)
    )
    divergence = sampling_divergence(ref_logits, cand_logits, options)
    cand_streams = [generate(candidate, batch, o) for o in stream_options]
    cand_tokens = cand_streams[0]  # sequence agreement: the first stream
    start = batch.given * reference.spec.tokens_per_frame
    seq = (
        ref_tokens.reshape(batch.size, -1)[:, start:]
        == cand_tokens.reshape(batch.size, -1)[:, start:]
    )
    cand_scores = pool_streams([score(batch, candidate.codes_to_frames(t)) for t in cand_streams])
    scores = compare_scores(ref_scores, cand_scores, GATED_SCORES[task], cfg)
    quality_ok = all(v["ok"] for v in scores.values())
    agreement_ok = agreement >= cfg.min_token_agreement
    return {
        "n": batch.size,
        "streams": cfg.streams,
        "token_agreement": round(agreement, 4),
        "sampling_divergence": round(divergence, 5),
        "sequence_agreement": round(float(np.mean(seq)), 4),
        "metric": metric,  # the headline score, repeated from "scores" for one-line reports
        "fp32": scores[metric]["fp32"],
        "candidate": scores[metric]["candidate"],
        "scores": scores,
        "token_agreement_ok": bool(agreement_ok),
        "quality_ok": quality_ok,
        "passed": bool(agreement_ok and quality_ok),
    }


def run_gates(
    fp32_dir: str | Path,
    candidate_dir: str | Path,
    cfg: GateConfig,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every task's gate; ``{"passed": bool, "tasks": {task: row}, "config": ...}``."""
    cfg.validate()
    reference = ExportRunner(fp32_dir)
    candidate = ExportRunner(candidate_dir, int8_kernels=cfg.int8_kernels)
    spec = reference.spec
    ds = dataset_for(spec, cfg.count, cfg.seed, "heldout")
    generation = GenerationConfig.load(reference.manifest.directory)
    note = resolution_note(cfg)
    if log and note:
        log(note)
    rows = {}
    for task in cfg.tasks:
        if task == "V2V" and spec.frames < 2:
            continue
        if log:
            log(f"quality gate {task} on {cfg.count} held-out samples")
        rows[task] = task_gate(reference, candidate, task, ds, cfg, generation)
        if log:
            r = rows[task]
            log(
                f"  {task}: token agreement {r['token_agreement']:.3f}, sampling divergence "
                f"{r['sampling_divergence']:.4f}, {format_scores(r)}"
            )
    return {
        "passed": all(r["passed"] for r in rows.values()),
        "tasks": rows,
        "config": cfg.to_dict(),
        "points_per_sample": round(cfg.sample_points, 3),
        "reference": str(fp32_dir),
        "executed_on": _execution(candidate),
    }


def resolution_note(cfg: GateConfig) -> str | None:
    """A warning when one gate sample moves an accuracy by more than the tolerance (then a
    single changed sample fails the score); ``None`` otherwise."""
    if cfg.sample_points <= cfg.tolerance_points + 1e-9:
        return None
    need = math.ceil(100 / cfg.tolerance_points)
    return (
        f"note: with {cfg.count} gate samples x {cfg.streams} stream(s) one changed generation "
        f"is {cfg.sample_points:.1f} points of an accuracy, more than the "
        f"{cfg.tolerance_points:g}-point tolerance, so one sample that samples differently "
        f"fails it (--gate-count x --gate-streams of {need} or more tolerates one)"
    )


def format_scores(row: dict[str, Any]) -> str:
    """``"all 0.250 -> 0.125 (+-0.125) FAILED, shape ..."``: every gated score of a task row."""
    parts = []
    for metric, v in row["scores"].items():
        verdict = "ok" if v["ok"] else "FAILED"
        parts.append(
            f"{metric} {v['fp32']:.3f} -> {v['candidate']:.3f} "
            f"(+-{v['paired_stderr']:.3f}) {verdict}"
        )
    return ", ".join(parts)


def _execution(runner: ExportRunner) -> str:
    if runner.precision != "int8":
        return f"onnxruntime CPU ({runner.precision})"
    if runner.simulate_qdq:
        kind = "simulated Q/DQ, basic optimizations"
    else:
        kind = f"{runner.int8_kernels} int8 kernels"
    return f"onnxruntime CPU ({kind})"


@dataclass(frozen=True)
class PrecisionGates:
    """The gate ``quantize_export`` runs on the graphs it wrote
    (:class:`nuwa.calibration.quantize.QualityGate`): ``config`` checked before any work
    starts, then :func:`run_gates` against the FP32 source."""

    config: GateConfig

    def validate(self) -> None:
        self.config.validate()

    def __call__(
        self, fp32_dir: Path, candidate_dir: Path, log: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        return run_gates(fp32_dir, candidate_dir, self.config, log)
