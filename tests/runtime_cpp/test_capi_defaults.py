"""Sampling options a C caller leaves unset take the model's defaults for the task, as the
Python runtime's ``resolve_sampling`` takes them: the export directory's
``generation_config.json`` (defaults, then per task; guidance 1 for the tasks that take none),
the built-in defaults without the file (defaults that sample: test_sampled_parity.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.generation_config import GenerationConfig

from . import capi

CONFIG = {
    "defaults": {"temperature": 0.0, "guidance_scale": 3.0, "top_k": 5},
    "tasks": {"t2i": {"guidance_scale": 1.5}, "s2v": {"guidance_scale": 1.0, "top_p": 0.9}},
}
CALLS = [
    {"task": "t2i", "prompt": "a red square"},
    {"task": "t2v", "prompt": "a ball moves left", "num_frames": 2},
    {"task": "s2v", "sketch": np.eye(16, dtype=np.int64)[None].repeat(2, 0)},
    {"task": "i2i", "image": np.full((16, 16, 3), 90, np.uint8), "mask": (0, 0, 8, 16)},
]


@pytest.fixture(scope="module")
def configured_export(tiny_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    export = tmp_path_factory.mktemp("configured") / "export"
    shutil.copytree(tiny_export_dir, export)
    (export / "generation_config.json").write_text(json.dumps(CONFIG))
    return export


@pytest.mark.parametrize("call", CALLS, ids=[c["task"] for c in CALLS])
def test_unset_options_are_the_model_defaults(lib, configured_export: Path, call) -> None:
    backend = OnnxRuntimeBackend.from_model_dir(configured_export, device="cpu", threads=1)
    pipe = Pipeline(
        backend, progress=False, generation_config=GenerationConfig.load(configured_export)
    )
    want = pipe(**call)  # no sampling option given: the directory's defaults for the task
    assert want.options.temperature == 0.0
    prompt = call.get("prompt")
    request, _keep = capi.make_request(
        lib,
        call["task"],
        None if prompt is None else [prompt.encode()],
        call.get("num_frames", 0),
        1,
        None,  # temperature: unset
        None,  # guidance: unset
        sketch=call.get("sketch"),
        image=call.get("image"),
        mask=call.get("mask"),
    )
    model = capi.open_model(lib, configured_export, threads=1)
    try:
        got = capi.generate(lib, model, request)
    finally:
        lib.nuwa_close(model)
    np.testing.assert_array_equal(got.tokens, want.tokens)


def test_bad_generation_config_is_a_model_error(lib, tiny_export_dir: Path, tmp_path) -> None:
    export = tmp_path / "export"
    shutil.copytree(tiny_export_dir, export)
    (export / "generation_config.json").write_text('{"defaults": {"top_p": 3}}')
    with pytest.raises(capi.CApiError) as got:
        capi.open_model(lib, export)
    assert got.value.status == capi.NUWA_ERROR_MODEL
    assert "generation_config.json: defaults.top_p must be in (0, 1]" in str(got.value)
