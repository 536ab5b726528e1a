"""A request's tensors -> one Pipeline call, without a server: the checks, the model's defaults,
the seed drawn when none is given, the rows and frames admission counts."""

from __future__ import annotations

import numpy as np
import pytest

from nuwa.runtime.model_directory import ModelDirectory
from nuwa.serving.client import as_tensor
from nuwa.serving.request_decoding import decode_request
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.model_spec import ModelSpec

from .conftest import DEMO
from .serving_requests import pictures, region, sketch


@pytest.fixture(scope="module")
def model() -> tuple[ModelSpec, ModelDirectory]:
    from nuwa.runtime.pipeline import Pipeline

    directory = ModelDirectory.read(DEMO)
    return Pipeline.from_pretrained(directory, progress=False).spec, directory


def decode(model, max_frames: int | None = None, **values: object):
    spec, directory = model
    inputs = {
        name: as_tensor(name, value) if name != "colour" else np.array([value], np.object_)
        for name, value in values.items()
    }
    return decode_request(inputs, spec, directory.generation_config, max_frames)


def test_options_left_out_take_the_models_defaults_and_a_drawn_seed(model) -> None:
    _, directory = model
    a = decode(model, task="t2i", prompt="a red square")
    defaults = directory.generation_config.for_task("t2i")
    assert {k: a.call[k] for k in defaults} == defaults
    assert a.rows == 2 and a.frames == 1  # guidance: the unconditional row too
    assert a.call["seed"] == a.seed and 0 <= a.seed < 2**31
    b = decode(model, task="t2i", prompt="a red square")
    assert b.seed != a.seed  # drawn per request (1 in 2**31 to collide)


def test_given_values_pass_through(model) -> None:
    r = decode(
        model, task="T2V", prompt="a red square", num_frames=3, seed=7, temperature=0.0,
        top_k=4, top_p=0.5, guidance_scale=1.0,
    )  # fmt: skip
    assert r.task == "t2v" and r.seed == 7 and r.rows == 1 and r.frames == 3
    expected = {"num_frames": 3, "temperature": 0.0, "top_k": 4, "top_p": 0.5}
    assert {k: r.call[k] for k in expected} == expected


def test_pictures_are_passed_as_the_pipeline_takes_them(model) -> None:
    r = decode(model, task="ti2i", prompt="a red square", image=pictures(1)[0], mask=region())
    assert r.call["mask"].dtype == bool and r.call["mask"].sum() == 32 * 32
    assert decode(model, task="s2i", sketch=sketch(1)).call["sketch"].shape == (64, 64, 3)
    assert decode(model, task="s2v", sketch=sketch(2)).call["sketch"].shape == (2, 64, 64, 3)
    edit = decode(model, task="tv2v", prompt="a red square", video=pictures(3), mask=region())
    assert edit.frames == 3 and decode(model, task="v2v", video=pictures(1)).frames == 8


@pytest.mark.parametrize(
    "values, message",
    [
        ({"prompt": "a red square"}, "input task is missing"),
        ({"task": "t2i", "colour": "red"}, "unknown input 'colour'"),
        ({"task": "t2i", "seed": np.array([1, 2], np.int64)}, r"seed must have shape \[1\]"),
        ({"task": "t2i", "seed": np.array([1.0], np.float32)}, "seed must be INT64, got FLOAT32"),
        ({"task": "t2i", "image": pictures(1)}, r"image must have shape \[N, N, 3\]"),
        ({"task": "t2i", "prompt": b"\xff\xfe"}, "prompt is not UTF-8"),
        ({"task": "i2i", "guidance_scale": 3.0}, "takes no classifier-free guidance"),
        ({"task": "t2v", "num_frames": 0}, "num_frames must be >= 1"),
        ({"task": "t2v", "num_frames": 9}, "at most 8 per request"),
    ],
)
def test_bad_tensors_are_one_line_errors(model, values, message) -> None:
    with pytest.raises(NuwaInputError, match=message) as raised:
        decode(model, max_frames=8, **values)
    assert "\n" not in str(raised.value)
