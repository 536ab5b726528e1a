"""What this CPU can do that decides how the CPU backends run (no ONNX Runtime or torch needed:
``nuwa info`` reports it too)."""

from __future__ import annotations

import platform
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# How ONNX Runtime runs an INT8 export's weight layers on the CPU
# (backends.onnxruntime.int8_cpu_kernels)
INT8_KERNELS = ("auto", "matmulnbits", "qdq")
# 7-bit int8 weights: u8 x s8 pair sums stay inside int16, so nothing saturates without VNNI
SATURATION_FREE_WEIGHT_MAX = 63


def int8_products_saturate(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ONNX Runtime's CPU int8 kernels can saturate here: x86-64 without VNNI multiplies
    u8 x s8 pairs with ``vpmaddubsw``, whose int16 sums overflow for full-range int8 weights
    (ONNX Runtime's quantization docs: use reduced-range weights there). Other architectures,
    and x86 CPUs whose flags cannot be read (not Linux), are taken not to."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return not flags.intersection(VNNI_FLAGS)
    return False
