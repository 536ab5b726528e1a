"""The whole NÜWA model as one object: VQ-GAN (frames), VQ-GAN-Seg (sketches), byte tokenizer and
the 3D transformer, with conversions between pixels, class maps, prompts and tokens.

Frames are ``uint8 (B, T, S, S, 3)``; sketches are class maps ``int (B, T, S, S)``; token grids are
``int64 (B, T, h, w)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nuwa.model.checkpoint import load_module, read_config, save_module
from nuwa.model.transformer import EncodedCondition, NuwaTransformer
from nuwa.model.vqgan import VQGAN
from nuwa.spec.checkpoint_files import CONFIG_FILE, WEIGHT_FILES
from nuwa.spec.config import NuwaConfig
from nuwa.spec.pixel_scaling import PIXEL_SCALE, PIXEL_SHIFT
from nuwa.spec.tokenizer import ByteTokenizer


class NuwaModel(nn.Module):
    def __init__(self, config: NuwaConfig, attn_impl: str = "auto") -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.vqgan = VQGAN(config.vqgan, kind="rgb")
        self.vqgan_seg = VQGAN(config.vqgan_seg, kind="seg")
        self.transformer = NuwaTransformer(config.transformer, attn_impl=attn_impl)
        self.tokenizer = ByteTokenizer(config.transformer.max_text_len)

    # ---- persistence ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, attn_impl: str = "auto") -> NuwaModel:
        model_dir = Path(model_dir)
        model = cls(read_config(model_dir), attn_impl=attn_impl)
        for attr, fname in WEIGHT_FILES.items():
            load_module(getattr(model, attr), model_dir / fname)
        return model.eval()

    def save_pretrained(self, model_dir: str | Path, dtype: torch.dtype | None = None) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CONFIG_FILE).write_text(self.config.to_json())
        for attr, fname in WEIGHT_FILES.items():
            save_module(getattr(self, attr), model_dir / fname, dtype)

    @property
    def device(self) -> torch.device:
        return self.transformer.head.weight.device

    # ---- pixels <-> tokens -----------------------------------------------------------------

    @staticmethod
    def frames_to_tensor(frames: np.ndarray | Tensor) -> Tensor:
        """uint8 ``(..., S, S, 3)`` -> float ``(..., 3, S, S)`` in [-1, 1]."""
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, Tensor) else frames)
        return x.float().div(PIXEL_SCALE).sub(PIXEL_SHIFT).movedim(-1, -3)

    @staticmethod
    def tensor_to_frames(x: Tensor) -> Tensor:
        """float ``(..., 3, S, S)`` in [-1, 1] -> uint8 ``(..., S, S, 3)``."""
        return (
            ((x.clamp(-1, 1) + PIXEL_SHIFT) * PIXEL_SCALE).round().to(torch.uint8).movedim(-3, -1)
        )

    @torch.no_grad()
    def frames_to_codes(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 ``(B, T, S, S, 3)`` -> codes ``(B, T, h, w)``."""
        x = self.frames_to_tensor(frames).to(self.device)
        b, t = x.shape[:2]
        codes = self.vqgan.encode(x.flatten(0, 1))
        return codes.view(b, t, *codes.shape[1:])

    @torch.no_grad()
    def codes_to_frames(self, codes: Tensor) -> Tensor:
        """Codes ``(B, T, h, w)`` -> uint8 ``(B, T, S, S, 3)``."""
        b, t = codes.shape[:2]
        x = self.vqgan.decode_codes(codes.flatten(0, 1).to(self.device))
        return self.tensor_to_frames(x).view(b, t, *x.shape[2:], 3)

    @torch.no_grad()
    def sketch_to_codes(self, sketch: np.ndarray | Tensor) -> Tensor:
        """Class maps ``(B, T, S, S)`` -> VQ-GAN-Seg codes ``(B, T, h, w)``."""
        s = torch.as_tensor(np.asarray(sketch) if not isinstance(sketch, Tensor) else sketch)
        s = s.long().to(self.device)
        if int(s.max()) >= self.config.vqgan_seg.in_channels or int(s.min()) < 0:
            raise ValueError(
                f"sketch class ids must be in [0, {self.config.vqgan_seg.in_channels}), got "
                f"[{int(s.min())}, {int(s.max())}]"
            )
        b, t = s.shape[:2]
        codes = self.vqgan_seg.encode(s.flatten(0, 1))
        return codes.view(b, t, *codes.shape[1:])

    # ---- conditions ------------------------------------------------------------------------

    def text_ids(self, prompts: list[str], allow_empty: bool = False) -> Tensor:
        ids = self.tokenizer.encode_batch(prompts, allow_empty=allow_empty)
        return torch.from_numpy(ids).to(self.device)

    @torch.no_grad()
    def text_condition(self, prompts: list[str], allow_empty: bool = False) -> EncodedCondition:
        return self.transformer.encode_text(self.text_ids(prompts, allow_empty))

    @torch.no_grad()
    def sketch_condition(self, sketch: np.ndarray | Tensor) -> EncodedCondition:
        return self.transformer.encode_sketch(self.sketch_to_codes(sketch))

    @torch.no_grad()
    def blank_sketch_condition(self, batch: int, frames: int) -> EncodedCondition:
        """The unconditional sketch (all background): CFG's negative for sketch tasks."""
        s = self.config.vqgan_seg.image_size
        blank = torch.zeros(batch, frames, s, s, dtype=torch.long, device=self.device)
        return self.sketch_condition(blank)
