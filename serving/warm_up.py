"""What runs before the server says it is ready: one generation, then a full batch.

The first generation pays the runtime's lazy set-up (sessions, the first runs' allocations). The
full batch — ``max_rows`` unguided text→image requests at once, one decoder row each — then grows
what only concurrent requests grow: the step graph's ONNX Runtime arena to a full batch's
activations, the allocator arenas of the request threads, the continuous-batching pool at its
largest. So the first burst of clients does not pay for them, and the memory the server holds at
"ready" is what it holds under load (measured: `bench/serve.py`'s soak against warm-up).
"""

from __future__ import annotations

import threading
import time
import warnings

from nuwa.runtime.pipeline import Pipeline
from nuwa.serving.limits import ServingLimits

PROMPT = "a red square"


def warm_up(pipeline: Pipeline, limits: ServingLimits) -> float:
    """One generation, then ``limits.max_rows`` at once; their seconds."""
    start = time.perf_counter()
    errors: list[BaseException] = []

    def generate(seed: int, **options: float) -> None:
        try:
            with warnings.catch_warnings():  # words the model may not know: nobody to tell
                warnings.simplefilter("ignore")
                pipeline("t2i", PROMPT, seed=seed, progress=False, **options)
        except BaseException as exc:  # noqa: BLE001 - raised below, on the calling thread
            errors.append(exc)

    generate(0)
    threads = [
        threading.Thread(target=generate, args=(seed,), kwargs={"guidance_scale": 1.0})
        for seed in range(1, limits.max_rows + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start
