from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.vqgan import VQGAN, ChannelNorm
from nuwa.spec.config import NuwaConfig


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
    assert float(losses["loss"].detach()) < 0.7 * first
    assert not torch.equal(before, vq.quantizer.codebook)


def test_seg_variant_takes_class_maps() -> None:
    cfg = NuwaConfig.from_name("tiny").vqgan_seg
    vq = VQGAN(cfg, kind="seg").eval()
    classes = torch.randint(0, cfg.in_channels, (2, cfg.image_size, cfg.image_size))
    assert vq.encode(classes).shape == (2, *cfg.token_grid)
    losses, out = vq.losses(classes)
    assert out.reconstruction.shape == (2, cfg.out_channels, cfg.image_size, cfg.image_size)
    assert torch.isfinite(losses["loss"])


def _encoder_features(cfg, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return VQGAN(cfg).eval().encoder(x)


def test_channel_norm_normalises_each_position_over_the_channels() -> None:
    torch.manual_seed(0)
    norm = ChannelNorm(12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    for shape in [(1, 12, 4, 4), (3, 12, 5, 7)]:
        x = torch.randn(shape) * 3 + 1
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        reference = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight[:, None, None]
        reference = reference + norm.bias[:, None, None]
        torch.testing.assert_close(norm(x), reference, rtol=1e-5, atol=1e-5)


def test_channel_norm_codes_ignore_what_lies_outside_their_receptive_field() -> None:
    """Changing one corner of the frame: with norm="channel" the features of the opposite
    corner stay bit for bit the same; with GroupNorm (frame-wide statistics) they move."""
    base = dataclasses.replace(NuwaConfig.from_name("demo").vqgan, base_channels=16)
    x = torch.full((1, 3, 64, 64), -1.0)
    x[..., 20:28, 20:28] = 0.8  # an object
    moved = x.clone()
    moved[..., 2:10, 2:10] = 0.5  # a second object appears in the top-left corner
    # the 8x8 features' receptive field is 84 px wide around the token's centre, so the
    # bottom-right token (pixels 56..63, centre 59.5) sees rows/cols >= 18: not the corner
    for norm, unchanged in (("channel", True), ("group", False)):
        cfg = dataclasses.replace(base, norm=norm)
        before = _encoder_features(cfg, x)[..., -1, -1]
        after = _encoder_features(cfg, moved)[..., -1, -1]
        assert torch.equal(before, after) is unchanged, norm


def test_unknown_norm_is_a_config_error() -> None:
    data = NuwaConfig.from_name("tiny").to_dict()
    data["vqgan"]["norm"] = "batch"
    with pytest.raises(ValueError, match=r"vqgan\.norm must be one of \['group', 'channel'\]"):
        NuwaConfig.from_dict(data)
