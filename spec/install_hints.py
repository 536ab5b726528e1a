"""What to install for each optional part, defined once: every "not installed" message names the
command from here.

The distribution is ``nuwa-edge`` (not on PyPI: from a clone of the repository); its extras add
PyTorch (``[torch]``), ONNX Runtime for GPUs (``[gpu]``) and TensorRT (``[trt]``). Plain strings,
imported by the runtime's backends, ``nuwa info``, the CLI and the plugin loader.
"""

from __future__ import annotations

DISTRIBUTION = "nuwa-edge"
ON_NVIDIA_GPU = "on a machine with an NVIDIA GPU (JetPack ships it on Jetson)"


def pip_install(extra: str | None = None) -> str:
    """``pip install "nuwa-edge"`` or, with ``extra``, ``pip install "nuwa-edge[extra]"``."""
    return f'pip install "{DISTRIBUTION}{f"[{extra}]" if extra else ""}"'


CORE = pip_install()  # ONNX Runtime on the CPU, no PyTorch
TORCH = pip_install("torch")  # the reference model, export, the torch backend
ONNXRUNTIME = f'{CORE} (onnxruntime), or "{DISTRIBUTION}[gpu]" for onnxruntime-gpu'
ONNXRUNTIME_GPU = f"{pip_install('gpu')} (onnxruntime-gpu) on a machine with an NVIDIA GPU"
TENSORRT = f"{pip_install('trt')} (the tensorrt wheel) {ON_NVIDIA_GPU}"
CUDA_PYTHON = "pip install cuda-python (CUDA runtime API)"
SERVE = f"{pip_install('serve')} (nvidia-pytriton: Triton Inference Server; tritonclient)"
# the native plugin library: the install builds it; by hand from the repository root
EDITABLE_INSTALL = "pip install -e ."


def plugin_build(*options: str) -> str:
    """``cmake -S . -B build [options] && cmake --build build``: the plugin library by hand."""
    return " ".join(["cmake -S . -B build", *options]) + " && cmake --build build"


PLUGIN_BUILD = plugin_build()
# the TensorRT plugin needs TensorRT's headers at configure time: its folder (include/ inside)
TENSORRT_HEADERS = "-DTensorRT_ROOT=<TensorRT>"
PLUGIN_BUILD_TENSORRT = plugin_build(TENSORRT_HEADERS)

# per backend name, what its "not installed" message says to run
BACKEND_HINTS: dict[str, str] = {
    "onnxruntime": ONNXRUNTIME,
    "torch": TORCH,
    "tensorrt": TENSORRT,
}


def for_module(module: str) -> str:
    """The install command for a missing Python module (``torch``, ``onnxruntime``, ...)."""
    return {
        "torch": TORCH,
        "onnxruntime": ONNXRUNTIME,
        "tensorrt": TENSORRT,
        "cuda": CUDA_PYTHON,
        "pytriton": SERVE,
        "tritonclient": SERVE,
    }.get(module, f"install {module}")
