"""VQ-GAN (Esser et al. 2021, as used by NÜWA §3.1): a convolutional encoder, an EMA codebook
quantizer and a convolutional decoder, with reconstruction and commitment losses. The same class
is the VQ-GAN-Seg for one-hot segmentation sketches (``kind="seg"``: the input is a one-hot class
map, the output class logits, the loss cross-entropy).

No pretrained perceptual network can be downloaded, so the RGB loss is L1 + MSE (no adversarial
loss: the synthetic frames are flat colours, which L1 + MSE reconstruct).

Shapes: images ``(B, C, S, S)`` in ``[-1, 1]``; codes ``(B, h, w)`` int64 with ``h = S / 2**(n-1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nuwa.spec.config import VQ_NORMS, VQGANConfig


def _group_norm(ch: int) -> nn.GroupNorm:
    # >= 16 channels per group: one-channel groups (instance norm) rescale every feature map on
    # its own and so erase the colour of a solid object on a plain background.
    return nn.GroupNorm(math.gcd(32, max(1, ch // 16)), ch, eps=1e-6)


class ChannelNorm(nn.Module):
    """Normalises each position's feature vector over the channels (layer norm of a ``(B, C, H,
    W)`` map along ``C``) with a per-channel scale and shift. Unlike GroupNorm it pools nothing
    across positions, so an output depends only on the input inside its receptive field."""

    def __init__(self, ch: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels, self.eps = ch, eps
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        # channels last for layer_norm: exports as one LayerNormalization node, which FP16
        # conversion keeps in FP32 and TensorRT runs as a normalization layer
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def _norm(ch: int, kind: str) -> nn.Module:
    """The encoder/decoder normalisation ``VQGANConfig.norm`` names."""
    if kind == "group":
        return _group_norm(ch)
    if kind == "channel":
        return ChannelNorm(ch)
    raise ValueError(f"unknown VQ-GAN norm {kind!r}; expected one of {list(VQ_NORMS)}")


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = _norm(cin, norm)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout, norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """(B, C, S, S) -> (B, embed_dim, S/f, S/f)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        blocks: list[nn.Module] = []
        cin = chs[0]
        for i, ch in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, ch, cfg.norm))
                cin = ch
            if i < len(chs) - 1:
                blocks.append(nn.Conv2d(ch, ch, 4, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(cin, cfg.norm)
        self.conv_out = nn.Conv2d(cin, cfg.embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class Decoder(nn.Module):
    """(B, embed_dim, h, w) -> (B, out_channels, h*f, w*f)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in reversed(cfg.channel_mult)]
        self.conv_in = nn.Conv2d(cfg.embed_dim, chs[0], 3, padding=1)
        blocks: list[nn.Module] = []
        cin = chs[0]
        for i, ch in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, ch, cfg.norm))
                cin = ch
            if i < len(chs) - 1:
                blocks.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                blocks.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(cin, cfg.norm)
        self.conv_out = nn.Conv2d(cin, cfg.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))


class EMAQuantizer(nn.Module):
    """Nearest-code vector quantizer whose codebook follows an exponential moving average of the
    encoder outputs assigned to each code (van den Oord et al. 2017, appendix). Unused codes are
    restarted from the worst-represented encoder outputs of the batch while training."""

    def __init__(
        self, codebook_size: int, dim: int, decay: float = 0.99, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.decay, self.eps = decay, eps
        self.dead_count = 0.03  # EMA usage per step below which a code is restarted
        embed = torch.randn(codebook_size, dim) * 0.1
        self.register_buffer("codebook", embed)  # (K, D)
        # zero counts: every code starts dead, so the first training batch initialises the
        # codebook from data (see _ema_update)
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", torch.zeros_like(embed))

    def codes(self, z: Tensor) -> Tensor:
        """(B, D, h, w) -> nearest code ids (B, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (N, D)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None, :]
        )
        return dist.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: Tensor) -> Tensor:
        """(B, h, w) -> (B, D, h, w)."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor) -> None:
        old = self.codebook.clone()
        onehot = F.one_hot(codes, self.codebook.shape[0]).type_as(flat)  # (N, K)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (n + self.codebook.shape[0] * self.eps) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.dead_count
        if dead.any():
            # Restart dead codes from the batch vectors the codebook represents worst. Uniformly
            # random picks would be mostly background; the worst-represented vectors are the
            # rare content (small coloured objects) that otherwise never gets a code.
            error = (flat - old[codes]).pow(2).sum(1)
            k = min(int(dead.sum()), flat.shape[0])
            pick = error.topk(k).indices
            idx = dead.nonzero().squeeze(1)[:k]
            # a restarted code that wins no vectors is dead again after ~70 steps
            fresh = 2 * self.dead_count
            self.codebook[idx] = flat[pick]
            self.ema_sum[idx] = flat[pick] * fresh
            self.ema_count[idx] = fresh

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (quantized z with straight-through gradient, codes, commitment loss)."""
        codes = self.codes(z)
        zq = self.lookup(codes)
        if self.training:
            self._ema_update(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), codes.reshape(-1))
        commit = F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), codes, commit


@dataclass
class VQOutput:
    reconstruction: Tensor  # RGB in [-1, 1] (kind rgb) or class logits (kind seg)
    codes: Tensor  # (B, h, w)
    commitment_loss: Tensor


class VQGAN(nn.Module):
    """Tokenizer for frames (``kind="rgb"``) or one-hot sketches (``kind="seg"``)."""

    def __init__(self, cfg: VQGANConfig, kind: str = "rgb") -> None:
        super().__init__()
        if kind not in ("rgb", "seg"):
            raise ValueError(f"unknown VQ-GAN kind {kind!r}; expected 'rgb' or 'seg'")
        cfg.validate("vqgan" if kind == "rgb" else "vqgan_seg")
        self.cfg, self.kind = cfg, kind
        self.encoder = Encoder(cfg)
        self.quantizer = EMAQuantizer(cfg.codebook_size, cfg.embed_dim, cfg.ema_decay)
        self.decoder = Decoder(cfg)

    def prepare_input(self, x: Tensor) -> Tensor:
        """Seg: class map (B, S, S) int64 -> one-hot (B, C, S, S); RGB passes through."""
        if self.kind == "seg" and x.dim() == 3:
            return F.one_hot(x.long(), self.cfg.in_channels).permute(0, 3, 1, 2).float()
        return x

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) (or class maps (B, S, S) for seg) -> codes (B, h, w)."""
        return self.quantizer.codes(self.encoder(self.prepare_input(x)))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes (B, h, w) -> images in [-1, 1] (rgb) or class logits (seg)."""
        out = self.decoder(self.quantizer.lookup(codes))
        return out.clamp(-1, 1) if self.kind == "rgb" else out

    def forward(self, x: Tensor) -> VQOutput:
        zq, codes, commit = self.quantizer(self.encoder(self.prepare_input(x)))
        return VQOutput(self.decoder(zq), codes, commit)

    def losses(self, x: Tensor) -> tuple[dict[str, Tensor], VQOutput]:
        """Reconstruction + commitment losses for a batch (``x`` as :meth:`encode` takes it)."""
        out = self(x)
        if self.kind == "seg":
            target = x.long() if x.dim() == 3 else x.argmax(1)
            rec = F.cross_entropy(out.reconstruction, target)
        else:
            rec = F.l1_loss(out.reconstruction, x) + F.mse_loss(out.reconstruction, x)
        total = rec + self.cfg.commitment_weight * out.commitment_loss
        return {"loss": total, "reconstruction": rec, "commitment": out.commitment_loss}, out
