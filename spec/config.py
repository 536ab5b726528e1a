"""Model configuration: dataclasses for the VQ-GAN, the VQ-GAN-Seg and the 3D transformer, and
the named presets ``tiny`` (tests), ``demo`` (the shipped model, DESIGN §11) and ``paper``
(NÜWA's 870M shape, arXiv 2111.12417 §4).

Configs are plain data: they serialise to JSON beside the weights (``to_dict`` / ``from_dict``)
and every other part (export, runtime) reads shapes from here, never from its own constants.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuwa.spec.cache_geometry import ring_slots

# a 3DNA neighbourhood extent per axis (time, height, width); nuwa.model.attention3d reads it here
Extents = tuple[int, int, int]

VQ_NORMS = ("group", "channel")


@dataclass
class VQGANConfig:
    """Convolutional VQ-GAN (Esser et al. 2021) with an EMA codebook."""

    image_size: int = 64  # frame side in pixels (square frames)
    in_channels: int = 3  # RGB; a VQ-GAN-Seg takes one channel per sketch class
    out_channels: int = 3  # RGB; a VQ-GAN-Seg predicts one logit per sketch class
    base_channels: int = 32  # width of the first conv stage
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)  # stages; all but the last halve H, W
    num_res_blocks: int = 1  # residual blocks per stage
    codebook_size: int = 512  # number of discrete codes
    embed_dim: int = 64  # code vector size
    ema_decay: float = 0.99  # EMA rate of codebook updates
    commitment_weight: float = 0.25  # beta in the commitment loss
    # feature normalisation in the encoder and decoder: "group" (GroupNorm over the whole frame,
    # >= 16 channels per group) or "channel" (each position's features over the channels only: a
    # code then depends on nothing outside its conv receptive field, so an object moving across
    # the frame changes only the codes near it)
    norm: str = "group"

    def validate(self, name: str = "vqgan") -> None:
        if self.norm not in VQ_NORMS:
            raise ValueError(f"{name}.norm must be one of {list(VQ_NORMS)}, got {self.norm!r}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def token_grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample
        return side, side


@dataclass
class TransformerConfig:
    """3D encoder-decoder transformer with 3D Nearby Attention (NÜWA §3)."""

    d_model: int = 256  # residual width
    n_heads: int = 8  # attention heads (head_dim = d_model / n_heads)
    n_encoder_layers: int = 2  # condition encoder depth
    n_decoder_layers: int = 4  # target decoder depth
    ffn_mult: int = 4  # FFN hidden = ffn_mult * d_model
    dropout: float = 0.0  # residual / attention dropout in training
    image_vocab_size: int = 512  # = VQ-GAN codebook size; the decoder's <bos> id is this value
    sketch_vocab_size: int = 512  # = VQ-GAN-Seg codebook size
    text_vocab_size: int = 259  # 256 bytes + <pad>, <unk>, <sep> (see tokenizer.py)
    max_text_len: int = 96  # text condition grid (1, 1, max_text_len); prompts are padded to it
    frames: int = 8  # trained number of target frames
    grid_h: int = 8  # target token grid height
    grid_w: int = 8  # target token grid width
    sketch_frames: int = 8  # max sketch-condition frames (S2V); S2I uses 1
    sketch_grid_h: int = 8  # sketch token grid height
    sketch_grid_w: int = 8  # sketch token grid width
    decoder_self_extents: Extents = (3, 3, 3)  # causal 3DNA in the decoder (paper video default)
    sketch_encoder_extents: Extents = (3, 3, 3)  # 3DNA self-attention over sketch tokens
    sketch_cross_extents: Extents = (1, 3, 3)  # decoder -> sketch condition 3DNA
    text_extents: Extents = (-1, -1, -1)  # text: full attention (encoder and cross)
    tie_output_embedding: bool = False  # share decoder token embedding and logits head

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def bos_id(self) -> int:
        return self.image_vocab_size

    @property
    def target_grid(self) -> tuple[int, int, int]:
        return (self.frames, self.grid_h, self.grid_w)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def cache_slots(self) -> int:
        """Ring-buffer KV slots per decoder layer: (et+1)*H*W (DESIGN §5)."""
        return ring_slots(self.frames, self.decoder_self_extents[0], self.grid_h, self.grid_w)

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        for name in ("decoder_self_extents", "sketch_encoder_extents", "sketch_cross_extents"):
            ext = getattr(self, name)
            if len(ext) != 3 or any(e < -1 for e in ext):
                raise ValueError(f"{name} must be three radii >= -1, got {ext}")


@dataclass
class NuwaConfig:
    """The whole model: tokenizers and transformer. ``name`` is the preset it came from."""

    name: str = "custom"
    vqgan: VQGANConfig = field(default_factory=VQGANConfig)
    vqgan_seg: VQGANConfig = field(
        default_factory=lambda: VQGANConfig(in_channels=5, out_channels=5, codebook_size=64)
    )
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    def validate(self) -> None:
        self.vqgan.validate("vqgan")
        self.vqgan_seg.validate("vqgan_seg")
        self.transformer.validate()
        t = self.transformer
        if t.image_vocab_size != self.vqgan.codebook_size:
            raise ValueError("transformer.image_vocab_size must equal vqgan.codebook_size")
        if t.sketch_vocab_size != self.vqgan_seg.codebook_size:
            raise ValueError("transformer.sketch_vocab_size must equal vqgan_seg.codebook_size")
        if (t.grid_h, t.grid_w) != self.vqgan.token_grid:
            raise ValueError(
                f"transformer grid {(t.grid_h, t.grid_w)} != VQ-GAN token grid "
                f"{self.vqgan.token_grid}"
            )
        if (t.sketch_grid_h, t.sketch_grid_w) != self.vqgan_seg.token_grid:
            raise ValueError("transformer sketch grid != VQ-GAN-Seg token grid")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NuwaConfig:
        check_config_dict(data)

        def build(kind: type, values: dict[str, Any]) -> Any:
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
            out = {}
            for f in dataclasses.fields(kind):
                if f.name in values:
                    v = values[f.name]
                    out[f.name] = tuple(v) if isinstance(v, list) else v
            return kind(**out)

        cfg = cls(
            name=data.get("name", "custom"),
            vqgan=build(VQGANConfig, data.get("vqgan", {})),
            vqgan_seg=build(VQGANConfig, data.get("vqgan_seg", {})),
            transformer=build(TransformerConfig, data.get("transformer", {})),
        )
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, path: str | Path) -> NuwaConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_name(cls, name: str) -> NuwaConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        cfg = PRESETS[name]()
        cfg.validate()
        return cfg


# the fields the runtime reads (nuwa.spec.model_spec.ModelSpec): a config.json must have them
RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "vqgan": ("image_size", "channel_mult"),
    "vqgan_seg": ("image_size", "in_channels"),
    "transformer": (
        "d_model",
        "n_heads",
        "n_decoder_layers",
        "image_vocab_size",
        "max_text_len",
        "frames",
        "grid_h",
        "grid_w",
        "sketch_frames",
        "decoder_self_extents",
    ),
}
_SECTIONS: dict[str, type] = {
    "vqgan": VQGANConfig,
    "vqgan_seg": VQGANConfig,
    "transformer": TransformerConfig,
}
_MAY_BE_ZERO = {"n_encoder_layers", "num_res_blocks"}  # other integer sizes are >= 1


def _check_field(value: Any, kind: str, where: str) -> None:
    """One field against its annotation (``int``, ``float``, ``str``, ``bool``, a tuple of ints)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "int":
        minimum = 0 if where.rsplit(".", 1)[-1] in _MAY_BE_ZERO else 1
        if not is_int or value < minimum:
            raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    elif kind == "float":
        if not (is_int or isinstance(value, float)) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
    else:  # tuple[int, ...] / Extents
        ok = (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        )
        if not ok or (kind == "Extents" and len(value) != 3):
            size = "3 integers" if kind == "Extents" else "a list of integers"
            raise ValueError(f"{where} must be {size}, got {value!r}")


def check_config_dict(data: Any, runtime: bool = False) -> None:
    """Schema of a ``config.json`` (parsed): known sections and fields, each of its type. With
    ``runtime`` the sections and :data:`RUNTIME_FIELDS` are required. ``ValueError`` naming the
    field."""
    if not isinstance(data, dict):
        raise ValueError(f"the config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"name", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: name, {', '.join(_SECTIONS)}")
    if "name" in data and not isinstance(data["name"], str):
        raise ValueError(f"name must be a string, got {data['name']!r}")
    for section, kind in _SECTIONS.items():
        if section not in data:
            if runtime:
                raise ValueError(f"required field {section} is missing")
            continue
        values = data[section]
        if not isinstance(values, dict):
            raise ValueError(f"{section} must be an object, got {type(values).__name__}")
        types = {f.name: str(f.type) for f in dataclasses.fields(kind)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(f"{section}: unknown fields {unknown}")
        for name in RUNTIME_FIELDS[section] if runtime else ():
            if name not in values:
                raise ValueError(f"required field {section}.{name} is missing")
        for name, value in values.items():
            _check_field(value, types[name], f"{section}.{name}")


def _tiny() -> NuwaConfig:
    """A few-thousand-parameter model for tests: 3 frames of 4×4 tokens from 16×16 pixels."""
    vq = VQGANConfig(
        image_size=16, base_channels=8, channel_mult=(1, 2, 2), codebook_size=32, embed_dim=8
    )
    seg = VQGANConfig(
        image_size=16,
        in_channels=5,
        out_channels=5,
        base_channels=8,
        channel_mult=(1, 2, 2),
        codebook_size=16,
        embed_dim=8,
    )
    tr = TransformerConfig(
        d_model=32,
        n_heads=4,
        n_encoder_layers=1,
        n_decoder_layers=2,
        ffn_mult=2,
        image_vocab_size=32,
        sketch_vocab_size=16,
        max_text_len=48,
        frames=3,
        grid_h=4,
        grid_w=4,
        sketch_frames=3,
        sketch_grid_h=4,
        sketch_grid_w=4,
        decoder_self_extents=(1, 1, 1),
        sketch_encoder_extents=(1, 1, 1),
        sketch_cross_extents=(0, 1, 1),
    )
    return NuwaConfig(name="tiny", vqgan=vq, vqgan_seg=seg, transformer=tr)


def _demo() -> NuwaConfig:
    """DESIGN §11 "demo-video": 8 frames × 8×8 tokens, d 256, 4 decoder layers, 8 heads, (3,3,3)."""
    return NuwaConfig(
        name="demo",
        # per-position (channel) normalisation: local tokens, which the shipped demo is trained
        # on (its MODEL_CARD.md tokenizer experiment: V2V 3.0 vs 12.8 px beside GroupNorm ones)
        vqgan=VQGANConfig(norm="channel"),
        vqgan_seg=VQGANConfig(
            in_channels=5,
            out_channels=5,
            base_channels=16,
            codebook_size=64,
            embed_dim=32,
            norm="channel",
        ),
        # 112 text slots: the dataset's longest two-object caption is 111 bytes (+ <eos>)
        transformer=TransformerConfig(sketch_vocab_size=64, max_text_len=112),
    )


def _paper() -> NuwaConfig:
    """NÜWA's 870M transformer: 12 encoder + 24 decoder layers, d 1280, 20 heads, 12,288 codes,
    10 frames of 21×21 tokens (336×336 pixels through a 16× VQ-GAN)."""
    vq = VQGANConfig(
        image_size=336,
        base_channels=128,
        channel_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        codebook_size=12288,
        embed_dim=256,
    )
    seg = VQGANConfig(
        image_size=336,
        in_channels=5,
        out_channels=5,
        base_channels=64,
        channel_mult=(1, 1, 2, 2, 4),
        codebook_size=1024,
        embed_dim=256,
    )
    tr = TransformerConfig(
        d_model=1280,
        n_heads=20,
        n_encoder_layers=12,
        n_decoder_layers=24,
        ffn_mult=4,
        image_vocab_size=12288,
        sketch_vocab_size=1024,
        text_vocab_size=259,
        max_text_len=77,
        frames=10,
        grid_h=21,
        grid_w=21,
        sketch_frames=10,
        sketch_grid_h=21,
        sketch_grid_w=21,
        decoder_self_extents=(3, 3, 3),
        sketch_encoder_extents=(3, 3, 3),
        sketch_cross_extents=(1, 3, 3),
    )
    return NuwaConfig(name="paper", vqgan=vq, vqgan_seg=seg, transformer=tr)


PRESETS = {"tiny": _tiny, "demo": _demo, "paper": _paper}
