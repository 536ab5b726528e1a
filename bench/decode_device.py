"""``bench/decode.py --device``: the PyTorch eager decode loop alone, in this process, on one
device (``cuda``, ``cuda:N`` or ``cpu``) at each batch size, each step between two device
synchronizations (CUDA work is asynchronous), FP32; a table and one JSON object, bench/RESULTS.md
left alone. ``bench/gpu_check.sh``'s decode stage runs it."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from decode_setup import PROMPT, WARMUP, cpu_name, prepare_model


def torch_device_decode(model_dir: Path, device: str, batch: int, frames: int) -> dict[str, Any]:
    """Greedy torch eager decode of ``batch`` rows over ``frames`` frames of positions on
    ``device``: wall ms per step, each step between two device synchronizations."""
    import torch

    from nuwa.model.generate import DecodeState
    from nuwa.model.nuwa import NuwaModel

    model = NuwaModel.from_pretrained(model_dir).eval().to(device)
    cfg = model.config.transformer
    steps = frames * cfg.tokens_per_frame
    if steps <= WARMUP:
        raise ValueError(f"{frames} frame(s) = {steps} steps, not more than the {WARMUP} warm-up")
    on_cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    times = []
    with torch.inference_mode():
        state = DecodeState(model.transformer, model.text_condition([PROMPT] * batch), None, frames)
        prev = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=device)
        for pos in range(steps):
            sync()
            start = time.perf_counter()
            prev = state.step(prev, pos).argmax(-1)
            sync()
            times.append(time.perf_counter() - start)
    t = np.asarray(times[WARMUP:]) * 1e3
    trained_steps = cfg.frames * cfg.tokens_per_frame  # past these the ring cache slides
    trained = np.asarray(times[WARMUP:trained_steps]) * 1e3
    sliding = np.asarray(times[max(WARMUP, trained_steps) :]) * 1e3
    median = float(np.median(t))
    return {
        "batch": batch,
        "steps": steps,
        "median_step_ms": median,  # ms per token of each row (the latency of one token)
        "p90_step_ms": float(np.percentile(t, 90)),
        "median_trained_ms": float(np.median(trained)) if trained.size else None,
        "median_sliding_ms": float(np.median(sliding)) if sliding.size else None,
        "tokens_per_s": batch / (median * 1e-3),
    }


def device_main(
    device: str, batches: list[int], frames: int, model: str | None, json_path: str | None
) -> int:
    """The ``--device`` run: torch eager on one device at each batch size; table + JSON."""
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print(f"bench/decode.py --device {device}: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nuwa-bench-") as tmp:
        model_dir, described = prepare_model(model, Path(tmp))
        rows = [torch_device_decode(model_dir, device, b, frames) for b in batches]
    on_cuda = torch.device(device).type == "cuda"
    result = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
        "torch": torch.__version__,
        "precision": "fp32",
        "model": described,
        "frames": frames,
        "warmup_steps": WARMUP,
        "rows": rows,
    }
    print(f"torch eager decode on {result['device_name']} ({device}), torch {torch.__version__}")
    print("| batch | ms/step (median) | p90 | trained part | sliding part | tokens/s |")
    print("|---:|---:|---:|---:|---:|---:|")

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    for r in rows:
        print(
            f"| {r['batch']} | {f(r['median_step_ms'])} | {f(r['p90_step_ms'])} | "
            f"{f(r['median_trained_ms'])} | {f(r['median_sliding_ms'])} | "
            f"{r['tokens_per_s']:.0f} |"
        )
    print(json.dumps(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0
