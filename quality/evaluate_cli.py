"""``nuwa evaluate``: score a model on held-out synthetic prompts and print a table (and JSON).

    nuwa evaluate --model model/checkpoints/demo --tasks T2I,T2V,S2I,S2V,V2V --n 64 --out s.json

Every backend (``--backend``: ``torch`` by default, the checkpoint itself; ``onnxruntime`` an
export of it) generates the same prompts through :mod:`nuwa.runtime`'s decode loop
(:mod:`nuwa.quality.evaluation`). Heavy imports happen only when the command runs, so
``nuwa --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuwa.quality.evaluation_tasks import ALL_TASKS, DEFAULT_TASKS, EVAL_SEED
from nuwa.spec.checkpoint_files import CONFIG_FILE


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``nuwa evaluate --model DIR [--tasks T2I,T2V,...] [--n 64] [--out scores.json]``."""
    p = subparsers.add_parser("evaluate", help="score a model on held-out synthetic prompts")
    p.add_argument("--model", type=Path, required=True, help="model directory")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"from {','.join(ALL_TASKS)}")
    p.add_argument("--n", type=int, default=64, help="held-out prompts per task")
    p.add_argument("--backend", default="torch", help="torch (the checkpoint) or onnxruntime")
    p.add_argument(
        "--onnx",
        type=Path,
        help="onnxruntime: an export of --model to run (nuwa export, or nuwa quantize for "
        "fp16/int8); default: --model's FP32 export, made and cached on first use",
    )
    p.add_argument(
        "--precision",
        help="onnxruntime: the precision --onnx must hold (default: what it holds; fp32 "
        "without --onnx)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--temperature", type=float, help="for every task (default: the model's, per task)"
    )
    p.add_argument("--top-k", type=int, help="0 = off (default: the model's)")
    p.add_argument("--top-p", type=float, help="1 = off (default: the model's)")
    p.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--data-seed", type=int, default=EVAL_SEED, help="held-out dataset seed")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--v2v-given", type=int, default=2, help="V2V frames given as the prefix")
    p.add_argument(
        "--long-frames",
        help="e.g. 16,32: also generate V2V and T2V (those in --tasks) over this many frames, "
        "past the trained length, and score them per block of the trained number of frames "
        "(object kept; position error against the ground truth, its objects bouncing off the "
        "borders)",
    )
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, help="write the table as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_evaluate)
    return p


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip().upper() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown tasks {unknown or text!r}; choose from {','.join(ALL_TASKS)}")
    return tasks


def parse_long_frames(text: str | None) -> list[int]:
    """``"16,32"`` -> ``[16, 32]``; ``None`` -> ``[]``; a clear error for anything else."""
    if text is None:
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"--long-frames takes frame counts like 16,32, got {text!r}")
    return [int(p) for p in parts]


def export_precision(model_dir: Path, export_dir: Path) -> str:
    """The precision of ``export_dir``, checked to be an export of the checkpoint ``model_dir``
    (the evaluation scores its pixels with that checkpoint's tokenizers and prompts)."""
    from nuwa.spec.manifest import ManifestError, checkpoint_sha256, load_manifest

    try:
        manifest = load_manifest(export_dir, verify_hashes=False)
    except ManifestError as exc:
        raise ValueError(f"--onnx {export_dir}: {exc}") from None
    if manifest.model.get("checkpoint_sha256") != checkpoint_sha256(model_dir):
        raise ValueError(
            f"--onnx {export_dir} was exported from another checkpoint than --model {model_dir}"
        )
    return manifest.precision


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.quality.evaluation import evaluate
    from nuwa.quality.evaluation_report import format_table
    from nuwa.quality.long_generation import check_long_frames
    from nuwa.runtime.sampler import SamplingOptions
    from nuwa.spec.generation_config import GenerationConfig

    tasks = parse_tasks(args.tasks)
    long_frames = parse_long_frames(args.long_frames)
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.model / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{args.model} is not a model directory (no {CONFIG_FILE})")
    if args.onnx is not None and args.backend != "onnxruntime":
        raise ValueError(f"--onnx is for --backend onnxruntime, not {args.backend}")
    held = export_precision(args.model, args.onnx) if args.onnx else "fp32"  # checks it, too
    precision = args.precision or held
    model = NuwaModel.from_pretrained(args.model).to(args.device)
    try:  # before any work: long frame counts that do not fit the model or the tasks
        check_long_frames(long_frames, tasks, model.config.transformer.frames, args.v2v_given)
    except ValueError as exc:
        raise ValueError(f"--long-frames: {exc}") from None
    generation = GenerationConfig.load(args.model)
    options = {}
    for task in tasks:  # the model's sampling for each task, with what the command line sets
        given = (args.temperature, args.top_k, args.top_p, args.guidance)
        options[task] = SamplingOptions(**generation.resolve(task, *given), seed=args.seed)
        options[task].validate()
    table = evaluate(
        model,
        tasks,
        args.n,
        args.backend,
        options,
        seed=args.data_seed,
        batch_size=args.batch_size,
        v2v_given=args.v2v_given,
        out_json=args.out,
        progress=not args.no_progress,
        model_dir=args.onnx or args.model,
        precision=precision,
        long_frames=long_frames,
    )
    print(format_table(table))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nuwa.quality.evaluate_cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_evaluate_parser(sub)
    args = parser.parse_args(["evaluate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
