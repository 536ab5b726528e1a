"""The demo's bundled export (``model/checkpoints/demo/onnx``, weights stored compactly) generates
exactly what the same graphs with plain float32 weights generate: tokens and pixels, for tasks
that use every kind of graph (text and sketch conditions, decode steps, prefill, VQ-GAN)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from nuwa.export import load_manifest
from nuwa.export.weights import WEIGHTS_FILE, SharedWeights, materialize_weights
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.export_cache import BUNDLED_EXPORT_DIR
from nuwa.runtime.pipeline import Pipeline, default_model_dir
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.manifest import MANIFEST_FILE, sha256_file


def write_plain_export(src: Path, dst: Path) -> Path:
    """A copy of the export ``src`` whose graphs read plain float32 initializers (one shared
    weights file, stored as the exporter stored them before the compact layout)."""
    dst.mkdir()
    raw = json.loads((src / MANIFEST_FILE).read_text())
    store = SharedWeights(dst / WEIGHTS_FILE, compact=False)
    for graph in raw["graphs"].values():
        model = onnx.load(str(src / graph["file"]))
        materialize_weights(model)
        store.externalize(model)
        onnx.save(model, str(dst / graph["file"]))
        graph["sha256"] = sha256_file(dst / graph["file"])
        graph.pop("prepared", None)  # the copy's steps are prepared in memory: compared too
    raw["external_data"] = {WEIGHTS_FILE: sha256_file(dst / WEIGHTS_FILE)}
    for extra in src.iterdir():  # generation config, input rules
        if extra.suffix == ".json" and extra.name != MANIFEST_FILE:
            shutil.copyfile(extra, dst / extra.name)
    (dst / MANIFEST_FILE).write_text(json.dumps(raw))
    return dst


def _generate(export_dir: Path) -> dict[str, np.ndarray]:
    backend = OnnxRuntimeBackend(load_manifest(export_dir), threads=1)
    pipe = Pipeline(backend, progress=False, generation_config=GenerationConfig.load(export_dir))
    sketch = np.zeros((64, 64), np.int64)
    sketch[10:30, 20:44] = 1
    out = {}
    t2v = pipe("t2v", "a red square moves left", seed=2)
    runs = {
        "t2i": pipe("t2i", "a blue circle", batch=2, seed=1),
        "t2v": t2v,
        "s2v": pipe("s2v", sketch=np.stack([sketch] * 2), seed=4),
        "v2v": pipe("v2v", video=t2v.frames[0, :2], seed=5),
    }
    for name, result in runs.items():
        out[f"{name}.tokens"], out[f"{name}.frames"] = result.tokens, result.frames
    return out


@pytest.mark.slow
def test_the_shipped_export_generates_what_plain_weights_generate(tmp_path: Path) -> None:
    shipped = default_model_dir() / BUNDLED_EXPORT_DIR
    plain = write_plain_export(shipped, tmp_path / "plain")
    assert (plain / WEIGHTS_FILE).stat().st_size > 1.5 * (shipped / WEIGHTS_FILE).stat().st_size
    ours, reference = _generate(shipped), _generate(plain)
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
