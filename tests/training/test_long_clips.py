"""Training past the trained length (issue 36): a token cache of long clips (objects bouncing
off the borders), long T2V / V2V batches beside the trained-length ones, and a tiny run on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nuwa.model.nuwa import NuwaModel
from nuwa.training.batches import make_batch
from nuwa.training.token_cache import load_token_cache, pretokenize, training_clips

from .tiny_setups import random_cache, tiny_config, tr_options


def test_long_batches_are_whole_long_clips_of_the_text_video_tasks() -> None:
    cache = random_cache(n=6, t=7, sketch_frames=3)
    opts = tr_options(1, video_batch_size=4, long_frames=7, long_share=0.5)
    shapes: dict[str, set[tuple[int, ...]]] = {}
    for step in range(120):
        b = make_batch(cache, opts, step, trained_frames=3)
        shapes.setdefault(b.task, set()).add(tuple(b.target.shape[:2]))
        frames = b.target.shape[1]
        assert any(torch.equal(b.target[0], c[:frames]) for c in cache.video)
        if b.sketch is not None:
            assert b.sketch.shape[1] == frames  # sketch tasks keep the trained frames
    # 4 clips of 3 frames, or 4 * 3 // 7 = 1 clip of all 7 (at least one)
    assert shapes["T2V"] == shapes["V2V"] == {(4, 3), (1, 7)}
    assert shapes["S2V"] == {(4, 3)}
    assert shapes["T2I"] == {(opts.image_batch_size, 1)}


def test_a_long_cache_needs_the_trained_frames_and_matching_options() -> None:
    cache = random_cache(n=6, t=7, sketch_frames=3)
    with pytest.raises(ValueError, match="holds 7-frame clips, the run trains on 3"):
        make_batch(cache, tr_options(1), 0, trained_frames=3)  # no long_frames in the options
    with pytest.raises(ValueError, match="holds 7-frame clips, the run trains on 9"):
        make_batch(cache, tr_options(1, long_frames=9, long_share=1.0), 0, trained_frames=3)


def test_pretokenize_renders_long_clips_bouncing(tmp_path: Path) -> None:
    model = NuwaModel(tiny_config())
    trained = model.config.transformer.frames
    cache = pretokenize(model, 2, seed=5, progress=False, clip_frames=trained + 4)
    assert tuple(cache.video.shape[:2]) == (2, trained + 4)
    assert tuple(cache.sketch.shape[:2]) == (2, trained)
    ds = training_clips(model, 2, 5)
    frames = np.stack([ds.long_clip(i, trained + 4).frames for i in range(2)])
    assert torch.equal(cache.video, model.frames_to_codes(frames).cpu())
    with pytest.raises(ValueError, match="clip_frames must be >="):
        pretokenize(model, 2, seed=5, progress=False, clip_frames=trained - 1)

    path = tmp_path / "tokens.safetensors"
    cache.save(path)
    grown = load_token_cache(model, path, tr_options(1, num_clips=3, seed=5, long_frames=7))
    assert tuple(grown.video.shape[:2]) == (3, 7)
    with pytest.raises(ValueError, match="--long-frames must stay as it was"):
        load_token_cache(model, path, tr_options(1, num_clips=3, seed=5))
