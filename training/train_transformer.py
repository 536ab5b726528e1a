"""Multi-task training of the 3D transformer (NÜWA §3.3) on pre-tokenised synthetic clips.

The dataset is tokenised once with the trained VQ-GANs (:func:`pretokenize`, cached as
safetensors in the run directory); a step is then only the transformer. Each step trains one task
(chosen from ``(seed, step)`` with ``task_weights``):

====  ===================================  ==========================
task  condition (encoder)                  target (decoder, teacher-forced)
====  ===================================  ==========================
T2I   caption without motion               frame 0
T2V   caption                              all frames
S2I   sketch tokens of frame 0             frame 0
S2V   sketch tokens of all frames          all frames
V2V   empty prompt                         all frames (prefix given at inference)
====  ===================================  ==========================

Condition dropout (``cond_dropout``, per sample) swaps the text for the empty prompt and a sketch
for the blank (all-background) sketch, so one model also gives the unconditional logits that
classifier-free guidance needs. Image tasks use ``image_batch_size`` (a frame costs 1/T of a video).

Two options aim the loss at motion, which a caption decides only at frame 1 (later frames follow
from the frames before): ``short_t2v_share`` trains that share of T2V batches on the first
``short_t2v_frames`` frames of proportionally more clips, and ``motion_weight`` weights tokens that
changed since the frame before (:func:`token_loss_weights`). Logged losses are the plain mean
token cross-entropy either way.

The dataset's captions name every attribute; users' captions often do not ("a red square moves
left"). ``attribute_dropout`` trains text tasks, per sample, on the caption without the position
and (T2V) without the motion, each left out with that chance (``motion_dropout`` gives the motion
a rate of its own), so the model learns to draw an object wherever and however the caption leaves
open (the token cache holds all four variants).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from nuwa.data.synthetic_data import ClipMix, SyntheticVideoDataset
from nuwa.model.checkpoint import read_config
from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import NuwaTransformer
from nuwa.spec.config import NuwaConfig
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
from nuwa.training.growth import deepen_decoder, deepened_config
from nuwa.training.train_vqgan import load_trained_vqgan

TASKS = ("T2I", "T2V", "S2I", "S2V", "V2V")
VIDEO_TASKS = ("T2V", "S2V", "V2V")
TOKEN_CACHE = "tokens.safetensors"
MODEL_DIR = "model"  # a NuwaModel.save_pretrained directory written with every checkpoint


@dataclass
class TransformerTrainOptions:
    steps: int = 2000  # total optimizer steps
    video_batch_size: int = 4  # clips per video-task step
    image_batch_size: int = 24  # frames per image-task step
    lr: float = 5e-4  # peak AdamW learning rate, cosine-decayed to 10%
    warmup: int = 100
    weight_decay: float = 0.01
    cond_dropout: float = 0.1  # per-sample chance of the empty prompt / blank sketch
    motion_weight: float = 0.0  # extra loss weight of video tokens changed since the frame before
    short_t2v_share: float = 0.0  # share of T2V batches that train on the first frames only
    short_t2v_frames: int = 2  # frames of such a batch (with T / short_t2v_frames times the clips)
    attribute_dropout: float = 0.0  # per-sample chance each of the position / motion goes unnamed
    motion_dropout: float | None = None  # the motion's own chance; None -> attribute_dropout
    digit_share: float | None = None  # each object's chance of being a digit; None -> 1 in 4
    two_object_share: float | None = None  # each clip's chance of two objects; None -> 1 in 2
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"T2I": 0.2, "T2V": 0.3, "S2I": 0.15, "S2V": 0.2, "V2V": 0.15}
    )
    num_clips: int = 4000  # training clips tokenised once
    seed: int = 0
    device: str | None = None  # None -> CUDA if available
    attn_impl: str = "dense"  # dense is ~10x faster than gather for training on the CPU
    amp: str = "none"  # "bf16": bfloat16 autocast (2-4x faster on CPUs with AVX512-BF16 / AMX)
    log_every: int = 10
    checkpoint_every: int = 100
    time_limit_s: float | None = None  # stop (with a checkpoint) after this much wall time
    new_layer_lr_scale: float = 1.0  # a deepened run's new decoder layers: lr x this
    threads: int | None = None
    progress: bool = True

    @property
    def effective_motion_dropout(self) -> float:
        """The motion's chance of going unnamed: ``motion_dropout``, else ``attribute_dropout``."""
        return self.attribute_dropout if self.motion_dropout is None else self.motion_dropout

    @property
    def clip_mix(self) -> ClipMix:
        """Which training clips are drawn (checks ``digit_share`` and ``two_object_share``)."""
        return ClipMix(self.digit_share, self.two_object_share)


# ---- the token cache ---------------------------------------------------------------------------


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
) -> TokenCache:
    """Render training clips ``first .. num_clips-1`` and tokenise frames, sketches and captions.

    Clip ``i`` is the same whatever ``first`` is, so a cache of the first N clips extended by
    ``pretokenize(model, M, seed, first=N)`` equals ``pretokenize(model, M, seed)``.
    ``mix``: which clips are drawn (default: the dataset's mix)."""
    if not 0 <= first < num_clips:
        raise ValueError(f"need 0 <= first < num_clips, got first={first}, num_clips={num_clips}")
    cfg = model.config
    ds = training_clips(model, num_clips, seed, mix)
    video, sketch = [], []
    starts = range(first, num_clips, batch)
    for start in tqdm(starts, disable=not progress, desc="tokenising"):
        clips = [ds[i] for i in range(start, min(num_clips, start + batch))]
        video.append(model.frames_to_codes(np.stack([c.frames for c in clips])).cpu())
        sketch.append(model.sketch_to_codes(np.stack([c.sketch for c in clips])).cpu())
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


# ---- batches -----------------------------------------------------------------------------------


@dataclass
class Batch:
    task: str
    target: Tensor  # (B, T, h, w)
    text: Tensor | None  # (B, L) for text tasks
    sketch: Tensor | None  # (B, Ts, hs, ws) for sketch tasks


def pick_task(rng: np.random.Generator, weights: dict[str, float]) -> str:
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; known: {TASKS}")
    names = [t for t in TASKS if weights.get(t, 0) > 0]
    p = np.array([weights[t] for t in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def make_batch(cache: TokenCache, options: TransformerTrainOptions, step: int) -> Batch:
    """The batch of ``step``: a pure function of (cache, seed, step).

    With ``short_t2v_share`` a T2V batch is, that often, the first ``short_t2v_frames`` frames
    of proportionally more clips (the same number of tokens): the caption's motion decides
    only frame 1 (later frames follow from the frames before), so short clips give the text ->
    direction mapping several times the signal per step."""
    rng = step_rng(options.seed, step)
    task = pick_task(rng, options.task_weights)
    video = task in VIDEO_TASKS
    bs = options.video_batch_size if video else options.image_batch_size
    frames = cache.video.shape[1] if video else 1
    if task == "T2V" and options.short_t2v_share > 0 and rng.random() < options.short_t2v_share:
        frames = min(options.short_t2v_frames, frames)
        bs *= cache.video.shape[1] // frames
    idx = torch.from_numpy(rng.integers(0, len(cache), bs))
    drop = torch.from_numpy(rng.random(bs) < options.cond_dropout)
    target = cache.video[idx, :frames]
    text = sketch = None
    if task in ("T2I", "T2V"):
        position: Tensor | bool = True
        motion: Tensor | bool = video
        motion_dropout = options.effective_motion_dropout
        if options.attribute_dropout > 0 or motion_dropout > 0:
            # drawn only then: older runs' batches stay the same
            position = torch.from_numpy(rng.random(bs) >= options.attribute_dropout)
            if video:
                motion = torch.from_numpy(rng.random(bs) >= motion_dropout)
        text = cache.text(idx, motion=motion, position=position)
        text = torch.where(drop[:, None], cache.empty_text[None], text)
    elif task == "V2V":
        text = cache.empty_text[None].expand(bs, -1)
    else:
        sketch = cache.sketch[idx] if video else cache.sketch[idx, :1]
        sketch = torch.where(drop[:, None, None, None], cache.blank_sketch, sketch)
    return Batch(task, target, text, sketch)


def token_loss_weights(target: Tensor, motion_weight: float) -> Tensor:
    """Per-token loss weights for ``target`` (B, T, h, w): 1, plus ``motion_weight`` where a
    token differs from the same place in the frame before ("moving" tokens: an object's leading
    and trailing edges). Returns (B, T*h*w) in the flattened token order of the logits.

    The tokens that change carry the motion (with this VQ-GAN also some background flicker:
    its GroupNorm spans the frame), and at frame 1 the caption's direction is what decides
    them."""
    weights = torch.ones(target.shape, dtype=torch.float32, device=target.device)
    if motion_weight and target.shape[1] > 1:
        weights[:, 1:] += motion_weight * (target[:, 1:] != target[:, :-1]).float()
    return weights.flatten(1)


def batch_loss(
    model: NuwaModel, batch: Batch, device: torch.device, motion_weight: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(training loss, plain mean token cross-entropy) of ``batch``: the training loss weights
    each token by :func:`token_loss_weights` (normalised by their sum); with ``motion_weight``
    0 the two are the same number."""
    tr = model.transformer
    if batch.text is not None:
        cond = tr.encode_text(batch.text.to(device))
    else:
        assert batch.sketch is not None
        cond = tr.encode_sketch(batch.sketch.to(device))
    target = batch.target.to(device)
    logits = tr(cond, target)  # (B, N, V)
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    plain = nll.mean()
    if not motion_weight:
        return plain, plain
    weights = token_loss_weights(target, motion_weight).flatten()
    return (nll * weights).sum() / weights.sum(), plain


# ---- training ----------------------------------------------------------------------------------


def assemble_model(
    config: NuwaConfig, vqgan_run: str | Path, seg_run: str | Path, attn_impl: str = "dense"
) -> NuwaModel:
    """A fresh transformer beside the VQ-GANs of two training runs (their configs must match)."""
    vq = load_trained_vqgan(vqgan_run)
    seg = load_trained_vqgan(seg_run)
    if vq.kind != "rgb" or seg.kind != "seg":
        raise ValueError(f"{vqgan_run} must be a vqgan (rgb) run and {seg_run} a vqgan-seg run")
    if vq.cfg != config.vqgan or seg.cfg != config.vqgan_seg:
        raise ValueError("the VQ-GAN runs were trained with other VQ-GAN configs than this model's")
    model = NuwaModel(config, attn_impl=attn_impl)
    model.vqgan.load_state_dict(vq.state_dict())
    model.vqgan_seg.load_state_dict(seg.state_dict())
    return model


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
    cache = None
    if path.is_file():
        fields = add_caption_variants(model, path, options.seed, options.clip_mix)
        cache = TokenCache(**fields)
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
    )
    cache = more if cache is None else cache.extended(more)
    cache.save(path)
    return cache


def optimizer_groups(
    tr: NuwaTransformer, first_new_layer: int | None, new_layer_lr_scale: float
) -> list[dict]:
    """AdamW parameter groups, each with the ``lr_scale`` that ``set_lr`` multiplies the
    schedule's rate by: everything at 1, except that the decoder layers from ``first_new_layer``
    on (those a deepened run added, starting as pass-throughs) get ``new_layer_lr_scale``."""
    if first_new_layer is None or first_new_layer >= len(tr.decoder_layers):  # none added
        return [{"params": list(tr.parameters()), "lr_scale": 1.0}]
    new = list(tr.decoder_layers[first_new_layer:].parameters())
    new_ids = {id(p) for p in new}
    return [
        {"params": [p for p in tr.parameters() if id(p) not in new_ids], "lr_scale": 1.0},
        {"params": new, "lr_scale": new_layer_lr_scale},
    ]


def train_transformer(
    config: NuwaConfig,
    options: TransformerTrainOptions,
    run_dir: str | Path,
    vqgan_run: str | Path | None = None,
    seg_run: str | Path | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    decoder_layers: int | None = None,
) -> NuwaModel:
    """Train (or resume) the transformer in ``run_dir``; returns the whole model (eval mode).

    A fresh run needs the two VQ-GAN run directories, or ``init_from``: a model directory
    (``save_pretrained``) whose config, VQ-GANs and transformer weights the run starts from
    (fine-tuning; a fresh optimizer and learning-rate schedule). A resumed run reads either from
    its ``run.json``. ``decoder_layers`` deepens the ``init_from`` model to that many decoder layers
    before training (``growth.deepen_decoder``: new pass-through layers on top). After every
    checkpoint ``run_dir/model`` is a loadable model directory."""
    run_dir = Path(run_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    if options.amp not in ("none", "bf16"):
        raise ValueError(f"amp must be 'none' or 'bf16', got {options.amp!r}")
    if not 0 <= options.short_t2v_share <= 1 or options.short_t2v_frames < 1:
        raise ValueError(
            "short_t2v_share must be in [0, 1] and short_t2v_frames >= 1, got "
            f"{options.short_t2v_share} and {options.short_t2v_frames}"
        )
    if options.motion_weight < 0:
        raise ValueError(f"motion_weight must be >= 0, got {options.motion_weight}")
    for name in ("attribute_dropout", "motion_dropout"):
        rate = getattr(options, name)
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {rate}")
    _ = options.clip_mix  # checks the shares before anything is tokenised
    if options.new_layer_lr_scale <= 0:
        raise ValueError(f"new_layer_lr_scale must be > 0, got {options.new_layer_lr_scale}")
    first_new_layer: int | None = None  # a deepened run: the first decoder layer it added
    resuming = resume and has_checkpoint(run_dir)
    if resuming:
        saved = read_run_file(run_dir)
        config = NuwaConfig.from_dict(saved["config"])
        vqgan_run, seg_run = saved["vqgan_run"], saved["seg_run"]
        init_from = saved.get("init_from")
        decoder_layers = saved.get("decoder_layers")
    elif has_checkpoint(run_dir):
        raise FileExistsError(f"{run_dir} already holds a checkpoint; pass resume=True / --resume")
    if init_from is not None:
        if vqgan_run is not None or seg_run is not None:
            raise ValueError(
                "a run initialised from a model directory takes its VQ-GANs from there: "
                "give either init_from (--init-from) or the vqgan and vqgan-seg run directories"
            )
        config = read_config(init_from)
        if decoder_layers is not None:
            first_new_layer = config.transformer.n_decoder_layers
            config = deepened_config(config, decoder_layers)  # checks it only adds layers
    elif decoder_layers is not None:
        raise ValueError(
            "decoder_layers (--decoder-layers) deepens a trained model given by init_from "
            "(--init-from); a new model takes its depth from the config"
        )
    elif vqgan_run is None or seg_run is None:
        raise ValueError(
            "a new transformer run needs the vqgan and vqgan-seg run directories "
            "(or a model directory to start from, --init-from)"
        )
    write_run_file(
        run_dir,
        {
            "trainer": "transformer",
            "config": config.to_dict(),
            "options": dataclasses.asdict(options),
            "vqgan_run": None if vqgan_run is None else str(vqgan_run),
            "seg_run": None if seg_run is None else str(seg_run),
            "init_from": None if init_from is None else str(init_from),
            "decoder_layers": decoder_layers,
        },
    )
    torch.manual_seed(options.seed)
    if init_from is not None:
        model = NuwaModel.from_pretrained(init_from, attn_impl=options.attn_impl)
        if decoder_layers is not None:
            model = deepen_decoder(model, decoder_layers)
    else:
        model = assemble_model(config, vqgan_run, seg_run, options.attn_impl)
    model = model.to(device)
    model.vqgan.eval()
    model.vqgan_seg.eval()
    cache = load_token_cache(model, run_dir / TOKEN_CACHE, options)
    tr = model.transformer
    opt = torch.optim.AdamW(
        optimizer_groups(tr, first_new_layer, options.new_layer_lr_scale),
        lr=options.lr,
        betas=(0.9, 0.98),
        weight_decay=options.weight_decay,
    )
    log = LossLog(run_dir)
    state = TrainState()
    if resuming:
        state = load_checkpoint(run_dir, tr, opt)
        log.truncate_after(state.step)
    watch = Stopwatch(state.elapsed_s)
    session_start = watch.elapsed
    tr.train()
    bar = tqdm(
        total=options.steps, initial=state.step, disable=not options.progress, desc="transformer"
    )
    step = state.step
    ema: dict[str, float] = {}
    while step < options.steps:
        batch = make_batch(cache, options, step)
        seed_step(options.seed, step)
        lr = cosine_lr(step, options.steps, options.lr, options.warmup)
        set_lr(opt, lr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.amp == "bf16"):
            loss, plain = batch_loss(model, batch, device, options.motion_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.parameters(), 1.0)
        opt.step()
        step += 1
        value = float(plain.detach())  # the plain cross-entropy, comparable across runs
        ema[batch.task] = value if batch.task not in ema else 0.9 * ema[batch.task] + 0.1 * value
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in sorted(ema.items())})
        out_of_time = (
            options.time_limit_s is not None
            and watch.elapsed - session_start >= options.time_limit_s
        )
        last = step == options.steps or out_of_time
        if step % options.log_every == 0 or last:
            log.write(
                {
                    "step": step,
                    "task": batch.task,
                    "loss": value,
                    "lr": lr,
                    "time_s": round(watch.elapsed, 2),
                    "ema": dict(ema),
                }
            )
        if step % options.checkpoint_every == 0 or last:
            save_checkpoint(run_dir, tr, opt, TrainState(step, watch.elapsed, {"ema": ema}))
            model.save_pretrained(run_dir / MODEL_DIR)
        if out_of_time:
            bar.write(f"time limit reached at step {step}")
            break
    bar.close()
    return model.eval()
