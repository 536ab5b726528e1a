"""The serving contract (DESIGN §12), defined once: the model names, their input and output
tensors (name, dtype, shape, optional), read by the in-process server, the model repository
writer, the clients of the tests and the bench.

A shape's ``-1`` is any size. Triton fixes each tensor's rank, so a single-frame sketch or video
is ``[1, H, W, 3]``. BYTES tensors hold UTF-8 text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL = "nuwa"  # one response per request: every frame and the seed used
STREAM_MODEL = "nuwa_stream"  # decoupled: one response per finished frame, then a final empty one
# the environment variable that gives the forwarding `nuwa` model the gRPC address of
# `nuwa_stream` (its own server's) over its configuration's `engine_url` (the model repository's
# launcher sets it from its --grpc-port: nuwa.serving.repository_forward_model)
ENGINE_URL_VARIABLE = "NUWA_ENGINE_URL"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of the contract."""

    name: str
    dtype: type[np.generic]  # np.bytes_ for BYTES
    shape: tuple[int, ...]
    optional: bool = False

    @property
    def triton_dtype(self) -> str:
        """Triton's name of the dtype (``TYPE_`` prefix dropped): ``BYTES``, ``UINT8`` ..."""
        return TRITON_DTYPES[self.dtype]


TRITON_DTYPES: dict[type[np.generic], str] = {
    np.bytes_: "BYTES",
    np.uint8: "UINT8",
    np.int32: "INT32",
    np.int64: "INT64",
    np.float32: "FP32",
}

ONE = (1,)
FRAMES = (-1, -1, -1, 3)  # [T, H, W, 3]

INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("task", np.bytes_, ONE),
    TensorSpec("prompt", np.bytes_, ONE, optional=True),
    TensorSpec("image", np.uint8, (-1, -1, 3), optional=True),
    TensorSpec("sketch", np.uint8, FRAMES, optional=True),
    TensorSpec("video", np.uint8, FRAMES, optional=True),
    TensorSpec("mask", np.uint8, (-1, -1), optional=True),  # non-zero = generate
    TensorSpec("num_frames", np.int32, ONE, optional=True),
    TensorSpec("seed", np.int64, ONE, optional=True),
    TensorSpec("temperature", np.float32, ONE, optional=True),
    TensorSpec("top_k", np.int32, ONE, optional=True),
    TensorSpec("top_p", np.float32, ONE, optional=True),
    TensorSpec("guidance_scale", np.float32, ONE, optional=True),
)
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("frames", np.uint8, FRAMES),
    TensorSpec("seed", np.int64, ONE),  # the seed used: repeats a request that gave none
)
STREAM_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("frames", np.uint8, (1, -1, -1, 3)),
    TensorSpec("frame_index", np.int32, ONE),
)
INPUT_NAMES = tuple(t.name for t in INPUTS)
INPUT_BY_NAME = {t.name: t for t in INPUTS}
