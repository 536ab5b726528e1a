"""The reference decode loop (PyTorch): encoder once, cross K/V once, then one
:meth:`~nuwa.model.transformer.NuwaTransformer.decode_step` per token with the ring-buffer KV cache.

Split like gpt-fast's ``generate.py``: :class:`DecodeState` holds a request's caches,
:func:`decode_one_token` produces one position, and :func:`generate_tokens` runs a whole grid,
feeding given tokens (a video prefix, the kept region of an edit) instead of sampling them.
Classifier-free guidance runs the unconditional condition as extra batch rows. Positions past
the trained number of frames slide the window.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from nuwa.model.kv_cache import RingKVCache
from nuwa.model.sampling import SamplingOptions, apply_guidance, sample_next
from nuwa.model.transformer import KV, EncodedCondition, NuwaTransformer
from nuwa.spec.sampling import default_sampling_options
from nuwa.spec.sampling_random import fresh_seed

# (position, tokens so far (B, N)) -> None: sees the tokens after every position (the name of
# the runtime engine's hook of the same kind)
StepObserver = Callable[[int, Tensor], None]


class DecodeState:
    """Everything one request carries between steps."""

    def __init__(
        self,
        model: NuwaTransformer,
        cond: EncodedCondition,
        uncond: EncodedCondition | None,
        num_frames: int,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.model = model
        self.batch = cond.memory.shape[0]
        cross = model.cross_kv(cond)
        if uncond is not None:
            if uncond.grid != cond.grid or uncond.memory.shape[0] != self.batch:
                raise ValueError("the unconditional condition must match the condition's grid")
            cross = [
                (torch.cat([kc, ku]), torch.cat([vc, vu]))
                for (kc, vc), (ku, vu) in zip(cross, model.cross_kv(uncond), strict=True)
            ]
        self.cross: list[KV] = cross
        self.rows = self.batch * (2 if uncond is not None else 1)
        self.cond_grid = cond.grid
        self.cross_extents = cond.cross_extents
        self.num_frames = num_frames
        self.cache: RingKVCache = model.empty_cache(self.rows, cond.memory.device)

    def step(self, prev_tokens: Tensor, position: int) -> Tensor:
        """Feed ``prev_tokens (B,)`` (token at ``position-1``, or <bos>) -> logits rows."""
        rows = prev_tokens.repeat(self.rows // self.batch)
        positions = torch.full((self.rows,), position, dtype=torch.long, device=rows.device)
        logits, self.cache.layers = self.model.decode_step(
            rows,
            positions,
            self.cache.layers,
            self.cross,
            self.cond_grid,
            self.cross_extents,
            self.num_frames,
        )
        return logits


def decode_one_token(
    state: DecodeState,
    prev_tokens: Tensor,
    position: int,
    options: SamplingOptions,
    seed: int,
) -> Tensor:
    logits = state.step(prev_tokens, position)
    if state.rows != state.batch:
        logits = apply_guidance(
            logits[: state.batch], logits[state.batch :], options.guidance_scale
        )
    return sample_next(logits, options, seed, position)


@torch.no_grad()
def generate_tokens(
    model: NuwaTransformer,
    cond: EncodedCondition,
    num_frames: int,
    options: SamplingOptions | None = None,
    uncond: EncodedCondition | None = None,
    known: Tensor | None = None,
    known_mask: Tensor | None = None,
    callback: StepObserver | None = None,
    progress: bool = True,
) -> Tensor:
    """Generate a ``(B, num_frames, H, W)`` token grid.

    ``known (B, N)`` / ``known_mask (B, N)`` (``N = num_frames*H*W``) force given tokens (video
    prefix, kept region of an edit); other positions are sampled. ``uncond`` is required when
    ``options.guidance_scale != 1``. ``options=None`` samples with the defaults a request
    without options gets everywhere (:func:`nuwa.spec.sampling.default_sampling_options`:
    guided when ``uncond`` is given), the same as the Pipeline's for a model without a
    ``generation_config.json``.
    """
    if options is None:
        options = default_sampling_options(guided=uncond is not None)
    options.validate()
    cfg = model.cfg
    b = cond.memory.shape[0]
    n = num_frames * cfg.tokens_per_frame
    if options.uses_guidance and uncond is None:
        raise ValueError("classifier-free guidance needs an unconditional condition")
    state = DecodeState(model, cond, uncond if options.uses_guidance else None, num_frames)
    device = cond.memory.device
    given = (known, known_mask)
    if any(x is not None for x in given) and any(x is None or x.shape != (b, n) for x in given):
        raise ValueError(f"known and known_mask must both have shape {(b, n)}")
    seed = fresh_seed() if options.seed is None else options.seed  # nuwa.spec.sampling_random
    out = torch.zeros(b, n, dtype=torch.long, device=device)
    prev = torch.full((b,), cfg.bos_id, dtype=torch.long, device=device)
    for pos in tqdm(range(n), disable=not progress, desc="decoding", unit="tok"):
        if known_mask is not None and bool(known_mask[:, pos].all()):
            state.step(prev, pos)  # fill the cache; nothing to sample
            tok = known[:, pos]  # type: ignore[index]
        else:
            tok = decode_one_token(state, prev, pos, options, seed)
            if known_mask is not None:
                tok = torch.where(known_mask[:, pos], known[:, pos], tok)  # type: ignore[index]
        out[:, pos] = tok
        prev = tok
        if callback is not None:
            callback(pos, out[:, : pos + 1])
    return out.view(b, num_frames, cfg.grid_h, cfg.grid_w)
