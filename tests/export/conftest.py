"""Fixtures of the export tests: the manifests of the session's tiny exports (made once, in
``tests/conftest.py``: portable through :func:`nuwa.export.export_model`, tensorrt through the
``nuwa export`` command), and a tiny model
whose weights are float16 values, as the shipped checkpoints' are (stored compactly)."""

from __future__ import annotations

import pytest
import torch

from nuwa.export import Manifest, load_manifest
from nuwa.export.exporter import default_frames, export_model
from nuwa.export.graph_specs import GraphSpec, build_graph_specs
from nuwa.model.nuwa import NuwaModel
from nuwa.spec.config import NuwaConfig


@pytest.fixture(scope="session")
def tiny_export(tiny_export_dir) -> Manifest:
    """The manifest of the session's portable tiny export (``tests/conftest.py``)."""
    return load_manifest(tiny_export_dir)


@pytest.fixture(scope="session")
def tiny_trt_export(tiny_tensorrt) -> Manifest:
    """The manifest of the session's tensorrt tiny export (made by the ``nuwa export`` command)."""
    return load_manifest(tiny_tensorrt)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir) -> NuwaModel:
    """The tiny model as the exporter saw it (loaded from its directory)."""
    return NuwaModel.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_dense(tiny_model_dir) -> NuwaModel:
    """The same weights with the dense-mask 3DNA oracle everywhere."""
    return NuwaModel.from_pretrained(tiny_model_dir, attn_impl="dense")


@pytest.fixture(scope="session")
def tiny_specs(tiny_loaded) -> dict[str, GraphSpec]:
    return {s.name: s for s in build_graph_specs(tiny_loaded, default_frames(tiny_loaded))}


@pytest.fixture(scope="session")
def tiny_half_model_dir(tmp_path_factory):
    """A tiny model whose float weights are all float16 values (as a float16 checkpoint's)."""
    torch.manual_seed(1)
    model = NuwaModel(NuwaConfig.from_name("tiny")).eval()
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.half().float())
    path = tmp_path_factory.mktemp("tiny_half_model")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_half_export(tiny_half_model_dir, tmp_path_factory) -> Manifest:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_half_onnx")
    return export_model(tiny_half_model_dir, out, frames=[1, 2], verify=False)


@pytest.fixture(scope="session")
def tiny_half_specs(tiny_half_model_dir) -> dict[str, GraphSpec]:
    model = NuwaModel.from_pretrained(tiny_half_model_dir)
    return {s.name: s for s in build_graph_specs(model, [1, 2])}
