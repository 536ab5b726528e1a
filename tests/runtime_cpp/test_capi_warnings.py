"""The C API's warnings (``nuwa_last_warnings``) are the Python runtime's, word for word and in
order, taken live: prompt words the model never saw with the nearest known ones (the directory's
caption vocabulary; difflib's close matches, ported), a mask rectangle clipped to the frame, a
mask picture of another size than the model's. The request runs all the same."""

from __future__ import annotations

import ctypes
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.spec.errors import NuwaInputWarning
from nuwa.spec.input_rules import InputRules

from . import capi

DEMO_RULES = (
    Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "input_rules.json"
)
IMAGE = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
PROMPTS = [
    "a red square",  # every word known: no warning
    "a sqare",
    "a blu circel mooves lft",
    "the digit 12 in purple at the centre",
    "A  Reed   TRIANGLE at the top-left moves rigth",
    "x",
    "red and red and zzz",
    "circles squares triangles",
    "a green cirle at the bottm rigt moves dwn",
    "the digits 7 in magneta",
    "a cyan square on the left moving upward",
    "qqqq rrrr tt a b c",
]
CALLS: list[tuple[str, dict[str, Any]]] = [
    *[(f"prompt {i}", {"task": "t2i", "prompt": p}) for i, p in enumerate(PROMPTS)],
    ("two prompts, one twice", {"task": "t2v", "prompt": ["a sqare", "bleu", "a sqare"]}),
    ("clipped rectangle", {"task": "i2i", "image": IMAGE, "mask": (-3, 4, 20, 9)}),
    ("mask of another size", {"task": "i2i", "image": IMAGE, "mask": np.ones((8, 12), bool)}),
    ("words and rectangle", {"task": "ti2i", "prompt": "a sqare", "image": IMAGE,
                             "mask": (10, 10, 30, 30)}),
]  # fmt: skip


@pytest.fixture(scope="module")
def worded_export(tiny_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export with input rules that hold the demo's caption vocabulary."""
    export = tmp_path_factory.mktemp("worded") / "export"
    shutil.copytree(tiny_export_dir, export)
    spec = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1).spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    rules["caption"] = json.loads(DEMO_RULES.read_text())["caption"]
    InputRules.from_dict(rules).save(export)
    return export


@pytest.fixture(scope="module")
def worded(lib, worded_export: Path):
    backend = OnnxRuntimeBackend.from_model_dir(worded_export, device="cpu", threads=1)
    pipe = Pipeline(backend, progress=False, input_rules=InputRules.load(worded_export))
    model = capi.open_model(lib, worded_export, threads=1)
    yield pipe, model
    lib.nuwa_close(model)


def python_warnings(pipe: Pipeline, call: dict[str, Any]) -> list[str]:
    call = dict(call)
    task = call.pop("task")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.prepare(task, temperature=0.0, guidance_scale=1.0, **call)
    return [str(w.message) for w in caught if issubclass(w.category, NuwaInputWarning)]


@pytest.mark.parametrize("case", CALLS, ids=[c[0] for c in CALLS])
def test_warnings_are_python_s(lib, worded, case) -> None:
    pipe, model = worded
    call = case[1]
    want = python_warnings(pipe, call)
    prompt = call.get("prompt")
    prompts = None if prompt is None else [prompt] if isinstance(prompt, str) else prompt
    request, _keep = capi.make_request(
        lib,
        call["task"],
        None if prompts is None else [p.encode() for p in prompts],
        image=call.get("image"),
        mask=call.get("mask"),
    )
    shape = capi.OutputShape()
    capi.check(lib, lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape)))
    text = lib.nuwa_last_warnings().decode()
    assert (text.split("\n") if text else []) == want


def test_generate_reports_warnings_and_runs(lib, worded) -> None:
    pipe, model = worded
    request, _keep = capi.make_request(lib, "t2i", [b"a sqare"])
    capi.generate(lib, model, request)
    assert (
        lib.nuwa_last_warnings().decode()
        == python_warnings(pipe, {"task": "t2i", "prompt": "a sqare"})[0]
    )
    request, _keep = capi.make_request(lib, "t2i", [b"a red square"])
    capi.generate(lib, model, request)
    assert lib.nuwa_last_warnings().decode() == ""
