"""Shared fixtures: tiny random-weight models made here, never downloaded."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from nuwa.model.config import NuwaConfig
    from nuwa.model.nuwa import NuwaModel

    torch.manual_seed(0)
    return NuwaModel(NuwaConfig.from_name("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_model.save_pretrained(path)
    return path
