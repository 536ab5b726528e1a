"""Exact quality checker (DESIGN §10): scores generated pixels against the synthetic dataset's
ground truth (:mod:`nuwa.data.synthetic_data`), per task, from the objects
:mod:`nuwa.data.object_reading` reads off them (colour, shape, start region, motion; no learned
model).

Scores per task: ``score_text_to_image`` / ``score_text_to_video`` (T2I/T2V attribute accuracy),
``score_sketch`` (S2I/S2V mask IoU), ``position_error`` (V2V), ``psnr`` and ``score_edit``
(I2I/TI2I/TV2V), and ``summarise`` to average a list of scores into one table row. A long
generation's scores per block of frames are :mod:`nuwa.data.long_video_scores`'.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from nuwa.data.clip_rendering import Clip
from nuwa.data.clip_specs import ClipSpec, ObjectSpec
from nuwa.data.object_reading import (
    COLOUR_NAMES,
    Track,
    centroid,
    check_frames,
    colour_labels,
    colour_mask,
    first_frame_label,
    track_objects,
)
from nuwa.spec.sketch_palette import SKETCH_CLASSES

TEXT_ATTRIBUTES = ("shape", "colour", "position", "direction")  # "direction" for video only


# --------------------------------------------------------------------------- T2I / T2V


def _object_attributes(
    track: Track | None, obj: ObjectSpec, video: bool, named: Collection[str] = TEXT_ATTRIBUTES
) -> dict[str, bool]:
    if track is None:
        out = dict.fromkeys(TEXT_ATTRIBUTES, False)
    else:
        out = {
            "shape": track.label == obj.label,
            "colour": track.colour == obj.colour,
            "position": track.position == obj.position,
            "direction": track.direction == obj.direction,
        }
    out = {k: v for k, v in out.items() if k in named and (video or k != "direction")}
    out["all"] = all(out.values())
    return out


def check_named(named: Collection[str]) -> None:
    """A caption always names each object's shape and colour; it may leave the rest open."""
    unknown = set(named) - set(TEXT_ATTRIBUTES)
    if unknown or not {"shape", "colour"} <= set(named):
        raise ValueError(
            f"named attributes must include shape and colour, from {TEXT_ATTRIBUTES}; "
            f"got {sorted(named)}"
        )


def match_objects(
    tracks: Sequence[Track], spec: ClipSpec, video: bool, named: Collection[str] = TEXT_ATTRIBUTES
) -> list[tuple[Track | None, dict[str, bool]]]:
    """Pair each spec object with a distinct track so that the most ``named`` attributes agree
    (ties go to larger tracks); returns (track or None, attribute booleans) per spec object."""
    n = len(spec.objects)
    pool: list[Track | None] = [*tracks, *([None] * n)]
    best: list[tuple[Track | None, dict[str, bool]]] = []
    best_key = (-1, -1)
    for perm in itertools.permutations(range(len(pool)), n):
        pairs = [
            (pool[i], _object_attributes(pool[i], o, video, named))
            for i, o in zip(perm, spec.objects, strict=True)
        ]
        agree = sum(sum(v for k, v in a.items() if k != "all") for _, a in pairs)
        area = sum(tr.area for tr, _ in pairs if tr is not None)
        if (agree, area) > best_key:
            best_key, best = (agree, area), pairs
    return best


def _aggregate(
    pairs: list[tuple[Track | None, dict[str, bool]]], n_tracks: int, n_obj: int
) -> dict[str, bool]:
    keys = pairs[0][1].keys()
    out = {k: all(a[k] for _, a in pairs) for k in keys}  # "all" included: every object right
    out["count"] = n_tracks == n_obj
    return out


def score_text_to_video(
    frames: np.ndarray, spec: ClipSpec, named: Collection[str] = TEXT_ATTRIBUTES
) -> dict[str, bool]:
    """T2V: booleans "shape", "colour", "position", "direction" (each right for every object),
    "all" (all four for every object), "count" (as many objects as the caption) and
    "first_frame_shape" (every object's shape read from the first frame alone, where "shape"
    reads the whole clip: right here and wrong there means a glyph drawn right and lost as it
    moved); the last two are not part of "all".

    ``named``: the attributes the caption names, for a caption that leaves the position or
    the motion open ("a red square moves left"): only those are scored and make up "all"."""
    check_named(named)
    tracks = track_objects(frames)
    pairs = match_objects(tracks, spec, video=True, named=named)
    out = _aggregate(pairs, len(tracks), len(spec.objects))
    out["first_frame_shape"] = all(
        first_frame_label(tr) == obj.label for (tr, _), obj in zip(pairs, spec.objects, strict=True)
    )
    return out


def score_text_to_image(image: np.ndarray, spec: ClipSpec) -> dict[str, bool]:
    """T2I: as ``score_text_to_video`` without "direction"."""
    tracks = track_objects(check_frames(image, 3)[None])
    return _aggregate(match_objects(tracks, spec, video=False), len(tracks), len(spec.objects))


# --------------------------------------------------------------------------- S2I / S2V


def score_sketch(generated: np.ndarray, sketch: np.ndarray) -> dict[str, float]:
    """S2I / S2V agreement of generated pixels ((H, W, 3) or (T, H, W, 3) uint8) with the sketch
    ((H, W) or (T, H, W) class ids).

    "iou": IoU of all detected object pixels with the sketch's non-background pixels, over all
    frames. "class_iou": mean over classes in either map of the per-class IoU, each detected
    object taking the class of its recognised shape."""
    frames = generated[None] if generated.ndim == 3 else generated
    sk = sketch[None] if sketch.ndim == 2 else sketch
    if frames.shape[:3] != sk.shape:
        raise ValueError(f"frames {generated.shape} and sketch {sketch.shape} do not match")
    pred = np.zeros(sk.shape, dtype=np.uint8)
    for tr in track_objects(frames):
        kind = tr.label.split()[0]
        pred[tr.masks] = SKETCH_CLASSES.index(kind)
    fg_p, fg_s = pred > 0, sk > 0
    union = (fg_p | fg_s).sum()
    iou = float((fg_p & fg_s).sum() / union) if union else 1.0
    per_class = []
    for c in range(1, len(SKETCH_CLASSES)):
        p, s = pred == c, sk == c
        u = (p | s).sum()
        if u:
            per_class.append((p & s).sum() / u)
    return {"iou": iou, "class_iou": float(np.mean(per_class)) if per_class else 1.0}


# --------------------------------------------------------------------------- V2V


def position_errors(frames: np.ndarray, clip: Clip) -> np.ndarray:
    """``(T, N)`` distance (px) between each object's centroid in generated ``frames`` and in
    ``clip`` per frame; objects are found by their ground-truth colour, one missing from a frame
    counts as an error of the frame side; NaN where the ground truth does not show the object."""
    frames = check_frames(frames, 4)
    if frames.shape[0] > clip.centres.shape[0]:
        raise ValueError(
            f"{frames.shape[0]} frames against a ground truth of {clip.centres.shape[0]}"
        )
    size = frames.shape[2]
    out = np.full((frames.shape[0], len(clip.spec.objects)), np.nan)
    for t in range(frames.shape[0]):
        labels = colour_labels(frames[t])
        for k, obj in enumerate(clip.spec.objects):
            gt = clip.centres[t, k]
            if np.isnan(gt).any():
                continue
            mask = colour_mask(labels, COLOUR_NAMES.index(obj.colour), size)
            if not mask.any():
                out[t, k] = float(size)
                continue
            x, y = centroid(mask)
            out[t, k] = math.hypot(x - gt[0], y - gt[1])
    return out


def position_error(frames: np.ndarray, clip: Clip, first_k: int = 1) -> float:
    """V2V: mean distance (px) between each object's centroid in generated ``frames`` and in
    ``clip``, over frames ``first_k..T-1`` (the predicted ones) and objects. Objects are found
    by their ground-truth colour; one missing from a frame counts as an error of the frame side."""
    errors = position_errors(frames, clip)[first_k:]
    errors = errors[~np.isnan(errors)]
    if not errors.size:
        raise ValueError(f"no object is visible in frames {first_k}.. of the ground truth")
    return float(np.mean(errors))


# --------------------------------------------------------------------------- I2I / TI2I / TV2V


def psnr(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, max_db: float = 100.0
) -> float:
    """PSNR (dB, peak 255) of uint8 images/videos ``a`` vs ``b`` over the pixels where ``mask``
    (shape of ``a`` without the channel axis) is True; capped at ``max_db`` (identical pixels)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        if mask.shape != a.shape[:-1]:
            raise ValueError(f"mask shape {mask.shape} does not match pixels {a.shape[:-1]}")
        if not mask.any():
            raise ValueError("the mask selects no pixels")
        diff = diff[mask]
    mse = float(np.mean(diff**2))
    return max_db if mse == 0 else min(max_db, 10.0 * math.log10(255.0**2 / mse))


def score_edit(
    generated: np.ndarray,
    source: np.ndarray,
    keep: np.ndarray,
    target: ClipSpec,
    edited_object: int | None = None,
) -> dict[str, float | bool]:
    """I2I / TI2I / TV2V: "psnr_kept" (generated vs source where ``keep``) and the attribute
    booleans of the result against ``target`` (the spec of the wanted result; for completion,
    the source's spec), for object ``edited_object`` only or, when None, every object.
    Images are (H, W, 3) with keep (H, W); videos (T, H, W, 3) with keep (T, H, W)."""
    video = generated.ndim == 4
    frames = check_frames(generated, 4) if video else check_frames(generated, 3)[None]
    tracks = track_objects(frames)
    pairs = match_objects(tracks, target, video=video)
    if edited_object is not None:
        pairs = [pairs[edited_object]]
    out: dict[str, float | bool] = {"psnr_kept": psnr(generated, source, keep)}
    out.update({k: all(a[k] for _, a in pairs) for k in pairs[0][1]})
    return out


# --------------------------------------------------------------------------- summaries


def summarise(scores: Sequence[Mapping[str, float | bool]]) -> dict[str, float]:
    """Average per-sample scores into one table row: the mean of each key (booleans as 0/1,
    so attribute keys become accuracies) over the samples that have it, plus "n"."""
    if not scores:
        raise ValueError("nothing to summarise")
    keys = list(dict.fromkeys(k for s in scores for k in s))
    out = {k: float(np.mean([float(s[k]) for s in scores if k in s])) for k in keys}
    out["n"] = float(len(scores))
    return out
