"""Training loops on the tiny preset: resumable, deterministic, decreasing losses, fine-tuning
and growth, bad options, CLI (the training data: test_token_cache_and_batches.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nuwa.model.nuwa import NuwaModel
from nuwa.spec.tasks import TRAINED_TASK_CODES
from nuwa.training.cli import main as train_main
from nuwa.training.common import LossLog, has_checkpoint, load_checkpoint
from nuwa.training.token_cache import TOKEN_CACHE, TokenCache
from nuwa.training.train_transformer import train_transformer
from nuwa.training.train_vqgan import VQGANTrainOptions, train_vqgan

from .tiny_setups import tiny_config, tr_options


def vq_options(kind: str, steps: int, **kw) -> VQGANTrainOptions:
    base = dict(
        kind=kind,
        steps=steps,
        batch_size=8,
        num_clips=4,
        eval_clips=2,
        checkpoint_every=steps,
        log_every=1,
        warmup=5,
        threads=1,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return VQGANTrainOptions(**base)  # type: ignore[arg-type]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def vq_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vq_runs")
    cfg = tiny_config()
    train_vqgan(cfg, vq_options("rgb", 4), root / "vq")
    train_vqgan(cfg, vq_options("seg", 4), root / "seg")
    return root / "vq", root / "seg"


@pytest.mark.parametrize("kind", ["rgb", "seg"])
def test_vqgan_resume_equals_uninterrupted_run(kind: str, tmp_path: Path) -> None:
    cfg = tiny_config()
    full = train_vqgan(cfg, vq_options(kind, 6), tmp_path / "full")
    train_vqgan(cfg, vq_options(kind, 3), tmp_path / "split")
    with pytest.raises(FileExistsError):
        train_vqgan(cfg, vq_options(kind, 6), tmp_path / "split")
    resumed = train_vqgan(cfg, vq_options(kind, 6), tmp_path / "split", resume=True)
    assert_same_state(full, resumed)
    steps = [r["step"] for r in LossLog(tmp_path / "split").read() if "loss" in r]
    assert steps == list(range(1, 7))
    info = json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())
    assert info["step"] == 6


def test_vqgan_overfits_a_few_frames(tmp_path: Path) -> None:
    train_vqgan(tiny_config(), vq_options("rgb", 40, num_clips=1, lr=3e-3), tmp_path)
    losses = [r["loss"] for r in LossLog(tmp_path).read() if "loss" in r]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_transformer_resume_equals_uninterrupted_run(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    cfg = tiny_config()
    full = train_transformer(cfg, tr_options(6), tmp_path / "full", vq, seg)
    train_transformer(cfg, tr_options(3), tmp_path / "split", vq, seg)
    resumed = train_transformer(cfg, tr_options(6), tmp_path / "split", resume=True)
    assert_same_state(full.transformer, resumed.transformer)
    # the run directory always holds a loadable model directory
    loaded = NuwaModel.from_pretrained(tmp_path / "split" / "model")
    assert_same_state(loaded.transformer, resumed.transformer)
    assert has_checkpoint(tmp_path / "split")
    state = load_checkpoint(tmp_path / "split", resumed.transformer, None)
    assert state.step == 6


def test_transformer_fine_tunes_from_a_model_directory(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    source = train_transformer(tiny_config(), tr_options(3), tmp_path / "source", vq, seg)
    model_dir = tmp_path / "source" / "model"
    # learning rate 0 (and so no weight decay): the run starts from the source's weights
    same = train_transformer(
        tiny_config(), tr_options(1, lr=0.0), tmp_path / "lr0", init_from=model_dir
    )
    assert_same_state(source, same)
    # a fine-tuning run resumes like any other (run.json remembers where it started)
    full = train_transformer(tiny_config(), tr_options(4), tmp_path / "full", init_from=model_dir)
    train_transformer(tiny_config(), tr_options(2), tmp_path / "split", init_from=model_dir)
    resumed = train_transformer(tiny_config(), tr_options(4), tmp_path / "split", resume=True)
    assert_same_state(full, resumed)
    assert_same_state(source.vqgan, resumed.vqgan)
    with pytest.raises(ValueError, match="either init_from"):
        train_transformer(
            tiny_config(), tr_options(1), tmp_path / "both", vq, seg, init_from=model_dir
        )
    with pytest.raises(ValueError, match="--init-from"):
        train_transformer(tiny_config(), tr_options(1), tmp_path / "neither")


def test_transformer_fine_tunes_a_deepened_model(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    source = train_transformer(tiny_config(), tr_options(3), tmp_path / "source", vq, seg)
    model_dir = tmp_path / "source" / "model"
    have = source.config.transformer.n_decoder_layers
    # learning rate 0: the source's layers as they were, then the new pass-through layers
    same = train_transformer(
        tiny_config(),
        tr_options(1, lr=0.0),
        tmp_path / "lr0",
        init_from=model_dir,
        decoder_layers=have + 2,
    )
    for name, value in source.state_dict().items():
        assert torch.equal(same.state_dict()[name], value), name
    for new in same.transformer.decoder_layers[have:]:
        assert torch.count_nonzero(new.ffn.fc2.weight) == 0  # pass-through (test_growth.py)
    saved = NuwaModel.from_pretrained(tmp_path / "lr0" / "model")
    assert saved.config.transformer.n_decoder_layers == have + 2
    # the depth is remembered, so the run resumes like any other
    # (and the new layers learn at their own rate, 10x here)
    deep = dict(init_from=model_dir, decoder_layers=have + 1)
    scaled = dict(new_layer_lr_scale=10.0)
    full = train_transformer(tiny_config(), tr_options(4, **scaled), tmp_path / "full", **deep)
    train_transformer(tiny_config(), tr_options(2, **scaled), tmp_path / "split", **deep)
    resumed = train_transformer(
        tiny_config(), tr_options(4, **scaled), tmp_path / "split", resume=True
    )
    assert_same_state(full, resumed)
    assert json.loads((tmp_path / "split" / "run.json").read_text())["decoder_layers"] == have + 1
    groups = json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())
    old_group, new_group = groups["param_groups"]
    assert new_group["lr"] == pytest.approx(10 * old_group["lr"]) and old_group["lr"] > 0
    assert len(new_group["params"]) == len(
        list(resumed.transformer.decoder_layers[have].parameters())
    )
    new = resumed.transformer.decoder_layers[have]
    assert torch.count_nonzero(new.ffn.fc2.weight) > 0  # training reached the new layer
    with pytest.raises(ValueError, match="deepening can only add"):
        train_transformer(
            tiny_config(),
            tr_options(1),
            tmp_path / "shallower",
            init_from=model_dir,
            decoder_layers=have - 1,
        )
    as_is = dict(init_from=model_dir, decoder_layers=have)  # adds none: a plain fine-tune
    train_transformer(tiny_config(), tr_options(1, **scaled), tmp_path / "as_is", **as_is)
    with pytest.raises(ValueError, match="new_layer_lr_scale must be > 0"):
        train_transformer(
            tiny_config(), tr_options(1, new_layer_lr_scale=0.0), tmp_path / "zero", **deep
        )
    with pytest.raises(ValueError, match="deepens a trained model given by init_from"):
        train_transformer(tiny_config(), tr_options(1), tmp_path / "new", vq, seg, decoder_layers=4)


def test_transformer_loss_decreases_on_a_tiny_overfit(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    opts = tr_options(60, num_clips=2, lr=3e-3, cond_dropout=0.0)
    train_transformer(tiny_config(), opts, tmp_path, vq, seg)
    records = [r for r in LossLog(tmp_path).read() if "loss" in r]
    assert all(math.isfinite(r["loss"]) for r in records)
    first, last = records[0]["ema"], records[-1]["ema"]
    assert set(last) == set(TRAINED_TASK_CODES)
    for task in ("T2V", "S2V"):
        assert last[task] < 0.7 * first.get(task, records[0]["loss"]), task


def test_bad_loss_options_are_refused(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    with pytest.raises(ValueError, match="short_t2v_share"):
        train_transformer(tiny_config(), tr_options(1, short_t2v_share=1.5), tmp_path, vq, seg)
    with pytest.raises(ValueError, match="motion_weight"):
        train_transformer(tiny_config(), tr_options(1, motion_weight=-1), tmp_path / "b", vq, seg)
    with pytest.raises(ValueError, match="long_share"):
        train_transformer(tiny_config(), tr_options(1, long_share=1.5), tmp_path / "c", vq, seg)


def test_transformer_trains_on_long_clips(vq_runs, tmp_path: Path) -> None:
    """Clips past the model's frames: the cache holds them whole, every batch is a long one."""
    vq, seg = vq_runs
    opts = tr_options(4, long_frames=6, long_share=1.0, num_clips=3)
    opts.task_weights = {"T2V": 0.5, "V2V": 0.5}
    train_transformer(tiny_config(), opts, tmp_path, vq, seg)
    records = [r for r in LossLog(tmp_path).read() if "loss" in r]
    assert len(records) == 4 and all(math.isfinite(r["loss"]) for r in records)
    assert TokenCache.load(tmp_path / TOKEN_CACHE).video.shape[1] == 6


def test_cli_trains_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config().to_json())
    common = ["--config", str(config), "--device", "cpu", "--threads", "1", "--no-progress"]
    small = ["--num-clips", "2", "--batch-size", "4", "--checkpoint-every", "2"]
    vq = ["vqgan", "--out", str(tmp_path / "vq"), "--steps", "2", *small, *common]
    assert train_main(vq) == 0
    seg = ["vqgan-seg", "--out", str(tmp_path / "seg"), "--steps", "2", *small, *common]
    assert train_main(seg) == 0
    tr = [
        "transformer",
        "--out",
        str(tmp_path / "tr"),
        "--vqgan",
        str(tmp_path / "vq"),
        "--vqgan-seg",
        str(tmp_path / "seg"),
        "--num-clips",
        "2",
        "--video-batch-size",
        "1",
        "--image-batch-size",
        "2",
        *common,
    ]
    assert train_main([*tr, "--steps", "2"]) == 0
    export = tmp_path / "export"
    assert train_main([*tr, "--steps", "3", "--resume", "--export", str(export), "--fp16"]) == 0
    assert json.loads((tmp_path / "tr" / "checkpoint" / "state.json").read_text())["step"] == 3
    model = NuwaModel.from_pretrained(export)
    assert model.transformer.head.weight.dtype == torch.float32
    layers = model.config.transformer.n_decoder_layers + 1
    tune = ["transformer", "--out", str(tmp_path / "tune"), "--init-from", str(export)]
    tune += ["--decoder-layers", str(layers)]
    loss_flags = ["--motion-weight", "1.5", "--short-t2v-share", "0.5", "--short-t2v-frames", "1"]
    assert train_main([*tune, "--num-clips", "2", "--steps", "1", *loss_flags, *common]) == 0
    run = json.loads((tmp_path / "tune" / "run.json").read_text())
    assert run["init_from"] == str(export)
    assert run["decoder_layers"] == layers
    tuned = NuwaModel.from_pretrained(tmp_path / "tune" / "model")
    assert tuned.config.transformer.n_decoder_layers == layers
    assert run["options"]["motion_weight"] == 1.5
    assert (run["options"]["short_t2v_share"], run["options"]["short_t2v_frames"]) == (0.5, 1)
