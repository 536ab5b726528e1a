"""One deserialized TensorRT engine and its execution context (:class:`EngineRunner`): inputs
from the host or the device, outputs into given device buffers, and a clear error for an input
shape outside the engine's optimization profile (TensorRT 10.x API: ``deserialize_cuda_engine``,
``create_execution_context``, ``set_input_shape``, ``get_tensor_profile_shape``,
``set_tensor_address``, ``execute_async_v3``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.runtime.backends.tensorrt.device_memory import DeviceArray, numpy_dtype, ok
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError


class EngineRunner:
    """One deserialized engine and its execution context."""

    def __init__(self, trt: Any, runtime: Any, path: Path, cudart: Any, stream: Any) -> None:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailableError(f"TensorRT could not deserialize {path}")
        self.trt, self.engine, self.cudart, self.stream = trt, engine, cudart, stream
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.name = path.name
        self._lock = threading.Lock()  # one execution context: one run at a time

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        """``set_input_shape``, whose ``False`` (a shape outside the optimization profile) becomes
        a clear error naming the profile's range instead of a later "execute_async_v3 failed"."""
        if self.context.set_input_shape(name, shape):
            return
        try:
            low, _, high = (
                tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0)
            )
            allowed = f"the engine's profile allows {low} .. {high}"
        except Exception:  # noqa: BLE001 - the range is only for the message
            allowed = "it is outside the engine's optimization profile"
        raise NuwaInputError(
            f"{self.name}: input {name!r} has shape {tuple(shape)}; {allowed} (the batch rows: "
            "rebuild with a larger `nuwa build-engine --max-batch`, or ask for fewer prompts)"
        )

    def run(
        self,
        inputs: dict[str, np.ndarray | DeviceArray],
        outputs: dict[str, DeviceArray] | None = None,
    ) -> dict[str, DeviceArray]:
        """Run with host or device inputs; outputs go to the given device buffers or to new ones
        sized from the input shapes. Runs of one engine from several threads take turns (they
        share its execution context)."""
        with self._lock:
            return self._run(inputs, outputs)

    def _run(
        self,
        inputs: dict[str, np.ndarray | DeviceArray],
        outputs: dict[str, DeviceArray] | None,
    ) -> dict[str, DeviceArray]:
        keep: list[DeviceArray] = []
        for name in self.inputs:
            value = inputs[name]
            if isinstance(value, np.ndarray):
                dev = DeviceArray(self.cudart, value.shape, self.dtypes[name])
                value = dev.upload(value, self.stream)
                keep.append(dev)
            elif value.dtype != self.dtypes[name]:
                raise ValueError(
                    f"{self.name}: device buffer for {name!r} is {value.dtype}, the engine "
                    f"takes {self.dtypes[name]}"
                )
            self._set_input_shape(name, value.shape)
            self.context.set_tensor_address(name, value.ptr)
        result: dict[str, DeviceArray] = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            given = (outputs or {}).get(name)
            if given is None or given.shape != shape:
                given = DeviceArray(self.cudart, shape, self.dtypes[name])
            self.context.set_tensor_address(name, given.ptr)
            result[name] = given
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        ok(self.cudart.cudaStreamSynchronize(self.stream))
        for dev in keep:
            dev.free()
        return result
