"""Multi-task training of the 3D transformer (NÜWA §3.3) on pre-tokenised synthetic clips.

The dataset is tokenised once with the trained VQ-GANs (:mod:`nuwa.training.token_cache`,
cached as safetensors in the run directory); a step is then only the transformer: the step's
batch and loss (:mod:`nuwa.training.batches`: one task per step, condition and attribute
dropout, the motion-aimed loss options), an AdamW step on a cosine schedule, and a loss log.
This module is the loop: :func:`train_transformer` starts, resumes, fine-tunes
(``init_from``) or deepens (``decoder_layers``) a run and checkpoints it, with the model beside
the VQ-GANs (:func:`assemble_model`) and its optimizer groups (:func:`optimizer_groups`). The
options are :class:`~nuwa.training.transformer_options.TransformerTrainOptions`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nuwa.model.checkpoint import read_config
from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import NuwaTransformer
from nuwa.spec.config import NuwaConfig
from nuwa.training.batches import batch_loss, make_batch
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
    write_run_file,
)
from nuwa.training.growth import deepen_decoder, deepened_config
from nuwa.training.token_cache import TOKEN_CACHE, load_token_cache
from nuwa.training.train_vqgan import load_trained_vqgan
from nuwa.training.transformer_options import TransformerTrainOptions

MODEL_DIR = "model"  # a NuwaModel.save_pretrained directory written with every checkpoint


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
    if not 0 <= options.long_share <= 1 or options.long_frames < 0:
        raise ValueError(
            "long_share must be in [0, 1] and long_frames >= 0, got "
            f"{options.long_share} and {options.long_frames}"
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
        batch = make_batch(cache, options, step, config.transformer.frames)
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
