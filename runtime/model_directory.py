"""A model directory's settings, read once before a backend loads: its model spec, its sampling
defaults (``generation_config.json``), its input rules (``input_rules.json``) and how it runs by
default (``runtime_defaults.json``, :class:`RuntimeDefaults`).

``nuwa generate`` and :meth:`nuwa.runtime.Pipeline.from_pretrained` both read a directory through
:meth:`ModelDirectory.read`, so each file is read (and checked) once per request; an unusable
file is a one-line :class:`~nuwa.spec.errors.NuwaInputError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nuwa.runtime.export_cache import BUNDLED_EXPORT_DIRS
from nuwa.runtime.media import check_input_directory
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GenerationConfig, GenerationConfigError
from nuwa.spec.input_rules import InputRules, InputRulesError
from nuwa.spec.manifest import MANIFEST_FILE
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


RUNTIME_DEFAULTS_FILE = "runtime_defaults.json"
CPU_PRECISION_FIELD = "onnxruntime_cpu_precision"
ORT_PRECISIONS = ("fp32", "fp16", "int8")  # what ONNX Runtime runs (backends.PRECISIONS)


@dataclass(frozen=True)
class RuntimeDefaults:
    """A checkpoint's ``runtime_defaults.json``: how it runs when the caller does not say.

    ``onnxruntime_cpu_precision``: the precision ONNX Runtime runs on the CPU when no precision
    is asked for (``precision=None``, no ``--precision``): ``fp32`` (also without the file), or
    ``int8`` / ``fp16``, whose export the directory bundles in ``onnx_int8/`` / ``onnx_fp16/``
    (written by ``nuwa quantize``, quality gates passed). Where the CPU refuses that export
    (full-range INT8 on x86 without VNNI) the runtime runs fp32 with a one-line note
    (:mod:`nuwa.runtime.backends.onnxruntime.default_precision`). Other backends and devices
    keep their own defaults (fp32).

    ``{"onnxruntime_cpu_precision": "int8"}``"""

    onnxruntime_cpu_precision: str = "fp32"
    source: Path | None = None  # the file, None for the built-in defaults


def load_runtime_defaults(model_dir: str | Path) -> RuntimeDefaults:
    """``model_dir``'s ``runtime_defaults.json`` (checked: a JSON object of known fields, a
    precision ONNX Runtime runs, whose bundled export exists), or the built-in defaults without
    one; a bad file is a one-line :class:`NuwaInputError` naming it."""
    path = Path(model_dir) / RUNTIME_DEFAULTS_FILE
    if not path.is_file():
        return RuntimeDefaults()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NuwaInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NuwaInputError(f"{path} must hold a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {CPU_PRECISION_FIELD})
    if unknown:
        raise NuwaInputError(f"{path}: unknown fields {unknown}; known: {CPU_PRECISION_FIELD}")
    precision = data.get(CPU_PRECISION_FIELD, "fp32")
    if precision not in ORT_PRECISIONS:
        raise NuwaInputError(
            f"{path}: {CPU_PRECISION_FIELD} must be one of {', '.join(ORT_PRECISIONS)}, "
            f"got {precision!r}"
        )
    bundled = BUNDLED_EXPORT_DIRS[precision]
    if precision != "fp32" and not (Path(model_dir) / bundled / MANIFEST_FILE).is_file():
        raise NuwaInputError(
            f"{path}: {CPU_PRECISION_FIELD} is {precision} but the directory bundles no "
            f"{precision} export ({bundled}/{MANIFEST_FILE}): write it with `nuwa quantize "
            f"{BUNDLED_EXPORT_DIRS['fp32']} --precision {precision} -o {bundled}` or say fp32"
        )
    return RuntimeDefaults(precision, path)


@dataclass(frozen=True)
class ModelDirectory:
    """What the runtime reads from a model directory before any backend loads."""

    path: Path
    spec: ModelSpec
    generation_config: GenerationConfig
    input_rules: InputRules
    runtime_defaults: RuntimeDefaults = RuntimeDefaults()

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelDirectory:
        """Read and check ``model_dir``'s files, each once: a checkpoint's config first (before
        anything that depends on it), then the sampling defaults, the input rules and (a
        checkpoint's) runtime defaults."""
        path = check_input_directory(model_dir, "model directory")
        checkpoint = (path / CONFIG_FILE).is_file()
        spec = ModelSpec.from_model_dir(path) if checkpoint else None
        generation = load_generation_config(path)
        if spec is None:  # an export directory: its manifest's config
            spec = ModelSpec.from_model_dir(path)
        rules = load_input_rules(path, spec)
        defaults = load_runtime_defaults(path) if checkpoint else RuntimeDefaults()
        return cls(path, spec, generation, rules, defaults)
