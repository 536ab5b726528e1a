"""A whole greedy generation through ONNX Runtime gives the PyTorch reference loop's tokens:
text->image, text->video (also sliding past the trained frames, so the ring cache wraps) and
sketch->video, on the tiny model, with the sketch tokens made by the exported VQ-GAN-Seg.

The decode loop over the exported graphs (:class:`OrtGreedyDecoder`) lives here, not in
``nuwa.export``: export is below the runtime (DESIGN §2), and decoding is the runtime's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from nuwa.export.verify import session as ort_session
from nuwa.model.generate import generate_tokens
from nuwa.model.sampling import SamplingOptions
from nuwa.spec.manifest import Manifest

PROMPTS = ["a red square moves left", "the digit 3 in blue moves down"]
GREEDY = SamplingOptions(temperature=0.0)


class OrtGreedyDecoder:
    """Greedy generation over an export directory with ONNX Runtime (no PyTorch): the smallest
    decode loop over the exported graphs, spelled out here so that a failure points at a graph
    rather than at the runtime's engine (which ``tests/runtime`` checks against the same
    PyTorch reference).

    The same steps as :func:`nuwa.model.generate.generate_tokens` with ``temperature=0`` and no
    guidance: encode the condition, then feed ``<bos>`` and each chosen token back with its
    raster position; ``present.*`` of one step is ``past_key_values.*`` of the next.
    """

    def __init__(self, manifest: Manifest, threads: int = 1) -> None:
        self.manifest = manifest
        self.threads = threads
        self._sessions: dict[str, Any] = {}

    def session(self, graph: str) -> Any:
        if graph not in self._sessions:
            self._sessions[graph] = ort_session(self.manifest.path(graph), self.threads)
        return self._sessions[graph]

    def condition(self, key: str, inputs: np.ndarray) -> list[np.ndarray]:
        """Cross K/V of every decoder layer (in ``cross_names`` order) for a condition."""
        graph = self.manifest.graph(self.manifest.conditions[key].encoder)
        sess = self.session(graph.name)
        return list(sess.run(graph.output_names, {graph.input_names[0]: inputs}))

    def prefill(self, condition_key: str, cross: list[np.ndarray], prefix: np.ndarray) -> list:
        """Ring caches after the known ``prefix (B, F, H, W)`` frames, in one call."""
        dec = self.manifest.decoder
        graph = self.manifest.decoder_prefill(condition_key)
        feeds = dict(zip(dec.cross_names(), cross, strict=True))
        feeds[graph.input_names[0]] = prefix
        feeds = {name: feeds[name] for name in graph.input_names}
        return list(self.session(graph.name).run(dec.present_names(), feeds))

    def generate(
        self,
        condition_key: str,
        condition_inputs: np.ndarray,
        num_frames: int,
        prefix: np.ndarray | None = None,
    ) -> np.ndarray:
        """Token grid ``(B, num_frames, H, W)`` int64 chosen by argmax at every position after
        the optional known ``prefix (B, F, H, W)`` frames (fed through ``decoder_prefill``)."""
        dec = self.manifest.decoder
        _, h, w = dec.grid
        cross = self.condition(condition_key, condition_inputs)
        batch = cross[0].shape[0]
        step = self.manifest.decoder_step(condition_key, num_frames)
        sess = self.session(step.name)
        cache_shape = (batch, dec.num_heads, dec.cache_slots, dec.head_dim)
        past = [np.zeros(cache_shape, np.float32) for _ in dec.past_names()]
        feeds: dict[str, np.ndarray] = dict(zip(dec.cross_names(), cross, strict=True))
        n = num_frames * h * w
        out = np.zeros((batch, n), np.int64)
        prev = np.full((batch,), dec.bos_id, np.int64)
        start = 0
        if prefix is not None:
            past = self.prefill(condition_key, cross, prefix)
            start = prefix.shape[1] * h * w
            out[:, :start] = prefix.reshape(batch, start)
            prev = out[:, start - 1]
        for pos in range(start, n):
            feeds[dec.input_ids] = prev
            feeds[dec.positions] = np.full((batch,), pos, np.int64)
            feeds.update(zip(dec.past_names(), past, strict=True))
            logits, *past = sess.run([dec.logits, *dec.present_names()], feeds)
            prev = logits.argmax(-1).astype(np.int64)
            out[:, pos] = prev
        return out.reshape(batch, num_frames, h, w)


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


@pytest.mark.parametrize("prefix_frames", [1, 2, 3])
def test_decoder_prefill_leaves_the_caches_of_the_decode_steps(
    tiny_export, tiny_loaded, prefix_frames
):
    """``decoder_prefill`` of F frames == F*H*W ``decode_step`` calls (PyTorch), batch 2."""
    tr = tiny_loaded.transformer
    c = tr.cfg
    g = torch.Generator().manual_seed(11)
    prefix = torch.randint(
        0, c.image_vocab_size, (2, prefix_frames, c.grid_h, c.grid_w), generator=g
    )
    cond = tiny_loaded.text_condition(PROMPTS)
    with torch.no_grad():
        cross = tr.cross_kv(cond)
    cache = tr.empty_cache(2).layers
    flat = prefix.reshape(2, -1)
    prev = torch.full((2,), c.bos_id)
    with torch.no_grad():
        for pos in range(flat.shape[1]):
            _, cache = tr.decode_step(
                prev, torch.full((2,), pos), cache, cross, cond.grid, cond.cross_extents, 3
            )
            prev = flat[:, pos]
    cross_np = [t.numpy() for kv in cross for t in kv]
    present = OrtGreedyDecoder(tiny_export).prefill("text", cross_np, prefix.numpy())
    expected = [t.numpy() for kv in cache for t in kv]
    for a, e in zip(present, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-4)


def test_video_prediction_with_prefill_matches_pytorch(tiny_export, tiny_loaded):
    """Given the first frame, greedy continuation to 5 frames (past the trained 3): ORT prefill
    + steps == the PyTorch loop fed the known tokens step by step."""
    c = tiny_loaded.transformer.cfg
    g = torch.Generator().manual_seed(12)
    num_frames, hw = 5, c.tokens_per_frame
    prefix = torch.randint(0, c.image_vocab_size, (2, 1, c.grid_h, c.grid_w), generator=g)
    known = torch.zeros(2, num_frames * hw, dtype=torch.long)
    known[:, :hw] = prefix.reshape(2, hw)
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, :hw] = True
    cond = tiny_loaded.text_condition(PROMPTS)
    expected = generate_tokens(
        tiny_loaded.transformer,
        cond,
        num_frames,
        GREEDY,
        known=known,
        known_mask=mask,
        progress=False,
    ).numpy()
    ids = tiny_loaded.text_ids(PROMPTS).numpy()
    tokens = OrtGreedyDecoder(tiny_export).generate("text", ids, num_frames, prefix.numpy())
    np.testing.assert_array_equal(tokens, expected)
