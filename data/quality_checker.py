"""Exact quality checker (DESIGN §10): reads generated pixels, no learned model, and scores them
against the synthetic dataset's ground truth (``synthetic_data``).

How pixels are read:

- **Objects** are found by colour: a pixel is foreground when it is bright (max channel >= 80
  and >= half its colour's peak) and saturated ((max - min) / max >= 0.35); its colour is the
  ``COLOURS`` entry of nearest hue (the six hues are 60° apart, so a shift of up to 30° is still
  read right). Isolated pixels are
  dropped (a pixel needs 3 of its 8 neighbours in its colour) and so are pixels far from the
  colour's median; a colour with fewer than 15% of an object's template area is not an object.
  Blur and small colour shifts (a VQ-GAN reconstruction) keep hue and saturation against black,
  so they do not change what is read; a wrong colour, heavy noise or a missing object does.
- **Shape** (square, circle, triangle or which digit) is the template of ``object_templates``
  with the best IoU against the object's mask, centroids aligned, searched over ±2 px shifts and
  summed over frames.
- **Start position** is the ``POSITIONS`` region nearest the first frame's centroid.
- **Direction** is the dominant axis of the centroid's least-squares velocity; it must be at least
  half the dataset speed and twice the cross-axis speed, else the object "does not move".

Frames must be square uint8 RGB of at least 32 px (objects of >= 10 px; at 16 px a digit is a
handful of pixels and is not read reliably).

Scores per task: ``score_text_to_image`` / ``score_text_to_video`` (T2I/T2V attribute accuracy),
``score_sketch`` (S2I/S2V mask IoU), ``position_error`` (V2V), ``psnr`` and ``score_edit``
(I2I/TI2I/TV2V), ``score_long_video`` (V2V/T2V past the trained length, per block of frames:
object kept, position error against the ground truth extended by bouncing, speed), and
``summarise`` to average a list of scores into one table row.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nuwa.data.synthetic_data import (
    COLOURS,
    DIRECTIONS,
    POSITIONS,
    SKETCH_CLASSES,
    SPEED,
    Clip,
    ClipSpec,
    ObjectSpec,
    object_side,
    object_templates,
    scaled,
)

MIN_VALUE = 80  # a foreground pixel's max channel (0–255)
MIN_SATURATION = 0.35  # a foreground pixel's (max - min) / max
HALF_MAX = 0.5  # of its colour's peak brightness, for a pixel to count
MIN_NEIGHBOURS = 3  # of 8, in the same colour, for a pixel to count
MIN_AREA_FRACTION = 0.15  # of the template square, for a colour to count as an object
SHIFT_SEARCH = 2  # template alignment search radius (px)
MIN_SPEED_FRACTION = 0.5  # of the dataset speed, for an object to count as moving

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
TEXT_ATTRIBUTES = ("shape", "colour", "position", "direction")  # "direction" for video only


# --------------------------------------------------------------------------- reading pixels


def _check_frames(x: np.ndarray, ndim: int) -> np.ndarray:
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB pixels, got dtype {x.dtype}")
    if x.ndim != ndim or x.shape[-1] != 3 or x.shape[-2] != x.shape[-3]:
        what = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
        raise ValueError(f"expected square frames shaped {what}, got {x.shape}")
    return x


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees [0, 360) of float RGB (..., 3)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    span = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, (g - b) / span, np.where(mx == g, 2 + (b - r) / span, 4 + (r - g) / span))
    return (h * 60.0) % 360.0


_PALETTE_HUES = _hue(np.array(list(COLOURS.values()), dtype=np.float64))  # (K,)


def colour_labels(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int8: index into COLOUR_NAMES, or -1 for background.

    A pixel is kept when bright, saturated, and at least HALF_MAX of its colour's peak brightness
    (95th percentile): the half-maximum contour of a blurred edge is where the sharp edge was."""
    rgb = image.astype(np.float64)
    mx, mn = rgb.max(-1), rgb.min(-1)
    fg = (mx >= MIN_VALUE) & ((mx - mn) >= MIN_SATURATION * mx)
    diff = np.abs(_hue(rgb)[..., None] - _PALETTE_HUES)  # (H, W, K)
    labels = np.where(fg, np.minimum(diff, 360.0 - diff).argmin(-1), -1).astype(np.int8)
    for c in np.unique(labels[labels >= 0]):
        mask = labels == c
        peak = np.percentile(mx[mask], 95)
        labels[mask & (mx < HALF_MAX * peak)] = -1
    return labels


def _neighbour_count(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1).astype(np.int8)
    h, w = mask.shape
    total = sum(
        p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )
    return total - mask.astype(np.int8)


def colour_mask(labels: np.ndarray, colour: int, size: int) -> np.ndarray:
    """The cleaned (H, W) bool mask of one colour; all False when it is too small to be an object.

    Keeps pixels with >= MIN_NEIGHBOURS same-colour neighbours that lie within one object side
    of the colour's median pixel."""
    mask = labels == colour
    mask &= _neighbour_count(mask) >= MIN_NEIGHBOURS
    side = object_side(size)
    if mask.sum() < MIN_AREA_FRACTION * side * side:
        return np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    my, mx = np.median(ys), np.median(xs)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    mask &= (np.abs(yy - my) <= side) & (np.abs(xx - mx) <= side)
    if mask.sum() < MIN_AREA_FRACTION * side * side:
        return np.zeros_like(mask)
    return mask


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) mean of a non-empty mask's pixels."""
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@functools.lru_cache(maxsize=8)
def _placed_templates(size: int) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, int]:
    """Every template with its centroid at the centre of a (win, win) window, at every search
    shift, flattened: names (L,), masks (L * S, win * win) float32, areas (L * S,), half-window."""
    templates = object_templates(size)
    side = object_side(size)
    cents = [centroid(t) for t in templates.values()]
    reach = max(max(cx, cy, side - cx, side - cy) for cx, cy in cents)  # centroid to far edge
    half = math.ceil(reach) + SHIFT_SEARCH + 1
    win = 2 * half + 1
    shifts = range(-SHIFT_SEARCH, SHIFT_SEARCH + 1)
    out = np.zeros((len(templates), len(shifts) ** 2, win, win), dtype=np.float32)
    for li, (tmpl, (cx, cy)) in enumerate(zip(templates.values(), cents, strict=True)):
        for si, (dy, dx) in enumerate(itertools.product(shifts, shifts)):
            y0 = half + dy - round(cy)
            x0 = half + dx - round(cx)
            out[li, si, y0 : y0 + side, x0 : x0 + side] = tmpl
    flat = out.reshape(-1, win * win)
    return tuple(templates), flat, flat.sum(axis=1), half


def template_scores(mask: np.ndarray, size: int) -> np.ndarray:
    """(L,) best IoU of a non-empty mask with each template (order of ``object_templates``)."""
    names, flat, areas, half = _placed_templates(size)
    cx, cy = centroid(mask)
    padded = np.pad(mask, half)
    x, y = round(cx) + half, round(cy) + half
    window = padded[y - half : y + half + 1, x - half : x + half + 1].ravel()
    inter = flat @ window.astype(np.float32)  # (L * S,)
    union = areas + mask.sum() - inter  # mask pixels outside the window count as union
    return (inter / np.maximum(union, 1)).reshape(len(names), -1).max(axis=1)


def classify_position(centre: tuple[float, float], size: int) -> str:
    x, y = centre
    return min(
        POSITIONS,
        key=lambda p: (POSITIONS[p][0] * size - x) ** 2 + (POSITIONS[p][1] * size - y) ** 2,
    )


def classify_direction(centres: np.ndarray, size: int) -> str | None:
    """Direction from (T, 2) centroids (NaN where absent); None when not clearly moving one way."""
    t = np.flatnonzero(~np.isnan(centres[:, 0]))
    if len(t) < 2:
        return None
    vel = np.polyfit(t.astype(np.float64), centres[t], 1)[0]  # (2,) px per frame
    axis = int(np.argmax(np.abs(vel)))
    if abs(vel[axis]) < MIN_SPEED_FRACTION * scaled(SPEED, size):
        return None
    if abs(vel[1 - axis]) * 2 > abs(vel[axis]):
        return None
    unit = [0, 0]
    unit[axis] = int(np.sign(vel[axis]))
    return next(d for d, v in DIRECTIONS.items() if list(v) == unit)


@dataclass
class Track:
    """One object found in generated frames, followed by its colour."""

    colour: str
    masks: np.ndarray  # (T, H, W) bool
    centres: np.ndarray  # (T, 2) (x, y); NaN where absent
    label: str  # "square", ..., "digit 9"
    position: str | None  # start region, None when absent from the first frame
    direction: str | None  # None for a still or an object that does not clearly move

    @property
    def area(self) -> int:
        return int(self.masks.sum())


def track_objects(frames: np.ndarray) -> list[Track]:
    """Objects in (T, H, W, 3) uint8 frames: one track per colour present in at least half the
    frames, largest first."""
    frames = _check_frames(frames, 4)
    n_t, size = frames.shape[0], frames.shape[2]
    labels = np.stack([colour_labels(f) for f in frames])
    names = _placed_templates(size)[0]
    tracks: list[Track] = []
    for ci, colour in enumerate(COLOUR_NAMES):
        masks = np.stack([colour_mask(labels[t], ci, size) for t in range(n_t)])
        present = masks.any(axis=(1, 2))
        if present.sum() * 2 < n_t:
            continue
        centres = np.full((n_t, 2), np.nan)
        score = np.zeros(len(names))
        for t in np.flatnonzero(present):
            centres[t] = centroid(masks[t])
            score += template_scores(masks[t], size)
        label = names[int(np.argmax(score))]
        position = classify_position(tuple(centres[0]), size) if present[0] else None
        direction = classify_direction(centres, size) if n_t > 1 else None
        tracks.append(Track(colour, masks, centres, label, position, direction))
    return sorted(tracks, key=lambda tr: -tr.area)


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


def first_frame_label(track: Track | None) -> str | None:
    """The template a track's first-frame mask matches best (``Track.label`` sums every frame);
    None for no track or one absent from the first frame."""
    if track is None or not track.masks[0].any():
        return None
    size = track.masks.shape[1]
    return _placed_templates(size)[0][int(np.argmax(template_scores(track.masks[0], size)))]


def score_text_to_image(image: np.ndarray, spec: ClipSpec) -> dict[str, bool]:
    """T2I: as ``score_text_to_video`` without "direction"."""
    tracks = track_objects(_check_frames(image, 3)[None])
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
    frames = _check_frames(frames, 4)
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


# --------------------------------------------------------------------------- long generation

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
    - motion continued: "position_error" (px, as :func:`position_error`, over the block's frames
      from ``first_k`` on: the given frames of a prediction are not scored; absent for a block
      of given frames only) and "speed" (px per frame the generated objects' centroids move,
      mean over objects and frame pairs; the truth's is about 3 at 64 px, 0 for a stall).

    Ground-truth frames score shape, colour, size and kept right and position error 0."""
    frames = _check_frames(frames, 4)
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
    frames = _check_frames(generated, 4) if video else _check_frames(generated, 3)[None]
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
