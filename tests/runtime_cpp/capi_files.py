"""ctypes bindings of the C API's text and picture-file entry points (``include/nuwa/nuwa.h``:
``nuwa_prompt_tokens``, ``nuwa_png_size``, ``nuwa_read_png_rgb``, ``nuwa_read_png_mask``,
``nuwa_write_png``, ``nuwa_write_gif``) and small helpers calling them."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from . import capi

U8P = ctypes.POINTER(ctypes.c_uint8)
INTP = ctypes.POINTER(ctypes.c_int)
SIZE = ctypes.c_size_t


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    sigs = {
        "nuwa_prompt_tokens": (
            [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t],
            ctypes.c_int,
        ),
        "nuwa_png_size": ([ctypes.c_char_p, ctypes.c_char_p, INTP, INTP], ctypes.c_int),
        "nuwa_read_png_rgb": (
            [ctypes.c_char_p, ctypes.c_char_p, U8P, ctypes.c_size_t],
            ctypes.c_int,
        ),
        "nuwa_read_png_mask": (
            [ctypes.c_void_p, ctypes.c_char_p, U8P, ctypes.c_size_t],
            ctypes.c_int,
        ),
        "nuwa_write_png": ([ctypes.c_char_p, U8P, ctypes.c_int, ctypes.c_int], ctypes.c_int),
        "nuwa_write_gif": (
            [ctypes.c_char_p, U8P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_double],
            ctypes.c_int,
        ),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


def failure(lib: ctypes.CDLL, status: int) -> tuple[int, str] | None:
    """``None`` on success, else (status, nuwa_last_error())."""
    return None if status == capi.NUWA_OK else (status, lib.nuwa_last_error().decode())


def prompt_tokens(lib: ctypes.CDLL, model: object, prompt: bytes, length: int) -> list[int] | str:
    """The ids of ``prompt``, or the error message."""
    ids = (ctypes.c_int64 * length)()
    status = lib.nuwa_prompt_tokens(model, prompt, ids, length)
    return list(ids) if status == capi.NUWA_OK else lib.nuwa_last_error().decode()


def u8(array: np.ndarray) -> ctypes._Pointer:
    return array.ctypes.data_as(U8P)


def png_size(lib: ctypes.CDLL, path: Path | str, what: str) -> tuple[int, int] | str:
    height, width = ctypes.c_int(), ctypes.c_int()
    status = lib.nuwa_png_size(str(path).encode(), what.encode(), height, width)
    return (height.value, width.value) if status == capi.NUWA_OK else lib.nuwa_last_error().decode()


def read_rgb(lib: ctypes.CDLL, path: Path | str, what: str = "image") -> np.ndarray | str:
    size = png_size(lib, path, what)
    if isinstance(size, str):
        return size
    out = np.zeros((*size, 3), dtype=np.uint8)
    status = lib.nuwa_read_png_rgb(str(path).encode(), what.encode(), u8(out), out.size)
    return out if status == capi.NUWA_OK else lib.nuwa_last_error().decode()


def read_mask(lib: ctypes.CDLL, model: object, path: Path | str) -> np.ndarray | str:
    size = png_size(lib, path, "mask")
    if isinstance(size, str):
        return size
    out = np.zeros(size, dtype=np.uint8)
    status = lib.nuwa_read_png_mask(model, str(path).encode(), u8(out), out.size)
    return out.astype(bool) if status == capi.NUWA_OK else lib.nuwa_last_error().decode()
