"""``nuwa quantize ONNX_DIR --precision int8|fp16 -o OUT_DIR [--calib-count N --calib-seed S
--calib-method max|percentile] [--gate-count N --gate-streams K | --no-gates]``: calibrate on real
task samples, write Q/DQ INT8 or FP16 graphs with the manifest (:mod:`nuwa.calibration`), then run
the quality gates against FP32 (:mod:`nuwa.quality.precision_gates`). It lives here, above
calibration, because it composes the two.

Registered by :mod:`nuwa.cli`; errors are raised with a one-line message, which the ``nuwa``
entry point prints before exiting with code 2.
"""

from __future__ import annotations

import argparse
import sys

from nuwa.calibration.task_samples import TASKS
from nuwa.quality.gate_config import GateConfig
from nuwa.runtime.cpu_features import INT8_KERNELS

GATE_DEFAULTS = GateConfig()


def _tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip().upper() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise argparse.ArgumentTypeError(f"tasks must be a comma list of {','.join(TASKS)}")
    return tasks


def _log(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    return log


def _run_quantize(args: argparse.Namespace) -> int:
    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.quantize import quantize_export
    from nuwa.quality.precision_gates import PrecisionGates

    calib = CalibrationSet(
        count=args.calib_count,
        seed=args.calib_seed,
        tasks=args.calib_tasks,
        every_length=args.calib_every_length,
        method=args.calib_method,
        percentile=args.calib_percentile,
    )
    gates = None
    if not args.no_gates:
        gates = PrecisionGates(
            GateConfig(
                count=args.gate_count,
                seed=args.gate_seed,
                tasks=args.gate_tasks,
                min_token_agreement=args.min_token_agreement,
                streams=args.gate_streams,
                int8_kernels=args.int8_kernels,
            )
        )
    manifest = quantize_export(
        args.onnx_dir,
        args.output,
        args.precision,
        calib=calib,
        gates=gates,
        weight_range=args.weight_range,
        int8_vq_decoder=args.int8_vq_decoder,
        log=_log(args),
        keep_fp32=tuple(p.strip() for p in (args.keep_fp32 or "").split(",") if p.strip()),
    )
    gate = manifest.get("quality_gates") or {}
    status = "gates skipped" if "skipped" in gate else "quality gates passed"
    print(f"wrote {args.precision} graphs to {args.output} ({status})")
    return 0


def add_quantize_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="INT8 (Q/DQ) or FP16 graphs from an FP32 export, with quality gates",
        description=(
            "Calibrate on real samples of every task (prompts, sketches, videos and the decoder-"
            "step inputs along real generations), write INT8 Q/DQ (symmetric, per-channel "
            "weights) or FP16 graphs (FP32 layer norm / softmax / 3DNA) with the manifest, and "
            "check them against FP32 on held-out prompts with the same seeds."
        ),
    )
    p.add_argument("onnx_dir", metavar="ONNX_DIR", help="FP32 export directory (nuwa export)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output directory")
    p.add_argument("--precision", required=True, choices=("int8", "fp16"))
    p.add_argument("--calib-count", type=int, default=8, help="samples per task (default 8)")
    p.add_argument("--calib-seed", type=int, default=0, help="calibration seed (default 0)")
    p.add_argument("--calib-tasks", type=_tasks, default=TASKS, help=f"default {','.join(TASKS)}")
    p.add_argument(
        "--calib-method",
        default="max",
        choices=("max", "percentile"),
        help="activation ranges: max |x| seen (default) or a percentile of |x|",
    )
    p.add_argument(
        "--calib-percentile",
        type=float,
        default=99.99,
        help="percentile of |x| for --calib-method percentile (default 99.99)",
    )
    p.add_argument(
        "--calib-every-length",
        action="store_true",
        help="generate calibration videos at every exported length, not only the trained one "
        "(other lengths otherwise borrow the ranges of their graph family)",
    )
    p.add_argument(
        "--gate-count",
        type=int,
        default=GATE_DEFAULTS.count,
        help=f"held-out samples per task for the gates (default {GATE_DEFAULTS.count})",
    )
    p.add_argument(
        "--gate-seed",
        type=int,
        default=GATE_DEFAULTS.seed,
        help=f"gate seed (default {GATE_DEFAULTS.seed})",
    )
    p.add_argument(
        "--gate-streams",
        type=int,
        default=GATE_DEFAULTS.streams,
        help=f"sampled generations per gate sample and side, scores averaged (default "
        f"{GATE_DEFAULTS.streams}: with {GATE_DEFAULTS.count} samples one generation that samples "
        f"differently moves a score {GATE_DEFAULTS.sample_points:.1f} points, inside the "
        f"{GATE_DEFAULTS.tolerance_points:g}-point tolerance)",
    )
    p.add_argument(
        "--gate-tasks",
        type=_tasks,
        default=GATE_DEFAULTS.tasks,
        help=f"default {','.join(GATE_DEFAULTS.tasks)}",
    )
    p.add_argument(
        "--int8-kernels",
        default=GATE_DEFAULTS.int8_kernels,
        choices=INT8_KERNELS,
        help="how the gates run the INT8 weight layers on the CPU: MatMulNBits (activations "
        "quantized per block at run time) or the Q/DQ graph as written; auto = matmulnbits where "
        "ONNX Runtime and the CPU have it (default auto)",
    )
    p.add_argument(
        "--min-token-agreement",
        type=float,
        default=GATE_DEFAULTS.min_token_agreement,
        help="teacher-forced top-1 agreement with FP32 the gate requires (default "
        f"{GATE_DEFAULTS.min_token_agreement:g})",
    )
    p.add_argument("--no-gates", action="store_true", help="skip the quality gates")
    p.add_argument(
        "--weight-range",
        default="auto",
        choices=("auto", "full", "reduced"),
        help="int8 weights in [-127,127] (full) or [-63,63] (reduced: x86 CPUs without VNNI, "
        "whose int8 kernels saturate on full-range weights); auto = full for tensorrt "
        "exports, and for portable exports where this machine's CPU does not saturate "
        "(VNNI, ARM), else reduced",
    )
    p.add_argument(
        "--int8-vq-decoder", action="store_true", help="also quantize the VQ-GAN decoder convs"
    )
    p.add_argument(
        "--keep-fp32",
        metavar="PREFIXES",
        help="comma-separated graph-name prefixes left FP32, e.g. sketch_condition_encoder "
        "(to find which graphs cost quality)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_run_quantize)
