"""``input_rules.json``: generated from the training data, schema-checked, snapping sketch
colours as the slow reference does, and naming the nearest known words of a prompt."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS, DIGITS, DIRECTIONS, POSITIONS, SHAPES
from nuwa.data.input_rules_writer import rules_from_training_data, write_input_rules
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.spec.input_rules import (
    INPUT_RULES_FILE,
    InputRules,
    InputRulesError,
    copy_input_rules,
)
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

DEMO = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def demo_rules() -> InputRules:
    rules = InputRules.load(DEMO)
    assert rules is not None, f"{DEMO / INPUT_RULES_FILE} is missing"
    return rules


def caption_pattern(rules: InputRules) -> re.Pattern[str]:
    """The caption grammar of ``rules`` as a regular expression (rules expanded, ``[...]``
    optional, ``|`` alternatives, ``<list>`` any word of that list)."""
    assert rules.caption is not None
    grammar = dict(rules.caption.grammar)
    lists = {name[:-1]: values for name, values in rules.caption.words}

    def expand(template: str) -> str:
        out = template.replace(" [", "(?: ").replace("[", "(?:").replace("]", ")?")
        out = out.replace(" | ", "|")

        def ref(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in grammar:
                return f"(?:{expand(grammar[name])})"
            return "(?:" + "|".join(re.escape(v) for v in lists[name]) + ")"

        return re.sub(r"<([^>]*)>", ref, out)

    return re.compile(f"(?:{expand(grammar['caption'])})")


def test_the_shipped_demo_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((DEMO / "config.json").read_bytes())
    written = write_input_rules(tmp_path)
    assert written.read_text() == (DEMO / INPUT_RULES_FILE).read_text(), (
        "model/checkpoints/demo/input_rules.json is stale: run "
        "python -m nuwa.data.input_rules_writer model/checkpoints/demo"
    )


def test_the_file_says_what_the_training_data_holds(demo_rules: InputRules) -> None:
    c = demo_rules.caption
    assert c is not None
    assert c.word_list("colours") == tuple(COLOURS)
    assert c.word_list("shapes") == SHAPES
    assert c.word_list("digits") == tuple(str(d) for d in DIGITS)
    assert c.word_list("positions") == tuple(POSITIONS)
    assert c.word_list("directions") == tuple(DIRECTIONS)
    assert dict(c.allowed_directions) == ALLOWED_DIRECTIONS
    assert demo_rules.sketch.classes == SKETCH_CLASSES
    np.testing.assert_array_equal(demo_rules.sketch.palette, SKETCH_PALETTE)
    assert demo_rules.sketch.snap_distance == 48
    assert (demo_rules.frame_size, demo_rules.frames, demo_rules.sketch.size) == (64, 8, 64)
    assert "and" in c.known_words()


@pytest.mark.parametrize(("motion", "position"), [(True, True), (False, True), (True, False)])
def test_every_training_caption_follows_the_grammar(
    demo_rules: InputRules, motion: bool, position: bool
) -> None:
    pattern = caption_pattern(demo_rules)
    assert demo_rules.caption is not None
    ds = SyntheticVideoDataset(200, seed=5)
    for i in range(len(ds)):
        caption = ds.spec(i).caption(motion=motion, position=position)
        assert pattern.fullmatch(caption), caption
        assert demo_rules.caption.unknown_words(caption) == [], caption
    for example in demo_rules.caption.examples:
        assert pattern.fullmatch(example), example
    for wrong in ("a purple square", "a red square at the top left moves sideways", "red"):
        assert not pattern.fullmatch(wrong), wrong


def test_unknown_words_name_the_nearest_known_ones(demo_rules: InputRules) -> None:
    assert demo_rules.unknown_words_message("A Red SQUARE at the top-left moves right") is None
    message = demo_rules.unknown_words_message("a purple sqare moves rigth, a big triangle")
    assert message is not None and "\n" not in message
    assert "'sqare' (nearest known: square" in message
    assert "'rigth' (nearest known: right" in message
    assert "'purple'" in message and "'big'" in message
    assert "'a'" not in message and "'triangle'" not in message


def test_describe_lists_the_words_the_palette_and_the_mask_rule(demo_rules: InputRules) -> None:
    text = demo_rules.describe()
    for colour in COLOURS:
        assert colour in text
    for name, rgb in zip(SKETCH_CLASSES, SKETCH_PALETTE.tolist(), strict=True):
        assert re.search(rf"{name}\s+RGB\({rgb[0]}, {rgb[1]}, {rgb[2]}\)", text), name
    assert "64x64 pixels, 8 per video" in text
    assert "white (grey > 127) = generate" in text
    assert "<object> [and <object>]" in text


# --------------------------------------------------------------------------- schema


def _broken(path: str, value: Any) -> dict[str, Any]:
    """The demo's rules as a dict with the field at dotted ``path`` set to ``value`` (a
    ``...`` value deletes it)."""
    data = copy.deepcopy(
        rules_from_training_data(json.loads((DEMO / "config.json").read_text())).to_dict()
    )
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "nuwa-input-rules/9", "format must be 'nuwa-input-rules/1'"),
        ("frame_size", "64", "frame_size must be an integer >= 1"),
        ("frames", ..., "frames is missing"),
        ("sketch.snap_distance", -1, "sketch.snap_distance must be a number >= 0"),
        ("sketch.snap_distance", float("nan"), "sketch.snap_distance must be a number >= 0"),
        (
            "sketch.palette.1.rgb",
            [255, 64],
            r"sketch.palette\[1\].rgb must be a list of at least 3",
        ),
        ("sketch.palette.1.rgb", [255, 64, 300], r"sketch.palette\[1\].rgb must be 3 integers"),
        ("sketch.palette.2.rgb", [255, 64, 64], "sketch.palette: colours repeat"),
        ("sketch.palette.2.name", "square", "sketch.palette: class names repeat"),
        ("sketch.size", 0, "sketch.size must be an integer >= 1"),
        ("mask.threshold", 255, "mask.threshold must be 0-254"),
        ("resize.filter", "lanczos", "resize.filter must be one of"),
        ("caption.words.colours", [], "caption.words.colours must be a list of at least 1"),
        ("caption.words.shapes", ["square", 3], r"caption.words.shapes\[1\] must be a non-empty"),
        ("caption.grammar.thing", "a <color> <shape>", "uses <color>, which is neither"),
        ("caption.allowed_directions.centre", ["left", "north"], "'north'] are not in"),
        ("caption.max_objects", 0, "caption.max_objects must be an integer >= 1"),
        ("caption.extra", 1, r"caption: unknown fields \['extra'\]"),
        ("colour_space", "rgb", r"unknown fields \['colour_space'\]"),
    ],
)
def test_a_broken_file_names_the_file_and_the_field(
    tmp_path: Path, path: str, value: Any, message: str
) -> None:
    (tmp_path / INPUT_RULES_FILE).write_text(json.dumps(_broken(path, value)))
    with pytest.raises(InputRulesError, match=message) as info:
        InputRules.load(tmp_path)
    assert str(tmp_path / INPUT_RULES_FILE) in str(info.value)
    assert "\n" not in str(info.value)


def test_not_json_and_not_an_object_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / INPUT_RULES_FILE).write_text("{frame_size: 64")
    with pytest.raises(InputRulesError, match="is not valid JSON"):
        InputRules.load(tmp_path)
    (tmp_path / INPUT_RULES_FILE).write_text("[1, 2]")
    with pytest.raises(InputRulesError, match="the file must be a JSON object, got list"):
        InputRules.load(tmp_path)


def test_a_directory_without_the_file_keeps_todays_behaviour(tmp_path: Path) -> None:
    assert InputRules.load(tmp_path) is None
    builtin = InputRules.builtin(64, 64, 8)
    assert builtin.caption is None and builtin.unknown_words_message("a purple blob") is None
    assert builtin.sketch.snap_distance == 0
    np.testing.assert_array_equal(builtin.sketch.palette, SKETCH_PALETTE)
    near = SKETCH_PALETTE[1].astype(np.int64) - 3  # snaps with the file, not without
    with pytest.raises(ValueError, match="colours outside the palette"):
        builtin.sketch.to_classes(near.astype(np.uint8).reshape(1, 1, 3))


def test_the_rules_round_trip(demo_rules: InputRules, tmp_path: Path) -> None:
    demo_rules.save(tmp_path)
    again = InputRules.load(tmp_path)
    assert again is not None
    assert again.to_dict() == demo_rules.to_dict()


def test_copy_carries_the_file_and_removes_a_stale_one(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / INPUT_RULES_FILE).write_bytes((DEMO / INPUT_RULES_FILE).read_bytes())
    copy_input_rules(src, dst)
    assert (dst / INPUT_RULES_FILE).read_bytes() == (DEMO / INPUT_RULES_FILE).read_bytes()
    (src / INPUT_RULES_FILE).unlink()
    copy_input_rules(src, dst)  # the source has none now: the copy must not linger
    assert not (dst / INPUT_RULES_FILE).exists()
    (src / INPUT_RULES_FILE).write_text('{"format": "nuwa-input-rules/1"}')
    with pytest.raises(InputRulesError, match="frame_size is missing"):  # not carried along
        copy_input_rules(src, dst)
    assert not (dst / INPUT_RULES_FILE).exists()


# --------------------------------------------------------------------------- sketch snapping


def _same(rules: InputRules, rgb: np.ndarray) -> None:
    """The vectorised reading and the slow reference agree: the same classes, or both refuse
    with the same message."""
    try:
        fast = rules.sketch.to_classes(rgb)
    except ValueError as exc:
        with pytest.raises(ValueError) as ref:
            rules.sketch.to_classes_reference(rgb)
        assert str(ref.value) == str(exc)
        return
    np.testing.assert_array_equal(fast, rules.sketch.to_classes_reference(rgb))


def anti_aliased(classes: np.ndarray, palette: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each pixel blended with its right-hand neighbour by ``weight`` (what a soft brush or a
    resampled sketch gives at class edges)."""
    rgb = palette[classes].astype(np.float64)
    right = np.concatenate([rgb[:, 1:], rgb[:, -1:]], axis=1)
    return np.rint((1 - weight[..., None]) * rgb + weight[..., None] * right).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    classes=arrays(np.int64, (6, 7), elements=st.integers(0, 4)),
    weight=arrays(np.float64, (6, 7), elements=st.floats(0, 0.5)),
)
def test_anti_aliased_sketches_snap_like_the_reference(
    demo_rules: InputRules, classes: np.ndarray, weight: np.ndarray
) -> None:
    rgb = anti_aliased(classes, SKETCH_PALETTE, weight)
    _same(demo_rules, rgb)
    # a pixel within 48 of its own colour must read as its own class
    palette = SKETCH_PALETTE.astype(np.float64)
    dist = np.linalg.norm(rgb.astype(np.float64) - palette[classes], axis=-1)
    try:
        read = demo_rules.sketch.to_classes(rgb)
    except ValueError:
        assert (dist > 48).any()  # only pixels too far from every colour are refused
        return
    near = dist <= 48
    np.testing.assert_array_equal(read[near], classes[near])


@settings(max_examples=60, deadline=None)
@given(
    classes=arrays(np.int64, (5, 5), elements=st.integers(0, 4)),
    noise=arrays(np.int64, (5, 5, 3), elements=st.integers(-27, 27)),
)
def test_colours_within_the_distance_snap_to_their_class(
    demo_rules: InputRules, classes: np.ndarray, noise: np.ndarray
) -> None:
    rgb = np.clip(SKETCH_PALETTE[classes].astype(np.int64) + noise, 0, 255)  # |noise| <= 47
    np.testing.assert_array_equal(demo_rules.sketch.to_classes(rgb.astype(np.uint8)), classes)


@settings(max_examples=100, deadline=None)
@given(rgb=arrays(np.uint8, (4, 4, 3)), snap=st.sampled_from([0.0, 48.0, 150.0, 200.0]))
def test_any_colours_read_as_the_reference_reads_them(rgb: np.ndarray, snap: float) -> None:
    """Any picture, at snapping distances where colours may be near none, one or two palette
    colours (150 and 200 overlap the palette's neighbourhoods)."""
    builtin = InputRules.builtin(4, 4, 1)
    _same(replace(builtin, sketch=replace(builtin.sketch, snap_distance=snap)), rgb)


def test_a_colour_near_two_palette_colours_is_refused() -> None:
    base = InputRules.builtin(4, 4, 1).sketch
    sketch = replace(base, snap_distance=200.0)
    between = np.array([[[160, 160, 160]]], dtype=np.uint8)  # ~173 from white, ~187 from square
    assert sum(np.linalg.norm(np.subtract(between[0, 0], c)) <= 200 for c in base.colours) > 1
    with pytest.raises(ValueError, match=r"RGB\(160, 160, 160\) x1.*within RGB distance 200"):
        sketch.to_classes(between)


def test_a_colour_far_from_the_palette_keeps_todays_error(demo_rules: InputRules) -> None:
    rgb = SKETCH_PALETTE[np.zeros((3, 3), dtype=np.int64)].copy()
    rgb[1, 1] = (128, 32, 32)  # half red, half black: 131 from square, 136 from background
    with pytest.raises(ValueError, match=r"outside the palette: RGB\(128, 32, 32\) x1; known"):
        demo_rules.sketch.to_classes(rgb)
    with pytest.raises(ValueError, match=r"square=RGB\(255, 64, 64\)"):
        demo_rules.sketch.to_classes(rgb)
