"""``nuwa serve``: the model on Triton Inference Server, in this process, through PyTriton.

Start-up order makes "ready" mean ready: the pipeline loads, the warm-up runs (one generation,
then a full batch of rows: :mod:`nuwa.serving.warm_up`), and only then does Triton start
(its ports open) and load the two models (``nuwa_stream`` first, then ``nuwa``, which forwards to
it: :mod:`nuwa.serving.triton_models`), so ``/v2/models/nuwa/ready`` turns true once the engine
is loaded and warm. ``/v2/health/ready`` also turns true after the warm-up only (Triton's ports
open after it), but PyTriton loads the models into the running server, and Triton calls a
server without models ready: readiness probes should ask ``/v2/models/nuwa/ready``. Before
Triton starts, the environment is set so that its Python backend runs on this interpreter
(:mod:`nuwa.serving.python_library`).
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa.runtime.pipeline import Pipeline
from nuwa.serving.contract import ENGINE_URL_VARIABLE, MODEL
from nuwa.serving.forwarder_watchdog import ForwarderWatchdog
from nuwa.serving.limits import ServingLimits
from nuwa.serving.model_configs import MODEL_FILES
from nuwa.serving.python_library import prepare_python_backend
from nuwa.serving.pytriton_log import log_request_errors_in_one_line
from nuwa.serving.request_runner import RequestRunner
from nuwa.serving.shared_memory import (
    check_shared_memory,
    dead_servers_regions,
    size_mib,
    use_small_regions,
)
from nuwa.serving.triton_models import bind_stream_model, instances_for, load_forward_model
from nuwa.serving.warm_up import warm_up

LOG = logging.getLogger("nuwa.serving")


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


def load_runner(options: ServerOptions, log: Callable[[str], None] = print) -> RequestRunner:
    pipeline = Pipeline.from_pretrained(
        options.model, options.backend, options.precision, options.device, progress=False
    )
    log(f"nuwa serve: {pipeline.describe()}")
    seconds = warm_up(pipeline, options.limits)
    rows = options.limits.max_rows
    log(f"nuwa serve: warm-up (one generation, then {rows} at once) {seconds:.2f} s")
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
        strict_readiness=True,  # ready while every model loaded is ready
    )


def stop_on_signals(stopping: Callable[[], None]) -> None:
    """SIGINT and SIGTERM (what Kubernetes sends) call ``stopping`` and raise KeyboardInterrupt
    in the main thread, which ends PyTriton's serving loop and stops Triton; also where the
    process started with SIGINT ignored (a background job of a shell), where Python would
    install no handler."""

    def handler(signum: int, frame: Any) -> None:
        stopping()
        signal.default_int_handler(signum, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def serve(options: ServerOptions, log: Callable[[str], None] = print) -> None:
    """Load, warm up, start Triton and serve until interrupted (SIGINT / SIGTERM)."""
    from pytriton.triton import Triton, TritonSecurityConfig

    local = "127.0.0.1" if options.host in ("0.0.0.0", "") else options.host
    versions = itertools.count()

    def load_nuwa() -> None:  # its next version when called again (the watchdog's)
        http, grpc = f"{local}:{options.http_port}", f"{local}:{options.grpc_port}"
        frames = runner.pipeline.spec.frames
        token = security.access_token
        load_forward_model(http, grpc, options.limits, frames, token, next(versions))

    source = MODEL_FILES[MODEL].read_bytes()
    instances = instances_for(options.limits)
    dead = dead_servers_regions()  # left by killed servers: they fill /dev/shm
    if dead:
        log(
            f"nuwa serve: warning: {size_mib(dead):.0f} MiB of /dev/shm is held by {len(dead)} "
            "regions of servers that are gone (/dev/shm/pytrtion<pid>-*, no such process here)"
        )
    check_shared_memory(instances + 1)  # nuwa's instances and nuwa_stream's, before any work
    watchdog = ForwarderWatchdog(source, instances, load_nuwa, options.limits.timeout_s)
    stop_on_signals(watchdog.stop_soon)
    runner = load_runner(options, log)
    use_small_regions()
    prepare_python_backend()
    os.environ.pop(ENGINE_URL_VARIABLE, None)  # the forwarder's engine is this server's
    log_request_errors_in_one_line()
    # PyTriton restricts the model-repository API to a token of its own: this one's is known
    security = TritonSecurityConfig()
    triton = Triton(config=triton_config(options), security_config=security)
    try:
        bind_stream_model(triton, runner)
        triton.run()  # starts the server, loads nuwa_stream and waits until it is ready
        load_nuwa()
        watchdog.start()
        log(
            f"nuwa serve: ready: HTTP {options.host}:{options.http_port}, gRPC "
            f"{options.host}:{options.grpc_port}, metrics :{options.metrics_port} (models nuwa, "
            f"nuwa_stream; max rows {options.limits.max_rows}, max queue "
            f"{options.limits.max_queue})",
        )
        triton.serve()  # until SIGINT / SIGTERM or the server dies
    finally:
        watchdog.stop()
        triton.stop()
