"""What the runtime needs to know about a model, read from its ``config.json`` without PyTorch.

``nuwa.spec.config`` is the source of truth for the config; this is a read-only view of the
fields the decode loop and the task pipelines use, built from the same JSON (so the ONNX Runtime
path never imports torch).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa.spec.cache_geometry import ring_slots
from nuwa.spec.checkpoint_files import CONFIG_FILE
from nuwa.spec.config import check_config_dict
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.manifest import MANIFEST_FILE, Manifest  # an export holds the config there


@dataclass(frozen=True)
class ModelSpec:
    name: str
    image_size: int  # frame side in pixels
    sketch_size: int  # sketch side in pixels (VQ-GAN-Seg input)
    sketch_classes: int  # VQ-GAN-Seg input channels (class ids 0 .. sketch_classes-1)
    downsample: int  # VQ-GAN pixels per token side
    frames: int  # trained number of target frames
    grid_h: int  # target token grid
    grid_w: int
    sketch_frames: int  # max frames of a sketch condition
    image_vocab_size: int  # codes; <bos> is this value
    max_text_len: int  # text condition length (prompts are padded to it)
    n_decoder_layers: int
    n_heads: int
    head_dim: int
    cache_slots: int  # ring-buffer slots per decoder layer, (et+1)*H*W

    @property
    def bos_id(self) -> int:
        return self.image_vocab_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def max_prompt_bytes(self) -> int:
        return self.max_text_len - 1  # one slot for <eos>

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        vq, seg, tr = data["vqgan"], data["vqgan_seg"], data["transformer"]
        downsample = 2 ** (len(vq["channel_mult"]) - 1)
        et = int(tr["decoder_self_extents"][0])
        frames = int(tr["frames"])
        d, nh = int(tr["d_model"]), int(tr["n_heads"])
        return cls(
            name=str(data.get("name", "custom")),
            image_size=int(vq["image_size"]),
            sketch_size=int(seg["image_size"]),
            sketch_classes=int(seg["in_channels"]),
            downsample=downsample,
            frames=frames,
            grid_h=int(tr["grid_h"]),
            grid_w=int(tr["grid_w"]),
            sketch_frames=int(tr["sketch_frames"]),
            image_vocab_size=int(tr["image_vocab_size"]),
            max_text_len=int(tr["max_text_len"]),
            n_decoder_layers=int(tr["n_decoder_layers"]),
            n_heads=nh,
            head_dim=d // nh,
            cache_slots=ring_slots(frames, et, int(tr["grid_h"]), int(tr["grid_w"])),
        )

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelSpec:
        """The spec of an export: its config, with the decoder's geometry (layers, heads, head
        size, ring slots) as the manifest records it, so a backend never recomputes it."""
        d = manifest.decoder
        return dataclasses.replace(
            cls.from_dict(manifest.config),
            n_decoder_layers=d.num_layers,
            n_heads=d.num_heads,
            head_dim=d.head_dim,
            cache_slots=d.cache_slots,
        )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ModelSpec:
        """From a checkpoint's ``config.json`` or an export's ``manifest.json`` (its config)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise NuwaInputError(f"model directory {model_dir} does not exist")
        path = model_dir / CONFIG_FILE
        if not path.is_file() and (model_dir / MANIFEST_FILE).is_file():
            path = model_dir / MANIFEST_FILE
        if not path.is_file():
            raise NuwaInputError(
                f"{model_dir / CONFIG_FILE} is missing: not a nuwa model directory"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NuwaInputError(f"{path} is not valid JSON: {exc}") from None
        if path.name == MANIFEST_FILE:
            if not isinstance(data, dict) or "config" not in data:
                raise NuwaInputError(f"{path}: required field config is missing")
            data, prefix = data["config"], "config: "
        else:
            prefix = ""
        try:  # untrusted input: every field the runtime reads, of its type
            check_config_dict(data, runtime=True)
        except ValueError as exc:
            raise NuwaInputError(f"{path}: {prefix}{exc}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise NuwaInputError(f"{path} is not a valid nuwa config: {exc}") from exc
