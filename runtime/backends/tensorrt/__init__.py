"""The TensorRT backend (:mod:`.backend`), how its engines are built on the device
(:mod:`.engine_build`, ``nuwa build-engine``), the record that keys their cache
(:mod:`.engines_json`) and the cache itself, filled on first use (:mod:`.engine_cache`).
Importing this package does not import TensorRT."""
