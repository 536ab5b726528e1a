"""Frames decoded as they finish (:class:`FrameDecoder`) against the obvious reference: one VQ-GAN
call on the whole grid; and the Pipeline's results built from them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuwa.runtime import Pipeline
from nuwa.runtime.frame_decoding import FrameDecoder
from nuwa.spec.errors import NuwaInputError


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(0, 3 * 16), max_size=4), seed=st.integers(0, 2**16))
def test_frames_decoded_as_they_finish_equal_the_whole_grid_decoded(
    ort_backend, cuts, seed
) -> None:
    spec = ort_backend.spec
    frames = 3
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, spec.image_vocab_size, (2, frames, spec.grid_h, spec.grid_w))
    flat = tokens.reshape(2, -1)
    decoder = FrameDecoder(ort_backend, frames)
    for done in sorted(cuts):  # the observer sees every token so far, at any position
        decoder.update(flat[:, :done])
    np.testing.assert_array_equal(decoder.frames(tokens), ort_backend.codes_to_frames(tokens))


def test_a_pipeline_result_holds_the_frames_of_its_tokens(ort_backend, task_inputs) -> None:
    pipe = Pipeline(ort_backend, progress=False)
    streamed: list[np.ndarray] = []
    finished: list[tuple[np.ndarray, ...]] = []

    def keep(event) -> None:
        if event.frame_pixels is not None:
            streamed.append(event.frame_pixels)
            finished.append(event.finished_frames)

    for kwargs in ({"callback": keep, "stream_frames": True}, {}):
        out = pipe("v2v", video=task_inputs["video"][:2], seed=3, **kwargs)
        np.testing.assert_array_equal(out.frames, ort_backend.codes_to_frames(out.tokens))
    # the stream: the given frames' last one after the prefix, then every new frame
    assert len(streamed) == 2
    np.testing.assert_array_equal(streamed[-1], out.frames[:, -1])
    # each frame-end event also carries every frame finished so far: the given ones with the
    # prefix's event (a stream sends them from there, decoded once)
    assert [len(f) for f in finished] == [2, 3]
    for done in finished:
        np.testing.assert_array_equal(np.stack(done, axis=1), out.frames[:, : len(done)])


def test_callback_steps_thins_the_events_and_keeps_every_frame_end(ort_backend) -> None:
    pipe = Pipeline(ort_backend, progress=False)
    per_frame = pipe.spec.tokens_per_frame
    for steps, expect in ((1, list(range(3 * per_frame))), (5, None), (per_frame, None)):
        seen: list[int] = []
        pipe(
            "t2v",
            "a red square",
            seed=0,
            callback=lambda e, seen=seen: seen.append(e.position),
            callback_steps=steps,
        )
        if expect is None:
            expect = [
                p for p in range(3 * per_frame) if (p + 1) % steps == 0 or (p + 1) % per_frame == 0
            ]
        assert seen == expect, steps
    with pytest.raises(NuwaInputError, match="callback_steps"):
        pipe("t2v", "a red square", callback=print, callback_steps=0)
