"""Gate arithmetic: every gated checker score, its paired standard error and its verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nuwa.calibration.task_samples import sampling_divergence, teacher_forced_agreement
from nuwa.quality.gate_config import GateConfig
from nuwa.quality.precision_gates import (
    compare_scores,
    format_scores,
    pool_streams,
    resolution_note,
)
from nuwa.runtime.sampler import SamplingOptions


def test_compare_scores_by_hand() -> None:
    ref = [{"all": True, "colour": True}, {"all": False, "colour": True}, {"all": True}]
    cand = [{"all": True, "colour": False}, {"all": False, "colour": True}, {"all": True}]
    out = compare_scores(ref, cand, ("all", "colour", "direction"), GateConfig())
    assert set(out) == {"all", "colour"}  # no sample has "direction"
    assert out["all"] == {"fp32": 0.6667, "candidate": 0.6667, "paired_stderr": 0.0, "ok": True}
    # colour: two samples have it, differences (-1, 0): s.d. sqrt(1/2), s.e. 1/2
    assert out["colour"]["fp32"] == 1.0 and out["colour"]["candidate"] == 0.5
    assert out["colour"]["paired_stderr"] == pytest.approx(0.5)
    assert out["colour"]["ok"] is False
    text = format_scores({"scores": out})
    assert "all 0.667 -> 0.667 (+-0.000) ok" in text and "colour 1.000 -> 0.500" in text
    assert text.endswith("FAILED")


def test_pool_streams_averages_each_sample_over_the_streams() -> None:
    first = [{"all": True, "position_error": 2.0}, {"all": False}]
    second = [{"all": False, "position_error": 4.0}, {"all": False, "iou": 0.5}]
    assert pool_streams([first, second]) == [
        {"all": 0.5, "position_error": 3.0},
        {"all": 0.0, "iou": 0.5},  # a score only one stream has is that stream's
    ]
    assert pool_streams([first]) == [{"all": 1.0, "position_error": 2.0}, {"all": 0.0}]
    with pytest.raises(ValueError, match="same samples"):
        pool_streams([first, second[:1]])
    with pytest.raises(ValueError, match="gate-streams"):
        GateConfig(streams=0).validate()
    with pytest.raises(ValueError, match="int8 kernels must be one of auto, matmulnbits, qdq"):
        GateConfig(int8_kernels="fast").validate()


@pytest.mark.parametrize(
    ("ref", "cand", "ok"),
    [((0.50, 0.50), (0.49, 0.50), True), ((0.50, 0.50), (0.45, 0.50), False)],
)
def test_accuracy_tolerance_is_in_points(ref, cand, ok) -> None:
    rows = lambda v: [{"iou": x} for x in v]  # noqa: E731
    out = compare_scores(rows(ref), rows(cand), ("iou",), GateConfig(tolerance_points=2.0))
    assert out["iou"]["ok"] is ok


def test_position_error_tolerance_is_in_pixels() -> None:
    ref = [{"position_error": 2.0}, {"position_error": 4.0}]
    worse = [{"position_error": 3.5}, {"position_error": 5.0}]
    cfg = GateConfig(tolerance_px=1.0)
    assert compare_scores(ref, worse, ("position_error",), cfg)["position_error"]["ok"] is False
    better = [{"position_error": 1.0}, {"position_error": 4.0}]
    row = compare_scores(ref, better, ("position_error",), cfg)["position_error"]
    assert row["ok"] is True and math.isclose(row["paired_stderr"], 0.5)


def test_sampling_divergence_is_the_total_variation_of_the_samplers() -> None:
    options = SamplingOptions(temperature=1.0, top_k=2)
    ref = np.log(np.array([[[0.5, 0.3, 0.2]], [[0.6, 0.4, 1e-9]]]))  # (P=2, B=1, V=3)
    assert sampling_divergence(ref, ref, options) == 0.0
    cand = ref.copy()
    cand[0, 0] = np.log([0.3, 0.5, 0.2])  # top-2 renormalised: (5/8, 3/8) vs (3/8, 5/8)
    expected = (0.5 * (2 / 8 + 2 / 8) + 0.0) / 2
    assert abs(sampling_divergence(ref, cand, options) - expected) < 1e-12
    disjoint = np.log(np.array([[[1e-9, 1e-9, 1.0]], [[1e-9, 1e-9, 1.0]]]))
    greedy = SamplingOptions(temperature=0.0)
    assert sampling_divergence(ref, disjoint, greedy) == 1.0  # argmax 0 vs 2 everywhere


def test_teacher_forced_agreement_counts_argmax_hits() -> None:
    logits = np.zeros((2, 3, 4))
    logits[0, :, 1] = 1.0
    logits[1, :, 2] = 1.0
    tokens = np.array([[1, 1, 0], [2, 3, 2]])
    assert teacher_forced_agreement(logits, tokens) == 4 / 6


def test_a_gate_too_small_to_tolerate_one_sample_says_so() -> None:
    assert GateConfig(count=32, streams=1).sample_points == 3.125
    assert GateConfig(count=8, streams=4).sample_points == 3.125  # a stream's generation
    note = resolution_note(GateConfig(count=32, streams=1))
    assert note is not None and "one changed generation is 3.1 points" in note
    assert "--gate-streams of 50 or more" in note
    assert resolution_note(GateConfig(count=50, streams=1)) is None
    assert resolution_note(GateConfig(count=13, streams=4)) is None
    assert resolution_note(GateConfig()) is None  # the defaults tolerate one changed generation
    assert resolution_note(GateConfig(count=10, streams=1, tolerance_points=10.0)) is None
