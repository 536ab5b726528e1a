"""Thread safety as nuwa.h states it: one model handle used by several threads at once (each
call has its own cache and bindings) gives every thread the result it gets alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import capi

REQUESTS = [
    ("t2v", [b"a ball moves left"], 3, 1, 2.0),
    ("t2i", [b"a red square", b"green"], 0, 2, 1.0),
    ("t2v", [b"two circles"], 4, 1, 1.0),
]


def run(lib, model, args):
    request, keep = capi.make_request(lib, *args[:2], *args[2:4], 0.0, args[4])
    result = capi.generate(lib, model, request)
    del keep
    return result


def test_concurrent_calls_on_one_model_equal_calls_alone(lib, tiny_c_model) -> None:
    alone = [run(lib, tiny_c_model, args) for args in REQUESTS]
    with ThreadPoolExecutor(len(REQUESTS) * 2) as pool:  # ctypes calls run without the GIL
        together = list(pool.map(lambda a: run(lib, tiny_c_model, a), REQUESTS * 2))
    for i, got in enumerate(together):
        want = alone[i % len(REQUESTS)]
        np.testing.assert_array_equal(got.tokens, want.tokens)
        np.testing.assert_array_equal(got.frames, want.frames)
