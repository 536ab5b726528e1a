"""Real samples of every task, drawn from the synthetic dataset, as requests any backend can run.

Calibration (``capture.py``) and the quality gates (``nuwa.quality.precision_gates``) need "a
batch of real T2I / T2V / S2I / S2V / V2V requests": prompts are the dataset's captions, sketches
its segmentation maps, V2V's given frames its rendered clips. Calibration draws them from the
``train`` split, the gates from ``heldout`` (as ``nuwa evaluate`` does), so calibration never sees
the gate's prompts. Generation goes through the runtime's decode loop
(:func:`nuwa.runtime.engine.generate_tokens`; teacher forcing through its token-chooser hook,
:class:`TeacherForcing`); scoring through ``nuwa.data.quality_checker`` with the same per-task
rules as ``nuwa evaluate`` (:mod:`nuwa.quality.evaluator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nuwa.data import quality_checker as qc
from nuwa.data.clip_rendering import Clip
from nuwa.data.clip_specs import max_caption_bytes
from nuwa.data.synthetic_data import ImageSample, SyntheticVideoDataset
from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.sampler import SamplingOptions, sampling_distribution
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.model_spec import ModelSpec
from nuwa.spec.tasks import TRAINED_TASK_CODES
from nuwa.spec.tokenizer import ByteTokenizer

TASKS = TRAINED_TASK_CODES  # the tasks calibration and the gates draw (nuwa.spec.tasks)
HEADLINE = {"T2I": "all", "T2V": "all", "S2I": "iou", "S2V": "iou", "V2V": "position_error"}
LOWER_IS_BETTER = {"position_error"}
V2V_GIVEN = 2  # frames given to video prediction (fewer when the model has fewer frames)


def generation_options(
    seed: int, task: str, generation: GenerationConfig | None = None
) -> SamplingOptions:
    """The sampling users of the model get for ``task`` (and ``nuwa evaluate`` reports scores
    with): the model's ``generation_config.json`` (``generation``), else the built-in defaults
    (temperature 0.5, top-k 16, guidance 2)."""
    return SamplingOptions(**(generation or GenerationConfig()).for_task(task), seed=seed)


def dataset_for(spec: ModelSpec, count: int, seed: int, split: str) -> SyntheticVideoDataset:
    """The synthetic dataset at the model's frame count and size; two-object clips when their
    captions fit the model's prompt length (the tiny test model only takes one object)."""
    objects = 2 if max_caption_bytes(2) <= spec.max_prompt_bytes else 1
    return SyntheticVideoDataset(
        count,
        seed=seed,
        frames=spec.frames,
        size=spec.image_size,
        max_objects=objects,
        split=split,  # type: ignore[arg-type]
    )


@dataclass
class TaskBatch:
    """One batch of real requests of one task."""

    task: str
    frames: int  # frames to generate
    text: list[str] | None = None  # prompts (text condition)
    sketch: np.ndarray | None = None  # (B, T, S, S) class ids (sketch condition)
    video: np.ndarray | None = None  # (B, T, S, S, 3) uint8 source frames (V2V)
    given: int = 0  # V2V: frames forced from ``video``
    samples: list[Any] = field(default_factory=list)  # ground truth per row

    @property
    def size(self) -> int:
        return len(self.samples)


def make_batch(
    task: str, dataset: SyntheticVideoDataset, indices: Sequence[int], frames: int
) -> TaskBatch:
    """Requests of ``task`` for samples ``indices``; ``frames`` is the video length (T2V, S2V,
    V2V) — images always get 1 frame."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if task in ("T2I", "S2I"):
        images: list[ImageSample] = [dataset.image_sample(i) for i in indices]
        if task == "T2I":
            return TaskBatch(task, 1, text=[s.caption for s in images], samples=images)
        sketch = np.stack([s.sketch for s in images])[:, None].astype(np.int64)
        return TaskBatch(task, 1, sketch=sketch, samples=images)
    clips: list[Clip] = [dataset[i] for i in indices]
    if task == "T2V":
        return TaskBatch(task, frames, text=[c.caption for c in clips], samples=clips)
    if task == "S2V":
        sketch = np.stack([c.sketch[:frames] for c in clips]).astype(np.int64)
        return TaskBatch(task, frames, sketch=sketch, samples=clips)
    given = max(1, min(V2V_GIVEN, frames - 1))
    video = np.stack([c.frames[:frames] for c in clips])
    return TaskBatch(task, frames, text=[""] * len(clips), video=video, given=given, samples=clips)


def condition_pair(
    backend: Backend,
    guided: bool,
    text: list[str] | None = None,
    sketch: np.ndarray | None = None,
) -> tuple[Condition, Condition | None]:
    """(condition, unconditional condition or None) of requests with prompts ``text`` (empty
    ones allowed; the unconditional one is the empty prompt) or class-map sketches ``sketch``
    ``(B, T, S, S)`` (the unconditional one is the blank sketch). Read by the gates, calibration
    and ``nuwa evaluate`` alike."""
    if sketch is not None:
        maps = np.asarray(sketch, dtype=np.int64)
        cond = backend.sketch_condition(maps)
        return cond, (backend.sketch_condition(np.zeros_like(maps)) if guided else None)
    if text is None:
        raise ValueError("a request needs prompts or sketches")
    tok = ByteTokenizer(backend.spec.max_text_len)
    cond = backend.text_condition(tok.encode_batch(text, allow_empty=True))
    uncond = backend.text_condition(np.stack([tok.empty()] * len(text))) if guided else None
    return cond, uncond


def conditions(
    backend: Backend, batch: TaskBatch, guided: bool
) -> tuple[Condition, Condition | None]:
    """(condition, unconditional condition or None) for a batch."""
    return condition_pair(backend, guided, batch.text, batch.sketch)


def forced(backend: Backend, batch: TaskBatch) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(known tokens, known mask) ``(B, N)`` for V2V's given frames; (None, None) otherwise."""
    if batch.video is None:
        return None, None
    codes = backend.frames_to_codes(batch.video).reshape(batch.size, -1)
    mask = np.zeros(codes.shape, dtype=bool)
    mask[:, : batch.given * backend.spec.tokens_per_frame] = True
    return codes, mask


def generate(backend: Backend, batch: TaskBatch, options: SamplingOptions) -> np.ndarray:
    """Token grids ``(B, T, h, w)`` for a batch (V2V: no guidance, as in the runtime)."""
    if batch.task == "V2V":
        options = SamplingOptions(
            options.temperature, options.top_k, options.top_p, 1.0, options.seed
        )
    cond, uncond = conditions(backend, batch, options.uses_guidance)
    known, mask = forced(backend, batch)
    return generate_tokens(
        backend, cond, batch.frames, options, uncond, known, mask, progress=False
    )


class TeacherForcing:
    """A :data:`~nuwa.runtime.engine.TokenChooser` that records each position's guided logits
    and returns the ``reference (B, N)`` tokens there, so the engine's loop is fed a fixed
    sequence: ``logits`` ``(P, B, V)`` float32 afterwards, one row per chosen position."""

    def __init__(self, reference: np.ndarray) -> None:
        self.reference = np.asarray(reference, dtype=np.int64)
        self.rows: list[np.ndarray] = []

    def __call__(self, position: int, logits: np.ndarray) -> np.ndarray:
        self.rows.append(np.asarray(logits, dtype=np.float32))
        return self.reference[:, position]

    @property
    def logits(self) -> np.ndarray:
        return np.stack(self.rows)


def teacher_forced_logits(
    backend: Backend, batch: TaskBatch, reference: np.ndarray, guidance_scale: float
) -> np.ndarray:
    """Feed ``reference`` tokens ``(B, T, h, w)`` (another backend's greedy output) through the
    runtime's decode loop (:func:`~nuwa.runtime.engine.generate_tokens` with a
    :class:`TeacherForcing` chooser; V2V's given frames go in as its forced prefix); returns this
    backend's guided logits ``(P, B, V)`` float32 at the ``P`` positions after the given frames."""
    guided = guidance_scale != 1.0 and batch.task != "V2V"
    cond, uncond = conditions(backend, batch, guided)
    ref = reference.reshape(batch.size, -1)
    start = batch.given * backend.spec.tokens_per_frame
    known = mask = None
    if start:  # V2V's given frames, as the reference has them
        known, mask = ref, np.zeros(ref.shape, dtype=bool)
        mask[:, :start] = True
    forcing = TeacherForcing(ref)
    options = SamplingOptions(temperature=0.0, guidance_scale=guidance_scale if guided else 1.0)
    generate_tokens(
        backend, cond, batch.frames, options, uncond, known, mask, progress=False, choose=forcing
    )
    return forcing.logits


def sampled_reference(batch: TaskBatch, reference: np.ndarray, backend: Backend) -> np.ndarray:
    """The reference tokens ``(P, B)`` at the positions :func:`teacher_forced_logits` returns."""
    start = batch.given * backend.spec.tokens_per_frame
    return reference.reshape(batch.size, -1)[:, start:].T


def teacher_forced_agreement(logits: np.ndarray, tokens: np.ndarray) -> float:
    """Share of positions where the argmax of ``logits (P, B, V)`` is ``tokens (P, B)``."""
    return float((logits.argmax(-1) == tokens).mean())


def sampling_divergence(
    reference_logits: np.ndarray, candidate_logits: np.ndarray, options: SamplingOptions
) -> float:
    """Mean total-variation distance between the two backends' sampling distributions
    (``options``' temperature / top-k / top-p) over teacher-forced positions ``(P, B, V)``: the
    chance that one sampled token differs under the best coupling of the two samplers. Unlike
    argmax agreement it is deterministic and does not count near-ties between top logits,
    which sampling at temperature 0.5 hardly tells apart."""
    total = 0.0
    for ref, cand in zip(reference_logits, candidate_logits, strict=True):
        p = sampling_distribution(ref, options)
        q = sampling_distribution(cand, options)
        total += 0.5 * float(np.abs(p - q).sum(axis=-1).sum())
    return total / (reference_logits.shape[0] * reference_logits.shape[1])


def score(batch: TaskBatch, frames: np.ndarray) -> list[dict[str, Any]]:
    """Quality-checker scores of generated ``frames (B, T, S, S, 3)`` uint8, per row."""
    rows = zip(frames, batch.samples, strict=True)
    if batch.task == "T2I":
        return [qc.score_text_to_image(f[0], s.spec) for f, s in rows]
    if batch.task == "T2V":
        return [qc.score_text_to_video(f, s.spec) for f, s in rows]
    if batch.task == "S2I":
        return [qc.score_sketch(f[0], s.sketch) for f, s in rows]
    if batch.task == "S2V":
        return [qc.score_sketch(f, s.sketch[: batch.frames]) for f, s in rows]
    return [{"position_error": qc.position_error(f, s, first_k=batch.given)} for f, s in rows]
