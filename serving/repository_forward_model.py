"""The ``nuwa`` model: a Python-backend model (this file is its ``1/model.py``) that forwards
each request to ``nuwa_stream`` of its own server over gRPC and answers with every frame at once.

The Python backend waits for a non-decoupled model's responses, one request per instance at a
time, so ``nuwa`` has one instance (a light process: no engine) per request the engine admits
or queues, plus one; the engine itself lives once, in ``nuwa_stream`` (PyTriton's in
``nuwa serve``, :mod:`nuwa.serving.repository_engine_model` in the model repository). A
request without a seed gets one drawn here, so the answer can report it. An error of the
engine is passed on as its one line (PyTriton's ``nuwa_stream`` sends a traceback ending in it)
with Triton's code for its kind: bad input INVALID_ARG (HTTP 400), busy UNAVAILABLE (HTTP 503),
the rest INTERNAL. Both deployments (``nuwa serve`` and the model repository) load this model.

Why gRPC and not BLS (the Python backend's in-process requests): with decoupled BLS the
forwarding stubs crashed under concurrent load (measured with the Triton 2.51 of the PyTriton
0.7 wheel: about one segfault per 400 forwarded requests at 8 clients, inside ``libpython``
at varying places: memory corrupted in the stub; upstream reports the same under concurrent
BLS load up to Triton 2.69, triton-inference-server/server#8882), and BLS dropped an error
that followed frames. Over gRPC the stream is the one any client gets: its error comes after its
frames, and the stub runs no BLS. The address is the configuration's ``engine_url`` (written by
``nuwa serve``), or :data:`~nuwa.serving.contract.ENGINE_URL_VARIABLE` where set (the model
repository's launcher sets it from its ``--grpc-port``). A stream that ends short of the frames
the request should make without an error (its parameters say how many) is answered as
:class:`~nuwa.serving.errors.RequestTimeoutError` past the timeout, else
:class:`~nuwa.serving.errors.InternalRequestError`.
"""

from __future__ import annotations

# imported at load, not by Triton's stub after the first execute() (it asks whether execute
# returned a coroutine)
import asyncio  # noqa: F401
import faulthandler
import json
import os
import sys
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from nuwa.serving.client import stream_inputs, tensor_inputs
from nuwa.serving.contract import ENGINE_URL_VARIABLE, INPUT_NAMES
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

# a stream's deadline past the request timeout (which the engine enforces itself)
STREAM_GRACE_S = 30.0


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
        url = os.environ.get(ENGINE_URL_VARIABLE) or p["engine_url"]
        self.engine = grpcclient.InferenceServerClient(url)

    def finalize(self) -> None:
        self.engine.close()

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._forward(request) for request in requests]

    def _expected_frames(self, arrays: dict[str, np.ndarray]) -> int:
        """The frames a request of input ``arrays`` makes."""
        task = arrays["task"].reshape(-1)[0]
        task = task.decode("utf-8", "replace") if isinstance(task, bytes) else str(task)
        num = int(arrays["num_frames"].reshape(-1)[0]) if "num_frames" in arrays else None
        video_frames = int(arrays["video"].shape[0]) if "video" in arrays else None
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
        arrays = {}
        for name in INPUT_NAMES:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                arrays[name] = tensor.as_numpy()
        if "seed" not in arrays:
            arrays["seed"] = np.array([draw_seed()], dtype=np.int64)
        seed = int(arrays["seed"].reshape(-1)[0])
        inputs = tensor_inputs(self.engine, arrays)
        frames = []
        other = ""  # the stream's error (nuwa_stream's or gRPC's)
        try:
            for _, frame in stream_inputs(self.engine, inputs, self.timeout_s + STREAM_GRACE_S):
                frames.append(frame)
        except InferenceServerException as exc:
            other = exc.message() or str(exc)
        if other and error_line(other) is not None:  # PyTriton's: a traceback ending in it
            return _error(line_of(other))
        expected = self._expected_frames(arrays)
        if len(frames) < expected:  # ended early, without an error of ours (docstring)
            error = self._short_stream(len(frames), expected, started, other)
            return _error(client_line(error))
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("frames", np.stack(frames)),
                pb_utils.Tensor("seed", np.array([seed], dtype=np.int64)),
            ]
        )
