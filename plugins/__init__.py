"""nuwa.plugins — the C++/CUDA 3DNA kernels and TensorRT plugin (``libnuwa_plugins.so``).

The install (``pip install .`` / ``pip install -e .``) builds the library into this package where
a C++ compiler exists. Importing this package loads nothing; see :mod:`nuwa.plugins.library` for
where the library is looked for and how to rebuild it by hand
(``cmake -S . -B build && cmake --build build``).
"""

from nuwa.plugins.library import (
    BUILD_COMMAND,
    ENV_VAR,
    PluginCallError,
    PluginLibraryError,
    attribute_fields,
    build_info,
    cuda_compiled,
    cuda_device_count,
    cuda_supports,
    library_path,
    load_library,
    make_params,
    nearby_attention_cpu,
    nearby_attention_cuda_ptr,
    nearby_attention_decode_cpu,
    nearby_attention_torch,
    require_cuda,
    tensorrt_compiled,
)

__all__ = [
    "BUILD_COMMAND",
    "ENV_VAR",
    "PluginCallError",
    "PluginLibraryError",
    "attribute_fields",
    "build_info",
    "cuda_compiled",
    "cuda_device_count",
    "cuda_supports",
    "library_path",
    "load_library",
    "make_params",
    "nearby_attention_cpu",
    "nearby_attention_cuda_ptr",
    "nearby_attention_decode_cpu",
    "nearby_attention_torch",
    "require_cuda",
    "tensorrt_compiled",
]
