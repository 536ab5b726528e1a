"""Resource limits of one request: how many frames and rows (prompts x batch) fit.

The decoder slides its window past the trained number of frames (DESIGN §5), so the model sets
no cap on frames; what does is memory. A request holds, for every row, its ring KV caches and
cross K/V (the manifest's cache geometry: layers x 2 x heads x slots x head_dim, twice with
classifier-free guidance's unconditional rows; counted twice, for a backend's past and present
sets), its forced-token layout and its output (tokens and RGB frames). :func:`request_bytes`
adds these up (float32 caches: the largest precision);
a request over :data:`MAX_REQUEST_BYTES` is refused before anything runs, with the largest
``num_frames`` / ``batch`` that fits.
"""

from __future__ import annotations

from nuwa.spec.errors import NuwaInputError
from nuwa.spec.model_spec import ModelSpec

# what one request may hold in memory (caches + layout + output); 2 GiB fits a small machine
MAX_REQUEST_BYTES = 2 << 30
CACHE_ITEM_BYTES = 4  # float32 K/V (fp16/int8 exports hold less: an upper bound)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def ring_cache_bytes(spec: ModelSpec, rows: int) -> int:
    """One set of decoder ring caches for ``rows`` rows (what ``RingCache.zeros`` allocates)."""
    per_slot = spec.n_decoder_layers * 2 * spec.n_heads * spec.head_dim * CACHE_ITEM_BYTES
    return rows * spec.cache_slots * per_slot


def cross_bytes(spec: ModelSpec, rows: int) -> int:
    """Cross K/V of ``rows`` rows, for the longer of the text and the sketch condition."""
    cond_len = max(spec.max_text_len, spec.sketch_frames * spec.tokens_per_frame)
    per_token = spec.n_decoder_layers * 2 * spec.n_heads * spec.head_dim * CACHE_ITEM_BYTES
    return rows * cond_len * per_token


def row_bytes(spec: ModelSpec, frames: int, guided: bool) -> int:
    """Memory of one output row of ``frames`` frames (see the module docstring). Caches count
    twice: a backend may hold a past and a present set (double buffering, a device copy)."""
    caches = 2 * (ring_cache_bytes(spec, 1) + cross_bytes(spec, 1)) * (2 if guided else 1)
    tokens = frames * spec.tokens_per_frame
    layout = tokens * (8 + 1 + 8)  # forced tokens (int64) + their mask (bool) + output tokens
    pixels = frames * spec.image_size * spec.image_size * 3
    return caches + layout + pixels


def request_bytes(spec: ModelSpec, rows: int, frames: int, guided: bool) -> int:
    return rows * row_bytes(spec, frames, guided)


def check_request_size(
    spec: ModelSpec, prompts: int, batch: int, frames: int, guided: bool
) -> None:
    """Refuse a request of ``prompts x batch`` rows of ``frames`` frames whose memory exceeds
    :data:`MAX_REQUEST_BYTES`, naming the limit and the largest frames / batch that fit."""
    rows = prompts * batch
    need = request_bytes(spec, rows, frames, guided)
    if need <= MAX_REQUEST_BYTES:
        return
    fixed = row_bytes(spec, 0, guided)  # caches: the same for any number of frames
    per_frame = row_bytes(spec, 1, guided) - fixed
    max_frames = max(0, (MAX_REQUEST_BYTES // rows - fixed) // per_frame)
    max_batch = MAX_REQUEST_BYTES // (prompts * row_bytes(spec, frames, guided))
    fits = [f"{max_frames} frames at batch {batch}"] if max_frames >= 1 else []
    if max_batch >= 1:
        fits.append(f"batch {max_batch} at {frames} frames")
    advice = f"at most {' or '.join(fits)}" if fits else f"fewer than {prompts} prompts"
    of_prompts = f" for each of {prompts} prompts" if prompts > 1 else ""
    raise NuwaInputError(
        f"num-frames {frames} with batch {batch}{of_prompts} needs about {_gib(need)}; "
        f"a request may use {_gib(MAX_REQUEST_BYTES)} (nuwa.runtime.limits.MAX_REQUEST_BYTES: "
        f"KV caches, tokens and frames): {advice}"
    )
