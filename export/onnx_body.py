"""Building the node list of an ONNX function body: :class:`BodyBuilder` gives every node a
unique output name and turns NumPy values into ``Constant`` nodes (int64 / float32)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnx import NodeProto, helper, numpy_helper


class BodyBuilder:
    """Accumulates the body's nodes with unique output names."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self._n = 0

    def op(self, op_type: str, inputs: Sequence[str], **attrs: object) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value: np.ndarray | int | float | Sequence[int]) -> str:
        arr = np.asarray(value)
        if arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        self._n += 1
        out = f"const_{self._n}"
        self.nodes.append(
            helper.make_node("Constant", [], [out], value=numpy_helper.from_array(arr, out))
        )
        return out


def arange(b: BodyBuilder, n: int) -> str:
    """``0 .. n-1`` (int64) as a ``Range`` of constants."""
    return b.op("Range", [b.const(0), b.const(n), b.const(1)])
