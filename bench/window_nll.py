"""Why videos past the trained length break (issue 36): teacher-forced loss per frame of held-out
clips rendered past the trained length (the dataset's ground truth: objects move on and leave
the frame), three ways, side by side on the same clips and codes:

- ``window``: the trained forward over frames 1–8 (what training sees);
- ``slide``: the runtime's decode loop (ONNX Runtime, the model's export) over all frames, the
  ring cache sliding past frame 8; every frame past it takes frame 8's time row;
- ``reencode``: frame ``f > 8`` as the last frame of the 8-frame window ``f-7 .. f`` encoded
  afresh at the trained positions (what a runtime that re-encoded its window for each new frame
  would see).

Each condition twice: the clip's caption (T2V) and the empty prompt (V2V's condition). The
table averages the frames where every object is whole (a frame an object has left is trivially
predicted); the frames past 8 where one is clipped or gone are reported apart (no training clip
shows one).

    python3 bench/window_nll.py [--model model/checkpoints/demo] [--clips 24] [--frames 16]

Prints a table and writes JSON (``--json FILE``); leaves ``bench/RESULTS.md`` alone (a diagnosis,
not a benchmark of the product). Needs PyTorch (the ``window`` and ``reencode`` rows)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nuwa.calibration.task_samples import TeacherForcing
from nuwa.data.long_video_scores import whole_in_truth
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel
from nuwa.runtime.backends import load_backend
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.tokenizer import ByteTokenizer

REPO = Path(__file__).resolve().parent.parent
CONDITIONS = {"T2V": lambda clip: clip.caption, "V2V": lambda clip: ""}


def all_whole(clip) -> np.ndarray:
    """Per frame: whether every object is whole in the frame (the renderer lets objects leave
    the frame past the trained length; frames without them are trivially predicted and would
    hide the loss, so the table averages only frames where every object is whole)."""
    return whole_in_truth(clip).all(axis=1)


def frame_means(rows: list[list[float]]) -> list[float | None]:
    """Per frame, the mean over clips of the frames kept (``None`` where no clip kept it)."""
    a = np.asarray(rows, dtype=np.float64)
    kept = ~np.isnan(a)
    sums = np.where(kept, a, 0.0).sum(axis=0)
    counts = kept.sum(axis=0)
    return [round(float(s / c), 3) if c else None for s, c in zip(sums, counts, strict=True)]


def masked(values: list[float], keep: np.ndarray) -> list[float]:
    """``values`` with NaN where ``keep`` is False."""
    return [v if k else float("nan") for v, k in zip(values, keep, strict=True)]


def frame_losses(logits: torch.Tensor, codes: torch.Tensor, per_frame: int) -> list[float]:
    """Mean cross-entropy (nats/token) of ``logits (N, V)`` against ``codes`` per frame."""
    nll = F.cross_entropy(logits, codes.reshape(-1), reduction="none")
    return nll.view(-1, per_frame).mean(1).tolist()


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = NuwaModel.from_pretrained(args.model).eval()
    backend = load_backend("onnxruntime", args.model, progress=False)
    cfg = model.config.transformer
    trained, per_frame = cfg.frames, cfg.tokens_per_frame
    if args.frames <= trained:
        raise SystemExit(f"--frames must be past the trained {trained}")
    size = model.config.vqgan.image_size
    clips = SyntheticVideoDataset(
        args.clips, seed=args.seed, frames=args.frames, size=size, split="heldout"
    )
    tok = ByteTokenizer(backend.spec.max_text_len)
    rows = {f"{k}/{c}": [] for k in ("window", "slide", "reencode") for c in CONDITIONS}
    by_visibility: dict[str, list[float]] = {"reencode/whole": [], "reencode/clipped": []}
    by_visibility |= {"slide/whole": [], "slide/clipped": []}
    with torch.no_grad():
        for i in tqdm(range(args.clips), desc="clips"):
            clip = clips[i]
            codes = model.frames_to_codes(clip.frames[None])[0]  # (T, h, w)
            whole = all_whole(clip)
            for c, prompt_of in CONDITIONS.items():
                prompt = prompt_of(clip)
                cond = model.text_condition([prompt], allow_empty=True)
                logits = model.transformer(cond, codes[None, :trained])[0]
                window = frame_losses(logits, codes[:trained], per_frame)
                rows[f"window/{c}"].append(masked(window, whole[:trained]))
                again = []
                for f in range(trained, args.frames):
                    last = model.transformer(cond, codes[None, f - trained + 1 : f + 1])[0]
                    last = last[-per_frame:]
                    again += frame_losses(last, codes[f], per_frame)
                rows[f"reencode/{c}"].append(masked(again, whole[trained:]))
                forcing = TeacherForcing(codes.reshape(1, -1).numpy())
                bcond = backend.text_condition(tok.encode_batch([prompt], allow_empty=True))
                options = SamplingOptions(temperature=0.0)
                generate_tokens(
                    backend, bcond, args.frames, options, progress=False, choose=forcing
                )
                slide = frame_losses(torch.from_numpy(forcing.logits[:, 0]), codes, per_frame)
                rows[f"slide/{c}"].append(masked(slide, whole))
                if c == "T2V":
                    for f in range(trained, args.frames):
                        when = "whole" if whole[f] else "clipped"
                        by_visibility[f"reencode/{when}"].append(again[f - trained])
                        by_visibility[f"slide/{when}"].append(slide[f])
    return {
        "model": str(args.model),
        "clips": args.clips,
        "frames": args.frames,
        "trained_frames": trained,
        "per_frame": {k: frame_means(v) for k, v in rows.items()},
        "whole_frames": {k: np.sum(~np.isnan(v), axis=0).tolist() for k, v in rows.items()},
        "past_trained_by_visibility": {
            k: {"frames": len(v), "nll": round(float(np.mean(v)), 3) if v else None}
            for k, v in by_visibility.items()
        },
    }


def table(result: dict) -> str:
    t, frames = result["trained_frames"], result["frames"]
    starts = list(range(0, frames, t))
    names = [f"frames {a + 1}–{min(a + t, frames)}" for a in starts]
    lines = [
        f"teacher-forced nats/token, {result['clips']} held-out clips of {frames} frames (frames "
        "where every object is whole)",
        "| way / condition | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for k, v in result["per_frame"].items():
        v = np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
        offset = t if k.startswith("reencode") else 0  # reencode starts past the trained frames
        cells = []
        for a in starts:
            part = v[max(a - offset, 0) : a + t - offset] if a >= offset else v[:0]
            part = part[~np.isnan(part)]
            cells.append(f"{part.mean():.2f}" if part.size else "—")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    for k, v in result["past_trained_by_visibility"].items():
        way, when = k.split("/")
        what = "every object whole" if when == "whole" else "an object clipped or gone"
        lines.append(f"past frame {t}, {way}, {what}: {v['nll']} nats/token over {v['frames']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=REPO / "model" / "checkpoints" / "demo")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=77)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args(argv)
    result = measure(args)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
