"""``nuwa serve``: its arguments, checked before the model loads, then one call into
:func:`nuwa.serving.server.serve` (or, with ``--write-repository``, the model repository writer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nuwa.serving.limits import ServingLimits
from nuwa.spec.errors import NuwaInputError

DEFAULTS = ServingLimits()


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _port(value: str) -> int:
    n = _positive(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {n}")
    return n


def _seconds(value: str) -> float:
    try:
        s = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not s > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return s


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the model on Triton Inference Server (HTTP/gRPC, KServe v2; models nuwa and "
        "nuwa_stream)",
        description="Serve a model on Triton Inference Server in this process (PyTriton): "
        "models nuwa (one response per request) and nuwa_stream (one response per finished "
        "frame). Needs the [serve] extra.",
    )
    p.add_argument("--model", metavar="DIR", help="model directory (default: the demo checkpoint)")
    p.add_argument(
        "--backend", default="onnxruntime", help="onnxruntime (default), tensorrt, torch"
    )
    p.add_argument("--precision", help="fp32, fp16, int8 (default: what the directory holds)")
    p.add_argument("--device", help="device of the backend (e.g. cuda:0)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--http-port", type=_port, default=8000)
    p.add_argument("--grpc-port", type=_port, default=8001)
    p.add_argument("--metrics-port", type=_port, default=8002)
    p.add_argument(
        "--max-rows",
        type=_positive,
        default=DEFAULTS.max_rows,
        help="decoder rows in flight (a request with guidance holds 2) "
        f"(default {DEFAULTS.max_rows})",
    )
    p.add_argument(
        "--max-queue",
        type=_non_negative,
        default=DEFAULTS.max_queue,
        help="requests waiting for rows; past it a request is refused at once "
        f"(default {DEFAULTS.max_queue})",
    )
    p.add_argument(
        "--max-frames",
        type=_positive,
        default=DEFAULTS.max_frames,
        help=f"frames one request may make (default {DEFAULTS.max_frames})",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULTS.timeout_s,
        metavar="S",
        help=f"seconds a request may take, waiting included (default {DEFAULTS.timeout_s:g})",
    )
    p.add_argument(
        "--write-repository",
        metavar="DIR",
        help="instead of serving: write a Triton model repository (Python backend) for a "
        "standalone tritonserver into DIR (its 'nuwa' forwards to 'nuwa_stream' over the "
        "server's gRPC port: --grpc-port, unless its launcher or NUWA_ENGINE_URL says another)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    limits = ServingLimits(args.max_rows, args.max_queue, args.max_frames, args.timeout)
    if args.model is not None and not Path(args.model).is_dir():
        raise NuwaInputError(f"--model {args.model}: no such directory")
    if args.write_repository:
        from nuwa.serving.model_repository import write_repository

        write_repository(Path(args.write_repository), args, limits)
        return 0
    from nuwa.serving.server import ServerOptions, serve

    serve(
        ServerOptions(
            model=Path(args.model) if args.model else None,
            backend=args.backend,
            precision=args.precision,
            device=args.device,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            limits=limits,
        )
    )
    return 0
