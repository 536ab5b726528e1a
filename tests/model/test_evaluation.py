"""The caption-choice evaluation (``caption_choice_accuracy``): deterministic, bounded, and a
clear error for an attribute it does not know. Its meaning is checked on the demo checkpoint
(tests/model/test_demo_checkpoint.py): above chance there, at chance before training. And the
T2V breakdown by kind of caption (``caption_group``)."""

from __future__ import annotations

import pytest
import torch

from nuwa.model.config import NuwaConfig
from nuwa.model.evaluation import (
    CAPTION_GROUPS,
    by_caption_group,
    caption_choice_accuracy,
    caption_choice_chance,
    caption_group,
    rival_values,
)
from nuwa.model.nuwa import NuwaModel
from nuwa.model.synthetic_data import ALLOWED_DIRECTIONS, COLOURS, SyntheticVideoDataset


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
