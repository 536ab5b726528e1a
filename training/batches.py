"""The batches of transformer training and their loss.

Each step trains one task, chosen from ``(seed, step)`` with ``task_weights`` among the trained
tasks of :mod:`nuwa.spec.tasks` (:data:`~nuwa.spec.tasks.TRAINED_TASK_CODES`, in that order):

====  ===================================  ==========================
task  condition (encoder)                  target (decoder, teacher-forced)
====  ===================================  ==========================
T2I   caption without motion               frame 0
T2V   caption                              all frames
S2I   sketch tokens of frame 0             frame 0
S2V   sketch tokens of all frames          all frames
V2V   empty prompt                         all frames (prefix given at inference)
====  ===================================  ==========================

Condition dropout (``cond_dropout``, per sample) swaps the text for the empty prompt and a sketch
for the blank (all-background) sketch, so one model also gives the unconditional logits that
classifier-free guidance needs. Image tasks use ``image_batch_size`` (a frame costs 1/T of a video).

Two options aim the loss at motion, which a caption decides only at frame 1 (later frames follow
from the frames before): ``short_t2v_share`` trains that share of T2V batches on the first
``short_t2v_frames`` frames of proportionally more clips, and ``motion_weight`` weights tokens that
changed since the frame before (:func:`token_loss_weights`). Logged losses are the plain mean
token cross-entropy either way.

Long clips teach videos past the trained length: with ``long_frames`` beyond the model's frames
the cache holds clips that long (objects bouncing off the borders, the long-video ground truth),
and ``long_share`` of the T2V and V2V batches train on all their frames (proportionally fewer
clips), teacher-forced as the sliding ring cache runs them (frames past the trained ones take
the last time row: ``NuwaTransformer.forward``). Other batches use the first trained frames.

``attribute_dropout`` trains text tasks, per sample, on the caption without the position and
(T2V) without the motion, each left out with that chance (``motion_dropout`` gives the motion a
rate of its own), so the model learns to draw an object wherever and however the caption leaves
open (the token cache holds all four caption variants).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nuwa.model.nuwa import NuwaModel
from nuwa.spec.tasks import TRAINED_TASK_CODES, TaskInfo, find_task
from nuwa.training.common import step_rng
from nuwa.training.token_cache import TokenCache
from nuwa.training.transformer_options import TransformerTrainOptions


@dataclass
class Batch:
    """One step's batch: its task, the target tokens and the condition (text or sketch)."""

    task: str
    target: Tensor  # (B, T, h, w)
    text: Tensor | None  # (B, L) for text tasks
    sketch: Tensor | None  # (B, Ts, hs, ws) for sketch tasks


def pick_task(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """The step's task: one of the trained task codes with a positive weight, drawn by ``rng``.

    The draw is an index into the positive-weight codes in :data:`TRAINED_TASK_CODES`' order, so
    a run's batches depend on that order (tests/training pins it to the order runs drew from)."""
    unknown = set(weights) - set(TRAINED_TASK_CODES)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; known: {TRAINED_TASK_CODES}")
    names = [t for t in TRAINED_TASK_CODES if weights.get(t, 0) > 0]
    p = np.array([weights[t] for t in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def trained_task(code: str) -> TaskInfo:
    """The task table's row of the trained task ``code`` (``T2V``)."""
    info = find_task(code)
    if info is None or not info.trained:
        raise ValueError(f"{code!r} is not a trained task; known: {TRAINED_TASK_CODES}")
    return info


LONG_TASKS = ("T2V", "V2V")  # the video tasks trained on long clips (text conditions)


def make_batch(
    cache: TokenCache,
    options: TransformerTrainOptions,
    step: int,
    trained_frames: int | None = None,
) -> Batch:
    """The batch of ``step``: a pure function of (cache, seed, step).

    ``trained_frames``: the model's frames (default: the cache's clip length; a cache of long
    clips needs it). With ``short_t2v_share`` a T2V batch is, that often, the first
    ``short_t2v_frames`` frames of proportionally more clips (the same number of tokens): the
    caption's motion decides only frame 1 (later frames follow from the frames before), so
    short clips give the text -> direction mapping several times the signal per step. With
    ``long_share`` a T2V or V2V batch is, that often, all ``long_frames`` frames of
    proportionally fewer clips (at least one)."""
    clip_frames = cache.video.shape[1]
    trained = clip_frames if trained_frames is None else trained_frames
    if options.clip_frames(trained) != clip_frames:
        raise ValueError(
            f"the token cache holds {clip_frames}-frame clips, the run trains on"
            f" {options.clip_frames(trained)} (trained frames {trained}, long_frames"
            f" {options.long_frames})"
        )
    rng = step_rng(options.seed, step)
    task = pick_task(rng, options.task_weights)
    info = trained_task(task)
    video = info.video
    bs = options.video_batch_size if video else options.image_batch_size
    frames = trained if video else 1
    long_run = clip_frames > trained and options.long_share > 0
    if long_run and task in LONG_TASKS and rng.random() < options.long_share:
        frames = clip_frames  # drawn only in long runs: other runs' batches stay the same
        bs = max(1, bs * trained // frames)
    elif task == "T2V" and options.short_t2v_share > 0 and rng.random() < options.short_t2v_share:
        frames = min(options.short_t2v_frames, frames)
        bs *= trained // frames
    idx = torch.from_numpy(rng.integers(0, len(cache), bs))
    drop = torch.from_numpy(rng.random(bs) < options.cond_dropout)
    target = cache.video[idx, :frames]
    text = sketch = None
    if "prompt" in info.needs:  # T2I, T2V: the caption
        position: Tensor | bool = True
        motion: Tensor | bool = video
        motion_dropout = options.effective_motion_dropout
        if options.attribute_dropout > 0 or motion_dropout > 0:
            # drawn only then: older runs' batches stay the same
            position = torch.from_numpy(rng.random(bs) >= options.attribute_dropout)
            if video:
                motion = torch.from_numpy(rng.random(bs) >= motion_dropout)
        text = cache.text(idx, motion=motion, position=position)
        text = torch.where(drop[:, None], cache.empty_text[None], text)
    elif info.condition == "text":  # V2V: the empty prompt
        text = cache.empty_text[None].expand(bs, -1)
    else:  # S2I, S2V: the sketch
        sketch = cache.sketch[idx] if video else cache.sketch[idx, :1]
        sketch = torch.where(drop[:, None, None, None], cache.blank_sketch, sketch)
    return Batch(task, target, text, sketch)


def token_loss_weights(target: Tensor, motion_weight: float) -> Tensor:
    """Per-token loss weights for ``target`` (B, T, h, w): 1, plus ``motion_weight`` where a
    token differs from the same place in the frame before ("moving" tokens: an object's leading
    and trailing edges). Returns (B, T*h*w) in the flattened token order of the logits.

    The tokens that change carry the motion (with this VQ-GAN also some background flicker:
    its GroupNorm spans the frame), and at frame 1 the caption's direction is what decides
    them."""
    weights = torch.ones(target.shape, dtype=torch.float32, device=target.device)
    if motion_weight and target.shape[1] > 1:
        weights[:, 1:] += motion_weight * (target[:, 1:] != target[:, :-1]).float()
    return weights.flatten(1)


def batch_loss(
    model: NuwaModel, batch: Batch, device: torch.device, motion_weight: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(training loss, plain mean token cross-entropy) of ``batch``: the training loss weights
    each token by :func:`token_loss_weights` (normalised by their sum); with ``motion_weight``
    0 the two are the same number."""
    tr = model.transformer
    if batch.text is not None:
        cond = tr.encode_text(batch.text.to(device))
    else:
        assert batch.sketch is not None
        cond = tr.encode_sketch(batch.sketch.to(device))
    target = batch.target.to(device)
    logits = tr(cond, target)  # (B, N, V)
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    plain = nll.mean()
    if not motion_weight:
        return plain, plain
    weights = token_loss_weights(target, motion_weight).flatten()
    return (nll * weights).sum() / weights.sum(), plain
