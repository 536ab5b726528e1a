"""A small client of the §12 contract over ``tritonclient`` (HTTP or gRPC), for the tests, the
bench and as the README's example: build a request's inputs from Python values, get the frames
and the seed back, or stream the frames over gRPC.

    import tritonclient.grpc as grpcclient
    from nuwa.serving.client import generate, stream

    client = grpcclient.InferenceServerClient("localhost:8001")
    frames, seed = generate(client, "t2v", prompt="a red square moves left", num_frames=4)
    for index, frame in stream(client, "t2v", prompt="a red square moves left"):
        ...
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from nuwa.serving.contract import INPUT_BY_NAME, MODEL, STREAM_MODEL


def _module_of(client: Any) -> Any:
    """``tritonclient.http`` or ``tritonclient.grpc``: the module of ``client``."""
    import importlib

    return importlib.import_module(type(client).__module__.rsplit(".", 1)[0])


def as_tensor(name: str, value: object) -> np.ndarray:
    """A Python value as the contract's tensor ``name`` (text -> BYTES ``[1]``, numbers ->
    ``[1]`` of the input's dtype, arrays as given)."""
    spec = INPUT_BY_NAME[name]
    if spec.dtype is np.bytes_:
        text = value.encode("utf-8") if isinstance(value, str) else value
        return np.array([text], dtype=np.object_)
    if isinstance(value, np.ndarray):
        return value
    return np.array([value], dtype=spec.dtype)


def infer_inputs(client: Any, task: str, **values: object) -> list[Any]:
    """``InferInput``s of a request (``values``: the contract's other inputs; ``None`` left
    out)."""
    given = {"task": task, **values}
    return tensor_inputs(
        client, {name: as_tensor(name, v) for name, v in given.items() if v is not None}
    )


def tensor_inputs(client: Any, arrays: dict[str, np.ndarray]) -> list[Any]:
    """``InferInput``s of ``client``'s module holding ``arrays`` (name -> the contract's
    tensor) as they are."""
    from tritonclient.utils import np_to_triton_dtype

    module = _module_of(client)
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def generate(client: Any, task: str, **values: object) -> tuple[np.ndarray, int]:
    """One request to ``nuwa``: its frames ``(T, H, W, 3)`` and the seed used."""
    result = client.infer(MODEL, infer_inputs(client, task, **values))
    return result.as_numpy("frames"), int(result.as_numpy("seed")[0])


def stream(client: Any, task: str, **values: object) -> Iterator[tuple[int, np.ndarray]]:
    """One request to ``nuwa_stream`` on a gRPC client: ``(frame_index, (H, W, 3) frame)`` as
    each frame arrives; a failed request raises its error (after the frames it made). Leaving
    the loop early cancels the request (where the server can tell: the model repository's)."""
    return stream_inputs(client, infer_inputs(client, task, **values))


def stream_inputs(
    client: Any, inputs: list[Any], timeout_s: float | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`stream` of a request's ``InferInput``s; ``timeout_s`` bounds the whole stream
    (gRPC's deadline: past it the stream fails with DEADLINE_EXCEEDED)."""
    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(
        callback=lambda result, error: responses.put((result, error)), stream_timeout=timeout_s
    )
    ended = False
    try:
        client.async_stream_infer(STREAM_MODEL, inputs, enable_empty_final_response=True)
        while True:
            result, error = responses.get()
            if error is not None:
                ended = True  # the server ended it with its error
                raise error
            final = result.get_response().parameters.get("triton_final_response")
            frames = result.as_numpy("frames")
            if frames is not None:
                yield int(result.as_numpy("frame_index")[0]), frames[0]
            if final is not None and final.bool_param:
                ended = True
                return
    finally:
        client.stop_stream(cancel_requests=not ended)
