"""The FP32 and INT8 exports the CPU decode benches time (``decode_floor.py``,
``decode_whole.py``), and how they report: one set of command-line options and one way to
make the INT8 export, so the benches measure the same graphs."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from results_file import write_marked_section

REPO = Path(__file__).resolve().parent.parent
DEMO_EXPORT = REPO / "model" / "checkpoints" / "demo" / "onnx"
DEMO_INT8_EXPORT = DEMO_EXPORT.parent / "onnx_int8"  # bundled, gated: the CPU's default


def add_export_options(p: argparse.ArgumentParser) -> None:
    """``--onnx-dir``, ``--int8-dir``, ``--calib-count``, ``--json``, ``--no-write``."""
    p.add_argument("--onnx-dir", default=str(DEMO_EXPORT), help="the FP32 export (default: demo's)")
    p.add_argument(
        "--int8-dir",
        help="an INT8 export of it (default: the demo's bundled one, else quantized, no gates)",
    )
    p.add_argument("--calib-count", type=int, default=2)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")


def int8_export(args: argparse.Namespace, bench: str) -> Path:
    """``--int8-dir``; else the demo's bundled INT8 export for the demo's FP32 one; else
    ``--onnx-dir`` quantized to INT8 now (``--calib-count`` calibration samples, no quality
    gates) into a temporary directory."""
    if args.int8_dir:
        return Path(args.int8_dir)
    if Path(args.onnx_dir).resolve() == DEMO_EXPORT and DEMO_INT8_EXPORT.is_dir():
        return DEMO_INT8_EXPORT
    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.quantize import quantize_export

    out = Path(tempfile.mkdtemp(prefix=f"nuwa-{bench}-int8-")) / "int8"
    print(
        f"[{bench}] quantizing {args.onnx_dir} -> {out} (int8, {args.calib_count} calibration "
        "samples, no gates)",
        file=sys.stderr,
        flush=True,
    )
    calib = CalibrationSet(count=args.calib_count, seed=0)
    quantize_export(Path(args.onnx_dir), out, "int8", calib, None)
    return out


def report(text: str, result: dict[str, Any], args: argparse.Namespace, section: str) -> None:
    """Print the section, write the raw results (``--json``) and the section of RESULTS.md
    (unless ``--no-write``)."""
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if not args.no_write:
        write_marked_section(text, section)
