"""Model directories: safetensors round trip and clear errors for broken checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nuwa.model.checkpoint import CheckpointError
from nuwa.model.nuwa import NuwaModel


def test_round_trip_preserves_every_tensor(tiny_model, tiny_model_dir) -> None:
    loaded = NuwaModel.from_pretrained(tiny_model_dir)
    for (name, a), (_, b) in zip(
        tiny_model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_fp16_storage_loads_back_as_fp32(tiny_model, tmp_path) -> None:
    tiny_model.save_pretrained(tmp_path, dtype=torch.float16)
    loaded = NuwaModel.from_pretrained(tmp_path)
    assert loaded.transformer.head.weight.dtype == torch.float32
    torch.testing.assert_close(
        loaded.transformer.head.weight, tiny_model.transformer.head.weight, atol=1e-3, rtol=1e-3
    )


def test_broken_checkpoints_raise_clear_errors(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        NuwaModel.from_pretrained(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vqgan.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="vqgan.safetensors is not a readable"):
        NuwaModel.from_pretrained(broken)
    (broken / "vqgan.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vqgan.safetensors is missing"):
        NuwaModel.from_pretrained(broken)
    shutil.copy(tiny_model_dir / "vqgan.safetensors", broken / "vqgan.safetensors")
    cfg = json.loads((broken / "config.json").read_text())
    cfg["transformer"]["d_model"] = 64
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="transformer.safetensors"):
        NuwaModel.from_pretrained(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid nuwa config"):
        NuwaModel.from_pretrained(broken)
