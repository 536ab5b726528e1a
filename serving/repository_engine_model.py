"""The ``nuwa_stream`` model of the Triton model repository (``nuwa serve --write-repository``):
a Python-backend model (this file is its ``1/model.py``) that holds the engine.

Triton's Python backend runs each model instance as a process of its own, so the engine lives in
one instance of this decoupled model: ``execute`` hands every request to a worker thread and
returns at once, so requests run concurrently on one pipeline (and share its engine); each
sends one response per finished frame, then the final flag. ``nuwa`` reaches it over gRPC
(:mod:`nuwa.serving.repository_forward_model`). Errors go out as the request's error response,
with Triton's code (bad input: INVALID_ARG, HTTP 400; busy: UNAVAILABLE) and the one line
``nuwa.serving.errors.<Kind>: <message>``. A request whose client went away is ended where
Triton tells (``is_cancelled``). The model's settings are the ``parameters`` of its
``config.pbtxt``.
"""

from __future__ import annotations

import faulthandler
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend

from nuwa.serving.contract import INPUT_NAMES
from nuwa.serving.errors import (
    RequestCancelledError,
    RequestError,
    client_line,
    triton_code_name,
)
from nuwa.serving.limits import ServingLimits
from nuwa.serving.request_runner import RequestRunner
from nuwa.serving.server import ServerOptions, load_runner
from nuwa.serving.triton_models import instances_for


def settings_of(model_config: dict[str, Any]) -> ServerOptions:
    """The ``parameters`` of the model's config (written by the repository writer)."""
    p = {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}
    limits = ServingLimits(
        int(p["max_rows"]), int(p["max_queue"]), int(p["max_frames"]), float(p["timeout_s"])
    )
    return ServerOptions(
        model=Path(p["model"]) if p.get("model") else None,
        backend=p["backend"],
        precision=p.get("precision") or None,
        device=p.get("device") or None,
        limits=limits,
    )


def triton_error(text: str) -> Any:
    """A Python-backend error of one of our error lines, with Triton's code for its kind."""
    return pb_utils.TritonError(text, getattr(pb_utils.TritonError, triton_code_name(text)))


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        faulthandler.enable(file=sys.stderr, all_threads=True)  # a crash's stacks in the log
        options = settings_of(json.loads(args["model_config"]))
        self.runner: RequestRunner = load_runner(options, log=pb_utils.Logger.log_info)
        self.workers = ThreadPoolExecutor(
            max_workers=instances_for(self.runner.limits), thread_name_prefix="nuwa-engine"
        )

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            inputs = {}
            for name in INPUT_NAMES:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    inputs[name] = tensor.as_numpy()
            self.workers.submit(self._serve, request, inputs)
        return None

    def _serve(self, request: Any, inputs: dict[str, np.ndarray]) -> None:
        sender = request.get_response_sender()
        sent = 0

        def send_frame(index: int, pixels: np.ndarray) -> None:
            nonlocal sent
            frames = pb_utils.Tensor("frames", np.ascontiguousarray(pixels[None]))
            frame_index = pb_utils.Tensor("frame_index", np.array([index], dtype=np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[frames, frame_index]))
            sent += 1

        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            self.runner.run(inputs, send_frame, cancelled=request.is_cancelled)
        except RequestCancelledError:
            pb_utils.Logger.log_info(f"nuwa_stream: cancelled by its client after {sent} frames")
            sender.send(flags=final)  # Triton still waits for the final flag
            return
        except RequestError as exc:
            error = triton_error(client_line(exc))
            sender.send(pb_utils.InferenceResponse(error=error), flags=final)
            return
        sender.send(flags=final)

    def finalize(self) -> None:
        self.workers.shutdown(wait=True, cancel_futures=True)
