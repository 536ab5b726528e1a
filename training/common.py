"""Shared training machinery: devices, seeds, learning-rate schedule, the loss log and resumable
training checkpoints (model + optimizer + step, safetensors and JSON only — never pickle).

A run directory holds::

    run.json                  what was trained (kind, NuwaConfig, options)
    log.jsonl                 one JSON object per logged step (losses, lr, seconds)
    checkpoint/               the latest resumable state, replaced atomically
        model.safetensors     trained module state dict (fp32)
        optimizer.safetensors optimizer state tensors, keyed ``<param index>.<name>``
        state.json            step, optimizer param groups and scalar state, elapsed seconds

Every batch is a pure function of ``(seed, step)`` (see :func:`step_rng`, :func:`seed_step`), so a
resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "log.jsonl"
RUN_FILE = "run.json"


def resolve_device(device: str | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; a named CUDA device must exist."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"--device {device} asked for CUDA but this PyTorch has no usable CUDA device; "
            "use --device cpu or install a CUDA build of torch"
        )
    return dev


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one training step (batch choice, task, condition dropout)."""
    return np.random.default_rng(np.random.SeedSequence([seed, step, stream]))


def seed_step(seed: int, step: int) -> None:
    """Seed torch's global RNG for one step (e.g. the VQ codebook's dead-code restarts)."""
    torch.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warmup to ``peak`` then cosine decay to ``floor * peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's rate to ``lr`` times the group's ``lr_scale`` (1 where it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class LossLog:
    """Appends one JSON object per call to ``log.jsonl`` (kept across resumes)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOG_FILE

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from)."""
        if not self.path.is_file():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(f"{line}\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]


# ---- resumable checkpoints ---------------------------------------------------------------------


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    elapsed_s: float = 0.0  # training wall time so far (all sessions)
    extra: dict[str, Any] | None = None  # trainer-specific JSON state (e.g. best metric)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path, module: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """Write the resumable state to ``run_dir/checkpoint`` (atomically: a temp dir, renamed)."""
    tmp = run_dir / f"{CHECKPOINT_DIR}.tmp"
    final = run_dir / CHECKPOINT_DIR
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    info = {"step": state.step, "elapsed_s": state.elapsed_s, "extra": state.extra or {}, **meta}
    (tmp / "state.json").write_text(json.dumps(info, indent=1))
    old = run_dir / f"{CHECKPOINT_DIR}.old"
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / "state.json").is_file()


def load_checkpoint(
    run_dir: Path, module: nn.Module, optimizer: torch.optim.Optimizer | None
) -> TrainState:
    """Restore module (and optimizer) from ``run_dir/checkpoint``; returns the saved state."""
    ckpt = run_dir / CHECKPOINT_DIR
    if not (ckpt / "state.json").is_file():
        raise FileNotFoundError(f"no training checkpoint in {run_dir} (expected {ckpt}/state.json)")
    info = json.loads((ckpt / "state.json").read_text())
    device = next(module.parameters()).device
    weights = load_file(str(ckpt / "model.safetensors"), device=str(device))
    module.load_state_dict(weights, strict=True)
    if optimizer is not None:
        tensors = load_file(str(ckpt / "optimizer.safetensors"), device=str(device))
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            # AdamW keeps "step" on the CPU unless capturable/fused
            state.setdefault(int(idx), {})[name] = value.cpu() if name == "step" else value
        for idx, scalars in info["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return TrainState(info["step"], info["elapsed_s"], info.get("extra") or {})


def write_run_file(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2))


def read_run_file(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {run_dir} is not a training run directory")
    return json.loads(path.read_text())


class Stopwatch:
    """Wall time of this session plus what earlier sessions of a resumed run spent."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start
