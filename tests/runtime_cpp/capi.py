"""ctypes bindings of ``include/nuwa/nuwa.h`` for the tests: the structs, the entry points, and
:func:`generate`, which runs one request and returns its tokens, frames and streamed frames."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NUWA_OK = 0
NUWA_ERROR_INPUT = 1
NUWA_ERROR_MODEL = 2
NUWA_ERROR_BACKEND = 3
NUWA_ERROR_CANCELLED = 4

FRAME_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_uint8),
    ctypes.c_int,
    ctypes.c_int,
)


class OpenOptionsAbi2(ctypes.Structure):
    """nuwa_open_options as ABI 2 first shipped it (threads only): still opened."""

    _fields_ = [("struct_size", ctypes.c_size_t), ("threads", ctypes.c_int)]


class OpenOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("threads", ctypes.c_int),
        ("device", ctypes.c_char_p),
        ("trt_plugin_library", ctypes.c_char_p),
        ("trt_cache_dir", ctypes.c_char_p),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("image_size", ctypes.c_int),
        ("frames", ctypes.c_int),
        ("grid_h", ctypes.c_int),
        ("grid_w", ctypes.c_int),
        ("vocab_size", ctypes.c_int),
        ("max_prompt_bytes", ctypes.c_int),
    ]


class Pixels(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_uint8)),
        ("format", ctypes.c_int),
        ("frames", ctypes.c_int),
        ("height", ctypes.c_int),
        ("width", ctypes.c_int),
    ]


class Mask(ctypes.Structure):
    _fields_ = [
        ("has_rect", ctypes.c_int),
        ("x0", ctypes.c_int),
        ("y0", ctypes.c_int),
        ("x1", ctypes.c_int),
        ("y1", ctypes.c_int),
        ("data", ctypes.POINTER(ctypes.c_uint8)),
        ("height", ctypes.c_int),
        ("width", ctypes.c_int),
        ("channels", ctypes.c_int),
    ]


PIXELS_RGB = 0
PIXELS_CLASS_IDS = 1
SET_TEMPERATURE, SET_GUIDANCE, SET_TOP_K, SET_TOP_P, SET_SEED = 1, 2, 4, 8, 16


class Request(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("task", ctypes.c_char_p),
        ("prompts", ctypes.POINTER(ctypes.c_char_p)),
        ("num_prompts", ctypes.c_size_t),
        ("num_frames", ctypes.c_int),
        ("batch", ctypes.c_int),
        ("set_options", ctypes.c_uint),
        ("temperature", ctypes.c_double),
        ("guidance_scale", ctypes.c_double),
        ("top_k", ctypes.c_int),
        ("top_p", ctypes.c_double),
        ("sketch", Pixels),
        ("image", Pixels),
        ("video", Pixels),
        ("mask", Mask),
        ("seed", ctypes.c_uint64),
    ]


class OutputShape(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("rows", ctypes.c_int),
        ("frames", ctypes.c_int),
        ("image_size", ctypes.c_int),
        ("grid_h", ctypes.c_int),
        ("grid_w", ctypes.c_int),
        ("frame_bytes", ctypes.c_size_t),
        ("token_count", ctypes.c_size_t),
    ]


class GenerateStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("total_seconds", ctypes.c_double),
        ("ort_seconds", ctypes.c_double),
        ("step_seconds", ctypes.c_double),
        ("ort_runs", ctypes.c_longlong),
        ("step_runs", ctypes.c_longlong),
    ]


def load(path: Path) -> ctypes.CDLL:
    """The library with every entry point's signature declared."""
    lib = ctypes.CDLL(str(path))
    p = ctypes.POINTER
    sigs = {
        "nuwa_version": ([], ctypes.c_char_p),
        "nuwa_abi_version": ([], ctypes.c_int),
        "nuwa_last_error": ([], ctypes.c_char_p),
        "nuwa_last_warnings": ([], ctypes.c_char_p),
        "nuwa_open_options_init": ([p(OpenOptions)], None),
        "nuwa_open": ([ctypes.c_char_p, p(OpenOptions), p(ctypes.c_void_p)], ctypes.c_int),
        "nuwa_close": ([ctypes.c_void_p], None),
        "nuwa_model_get_info": ([ctypes.c_void_p, p(ModelInfo)], ctypes.c_int),
        "nuwa_request_init": ([p(Request)], None),
        "nuwa_request_shape": ([ctypes.c_void_p, p(Request), p(OutputShape)], ctypes.c_int),
        "nuwa_last_generate_stats": ([p(GenerateStats)], ctypes.c_int),
        "nuwa_generate": (
            [
                ctypes.c_void_p,
                p(Request),
                p(ctypes.c_uint8),
                ctypes.c_size_t,
                p(ctypes.c_int64),
                ctypes.c_size_t,
                FRAME_CALLBACK,
                ctypes.c_void_p,
            ],
            ctypes.c_int,
        ),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


class CApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check(lib: ctypes.CDLL, status: int) -> None:
    if status != NUWA_OK:
        raise CApiError(status, lib.nuwa_last_error().decode())


def open_model(
    lib: ctypes.CDLL, export_dir: Path | str, threads: int = 1, device: str | None = None
) -> ctypes.c_void_p:
    options = OpenOptions()
    lib.nuwa_open_options_init(ctypes.byref(options))
    options.threads = threads
    options.device = None if device is None else device.encode()
    handle = ctypes.c_void_p()
    check(lib, lib.nuwa_open(str(export_dir).encode(), ctypes.byref(options), ctypes.byref(handle)))
    return handle


def pixels_of(array: np.ndarray | None) -> tuple[Pixels, np.ndarray | None]:
    """A picture as the C struct: uint8 ``(..., 3)`` is RGB (the Python runtime's rule), other
    integer arrays class ids; ``(H, W[, 3])`` is one frame."""
    out = Pixels()
    if array is None:
        return out, None
    rgb = array.dtype == np.uint8 and array.ndim >= 3 and array.shape[-1] == 3
    data = np.ascontiguousarray(array, dtype=np.uint8)
    if data.ndim == (3 if rgb else 2):
        data = data[None]
    out.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    out.format = PIXELS_RGB if rgb else PIXELS_CLASS_IDS
    out.frames, out.height, out.width = (int(v) for v in data.shape[:3])
    return out, data


def mask_of(mask: object) -> tuple[Mask, np.ndarray | None]:
    """A rectangle (tuple or ``"x0,y0,x1,y1"``) or a mask array ``(H, W)`` / ``(H, W, 3|4)``."""
    out = Mask()
    if mask is None:
        return out, None
    if isinstance(mask, str):
        mask = tuple(int(v) for v in mask.split(","))
    if isinstance(mask, tuple):
        out.has_rect = 1
        out.x0, out.y0, out.x1, out.y1 = mask
        return out, None
    assert isinstance(mask, np.ndarray)
    data = np.ascontiguousarray(mask, dtype=np.uint8)
    out.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    out.height, out.width = (int(v) for v in data.shape[:2])
    out.channels = 1 if data.ndim == 2 else int(data.shape[2])
    return out, data


def make_request(
    lib: ctypes.CDLL,
    task: str | None,
    prompts: list[bytes | None] | None,
    num_frames: int = 0,
    batch: int = 1,
    temperature: float | None = 0.0,
    guidance_scale: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    sketch: np.ndarray | None = None,
    image: np.ndarray | None = None,
    video: np.ndarray | None = None,
    mask: object = None,
    seed: int | None = None,
) -> tuple[Request, object]:
    """The request and what its pointers point at (keep it alive while the request is used).
    A sampling option left ``None`` is the model's default (its bit in ``set_options`` unset);
    ``seed`` ``None``: fresh entropy."""
    request = Request()
    lib.nuwa_request_init(ctypes.byref(request))
    task_bytes = None if task is None else task.encode()
    request.task = task_bytes
    array = None
    if prompts is not None:
        array = (ctypes.c_char_p * max(len(prompts), 1))(*prompts)
        request.prompts = ctypes.cast(array, ctypes.POINTER(ctypes.c_char_p))
        request.num_prompts = len(prompts)
    request.num_frames = num_frames
    request.batch = batch
    for bit, name, value in (
        (SET_TEMPERATURE, "temperature", temperature),
        (SET_GUIDANCE, "guidance_scale", guidance_scale),
        (SET_TOP_K, "top_k", top_k),
        (SET_TOP_P, "top_p", top_p),
        (SET_SEED, "seed", seed),
    ):
        if value is not None:
            request.set_options |= bit
            setattr(request, name, value)
    request.sketch, sketch_data = pixels_of(sketch)
    request.image, image_data = pixels_of(image)
    request.video, video_data = pixels_of(video)
    request.mask, mask_data = mask_of(mask)
    return request, (task_bytes, array, sketch_data, image_data, video_data, mask_data)


@dataclass
class CResult:
    tokens: np.ndarray  # (B, T, h, w) int64
    frames: np.ndarray  # (B, T, S, S, 3) uint8
    streamed: dict[int, np.ndarray]  # frame -> (B, S, S, 3) as the callback saw it


def request_for_call(
    lib: ctypes.CDLL, call: dict, temperature: float | None, seed: int | None = None
) -> tuple[Request, object]:
    """:func:`make_request` for a Python ``Pipeline`` call's keyword arguments ``call`` (task,
    prompt, inputs, num_frames, batch, guidance and top-k/top-p), at ``temperature``."""
    prompt = call.get("prompt")
    prompts = None if prompt is None else [prompt] if isinstance(prompt, str) else list(prompt)
    return make_request(
        lib,
        call["task"],
        None if prompts is None else [p.encode() for p in prompts],
        call.get("num_frames") or 0,
        call.get("batch", 1),
        temperature,
        call.get("guidance_scale"),
        call.get("top_k"),
        call.get("top_p"),
        sketch=call.get("sketch"),
        image=call.get("image"),
        video=call.get("video"),
        mask=call.get("mask"),
        seed=seed,
    )


def generate(lib: ctypes.CDLL, model: ctypes.c_void_p, request: Request) -> CResult:
    shape = OutputShape()
    shape.struct_size = ctypes.sizeof(OutputShape)
    check(lib, lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape)))
    b, t, s = shape.rows, shape.frames, shape.image_size
    frames = np.zeros((b, t, s, s, 3), dtype=np.uint8)
    tokens = np.zeros((b, t, shape.grid_h, shape.grid_w), dtype=np.int64)
    assert frames.nbytes == shape.frame_bytes and tokens.size == shape.token_count
    streamed: dict[int, np.ndarray] = {}

    def on_frame(_user: object, frame: int, pixels: object, rows: int, size: int) -> int:
        data = np.ctypeslib.as_array(pixels, shape=(rows, size, size, 3))
        streamed[frame] = data.copy()
        return 0

    check(lib, generate_into(lib, model, request, frames, tokens, FRAME_CALLBACK(on_frame)))
    return CResult(tokens, frames, streamed)


def generate_into(
    lib: ctypes.CDLL,
    model: ctypes.c_void_p,
    request: Request,
    frames: np.ndarray,
    tokens: np.ndarray | None = None,
    callback: Any = None,
) -> int:
    """``nuwa_generate`` into NumPy buffers (``tokens`` None: not asked for; ``callback`` None:
    none); its status."""
    return lib.nuwa_generate(
        model,
        ctypes.byref(request),
        frames.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
        frames.nbytes,
        None if tokens is None else tokens.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
        0 if tokens is None else tokens.size,
        FRAME_CALLBACK() if callback is None else callback,
        None,
    )


def last_stats(lib: ctypes.CDLL) -> GenerateStats:
    """This thread's last nuwa_generate's times and run counts."""
    stats = GenerateStats()
    stats.struct_size = ctypes.sizeof(GenerateStats)
    check(lib, lib.nuwa_last_generate_stats(ctypes.byref(stats)))
    return stats
