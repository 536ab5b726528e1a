"""nuwa — optimized inference for NÜWA-style visual synthesis (arXiv 2111.12417).

Subpackages are the product's parts, on DESIGN §2's floors (a part imports only lower floors):
``nuwa.spec`` (torch-free definitions), ``nuwa.data`` (synthetic dataset and checker),
``nuwa.plugins`` (C++/CUDA 3DNA, TensorRT plugin), ``nuwa.model`` (PyTorch reference),
``nuwa.export`` (ONNX), ``nuwa.runtime`` (backends, decode engine, pipelines),
``nuwa.calibration`` (INT8/FP16), ``nuwa.quality`` (evaluation, precision gates),
``nuwa.training``, and ``nuwa.cli`` (the ``nuwa`` command). README's layout table lists them.

Importing ``nuwa`` imports nothing heavy: no torch, no onnxruntime.
"""

__version__ = "0.1.0"
