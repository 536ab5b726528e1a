"""Model directories: ``config.json`` beside one safetensors file per network.

Layout of a model directory::

    config.json               NuwaConfig.to_dict()
    transformer.safetensors   NuwaTransformer state dict
    vqgan.safetensors         VQ-GAN (frames)
    vqgan_seg.safetensors     VQ-GAN-Seg (sketches)

Weights load with safetensors only (never pickle). Every failure says which file is at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nuwa.spec.checkpoint_files import CONFIG_FILE
from nuwa.spec.config import NuwaConfig


class CheckpointError(RuntimeError):
    """A model directory that is missing, incomplete, corrupt or does not match its config."""


def read_config(model_dir: str | Path) -> NuwaConfig:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not a nuwa model directory")
    try:
        return NuwaConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid nuwa config: {exc}") from exc


def save_module(module: nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Save a module's state dict (parameters and buffers) as safetensors, optionally cast."""
    state = {}
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[name] = t.contiguous()
    save_file(state, str(path))


def load_module(module: nn.Module, path: str | Path) -> nn.Module:
    """Load safetensors weights into ``module`` (cast to its dtype); strict on names and shapes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} is missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, the config needs "
                f"{tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
        state[name] = tensor.to(expected[name].dtype)
    module.load_state_dict(state, strict=True)
    return module
