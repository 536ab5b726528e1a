"""One external-data file for the weights of every graph of an export.

The condition encoders (one per sketch frame count) share the encoder's weights, and every
``decoder_step`` graph shares the decoder's. Saved inline, each graph would carry its own copy
(the demo model: ~16 MB per decoder step). :class:`SharedWeights` stores each distinct
initializer once in ``weights.bin`` and points the graphs' initializers at it with ONNX
external data (``location``/``offset``/``length``), which ONNX Runtime, Polygraphy, the ONNX
checker (given the file path) and TensorRT's parser resolve next to the ``.onnx`` file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx import TensorProto

WEIGHTS_FILE = "weights.bin"
MIN_EXTERNAL_BYTES = 1024  # smaller tensors stay inline
ALIGNMENT = 64  # byte alignment of each tensor in the file


class SharedWeights:
    """Append-only, content-deduplicated store of initializers in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: dict[str, tuple[int, int]] = {}  # sha256 of bytes -> (offset, length)
        self._size = 0
        path.write_bytes(b"")

    @property
    def tensors(self) -> int:
        return len(self._offsets)

    @property
    def nbytes(self) -> int:
        return self._size

    def _store(self, data: bytes) -> tuple[int, int]:
        key = hashlib.sha256(data).hexdigest()
        if key not in self._offsets:
            pad = (-self._size) % ALIGNMENT
            with open(self.path, "ab") as f:
                f.write(b"\0" * pad + data)
            self._offsets[key] = (self._size + pad, len(data))
            self._size += pad + len(data)
        return self._offsets[key]

    def externalize(self, model: onnx.ModelProto) -> int:
        """Move ``model``'s large initializers into the file (in place). Returns how many."""
        moved = 0
        for tensor in model.graph.initializer:
            if tensor.data_location == TensorProto.EXTERNAL:
                continue
            data = onnx.numpy_helper.to_array(tensor).tobytes()
            if len(data) < MIN_EXTERNAL_BYTES:
                continue
            offset, length = self._store(data)
            raw = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor), tensor.name)
            tensor.CopyFrom(raw)  # raw_data layout, then drop the bytes
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            del tensor.external_data[:]
            for key, value in (
                ("location", self.path.name),
                ("offset", str(offset)),
                ("length", str(length)),
            ):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            moved += 1
        return moved
