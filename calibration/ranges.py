"""Activation ranges for INT8 calibration: expose the tensors that will get Q/DQ as extra graph
outputs, run the float graph on real inputs, and keep the running max |x| per tensor.

:class:`RangeObserver` is fed by the calibration capture (``nuwa.calibration.capture``), which
runs the augmented graphs along real generations, so nothing has to be stored between steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper


def with_extra_outputs(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``tensors`` (float32, shape left open)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for name in tensors:
        if name not in have:
            info = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            out.graph.output.append(info)
            have.add(name)
    return out


class RangeObserver:
    """Running max |x| per tensor, over every batch it is shown."""

    def __init__(self) -> None:
        self.amax: dict[str, float] = {}
        self.batches: dict[str, int] = {}

    def observe(self, name: str, value: np.ndarray) -> None:
        if value.size == 0:
            return
        m = float(np.max(np.abs(value)))
        if not np.isfinite(m):
            raise ValueError(f"calibration tensor {name!r} holds inf/NaN")
        self.amax[name] = max(self.amax.get(name, 0.0), m)
        self.batches[name] = self.batches.get(name, 0) + 1

    def observe_all(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            self.observe(name, value)
