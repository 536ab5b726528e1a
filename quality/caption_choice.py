"""Does the transformer read the caption? One concept: caption choice by teacher-forced
cross-entropy (no sampling, so a test can rely on it), and the T2V scores per kind of caption.

For each held-out sample, the captions that differ from the true one only in the first object's
colour / start position / motion direction compete; the one under which the transformer gives
the sample's tokens the lowest cross-entropy is the model's choice
(:func:`caption_choice_accuracy`; chance :func:`caption_choice_chance`). It scores the PyTorch
checkpoint itself, whatever backend generates (the backends are compared on generation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from nuwa.data import quality_checker as qc
from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS, POSITIONS, ClipSpec
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.model.nuwa import NuwaModel

CAPTION_CHOICE_ATTRIBUTES = ("colour", "position", "direction")
CAPTION_GROUPS = ("one shape", "one digit", "two shapes", "two with a digit")


def caption_group(spec: ClipSpec) -> str:
    """Which of :data:`CAPTION_GROUPS` a clip's caption falls in: one object or two, and whether
    a digit is among them (the ten glyphs are T2V's hard part, MODEL_CARD "Where T2V fails")."""
    digit = any(o.kind == "digit" for o in spec.objects)
    if len(spec.objects) == 1:
        return CAPTION_GROUPS[1] if digit else CAPTION_GROUPS[0]
    return CAPTION_GROUPS[3] if digit else CAPTION_GROUPS[2]


def by_caption_group(
    scores: Sequence[Mapping[str, float | bool]], specs: Sequence[ClipSpec]
) -> dict[str, dict[str, float]]:
    """Per-sample T2V ``scores`` of the clips ``specs`` summarised per :func:`caption_group`
    (groups with no sample left out)."""
    groups: dict[str, list[Mapping[str, float | bool]]] = {}
    for score, spec in zip(scores, specs, strict=True):
        groups.setdefault(caption_group(spec), []).append(score)
    return {g: qc.summarise(groups[g]) for g in CAPTION_GROUPS if g in groups}


def rival_values(spec: ClipSpec, attribute: str) -> list[str]:
    """The values of the first object's ``attribute`` that a caption could name for ``spec``:
    every colour / start position another object does not have, every direction allowed from
    the first object's start."""
    first, rest = spec.objects[0], spec.objects[1:]
    if attribute == "direction":
        return list(ALLOWED_DIRECTIONS[first.position])
    values = list(COLOURS if attribute == "colour" else POSITIONS)
    return [v for v in values if all(getattr(o, attribute) != v for o in rest)]


def with_first(spec: ClipSpec, attribute: str, value: str) -> ClipSpec:
    """``spec`` with its first object's ``attribute`` set to ``value`` (a rival caption's clip;
    a new start position also takes a direction allowed from there)."""
    first, rest = spec.objects[0], tuple(spec.objects[1:])
    if attribute == "position":  # a direction allowed from the new start
        changed = replace(first, position=value, direction=ALLOWED_DIRECTIONS[value][0])
    else:
        changed = replace(first, **{attribute: value})
    return replace(spec, objects=(changed, *rest))


def caption_choice_chance(dataset: SyntheticVideoDataset, n: int, attribute: str) -> float:
    """The score of a model that ignores the caption: the mean of 1 / the number of rivals."""
    spec = (lambda i: dataset.image_sample(i).spec) if attribute != "direction" else dataset.spec
    return float(np.mean([1 / len(rival_values(spec(i), attribute)) for i in range(n)]))


@torch.no_grad()
def caption_choice_accuracy(
    model: NuwaModel, dataset: SyntheticVideoDataset, n: int, attribute: str = "colour"
) -> float:
    """Does the model read the caption? For each of ``n`` held-out samples, the captions that
    differ from the true one only in the first object's ``attribute`` compete: the one under
    which the transformer gives the sample's tokens the lowest teacher-forced cross-entropy is
    the model's choice. "colour" and "position" score first frames under motion-free captions
    (chance 1/6 and 1/5), "direction" whole clips under captions with motion (chance
    :func:`caption_choice_chance`, about 0.46: corners allow two directions, the centre four).
    Returns the share of right choices.

    Deterministic (no sampling), so a test can rely on it; generation-based scores are in
    :func:`nuwa.quality.evaluation.evaluate`."""
    if attribute not in CAPTION_CHOICE_ATTRIBUTES:
        raise ValueError(f"attribute must be one of {CAPTION_CHOICE_ATTRIBUTES}, got {attribute!r}")
    tr = model.transformer
    motion = attribute == "direction"
    right = 0
    for i in range(n):
        if motion:
            spec, frames = dataset.spec(i), dataset[i].frames[None]
        else:
            sample = dataset.image_sample(i)
            spec, frames = sample.spec, sample.image[None, None]
        values = rival_values(spec, attribute)
        captions = [with_first(spec, attribute, v).caption(motion=motion) for v in values]
        target = model.frames_to_codes(frames).expand(len(values), -1, -1, -1)
        logits = tr(tr.encode_text(model.text_ids(captions)), target)
        nll = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), target.flatten(), reduction="none"
        )
        choice = values[int(nll.view(len(values), -1).mean(1).argmin())]
        right += int(choice == getattr(spec.objects[0], attribute))
    return right / n
