"""The two models of DESIGN §12 in the in-process Triton, over one :class:`RequestRunner`.

``nuwa_stream`` is the engine's model, bound through PyTriton, decoupled: Triton hands it a
request and takes the next without waiting, so its one instance serves every request at once.
Its callable is an async generator: the request runs on a worker thread, its frames come back
through an asyncio queue and go out one response each; PyTriton closes the stream with the final
(empty) response.

``nuwa`` answers once per request, and Triton's Python backend runs a non-decoupled instance's
requests one after another, so it needs one instance per request the server may hold (rows in
flight, the queue, and one more, so that the request past the queue reaches admission and is
refused at once instead of waiting inside Triton). PyTriton 0.7 cannot start many instances
reliably (each waits only 1 s for its model's first instance's handshake, which a loaded
machine misses), and it answers every error as INTERNAL; so ``nuwa`` is the model repository's
forwarding model (:mod:`nuwa.serving.repository_forward_model`: light processes that pass each
request to ``nuwa_stream`` over gRPC), loaded into the same server through Triton's
model-load API once ``nuwa_stream`` is ready. The two deployments share that model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from nuwa.serving.contract import (
    INPUTS,
    MODEL,
    STREAM_MODEL,
    STREAM_OUTPUTS,
    TensorSpec,
)
from nuwa.serving.limits import ServingLimits
from nuwa.serving.request_runner import RequestRunner

Responses = list[dict[str, np.ndarray]]


def instances_for(limits: ServingLimits) -> int:
    """Instances of the ``nuwa`` model: every request admission may hold, plus one."""
    return limits.max_rows + limits.max_queue + 1


def _data(request: Any) -> dict[str, np.ndarray]:
    return dict(getattr(request, "data", request))


_DONE = object()


def stream_callable(runner: RequestRunner) -> Callable[[Sequence[Any]], AsyncIterator[Responses]]:
    """``nuwa_stream``'s callable (one instance serves every stream)."""
    workers = ThreadPoolExecutor(
        max_workers=instances_for(runner.limits), thread_name_prefix="nuwa-stream"
    )

    async def infer_stream(requests: Sequence[Any]) -> AsyncIterator[Responses]:
        for request in requests:  # batching is off: one request per call
            async for response in _stream_one(runner, workers, request):
                yield response

    return infer_stream


async def _stream_one(
    runner: RequestRunner, workers: ThreadPoolExecutor, request: Any
) -> AsyncIterator[Responses]:
    """One request's frames as they finish, one response each; its error after them."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def sink(index: int, pixels: np.ndarray) -> None:  # on the request's worker thread
        loop.call_soon_threadsafe(queue.put_nowait, (index, pixels))

    job = loop.run_in_executor(workers, runner.run, _data(request), sink)
    job.add_done_callback(lambda _: queue.put_nowait(_DONE))  # after every frame put
    while (item := await queue.get()) is not _DONE:
        index, pixels = item  # type: ignore[misc]
        frame_index = np.array([index], dtype=np.int32)
        yield [{"frames": np.ascontiguousarray(pixels[None]), "frame_index": frame_index}]
    await job  # raises the request's error, after the frames it made


def pytriton_tensors(specs: Sequence[TensorSpec]) -> list[Any]:
    from pytriton.model_config import Tensor

    return [Tensor(name=t.name, dtype=t.dtype, shape=t.shape, optional=t.optional) for t in specs]


def bind_stream_model(triton: Any, runner: RequestRunner) -> None:
    """Bind ``nuwa_stream`` (DESIGN §12) to a ``pytriton.triton.Triton``."""
    from pytriton.model_config import ModelConfig

    triton.bind(
        model_name=STREAM_MODEL,
        infer_func=stream_callable(runner),
        inputs=pytriton_tensors(INPUTS),
        outputs=pytriton_tensors(STREAM_OUTPUTS),
        config=ModelConfig(batching=False, decoupled=True),
        strict=True,
    )


def load_forward_model(
    http_url: str,
    grpc_url: str,
    limits: ServingLimits,
    trained_frames: int,
    access_token: str | None,
    load_number: int = 0,
) -> None:
    """Load ``nuwa`` (the forwarding model, one instance per request the server may hold) into
    the running server at ``http_url`` through Triton's model-load API (which PyTriton
    restricts to ``access_token``) as version ``load_number + 1``. A later number reloads it:
    Triton loads the new version's instances, which serve from when they are ready, and then
    unloads the old version (a load of unchanged configuration and files would be skipped)."""
    import tritonclient.http as httpclient

    from nuwa.serving.model_configs import (
        MODEL_FILES,
        config_json,
        forward_parameters,
        model_config,
    )

    parameters = forward_parameters(limits.timeout_s, trained_frames, grpc_url)
    config = config_json(model_config(MODEL, instances_for(limits), parameters))
    files = {f"file:{load_number + 1}/model.py": MODEL_FILES[MODEL].read_bytes()}
    client = httpclient.InferenceServerClient(http_url, network_timeout=300.0)
    try:
        headers = {"triton-access-token": access_token} if access_token else None
        client.load_model(MODEL, headers=headers, config=config, files=files)
    finally:
        client.close()
