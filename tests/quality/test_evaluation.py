"""The caption-choice evaluation (``caption_choice_accuracy``): deterministic, bounded, and a
clear error for an attribute it does not know. Its meaning is checked on the demo checkpoint
(tests/model/test_demo_checkpoint.py): above chance there, at chance before training. And the
T2V breakdown by kind of caption (``caption_group``). And generation past the trained length:
the ground truth extended (objects bounce off the borders), scored per block — perfectly on the
ground truth, not on a stall, a shrink or a wrong colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nuwa.data.clip_rendering import Clip, object_side, object_top_left, reflect
from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS
from nuwa.data.long_video_scores import frame_blocks, score_long_video
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.quality.caption_choice import (
    CAPTION_GROUPS,
    by_caption_group,
    caption_choice_accuracy,
    caption_choice_chance,
    caption_group,
    rival_values,
)
from nuwa.quality.evaluator import Evaluator
from nuwa.quality.long_generation import LONG_TASKS, check_long_frames, summarise_blocks
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.config import NuwaConfig

from .torch_reference import TorchReference


@pytest.fixture(scope="module")
def model() -> NuwaModel:
    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 112  # the dataset's two-object captions
    torch.manual_seed(0)
    return NuwaModel(cfg).eval()


def test_caption_choice_is_deterministic_and_bounded(model: NuwaModel) -> None:
    ds = SyntheticVideoDataset(
        3, seed=7, frames=model.config.transformer.frames, size=16, split="heldout"
    )
    for attribute in ("colour", "position", "direction"):
        first = caption_choice_accuracy(model, ds, 3, attribute)
        assert first == caption_choice_accuracy(model, ds, 3, attribute)
        assert first in (0.0, 1 / 3, 2 / 3, 1.0)


def test_unknown_attribute_is_a_clear_error(model: NuwaModel) -> None:
    ds = SyntheticVideoDataset(1, seed=7, frames=1, size=16, split="heldout")
    with pytest.raises(ValueError, match="attribute must be one of"):
        caption_choice_accuracy(model, ds, 1, "shape")


def test_chance_is_the_mean_share_of_one_rival() -> None:
    ds = SyntheticVideoDataset(6, seed=3, frames=8, split="heldout")
    by_hand = [1 / len(ALLOWED_DIRECTIONS[ds.spec(i).objects[0].position]) for i in range(6)]
    assert caption_choice_chance(ds, 6, "direction") == pytest.approx(sum(by_hand) / 6)
    for i in range(6):  # colours: every colour but another object's
        spec = ds.image_sample(i).spec
        assert len(rival_values(spec, "colour")) == len(COLOURS) - (len(spec.objects) - 1)
        assert spec.objects[0].colour in rival_values(spec, "colour")


def test_caption_groups_split_the_t2v_samples() -> None:
    ds = SyntheticVideoDataset(40, seed=3, split="heldout")
    specs = [ds.spec(i) for i in range(40)]
    groups = [caption_group(s) for s in specs]
    assert set(groups) == set(CAPTION_GROUPS)  # 40 clips hold every kind of caption
    for spec, group in zip(specs, groups, strict=True):
        assert group.startswith("one" if len(spec.objects) == 1 else "two")
        assert ("digit" in group) == any(o.kind == "digit" for o in spec.objects)
    scores = [{"all": i % 2 == 0} for i in range(40)]
    table = by_caption_group(scores, specs)
    assert sum(row["n"] for row in table.values()) == 40
    for group, row in table.items():
        mine = [i % 2 == 0 for i, g in enumerate(groups) if g == group]
        assert row["all"] == pytest.approx(sum(mine) / len(mine))


# ---- generation past the trained length: ground truth extended, scored per block ------------


@pytest.fixture(scope="module")
def long_clips() -> list[Clip]:
    ds = SyntheticVideoDataset(6, seed=3, split="heldout")
    return [ds.long_clip(i, 24) for i in range(6)]


def test_long_clips_bounce_and_keep_the_dataset_clip() -> None:
    ds = SyntheticVideoDataset(12, seed=3, split="heldout")
    side = object_side(64)
    for i in range(12):
        clip = ds.long_clip(i, 40)
        assert np.array_equal(clip.frames[:8], ds[i].frames)  # the same first 8 frames
        assert np.array_equal(clip.sketch[:8], ds[i].sketch)
        for k, obj in enumerate(clip.spec.objects):
            corners = np.array([object_top_left(obj, t, side, 64, "bounce") for t in range(40)])
            assert corners.min() >= 0 and corners.max() <= 64 - side  # whole, in the frame
            steps = np.abs(np.diff(corners, axis=0)).sum(axis=1)
            assert set(steps.tolist()) <= {1, 2, 3} and (steps == 3).mean() > 0.8  # 3 px a frame
            # (less in a frame that reaches a wall and turns back)
            line = np.array([object_top_left(obj, t, side, 64) for t in range(40)])
            assert (line.min() < 0 or line.max() > 64 - side) and not np.array_equal(corners, line)
            assert np.isfinite(clip.centres[:, k]).all()  # always on screen
    assert [reflect(x, 10) for x in (-3, 0, 4, 10, 13, 20, 23, 40)] == [3, 0, 4, 10, 7, 0, 3, 0]
    with pytest.raises(ValueError, match="trajectory must be one of"):
        object_top_left(ds.spec(0).objects[0], 0, side, 64, "wrap")  # type: ignore[arg-type]


def test_ground_truth_long_clips_score_perfectly_per_block(long_clips: list[Clip]) -> None:
    for clip in long_clips:
        for first_k in (0, 2):
            scores = score_long_video(clip.frames, clip, first_k)
            assert list(scores) == ["frames 1-8", "frames 9-16", "frames 17-24"]
            for block, row in scores.items():
                assert row["shape"] and row["colour"] and row["size"] and row["kept"], block
                assert row["position_error"] == 0.0 and row["area_ratio"] == 1.0, block
                assert 2.5 <= row["speed"] <= 3.0, block  # 3 px a frame, less at a wall


def test_long_scores_catch_a_stall_a_shrink_and_a_wrong_colour(long_clips: list[Clip]) -> None:
    for clip in long_clips:
        stalled = clip.frames.copy()
        stalled[8:] = clip.frames[7]  # video prediction that stops after the trained length
        scores = score_long_video(stalled, clip, 2)
        assert scores["frames 1-8"]["position_error"] == 0.0
        assert scores["frames 9-16"]["position_error"] > 5 and scores["frames 9-16"]["speed"] == 0
        assert scores["frames 9-16"]["kept"]  # still whole: only the motion is lost
        shrunk = clip.frames.copy()
        shrunk[16:, :, ::2] = 0  # every other column gone: half the area
        scores = score_long_video(shrunk, clip)
        assert scores["frames 9-16"]["size"] and not scores["frames 17-24"]["size"]
        assert scores["frames 17-24"]["area_ratio"] < 0.6 and not scores["frames 17-24"]["kept"]
        recoloured = clip.frames.copy()
        recoloured[8:16] = np.roll(recoloured[8:16], 1, axis=-1)  # red -> green -> blue -> red
        scores = score_long_video(recoloured, clip)
        assert scores["frames 1-8"]["colour"] and scores["frames 17-24"]["colour"]
        assert not scores["frames 9-16"]["colour"] and not scores["frames 9-16"]["kept"]


def test_long_scores_check_their_input(long_clips: list[Clip]) -> None:
    clip = long_clips[0]
    with pytest.raises(ValueError, match="16 frames against a ground truth of 24"):
        score_long_video(clip.frames[:16], clip)
    assert frame_blocks(20, 8) == [(0, 8), (8, 16), (16, 20)]
    with pytest.raises(ValueError, match="frames must be >= 1"):
        SyntheticVideoDataset(1, split="heldout").long_clip(0, 0)


class GroundTruthEvaluator(Evaluator):
    """The evaluator with a perfect generator: long videos are the ground truth itself (the
    given V2V frames checked to be what the evaluator gives)."""

    def long_videos(self, task, clips, frames):  # type: ignore[no-untyped-def]
        given = self.v2v_given if task == "V2V" else 0
        return np.stack([c.frames for c in clips]), given


def test_long_generation_of_the_ground_truth_scores_perfectly(model: NuwaModel) -> None:
    ds = SyntheticVideoDataset(3, seed=3, frames=8, split="heldout")  # 64 px: the checker's size
    evaluator = GroundTruthEvaluator(
        TorchReference(model), ds, SamplingOptions(), batch_size=3, v2v_given=2
    )
    evaluator.frames = 8  # blocks of the demo's trained length (the tiny model trains 3)
    for task in LONG_TASKS:
        table = summarise_blocks(evaluator.long_generation(task, [0, 1, 2], 20))
        assert list(table) == ["frames 1-8", "frames 9-16", "frames 17-20"]
        for row in table.values():
            assert row["n"] == 3 and row["kept"] == 1.0 and row["position_error"] == 0.0


def test_long_generation_runs_the_tiny_model_past_its_trained_length(model: NuwaModel) -> None:
    from nuwa.runtime.backends.torch_backend import TorchBackend

    ds = SyntheticVideoDataset(2, seed=5, frames=3, size=16, split="heldout")
    backend = TorchBackend(model=model, device="cpu")  # through the runtime's decode loop
    evaluator = Evaluator(backend, ds, SamplingOptions(temperature=0.0), batch_size=2, v2v_given=1)
    clips = [ds.long_clip(i, 7) for i in range(2)]
    for task in LONG_TASKS:
        videos, given = evaluator.long_videos(task, clips, 7)
        assert videos.shape == (2, 7, 16, 16, 3) and given == (1 if task == "V2V" else 0)
        scores = evaluator.long_generation(task, [0, 1], 7)
        assert [list(s) for s in scores] == [["frames 1-3", "frames 4-6", "frames 7-7"]] * 2
    with pytest.raises(ValueError, match="predicts nothing after 1 given frames"):
        evaluator.long_videos("V2V", [c for c in clips], 1)
    with pytest.raises(ValueError, match="long generation scores"):
        evaluator.long_videos("T2I", clips, 7)


def test_long_frame_counts_are_checked_before_work() -> None:
    assert check_long_frames([], ["T2I"], 8, 2) == []
    assert check_long_frames([16, 32], ["T2I", "T2V", "V2V"], 8, 2) == ["T2V", "V2V"]
    with pytest.raises(ValueError, match=r"above the trained 8 frames, got \[8\]"):
        check_long_frames([16, 8], ["T2V"], 8, 2)
    with pytest.raises(ValueError, match="add one to the tasks"):
        check_long_frames([16], ["T2I", "S2V"], 8, 2)
