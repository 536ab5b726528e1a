"""Quality evaluation on held-out prompts (DESIGN §10), one concept: the score table of
``nuwa evaluate`` — generate every task through a runtime backend, read the pixels with
:mod:`nuwa.data.quality_checker`, average the scores per task, and add the checkpoint's own
numbers.

Held-out samples come from ``SyntheticVideoDataset(n, seed, split="heldout")`` (captions never
seen in training). The tasks and their scores are :class:`nuwa.quality.evaluator.Evaluator`'s;
every backend generates through the runtime (:mod:`nuwa.runtime.engine`, its NumPy sampler),
``torch`` included (the runtime's torch backend over the model being scored).

Also reported: the VQ-GAN's reconstruction PSNR over the held-out clips' frames and how many of
its tokens change between frames (:mod:`nuwa.quality.token_locality`); with T2I the caption-choice
accuracy (:mod:`nuwa.quality.caption_choice`: which of the captions differing only in colour /
start position explains a held-out still best, chance 1/6 and 1/5), and with T2V the same for the
motion direction over whole clips (chance about 0.46). With T2V also ``t2v_open_captions``
(:meth:`Evaluator.open_captions`) and ``t2v_by_caption`` (:func:`by_caption_group`). With
``long_frames`` (``nuwa evaluate --long-frames 16,32``), ``long``: V2V and T2V past the trained
length scored per block (:mod:`nuwa.quality.long_generation`). Each task samples with the model's
own defaults for it (``generation_config.json``, :func:`default_options`) unless the caller gives
options.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nuwa.data import quality_checker as qc
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.quality.caption_choice import (
    by_caption_group,
    caption_choice_accuracy,
    caption_choice_chance,
)
from nuwa.quality.evaluation_tasks import ALL_TASKS, DEFAULT_TASKS, EVAL_SEED
from nuwa.quality.evaluator import Evaluator
from nuwa.quality.long_generation import check_long_frames, summarise_blocks
from nuwa.quality.token_locality import token_locality
from nuwa.runtime.backends import Backend, load_backend
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.generation_config import GenerationConfig


def default_options(
    task: str = "T2I", generation: GenerationConfig | None = None
) -> SamplingOptions:
    """The sampling scores are reported with: the model's sampling defaults for ``task`` (its
    ``generation_config.json``, ``generation``), else the built-in ones (temperature 0.5,
    top-k 16, guidance 2); seed 0."""
    return SamplingOptions(**(generation or GenerationConfig()).for_task(task), seed=0)


def evaluation_backend(
    model: NuwaModel, backend: str, model_dir: str | Path | None, precision: str
) -> Backend:
    """The runtime backend that generates: ``torch`` runs ``model`` itself (on its device);
    any other loads ``model_dir`` (an export of ``model``, or its checkpoint to export)."""
    if backend == "torch":
        from nuwa.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(model=model, device=str(model.device))
    if model_dir is None:
        raise ValueError(f"evaluating on the {backend} backend needs model_dir")
    return load_backend(backend, model_dir, precision)


@torch.no_grad()
def reconstruction_psnr(model: NuwaModel, dataset: SyntheticVideoDataset, n: int) -> float:
    """VQ-GAN encode -> decode PSNR (dB) over every frame of ``n`` clips."""
    frames = np.stack([dataset[i].frames for i in range(n)])
    rec = np.concatenate(
        [
            model.codes_to_frames(model.frames_to_codes(frames[i : i + 8])).cpu().numpy()
            for i in range(0, n, 8)
        ]
    )
    return qc.psnr(rec, frames)


@torch.no_grad()
def evaluate(
    model: NuwaModel,
    tasks: Sequence[str] = DEFAULT_TASKS,
    n_prompts: int = 64,
    backend: str = "torch",
    options: SamplingOptions | Mapping[str, SamplingOptions] | None = None,
    seed: int = EVAL_SEED,
    batch_size: int = 16,
    v2v_given: int = 2,
    out_json: str | Path | None = None,
    progress: bool = True,
    model_dir: str | Path | None = None,
    precision: str = "fp32",
    long_frames: Sequence[int] = (),
) -> dict[str, Any]:
    """Score ``tasks`` over ``n_prompts`` held-out samples each; returns (and writes to
    ``out_json``) ``{"tasks": {task: summary row}, "vqgan_psnr": dB, "options": ..., ...}``.
    Summary rows are :func:`quality_checker.summarise` averages plus ``seconds``.

    ``options``: one sampling for every task, or one per task (a mapping task -> options; a
    task it lacks gets :func:`default_options`); ``None`` -> :func:`default_options`.

    ``long_frames``: frame counts past the trained length at which V2V and T2V (those of them in
    ``tasks``) are also generated and scored per block (``table["long"][task][frames]``,
    :meth:`Evaluator.long_generation`)."""
    if backend != "torch" and model_dir is None:  # before any work
        raise ValueError(f"evaluating on the {backend} backend needs model_dir")
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {ALL_TASKS}")
    long_tasks = check_long_frames(long_frames, tasks, model.config.transformer.frames, v2v_given)
    per_task = {
        t: options if isinstance(options, SamplingOptions) else (options or {}).get(t)
        for t in tasks
    }
    task_options = {t: o if o is not None else default_options(t) for t, o in per_task.items()}
    first = task_options[tasks[0]] if tasks else default_options()
    model = model.eval()
    size = model.config.vqgan.image_size
    ds = SyntheticVideoDataset(
        n_prompts, seed=seed, frames=model.config.transformer.frames, size=size, split="heldout"
    )
    generator = evaluation_backend(model, backend, model_dir, precision)
    evaluator = Evaluator(generator, ds, first, batch_size, v2v_given)
    start = time.perf_counter()
    table: dict[str, Any] = {
        "vqgan_psnr": reconstruction_psnr(model, ds, n_prompts),
        "vqgan_psnr_seconds": round(time.perf_counter() - start, 2),
    }
    if model.config.transformer.frames > 1:  # how many tokens change away from moving objects
        clips = [ds[i] for i in range(n_prompts)]
        locality = token_locality(clips, lambda f: model.frames_to_codes(f[None])[0].cpu().numpy())
        table["vqgan_token_locality"] = locality.to_dict()
    rows: dict[str, dict[str, float]] = {}
    batches = [
        list(range(i, min(n_prompts, i + batch_size))) for i in range(0, n_prompts, batch_size)
    ]

    samples: dict[str, list[dict[str, Any]]] = {}

    def summary(
        run: Callable[[Sequence[int]], list[dict[str, Any]]], desc: str
    ) -> dict[str, float]:
        """``run`` over every batch, summarised, with its wall time; the per-sample scores
        are kept in ``samples[desc]``."""
        start = time.perf_counter()
        scores: list[dict[str, Any]] = []
        for b in tqdm(batches, desc=desc, disable=not progress):
            scores += run(b)
        samples[desc] = scores
        return {**qc.summarise(scores), "seconds": round(time.perf_counter() - start, 2)}

    for task in tasks:
        evaluator.set_options(task_options[task])
        rows[task] = summary(lambda b, task=task: evaluator.run(task, b), task)
    table["tasks"] = rows
    if "T2V" in tasks:
        table["t2v_by_caption"] = by_caption_group(
            samples["T2V"], [ds.spec(i) for i in range(n_prompts)]
        )
    if long_tasks:  # generation past the trained length, scored per block
        table["long"] = {}
        for task in long_tasks:
            evaluator.set_options(task_options[task])
            table["long"][task] = {}
            for frames in long_frames:
                start = time.perf_counter()
                scores: list[dict[str, dict[str, float | bool]]] = []
                for b in tqdm(batches, desc=f"{task}, {frames} frames", disable=not progress):
                    scores += evaluator.long_generation(task, b, frames)
                table["long"][task][str(frames)] = {
                    **summarise_blocks(scores),
                    "seconds": round(time.perf_counter() - start, 2),
                }
    if "T2V" in tasks and model.config.transformer.frames > 1:
        evaluator.set_options(task_options["T2V"])
        table["t2v_open_captions"] = summary(evaluator.open_captions, "T2V, open captions")
    # does the transformer read the caption at all (no sampling): still attributes with T2I,
    # the motion with T2V
    chosen = [a for a in ("colour", "position") if "T2I" in tasks]
    chosen += ["direction"] if "T2V" in tasks and model.config.transformer.frames > 1 else []
    if chosen:
        start = time.perf_counter()
        table["caption_choice"] = {
            a: caption_choice_accuracy(model, ds, n_prompts, a) for a in chosen
        }
        table["caption_choice"]["chance"] = {
            a: round(caption_choice_chance(ds, n_prompts, a), 4) for a in chosen
        }
        table["caption_choice"]["seconds"] = round(time.perf_counter() - start, 2)
    table.update(
        {
            "n_prompts": n_prompts,
            "seed": seed,
            "backend": backend,
            "precision": precision if backend != "torch" else "fp32",
            "v2v_given_frames": v2v_given,
            "long_frames": list(long_frames),
            "options": {
                task: {
                    "temperature": o.temperature,
                    "top_k": o.top_k,
                    "top_p": o.top_p,
                    "guidance_scale": o.guidance_scale,
                    "seed": o.seed,
                }
                for task, o in task_options.items()
            },
        }
    )
    if out_json is not None:
        Path(out_json).write_text(json.dumps(table, indent=2))
    return table
