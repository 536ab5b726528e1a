"""The evaluation's tasks (DESIGN §10): one concept, what each task asks of a generator for
held-out samples and how its pixels are scored.

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

Also T2V under open captions (:meth:`Evaluator.open_captions`) and V2V / T2V past the trained
length (:meth:`Evaluator.long_generation`). Generation goes through a
:class:`~nuwa.quality.generation.PixelGenerator`: a runtime backend (any, torch included) for
``nuwa evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nuwa.data import quality_checker as qc
from nuwa.data.clip_rendering import Clip
from nuwa.data.long_video_scores import score_long_video
from nuwa.data.object_reading import track_objects
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.quality.generation import PixelGenerator, Request, RuntimeGenerator
from nuwa.quality.long_generation import LONG_TASKS
from nuwa.runtime.backends import Backend
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.token_mask import token_mask

Scores = list[dict[str, Any]]


class Evaluator:
    """Generates and scores one task at a time over a held-out dataset.

    ``generator``: a runtime backend (wrapped in a
    :class:`~nuwa.quality.generation.RuntimeGenerator`) or any
    :class:`~nuwa.quality.generation.PixelGenerator`. ``options``: the sampling of the tasks
    that follow (:meth:`set_options`)."""

    def __init__(
        self,
        generator: Backend | PixelGenerator,
        dataset: SyntheticVideoDataset,
        options: SamplingOptions,
        batch_size: int = 16,
        v2v_given: int = 2,
        progress: bool = False,
    ) -> None:
        if isinstance(generator, Backend):
            generator = RuntimeGenerator(generator, progress)
        self.generator = generator
        self.spec = generator.spec
        self.ds = dataset
        self.options = options
        self.batch_size = batch_size
        self.v2v_given = v2v_given
        self.frames = self.spec.frames  # the trained length: blocks of long videos

    def set_options(self, options: SamplingOptions) -> None:
        """Sample the following tasks with ``options``."""
        self.options = options

    # ---- generation ------------------------------------------------------------------------

    def generate(self, request: Request) -> np.ndarray:
        """``uint8 (B, frames, S, S, 3)`` for ``request``, sampled with the options."""
        return self.generator.generate(request, self.options)

    def text_to_video(self, prompts: list[str]) -> np.ndarray:
        """``uint8 (B, frames, S, S, 3)`` videos sampled for ``prompts`` with the options."""
        return self.generate(Request(self.frames, prompts=prompts))

    def sketch_to_images(self, sketches: np.ndarray) -> np.ndarray:
        """``uint8 (B, S, S, 3)`` images sampled for class-map sketches ``(B, S, S)``."""
        return self.generate(Request(1, sketch=sketches[:, None]))[:, 0]

    def forced_request(
        self, prompts: list[str], frames: int, codes: np.ndarray, kept: np.ndarray
    ) -> Request:
        """A text request of ``frames`` frames forcing ``codes (B, frames, h, w)`` where the
        token mask ``kept (B, frames, h, w)`` is set."""
        b = len(prompts)
        return Request(
            frames, prompts=prompts, known=codes.reshape(b, -1), known_mask=kept.reshape(b, -1)
        )

    def kept_tokens(self, keep: np.ndarray) -> np.ndarray:
        """Pixel keep-mask ``(B, T, S, S)`` -> token mask ``(B, T, h, w)``: a token is forced only
        when every pixel of its patch is kept (:mod:`nuwa.spec.token_mask`)."""
        return ~token_mask(~keep, (self.spec.grid_h, self.spec.grid_w))

    # ---- tasks -----------------------------------------------------------------------------

    def run(self, task: str, indices: Sequence[int]) -> Scores:
        """Scores of ``task`` (one of the module docstring's table) for samples ``indices``."""
        runs = {
            "T2I": self.text_to_image_scores,
            "T2V": self.text_to_video_scores,
            "S2I": self.sketch_to_image_scores,
            "S2V": self.sketch_to_video_scores,
            "V2V": self.video_prediction_scores,
            "I2I": self.completion_scores,
            "TI2I": lambda idx: self.edit_scores(idx, 1),
            "TV2V": lambda idx: self.edit_scores(idx, self.frames),
        }
        if task not in runs:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(runs)}")
        return runs[task](indices)

    def text_to_image_scores(self, idx: Sequence[int]) -> Scores:
        samples = [self.ds.image_sample(i) for i in idx]
        images = self.generate(Request(1, prompts=[s.caption for s in samples]))
        pairs = zip(images, samples, strict=True)
        return [qc.score_text_to_image(im[0], s.spec) for im, s in pairs]

    def text_to_video_scores(self, idx: Sequence[int]) -> Scores:
        clips = [self.ds[i] for i in idx]
        videos = self.text_to_video([c.caption for c in clips])
        return [qc.score_text_to_video(v, c.spec) for v, c in zip(videos, clips, strict=True)]

    def open_captions(self, idx: Sequence[int]) -> Scores:
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

    def sketch_to_image_scores(self, idx: Sequence[int]) -> Scores:
        sketches = np.stack([self.ds.image_sample(i).sketch for i in idx])
        images = self.sketch_to_images(sketches)
        return [qc.score_sketch(im, sk) for im, sk in zip(images, sketches, strict=True)]

    def sketch_to_video_scores(self, idx: Sequence[int]) -> Scores:
        sketches = np.stack([self.ds[i].sketch for i in idx])
        videos = self.generate(Request(self.frames, sketch=sketches))
        return [qc.score_sketch(v, sk) for v, sk in zip(videos, sketches, strict=True)]

    def video_prediction_scores(self, idx: Sequence[int]) -> Scores:
        clips = [self.ds[i] for i in idx]
        codes = self.generator.frames_to_codes(np.stack([c.frames for c in clips]))
        kept = np.zeros(codes.shape, dtype=bool)
        kept[:, : self.v2v_given] = True
        videos = self.generate(self.forced_request([""] * len(clips), self.frames, codes, kept))
        return [
            {"position_error": qc.position_error(v, c, first_k=self.v2v_given)}
            for v, c in zip(videos, clips, strict=True)
        ]

    def edit(
        self, sources: np.ndarray, keep: np.ndarray, prompts: list[str], frames: int
    ) -> np.ndarray:
        """``sources (B, >=frames, S, S, 3)`` regenerated for ``prompts`` where the pixel
        keep-mask ``keep (B, >=frames, S, S)`` is not set (whole tokens kept)."""
        codes = self.generator.frames_to_codes(sources[:, :frames])
        kept = self.kept_tokens(keep[:, :frames])
        return self.generate(self.forced_request(prompts, frames, codes, kept))

    def completion_scores(self, idx: Sequence[int]) -> Scores:
        clips = [self.ds[i] for i in idx]
        src = np.stack([c.frames[:1] for c in clips])
        s = src.shape[2]
        keep = np.ones(src.shape[:-1], dtype=bool)
        keep[..., s // 2 :] = False  # complete the right half
        out = self.edit(src, keep, [""] * len(clips), 1)
        return [
            qc.score_edit(o[0], c.frames[0], k[0], c.spec)
            for o, c, k in zip(out, clips, keep, strict=True)
        ]

    def edit_scores(self, idx: Sequence[int], frames: int) -> Scores:
        """TI2I (``frames`` 1: the target's caption) or TV2V (the edit text over every frame)."""
        edits = [self.ds.edit_sample(i) for i in idx]
        src = np.stack([e.source.frames for e in edits])
        keep = np.stack([e.keep for e in edits])
        prompts = [e.edit_text if frames > 1 else e.target.spec.caption(False) for e in edits]
        out = self.edit(src, keep, prompts, frames)
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
            return self.generate(Request(frames, prompts=[c.caption for c in clips])), 0
        if task != "V2V":
            raise ValueError(f"long generation scores {LONG_TASKS}, not {task!r}")
        if frames <= self.v2v_given:
            raise ValueError(
                f"V2V over {frames} frames predicts nothing after {self.v2v_given} given frames"
            )
        given = self.generator.frames_to_codes(
            np.stack([c.frames[: self.v2v_given] for c in clips])
        )
        codes = np.zeros((b, frames, *given.shape[2:]), dtype=np.int64)
        codes[:, : self.v2v_given] = given
        kept = np.zeros(codes.shape, dtype=bool)
        kept[:, : self.v2v_given] = True
        return self.generate(self.forced_request([""] * b, frames, codes, kept)), self.v2v_given

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
