"""``nuwa build-engine ONNX_DIR [--plugin-lib libnuwa_plugins.so] -o ENGINE_DIR``: TensorRT
engines from a ``--target tensorrt`` export (any precision), with ``engines.json``
(:mod:`nuwa.runtime.backends.tensorrt.engine_build`).

Registered by :mod:`nuwa.cli`; errors are raised with a one-line message, which the ``nuwa``
entry point prints before exiting with code 2.
"""

from __future__ import annotations

import argparse
import sys

from nuwa.spec.environment import PLUGINS_LIB


def _log(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    return log


def _run_build_engine(args: argparse.Namespace) -> int:
    from nuwa.runtime.backends.tensorrt.engine_build import BuildOptions, build_engines

    plugin_lib = args.plugin_lib
    if plugin_lib is None:
        from nuwa.plugins import library_path

        plugin_lib = library_path()  # PluginLibraryError (one line, how to build) when missing
    metadata = build_engines(
        args.onnx_dir,
        plugin_lib,
        args.output,
        BuildOptions(
            max_batch=args.max_batch,
            opt_batch=args.opt_batch,
            workspace_mib=args.workspace_mib,
            timing_cache=args.timing_cache,
            graphs=tuple(args.graphs) if args.graphs else None,
        ),
        log=_log(args),
    )
    print(
        f"built {len(metadata.engines)} engines (TensorRT {metadata.tensorrt_version}, "
        f"{metadata.gpu.get('name')}) in {args.output}"
    )
    return 0


def add_build_engine_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-engine",
        help="TensorRT engines from a --target tensorrt export (needs TensorRT and a GPU)",
        description=(
            "Build strongly typed TensorRT engines (precision from the graph: FP32, FP16 or "
            "Q/DQ INT8) from a `nuwa export --target tensorrt` directory, with the 3DNA plugin "
            "library loaded, optimization profiles for the decode shapes, a timing cache, and "
            "engines.json metadata (TensorRT version, GPU, plugin version)."
        ),
    )
    p.add_argument("onnx_dir", metavar="ONNX_DIR", help="--target tensorrt export directory")
    p.add_argument(
        "--plugin-lib",
        default=None,
        metavar="LIB",
        help="libnuwa_plugins.so built with TensorRT headers (default: the one nuwa.plugins "
        f"finds: {PLUGINS_LIB}, build/, then the installed package's)",
    )
    p.add_argument("-o", "--output", required=True, metavar="ENGINE_DIR")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch rows (default 8)")
    p.add_argument("--opt-batch", type=int, default=2, help="batch to tune for (default 2)")
    p.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace (MiB)")
    p.add_argument(
        "--timing-cache",
        default=None,
        metavar="FILE",
        help="timing cache to reuse and update (default ENGINE_DIR/timing-<cache key>.cache)",
    )
    p.add_argument("--graphs", nargs="*", default=None, help="only these graphs (default all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_run_build_engine)
