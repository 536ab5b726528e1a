"""A whole greedy generation through ONNX Runtime gives the PyTorch reference loop's tokens:
text->image, text->video (also sliding past the trained frames, so the ring cache wraps) and
sketch->video, on the tiny model, with the sketch tokens made by the exported VQ-GAN-Seg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nuwa.export.verify import OrtGreedyDecoder
from nuwa.model.generate import generate_tokens
from nuwa.model.sampling import SamplingOptions

PROMPTS = ["a red square moves left", "the digit 3 in blue moves down"]
GREEDY = SamplingOptions(temperature=0.0)


def reference(model, cond, num_frames: int) -> np.ndarray:
    return generate_tokens(model.transformer, cond, num_frames, GREEDY, progress=False).numpy()


@pytest.mark.parametrize(("task", "num_frames"), [("t2i", 1), ("t2v", 3), ("t2v_long", 6)])
def test_text_greedy_generation_matches_pytorch(tiny_export, tiny_loaded, task, num_frames):
    ids = tiny_loaded.text_ids(PROMPTS)
    expected = reference(tiny_loaded, tiny_loaded.text_condition(PROMPTS), num_frames)
    tokens = OrtGreedyDecoder(tiny_export).generate("text", ids.numpy(), num_frames)
    assert tokens.shape == (2, num_frames, 4, 4)
    np.testing.assert_array_equal(tokens, expected)
    assert len(np.unique(tokens)) > 1  # not a degenerate constant output


def _sketch(frames: int, size: int, classes: int) -> np.ndarray:
    """Class maps ``(2, frames, size, size)``: a block of class c moving right per frame."""
    maps = np.zeros((2, frames, size, size), np.int64)
    for b in range(2):
        for t in range(frames):
            c = 1 + (b + t) % (classes - 1)
            maps[b, t, 4 + b : 10 + b, 2 * t : 2 * t + 7] = c
    return maps


def test_sketch_to_video_greedy_generation_matches_pytorch(tiny_export, tiny_loaded):
    cfg = tiny_loaded.config
    frames = cfg.transformer.frames
    maps = _sketch(frames, cfg.vqgan_seg.image_size, cfg.vqgan_seg.in_channels)
    decoder = OrtGreedyDecoder(tiny_export)
    enc = decoder.session("sketch_encoder")
    codes = enc.run(None, {"sketch": maps.reshape(-1, *maps.shape[2:])})[0]
    codes = codes.reshape(2, frames, *codes.shape[1:])
    np.testing.assert_array_equal(codes, tiny_loaded.sketch_to_codes(torch.from_numpy(maps)))
    key = tiny_export.condition_key("sketch", frames)
    tokens = decoder.generate(key, codes, frames)
    expected = reference(tiny_loaded, tiny_loaded.sketch_condition(maps), frames)
    np.testing.assert_array_equal(tokens, expected)
