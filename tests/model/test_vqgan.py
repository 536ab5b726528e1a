from __future__ import annotations

import numpy as np
import torch

from nuwa.model.config import NuwaConfig
from nuwa.model.synthetic_data import SyntheticVideoDataset
from nuwa.model.vqgan import VQGAN


def test_shapes_and_codes_are_consistent() -> None:
    cfg = NuwaConfig.from_name("tiny").vqgan
    torch.manual_seed(0)
    vq = VQGAN(cfg).eval()
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
    codes = vq.encode(x)
    assert codes.shape == (2, *cfg.token_grid) and codes.max() < cfg.codebook_size
    out = vq(x)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(vq.decode_codes(codes), out.reconstruction.clamp(-1, 1))


def test_training_steps_reduce_the_loss_and_move_the_codebook() -> None:
    cfg = NuwaConfig.from_name("tiny").vqgan
    torch.manual_seed(0)
    vq = VQGAN(cfg).train()
    # structured frames (objects on black), not noise: noise cannot be compressed by a codebook
    clips = SyntheticVideoDataset(4, seed=0, frames=2, size=cfg.image_size)
    frames = np.concatenate([clips[i].frames for i in range(4)])
    x = torch.from_numpy(frames).float().div(127.5).sub(1).movedim(-1, 1)
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    before = vq.quantizer.codebook.clone()
    first = None
    for _ in range(30):
        losses, _ = vq.losses(x)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = first if first is not None else float(losses["loss"].detach())
    assert float(losses["loss"]) < 0.7 * first
    assert not torch.equal(before, vq.quantizer.codebook)


def test_seg_variant_takes_class_maps() -> None:
    cfg = NuwaConfig.from_name("tiny").vqgan_seg
    vq = VQGAN(cfg, kind="seg").eval()
    classes = torch.randint(0, cfg.in_channels, (2, cfg.image_size, cfg.image_size))
    assert vq.encode(classes).shape == (2, *cfg.token_grid)
    losses, out = vq.losses(classes)
    assert out.reconstruction.shape == (2, cfg.out_channels, cfg.image_size, cfg.image_size)
    assert torch.isfinite(losses["loss"])
