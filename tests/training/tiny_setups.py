"""The tiny training setups both training test modules use."""

from __future__ import annotations

from nuwa.spec.config import NuwaConfig
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
