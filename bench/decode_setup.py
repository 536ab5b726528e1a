"""What every ``bench/decode.py`` measurement shares: the configurations it times, the prompt,
the warm-up, the machine's name, and the model it runs (the given one, the shipped demo
checkpoint, else the ``demo`` preset with random weights: latency does not depend on the
weights)."""

from __future__ import annotations

import platform
from pathlib import Path

from nuwa.spec.model_spec import CONFIG_FILE

PROMPT = "a red square moves left"
WARMUP = 16  # steps dropped before the medians
BACKENDS = ("onnxruntime", "onnxruntime-run", "onnxruntime-int8", "torch")
LABELS = {
    "onnxruntime": "ORT FP32 (IO binding)",
    "onnxruntime-run": "ORT FP32 (session.run)",
    "onnxruntime-int8": "ORT INT8 (IO binding)",
    "torch": "torch eager",
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepare_model(model: str | None, work: Path) -> tuple[Path, str]:
    """(model directory, description): the given one, the demo checkpoint, or random demo."""
    from nuwa.runtime.pipeline import default_model_dir

    if model:
        return Path(model), f"`{model}`"
    demo = default_model_dir()
    if (demo / CONFIG_FILE).is_file():
        return demo, "the shipped demo checkpoint (`model/checkpoints/demo`)"
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    torch.manual_seed(0)
    out = work / "demo_random"
    NuwaModel(NuwaConfig.from_name("demo")).save_pretrained(out)
    return out, "the `demo` preset with random weights (the demo checkpoint was not there yet)"
