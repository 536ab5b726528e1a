"""Where ``nuwa_generate``'s work runs (runtime/cpp/frame_handoff.hpp): the decode loop on a
worker thread while the calling thread VQ-decodes each finished frame and calls the frame
callback; in turn on the calling thread where it may use only one core. Either way: the callback
runs on the calling thread, frames come in order and equal the other way's, a callback's cancel
stops the decode loop (and returns NUWA_ERROR_CANCELLED), an error on either thread comes back
as the call's status and this thread's message, and the stats count both threads' runs."""

from __future__ import annotations

import ctypes
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from . import capi

TOKENS_PER_FRAME = 16  # the tiny model's 4x4 grid
LONG = 256  # frames: ~0.25 s of decode loop, far more than one frame's decoding and callback


@dataclass
class Call:
    status: int
    message: str
    frames: np.ndarray
    tokens: np.ndarray
    seen: list[int] = field(default_factory=list)  # frames, in the callback's order
    threads: set[int] = field(default_factory=set)  # the threads the callback ran on
    stats: capi.GenerateStats | None = None


def generate(
    lib, model, num_frames: int, stop_at: int | None = None, prompt: bytes = b"a ball moves left"
) -> Call:
    """One t2v call with a callback recording its frames and threads (returning non-zero at
    frame ``stop_at``)."""
    request, _keep = capi.make_request(lib, "t2v", [prompt], num_frames, 1, 0.0, 2.0)
    shape = capi.OutputShape()
    shape.struct_size = ctypes.sizeof(capi.OutputShape)
    capi.check(lib, lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape)))
    frames = np.zeros(shape.frame_bytes, dtype=np.uint8)
    tokens = np.zeros(shape.token_count, dtype=np.int64)
    call = Call(0, "", frames, tokens)

    def on_frame(_user: object, frame: int, _pixels: object, _rows: int, _size: int) -> int:
        call.seen.append(frame)
        call.threads.add(threading.get_ident())
        return 1 if frame == stop_at else 0

    callback = capi.FRAME_CALLBACK(on_frame)
    call.status = capi.generate_into(lib, model, request, frames, tokens, callback)
    call.message = lib.nuwa_last_error().decode()
    call.stats = capi.last_stats(lib)
    return call


@contextmanager
def one_core() -> Iterator[None]:
    """This thread allowed one core only (Linux: the calling thread's affinity mask)."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def test_callback_runs_on_the_calling_thread_in_frame_order(lib, tiny_c_model) -> None:
    results: list[Call] = []
    caller = threading.Thread(target=lambda: results.append(generate(lib, tiny_c_model, 6)))
    caller.start()
    caller.join()
    call = results[0]
    assert call.status == capi.NUWA_OK, call.message
    assert call.seen == list(range(6))
    assert call.threads == {caller.ident}
    assert call.stats is not None and call.stats.step_runs == 6 * TOKENS_PER_FRAME
    # every run of both threads counted once: the conditional and unconditional rows' text
    # encoder (side by side), the steps (the worker), one VQ decoder run per frame (this thread)
    assert call.stats.ort_runs == 2 + call.stats.step_runs + 6


def test_one_core_runs_in_turn_with_the_same_result(lib, tiny_c_model) -> None:
    free = generate(lib, tiny_c_model, 5)
    with one_core():
        pinned = generate(lib, tiny_c_model, 5)
    for call in (free, pinned):
        assert call.status == capi.NUWA_OK, call.message
        assert call.seen == list(range(5))
        assert call.threads == {threading.get_ident()}
    np.testing.assert_array_equal(pinned.tokens, free.tokens)
    np.testing.assert_array_equal(pinned.frames, free.frames)
    assert pinned.stats is not None and free.stats is not None
    assert pinned.stats.step_runs == free.stats.step_runs == 5 * TOKENS_PER_FRAME
    assert pinned.stats.ort_runs == free.stats.ort_runs


@pytest.mark.parametrize("stop_at", [0, 2])
def test_cancel_at_frame_k_stops_the_decode_loop(lib, tiny_c_model, stop_at: int) -> None:
    call = generate(lib, tiny_c_model, LONG, stop_at=stop_at)
    assert call.status == capi.NUWA_ERROR_CANCELLED
    assert call.message == "cancelled by the frame callback"
    assert call.seen == list(range(stop_at + 1))
    assert call.stats is not None
    # the worker's steps counted; it stopped long before the end (it may be a frame or so ahead)
    assert (stop_at + 1) * TOKENS_PER_FRAME <= call.stats.step_runs < LONG * TOKENS_PER_FRAME
    with one_core():  # in turn: the loop stops right at the frame's end
        pinned = generate(lib, tiny_c_model, LONG, stop_at=stop_at)
    assert pinned.status == capi.NUWA_ERROR_CANCELLED and pinned.seen == call.seen
    assert pinned.stats is not None
    assert pinned.stats.step_runs == (stop_at + 1) * TOKENS_PER_FRAME


@pytest.fixture
def broken_export(tiny_export_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A copy of the tiny export with one graph file replaced by bytes ONNX Runtime refuses."""

    def make(graph_file: str) -> Path:
        export = tmp_path / graph_file
        shutil.copytree(tiny_export_dir, export)
        (export / graph_file).write_bytes(b"not an onnx model")
        return export

    return make


@pytest.mark.parametrize(
    ("graph_file", "thread"),
    [
        ("decoder_step.text.cpu.onnx", "the decode loop's"),  # its session made on the worker
        ("vq_decoder.onnx", "the calling"),  # the first finished frame's decoding fails
    ],
)
def test_an_error_on_either_thread_is_the_calls(
    lib, broken_export, graph_file: str, thread: str
) -> None:
    model = capi.open_model(lib, broken_export(graph_file), threads=1)
    try:
        for pin in (False, True):
            with one_core() if pin else nullcontext():
                call = generate(lib, model, LONG)
            assert call.status == capi.NUWA_ERROR_BACKEND, (thread, call.message)
            assert call.message.startswith("onnxruntime cannot load "), call.message
            assert f"{graph_file}: Load model from " in call.message, call.message
            assert call.seen == []
            assert call.stats is not None
            assert call.stats.step_runs < LONG * TOKENS_PER_FRAME  # the loop stopped early
    finally:
        lib.nuwa_close(model)
