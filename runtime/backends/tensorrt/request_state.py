"""One request's decoder on TensorRT: the step engine, its I/O names and the request's device
buffers, resolved once (the ONNX Runtime backend's :mod:`..onnxruntime.request_state`, mirrored).

The condition's cross-attention K/V and the ring KV cache stay in device buffers for the whole
request. Each step reads the cache from one set of buffers and writes ``present.*`` into the
other; the two swap roles every step (ping-pong, :class:`nuwa.runtime.kv_cache.RingCache`), so
the cache never crosses PCIe. Only token ids / positions go up and logits come down per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nuwa.runtime.backends.base import RequestState
from nuwa.runtime.backends.tensorrt.device_memory import DeviceArray
from nuwa.runtime.backends.tensorrt.engine_runner import EngineRunner
from nuwa.runtime.kv_cache import RingCache
from nuwa.spec.manifest import DecoderInfo


class TensorRTRequestState(RequestState):
    """The request's ``decoder_step`` engine with its cross K/V and ring cache bound by name."""

    def __init__(
        self,
        engine: EngineRunner,
        decoder: DecoderInfo,
        cache: RingCache,
        cross: list[DeviceArray],
        stream: Any,
    ) -> None:
        self.engine, self.decoder, self.cache, self.stream = engine, decoder, cache, stream
        self.past_names = decoder.past_names()
        self.present_names = decoder.present_names()
        self.cross = dict(zip(decoder.cross_names(), cross, strict=True))

    def step(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        d = self.decoder
        feeds: dict[str, np.ndarray | DeviceArray] = {
            d.input_ids: np.asarray(tokens, dtype=np.int64),
            d.positions: np.asarray(positions, dtype=np.int64),
        }
        feeds.update(zip(self.past_names, self.cache.past, strict=True))
        feeds.update(self.cross)
        out = self.engine.run(feeds, dict(zip(self.present_names, self.cache.present, strict=True)))
        logits = out[d.logits].download(self.stream)
        self.cache.advance([out[n] for n in self.present_names])
        return logits.astype(np.float32)
