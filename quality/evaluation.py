"""Quality evaluation on held-out prompts (DESIGN §10): generate with the model, read the pixels
with :mod:`nuwa.data.quality_checker`, and average the scores per task into one table.

Held-out samples come from ``SyntheticVideoDataset(n, seed, split="heldout")`` (captions never
seen in training). Per task:

=====  ===========================================  ==================================
task   generation                                   score (quality_checker)
=====  ===========================================  ==================================
T2I    motion-free caption -> 1 frame               ``score_text_to_image``
T2V    caption -> T frames                          ``score_text_to_video``
S2I    sketch of frame 0 -> 1 frame                 ``score_sketch`` (IoU)
S2V    sketches of all frames -> T frames           ``score_sketch`` (IoU)
V2V    empty prompt, first ``v2v_given`` frames      ``position_error`` (px)
       forced -> the rest
I2I    empty prompt, right half of frame 0 masked   ``score_edit`` (PSNR kept, attributes)
TI2I   edit text, the edited object's area masked   ``score_edit`` on the edited object
TV2V   as TI2I over all frames                      ``score_edit`` on the edited object
=====  ===========================================  ==================================

Also reported: the VQ-GAN's reconstruction PSNR over the held-out clips' frames, and with T2I
the caption-choice accuracy (:func:`caption_choice_accuracy`: which of the captions differing only
in colour / start position explains a held-out still best, chance 1/6 and 1/5), and with T2V the
same for the motion direction over whole clips (chance about 0.46). With T2V also
``t2v_open_captions`` (:meth:`Evaluator.open_captions`): the same clips captioned without their
start positions, every other one without the motion too ("a red square moves left", "a green
circle"), as users write; scored on the attributes named, plus "drawn" (an object at all).
And ``t2v_by_caption``: the T2V samples summarised by :func:`caption_group` (one object or two,
with a digit or not).
With ``long_frames`` (``nuwa evaluate --long-frames 16,32``), ``long``: V2V and T2V generated
past the trained length (the window slides) and scored per block of the trained number of
frames (:meth:`Evaluator.long_generation`, :func:`long_video_scores.score_long_video`): object
kept (shape, colour, size) and motion continued (position error against the clip's ground truth
extended by bouncing off the borders, ``SyntheticVideoDataset.long_clip``; speed).
Each task samples with the model's own defaults for it (``generation_config.json``,
:func:`default_options`) unless the caller gives options. Only the ``torch`` backend lives here;
the runtime adds the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from nuwa.data import quality_checker as qc
from nuwa.data.clip_rendering import Clip
from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS, POSITIONS, ClipSpec
from nuwa.data.long_video_scores import score_long_video
from nuwa.data.object_reading import track_objects
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.generate import generate_tokens
from nuwa.model.nuwa import NuwaModel
from nuwa.model.sampling import SamplingOptions
from nuwa.model.transformer import Condition
from nuwa.quality.evaluation_tasks import ALL_TASKS, DEFAULT_TASKS, EVAL_SEED
from nuwa.quality.token_locality import token_locality
from nuwa.spec.generation_config import GenerationConfig


def default_options(
    task: str = "T2I", generation: GenerationConfig | None = None
) -> SamplingOptions:
    """The sampling scores are reported with: the model's sampling defaults for ``task`` (its
    ``generation_config.json``, ``generation``), else the built-in ones (temperature 0.5,
    top-k 16, guidance 2); seed 0."""
    return SamplingOptions(**(generation or GenerationConfig()).for_task(task), seed=0)


class Evaluator:
    """Generates and scores one task over a held-out dataset with the torch reference loop."""

    def __init__(
        self,
        model: NuwaModel,
        dataset: SyntheticVideoDataset,
        options: SamplingOptions,
        batch_size: int = 16,
        v2v_given: int = 2,
        progress: bool = False,
    ) -> None:
        self.model = model
        self.ds = dataset
        self.options = options
        self.batch_size = batch_size
        self.v2v_given = v2v_given
        self.progress = progress
        self.frames = model.config.transformer.frames

    def set_options(self, options: SamplingOptions) -> None:
        """Sample the following tasks with ``options``."""
        self.options = options

    # ---- conditions ------------------------------------------------------------------------

    def _text(self, prompts: list[str]) -> tuple[Condition, Condition | None]:
        cond = self.model.text_condition(prompts, allow_empty=True)
        uncond = None
        if self.options.uses_guidance:
            uncond = self.model.text_condition([""] * len(prompts), allow_empty=True)
        return cond, uncond

    def _sketch(self, sketch: np.ndarray) -> tuple[Condition, Condition | None]:
        cond = self.model.sketch_condition(sketch)
        uncond = None
        if self.options.uses_guidance:
            uncond = self.model.blank_sketch_condition(sketch.shape[0], sketch.shape[1])
        return cond, uncond

    def _generate(
        self,
        conds: tuple[Condition, Condition | None],
        frames: int,
        known: Tensor | None = None,
        known_mask: Tensor | None = None,
    ) -> np.ndarray:
        cond, uncond = conds
        tokens = generate_tokens(
            self.model.transformer,
            cond,
            frames,
            self.options,
            uncond=uncond,
            known=known,
            known_mask=known_mask,
            progress=self.progress,
        )
        return self.model.codes_to_frames(tokens).cpu().numpy()

    def _token_mask(self, keep: np.ndarray) -> Tensor:
        """Pixel keep-mask ``(B, T, S, S)`` -> token mask ``(B, T*h*w)``: a token is forced only
        when every pixel of its patch is kept."""
        f = self.model.config.vqgan.downsample
        b, t, s, _ = keep.shape
        patches = keep.reshape(b, t, s // f, f, s // f, f).all(axis=(3, 5))
        return torch.from_numpy(patches.reshape(b, -1)).to(self.model.device)

    def text_to_video(self, prompts: list[str]) -> np.ndarray:
        """``uint8 (B, frames, S, S, 3)`` videos sampled for ``prompts`` with the options."""
        return self._generate(self._text(prompts), self.frames)

    def sketch_to_images(self, sketches: np.ndarray) -> np.ndarray:
        """``uint8 (B, S, S, 3)`` images sampled for class-map sketches ``(B, S, S)``."""
        return self._generate(self._sketch(sketches[:, None]), 1)[:, 0]

    # ---- tasks -----------------------------------------------------------------------------

    def run(self, task: str, indices: Sequence[int]) -> list[dict[str, Any]]:
        fn: Callable[[Sequence[int]], list[dict[str, Any]]] = getattr(self, f"_task_{task}")
        return fn(indices)

    def _task_T2I(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        samples = [self.ds.image_sample(i) for i in idx]
        images = self._generate(self._text([s.caption for s in samples]), 1)
        pairs = zip(images, samples, strict=True)
        return [qc.score_text_to_image(im[0], s.spec) for im, s in pairs]

    def _task_T2V(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        clips = [self.ds[i] for i in idx]
        videos = self.text_to_video([c.caption for c in clips])
        return [qc.score_text_to_video(v, c.spec) for v, c in zip(videos, clips, strict=True)]

    def open_captions(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        """T2V on clips ``idx`` captioned without start positions, and for the even indices
        without the motion too; scores the attributes named, and "drawn" (an object at all:
        a model trained on full captions only can draw nothing for these)."""
        named_motion = [i % 2 == 1 for i in idx]
        specs = [self.ds.spec(i) for i in idx]
        captions = [
            sp.caption(motion=m, position=False) for sp, m in zip(specs, named_motion, strict=True)
        ]
        videos = self.text_to_video(captions)
        scores = []
        for video, spec, motion in zip(videos, specs, named_motion, strict=True):
            named = ("shape", "colour", "direction") if motion else ("shape", "colour")
            drawn = len(track_objects(video)) > 0
            scores.append({**qc.score_text_to_video(video, spec, named), "drawn": drawn})
        return scores

    def _task_S2I(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        sketches = np.stack([self.ds.image_sample(i).sketch for i in idx])
        images = self.sketch_to_images(sketches)
        return [qc.score_sketch(im, sk) for im, sk in zip(images, sketches, strict=True)]

    def _task_S2V(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        sketches = np.stack([self.ds[i].sketch for i in idx])
        videos = self._generate(self._sketch(sketches), self.frames)
        return [qc.score_sketch(v, sk) for v, sk in zip(videos, sketches, strict=True)]

    def _task_V2V(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        clips = [self.ds[i] for i in idx]
        codes = self.model.frames_to_codes(np.stack([c.frames for c in clips]))
        b = len(clips)
        known = codes.reshape(b, -1)
        mask = torch.zeros_like(known, dtype=torch.bool)
        mask[:, : self.v2v_given * self.model.config.transformer.tokens_per_frame] = True
        videos = self._generate(self._text([""] * b), self.frames, known, mask)
        return [
            {"position_error": qc.position_error(v, c, first_k=self.v2v_given)}
            for v, c in zip(videos, clips, strict=True)
        ]

    def _edit(
        self, sources: np.ndarray, keep: np.ndarray, prompts: list[str], frames: int
    ) -> np.ndarray:
        codes = self.model.frames_to_codes(sources[:, :frames])
        known = codes.reshape(len(prompts), -1)
        mask = self._token_mask(keep[:, :frames])
        return self._generate(self._text(prompts), frames, known, mask)

    def _task_I2I(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        clips = [self.ds[i] for i in idx]
        src = np.stack([c.frames[:1] for c in clips])
        s = src.shape[2]
        keep = np.ones(src.shape[:-1], dtype=bool)
        keep[..., s // 2 :] = False  # complete the right half
        out = self._edit(src, keep, [""] * len(clips), 1)
        return [
            qc.score_edit(o[0], c.frames[0], k[0], c.spec)
            for o, c, k in zip(out, clips, keep, strict=True)
        ]

    def _edits(self, idx: Sequence[int], frames: int) -> list[dict[str, Any]]:
        edits = [self.ds.edit_sample(i) for i in idx]
        src = np.stack([e.source.frames for e in edits])
        keep = np.stack([e.keep for e in edits])
        prompts = [e.edit_text if frames > 1 else e.target.spec.caption(False) for e in edits]
        out = self._edit(src, keep, prompts, frames)
        scores = []
        for o, e in zip(out, edits, strict=True):
            gen = o if frames > 1 else o[0]
            source = e.source.frames[:frames] if frames > 1 else e.source.frames[0]
            kept = e.keep[:frames] if frames > 1 else e.keep[0]
            scores.append(qc.score_edit(gen, source, kept, e.target.spec, e.edited_object))
        return scores

    # ---- generation past the trained length ------------------------------------------------

    def long_videos(self, task: str, clips: Sequence[Clip], frames: int) -> tuple[np.ndarray, int]:
        """``uint8 (B, frames, S, S, 3)`` generated for ``clips`` by ``task`` ("V2V": the empty
        prompt and the clips' first ``v2v_given`` frames; "T2V": the clips' captions), and how
        many leading frames were given (not scored for motion)."""
        b = len(clips)
        if task == "T2V":
            return self._generate(self._text([c.caption for c in clips]), frames), 0
        if task != "V2V":
            raise ValueError(f"long generation scores {LONG_TASKS}, not {task!r}")
        if frames <= self.v2v_given:
            raise ValueError(
                f"V2V over {frames} frames predicts nothing after {self.v2v_given} given frames"
            )
        per_frame = self.model.config.transformer.tokens_per_frame
        given = self.v2v_given * per_frame
        codes = self.model.frames_to_codes(np.stack([c.frames[: self.v2v_given] for c in clips]))
        known = torch.zeros(b, frames * per_frame, dtype=torch.long, device=self.model.device)
        known[:, :given] = codes.reshape(b, -1)
        mask = torch.zeros_like(known, dtype=torch.bool)
        mask[:, :given] = True
        return self._generate(self._text([""] * b), frames, known, mask), self.v2v_given

    def long_generation(
        self, task: str, idx: Sequence[int], frames: int
    ) -> list[dict[str, dict[str, float | bool]]]:
        """``task`` (V2V or T2V) over ``frames`` frames for held-out clips ``idx``, scored per
        block of the trained number of frames against each clip's ground truth over as many
        frames (``SyntheticVideoDataset.long_clip``): per sample ``{block name: scores}``
        (:func:`long_video_scores.score_long_video`)."""
        clips = [self.ds.long_clip(i, frames) for i in idx]
        videos, given = self.long_videos(task, clips, frames)
        return [
            score_long_video(v, c, given, block=self.frames)
            for v, c in zip(videos, clips, strict=True)
        ]

    def _task_TI2I(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        return self._edits(idx, 1)

    def _task_TV2V(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        return self._edits(idx, self.frames)


LONG_TASKS = ("V2V", "T2V")  # the tasks scored past the trained length (``long_frames``)


def check_long_frames(
    long_frames: Sequence[int], tasks: Sequence[str], trained: int, v2v_given: int
) -> list[str]:
    """The tasks ``long_frames`` applies to (those of :data:`LONG_TASKS` in ``tasks``); a clear
    error for lengths that are not longer than the trained ``trained`` frames or for no such
    task."""
    if not long_frames:
        return []
    bad = [f for f in long_frames if not isinstance(f, int) or f <= trained]
    if bad:
        raise ValueError(
            f"long frame counts must be whole numbers above the trained {trained} frames, got {bad}"
        )
    chosen = [t for t in tasks if t in LONG_TASKS]
    if not chosen:
        raise ValueError(
            f"long frame counts score {' and '.join(LONG_TASKS)}: add one to the tasks"
        )
    if "V2V" in chosen and v2v_given >= trained:
        raise ValueError(f"V2V gives {v2v_given} frames, the model was trained on {trained}")
    return chosen


def summarise_blocks(
    scores: Sequence[Mapping[str, Mapping[str, float | bool]]],
) -> dict[str, dict[str, float]]:
    """Per-sample ``{block: scores}`` (:meth:`Evaluator.long_generation`) -> one
    :func:`quality_checker.summarise` row per block, in frame order."""
    blocks = list(dict.fromkeys(b for s in scores for b in s))
    return {b: qc.summarise([s[b] for s in scores if b in s]) for b in blocks}


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


CAPTION_GROUPS = ("one shape", "one digit", "two shapes", "two with a digit")


def caption_group(spec: ClipSpec) -> str:
    """Which of :data:`CAPTION_GROUPS` a clip's caption falls in: one object or two, and whether
    a digit is among them (the ten glyphs are T2V's hard part, MODEL_CARD "Where T2V fails")."""
    digit = any(o.kind == "digit" for o in spec.objects)
    if len(spec.objects) == 1:
        return CAPTION_GROUPS[1] if digit else CAPTION_GROUPS[0]
    return CAPTION_GROUPS[3] if digit else CAPTION_GROUPS[2]


def by_caption_group(
    scores: Sequence[Mapping[str, float | bool]], specs: Sequence[ClipSpec]
) -> dict[str, dict[str, float]]:
    """Per-sample T2V ``scores`` of the clips ``specs`` summarised per :func:`caption_group`
    (groups with no sample left out)."""
    groups: dict[str, list[Mapping[str, float | bool]]] = {}
    for score, spec in zip(scores, specs, strict=True):
        groups.setdefault(caption_group(spec), []).append(score)
    return {g: qc.summarise(groups[g]) for g in CAPTION_GROUPS if g in groups}


CAPTION_CHOICE_ATTRIBUTES = ("colour", "position", "direction")


def rival_values(spec: ClipSpec, attribute: str) -> list[str]:
    """The values of the first object's ``attribute`` that a caption could name for ``spec``:
    every colour / start position another object does not have, every direction allowed from
    the first object's start."""
    first, rest = spec.objects[0], spec.objects[1:]
    if attribute == "direction":
        return list(ALLOWED_DIRECTIONS[first.position])
    values = list(COLOURS if attribute == "colour" else POSITIONS)
    return [v for v in values if all(getattr(o, attribute) != v for o in rest)]


def with_first(spec: ClipSpec, attribute: str, value: str) -> ClipSpec:
    """``spec`` with its first object's ``attribute`` set to ``value`` (a rival caption's clip;
    a new start position also takes a direction allowed from there)."""
    first, rest = spec.objects[0], tuple(spec.objects[1:])
    if attribute == "position":  # a direction allowed from the new start
        changed = replace(first, position=value, direction=ALLOWED_DIRECTIONS[value][0])
    else:
        changed = replace(first, **{attribute: value})
    return replace(spec, objects=(changed, *rest))


def caption_choice_chance(dataset: SyntheticVideoDataset, n: int, attribute: str) -> float:
    """The score of a model that ignores the caption: the mean of 1 / the number of rivals."""
    spec = (lambda i: dataset.image_sample(i).spec) if attribute != "direction" else dataset.spec
    return float(np.mean([1 / len(rival_values(spec(i), attribute)) for i in range(n)]))


@torch.no_grad()
def caption_choice_accuracy(
    model: NuwaModel, dataset: SyntheticVideoDataset, n: int, attribute: str = "colour"
) -> float:
    """Does the model read the caption? For each of ``n`` held-out samples, the captions that
    differ from the true one only in the first object's ``attribute`` compete: the one under
    which the transformer gives the sample's tokens the lowest teacher-forced cross-entropy is
    the model's choice. "colour" and "position" score first frames under motion-free captions
    (chance 1/6 and 1/5), "direction" whole clips under captions with motion (chance
    :func:`caption_choice_chance`, about 0.46: corners allow two directions, the centre four).
    Returns the share of right choices.

    Deterministic (no sampling), so a test can rely on it; generation-based scores are in
    :func:`evaluate`."""
    if attribute not in CAPTION_CHOICE_ATTRIBUTES:
        raise ValueError(f"attribute must be one of {CAPTION_CHOICE_ATTRIBUTES}, got {attribute!r}")
    tr = model.transformer
    motion = attribute == "direction"
    right = 0
    for i in range(n):
        if motion:
            spec, frames = dataset.spec(i), dataset[i].frames[None]
        else:
            sample = dataset.image_sample(i)
            spec, frames = sample.spec, sample.image[None, None]
        values = rival_values(spec, attribute)
        captions = [with_first(spec, attribute, v).caption(motion=motion) for v in values]
        target = model.frames_to_codes(frames).expand(len(values), -1, -1, -1)
        logits = tr(tr.encode_text(model.text_ids(captions)), target)
        nll = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), target.flatten(), reduction="none"
        )
        choice = values[int(nll.view(len(values), -1).mean(1).argmin())]
        right += int(choice == getattr(spec.objects[0], attribute))
    return right / n


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
    if backend != "torch" and model_dir is None:
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
    evaluator: Evaluator
    if backend == "torch":
        evaluator = Evaluator(model, ds, first, batch_size, v2v_given)
    else:  # the same prompts and scoring, generated by a nuwa.runtime backend
        from nuwa.quality.runtime_evaluation import RuntimeEvaluator

        assert model_dir is not None
        evaluator = RuntimeEvaluator(
            model, ds, first, batch_size, v2v_given, model_dir, backend, precision
        )
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


def format_table(table: dict[str, Any]) -> str:
    """A plain-text table of the headline metric per task."""
    headline = {
        "T2I": "all",
        "T2V": "all",
        "S2I": "iou",
        "S2V": "iou",
        "V2V": "position_error",
        "I2I": "psnr_kept",
        "TI2I": "all",
        "TV2V": "all",
    }
    lines = [f"VQ-GAN reconstruction PSNR: {table['vqgan_psnr']:.2f} dB"]
    if "vqgan_token_locality" in table:
        loc = table["vqgan_token_locality"]
        lines.append(
            f"VQ-GAN tokens changed between frames: {loc['near_changed']:.3f} near objects, "
            f"{loc['far_changed']:.3f} far from them"
        )
    for task, row in table["tasks"].items():
        key = headline[task]
        extra = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in (key, "n"))
        lines.append(f"{task:5s} {key} {row[key]:.3f}  (n={int(row['n'])}; {extra})")
    if "t2v_by_caption" in table:
        parts = [
            f"{g} {row['all']:.3f} (n={int(row['n'])}; shape {row['shape']:.3f}, first frame "
            f"{row['first_frame_shape']:.3f})"
            for g, row in table["t2v_by_caption"].items()
        ]
        lines.append("T2V all by caption: " + ", ".join(parts))
    if "t2v_open_captions" in table:
        row = table["t2v_open_captions"]
        extra = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("drawn", "n"))
        lines.append(
            f"T2V captions without position (half without motion too): drawn "
            f"{row['drawn']:.3f}  (n={int(row['n'])}; {extra})"
        )
    for task, runs in table.get("long", {}).items():
        for frames, blocks in runs.items():
            parts = [
                f"{name}: kept {row['kept']:.3f}"
                + (
                    f", position error {row['position_error']:.2f} px"
                    if "position_error" in row
                    else ""
                )
                + f", speed {row['speed']:.2f} px/frame"
                + (f", area {row['area_ratio']:.2f}" if "area_ratio" in row else "")
                for name, row in blocks.items()
                if name != "seconds"
            ]
            lines.append(f"{task} over {frames} frames: " + "; ".join(parts))
    if "caption_choice" in table:
        c = table["caption_choice"]
        chance = c.get("chance", {"colour": 1 / 6, "position": 0.2})
        parts = [f"{a} {c[a]:.3f} (chance {chance[a]:.3f})" for a in chance if a in c]
        lines.append("caption choice: " + ", ".join(parts))
    return "\n".join(lines)
