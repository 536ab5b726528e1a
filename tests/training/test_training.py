"""Training loops on the tiny preset: resumable, deterministic, decreasing losses, CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nuwa.data.synthetic_data import ClipMix, SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.spec.config import NuwaConfig
from nuwa.spec.tasks import TRAINED_TASK_CODES
from nuwa.training.batches import (
    Batch,
    batch_loss,
    make_batch,
    pick_task,
    token_loss_weights,
    trained_task,
)
from nuwa.training.cli import main as train_main
from nuwa.training.common import LossLog, has_checkpoint, load_checkpoint
from nuwa.training.token_cache import (
    CAPTION_VARIANTS,
    TokenCache,
    add_caption_variants,
    load_token_cache,
    pretokenize,
)
from nuwa.training.train_transformer import train_transformer
from nuwa.training.train_vqgan import VQGANTrainOptions, train_vqgan
from nuwa.training.transformer_options import TransformerTrainOptions


def tiny_config() -> NuwaConfig:
    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 112  # the dataset's two-object captions
    return cfg


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


def tr_options(steps: int, **kw) -> TransformerTrainOptions:
    base = dict(
        steps=steps,
        video_batch_size=2,
        image_batch_size=4,
        num_clips=8,
        checkpoint_every=steps,
        log_every=1,
        warmup=5,
        threads=1,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return TransformerTrainOptions(**base)  # type: ignore[arg-type]


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


def assert_same_cache(a: TokenCache, b: TokenCache) -> None:
    for name, value in a.__dict__.items():
        assert torch.equal(value, getattr(b, name)), name


def test_token_cache_grows_by_tokenising_only_the_new_clips(tmp_path: Path) -> None:
    model = NuwaModel(tiny_config())
    whole = pretokenize(model, 5, seed=3, progress=False)
    head = pretokenize(model, 2, seed=3, progress=False)
    assert_same_cache(head.extended(pretokenize(model, 5, 3, progress=False, first=2)), whole)
    assert_same_cache(whole.head(2), head)

    path = tmp_path / "tokens.safetensors"
    head.save(path)
    grown = load_token_cache(model, path, tr_options(1, num_clips=5, seed=3))
    assert_same_cache(grown, whole)
    assert_same_cache(TokenCache.load(path), whole)  # the file was extended
    fewer = load_token_cache(model, path, tr_options(1, num_clips=4, seed=3))
    assert len(fewer) == 4 and len(TokenCache.load(path)) == 5  # the file is left as it is
    with pytest.raises(ValueError, match="first"):
        pretokenize(model, 2, seed=3, progress=False, first=2)


def random_cache(n: int = 5, t: int = 4, h: int = 4, L: int = 112) -> TokenCache:
    return TokenCache(
        video=torch.randint(0, 32, (n, t, h, h)),
        sketch=torch.randint(1, 16, (n, t, h, h)),
        caption=torch.randint(0, 256, (n, L)),
        still_caption=torch.randint(0, 256, (n, L)),
        caption_no_position=torch.randint(0, 256, (n, L)),
        still_caption_no_position=torch.randint(0, 256, (n, L)),
        blank_sketch=torch.zeros(h, h, dtype=torch.long),
        empty_text=torch.full((L,), 256),
    )


def test_batches_cover_tasks_and_drop_conditions() -> None:
    t = 3
    cache = random_cache(t=t)
    opts = tr_options(1, cond_dropout=0.5, video_batch_size=8, image_batch_size=8)
    seen: set[str] = set()
    dropped = 0
    for step in range(60):
        b = make_batch(cache, opts, step)
        seen.add(b.task)
        assert b.target.shape[1] == (t if b.task in ("T2V", "S2V", "V2V") else 1)
        if b.task == "V2V":
            assert b.text is not None and bool((b.text == 256).all())
        elif b.text is not None:
            dropped += int((b.text == 256).all(1).sum())
        else:
            assert b.sketch is not None and b.sketch.shape[1] == b.target.shape[1]
            dropped += int((b.sketch == 0).flatten(1).all(1).sum())
        again = make_batch(cache, opts, step)  # a pure function of (seed, step)
        assert torch.equal(again.target, b.target)
    assert seen == set(TRAINED_TASK_CODES)
    assert dropped > 0


def test_tasks_are_drawn_in_the_order_runs_were_trained_with() -> None:
    """pick_task draws an index into the trained task codes, so a run's batches (a resumed
    run's included) depend on their order in the task table: it stays the order of before."""
    assert TRAINED_TASK_CODES == ("T2I", "T2V", "S2I", "S2V", "V2V")
    rng = np.random.default_rng(0)
    only_s2i = [pick_task(rng, {"T2I": 0, "S2I": 1.0}) for _ in range(3)]
    assert only_s2i == ["S2I"] * 3
    with pytest.raises(ValueError, match="unknown tasks"):
        pick_task(rng, {"I2I": 1.0})
    with pytest.raises(ValueError, match="not a trained task"):
        trained_task("TV2V")


def test_short_t2v_batches_are_the_first_frames_of_more_clips() -> None:
    cache = random_cache(t=4)
    opts = tr_options(1, video_batch_size=2, short_t2v_share=0.5, short_t2v_frames=2)
    shapes: dict[str, set[tuple[int, ...]]] = {}
    for step in range(80):
        b = make_batch(cache, opts, step)
        shapes.setdefault(b.task, set()).add(tuple(b.target.shape[:2]))
        assert b.text is None or b.text.shape[0] == b.target.shape[0]
        # every target is the leading frames of clips of the cache
        frames = b.target.shape[1]
        assert any(torch.equal(b.target[0], c[:frames]) for c in cache.video)
    assert shapes["T2V"] == {(2, 4), (4, 2)}  # full clips and, half the time, 2-frame ones
    assert shapes["S2V"] == shapes["V2V"] == {(2, 4)}
    plain = tr_options(1, video_batch_size=2)
    for step in range(20):  # with the default share the batches are those of before
        assert make_batch(cache, plain, step).target.shape[1] in (1, 4)


def cache_index(cache: TokenCache, target: torch.Tensor) -> int:
    """The clip whose leading frames ``target`` (T, h, w) is."""
    return next(i for i, v in enumerate(cache.video) if torch.equal(v[: len(target)], target))


def caption_variant(cache: TokenCache, clip: int, text: torch.Tensor) -> str:
    """Which caption field of clip ``clip`` ``text`` is (or "empty")."""
    if torch.equal(text, cache.empty_text):
        return "empty"
    names = [n for n in CAPTION_VARIANTS if torch.equal(text, getattr(cache, n)[clip])]
    assert len(names) == 1, names
    return names[0]


def test_attribute_dropout_leaves_position_and_motion_out_of_some_captions(tmp_path: Path) -> None:
    cache = random_cache(n=64, t=4)
    opts = tr_options(1, attribute_dropout=0.5, cond_dropout=0.0, video_batch_size=64)
    opts.task_weights = {"T2I": 0.5, "T2V": 0.5}
    seen: dict[str, set[str]] = {"T2I": set(), "T2V": set()}
    for step in range(20):
        b = make_batch(cache, opts, step)
        assert b.text is not None
        for row, target in zip(b.text, b.target, strict=True):
            seen[b.task].add(caption_variant(cache, cache_index(cache, target), row))
    assert seen["T2V"] == set(CAPTION_VARIANTS)  # all four: with/without position and motion
    assert seen["T2I"] == {"still_caption", "still_caption_no_position"}  # stills never move
    plain = tr_options(1, cond_dropout=0.0, video_batch_size=8)
    plain.task_weights = {"T2V": 1.0}
    for step in range(5):  # without the option every caption names every attribute
        b = make_batch(cache, plain, step)
        assert b.text is not None
        for row, target in zip(b.text, b.target, strict=True):
            assert caption_variant(cache, cache_index(cache, target), row) == "caption"
    with pytest.raises(ValueError, match="attribute_dropout"):
        train_transformer(tiny_config(), tr_options(1, attribute_dropout=2.0), tmp_path)


def test_motion_dropout_gives_the_motion_a_rate_of_its_own(tmp_path: Path) -> None:
    cache = random_cache(n=64, t=4)
    keep_motion = tr_options(1, attribute_dropout=0.5, motion_dropout=0.0, cond_dropout=0.0)
    keep_motion.video_batch_size = 64
    keep_motion.task_weights = {"T2V": 1.0}
    seen: set[str] = set()
    for step in range(10):
        b = make_batch(cache, keep_motion, step)
        assert b.text is not None
        for row, target in zip(b.text, b.target, strict=True):
            seen.add(caption_variant(cache, cache_index(cache, target), row))
    assert seen == {"caption", "caption_no_position"}  # the motion is always named
    only_motion = tr_options(1, motion_dropout=1.0, cond_dropout=0.0, video_batch_size=16)
    only_motion.task_weights = {"T2V": 1.0}
    b = make_batch(cache, only_motion, 0)
    assert b.text is not None
    rows = zip(b.text, b.target, strict=True)
    variants = {caption_variant(cache, cache_index(cache, t), r) for r, t in rows}
    assert variants == {"still_caption"}  # the position named, the motion never
    # None follows attribute_dropout: the same batches as before the option existed
    same = tr_options(1, attribute_dropout=0.3, motion_dropout=0.3, cond_dropout=0.0)
    default = tr_options(1, attribute_dropout=0.3, cond_dropout=0.0)
    same.task_weights = default.task_weights = {"T2I": 0.5, "T2V": 0.5}
    for step in range(5):
        a, b = make_batch(cache, same, step).text, make_batch(cache, default, step).text
        assert a is not None and b is not None and torch.equal(a, b)
    with pytest.raises(ValueError, match="motion_dropout"):
        train_transformer(tiny_config(), tr_options(1, motion_dropout=-0.1), tmp_path)


def test_a_token_cache_from_before_attribute_dropout_gets_its_caption_variants(
    tmp_path: Path,
) -> None:
    model = NuwaModel(tiny_config())
    whole = pretokenize(model, 3, seed=4, progress=False)
    cfg = model.config
    ds = SyntheticVideoDataset(3, seed=4, frames=cfg.transformer.frames, size=cfg.vqgan.image_size)
    assert model.tokenizer.decode(whole.still_caption_no_position[1].numpy()) == ds.spec(1).caption(
        motion=False, position=False
    )
    old = {k: v for k, v in whole.__dict__.items() if "no_position" not in k}
    path = tmp_path / "tokens.safetensors"
    save_file(old, str(path))
    with pytest.raises(ValueError, match="caption_no_position"):
        TokenCache.load(path)
    with pytest.raises(ValueError, match="other captions"):
        add_caption_variants(model, path, seed=5)
    assert_same_cache(load_token_cache(model, path, tr_options(1, num_clips=3, seed=4)), whole)
    assert_same_cache(TokenCache.load(path), whole)  # the file was upgraded in place


@pytest.mark.parametrize(
    ("share", "flag", "drawn"),
    [
        ("digit_share", "digit-share", lambda caption: caption.startswith("the digit")),
        ("two_object_share", "two-object-share", lambda caption: " and " in caption),
    ],
)
def test_a_token_cache_is_tied_to_its_clip_mix(
    tmp_path: Path, share: str, flag: str, drawn: Callable[[str], bool]
) -> None:
    """A share of 1 draws only such clips; the cache reads back under the same mix and is
    refused under another one, and a share outside [0, 1] is refused before any work."""
    model = NuwaModel(tiny_config())
    path = tmp_path / "tokens.safetensors"
    only = tr_options(1, num_clips=4, seed=2, **{share: 1.0})
    cache = load_token_cache(model, path, only)
    captions = [model.tokenizer.decode(c.numpy()) for c in cache.caption]
    assert all(drawn(c) for c in captions), captions
    assert_same_cache(load_token_cache(model, path, only), cache)  # read back, not redone
    with pytest.raises(ValueError, match=flag):
        load_token_cache(model, path, tr_options(1, num_clips=4, seed=2, **{share: 0.0}))
    with pytest.raises(ValueError, match=share):
        train_transformer(tiny_config(), tr_options(1, **{share: 1.5}), tmp_path / "r")


def test_a_clip_mix_checks_and_describes_its_shares() -> None:
    assert ClipMix().describe() == "digit share default, two-object share default"
    assert ClipMix(0.35, 0.85).describe() == "digit share 0.35, two-object share 0.85"
    mixed = ClipMix(two_object_share=1.0).dataset(3, seed=1, frames=2, size=32)
    assert all(len(mixed.spec(i).objects) == 2 for i in range(3))
    with pytest.raises(ValueError, match="digit_share"):
        ClipMix(digit_share=-0.1)


def test_token_loss_weights_mark_tokens_that_change() -> None:
    target = torch.tensor([[[[1, 2]], [[1, 3]], [[4, 3]]]])  # (B 1, T 3, h 1, w 2)
    assert token_loss_weights(target, 0.0).tolist() == [[1, 1, 1, 1, 1, 1]]
    # frame 0 has no frame before; frame 1 changed its second token, frame 2 its first
    assert token_loss_weights(target, 2.5).tolist() == [[1, 1, 1, 3.5, 3.5, 1]]


def test_motion_weighted_loss_is_the_weighted_mean_token_cross_entropy() -> None:
    torch.manual_seed(0)
    model = NuwaModel(tiny_config()).eval()
    cfg = model.config.transformer
    cache = random_cache(t=cfg.frames, h=cfg.grid_h)
    cache.video %= cfg.image_vocab_size
    target = cache.video[:2]
    batch = Batch("T2V", target, cache.caption[:2], None)
    plain_loss, plain = batch_loss(model, batch, torch.device("cpu"))
    assert torch.equal(plain_loss, plain)
    loss, same_plain = batch_loss(model, batch, torch.device("cpu"), motion_weight=3.0)
    assert torch.allclose(same_plain, plain)
    # the slow, obvious version: every token's cross-entropy, weighted one by one
    tr = model.transformer
    logits = tr(tr.encode_text(batch.text), target)
    flat = target.flatten(1)
    w_sum = nll_sum = 0.0
    for b in range(target.shape[0]):
        for i in range(flat.shape[1]):
            nll = -torch.log_softmax(logits[b, i], -1)[flat[b, i]].item()
            t, rest = divmod(i, flat.shape[1] // target.shape[1])
            moved = t > 0 and flat[b, i] != flat[b, i - flat.shape[1] // target.shape[1]]
            w = 1.0 + 3.0 * float(moved)
            w_sum += w
            nll_sum += w * nll
    assert loss.item() == pytest.approx(nll_sum / w_sum, rel=1e-5)
    assert loss.item() != pytest.approx(plain.item(), rel=1e-3)


def test_bad_loss_options_are_refused(vq_runs, tmp_path: Path) -> None:
    vq, seg = vq_runs
    with pytest.raises(ValueError, match="short_t2v_share"):
        train_transformer(tiny_config(), tr_options(1, short_t2v_share=1.5), tmp_path, vq, seg)
    with pytest.raises(ValueError, match="motion_weight"):
        train_transformer(tiny_config(), tr_options(1, motion_weight=-1), tmp_path / "b", vq, seg)


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
