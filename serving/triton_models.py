"""The two models of DESIGN §12 as PyTriton inference callables over one :class:`RequestRunner`.

``nuwa`` answers once per request. PyTriton runs a model instance's requests one after another
(Triton's Python backend waits for each non-decoupled response), so the model gets one instance
per request that may be in the server at once: rows in flight, the queue, and one more, so that
the request past the queue reaches admission and is refused at once instead of waiting inside
Triton. Each instance's callable blocks its own PyTriton handler thread for its request.

``nuwa_stream`` is decoupled: Triton hands it a request and takes the next without waiting, so
one instance serves many requests at once. Its callable is an async generator: the request runs
on a worker thread, its frames come back through an asyncio queue and go out one response each;
PyTriton closes the stream with the final (empty) response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from nuwa.serving.contract import INPUTS, OUTPUTS, STREAM_OUTPUTS, TensorSpec
from nuwa.serving.limits import ServingLimits
from nuwa.serving.request_runner import RequestRunner

Responses = list[dict[str, np.ndarray]]


def instances_for(limits: ServingLimits) -> int:
    """Instances of the ``nuwa`` model: every request admission may hold, plus one."""
    return limits.max_rows + limits.max_queue + 1


def _data(request: Any) -> dict[str, np.ndarray]:
    return dict(getattr(request, "data", request))


def infer_callables(runner: RequestRunner) -> list[Callable[[Sequence[Any]], Responses]]:
    """``nuwa``'s callables, one per instance."""

    def infer(requests: Sequence[Any]) -> Responses:
        responses = []
        for request in requests:
            frames, seed = runner.run(_data(request))
            responses.append({"frames": frames, "seed": np.array([seed], dtype=np.int64)})
        return responses

    return [infer for _ in range(instances_for(runner.limits))]


_DONE = object()


def stream_callable(runner: RequestRunner) -> Callable[[Sequence[Any]], AsyncIterator[Responses]]:
    """``nuwa_stream``'s callable (one instance serves every stream)."""
    workers = ThreadPoolExecutor(
        max_workers=instances_for(runner.limits), thread_name_prefix="nuwa-stream"
    )

    async def infer_stream(requests: Sequence[Any]) -> AsyncIterator[Responses]:
        for request in requests:  # batching is off: one request per call
            async for response in _stream_one(runner, workers, _data(request)):
                yield response

    return infer_stream


async def _stream_one(
    runner: RequestRunner, workers: ThreadPoolExecutor, data: dict[str, np.ndarray]
) -> AsyncIterator[Responses]:
    """One request's frames as they finish, one response each; its error after them."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def sink(index: int, pixels: np.ndarray) -> None:  # on the request's worker thread
        loop.call_soon_threadsafe(queue.put_nowait, (index, pixels))

    job = loop.run_in_executor(workers, runner.run, data, sink)
    job.add_done_callback(lambda _: queue.put_nowait(_DONE))  # after every frame put
    while (item := await queue.get()) is not _DONE:
        index, pixels = item  # type: ignore[misc]
        frame_index = np.array([index], dtype=np.int32)
        yield [{"frames": np.ascontiguousarray(pixels[None]), "frame_index": frame_index}]
    await job  # raises the request's error, after the frames it made


def pytriton_tensors(specs: Sequence[TensorSpec]) -> list[Any]:
    from pytriton.model_config import Tensor

    return [Tensor(name=t.name, dtype=t.dtype, shape=t.shape, optional=t.optional) for t in specs]


def bind_models(triton: Any, runner: RequestRunner) -> None:
    """Bind ``nuwa`` and ``nuwa_stream`` (DESIGN §12) to a ``pytriton.triton.Triton``."""
    from pytriton.model_config import ModelConfig

    from nuwa.serving.contract import MODEL, STREAM_MODEL

    triton.bind(
        model_name=MODEL,
        infer_func=infer_callables(runner),
        inputs=pytriton_tensors(INPUTS),
        outputs=pytriton_tensors(OUTPUTS),
        config=ModelConfig(batching=False),
        strict=True,
    )
    triton.bind(
        model_name=STREAM_MODEL,
        infer_func=stream_callable(runner),
        inputs=pytriton_tensors(INPUTS),
        outputs=pytriton_tensors(STREAM_OUTPUTS),
        config=ModelConfig(batching=False, decoupled=True),
        strict=True,
    )
