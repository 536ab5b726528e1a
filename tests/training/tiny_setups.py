"""The tiny training setups the training test modules share."""

from __future__ import annotations

import torch

from nuwa.spec.config import NuwaConfig
from nuwa.training.token_cache import TokenCache
from nuwa.training.transformer_options import TransformerTrainOptions


def tiny_config() -> NuwaConfig:
    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 112  # the dataset's two-object captions
    return cfg


def tr_options(steps: int, **kw) -> TransformerTrainOptions:
    base = dict(
        steps=steps,
        video_batch_size=2,
        image_batch_size=4,
        num_clips=8,
        checkpoint_every=steps,
        log_every=1,
        warmup=5,
        threads=1,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return TransformerTrainOptions(**base)  # type: ignore[arg-type]


def random_cache(
    n: int = 5, t: int = 4, h: int = 4, L: int = 112, sketch_frames: int | None = None
) -> TokenCache:
    """Random codes of ``n`` clips of ``t`` frames; sketches of ``sketch_frames`` (default ``t``:
    a cache of long clips keeps the trained frames' sketches)."""
    ts = t if sketch_frames is None else sketch_frames
    return TokenCache(
        video=torch.randint(0, 32, (n, t, h, h)),
        sketch=torch.randint(1, 16, (n, ts, h, h)),
        caption=torch.randint(0, 256, (n, L)),
        still_caption=torch.randint(0, 256, (n, L)),
        caption_no_position=torch.randint(0, 256, (n, L)),
        still_caption_no_position=torch.randint(0, 256, (n, L)),
        blank_sketch=torch.zeros(h, h, dtype=torch.long),
        empty_text=torch.full((L,), 256),
    )
