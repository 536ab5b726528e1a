"""Training of the frame VQ-GAN (``kind="rgb"``) and the sketch VQ-GAN-Seg (``kind="seg"``) on the
synthetic dataset (DESIGN §10).

Frames (or sketch class maps) of ``num_clips`` training clips are rendered once and kept in memory;
each step draws a batch of frames from them as a pure function of ``(seed, step)``. The loss is
:meth:`~nuwa.model.vqgan.VQGAN.losses` (L1 + MSE + commitment for RGB, cross-entropy + commitment
for Seg) with the EMA codebook. Checkpoints are resumable (see :mod:`nuwa.training.common`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.model.vqgan import VQGAN
from nuwa.spec.config import NuwaConfig
from nuwa.spec.sketch_palette import SKETCH_CLASSES
from nuwa.training.common import (
    LossLog,
    Stopwatch,
    TrainState,
    cosine_lr,
    has_checkpoint,
    load_checkpoint,
    read_run_file,
    resolve_device,
    save_checkpoint,
    seed_step,
    set_lr,
    step_rng,
    write_run_file,
)

KINDS = ("rgb", "seg")


@dataclass
class VQGANTrainOptions:
    kind: str = "rgb"  # "rgb": frame VQ-GAN; "seg": sketch VQ-GAN-Seg
    steps: int = 3000  # total optimizer steps (a resumed run continues up to this)
    batch_size: int = 16  # frames per step
    lr: float = 1e-3  # peak learning rate (AdamW), cosine-decayed to 10%
    warmup: int = 100  # linear warmup steps
    weight_decay: float = 0.0
    num_clips: int = 600  # training clips rendered once (x frames each)
    eval_clips: int = 16  # held-out clips for the reconstruction metric
    seed: int = 0
    device: str | None = None  # None -> CUDA if available
    log_every: int = 10  # loss-log interval (steps)
    checkpoint_every: int = 200  # resumable checkpoint interval (steps)
    threads: int | None = None  # torch CPU threads (None: torch default)
    progress: bool = True


def frames_to_input(frames: np.ndarray | Tensor, kind: str) -> Tensor:
    """uint8 frames ``(B, S, S, 3)`` -> float ``(B, 3, S, S)`` in [-1, 1]; class maps
    ``(B, S, S)`` -> int64 (the Seg input)."""
    x = torch.as_tensor(frames)
    if kind == "seg":
        return x.long()
    return NuwaModel.frames_to_tensor(x)


def render_pool(
    config: NuwaConfig, kind: str, num_clips: int, seed: int, split: str = "train"
) -> np.ndarray:
    """All frames (rgb ``(N*T, S, S, 3)``) or sketches (seg ``(N*T, S, S)``) of ``num_clips``."""
    vq = config.vqgan if kind == "rgb" else config.vqgan_seg
    ds = SyntheticVideoDataset(
        num_clips, seed=seed, frames=config.transformer.frames, size=vq.image_size, split=split
    )  # type: ignore[arg-type]
    pool = [ds[i].frames if kind == "rgb" else ds[i].sketch for i in range(num_clips)]
    return np.concatenate(pool, axis=0)


def psnr(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """PSNR in dB between uint8 images (over all pixels of the batch)."""
    mse = float(((torch.as_tensor(a).double() - torch.as_tensor(b).double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


@torch.no_grad()
def reconstruction_metrics(vq: VQGAN, pool: np.ndarray, batch: int = 64) -> dict[str, float]:
    """RGB: PSNR (dB) of encode->decode; Seg: pixel accuracy and mean IoU over object classes."""
    was_training = vq.training
    vq.eval()
    device = next(vq.parameters()).device
    outs = []
    for i in range(0, len(pool), batch):
        x = frames_to_input(pool[i : i + batch], vq.kind).to(device)
        y = vq.decode_codes(vq.encode(x))
        if vq.kind == "rgb":
            outs.append(NuwaModel.tensor_to_frames(y))
        else:
            outs.append(y.argmax(1).to(torch.uint8))
    vq.train(was_training)
    rec = torch.cat(outs).cpu().numpy()
    if vq.kind == "rgb":
        return {"psnr": float(psnr(rec, pool))}
    ious = []
    for c in range(1, vq.cfg.out_channels):
        inter = np.logical_and(rec == c, pool == c).sum()
        union = np.logical_or(rec == c, pool == c).sum()
        if union:
            ious.append(inter / union)
    return {"pixel_acc": float((rec == pool).mean()), "miou": float(np.mean(ious))}


def build_vqgan(config: NuwaConfig, kind: str) -> VQGAN:
    if kind not in KINDS:
        raise ValueError(f"unknown VQ-GAN kind {kind!r}; expected one of {KINDS}")
    if kind == "seg":
        n = len(SKETCH_CLASSES)
        if (config.vqgan_seg.in_channels, config.vqgan_seg.out_channels) != (n, n):
            raise ValueError(
                f"the dataset has {n} sketch classes but vqgan_seg has "
                f"{config.vqgan_seg.in_channels} in / {config.vqgan_seg.out_channels} out channels"
            )
    return VQGAN(config.vqgan if kind == "rgb" else config.vqgan_seg, kind=kind)


def train_vqgan(
    config: NuwaConfig, options: VQGANTrainOptions, run_dir: str | Path, resume: bool = False
) -> VQGAN:
    """Train (or, with ``resume``, continue) a VQ-GAN in ``run_dir``; returns the trained module.

    Deterministic: the same options give the same weights, interrupted or not (on one device and
    thread count)."""
    run_dir = Path(run_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    if resume and has_checkpoint(run_dir):
        saved = read_run_file(run_dir)
        config = NuwaConfig.from_dict(saved["config"])
    elif has_checkpoint(run_dir) and not resume:
        raise FileExistsError(f"{run_dir} already holds a checkpoint; pass resume=True / --resume")
    write_run_file(
        run_dir,
        {
            "trainer": f"vqgan-{options.kind}",
            "config": config.to_dict(),
            "options": dataclasses.asdict(options),
        },
    )
    torch.manual_seed(options.seed)
    vq = build_vqgan(config, options.kind).to(device)
    opt = torch.optim.AdamW(
        vq.parameters(), lr=options.lr, betas=(0.9, 0.99), weight_decay=options.weight_decay
    )
    log = LossLog(run_dir)
    state = TrainState()
    if resume and has_checkpoint(run_dir):
        state = load_checkpoint(run_dir, vq, opt)
        log.truncate_after(state.step)
    pool = render_pool(config, options.kind, options.num_clips, options.seed)
    eval_pool = render_pool(config, options.kind, options.eval_clips, options.seed, "heldout")
    watch = Stopwatch(state.elapsed_s)
    vq.train()
    bar = tqdm(
        total=options.steps,
        initial=state.step,
        disable=not options.progress,
        desc=f"vqgan-{options.kind}",
        unit="step",
    )
    step = state.step
    while step < options.steps:
        rng = step_rng(options.seed, step)
        idx = rng.integers(0, len(pool), options.batch_size)
        x = frames_to_input(pool[idx], options.kind).to(device)
        seed_step(options.seed, step)
        lr = cosine_lr(step, options.steps, options.lr, options.warmup)
        set_lr(opt, lr)
        losses, _ = vq.losses(x)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vq.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        record = {k: float(v.detach()) for k, v in losses.items()}
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        last = step == options.steps
        if step % options.log_every == 0 or last:
            log.write({"step": step, "lr": lr, "time_s": round(watch.elapsed, 2), **record})
        if step % options.checkpoint_every == 0 or last:
            metrics = reconstruction_metrics(vq, eval_pool)
            log.write({"step": step, "eval": metrics})
            bar.write(f"step {step}: loss {record['loss']:.4f} eval {metrics}")
            save_checkpoint(run_dir, vq, opt, TrainState(step, watch.elapsed, metrics))
    bar.close()
    return vq.eval()


def load_trained_vqgan(run_dir: str | Path, device: str | torch.device = "cpu") -> VQGAN:
    """The VQ-GAN of a training run directory (its latest checkpoint), in eval mode."""
    run_dir = Path(run_dir)
    saved = read_run_file(run_dir)
    kind = saved["trainer"].split("-", 1)[1]
    vq = build_vqgan(NuwaConfig.from_dict(saved["config"]), kind).to(device)
    load_checkpoint(run_dir, vq, None)
    return vq.eval()
