"""The shipped demo checkpoint (model/checkpoints/demo): loads on the CPU in float32, fits the
size budget, and a small held-out evaluation scores far above chance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nuwa.model.config import NuwaConfig
from nuwa.model.evaluation import evaluate
from nuwa.model.nuwa import NuwaModel
from nuwa.model.sampling import SamplingOptions

DEMO_DIR = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo"
SIZE_LIMIT = 25 * 2**20


@pytest.fixture(scope="module")
def demo() -> NuwaModel:
    if not (DEMO_DIR / "config.json").is_file():
        pytest.fail(f"the demo checkpoint is missing from {DEMO_DIR}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return NuwaModel.from_pretrained(DEMO_DIR)


def test_checkpoint_is_the_demo_preset_and_small(demo: NuwaModel) -> None:
    total = sum(p.stat().st_size for p in DEMO_DIR.iterdir() if p.is_file())
    assert total <= SIZE_LIMIT
    assert (DEMO_DIR / "MODEL_CARD.md").is_file()
    preset = NuwaConfig.from_name("demo")
    assert demo.config.transformer == preset.transformer
    assert demo.config.vqgan == preset.vqgan
    assert demo.config.vqgan_seg == preset.vqgan_seg
    assert all(p.dtype == torch.float32 for p in demo.parameters())
    assert demo.device.type == "cpu"


def test_small_evaluation_beats_chance(demo: NuwaModel) -> None:
    # chance: colour 1/6, shape 1/13 per object; "all" needs every attribute of every object
    options = SamplingOptions(temperature=0.5, top_k=16, guidance_scale=2.0, seed=0)
    table = evaluate(demo, ["T2I", "T2V"], n_prompts=8, options=options, progress=False)
    rows = table["tasks"]
    assert table["vqgan_psnr"] >= THRESHOLDS["vqgan_psnr"]
    assert rows["T2I"]["colour"] >= THRESHOLDS["t2i_colour"]
    assert rows["T2V"]["colour"] >= THRESHOLDS["t2v_colour"]
    assert rows["T2V"]["position"] >= THRESHOLDS["t2v_position"]


THRESHOLDS = {"vqgan_psnr": 20.0, "t2i_colour": 0.5, "t2v_colour": 0.5, "t2v_position": 0.5}
