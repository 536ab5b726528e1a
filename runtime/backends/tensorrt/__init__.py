"""The TensorRT backend (:mod:`.backend`), how its engines are built on the device
(:mod:`.engine_build`, ``nuwa build-engine``) and the record that keys their cache
(:mod:`.engines_json`). Importing this package does not import TensorRT."""
