"""Which ONNX Runtime CPU kernels run the INT8 weight layers of a Q/DQ graph (DESIGN §8).

A ``nuwa quantize --precision int8`` graph writes every weight layer as
``QuantizeLinear -> DequantizeLinear`` on the activation (per-tensor scale from calibration),
``DequantizeLinear`` on an int8 per-output-channel weight, and a ``MatMul``/``Gemm``. That file is
what TensorRT builds from and what any ONNX runtime runs. On the CPU, ONNX Runtime can run its
weight layers two ways:

- ``qdq``: as written. ONNX Runtime fuses each pattern into ``QGemm`` /
  ``MatMulIntegerToFloat``: the activation is quantized with the calibrated static scale by a
  ``QuantizeLinear`` node of its own, then an int8 GEMM runs.
- ``matmulnbits``: each weight layer becomes ONNX Runtime's ``com.microsoft::MatMulNBits`` with
  ``bits=8`` and ``accuracy_level=4``, holding **the same int8 weights and per-channel scales**
  (stored as ``w + 128`` with the default zero point 128, the channel's scale repeated over the
  K blocks) and the bias as float. The kernel quantizes the activation itself, per row and block
  of ``block_size`` values along K with a scale taken at run time (symmetric), and multiplies in
  int8 (VNNI / AMX / ARM dot products). One node instead of three, a kernel tuned for the
  one-row products of token-by-token decoding, and a finer activation scale than the static
  per-tensor one: measured on the demo decoder step it is faster and closer to FP32 (see
  ``bench/RESULTS.md``). The calibrated activation scales are then unused on the CPU; TensorRT
  still reads them from the same file.

``auto`` (the backend's default) takes ``matmulnbits`` where this ONNX Runtime has the 8-bit
kernel and this CPU multiplies int8 without saturating (:mod:`nuwa.runtime.cpu_features`), else
``qdq``. :func:`matmul_nbits_reference` is the plain NumPy statement of what the rewritten layer
computes; the tests check ONNX Runtime against it.

The rewrite itself is :mod:`nuwa.export.matmul_nbits`; ``nuwa quantize`` writes its result as
the export's prepared ``cpu-matmulnbits`` forms, which the backend reads when it runs
``matmulnbits`` (an export without them is rewritten in memory; the files are never changed).
"""

from __future__ import annotations

import functools

import numpy as np

from nuwa.export.matmul_nbits import (
    matmul_nbits_model,
    matmul_nbits_reference,
    nbits_weights,
)
from nuwa.runtime.cpu_features import (
    INT8_KERNELS,
    SATURATION_FREE_WEIGHT_MAX,
    int8_products_saturate,
)
from nuwa.spec.errors import BackendUnavailableError
from nuwa.spec.manifest import Manifest

__all__ = [
    "INT8_KERNELS",
    "check_int8_kernels",
    "check_int8_weight_range",
    "matmul_nbits_available",
    "resolve_int8_kernels",
]

PROBE_TOLERANCE = 1e-5  # of an output's term scale; ONNX Runtime and the reference: ~1e-7


@functools.cache
def matmul_nbits_available() -> bool:
    """Whether this ONNX Runtime runs an 8-bit ``MatMulNBits`` on this CPU **and computes what
    :func:`matmul_nbits_reference` says**: tried once on a full-range random layer (K 256, one
    and three rows; MLAS picks its kernels per CPU, and some have had bugs). ONNX Runtime
    >= 1.22 has the kernel."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (32, 256)).astype(np.int8)
    layer = nbits_weights(w, np.full(32, 0.01, np.float32), rng.standard_normal(32), 256)
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(
            matmul_nbits_model(layer).SerializeToString(), so, ["CPUExecutionProvider"]
        )
        for rows in (1, 3):
            x = rng.standard_normal((rows, 256)).astype(np.float32)
            y = sess.run(None, {"x": x})[0]
            scale = float(np.abs(x).max() * np.abs(layer.dequantized()).max() * layer.k)
            if not np.abs(y - matmul_nbits_reference(x, layer)).max() <= PROBE_TOLERANCE * scale:
                return False
    except Exception:  # an ONNX Runtime without the kernel, whatever it raises
        return False
    return True


def check_int8_kernels(choice: str) -> None:
    """A clear error for a kernel choice that is not one of :data:`INT8_KERNELS`."""
    if choice not in INT8_KERNELS:
        raise ValueError(f"int8 kernels must be one of {', '.join(INT8_KERNELS)}, got {choice!r}")


def resolve_int8_kernels(choice: str) -> str:
    """``auto`` -> ``matmulnbits`` where it is available and int8 products do not saturate on
    this CPU, else ``qdq``; an explicit choice is checked and returned."""
    check_int8_kernels(choice)
    if choice == "qdq":
        return choice
    usable = not int8_products_saturate() and matmul_nbits_available()
    if choice == "matmulnbits" and not usable:
        raise ValueError(
            "int8_kernels='matmulnbits' needs ONNX Runtime >= 1.22 (8-bit MatMulNBits) on a CPU "
            "whose int8 products do not saturate (VNNI on x86); use 'qdq' here"
        )
    return "matmulnbits" if usable else "qdq"


def check_int8_weight_range(manifest: Manifest) -> None:
    """Refuse an export whose INT8 weights would saturate this CPU's int8 kernels (full-range
    weights on x86 without VNNI: wrong outputs); call it only where the kernels run."""
    weight_max = manifest.int8_weight_max
    if (
        weight_max is not None
        and weight_max > SATURATION_FREE_WEIGHT_MAX
        and int8_products_saturate()
    ):
        raise BackendUnavailableError(
            f"{manifest.directory}: INT8 weights in [-{weight_max}, {weight_max}] on "
            "an x86 CPU without VNNI, where ONNX Runtime's int8 kernels saturate and would "
            "give wrong outputs; quantize for this CPU with `nuwa quantize --weight-range "
            "reduced` (the default for portable exports), or skip the quality gates "
            "(--no-gates) when the export is meant for another machine"
        )
