"""The PyTorch reference backend: :class:`~nuwa.model.nuwa.NuwaModel` behind the backend
interface. Imported only when asked for (``backend="torch"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nuwa.runtime.backends.base import Backend, Condition, RequestState
from nuwa.spec.errors import BackendUnavailableError
from nuwa.spec.install_hints import TORCH
from nuwa.spec.model_spec import ModelSpec

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised where torch is absent
    raise BackendUnavailableError(f"the torch backend needs PyTorch: {TORCH}") from exc

from nuwa.model.nuwa import NuwaModel

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        precision: str = "fp32",
        device: str | None = None,
        model: NuwaModel | None = None,
    ) -> None:
        if precision not in TORCH_DTYPES:
            raise BackendUnavailableError(
                f"the torch backend runs precision fp32, fp16 or bf16, not {precision!r}"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("device cuda asked for, but torch sees no CUDA GPU")
        if model is None:
            if model_dir is None:
                raise ValueError("give model_dir or model")
            model = NuwaModel.from_pretrained(model_dir)
        self.model = model.eval().to(device)
        self.dtype = TORCH_DTYPES[precision]
        if precision != "fp32":
            self.model.transformer.to(self.dtype)
        self.precision = precision
        self.device = torch.device(device)
        self.spec = ModelSpec.from_dict(model.config.to_dict())

    # ---- conditions ------------------------------------------------------------------------

    def _condition(self, cond: Any, kind: str) -> Condition:
        cross = self.model.transformer.cross_kv(cond)
        return Condition(cross, tuple(cond.grid), kind, int(cond.memory.shape[0]))

    @torch.no_grad()
    def text_condition(self, text_ids: np.ndarray) -> Condition:
        ids = torch.from_numpy(np.ascontiguousarray(text_ids, dtype=np.int64)).to(self.device)
        return self._condition(self.model.transformer.encode_text(ids), "text")

    @torch.no_grad()
    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        codes = self.model.sketch_to_codes(np.asarray(sketch, dtype=np.int64))
        return self._condition(self.model.transformer.encode_sketch(codes), "sketch")

    def stack_rows(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.cat([first, second])

    # ---- decoder ---------------------------------------------------------------------------

    def start_request(self, cond: Condition, num_frames: int) -> TorchRequestState:
        return TorchRequestState(self, cond, num_frames)

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        return self.model.frames_to_codes(np.asarray(frames, dtype=np.uint8)).cpu().numpy()

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        codes_t = torch.from_numpy(np.asarray(codes, dtype=np.int64))
        return self.model.codes_to_frames(codes_t).cpu().numpy()

    def describe(self) -> str:
        return f"torch ({self.precision}, {self.device})"


class TorchRequestState(RequestState):
    """A request's decoder on the torch backend: the condition's 3DNA extents resolved once,
    the model's ring caches (no prefill graph: the engine steps through a prefix)."""

    def __init__(self, backend: TorchBackend, cond: Condition, num_frames: int) -> None:
        self.backend, self.cond, self.num_frames = backend, cond, num_frames
        t = backend.model.transformer
        self.extents = t.cfg.text_extents if cond.kind == "text" else t.cfg.sketch_cross_extents
        self.cache = t.empty_cache(cond.batch, backend.device).layers

    @torch.no_grad()
    def step(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        device = self.backend.device
        logits, self.cache = self.backend.model.transformer.decode_step(
            torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(device),
            torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(device),
            self.cache,
            self.cond.cross,
            self.cond.grid,
            self.extents,
            self.num_frames,
        )
        return logits.float().cpu().numpy()
