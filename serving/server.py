"""``nuwa serve``: the model on Triton Inference Server, in this process, through PyTriton.

Start-up order makes "ready" mean ready: the pipeline loads, one generation runs (warm-up: the
first run's lazy set-up is paid before any client waits on it), and only then does Triton start
(its ports open) and load the two models, so ``/v2/models/nuwa/ready`` (and ``nuwa_stream``'s)
turns true once the model is loaded and warm; ``/v2/health/ready`` is true from Triton's start,
after the warm-up too, but a few seconds before the models finish loading (PyTriton loads them
into the running server). Before Triton starts, the environment is set so that its Python
backend runs on this interpreter (:mod:`nuwa.serving.python_library`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa.runtime.pipeline import Pipeline
from nuwa.serving.limits import ServingLimits
from nuwa.serving.python_library import prepare_python_backend
from nuwa.serving.request_runner import RequestRunner
from nuwa.serving.triton_models import bind_models

LOG = logging.getLogger("nuwa.serving")
LOAD_ATTEMPTS = 5


@dataclass(frozen=True)
class ServerOptions:
    model: Path | None = None  # None: the shipped demo checkpoint
    backend: str = "onnxruntime"
    precision: str | None = None
    device: str | None = None
    host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    limits: ServingLimits = ServingLimits()


def warm_up(pipeline: Pipeline) -> float:
    """One short generation before the server says it is ready; its seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():  # words the model may not know: nobody to tell
        warnings.simplefilter("ignore")
        pipeline("t2i", "a red square", seed=0, progress=False)
    return time.perf_counter() - start


def load_runner(options: ServerOptions, log: Callable[[str], None] = print) -> RequestRunner:
    pipeline = Pipeline.from_pretrained(
        options.model, options.backend, options.precision, options.device, progress=False
    )
    log(f"nuwa serve: {pipeline.describe()}")
    log(f"nuwa serve: warm-up generation {warm_up(pipeline):.2f} s")
    return RequestRunner(pipeline, options.limits)


def triton_config(options: ServerOptions) -> Any:
    from pytriton.triton import TritonConfig

    return TritonConfig(
        http_address=options.host,
        http_port=options.http_port,
        grpc_address=options.host,
        grpc_port=options.grpc_port,
        metrics_port=options.metrics_port,
        exit_on_error=True,
        # PyTriton loads the models after the server starts (explicit model control), so a
        # strict server is ready before they load as well; and a strict server stays not ready
        # after one failed load, which would block the load's retry (start_models)
        strict_readiness=False,
    )


def start_models(triton: Any, log: Callable[[str], None], attempts: int = LOAD_ATTEMPTS) -> None:
    """Start Triton and load both models, waiting until they are ready. A model instance of
    PyTriton 0.7 that is not its model's first waits only 1 s for the first one's handshake
    (``get_config_from_handshake_server``), so on a loaded machine a many-instance model can
    fail to load; the load is tried again (the server keeps running; a failed load leaves
    nothing behind in this process)."""
    for attempt in range(1, attempts + 1):
        try:
            triton.run()
            return
        except Exception as exc:
            if attempt == attempts:
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log(f"nuwa serve: model load failed ({first_line}); trying again")


def serve(options: ServerOptions, log: Callable[[str], None] = print) -> None:
    """Load, warm up, start Triton and serve until interrupted (SIGINT / SIGTERM)."""
    from pytriton.triton import Triton

    runner = load_runner(options, log)
    prepare_python_backend()
    triton = Triton(config=triton_config(options))
    try:
        bind_models(triton, runner)
        start_models(triton, log)
        log(
            f"nuwa serve: ready: HTTP {options.host}:{options.http_port}, gRPC "
            f"{options.host}:{options.grpc_port}, metrics :{options.metrics_port} (models nuwa, "
            f"nuwa_stream; max rows {options.limits.max_rows}, max queue "
            f"{options.limits.max_queue})",
        )
        triton.serve()  # until SIGINT / SIGTERM or the server dies
    finally:
        triton.stop()
