"""``nuwa train vqgan|vqgan-seg|transformer`` (and ``python -m nuwa.training.cli ...``).

Examples::

    nuwa train vqgan --preset demo --out runs/vqgan --steps 3000
    nuwa train vqgan-seg --preset demo --out runs/seg --steps 800
    nuwa train transformer --out runs/tr --vqgan runs/vqgan --vqgan-seg runs/seg --steps 2000 \\
        --export model/checkpoints/demo --fp16
    nuwa train transformer --out runs/tr --resume --steps 4000   # continue a run

Runs are resumable with ``--resume`` (same output directory); losses go to ``<out>/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nuwa.spec.config import PRESETS


def _common(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs)")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="model config preset")
    p.add_argument("--config", type=Path, help="a config.json to use instead of --preset")
    p.add_argument("--steps", type=int, default=steps, help="total optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-clips", type=int, help="training clips rendered / tokenised once")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--checkpoint-every", type=int, help="steps between resumable checkpoints")
    p.add_argument("--log-every", type=int, help="steps between loss-log lines")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train`` with subcommands ``vqgan``, ``vqgan-seg`` and ``transformer``."""
    train = subparsers.add_parser("train", help="train the VQ-GANs and the transformer")
    sub = train.add_subparsers(dest="train_command", required=True)
    for name, help_ in (
        ("vqgan", "train the frame VQ-GAN"),
        ("vqgan-seg", "train the sketch VQ-GAN-Seg"),
    ):
        p = sub.add_parser(name, help=help_)
        _common(p, 3000 if name == "vqgan" else 800)
        p.add_argument("--batch-size", type=int, help="frames per step")
        p.set_defaults(func=_run_vqgan, kind="rgb" if name == "vqgan" else "seg")
    p = sub.add_parser("transformer", help="multi-task transformer training on cached tokens")
    _common(p, 2000)
    p.add_argument("--vqgan", type=Path, help="vqgan run directory (new runs)")
    p.add_argument("--vqgan-seg", type=Path, help="vqgan-seg run directory (new runs)")
    p.add_argument(
        "--init-from",
        type=Path,
        help="a model directory to fine-tune (config, VQ-GANs and transformer; new runs)",
    )
    p.add_argument(
        "--decoder-layers",
        type=int,
        help="with --init-from: deepen its decoder to this many layers first (new layers on top "
        "start as pass-throughs, so training starts from the model as it was)",
    )
    p.add_argument(
        "--new-layer-lr-scale",
        type=float,
        help="with --decoder-layers: the new layers' learning rate over the others' (default 1)",
    )
    p.add_argument("--video-batch-size", type=int)
    p.add_argument("--image-batch-size", type=int)
    p.add_argument("--cond-dropout", type=float, help="chance of the empty prompt / blank sketch")
    p.add_argument(
        "--motion-weight",
        type=float,
        help="extra loss weight of video tokens that change from the frame before (default 0)",
    )
    p.add_argument(
        "--short-t2v-share",
        type=float,
        help="share of T2V batches on the first --short-t2v-frames frames of more clips",
    )
    p.add_argument("--short-t2v-frames", type=int, help="frames of a short T2V batch (default 2)")
    p.add_argument(
        "--long-frames",
        type=int,
        help="render training clips this many frames long, past the model's (objects bounce)",
    )
    p.add_argument(
        "--long-share",
        type=float,
        help="share of T2V / V2V batches on all --long-frames frames (default 0)",
    )
    p.add_argument(
        "--attribute-dropout",
        type=float,
        help="per-sample chance each of the position / motion is left out of a caption (default 0)",
    )
    p.add_argument(
        "--motion-dropout",
        type=float,
        help="the motion's own chance of being left out (default: --attribute-dropout)",
    )
    p.add_argument(
        "--digit-share",
        type=float,
        help="each training object's chance of being a digit (default: 1 in 4, as the kinds)",
    )
    p.add_argument(
        "--two-object-share",
        type=float,
        help="each training clip's chance of two objects (default: 1 in 2)",
    )
    p.add_argument("--task-weights", type=json.loads, help='JSON, e.g. {"T2V": 0.5, "S2I": 0.5}')
    p.add_argument("--attn-impl", choices=("dense", "gather"), help="3DNA used in training")
    p.add_argument("--amp", choices=("none", "bf16"), help="bfloat16 autocast")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds (checkpointed)")
    p.add_argument("--export", type=Path, help="save the trained model directory here too")
    p.add_argument("--fp16", action="store_true", help="store exported weights in float16")
    p.set_defaults(func=_run_transformer)
    return train


def _config(args: argparse.Namespace) -> Any:
    from nuwa.spec.config import NuwaConfig

    return NuwaConfig.from_json(args.config) if args.config else NuwaConfig.from_name(args.preset)


def _overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    out = {}
    for arg, field_name in names.items():
        value = getattr(args, arg, None)
        if value is not None:
            out[field_name] = value
    return out


_COMMON = {
    "steps": "steps",
    "lr": "lr",
    "seed": "seed",
    "num_clips": "num_clips",
    "device": "device",
    "threads": "threads",
    "checkpoint_every": "checkpoint_every",
    "log_every": "log_every",
}


def _run_vqgan(args: argparse.Namespace) -> int:
    from nuwa.training.train_vqgan import VQGANTrainOptions, train_vqgan

    opts = VQGANTrainOptions(
        kind=args.kind,
        progress=not args.no_progress,
        **_overrides(args, {**_COMMON, "batch_size": "batch_size"}),
    )
    train_vqgan(_config(args), opts, args.out, resume=args.resume)
    print(f"trained vqgan-{args.kind} in {args.out}")
    return 0


def _run_transformer(args: argparse.Namespace) -> int:
    import torch

    from nuwa.training.train_transformer import train_transformer
    from nuwa.training.transformer_options import TransformerTrainOptions

    names = {
        **_COMMON,
        "video_batch_size": "video_batch_size",
        "image_batch_size": "image_batch_size",
        "cond_dropout": "cond_dropout",
        "motion_weight": "motion_weight",
        "short_t2v_share": "short_t2v_share",
        "short_t2v_frames": "short_t2v_frames",
        "long_frames": "long_frames",
        "long_share": "long_share",
        "attribute_dropout": "attribute_dropout",
        "motion_dropout": "motion_dropout",
        "digit_share": "digit_share",
        "two_object_share": "two_object_share",
        "task_weights": "task_weights",
        "attn_impl": "attn_impl",
        "amp": "amp",
        "time_limit": "time_limit_s",
        "new_layer_lr_scale": "new_layer_lr_scale",
    }
    opts = TransformerTrainOptions(progress=not args.no_progress, **_overrides(args, names))
    model = train_transformer(
        _config(args),
        opts,
        args.out,
        args.vqgan,
        args.vqgan_seg,
        resume=args.resume,
        init_from=args.init_from,
        decoder_layers=args.decoder_layers,
    )
    if args.export:
        model.save_pretrained(args.export, dtype=torch.float16 if args.fp16 else None)
        print(f"saved the model to {args.export}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nuwa.training.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
