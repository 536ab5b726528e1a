"""The evaluation's tasks through a runtime backend (``Evaluator`` over a backend); under greedy
decoding it generates what the PyTorch reference (``TorchReference``: the model's conditions, the
reference decode loop ``nuwa.model.generate``, its VQ-GAN) generates, and scores the same."""

from __future__ import annotations

import numpy as np
import pytest

from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.quality.evaluator import Evaluator
from nuwa.quality.generation import Request
from nuwa.runtime.backends import load_backend
from nuwa.runtime.sampler import SamplingOptions

from .torch_reference import TorchReference

GREEDY_CFG = SamplingOptions(temperature=0.0, guidance_scale=2.0)


def assert_same_scores(ours: list[dict], ref: list[dict], what: str) -> None:
    """Score lists compared field by field: the same samples with the same keys, booleans (and
    any other non-float) equal, floats within 1e-9. (``pytest.approx`` refuses nested data.)"""
    assert len(ours) == len(ref), f"{what}: {len(ours)} scores vs {len(ref)}"
    for i, (got, want) in enumerate(zip(ours, ref, strict=True)):
        assert got.keys() == want.keys(), f"{what}[{i}]: keys {sorted(got)} vs {sorted(want)}"
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-9), f"{what}[{i}][{key!r}]"
            else:
                assert type(got[key]) is type(value), f"{what}[{i}][{key!r}]: {got[key]!r}"
                assert got[key] == value, f"{what}[{i}][{key!r}]: {got[key]!r} vs {value!r}"


@pytest.fixture(scope="module")
def dataset() -> SyntheticVideoDataset:
    return SyntheticVideoDataset(2, seed=5, frames=3, size=16, split="heldout")


def test_torch_backend_scores_exactly_like_the_reference(dataset, tmp_path):
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    model = NuwaModel(cfg).eval()
    model.save_pretrained(tmp_path)
    ref = Evaluator(TorchReference(model), dataset, GREEDY_CFG, batch_size=2, v2v_given=1)
    ours = Evaluator(load_backend("torch", tmp_path, device="cpu"), dataset, GREEDY_CFG, 2, 1)
    for task in ("T2I", "T2V", "S2I", "S2V", "V2V", "I2I", "TI2I", "TV2V"):
        assert_same_scores(ours.run(task, [0, 1]), ref.run(task, [0, 1]), task)
    assert_same_scores(ours.open_captions([0, 1]), ref.open_captions([0, 1]), "open captions")


def test_onnxruntime_backend_generates_the_reference_pixels(tiny_model, tiny_export_dir, dataset):
    ref = Evaluator(TorchReference(tiny_model), dataset, GREEDY_CFG, batch_size=2, v2v_given=1)
    ours = Evaluator(load_backend("onnxruntime", tiny_export_dir), dataset, GREEDY_CFG, 2, 1)
    prompts = ["a red square moves left", "the digit 3 in blue"]  # within 47 bytes
    sketches = np.stack([dataset[i].sketch for i in range(2)])
    for request in (Request(3, prompts=prompts), Request(3, sketch=sketches)):
        a, b = ours.generate(request), ref.generate(request)
        assert a.shape == b.shape == (2, 3, 16, 16, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert len(ours.run("V2V", [0, 1])) == 2


def test_evaluate_samples_each_task_with_the_models_defaults_and_the_flags(tmp_path):
    import json

    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.quality.evaluate_cli import main as evaluate_main
    from nuwa.spec.config import NuwaConfig
    from nuwa.spec.generation_config import GenerationConfig

    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    NuwaModel(cfg).eval().save_pretrained(tmp_path / "model")
    GenerationConfig({"top_k": 4}, {"t2i": {"temperature": 0.25}}).save(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--tasks", "T2I,V2V", "--n", "1"]
    out = tmp_path / "scores.json"
    assert evaluate_main([*common, "--no-progress", "--threads", "1", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    locality = scores["vqgan_token_locality"]  # 1 clip, 3 frames of 4x4 tokens: 2 frame pairs
    assert locality["near_tokens"] + locality["far_tokens"] == 2 * 16
    assert 0 <= locality["near_changed"] <= 1 and 0 <= locality["far_changed"] <= 1
    options = scores["options"]
    assert options["T2I"] == {
        "temperature": 0.25,
        "top_k": 4,
        "top_p": None,
        "guidance_scale": 2.0,
        "seed": 0,
    }
    assert options["V2V"]["temperature"] == 0.5 and options["V2V"]["guidance_scale"] == 1.0
    flags = ["--temperature", "1.0", "--top-k", "0", "--seed", "3"]
    assert evaluate_main([*common, *flags, "--no-progress", "--out", str(out)]) == 0
    options = json.loads(out.read_text())["options"]
    assert options["T2I"]["temperature"] == options["V2V"]["temperature"] == 1.0
    assert options["T2I"]["top_k"] is None and options["V2V"]["seed"] == 3
    assert "t2v_open_captions" not in scores  # only with T2V
    t2v = ["--model", str(tmp_path / "model"), "--tasks", "T2V", "--n", "2", "--no-progress"]
    assert evaluate_main([*t2v, "--threads", "1", "--out", str(out)]) == 0
    open_captions = json.loads(out.read_text())["t2v_open_captions"]
    assert open_captions["n"] == 2 and 0 <= open_captions["drawn"] <= 1
    assert "position" not in open_captions  # no caption named it
    assert "direction" in open_captions  # the second caption named the motion
    by_caption = json.loads(out.read_text())["t2v_by_caption"]
    assert sum(row["n"] for row in by_caption.values()) == 2
    assert all(0 <= row["first_frame_shape"] <= 1 for row in by_caption.values())


def test_evaluate_runs_a_converted_export_given_with_onnx(tmp_path):
    import json

    import torch

    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.quantize import quantize_export
    from nuwa.export.exporter import export_model
    from nuwa.model.nuwa import NuwaModel
    from nuwa.quality.evaluate_cli import main as evaluate_main
    from nuwa.spec.config import NuwaConfig
    from nuwa.spec.errors import BackendUnavailableError

    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    NuwaModel(cfg).eval().save_pretrained(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "fp32", verify=False)
    quantize_export(tmp_path / "fp32", tmp_path / "fp16", "fp16", CalibrationSet(count=1))
    common = ["--model", str(tmp_path / "model"), "--tasks", "T2I", "--n", "1", "--no-progress"]
    out = tmp_path / "scores.json"
    onnx = ["--backend", "onnxruntime", "--onnx", str(tmp_path / "fp16")]
    assert evaluate_main([*common, *onnx, "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["backend"] == "onnxruntime" and scores["precision"] == "fp16"
    assert scores["tasks"]["T2I"]["n"] == 1
    with pytest.raises(BackendUnavailableError, match="holds fp16 graphs, not int8"):
        evaluate_main([*common, *onnx, "--precision", "int8"])
    with pytest.raises(ValueError, match="--onnx is for --backend onnxruntime"):
        evaluate_main([*common, "--onnx", str(tmp_path / "fp16")])
    with pytest.raises(ValueError, match=r"--onnx .*model: "):  # a checkpoint, not an export
        evaluate_main([*common, "--backend", "onnxruntime", "--onnx", str(tmp_path / "model")])
    torch.manual_seed(1)
    NuwaModel(cfg).eval().save_pretrained(tmp_path / "other")
    other = ["--model", str(tmp_path / "other"), *common[2:], *onnx]
    with pytest.raises(ValueError, match="exported from another checkpoint"):
        evaluate_main(other)
    with pytest.raises(ValueError, match="exported from another checkpoint"):
        evaluate_main([*other, "--precision", "fp16"])


def test_long_generation_through_a_backend_scores_like_the_reference(
    tiny_model, tiny_export_dir, dataset
):
    """Past the trained length (the window slides): the torch backend's per-block scores are
    the reference's, and ONNX Runtime generates the reference's pixels."""
    ref = Evaluator(TorchReference(tiny_model), dataset, GREEDY_CFG, batch_size=2, v2v_given=1)
    ours = Evaluator(load_backend("onnxruntime", tiny_export_dir), dataset, GREEDY_CFG, 2, 1)
    clips = [dataset.long_clip(i, 7) for i in range(2)]
    for task in ("V2V", "T2V"):
        (a, given_a), (b, given_b) = (
            ours.long_videos(task, clips, 7),
            ref.long_videos(task, clips, 7),
        )
        assert a.shape == b.shape == (2, 7, 16, 16, 3) and given_a == given_b
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        blocks = [list(s) for s in ours.long_generation(task, [0, 1], 7)]
        assert blocks == [["frames 1-3", "frames 4-6", "frames 7-7"]] * 2


def test_torch_backend_long_generation_scores_exactly_like_the_reference(dataset, tmp_path):
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    model = NuwaModel(cfg).eval()
    model.save_pretrained(tmp_path)
    ref = Evaluator(TorchReference(model), dataset, GREEDY_CFG, batch_size=2, v2v_given=1)
    ours = Evaluator(load_backend("torch", tmp_path, device="cpu"), dataset, GREEDY_CFG, 2, 1)
    for task in ("V2V", "T2V"):
        got, want = ours.long_generation(task, [0, 1], 8), ref.long_generation(task, [0, 1], 8)
        for block in want[0]:
            assert_same_scores([g[block] for g in got], [w[block] for w in want], block)


def test_evaluate_long_frames_writes_per_block_scores(tmp_path):
    import json

    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.quality.evaluate_cli import main as evaluate_main
    from nuwa.spec.config import NuwaConfig

    cfg = NuwaConfig.from_name("tiny")
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    NuwaModel(cfg).eval().save_pretrained(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--n", "2", "--no-progress", "--threads", "1"]
    out = tmp_path / "scores.json"
    argv = [*common, "--tasks", "V2V,T2V", "--long-frames", "6,7", "--out", str(out)]
    assert evaluate_main(argv) == 0
    scores = json.loads(out.read_text())
    assert scores["long_frames"] == [6, 7] and set(scores["long"]) == {"V2V", "T2V"}
    for task in ("V2V", "T2V"):
        assert list(scores["long"][task]) == ["6", "7"]
        six, seven = scores["long"][task]["6"], scores["long"][task]["7"]
        assert [b for b in six if b != "seconds"] == ["frames 1-3", "frames 4-6"]
        assert [b for b in seven if b != "seconds"] == ["frames 1-3", "frames 4-6", "frames 7-7"]
        for row in (six["frames 4-6"], seven["frames 7-7"]):
            assert row["n"] == 2 and 0 <= row["kept"] <= 1 and "position_error" in row
    for bad, message in (
        ("16,x", "--long-frames takes frame counts like 16,32"),
        ("3", r"--long-frames: .*above the trained 3 frames, got \[3\]"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate_main([*common, "--tasks", "V2V", "--long-frames", bad])
    with pytest.raises(ValueError, match="--long-frames: .*add one to the tasks"):
        evaluate_main([*common, "--tasks", "T2I", "--long-frames", "6"])
