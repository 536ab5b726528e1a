"""One request, start to end: decode its tensors, admit it, run it as one ``Pipeline`` call with
a deadline, hand back its frames (all at once, or each as it is finished).

Each request is one ``pipeline(...)`` call on the thread that serves it; the pipeline accepts
concurrent calls, so requests in flight share the engine. The step callback ends a request that
runs past its deadline (an exception raised in the callback ends that call alone). Streaming
sends frames in order, each once, as the pipeline decoded them: a frame-end event carries every
frame finished so far (a video prediction's given frames arrive with the prefill's), and any
frame not yet sent goes out when the call returns.

Every failure comes out as one of :mod:`nuwa.serving.errors`'s classes: bad input carries the
runtime's one-line message; anything else raised inside the engine is that request's failure
alone (:class:`~nuwa.serving.errors.InternalRequestError`), never the server's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import numpy as np

from nuwa.runtime.generation_result import StepEvent
from nuwa.runtime.pipeline import Pipeline
from nuwa.serving.admission import Admission
from nuwa.serving.errors import (
    InternalRequestError,
    InvalidRequestError,
    RequestCancelledError,
    RequestError,
    RequestTimeoutError,
    timeout_message,
)
from nuwa.serving.limits import ServingLimits
from nuwa.serving.request_decoding import ServingRequest, decode_request
from nuwa.spec.errors import NuwaInputError

LOG = logging.getLogger("nuwa.serving")

FrameSink = Callable[[int, np.ndarray], None]  # (frame index, (H, W, 3) uint8)
# The deadline and cancellation are checked every this many tokens and at every frame end (the
# callback's events, sent to this request's thread by the shared decode loop): not one event
# per token, which would cost every request in the batch a thread wake-up per step.
CHECK_EVERY_TOKENS = 16


class RequestRunner:
    """Serves requests on one pipeline under one set of limits; safe to call from many
    threads."""

    def __init__(self, pipeline: Pipeline, limits: ServingLimits) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.admission = Admission(limits.max_rows, limits.max_queue)

    def decode(self, inputs: Mapping[str, object]) -> ServingRequest:
        return decode_request(
            inputs, self.pipeline.spec, self.pipeline.generation_config, self.limits.max_frames
        )

    def run(
        self,
        inputs: Mapping[str, object],
        on_frame: FrameSink | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Run one request: its frames ``(T, H, W, 3)`` uint8 and the seed used. With
        ``on_frame``, every frame is also handed over, in order, as soon as it is finished;
        ``cancelled`` (where the server can tell that nobody waits any more) ends it early."""
        try:
            return self._run(inputs, on_frame, cancelled)
        except NuwaInputError as exc:
            raise InvalidRequestError(str(exc)) from None
        except RequestError:
            raise
        except Exception as exc:  # inside the engine: this request fails, the server goes on
            LOG.exception("request failed inside the engine")
            raise InternalRequestError(f"internal error: {type(exc).__name__}: {exc}") from None

    def _run(
        self,
        inputs: Mapping[str, object],
        on_frame: FrameSink | None,
        cancelled: Callable[[], bool] | None,
    ) -> tuple[np.ndarray, int]:
        deadline = time.monotonic() + self.limits.timeout_s
        request = self.decode(inputs)
        stream = FrameStream(on_frame) if on_frame is not None else None

        def on_step(event: StepEvent) -> None:
            if time.monotonic() > deadline:
                raise RequestTimeoutError(timeout_message(self.limits.timeout_s))
            if cancelled is not None and cancelled():
                raise RequestCancelledError("the client cancelled the request")
            if stream is not None and event.frame is not None:
                stream.finished(event)

        with self.admission.admitted(request.rows, deadline):
            result = self.pipeline(
                **request.call,
                callback=on_step,
                callback_steps=CHECK_EVERY_TOKENS,
                stream_frames=stream is not None,
                progress=False,
            )
        frames = result.frames[0]
        if stream is not None:
            stream.rest(frames)
        return frames, request.seed


class FrameStream:
    """Hands a request's frames to ``sink`` in order, each once (the module docstring)."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink
        self.sent = 0  # frames handed over so far

    def finished(self, event: StepEvent) -> None:
        """A frame-end event of a ``stream_frames`` call: every finished frame not sent yet."""
        finished = event.finished_frames
        assert finished is not None, "the pipeline call must stream frames"
        for index in range(self.sent, len(finished)):
            self.sink(index, finished[index][0])
        self.sent = max(self.sent, len(finished))

    def rest(self, frames: np.ndarray) -> None:
        """After the call: every frame not handed over yet."""
        for index in range(self.sent, frames.shape[0]):
            self.sink(index, frames[index])
        self.sent = frames.shape[0]
