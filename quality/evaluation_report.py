"""The plain-text table ``nuwa evaluate`` prints: one concept, the headline metric per task and
one line per extra score of :func:`nuwa.quality.evaluation.evaluate`'s table."""

from __future__ import annotations

from typing import Any


def format_table(table: dict[str, Any]) -> str:
    """A plain-text table of the headline metric per task."""
    headline = {
        "T2I": "all",
        "T2V": "all",
        "S2I": "iou",
        "S2V": "iou",
        "V2V": "position_error",
        "I2I": "psnr_kept",
        "TI2I": "all",
        "TV2V": "all",
    }
    lines = [f"VQ-GAN reconstruction PSNR: {table['vqgan_psnr']:.2f} dB"]
    if "vqgan_token_locality" in table:
        loc = table["vqgan_token_locality"]
        lines.append(
            f"VQ-GAN tokens changed between frames: {loc['near_changed']:.3f} near objects, "
            f"{loc['far_changed']:.3f} far from them"
        )
    for task, row in table["tasks"].items():
        key = headline[task]
        extra = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in (key, "n"))
        lines.append(f"{task:5s} {key} {row[key]:.3f}  (n={int(row['n'])}; {extra})")
    if "t2v_by_caption" in table:
        parts = [
            f"{g} {row['all']:.3f} (n={int(row['n'])}; shape {row['shape']:.3f}, first frame "
            f"{row['first_frame_shape']:.3f})"
            for g, row in table["t2v_by_caption"].items()
        ]
        lines.append("T2V all by caption: " + ", ".join(parts))
    if "t2v_open_captions" in table:
        row = table["t2v_open_captions"]
        extra = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("drawn", "n"))
        lines.append(
            f"T2V captions without position (half without motion too): drawn "
            f"{row['drawn']:.3f}  (n={int(row['n'])}; {extra})"
        )
    for task, runs in table.get("long", {}).items():
        for frames, blocks in runs.items():
            parts = [
                f"{name}: kept {row['kept']:.3f}"
                + (
                    f", position error {row['position_error']:.2f} px"
                    if "position_error" in row
                    else ""
                )
                + f", speed {row['speed']:.2f} px/frame"
                + (f", area {row['area_ratio']:.2f}" if "area_ratio" in row else "")
                for name, row in blocks.items()
                if name != "seconds"
            ]
            lines.append(f"{task} over {frames} frames: " + "; ".join(parts))
    if "caption_choice" in table:
        c = table["caption_choice"]
        chance = c.get("chance", {"colour": 1 / 6, "position": 0.2})
        parts = [f"{a} {c[a]:.3f} (chance {chance[a]:.3f})" for a in chance if a in c]
        lines.append("caption choice: " + ", ".join(parts))
    return "\n".join(lines)
