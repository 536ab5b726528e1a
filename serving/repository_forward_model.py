"""The ``nuwa`` model: a Python-backend model (this file is its ``1/model.py``) that forwards
each request to ``nuwa_stream`` through BLS and answers with every frame at once.

The Python backend waits for a non-decoupled model's responses, one request per instance at a
time, so ``nuwa`` has one instance (a light process: no engine) per request the engine admits
or queues, plus one; the engine itself lives once, in ``nuwa_stream`` (PyTriton's in
``nuwa serve``, :mod:`nuwa.serving.repository_engine_model` in the model repository). A
request without a seed gets one drawn here, so the answer can report it. An error of the
engine is passed on as its one line (PyTriton's ``nuwa_stream`` sends a traceback ending in it)
with Triton's code for its kind (BLS drops the code, so it is set again from the line): bad
input INVALID_ARG (HTTP 400), busy UNAVAILABLE (HTTP 503), the rest INTERNAL. Both deployments
(``nuwa serve`` and the model repository) load this model.

The Python backend's BLS (the version the PyTriton 0.7 wheel ships; measured) drops an error
response of a decoupled model that follows data responses (with the final flag it carries, so
such a stream never ends): the engine's models end a forwarded request (its BLS request carries
the parameter ``FORWARDED``) that fails after some frames without an error, and this model gets
a stream that ended early. So the model counts the frames
the request should make (its ``parameters``: the model's trained frames, the server's timeout)
and answers a short stream with :class:`~nuwa.serving.errors.RequestTimeoutError` once the
timeout has passed, else :class:`~nuwa.serving.errors.InternalRequestError`.
"""

from __future__ import annotations

# Imported here, once, at load: Triton's Python-backend stub imports asyncio itself after each
# execute() (to ask whether it returned a coroutine), and the first such import ran while the
# stub's other threads took the GIL around its file reads: a stub crashed inside that import
# (faulthandler: a segfault in importlib's _compile_bytecode, right after a bad request's error)
import asyncio  # noqa: F401
import faulthandler
import json
import sys
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend

from nuwa.serving.contract import FORWARDED, INPUT_NAMES, STREAM_MODEL
from nuwa.serving.errors import (
    InternalRequestError,
    RequestError,
    RequestTimeoutError,
    client_line,
    error_line,
    line_of,
    timeout_message,
    triton_code_name,
)
from nuwa.serving.frame_count import request_frames
from nuwa.serving.seeds import draw_seed


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


def _error(text: str) -> Any:
    """An error response of one of our lines, with Triton's code for its kind."""
    code = getattr(pb_utils.TritonError, triton_code_name(text))
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(text, code))


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        # a crash of this process (Triton then answers "Stub process ... is not healthy") leaves
        # every thread's Python stack in the server's log
        faulthandler.enable(file=sys.stderr, all_threads=True)
        config = json.loads(args["model_config"])
        p = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.trained_frames = int(p["trained_frames"])
        self.timeout_s = float(p["timeout_s"])

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._forward(request) for request in requests]

    def _expected_frames(self, request: Any) -> int:
        task = _scalar(request, "task")
        task = task.decode("utf-8", "replace") if isinstance(task, bytes) else str(task)
        num_frames = _scalar(request, "num_frames")
        video = pb_utils.get_input_tensor_by_name(request, "video")
        video_frames = None if video is None else int(video.as_numpy().shape[0])
        num = None if num_frames is None else int(num_frames)
        return request_frames(task, num, video_frames, self.trained_frames)

    def _short_stream(
        self, got: int, expected: int, started: float, other: str = ""
    ) -> RequestError:
        if time.monotonic() - started >= self.timeout_s:
            return RequestTimeoutError(timeout_message(self.timeout_s))
        said = " ".join(other.split())[:200]
        return InternalRequestError(
            f"internal error: the engine ended the request after {got} of {expected} frames "
            + (f"({said})" if said else "(the server's log says why)")
        )

    def _forward(self, request: Any) -> Any:
        started = time.monotonic()
        inputs = []
        for name in INPUT_NAMES:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                inputs.append(tensor)
        seed_given = pb_utils.get_input_tensor_by_name(request, "seed")
        if seed_given is None:
            seed = draw_seed()
            inputs.append(pb_utils.Tensor("seed", np.array([seed], dtype=np.int64)))
        else:
            seed = int(seed_given.as_numpy().reshape(-1)[0])
        stream = pb_utils.InferenceRequest(
            model_name=STREAM_MODEL,
            requested_output_names=["frames", "frame_index"],
            inputs=inputs,
            parameters={FORWARDED: True},
        )
        frames = []
        other = ""  # an error of the stream that is not one of ours (BLS's own)
        # The stream is always read to its final response: left with responses still to come,
        # the BLS response iterator was freed while Triton's Python backend still delivered to
        # it, and the stub crashed soon after (segfaults inside libpython, every time right
        # after a bad request's error response)
        for response in stream.exec(decoupled=True):
            if response.has_error():
                other = other or response.error().message()  # a traceback (PyTriton)
                continue
            tensor = pb_utils.get_output_tensor_by_name(response, "frames")
            if tensor is not None and not other:  # the last response is the empty final one
                frames.append(tensor.as_numpy()[0].copy())  # not a view of the response's memory
        if other and error_line(other) is not None:  # BLS drops the code: set it again
            return _error(line_of(other))
        expected = self._expected_frames(request)
        if len(frames) < expected:  # an error after frames, dropped or not ours (docstring)
            error = self._short_stream(len(frames), expected, started, other)
            return _error(client_line(error))
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("frames", np.stack(frames)),
                pb_utils.Tensor("seed", np.array([seed], dtype=np.int64)),
            ]
        )
