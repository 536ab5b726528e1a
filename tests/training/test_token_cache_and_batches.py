"""The transformer's training data on the tiny preset: the token cache (growing, caption
variants, tied to its clip mix), batches (tasks, condition dropout, short T2V) and the
motion-weighted loss."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nuwa.data.synthetic_data import ClipMix, SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.spec.tasks import TRAINED_TASK_CODES
from nuwa.training.batches import (
    Batch,
    batch_loss,
    make_batch,
    pick_task,
    token_loss_weights,
    trained_task,
)
from nuwa.training.token_cache import (
    CAPTION_VARIANTS,
    TokenCache,
    add_caption_variants,
    load_token_cache,
    pretokenize,
)
from nuwa.training.train_transformer import train_transformer

from .tiny_setups import random_cache, tiny_config, tr_options


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
