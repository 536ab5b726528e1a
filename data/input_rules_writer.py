"""``input_rules.json`` of a model trained on :mod:`nuwa.data.synthetic_data`: the dataset's words,
caption grammar and sketch palette with the model's frame and sketch sizes
(``python -m nuwa.data.input_rules_writer MODEL_DIR``). The rules themselves and their file format
are :mod:`nuwa.spec.input_rules`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS, DIGITS, DIRECTIONS, POSITIONS, SHAPES
from nuwa.spec.checkpoint_files import CONFIG_FILE
from nuwa.spec.input_rule_parts import CaptionGrammar, SketchRules
from nuwa.spec.input_rules import SNAP_DISTANCE, InputRules, InputRulesError
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

# The captions of ``clip_specs`` (ObjectSpec.caption_phrase, ClipSpec.caption), as templates.
CAPTION_GRAMMAR: dict[str, str] = {
    "caption": "<object> [and <object>]",
    "object": "<thing> [at the <position>] [moves <direction>]",
    "thing": "a <colour> <shape> | the digit <digit> in <colour>",
}
# captions the demo model does well (every attribute named): README's examples, which
# tests/runtime/test_readme_examples.py scores (>= 0.9 over 8 seeds each)
EXAMPLES: tuple[str, ...] = (
    "a red square at the top left moves right",
    "a yellow triangle at the bottom right moves left",
    "a green circle at the centre",
)


def rules_from_training_data(config: dict[str, Any]) -> InputRules:
    """The input rules of a model trained on :mod:`nuwa.data.synthetic_data` with ``config``
    (its ``config.json`` as a dict): the dataset's vocabularies and palette, the config's frame
    and sketch sizes, snapping at :data:`SNAP_DISTANCE`."""
    classes = int(config["vqgan_seg"]["in_channels"])
    if classes != len(SKETCH_CLASSES):
        raise InputRulesError(
            f"the model's sketch tokenizer takes {classes} classes; the training data has "
            f"{len(SKETCH_CLASSES)} ({', '.join(SKETCH_CLASSES)})"
        )
    caption = CaptionGrammar(
        grammar=tuple(CAPTION_GRAMMAR.items()),
        words=(
            ("colours", tuple(COLOURS)),
            ("shapes", SHAPES),
            ("digits", tuple(str(d) for d in DIGITS)),
            ("positions", tuple(POSITIONS)),
            ("directions", tuple(DIRECTIONS)),
        ),
        allowed_directions=tuple(ALLOWED_DIRECTIONS.items()),
        max_objects=2,
        examples=EXAMPLES,
    )
    builtin = InputRules.builtin(0, 0, 0)
    return InputRules(
        frame_size=int(config["vqgan"]["image_size"]),
        frames=int(config["transformer"]["frames"]),
        sketch=SketchRules.from_palette(
            int(config["vqgan_seg"]["image_size"]),
            SKETCH_CLASSES,
            SKETCH_PALETTE,
            SNAP_DISTANCE,
        ),
        mask_threshold=builtin.mask_threshold,
        mask_rule=builtin.mask_rule,
        resize_filter=builtin.resize_filter,
        resize_rule=builtin.resize_rule,
        caption=caption,
    )


GENERATED_NOTE = (
    "Written by `python -m nuwa.spec.input_rules MODEL_DIR` from nuwa.data.synthetic_data (the "
    "training data's words and sketch palette) and the model's config.json; do not edit by hand."
)


def write_input_rules(model_dir: str | Path) -> Path:
    """Write ``model_dir/input_rules.json`` from its ``config.json`` and the training data."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    return rules_from_training_data(config).save(model_dir, note=GENERATED_NOTE)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m nuwa.data.input_rules_writer MODEL_DIR")
    print(write_input_rules(sys.argv[1]))
