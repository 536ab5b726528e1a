"""The token cache of a transformer run: the training clips tokenised once with the VQ-GANs.

:func:`pretokenize` renders training clips and tokenises their frames, sketches and captions;
:class:`TokenCache` holds the result (all on the CPU) and is stored as safetensors in the run
directory (:data:`TOKEN_CACHE`). :func:`load_token_cache` reads a run's cache, tokenising only
the clips it lacks (a resumed run may raise ``num_clips``). Each clip's caption is kept in four
variants (:data:`CAPTION_VARIANTS`: with or without the motion, with or without the start
positions) so attribute dropout can train on captions that leave attributes open;
:func:`add_caption_variants` completes a cache made before those variants existed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from nuwa.data.synthetic_data import ClipMix, SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.training.transformer_options import TransformerTrainOptions

TOKEN_CACHE = "tokens.safetensors"  # the cache's file name in a run directory


@dataclass
class TokenCache:
    """Tokenised clips, all on the CPU: N clips, T frames, (h, w) token grids, L text slots."""

    video: Tensor  # (N, T, h, w) int64 VQ-GAN codes
    sketch: Tensor  # (N, T, hs, ws) int64 VQ-GAN-Seg codes
    caption: Tensor  # (N, L) int64 caption ids (with motion)
    still_caption: Tensor  # (N, L) int64 caption ids without motion (the first frame's text)
    caption_no_position: Tensor  # (N, L) the caption without the start positions
    still_caption_no_position: Tensor  # (N, L) without motion and positions ("a red square")
    blank_sketch: Tensor  # (hs, ws) int64 codes of an all-background sketch frame
    empty_text: Tensor  # (L,) int64 ids of the empty prompt

    def __len__(self) -> int:
        return self.video.shape[0]

    def save(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in dataclasses.asdict(self).items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> TokenCache:
        stored = load_file(str(path))
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in stored]
        if missing:
            raise ValueError(f"token cache {path} lacks {missing} (made by an older nuwa?)")
        return cls(**stored)

    # the fields with one entry per clip (the others are shared by every clip)
    PER_CLIP: ClassVar[tuple[str, ...]] = (
        "video",
        "sketch",
        "caption",
        "still_caption",
        "caption_no_position",
        "still_caption_no_position",
    )

    def text(self, idx: Tensor, motion: Tensor | bool, position: Tensor | bool) -> Tensor:
        """(B, L) caption ids of clips ``idx``, per sample with or without motion / position."""
        b = idx.shape[0]
        motion = torch.as_tensor(motion).expand(b)[:, None]
        position = torch.as_tensor(position).expand(b)[:, None]
        moving = torch.where(position, self.caption[idx], self.caption_no_position[idx])
        still = torch.where(position, self.still_caption[idx], self.still_caption_no_position[idx])
        return torch.where(motion, moving, still)

    def head(self, n: int) -> TokenCache:
        """The first ``n`` clips."""
        return dataclasses.replace(self, **{f: getattr(self, f)[:n] for f in self.PER_CLIP})

    def extended(self, more: TokenCache) -> TokenCache:
        """These clips, then ``more``'s (their blank sketch and empty prompt must agree)."""
        if not (
            torch.equal(self.blank_sketch, more.blank_sketch)
            and torch.equal(self.empty_text, more.empty_text)
        ):
            raise ValueError("the token caches were made by different tokenizers")
        joined = {f: torch.cat([getattr(self, f), getattr(more, f)]) for f in self.PER_CLIP}
        return dataclasses.replace(self, **joined)


DEFAULT_MIX = ClipMix()  # the dataset's own shares (a frozen value, safe as a default)


def training_clips(
    model: NuwaModel, num_clips: int, seed: int, mix: ClipMix = DEFAULT_MIX
) -> SyntheticVideoDataset:
    """The training clips of ``seed`` at the model's frame count and image size."""
    cfg = model.config
    return mix.dataset(num_clips, seed, frames=cfg.transformer.frames, size=cfg.vqgan.image_size)


@torch.no_grad()
def pretokenize(
    model: NuwaModel,
    num_clips: int,
    seed: int,
    batch: int = 32,
    progress: bool = True,
    first: int = 0,
    mix: ClipMix = DEFAULT_MIX,
    clip_frames: int | None = None,
) -> TokenCache:
    """Render training clips ``first .. num_clips-1`` and tokenise frames, sketches and captions.

    Clip ``i`` is the same whatever ``first`` is, so a cache of the first N clips extended by
    ``pretokenize(model, M, seed, first=N)`` equals ``pretokenize(model, M, seed)``.
    ``mix``: which clips are drawn (default: the dataset's mix). ``clip_frames`` past the model's
    frames renders each clip that long, its objects bouncing off the borders
    (``SyntheticVideoDataset.long_clip``: at 64 px the first frames are the plain clip's); the
    sketches stay at the model's frames (S2V trains on those)."""
    if not 0 <= first < num_clips:
        raise ValueError(f"need 0 <= first < num_clips, got first={first}, num_clips={num_clips}")
    cfg = model.config
    trained = cfg.transformer.frames
    frames = trained if clip_frames is None else clip_frames
    if frames < trained:
        raise ValueError(f"clip_frames must be >= the model's {trained} frames, got {frames}")
    ds = training_clips(model, num_clips, seed, mix)
    video, sketch = [], []
    starts = range(first, num_clips, batch)
    for start in tqdm(starts, disable=not progress, desc="tokenising"):
        indices = range(start, min(num_clips, start + batch))
        clips = [ds.long_clip(i, frames) if frames > trained else ds[i] for i in indices]
        video.append(model.frames_to_codes(np.stack([c.frames for c in clips])).cpu())
        sketches = np.stack([c.sketch[:trained] for c in clips])
        sketch.append(model.sketch_to_codes(sketches).cpu())
    s = cfg.vqgan_seg.image_size
    blank = model.sketch_to_codes(np.zeros((1, 1, s, s), dtype=np.uint8))[0, 0].cpu()
    return TokenCache(
        video=torch.cat(video),
        sketch=torch.cat(sketch),
        **tokenize_captions(model, ds, range(first, num_clips)),
        blank_sketch=blank,
        empty_text=torch.from_numpy(model.tokenizer.empty()),
    )


# the caption fields of a TokenCache and the (motion, position) each names
CAPTION_VARIANTS: dict[str, tuple[bool, bool]] = {
    "caption": (True, True),
    "still_caption": (False, True),
    "caption_no_position": (True, False),
    "still_caption_no_position": (False, False),
}


def tokenize_captions(
    model: NuwaModel, ds: SyntheticVideoDataset, indices: range
) -> dict[str, Tensor]:
    """The caption fields of a TokenCache for clips ``indices`` of ``ds`` (specs only: cheap)."""
    specs = [ds.spec(i) for i in indices]
    return {
        name: model.text_ids([sp.caption(motion, position) for sp in specs]).cpu()
        for name, (motion, position) in CAPTION_VARIANTS.items()
    }


def add_caption_variants(
    model: NuwaModel,
    path: Path,
    seed: int,
    mix: ClipMix = DEFAULT_MIX,
) -> dict[str, Tensor]:
    """The token cache file's fields, read once; a cache from before attribute dropout
    (captions with every attribute only) gets the caption variants it lacks, in the file too.
    The clips' specs are recomputed from ``seed`` and ``mix``: the stored captions must match
    them (the first few are compared when nothing is missing)."""
    stored = load_file(str(path))
    ds = training_clips(model, len(stored["video"]), seed, mix)
    complete = "caption_no_position" in stored
    fresh = tokenize_captions(model, ds, range(min(8, len(ds)) if complete else len(ds)))
    if not torch.equal(fresh["caption"], stored["caption"][: len(fresh["caption"])]):
        raise ValueError(
            f"token cache {path} holds other captions than the clips of seed {seed}"
            f" ({mix.describe()}): a run's --seed, --digit-share and --two-object-share must"
            " stay as they were"
        )
    if complete:
        return stored
    stored.update(fresh)
    save_file({k: v.contiguous() for k, v in stored.items()}, str(path))
    return stored


def load_token_cache(model: NuwaModel, path: Path, options: TransformerTrainOptions) -> TokenCache:
    """The run's first ``options.num_clips`` tokenised clips, tokenising only what ``path`` lacks.

    A resumed run may raise ``--num-clips``: the new clips are tokenised and the file extended.
    Lowering it trains on the first clips and leaves the file as it is."""
    frames = options.clip_frames(model.config.transformer.frames)
    cache = None
    if path.is_file():
        fields = add_caption_variants(model, path, options.seed, options.clip_mix)
        cache = TokenCache(**fields)
        if cache.video.shape[1] != frames:
            raise ValueError(
                f"token cache {path} holds {cache.video.shape[1]}-frame clips, this run trains on"
                f" {frames}: a run's --long-frames must stay as it was"
            )
    if cache is not None and len(cache) >= options.num_clips:
        return cache.head(options.num_clips)
    have = 0 if cache is None else len(cache)
    more = pretokenize(
        model,
        options.num_clips,
        options.seed,
        progress=options.progress,
        first=have,
        mix=options.clip_mix,
        clip_frames=frames,
    )
    cache = more if cache is None else cache.extended(more)
    cache.save(path)
    return cache
