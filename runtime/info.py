"""``nuwa info``: the version and which backends, devices and native pieces are usable here;
``nuwa info --model DIR``: what that model understands (:func:`model_report`).

Each probe imports its library lazily and turns failure into a sentence that says what to
install or build; nothing here needs PyTorch or TensorRT to be present.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from pathlib import Path

import nuwa
from nuwa.spec import install_hints


@dataclass
class Probe:
    name: str
    usable: bool
    detail: str


def probe_onnxruntime() -> Probe:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return Probe("onnxruntime", False, f"not installed: {install_hints.CORE}")
    providers = ", ".join(ort.get_available_providers())
    return Probe("onnxruntime", True, f"{ort.__version__} (providers: {providers})")


def probe_torch() -> Probe:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return Probe("torch", False, f"not installed: {install_hints.TORCH}")
    cuda = torch.cuda.is_available()
    device = f"CUDA: {torch.cuda.get_device_name(0)}" if cuda else "CUDA: no (CPU only)"
    return Probe("torch", True, f"{torch.__version__} ({device})")


def probe_tensorrt() -> Probe:
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return Probe("tensorrt", False, f"not installed: {install_hints.TENSORRT}")
    return Probe("tensorrt", True, str(trt.__version__))


def probe_plugins() -> Probe:
    from nuwa import plugins

    try:
        path = plugins.library_path()
        cuda = "CUDA kernels compiled" if plugins.cuda_compiled() else "CPU kernel only"
        trt = ", TensorRT plugin" if plugins.tensorrt_compiled() else ""
        return Probe("plugins", True, f"{path} ({cuda}{trt})")
    except plugins.PluginLibraryError as exc:
        return Probe("plugins", False, str(exc))


def probe_int8_cpu() -> Probe:
    from nuwa.runtime.cpu_features import int8_products_saturate

    if int8_products_saturate():
        return Probe(
            "int8 (CPU)",
            True,
            "x86 without VNNI: 7-bit weights only (`nuwa quantize` default; full-range "
            "exports are refused here); weight layers run as the Q/DQ graph is written",
        )
    try:
        from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import resolve_int8_kernels

        kernels = resolve_int8_kernels("auto")
    except ImportError:  # no ONNX Runtime: the onnxruntime probe says what to install
        kernels = "qdq"
    how = {
        "matmulnbits": "weight layers run as ONNX Runtime's 8-bit MatMulNBits",
        "qdq": "weight layers run as the Q/DQ graph is written (ONNX Runtime < 1.22)",
    }[kernels]
    exact = "full-range int8 weights run exactly (VNNI or not x86)"
    return Probe("int8 (CPU)", True, f"{exact}; {how}")


def collect() -> list[Probe]:
    return [
        probe_onnxruntime(),
        probe_torch(),
        probe_tensorrt(),
        probe_plugins(),
        probe_int8_cpu(),
    ]


def report() -> str:
    lines = [
        f"nuwa {nuwa.__version__} (Python {platform.python_version()}, {platform.machine()})",
        "backends and native pieces:",
    ]
    for p in collect():
        mark = "yes" if p.usable else "no "
        lines.append(f"  [{mark}] {p.name:<12} {p.detail}")
    return "\n".join(lines)


def model_report(model_dir: str | Path) -> str:
    """What the model in ``model_dir`` (a checkpoint or an export) understands, from its
    ``input_rules.json``: caption grammar and words, sketch palette, frame size, mask
    convention. A directory without the file gets the built-in rules, said so."""
    from nuwa.runtime.media import check_input_directory
    from nuwa.runtime.model_directory import load_input_rules
    from nuwa.spec.model_spec import ModelSpec

    model_dir = Path(model_dir)
    check_input_directory(model_dir, "--model")
    spec = ModelSpec.from_model_dir(model_dir)
    rules = load_input_rules(model_dir, spec)
    source = (
        f"from {rules.source.name}"
        if rules.source is not None
        else "no input_rules.json: the built-in rules (exact palette colours, no vocabulary)"
    )
    head = f"model {spec.name} in {model_dir} ({source})"
    return f"{head}\n{rules.describe()}{_precision_line(model_dir)}"


def _precision_line(model_dir: Path) -> str:
    """A checkpoint's default precision on ONNX Runtime's CPU, and what this CPU runs (empty for
    an export directory: it holds one precision)."""
    from nuwa.runtime.model_directory import RUNTIME_DEFAULTS_FILE, load_runtime_defaults
    from nuwa.spec.model_spec import CONFIG_FILE

    if not (model_dir / CONFIG_FILE).is_file():
        return ""
    defaults = load_runtime_defaults(model_dir)
    wanted = defaults.onnxruntime_cpu_precision
    source = RUNTIME_DEFAULTS_FILE if defaults.source else f"no {RUNTIME_DEFAULTS_FILE}"
    line = f"\ndefault precision on onnxruntime (CPU): {wanted} ({source})"
    if wanted == "fp32":
        return line
    try:
        from nuwa.runtime.backends.onnxruntime.default_precision import default_precision
    except ImportError:  # no ONNX Runtime: the backends list says what to install
        return line
    notes: list[str] = []
    here = default_precision(model_dir, "cpu", log=notes.append)
    return line + (f"; this CPU runs {here}: {notes[0]}" if here != wanted and notes else "")
