"""A model directory's settings, read once before a backend loads: its model spec, its sampling
defaults (``generation_config.json``) and its input rules (``input_rules.json``).

``nuwa generate`` and :meth:`nuwa.runtime.Pipeline.from_pretrained` both read a directory through
:meth:`ModelDirectory.read`, so each file is read (and checked) once per request; an unusable
file is a one-line :class:`~nuwa.spec.errors.NuwaInputError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nuwa.runtime.media import check_input_directory
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GenerationConfig, GenerationConfigError
from nuwa.spec.input_rules import InputRules, InputRulesError
from nuwa.spec.model_spec import CONFIG_FILE, ModelSpec


def default_model_dir() -> Path:
    """The demo checkpoint shipped inside the package (``nuwa/model/checkpoints/demo``)."""
    import nuwa.model  # its package only (no torch): where the demo checkpoint lies

    return Path(nuwa.model.__file__).parent / "checkpoints" / "demo"


def builtin_input_rules(spec: ModelSpec) -> InputRules:
    """The rules of a model directory without ``input_rules.json``: today's behaviour at the
    spec's sizes (exact palette colours, no vocabulary; :meth:`InputRules.builtin`)."""
    return InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames)


def load_input_rules(model_dir: str | Path, spec: ModelSpec) -> InputRules:
    """``model_dir``'s ``input_rules.json`` (schema-checked, and its sizes and sketch classes
    checked against the model's config), or :func:`builtin_input_rules` without one."""
    try:
        rules = InputRules.load(model_dir)
    except InputRulesError as exc:
        raise NuwaInputError(str(exc)) from None
    if rules is None:
        return builtin_input_rules(spec)
    for field, value, expected in (
        ("frame_size", rules.frame_size, spec.image_size),
        ("frames", rules.frames, spec.frames),
        ("sketch.size", rules.sketch.size, spec.sketch_size),
        ("sketch.palette (classes)", len(rules.sketch.classes), spec.sketch_classes),
    ):
        if value != expected:
            raise NuwaInputError(
                f"{rules.where}: {field} is {value} but the model's config says {expected}"
            )
    return rules


def load_generation_config(model_dir: str | Path) -> GenerationConfig:
    """``model_dir``'s sampling defaults (the built-in ones without the file)."""
    try:
        return GenerationConfig.load(model_dir)
    except GenerationConfigError as exc:
        raise NuwaInputError(str(exc)) from None


@dataclass(frozen=True)
class ModelDirectory:
    """What the runtime reads from a model directory before any backend loads."""

    path: Path
    spec: ModelSpec
    generation_config: GenerationConfig
    input_rules: InputRules

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelDirectory:
        """Read and check ``model_dir``'s files, each once: a checkpoint's config first (before
        anything that depends on it), then the sampling defaults and the input rules."""
        path = check_input_directory(model_dir, "model directory")
        spec = ModelSpec.from_model_dir(path) if (path / CONFIG_FILE).is_file() else None
        generation = load_generation_config(path)
        if spec is None:  # an export directory: its manifest's config
            spec = ModelSpec.from_model_dir(path)
        return cls(path, spec, generation, load_input_rules(path, spec))
