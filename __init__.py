"""nuwa — optimized inference for NÜWA-style visual synthesis (arXiv 2111.12417).

Subpackages follow the data flow (see README / DESIGN §2):

- ``nuwa.model``: PyTorch reference model (VQ-GAN, text tokenizer, 3D transformer with 3DNA).
- ``nuwa.export``: ONNX export.
- ``nuwa.plugins``: C++/CUDA 3DNA kernels and the TensorRT plugin (ctypes loader).
- ``nuwa.calibration``: FP16 / INT8 conversion and quality gates.
- ``nuwa.runtime``: backends, KV-cache decoding, task pipelines, CLI.

Importing ``nuwa`` imports nothing heavy: no torch, no onnxruntime.
"""

__version__ = "0.1.0"
