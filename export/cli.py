"""``nuwa export MODEL_DIR -o ONNX_DIR [--target portable|tensorrt] [--opset N]``.

Registered by :mod:`nuwa.cli` (``SUBCOMMAND_PROVIDERS``). Errors are raised as
:class:`~nuwa.spec.errors.ExportError` with a one-line message; the ``nuwa`` entry point prints
it and exits with code 2. PyTorch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from nuwa.spec.manifest import TARGETS

DEFAULT_OPSET = 18  # nuwa.export.exporter.DEFAULT_OPSET (kept here so --help needs no torch)


def _frames(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one frame count")
    return values


def _run(args: argparse.Namespace) -> int:
    from nuwa.export.exporter import export_model

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    manifest = export_model(
        args.model_dir,
        args.output,
        target=args.target,
        opset=args.opset,
        frames=args.frames,
        log=log,
        verify=not args.no_verify,
        progress=not args.quiet,
    )
    checked = [g.check["max_abs_error"] for g in manifest.graphs.values() if g.check]
    summary = f"max abs error vs PyTorch {max(checked):.2e}" if checked else "not verified"
    print(
        f"exported {len(manifest.graphs)} graphs ({manifest.target}, opset {manifest.opset}, "
        f"{summary}) to {manifest.directory}"
    )
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model directory to ONNX graphs + manifest.json",
        description=(
            "Export every graph the runtime needs (VQ-GAN encoder/decoder, sketch encoder, "
            "condition encoders with cross K/V, decoder step with the ring KV cache) and a "
            "manifest.json with shapes, names and SHA-256 of each file. Every graph is checked "
            "against PyTorch in ONNX Runtime unless --no-verify."
        ),
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory (config + weights)")
    p.add_argument("-o", "--output", required=True, metavar="ONNX_DIR", help="output directory")
    p.add_argument(
        "--target",
        default="portable",
        help=f"{' | '.join(TARGETS)}: 3DNA as ONNX local functions (any runtime), or plugin "
        "nodes for TensorRT's ONNX parser (default: portable)",
    )
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    p.add_argument(
        "--frames",
        type=_frames,
        default=None,
        metavar="N[,N...]",
        help="request frame counts whose sketch conditions to export (default: 1 and the "
        "trained number of frames); text conditions cover every frame count",
    )
    p.add_argument(
        "--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)
