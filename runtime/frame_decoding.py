"""A request's pixels, decoded frame by frame as each frame's last token is chosen.

The VQ-GAN decoder maps every frame's codes to pixels on its own, so a frame can be decoded the
moment its tokens are final. :class:`FrameDecoder` does that in the request's own thread while
the shared decode loop (:mod:`nuwa.runtime.decode_scheduler`) goes on with the next frame: on a
machine with a core to spare the VQ decoder's time hides behind the decoding, a stream's frames
are decoded once (not again for the result), and only the last frame's decoding is left after
the last token. The slow, obvious reference is one ``codes_to_frames`` call on the whole grid
(tests compare the two).
"""

from __future__ import annotations

import numpy as np

from nuwa.runtime.backends.base import Backend


class FrameDecoder:
    """Pixels ``(B, S, S, 3)`` uint8 of each finished frame of one request."""

    def __init__(self, backend: Backend, num_frames: int) -> None:
        spec = backend.spec
        self.backend = backend
        self.per_frame = spec.tokens_per_frame
        self.grid = (spec.grid_h, spec.grid_w)
        self.pixels: list[np.ndarray] = []  # frames 0 .. len-1, decoded
        self.num_frames = num_frames

    def update(self, tokens: np.ndarray) -> None:
        """Decode the frames that ``tokens (B, done)`` (every token so far) finished since the
        last call (several at once after a prefix), in one VQ-GAN call."""
        finished = min(tokens.shape[1] // self.per_frame, self.num_frames)
        first = len(self.pixels)
        if finished <= first:
            return
        codes = tokens[:, first * self.per_frame : finished * self.per_frame]
        codes = codes.reshape(tokens.shape[0], finished - first, *self.grid)
        frames = self.backend.codes_to_frames(codes)  # (B, n, S, S, 3)
        self.pixels.extend(frames[:, i] for i in range(frames.shape[1]))

    def frames(self, tokens: np.ndarray) -> np.ndarray:
        """All frames ``(B, T, S, S, 3)`` of the final grid ``tokens (B, T, h, w)``, decoding
        what is left."""
        self.update(tokens.reshape(tokens.shape[0], -1))
        return np.stack(self.pixels, axis=1)
