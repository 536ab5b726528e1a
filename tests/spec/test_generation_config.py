"""``generation_config.json``: per-task sampling defaults, their precedence and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuwa.spec.generation_config import (
    BUILTIN_SAMPLING,
    GENERATION_CONFIG_FILE,
    TASK_NAMES,
    UNGUIDED_TASKS,
    GenerationConfig,
    GenerationConfigError,
    copy_generation_config,
)


def test_a_directory_without_the_file_gets_the_builtin_defaults(tmp_path: Path) -> None:
    cfg = GenerationConfig.load(tmp_path)
    for task in TASK_NAMES:
        expected = dict(BUILTIN_SAMPLING)
        if task in UNGUIDED_TASKS:
            expected["guidance_scale"] = 1.0
        assert cfg.for_task(task) == expected


def test_task_values_override_defaults_which_override_the_builtin_ones() -> None:
    cfg = GenerationConfig(
        defaults={"temperature": 0.7, "top_p": 0.9},
        tasks={"v2v": {"temperature": 0.8, "top_k": None}, "t2v": {"guidance_scale": 3}},
    )
    assert cfg.for_task("T2I") == {  # any case
        "temperature": 0.7,
        "top_k": BUILTIN_SAMPLING["top_k"],
        "top_p": 0.9,
        "guidance_scale": BUILTIN_SAMPLING["guidance_scale"],
    }
    assert cfg.for_task("v2v") == {
        "temperature": 0.8,
        "top_k": None,  # null turns top-k off
        "top_p": 0.9,
        "guidance_scale": 1.0,  # video prediction takes no guidance
    }
    assert cfg.for_task("t2v")["guidance_scale"] == 3.0
    assert isinstance(cfg.for_task("t2v")["guidance_scale"], float)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = GenerationConfig({"temperature": 0.6}, {"s2v": {"top_k": 8}}, note="validation sweep")
    path = cfg.save(tmp_path)
    assert path == tmp_path / GENERATION_CONFIG_FILE
    assert GenerationConfig.load(tmp_path) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"defaults": {"temprature": 0.5}}, r"unknown sampling options \['temprature'\]"),
        ({"tasks": {"t2x": {}}}, r"unknown tasks \['t2x'\]"),
        ({"defaults": {"temperature": -1}}, "temperature must be >= 0"),
        ({"defaults": {"temperature": "hot"}}, "must be a number"),
        ({"defaults": {"temperature": float("nan")}}, "must be a number"),
        ({"defaults": {"top_k": 2.5}}, "top_k must be an integer >= 1"),
        ({"defaults": {"top_k": 0}}, "top_k must be an integer >= 1"),
        ({"defaults": {"top_p": 1.5}}, r"top_p must be in \(0, 1\]"),
        ({"defaults": {"guidance_scale": True}}, "must be a number"),
        ({"tasks": {"v2v": {"guidance_scale": 2.0}}}, "v2v takes no classifier-free guidance"),
        ({"tasks": []}, "tasks must be an object"),
        ({"sampling": {}}, r"unknown fields \['sampling'\]"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_field(
    tmp_path: Path, data: object, message: str
) -> None:
    (tmp_path / GENERATION_CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(GenerationConfigError, match=message) as info:
        GenerationConfig.load(tmp_path)
    assert str(tmp_path / GENERATION_CONFIG_FILE) in str(info.value)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / GENERATION_CONFIG_FILE).write_text("{temperature: 0.5")
    with pytest.raises(GenerationConfigError, match="not valid JSON"):
        GenerationConfig.load(tmp_path)


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(GenerationConfigError, match="unknown task 'x2y'"):
        GenerationConfig().for_task("x2y")


def test_copy_carries_the_file_and_removes_a_stale_one(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    cfg = GenerationConfig({"temperature": 0.9})
    cfg.save(src)
    copy_generation_config(src, dst)
    assert GenerationConfig.load(dst) == cfg
    (src / GENERATION_CONFIG_FILE).unlink()
    copy_generation_config(src, dst)  # the source has none now: the copy must not linger
    assert not (dst / GENERATION_CONFIG_FILE).exists()
    (src / GENERATION_CONFIG_FILE).write_text("{broken")
    with pytest.raises(GenerationConfigError):  # a broken file is not carried along
        copy_generation_config(src, dst)


def test_resolve_puts_given_values_over_the_task_defaults() -> None:
    cfg = GenerationConfig({"temperature": 0.7}, {"t2v": {"top_k": 4}})
    assert cfg.resolve("t2v") == cfg.for_task("t2v")
    assert cfg.resolve("t2v", temperature=0.0, guidance_scale=3.0) == {
        "temperature": 0.0,  # 0 is a value (greedy), not "not given"
        "top_k": 4,
        "top_p": None,
        "guidance_scale": 3.0,
    }
    assert cfg.resolve("t2v", top_k=0)["top_k"] is None  # 0 turns top-k off
    assert cfg.resolve("t2v", top_k=9, top_p=0.5)["top_k"] == 9
