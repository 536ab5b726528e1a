"""The PyTorch reference behind the evaluation's generator seam: a
:class:`~nuwa.quality.generation.PixelGenerator` that runs the model's own conditions, the small
reference decode loop (``nuwa.model.generate``) with its torch sampler, and its VQ-GAN — what the
evaluation generated with before every backend went through the runtime. The tests compare the
runtime's backends against it."""

from __future__ import annotations

import numpy as np
import torch

from nuwa.model.generate import generate_tokens
from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import EncodedCondition
from nuwa.quality.generation import Request
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.model_spec import ModelSpec


class TorchReference:
    def __init__(self, model: NuwaModel) -> None:
        self.model = model.eval()
        self.spec = ModelSpec.from_dict(model.config.to_dict())

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        return self.model.frames_to_codes(frames).cpu().numpy()

    def conditions(
        self, request: Request, guided: bool
    ) -> tuple[EncodedCondition, EncodedCondition | None]:
        if request.sketch is not None:
            cond = self.model.sketch_condition(request.sketch)
            b, t = request.sketch.shape[:2]
            return cond, (self.model.blank_sketch_condition(b, t) if guided else None)
        assert request.prompts is not None
        cond = self.model.text_condition(request.prompts, allow_empty=True)
        blank = [""] * len(request.prompts)
        return cond, (self.model.text_condition(blank, allow_empty=True) if guided else None)

    @torch.no_grad()
    def generate(self, request: Request, options: SamplingOptions) -> np.ndarray:
        cond, uncond = self.conditions(request, options.uses_guidance)
        device = self.model.device
        known = mask = None
        if request.known is not None and request.known_mask is not None:
            known = torch.from_numpy(np.asarray(request.known, dtype=np.int64)).to(device)
            mask = torch.from_numpy(np.asarray(request.known_mask, dtype=bool)).to(device)
        tokens = generate_tokens(
            self.model.transformer,
            cond,
            request.frames,
            options,
            uncond=uncond,
            known=known,
            known_mask=mask,
            progress=False,
        )
        return self.model.codes_to_frames(tokens).cpu().numpy()
