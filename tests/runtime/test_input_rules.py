"""The runtime reads a model directory's ``input_rules.json``: sketch colours snap by its
palette, masks and sizes follow it, prompts with unknown words get one warning line (API and
CLI), ``nuwa info --model`` and ``nuwa generate --help`` say what the model understands, and
``nuwa export`` / ``nuwa quantize`` carry the file along."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nuwa.cli import main
from nuwa.data.input_rules_writer import rules_from_training_data
from nuwa.runtime import Pipeline
from nuwa.runtime.pipeline import default_model_dir
from nuwa.runtime.tasks import UnknownWordsWarning, plan_task
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.input_rules import INPUT_RULES_FILE, InputRules
from nuwa.spec.sketch_palette import SKETCH_PALETTE


def tiny_rules(model_dir: Path) -> InputRules:
    """Rules from the training data at the tiny model's sizes (16 px, 3 frames)."""
    return rules_from_training_data(json.loads((model_dir / "config.json").read_text()))


@pytest.fixture(scope="module")
def ruled_export(tmp_path_factory: pytest.TempPathFactory, tiny_export_dir: Path) -> Path:
    """The tiny model's export with input rules from the training data (16 px, 3 frames)."""
    out = tmp_path_factory.mktemp("ruled") / "export"
    shutil.copytree(tiny_export_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    rules_from_training_data(manifest["config"]).save(out)
    return out


def unknown_word_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UnknownWordsWarning)]


# --------------------------------------------------------------------------- unknown words


def test_unknown_words_warn_once_naming_the_nearest_and_generation_runs(
    ruled_export: Path,
) -> None:
    pipe = Pipeline.from_pretrained(ruled_export, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.text_to_image("a purple sqare at the top left", seed=0)
    messages = unknown_word_warnings(caught)
    assert len(messages) == 1, messages
    assert "'purple'" in messages[0] and "'sqare' (nearest known: square" in messages[0]
    assert result.frames.shape == (1, 1, 16, 16, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.text_to_image("A red square at the top left", seed=0)
    assert unknown_word_warnings(caught) == []


def test_a_model_without_the_file_warns_about_no_word(tiny_export_dir: Path) -> None:
    pipe = Pipeline.from_pretrained(tiny_export_dir, progress=False)
    assert pipe.input_rules.caption is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.text_to_image("a purple sqare", seed=0)
    assert unknown_word_warnings(caught) == []


def test_the_cli_prints_one_warning_line_and_generates(
    ruled_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    args = ["generate", "a red sqaure movs left", "-o", str(out), "--model", str(ruled_export)]
    rc = main([*args, "--seed", "0", "--no-progress"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert out.is_file()
    lines = [line for line in err.splitlines() if "never saw" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("nuwa generate: warning: the model never saw the words")
    assert (
        "'sqaure' (nearest known: square" in lines[0] and "'movs' (nearest known: moves" in lines[0]
    )


# --------------------------------------------------------------------------- reading inputs


def test_anti_aliased_sketch_colours_snap_to_the_palette(ruled_export: Path) -> None:
    pipe = Pipeline.from_pretrained(ruled_export, progress=False)
    classes = np.zeros((16, 16), dtype=np.int64)
    classes[3:11, 2:9] = 1
    classes[9:14, 10:15] = 4
    rgb = SKETCH_PALETTE[classes].astype(np.int64)
    rng = np.random.default_rng(0)
    edges = np.zeros((16, 16), dtype=bool)
    edges[3:11, [2, 8]] = edges[[3, 10], 2:9] = True
    rgb[edges] += rng.integers(-27, 28, (int(edges.sum()), 3))  # |shift| <= 47: within 48
    soft = np.clip(rgb, 0, 255).astype(np.uint8)
    assert not np.array_equal(soft, SKETCH_PALETTE[classes])
    exact = pipe.sketch_to_image(classes, seed=3)
    snapped = pipe.sketch_to_image(soft, seed=3)
    np.testing.assert_array_equal(snapped.tokens, exact.tokens)
    soft[0, 0] = (128, 32, 32)  # half square, half background: near no palette colour
    with pytest.raises(NuwaInputError, match=r"RGB\(128, 32, 32\) x1"):
        pipe.sketch_to_image(soft, seed=3)


def test_without_the_file_sketch_colours_must_match_exactly(tiny_export_dir: Path) -> None:
    pipe = Pipeline.from_pretrained(tiny_export_dir, progress=False)
    rgb = SKETCH_PALETTE[np.ones((16, 16), dtype=np.int64)].copy()
    rgb[0, 0] = (250, 64, 64)  # 5 from the square's colour
    with pytest.raises(NuwaInputError, match=r"outside the palette: RGB\(250, 64, 64\) x1"):
        pipe.sketch_to_image(rgb, seed=0)


def test_the_mask_threshold_comes_from_the_rules(ort_backend) -> None:
    rules = InputRules.builtin(16, 16, 3)
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    grey = np.zeros((16, 16, 3), dtype=np.uint8)
    grey[:, 8:] = 100  # a dim mask picture: below 127, above 50
    with pytest.raises(NuwaInputError, match="selects nothing"):
        plan_task(ort_backend, "i2i", image=image, mask=grey, rules=rules)
    plan = plan_task(
        ort_backend, "i2i", image=image, mask=grey, rules=replace(rules, mask_threshold=50)
    )
    assert plan.known_mask is not None
    assert not plan.known_mask.all() and plan.known_mask.any()


def test_rules_that_disagree_with_the_config_name_the_field(
    ruled_export: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(ruled_export, bad)
    rules = InputRules.load(bad)
    assert rules is not None
    replace(rules, frame_size=32).save(bad)
    with pytest.raises(NuwaInputError, match="input_rules.json: frame_size is 32 but the model's"):
        Pipeline.from_pretrained(bad, progress=False)
    (bad / INPUT_RULES_FILE).write_text('{"format": "nuwa-input-rules/1", "frames": 3}')
    rc = main(["generate", "a red square", "-o", str(tmp_path / "a.png"), "--model", str(bad)])
    assert rc == 2


# --------------------------------------------------------------------------- saying it


def test_nuwa_info_model_prints_the_vocabulary_palette_size_and_masks(
    ruled_export: Path, tiny_export_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--model", str(ruled_export)]) == 0
    out = capsys.readouterr().out
    assert "16x16 pixels, 3 per video" in out
    assert "<colour>: red | yellow | green | cyan | blue | magenta" in out
    assert "top left | top right | bottom left | bottom right | centre" in out
    assert "square     RGB(255, 64, 64)" in out
    assert "white (grey > 127) = generate" in out
    assert main(["info", "--model", str(tiny_export_dir)]) == 0
    assert "no input_rules.json" in capsys.readouterr().out


def test_generate_help_shows_the_shipped_demo_rules() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nuwa.cli", "generate", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    demo = InputRules.load(default_model_dir())
    assert demo is not None
    for line in demo.describe().splitlines():
        assert line.strip() in proc.stdout, line
    assert "RGB(255, 255, 255)" in proc.stdout and "<direction>: left | right | up | down" in (
        proc.stdout
    )


# --------------------------------------------------------------------------- carried along


def test_export_and_quantize_carry_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    from nuwa.calibration.quantize import quantize_export
    from nuwa.export.exporter import export_model

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tiny_rules(model).save(model)
    export_model(model, tmp_path / "onnx", frames=[1])
    shipped = (model / INPUT_RULES_FILE).read_bytes()
    assert (tmp_path / "onnx" / INPUT_RULES_FILE).read_bytes() == shipped
    quantize_export(tmp_path / "onnx", tmp_path / "fp16", "fp16", gates=None)
    assert (tmp_path / "fp16" / INPUT_RULES_FILE).read_bytes() == shipped
    # (a broken file is refused, not carried: copy_input_rules, tests/model/test_input_rules.py)
