"""The ``nuwa`` model of the Triton model repository (``nuwa serve --write-repository``): a
Python-backend model (this file is its ``1/model.py``) that forwards each request to
``nuwa_stream`` through BLS and answers with every frame at once.

The Python backend waits for a non-decoupled model's responses, one request per instance at a
time, so ``nuwa`` has one instance (a light process: no engine) per request the engine admits
or queues, plus one; the engine itself lives once, in ``nuwa_stream``
(:mod:`nuwa.serving.repository_engine_model`). A request without a seed gets one drawn here, so
the answer can report it. An error of the engine is passed on with its message and code (BLS
drops the code, so it is set again from the message's kind).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend

from nuwa.serving.contract import INPUT_NAMES, STREAM_MODEL
from nuwa.serving.errors import triton_code_name
from nuwa.serving.seeds import draw_seed


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._forward(request) for request in requests]

    def _forward(self, request: Any) -> Any:
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
        )
        frames = []
        for response in stream.exec(decoupled=True):
            if response.has_error():  # BLS drops the code: set it again from the message
                text = response.error().message()
                code = getattr(pb_utils.TritonError, triton_code_name(text))
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(text, code))
            tensor = pb_utils.get_output_tensor_by_name(response, "frames")
            if tensor is not None:  # the last response is the empty final one
                frames.append(tensor.as_numpy()[0])
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("frames", np.stack(frames)),
                pb_utils.Tensor("seed", np.array([seed], dtype=np.int64)),
            ]
        )
