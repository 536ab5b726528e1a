"""Scores of a long generation (DESIGN §10): V2V or T2V past the trained length, scored per block
of frames against the ground truth extended by bouncing (``SyntheticVideoDataset.long_clip``):
is the object kept (shape, colour, size) and does the motion continue (position error, speed).
Objects are read as :mod:`nuwa.data.object_reading` reads them and matched to the spec as
:mod:`nuwa.data.quality_checker` matches them.
"""

from __future__ import annotations

import math

import numpy as np

from nuwa.data.clip_rendering import Clip, object_templates
from nuwa.data.object_reading import (
    COLOUR_NAMES,
    centroid,
    check_frames,
    colour_labels,
    colour_mask,
    track_objects,
)
from nuwa.data.quality_checker import match_objects, position_errors

LONG_BLOCK = 8  # frames per block of a long generation's scores (the demo's trained length)
SIZE_TOLERANCE = 0.25  # an object keeps its size when its area is within 25% of the truth's
KEPT_ATTRIBUTES = ("shape", "colour")


def block_name(start: int, stop: int) -> str:
    """``"frames 9-16"`` for the frames ``start..stop-1`` (counted from 1, as users count)."""
    return f"frames {start + 1}-{stop}"


def frame_blocks(frames: int, block: int = LONG_BLOCK) -> list[tuple[int, int]]:
    """``[(0, 8), (8, 16), ...]``: ``frames`` cut into blocks of ``block`` (the last may be
    shorter)."""
    if frames < 1 or block < 1:
        raise ValueError(f"frames and block must be >= 1, got {frames} and {block}")
    return [(a, min(a + block, frames)) for a in range(0, frames, block)]


def whole_in_truth(clip: Clip) -> np.ndarray:
    """``(T, N)`` bool: where ``clip`` shows every pixel of object ``k``'s template (not
    clipped by a border, not hidden behind the other object, as bouncing objects can be)."""
    size = clip.frames.shape[2]
    templates = object_templates(size)
    areas = np.array([templates[o.label].sum() for o in clip.spec.objects])
    ids = np.arange(1, len(areas) + 1)
    visible = (clip.instances[:, None] == ids[None, :, None, None]).sum(axis=(2, 3))
    return visible == areas[None]


def score_long_video(
    frames: np.ndarray, clip: Clip, first_k: int = 0, block: int = LONG_BLOCK
) -> dict[str, dict[str, float | bool]]:
    """A long generation (V2V or T2V past the trained length) scored per block of ``block``
    frames against ``clip``, its ground truth over as many frames (``SyntheticVideoDataset.
    long_clip``: the objects bounce off the borders). Per block (``block_name``):

    - object kept: "shape" and "colour" (every object's, read from the block's frames alone),
      "area_ratio" (the generated object's pixels over the truth's, in the block, mean over
      objects) and "size" (every object's ratio within ``1 ± SIZE_TOLERANCE``); "kept" is all
      three. Area, position and speed are read only in the frames where the truth shows the
      whole object (:func:`whole_in_truth`: two bouncing objects can cross);
    - motion continued: "position_error" (px, as :func:`quality_checker.position_error`, over
      the block's frames from ``first_k`` on: the given frames of a prediction are not scored;
      absent for a block of given frames only) and "speed" (px per frame the generated
      objects' centroids move, mean over objects and frame pairs; the truth's is about 3 at
      64 px, 0 for a stall).

    Ground-truth frames score shape, colour, size and kept right and position error 0."""
    frames = check_frames(frames, 4)
    n_t, size = frames.shape[0], frames.shape[2]
    if clip.centres.shape[0] != n_t:
        raise ValueError(f"{n_t} frames against a ground truth of {clip.centres.shape[0]}")
    whole = whole_in_truth(clip)  # (T, N): frames where the truth shows all of an object
    errors = np.where(whole, position_errors(frames, clip), np.nan)
    labels = np.stack([colour_labels(f) for f in frames])
    out: dict[str, dict[str, float | bool]] = {}
    for start, stop in frame_blocks(n_t, block):
        tracks = track_objects(frames[start:stop])
        pairs = match_objects(tracks, clip.spec, video=False, named=KEPT_ATTRIBUTES)
        row: dict[str, float | bool] = {k: all(a[k] for _, a in pairs) for k in KEPT_ATTRIBUTES}
        ratios, speeds = [], []
        for k, obj in enumerate(clip.spec.objects):
            colour = COLOUR_NAMES.index(obj.colour)
            scored = [t for t in range(start, stop) if whole[t, k]]
            if not scored:
                continue
            masks = {t: colour_mask(labels[t], colour, size) for t in scored}
            truth = int(sum((clip.instances[t] == k + 1).sum() for t in scored))
            ratios.append(sum(int(m.sum()) for m in masks.values()) / truth)
            steps = [
                math.hypot(b[0] - a[0], b[1] - a[1])
                for t in scored
                if t + 1 in masks and masks[t].any() and masks[t + 1].any()
                for a, b in [(centroid(masks[t]), centroid(masks[t + 1]))]
            ]
            if steps:
                speeds.append(float(np.mean(steps)))
        if ratios:  # an object hidden behind the other for a whole block is not scored
            row["area_ratio"] = float(np.mean(ratios))
            row["size"] = all(abs(r - 1) <= SIZE_TOLERANCE for r in ratios)
        row["kept"] = bool(row["shape"] and row["colour"] and row.get("size", True))
        block_errors = errors[max(start, first_k) : stop]
        block_errors = block_errors[~np.isnan(block_errors)]
        if block_errors.size:
            row["position_error"] = float(np.mean(block_errors))
        row["speed"] = float(np.mean(speeds)) if speeds else 0.0
        out[block_name(start, stop)] = row
    return out
