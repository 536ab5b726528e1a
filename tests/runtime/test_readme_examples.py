"""The README's ``nuwa generate`` examples use captions the demo model does well, and its
"What the demo model understands" section is true to the demo's ``input_rules.json``.

The examples' single source is the README's *Run* code block: the test parses each
``nuwa generate "<caption>" ...`` line with the real command-line parser (so the task is the one
the command runs), reads a manipulation example's input from its comment (``in.png: <caption>``,
rendered exactly by the synthetic dataset) and scores the output with the pixel checker over
sampling seeds 0-7 through the :class:`Pipeline` on the shipped demo (ONNX Runtime).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nuwa.cli import build_parser
from nuwa.data import quality_checker as qc
from nuwa.data.clip_rendering import render_clip
from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, ClipSpec, ObjectSpec
from nuwa.runtime.generate_cli import infer_task
from nuwa.runtime.pipeline import default_model_dir
from nuwa.spec.input_rules import InputRules

README = Path(__file__).resolve().parents[2] / "README.md"
SEEDS = range(8)
MIN_ACCURACY = 0.9  # all attributes right, per example, over SEEDS
SCORED_TASKS = ("t2i", "t2v", "ti2i", "tv2v")  # the tasks the attribute checker reads
_OBJECT = re.compile(
    r"(?:a (?P<colour>\w+) (?P<shape>\w+)|the digit (?P<digit>\d) in (?P<dcolour>\w+))"
    r"(?: at the (?P<position>top left|top right|bottom left|bottom right|centre))?"
    r"(?: moves (?P<direction>\w+))?"
)


@dataclass(frozen=True)
class Example:
    line: str
    task: str
    caption: str
    target: ClipSpec
    source: ClipSpec | None  # manipulation: the input picture's caption (from the comment)
    rect: tuple[int, int, int, int] | None


def parse_caption(caption: str, video: bool) -> ClipSpec:
    """A full caption (every attribute the task scores named) -> its spec."""
    objects = []
    for phrase in caption.split(" and "):
        m = _OBJECT.fullmatch(phrase)
        assert m, f"README caption {caption!r}: {phrase!r} is not in the caption grammar"
        assert m["position"], f"README caption {caption!r} leaves the start position out"
        assert m["direction"] or not video, f"README caption {caption!r} leaves the motion out"
        position = m["position"]
        direction = m["direction"] or ALLOWED_DIRECTIONS[position][0]  # (a still: not scored)
        if m["digit"] is not None:
            objects.append(ObjectSpec("digit", m["dcolour"], position, direction, int(m["digit"])))
        else:
            objects.append(ObjectSpec(m["shape"], m["colour"], position, direction))
    return ClipSpec(tuple(objects))


def run_block() -> str:
    text = README.read_text(encoding="utf-8")
    run = text.split("\n## Run\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", run, re.S)
    assert block, "README's Run section has no bash block"
    return block.group(1)


def readme_examples() -> list[Example]:
    parser = build_parser("generate")
    examples = []
    for line in run_block().splitlines():
        if not line.startswith("nuwa generate"):
            continue
        command, _, comment = line.partition(" #")
        args = parser.parse_args(shlex.split(command)[1:])
        task = infer_task(args)
        if args.prompt is None or task not in SCORED_TASKS:
            continue
        video = task in ("t2v", "tv2v")
        source = rect = None
        if task in ("ti2i", "tv2v"):
            given = re.search(r"\(in\.(?:png|gif): ([^)]*)\)", comment)
            assert given, f"README example {line!r}: say what its input holds (in.png: ...)"
            source = parse_caption(given.group(1), video)
            x0, y0, x1, y1 = (int(v) for v in args.mask.split(","))
            rect = (x0, y0, x1, y1)
        examples.append(
            Example(line, task, args.prompt, parse_caption(args.prompt, video), source, rect)
        )
    return examples


def test_the_readme_examples_are_found_and_every_scored_task_has_one() -> None:
    examples = readme_examples()
    assert {e.task for e in examples} == set(SCORED_TASKS), [e.line for e in examples]


def test_the_demo_files_examples_are_readme_examples() -> None:
    rules = InputRules.load(default_model_dir())
    assert rules is not None and rules.caption is not None
    captions = {e.caption for e in readme_examples()}
    for example in rules.caption.examples:
        assert example in captions, f"{example!r} (input_rules.json) is not a README example"


def test_the_readme_section_is_true_to_the_demo_file() -> None:
    rules = InputRules.load(default_model_dir())
    assert rules is not None and rules.caption is not None
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## What the demo model understands\n", 1)[1].split("\n## ", 1)[0]
    section = " ".join(section.split())  # line breaks as spaces
    for name, words in rules.caption.words:
        listed = re.search(rf"- {name}(?: \([^)]*\))?: ([^-]*?)(?: \(| -|$)", section)
        assert listed, f"README does not list the {name}"
        assert [w.strip() for w in listed.group(1).split(",")] == list(words), name
    for name, rgb in zip(rules.sketch.classes, rules.sketch.colours, strict=True):
        assert f"{name} ({rgb[0]}, {rgb[1]}, {rgb[2]})" in section, name
    size = rules.frame_size
    assert f"{size}×{size} pixels, {rules.frames} per video" in section
    assert f"RGB distance {rules.sketch.snap_distance:g}" in section
    assert f"white (grey > {rules.mask_threshold}) = generate" in section


def score(pipe, example: Example, seed: int) -> bool:
    """Whether every attribute of the example's output is right (the checker's "all")."""
    if example.source is None:
        result = pipe(example.task, example.caption, seed=seed)
        frames = result.frames[0]
        if example.task == "t2i":
            return bool(qc.score_text_to_image(frames[0], example.target)["all"])
        return bool(qc.score_text_to_video(frames, example.target)["all"])
    clip = render_clip(example.source)
    assert example.rect is not None
    x0, y0, x1, y1 = example.rect
    keep = np.ones(clip.frames.shape[:3], dtype=bool)
    keep[:, y0:y1, x0:x1] = False
    if example.task == "ti2i":
        out = pipe("ti2i", example.caption, image=clip.frames[0], mask=example.rect, seed=seed)
        scores = qc.score_edit(out.frames[0, 0], clip.frames[0], keep[0], example.target, 0)
    else:
        out = pipe("tv2v", example.caption, video=clip.frames, mask=example.rect, seed=seed)
        scores = qc.score_edit(out.frames[0], clip.frames, keep, example.target, 0)
    return bool(scores["all"])


@pytest.mark.slow
def test_each_readme_example_scores_at_least_0_9_over_eight_seeds() -> None:
    from nuwa.runtime import Pipeline

    pipe = Pipeline.from_pretrained(backend="onnxruntime", progress=False)
    accuracies = {}
    for example in readme_examples():
        right = [score(pipe, example, seed) for seed in SEEDS]
        accuracies[example.line] = float(np.mean(right))
    print("\n".join(f"{a:.3f}  {line}" for line, a in accuracies.items()))
    low = {line: a for line, a in accuracies.items() if a < MIN_ACCURACY}
    assert not low, f"README examples under {MIN_ACCURACY} over seeds 0-7: {low}"
