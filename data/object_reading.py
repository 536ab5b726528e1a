"""Reading objects off generated pixels (DESIGN §10), exactly, with no learned model: which
objects a frame or clip shows, their colour, shape, start region and motion. The quality
checker's scores (:mod:`nuwa.data.quality_checker`) are built on it.

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
handful of pixels and is not read reliably). ``track_objects`` gives one ``Track`` per object.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from nuwa.data.clip_rendering import SPEED, object_side, object_templates, scaled
from nuwa.data.clip_specs import COLOURS, DIRECTIONS, POSITIONS

MIN_VALUE = 80  # a foreground pixel's max channel (0–255)
MIN_SATURATION = 0.35  # a foreground pixel's (max - min) / max
HALF_MAX = 0.5  # of its colour's peak brightness, for a pixel to count
MIN_NEIGHBOURS = 3  # of 8, in the same colour, for a pixel to count
MIN_AREA_FRACTION = 0.15  # of the template square, for a colour to count as an object
SHIFT_SEARCH = 2  # template alignment search radius (px)
MIN_SPEED_FRACTION = 0.5  # of the dataset speed, for an object to count as moving

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


# --------------------------------------------------------------------------- reading pixels


def check_frames(x: np.ndarray, ndim: int) -> np.ndarray:
    """``x`` itself once it is uint8 RGB: one square frame (H, W, 3) for ``ndim`` 3, square
    frames (T, H, W, 3) for 4; else a TypeError or ValueError naming what it got."""
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
    frames = check_frames(frames, 4)
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


def first_frame_label(track: Track | None) -> str | None:
    """The template a track's first-frame mask matches best (``Track.label`` sums every frame);
    None for no track or one absent from the first frame."""
    if track is None or not track.masks[0].any():
        return None
    size = track.masks.shape[1]
    return _placed_templates(size)[0][int(np.argmax(template_scores(track.masks[0], size)))]
