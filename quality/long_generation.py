"""Generation past the trained length (``nuwa evaluate --long-frames 16,32``): one concept, which
tasks and frame counts it scores and how per-block scores are summarised.

V2V and T2V are generated past the trained length (the window slides) and scored per block of
the trained number of frames (:meth:`nuwa.quality.evaluator.Evaluator.long_generation`,
:func:`nuwa.data.long_video_scores.score_long_video`): object kept (shape, colour, size) and
motion continued (position error against the clip's ground truth extended by bouncing off the
borders, ``SyntheticVideoDataset.long_clip``; speed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nuwa.data import quality_checker as qc

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
