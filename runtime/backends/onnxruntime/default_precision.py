"""The precision ONNX Runtime runs a checkpoint at when the caller names none (``precision=None``,
no ``--precision``).

On the CPU it is the checkpoint's ``runtime_defaults.json`` (``onnxruntime_cpu_precision``,
:class:`nuwa.runtime.model_directory.RuntimeDefaults`; fp32 without the file), run from the
export the directory bundles for it (``onnx_int8/`` for int8,
:func:`nuwa.runtime.export_cache.bundled_export`), whose quality gates must have passed. Two cases
run fp32 instead, each with a one-line note (the ``log`` callback, else a ``RuntimeWarning``):

- this CPU refuses the INT8 export: full-range int8 weights on x86 without VNNI, where ONNX
  Runtime's int8 kernels saturate (:func:`.int8_cpu_kernels.check_int8_weight_range`);
- the bundled export is not of this checkpoint (the weights changed after it was written), the
  way a stale bundled FP32 export is passed over for the export cache.

On other devices (CUDA, TensorRT) the default stays fp32. An explicit precision is never
replaced: ``precision="fp32"`` / ``--precision fp32`` is the way to FP32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import check_int8_weight_range
from nuwa.runtime.export_cache import BUNDLED_EXPORT_DIRS, bundled_export, quality_gates_passed
from nuwa.runtime.model_directory import CPU_PRECISION_FIELD, load_runtime_defaults
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import ManifestError, load_manifest


def note(message: str, log: Callable[[str], None] | None) -> None:
    """A one-line notice through ``log``, else as a ``RuntimeWarning``."""
    if log is not None:
        log(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def default_precision(
    model_dir: str | Path, device_kind: str, log: Callable[[str], None] | None = None
) -> str:
    """The precision a checkpoint directory runs at on ``device_kind`` (``"cpu"``, ``"cuda"``,
    ``"tensorrt"``) when none is asked for (see the module docstring)."""
    model_dir = Path(model_dir)
    if device_kind != "cpu":
        return "fp32"
    defaults = load_runtime_defaults(model_dir)
    wanted = defaults.onnxruntime_cpu_precision
    if wanted == "fp32":
        return wanted
    folder = model_dir / BUNDLED_EXPORT_DIRS[wanted]
    export = bundled_export(model_dir, "portable", wanted)
    if export is None:
        note(
            f"{folder} is not a portable {wanted} export of this checkpoint (manifest target, "
            "precision or checkpoint_sha256 differ): running fp32",
            log,
        )
        return "fp32"
    if not quality_gates_passed(export):
        raise NuwaInputError(
            f"{defaults.source}: {CPU_PRECISION_FIELD} is {wanted} but the quality gates of "
            f"{export} did not pass (its manifest's quality_gates): write it with `nuwa "
            f"quantize` and its gates, or say fp32"
        )
    if wanted == "int8":
        try:
            manifest = load_manifest(export, verify_hashes=False)
        except ManifestError as exc:
            raise NuwaInputError(str(exc)) from None
        try:
            check_int8_weight_range(manifest)
        except BackendUnavailableError:
            note(
                f"{export}: this CPU has no VNNI, where ONNX Runtime's int8 kernels saturate on "
                "its full-range weights: running fp32 (--precision fp32 / precision='fp32' "
                "chooses it without this note)",
                log,
            )
            return "fp32"
    return wanted
