"""The diffusers-like Python API (DESIGN §9): load a model once, call a task, get pixels.

    from nuwa.runtime import Pipeline

    pipe = Pipeline.from_pretrained("model/checkpoints/demo")      # ONNX Runtime on the CPU
    result = pipe.text_to_video("a red square moves left", seed=0)
    result.save("out.gif")                                        # also .mp4, .png (sheet)

Every task is one method (and :meth:`Pipeline.__call__` with ``task=``); each returns a
:class:`GenerationResult` holding the frames ``uint8 (B, T, S, S, 3)`` and the token grids.
``callback`` is called after every decoded position with a :class:`StepEvent`; with
``stream_frames=True`` the event also carries the pixels of a frame the moment its last token is
sampled, so a UI can show the video as it is made. The progress bar can be turned off per call
or for the pipeline.

A pipeline may be called from several threads at once (a server's request threads): calls in
flight share decoder steps — continuous batching, :mod:`nuwa.runtime.decode_scheduler` — each
with its own random stream, so a call's result does not depend on what else runs. A call's
``callback`` runs in the calling thread; one that raises ends that call alone (a timeout, a
client gone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.runtime.backends import DEFAULT_BACKEND, Backend, load_backend
from nuwa.runtime.decode_scheduler import DecodeScheduler
from nuwa.runtime.engine import start_walk
from nuwa.runtime.frame_decoding import FrameDecoder
from nuwa.runtime.freed_memory import FREED_MEMORY
from nuwa.runtime.generation_result import GenerationResult, StepCallback, StepEvent
from nuwa.runtime.input_reading import ImageInput, MaskInput, read_inputs
from nuwa.runtime.model_directory import ModelDirectory, builtin_input_rules, default_model_dir
from nuwa.runtime.request_checks import check_flag, check_int, check_real, task_info
from nuwa.runtime.request_sampling import resolve_sampling
from nuwa.runtime.task_request import TaskRequest, check_task_request
from nuwa.runtime.tasks import TaskPlan, encode_request
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.input_rules import InputRules
from nuwa.spec.sampling import SamplingOptions

__all__ = [  # with the names `nuwa.runtime.pipeline` has always offered, from their homes
    "GenerationResult",
    "ImageInput",
    "MaskInput",
    "Pipeline",
    "PreparedRequest",
    "StepCallback",
    "StepEvent",
    "check_flag",
    "check_real",
    "default_model_dir",
    "resolve_sampling",
]


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request (:meth:`Pipeline.prepare`): its layout and sampling options."""

    plan: TaskPlan
    options: SamplingOptions


class Pipeline:
    """All eight tasks over one backend. Build with :meth:`from_pretrained`."""

    def __init__(
        self,
        backend: Backend,
        progress: bool = True,
        generation_config: GenerationConfig | None = None,
        input_rules: InputRules | None = None,
    ) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.progress = progress
        # per-task sampling defaults (the model directory's generation_config.json)
        self.generation_config = generation_config or GenerationConfig()
        # how inputs are read and the words the model knows (the directory's input_rules.json)
        self.input_rules = input_rules or builtin_input_rules(self.spec)
        # concurrent calls share decoder steps (continuous batching)
        self.scheduler = DecodeScheduler(backend)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | ModelDirectory | None = None,
        backend: str = DEFAULT_BACKEND,
        precision: str | None = None,
        device: str | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> Pipeline:
        """Load a model directory (a checkpoint, or an export from ``nuwa export`` /
        ``nuwa quantize``) on ``backend``. ``model_dir=None`` is the shipped demo checkpoint.
        ``precision=None`` runs the directory's default (an export: its precision; a checkpoint
        on onnxruntime's CPU: its ``runtime_defaults.json``, int8 for the demo; else fp32). Sampling
        defaults come from the directory's ``generation_config.json``, the input rules (sketch
        palette and snapping, sizes, mask convention, the words it knows) from its
        ``input_rules.json`` (:mod:`nuwa.spec.input_rules`); a :class:`ModelDirectory` already
        read is not read again."""
        if model_dir is not None and not isinstance(model_dir, (str, Path, ModelDirectory)):
            raise NuwaInputError(
                f"model_dir must be a str or Path (or None), got {type(model_dir).__name__}"
            )
        for name, value in (("backend", backend), ("precision", precision), ("device", device)):
            if not isinstance(value, str) and not (value is None and name != "backend"):
                raise NuwaInputError(f"{name} must be a str, got {type(value).__name__}")
        check_flag(progress, "progress")
        if log is not None and not callable(log):
            raise NuwaInputError(f"log must be callable, got {type(log).__name__}")
        directory = (
            model_dir
            if isinstance(model_dir, ModelDirectory)
            else ModelDirectory.read(model_dir if model_dir is not None else default_model_dir())
        )
        return cls(
            load_backend(backend, directory.path, precision, device, log=log, progress=progress),
            progress,
            directory.generation_config,
            directory.input_rules,
        )

    def describe(self) -> str:
        return f"{self.spec.name} on {self.backend.describe()}"

    # ---- the one entry point ---------------------------------------------------------------

    def __call__(
        self,
        task: str,
        prompt: str | list[str] | None = None,
        *,
        sketch: ImageInput | None = None,
        image: ImageInput | None = None,
        mask: MaskInput | None = None,
        video: ImageInput | None = None,
        num_frames: int | None = None,
        batch: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float | None = None,
        callback: StepCallback | None = None,
        callback_steps: int = 1,
        stream_frames: bool = False,
        progress: bool | None = None,
    ) -> GenerationResult:
        """Run ``task`` (one of t2i s2i i2i ti2i t2v s2v v2v tv2v).

        ``sketch``: palette-coloured RGB or class ids, one frame or a clip (array or PNG/GIF);
        ``image`` / ``video``: RGB arrays or PNG/GIF/MP4 files; ``mask``: the region to
        generate, as a bool array, a rectangle ``(x0, y0, x1, y1)``, ``"x0,y0,x1,y1"`` or a mask
        PNG (white = generate). ``batch``: samples per prompt. Sizes: an image, video, mask
        or sketch whose size is not the model's is resized to it with a one-line
        :class:`~nuwa.spec.errors.NuwaInputWarning` (a rectangle is in the input's own
        pixels; one reaching outside the frame is clipped with a warning).

        Sampling: ``temperature`` (0 is greedy), ``top_k`` (0 turns it off), ``top_p`` (1.0
        turns it off) and ``guidance_scale`` (1.0 turns classifier-free guidance off); each one
        left ``None`` takes the model's default for ``task`` (:meth:`sampling_defaults`).

        ``callback`` runs in the calling thread after every ``callback_steps``-th position and
        after every finished frame; ``callback_steps=pipe.spec.tokens_per_frame`` gives one
        event per finished frame, which spares the decode loop an event per token. One that
        raises ends this call alone.

        Every argument is checked (types, values, files, the memory limit) before anything is
        generated: a bad one raises :class:`NuwaInputError` naming it. ``__call__`` is
        :meth:`prepare` then :meth:`run`.
        """
        if callback is not None and not callable(callback):
            raise NuwaInputError(f"callback must be callable, got {type(callback).__name__}")
        check_int(callback_steps, "callback_steps", 1)
        check_flag(stream_frames, "stream_frames")
        if progress is not None:
            check_flag(progress, "progress")
        request = self.prepare(
            task,
            prompt,
            sketch=sketch,
            image=image,
            mask=mask,
            video=video,
            num_frames=num_frames,
            batch=batch,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance_scale=guidance_scale,
        )
        return self.run(
            request,
            callback=callback,
            callback_steps=callback_steps,
            stream_frames=stream_frames,
            progress=progress,
        )

    def prepare(
        self,
        task: str,
        prompt: str | list[str] | None = None,
        *,
        sketch: ImageInput | None = None,
        image: ImageInput | None = None,
        mask: MaskInput | None = None,
        video: ImageInput | None = None,
        num_frames: int | None = None,
        batch: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float | None = None,
    ) -> PreparedRequest:
        """Check a request and lay it out (inputs read, conditions encoded), generating
        nothing: the arguments of :meth:`__call__`."""
        self.backend.use_in_thread()  # a request thread of a server, say
        info = task_info(task)
        options = resolve_sampling(
            self.generation_config, info.name, temperature, top_k, top_p, guidance_scale, seed
        )
        request = check_task_request(
            self.spec,
            self.input_rules,
            info.name,
            prompt=prompt,
            **read_inputs(sketch, image, mask, video, self.input_rules.mask_threshold),  # type: ignore[arg-type]
            num_frames=num_frames,
            batch=batch,
            guidance=options.uses_guidance,
        )
        return self.encode(request, options)

    def encode(self, request: TaskRequest, options: SamplingOptions) -> PreparedRequest:
        """A request checked already (``nuwa generate`` checks it before the model loads) with
        its resolved options -> :meth:`run`'s input: the conditions encoded on the backend."""
        return PreparedRequest(encode_request(self.backend, request), options)

    def run(
        self,
        request: PreparedRequest,
        *,
        callback: StepCallback | None = None,
        callback_steps: int = 1,
        stream_frames: bool = False,
        progress: bool | None = None,
    ) -> GenerationResult:
        """Generate a :meth:`prepare`-d request (``callback*``, ``stream_frames``, ``progress``:
        as :meth:`__call__`)."""
        self.backend.use_in_thread()
        plan, options = request.plan, request.options
        # frames decoded as they finish, in this thread, while decoding goes on
        decoder = FrameDecoder(self.backend, plan.num_frames)
        on_step = self._step_observer(
            decoder, callback, callback_steps, plan.num_frames, stream_frames
        )
        walk = start_walk(
            self.backend,
            plan.cond,
            plan.num_frames,
            options,
            uncond=plan.uncond,
            known=plan.known,
            known_mask=plan.known_mask,
            callback=on_step,
            progress=self.progress if progress is None else progress,
        )
        # the loop's events: the caller's callback_steps, or only frame ends (to decode them)
        every = math.gcd(callback_steps, self.spec.tokens_per_frame) if callback else 0
        try:
            tokens = self.scheduler.run(walk, on_step, every or self.spec.tokens_per_frame)
            frames = decoder.frames(tokens)
        finally:
            FREED_MEMORY.generation_ended()  # what this call's thread freed goes back soon
        return GenerationResult(plan.task, frames, tokens, plan.prompts, options)

    def sampling_defaults(self, task: str) -> dict[str, Any]:
        """The sampling options ``task`` runs with when the caller passes none: the model's
        ``generation_config.json``, then the built-in defaults."""
        return self.generation_config.for_task(task_info(task).name)

    def _step_observer(
        self,
        decoder: FrameDecoder,
        callback: StepCallback | None,
        callback_steps: int,
        num_frames: int,
        stream_frames: bool,
    ) -> Callable[[int, np.ndarray], None]:
        """The decode loop's observer of one call: finished frames to ``decoder``; the caller's
        ``callback`` (if any) gets a :class:`StepEvent` every ``callback_steps`` positions and
        at every frame end, with the finished frame's pixels when ``stream_frames``."""
        per_frame = self.spec.tokens_per_frame
        total = num_frames * per_frame

        def on_step(position: int, tokens: np.ndarray) -> None:
            done = position + 1
            if done % per_frame:  # mid-frame
                if callback is not None and done % callback_steps == 0:
                    callback(StepEvent(position, total, tokens))
                return
            decoder.update(tokens)
            if callback is None:
                return
            frame = done // per_frame - 1  # (after a prefill: the last given frame)
            if not stream_frames:
                callback(StepEvent(position, total, tokens, frame))
                return
            finished = tuple(decoder.pixels[: frame + 1])
            callback(StepEvent(position, total, tokens, frame, finished[frame], finished))

        return on_step

    # ---- one method per task ---------------------------------------------------------------

    def text_to_image(self, prompt: str | list[str], **kw: Any) -> GenerationResult:
        return self("t2i", prompt, **kw)

    def sketch_to_image(self, sketch: ImageInput, **kw: Any) -> GenerationResult:
        return self("s2i", sketch=sketch, **kw)

    def complete_image(self, image: ImageInput, mask: MaskInput, **kw: Any) -> GenerationResult:
        return self("i2i", image=image, mask=mask, **kw)

    def edit_image(
        self, prompt: str, image: ImageInput, mask: MaskInput, **kw: Any
    ) -> GenerationResult:
        return self("ti2i", prompt, image=image, mask=mask, **kw)

    def text_to_video(self, prompt: str | list[str], **kw: Any) -> GenerationResult:
        return self("t2v", prompt, **kw)

    def sketch_to_video(self, sketch: ImageInput, **kw: Any) -> GenerationResult:
        return self("s2v", sketch=sketch, **kw)

    def predict_video(self, video: ImageInput, **kw: Any) -> GenerationResult:
        return self("v2v", video=video, **kw)

    def edit_video(
        self, prompt: str, video: ImageInput, mask: MaskInput, **kw: Any
    ) -> GenerationResult:
        return self("tv2v", prompt, video=video, mask=mask, **kw)
