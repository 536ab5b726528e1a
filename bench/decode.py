"""Decoder-step latency on the CPU: ONNX Runtime FP32 vs our PyTorch eager KV-cache path.

    python bench/decode.py [--model DIR] [--onnx DIR] [--int8-onnx DIR] [--threads 1,2]
                           [--frames 16] [--no-write]

Configuration "demo-video" (DESIGN §11): 8 frames x 8x8 tokens, d_model 256, 4 decoder layers,
8 heads, 3DNA video extents (3,3,3), batch 1, a text condition, no guidance. The model is the
shipped demo checkpoint when it is there, else the ``demo`` preset with random weights (seed 0) —
latency does not depend on the weights; the table says which was used.

Each (backend, threads) runs in its own process so thread settings and peak memory (``ru_maxrss``)
are its own:

- ``onnxruntime``: the runtime's default path (IO binding, ring cache written in place);
- ``onnxruntime (session.run)``: the plain path, NumPy in/out each step, for comparison;
- ``onnxruntime-int8``: the default path on an INT8 export (``--int8-onnx``, else quantized here
  without gates);
- ``torch eager``: ``nuwa.model.generate.DecodeState.step`` — PyTorch tensors end to end, no
  NumPy conversions (the reference KV-cache loop at its best).

Per step: wall time of one ``decoder_step`` (one token, batch 1) over ``--frames`` frames of
positions (default 16 = twice the trained length, so the second half runs on the sliding ring
cache). Reported: median over all steps after a warm-up, median over the trained length and over
the sliding part, and the least-squares slope of per-frame median step time over position
(flat = the window cache works). Whole video: ``Pipeline.text_to_video`` (text encoder, 512
sampled steps, VQ decoder), median of ``--videos`` runs. The table, with the machine and
whether a training job shared the CPU, replaces what lies between the
``<!-- BEGIN decode -->`` / ``<!-- END decode -->`` markers of bench/RESULTS.md.

``--device cuda`` (or ``cuda:N``, or ``cpu``) runs only the PyTorch eager loop, in this process,
on that device, at each ``--batch`` size (default 1,64): greedy ``DecodeState.step`` over
``--frames`` frames of positions, each step bracketed by a device synchronize (CUDA work is
asynchronous), FP32. It prints a table and one JSON object (``--json FILE`` writes it too) and
leaves bench/RESULTS.md alone.

This file is the benchmark's driver and command line; what the runs share is ``decode_setup.py``,
one configuration's measurement ``decode_worker.py``, the section it writes ``decode_report.py``,
the ``--device`` run ``decode_device.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_device import device_main
from decode_report import RESULTS, format_section, meta, training_running, write_section
from decode_setup import BACKENDS, LABELS, prepare_model
from decode_worker import profile_ops, run_worker, worker


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: demo checkpoint, else random demo)")
    p.add_argument("--onnx", help="an existing export of --model (default: export it now)")
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts")
    p.add_argument("--frames", type=int, default=16, help="frames of positions to time")
    p.add_argument("--videos", type=int, default=3, help="whole videos per configuration")
    p.add_argument(
        "--int8-onnx",
        help="an INT8 export of --model (`nuwa quantize`; default: quantize it now, no gates)",
    )
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--device",
        help="run only the torch eager loop on this device (cuda, cuda:N, cpu) at --batch sizes",
    )
    p.add_argument("--batch", default="1,64", help="batch sizes of a --device run")
    p.add_argument("--json", help="with --device: also write the results to this file")
    args = p.parse_args()
    if args.device is not None:
        try:
            batches = [int(b) for b in args.batch.split(",")]
        except ValueError:
            p.error(f"--batch must be comma-separated integers, got {args.batch!r}")
        if min(batches) < 1 or args.frames < 1:
            p.error("--batch sizes and --frames must be >= 1")
        return device_main(args.device, batches, args.frames, args.model, args.json)
    threads = sorted({int(t) for t in args.threads.split(",")})
    shared = training_running()
    with tempfile.TemporaryDirectory(prefix="nuwa-bench-") as tmp:
        model, described = prepare_model(args.model, Path(tmp))
        from nuwa.export import export_model

        onnx = Path(args.onnx) if args.onnx else Path(tmp) / "onnx"
        if not args.onnx:
            export_model(model, onnx)
        if "onnxruntime-int8" in args.backends.split(",") and not args.int8_onnx:
            from nuwa.calibration.capture import CalibrationSet
            from nuwa.calibration.quantize import quantize_export

            args.int8_onnx = str(Path(tmp) / "int8")
            quantize_export(onnx, args.int8_onnx, "int8", CalibrationSet(count=2), None)
        profile = profile_ops(onnx, 8)
        rows: list[dict[str, Any]] = []
        for backend in args.backends.split(","):
            for n in threads:
                print(f"bench/decode.py: {LABELS[backend]}, {n} thread(s) ...", file=sys.stderr)
                rows.append(run_worker(backend, n, args, model, onnx))
                shared = shared or training_running()
                text = format_section(rows, meta(rows, args, described, shared, profile))
                if not args.no_write:  # after every configuration: a cut-off run keeps its rows
                    write_section(text)
    print(text)
    if not args.no_write:
        print(f"wrote the decode section of {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":  # as bench/decode_worker.py --worker
        b, n, m, o, fr, v = sys.argv[2:8]
        worker(b, int(n), m, o, int(fr), int(v))
        sys.exit(0)
    sys.exit(main())
