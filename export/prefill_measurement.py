"""Does a ``decoder_prefill`` graph pay off? Measures, in ONNX Runtime on the CPU, feeding a
prefix of ``N`` known tokens (whole frames) as ``N`` ``decoder_step`` calls against one call of
a teacher-forced graph over the ``N`` positions (what a prefill graph computes, minus writing
the ring cache). Result and decision: ``export/README.md``.

    python -m nuwa.export.prefill_measurement MODEL_DIR [--frames 1 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nuwa.export.exporter import export_graph
from nuwa.export.graph_modules import DecoderStepGraph
from nuwa.export.graph_specs import GraphSpec
from nuwa.export.verify import session
from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import EncodedCondition, NuwaTransformer
from nuwa.spec.graph_names import (
    BATCH,
    CROSS_KEY,
    CROSS_VALUE,
    DECODER_STEP_KIND,
    INPUT_IDS,
    LOGITS,
    POSITIONS,
    kv_names,
)


class TeacherForcedGraph(nn.Module):
    """Logits of ``f`` whole frames given the cross K/V of a text condition (one call)."""

    def __init__(self, transformer: NuwaTransformer, frames: int) -> None:
        super().__init__()
        self.transformer, self.frames = transformer, frames

    def forward(self, target: Tensor, *cross: Tensor) -> Tensor:
        t = self.transformer
        c = t.cfg
        grid = (1, 1, c.max_text_len)
        kv = [(cross[2 * i], cross[2 * i + 1]) for i in range(c.n_decoder_layers)]
        cond = EncodedCondition(cross[0], grid, c.text_extents)  # memory unused when cross is given
        return t(cond, target, kv)


def _median_ms(fn: object, repeat: int) -> float:
    """Median CPU time of the process per call, in ms (on a shared machine, wall time mostly
    measures the other jobs; with one ORT thread, CPU time is the work done)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()  # type: ignore[operator]
        times.append((time.process_time() - start) * 1e3)
    return float(np.median(times))


def measure(model_dir: str, frames: list[int], threads: int, repeat: int) -> list[str]:
    torch.set_num_threads(threads)
    model = NuwaModel.from_pretrained(model_dir)
    tr = model.transformer
    c = tr.cfg
    cross_names = kv_names(CROSS_KEY, CROSS_VALUE, 4)
    cross_names = cross_names[: 2 * c.n_decoder_layers]
    g = torch.Generator().manual_seed(0)
    n_text = c.max_text_len
    cross = [torch.randn(1, c.n_heads, n_text, c.head_dim, generator=g) for _ in cross_names]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        grid = (1, 1, n_text)
        step_spec = GraphSpec(
            "step",
            DECODER_STEP_KIND,
            DecoderStepGraph(tr, grid, c.text_extents, c.frames),
            [INPUT_IDS, POSITIONS, *kv_names("p%d.k", "p%d.v", c.n_decoder_layers)] + cross_names,
            [LOGITS, *kv_names("o%d.k", "o%d.v", c.n_decoder_layers)],
            lambda b, gen: (
                torch.zeros(b, dtype=torch.long),
                torch.zeros(b, dtype=torch.long),
                *[
                    torch.zeros(b, c.n_heads, c.cache_slots, c.head_dim)
                    for _ in range(2 * c.n_decoder_layers)
                ],
                *[torch.randn(b, c.n_heads, n_text, c.head_dim) for _ in cross_names],
            ),
            uses_attention=True,
        )
        names = step_spec.input_names + step_spec.output_names
        step_spec.dynamic_axes = {n: {0: BATCH} for n in names}
        export_graph(step_spec, model, Path(tmp) / "step.onnx", "portable", 18, verify=False)
        step = session(Path(tmp) / "step.onnx", threads)
        for f in frames:
            n = f * c.tokens_per_frame
            tokens = torch.randint(0, c.image_vocab_size, (1, f, c.grid_h, c.grid_w), generator=g)
            spec = GraphSpec(
                f"tf{f}",
                "teacher_forced",
                TeacherForcedGraph(tr, f),
                ["target", *cross_names],
                [LOGITS],
                lambda b, gen, tokens=tokens: (
                    tokens.expand(b, -1, -1, -1),
                    *(x.expand(b, -1, -1, -1) for x in cross),
                ),
                {n: {0: BATCH} for n in ["target", *cross_names, LOGITS]},
                uses_attention=True,
            )
            path = Path(tmp) / f"tf{f}.onnx"
            export_graph(spec, model, path, "portable", 18, verify=False)
            prefill = session(path, threads)
            feeds_tf = {
                "target": tokens.numpy(),
                **{k: v.numpy() for k, v in zip(cross_names, cross, strict=True)},
            }
            flat = tokens.reshape(-1).numpy()

            def run_steps(n: int = n, flat: np.ndarray = flat) -> None:
                past = [
                    np.zeros((1, c.n_heads, c.cache_slots, c.head_dim), np.float32)
                    for _ in range(2 * c.n_decoder_layers)
                ]
                feeds = {k: v.numpy() for k, v in zip(cross_names, cross, strict=True)}
                prev = c.bos_id
                for pos in range(n):
                    feeds[INPUT_IDS] = np.array([prev], np.int64)
                    feeds[POSITIONS] = np.array([pos], np.int64)
                    feeds.update(zip(step_spec.input_names[2 : 2 + len(past)], past, strict=True))
                    _, *past = step.run(None, feeds)
                    prev = int(flat[pos])

            steps_ms = _median_ms(run_steps, repeat)
            prefill_ms = _median_ms(lambda s=prefill, f=feeds_tf: s.run(None, f), repeat)
            lines.append(
                f"prefix {f} frame(s) = {n} tokens (CPU ms, {threads} thread(s)): "
                f"{n} decoder_step calls {steps_ms:.1f} ms "
                f"({steps_ms / n:.2f} ms/token), one teacher-forced call {prefill_ms:.1f} ms "
                f"-> {steps_ms / prefill_ms:.1f}x"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nuwa.export.prefill_measurement")
    parser.add_argument("model_dir")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    for line in measure(args.model_dir, args.frames, args.threads, args.repeat):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
