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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.runtime.backends import DEFAULT_BACKEND, Backend, load_backend
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.media import (
    DEFAULT_FPS,
    check_fps,
    check_input_directory,
    contact_sheet,
    read_frames,
    read_image,
    read_mask,
    write_image,
    write_video,
)
from nuwa.runtime.sampler import SamplingOptions
from nuwa.runtime.tasks import (
    TASKS,
    Rect,
    TaskPlan,
    builtin_input_rules,
    check_int,
    load_input_rules,
    parse_rect,
    plan_task,
    task_info,
)
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import (
    UNGUIDED_TASKS,
    GenerationConfig,
    GenerationConfigError,
)
from nuwa.spec.input_rules import InputRules
from nuwa.spec.model_spec import CONFIG_FILE, ModelSpec

ImageInput = np.ndarray | str | Path
MaskInput = np.ndarray | Rect | str | Path


@dataclass
class StepEvent:
    """What a step callback sees after each decoded position."""

    position: int  # last raster position done (0-based)
    total: int  # positions in the whole request
    tokens: np.ndarray  # (B, position+1) int64: every token so far
    frame: int | None = None  # index of the frame this step finished, if it finished one
    frame_pixels: np.ndarray | None = None  # (B, S, S, 3) uint8 of that frame (stream_frames)

    @property
    def fraction(self) -> float:
        return (self.position + 1) / self.total


StepCallback = Callable[[StepEvent], None]


@dataclass
class GenerationResult:
    """Frames and tokens of one call. Batch rows are prompts x ``batch`` (prompt-major)."""

    task: str
    frames: np.ndarray  # (B, T, S, S, 3) uint8
    tokens: np.ndarray  # (B, T, h, w) int64
    prompts: list[str] = field(default_factory=list)
    options: SamplingOptions | None = None

    @property
    def video(self) -> bool:
        return bool(TASKS[self.task].video)

    @property
    def images(self) -> list[np.ndarray]:
        """First frame of every row, ``(S, S, 3)`` each (the result of an image task)."""
        return [row[0] for row in self.frames]

    @property
    def videos(self) -> list[np.ndarray]:
        return list(self.frames)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def contact_sheet(self, index: int = 0) -> np.ndarray:
        return contact_sheet(self.frames[index])

    def save(self, path: str | Path, index: int = 0, fps: float = DEFAULT_FPS) -> Path:
        """Save row ``index``: an image task as PNG; a video as GIF, MP4 or (``.png``) a contact
        sheet of its frames."""
        if not isinstance(path, (str, Path)):
            raise NuwaInputError(f"path must be a str or Path, got {type(path).__name__}")
        path = Path(path)
        index = check_int(index, "index", -len(self))  # type: ignore[assignment]
        if index >= len(self):
            raise NuwaInputError(f"index {index} is past the result's {len(self)} row(s)")
        fps = check_fps(fps)
        if self.video or path.suffix.lower() in (".gif", ".mp4"):
            return write_video(path, self.frames[index], fps)
        if path.suffix.lower() != ".png":
            raise NuwaInputError(f"cannot write {path}: an image is saved as .png")
        return write_image(path, self.frames[index, 0])

    def save_all(
        self, path: str | Path, fps: float = DEFAULT_FPS, sheet: bool | None = None
    ) -> list[Path]:
        """Save every row: ``out.gif`` for one row, ``out-0.gif``, ``out-1.gif`` ... for more.
        ``sheet`` (default: on for video saved as GIF/MP4) also writes ``<stem>.sheet.png``."""
        path = Path(path)
        names = (
            [path]
            if len(self) == 1
            else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(len(self))]
        )
        written = []
        for i, name in enumerate(names):
            written.append(self.save(name, i, fps))
            if sheet if sheet is not None else (self.video and name.suffix.lower() != ".png"):
                written.append(write_image(name.with_suffix(".sheet.png"), self.contact_sheet(i)))
        return written


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request (:meth:`Pipeline.prepare`): its layout and sampling options."""

    plan: TaskPlan
    options: SamplingOptions


def _as_pixels(x: ImageInput | None, what: str, video: bool) -> np.ndarray | None:
    if x is None or isinstance(x, np.ndarray):
        return x
    if not isinstance(x, (str, Path)):
        raise NuwaInputError(
            f"{what} must be a NumPy array or a file path (str or Path), got {type(x).__name__}"
        )
    return read_frames(x, what) if video else read_image(x, what)


def _as_mask(mask: MaskInput | None, threshold: int = 127) -> np.ndarray | Rect | None:
    if mask is None or isinstance(mask, (np.ndarray, tuple)):
        return mask
    if not isinstance(mask, (str, Path)):
        raise NuwaInputError(
            "mask must be a bool array, a rectangle (x0, y0, x1, y1), 'x0,y0,x1,y1' or a mask "
            f"picture's path, got {type(mask).__name__}"
        )
    path = Path(mask)
    if path.suffix.lower() in (".png", ".gif", ".bmp", ".jpg", ".jpeg", ".webp") or path.exists():
        return read_mask(path, threshold)
    return parse_rect(str(mask))


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

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        backend: str = DEFAULT_BACKEND,
        precision: str | None = None,
        device: str | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> Pipeline:
        """Load a model directory (a checkpoint, or an export from ``nuwa export`` /
        ``nuwa quantize``) on ``backend``. ``model_dir=None`` is the shipped demo checkpoint.
        ``precision=None`` runs what the directory holds (fp32 for a checkpoint). Sampling
        defaults come from the directory's ``generation_config.json``, the input rules (sketch
        palette and snapping, sizes, mask convention, the words it knows) from its
        ``input_rules.json`` (:mod:`nuwa.spec.input_rules`)."""
        if model_dir is not None and not isinstance(model_dir, (str, Path)):
            raise NuwaInputError(
                f"model_dir must be a str or Path (or None), got {type(model_dir).__name__}"
            )
        for name, value in (("backend", backend), ("precision", precision), ("device", device)):
            if not isinstance(value, str) and not (value is None and name != "backend"):
                raise NuwaInputError(f"{name} must be a str, got {type(value).__name__}")
        check_flag(progress, "progress")
        if log is not None and not callable(log):
            raise NuwaInputError(f"log must be callable, got {type(log).__name__}")
        model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        check_input_directory(model_dir, "model directory")
        if (model_dir / CONFIG_FILE).is_file():  # a checkpoint: its config checked before loading
            ModelSpec.from_model_dir(model_dir)
        try:
            generation = GenerationConfig.load(model_dir)
        except GenerationConfigError as exc:
            raise NuwaInputError(str(exc)) from None
        rules = load_input_rules(model_dir, ModelSpec.from_model_dir(model_dir))
        return cls(
            load_backend(backend, model_dir, precision, device, log=log, progress=progress),
            progress,
            generation,
            rules,
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

        Every argument is checked (types, values, files, the memory limit) before anything is
        generated: a bad one raises :class:`NuwaInputError` naming it. ``__call__`` is
        :meth:`prepare` then :meth:`run`.
        """
        if callback is not None and not callable(callback):
            raise NuwaInputError(f"callback must be callable, got {type(callback).__name__}")
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
        return self.run(request, callback=callback, stream_frames=stream_frames, progress=progress)

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
        info = task_info(task)
        options = resolve_sampling(
            self.generation_config, info.name, temperature, top_k, top_p, guidance_scale, seed
        )
        plan = plan_task(
            self.backend,
            info.name,
            prompt=prompt,
            sketch=_as_pixels(sketch, "sketch", video=True),
            image=_as_pixels(image, "image", video=False),
            mask=_as_mask(mask, self.input_rules.mask_threshold),
            video=_as_pixels(video, "video", video=True),
            num_frames=num_frames,
            batch=batch,
            guidance=options.uses_guidance,
            rules=self.input_rules,
        )
        return PreparedRequest(plan, options)

    def run(
        self,
        request: PreparedRequest,
        *,
        callback: StepCallback | None = None,
        stream_frames: bool = False,
        progress: bool | None = None,
    ) -> GenerationResult:
        """Generate a :meth:`prepare`-d request."""
        plan, options = request.plan, request.options
        step_callback = None
        if callback is not None:
            step_callback = self._step_callback(callback, plan.num_frames, stream_frames)
        tokens = generate_tokens(
            self.backend,
            plan.cond,
            plan.num_frames,
            options,
            uncond=plan.uncond,
            known=plan.known,
            known_mask=plan.known_mask,
            callback=step_callback,
            progress=self.progress if progress is None else progress,
        )
        frames = self.backend.codes_to_frames(tokens)
        return GenerationResult(plan.task, frames, tokens, plan.prompts, options)

    def sampling_defaults(self, task: str) -> dict[str, Any]:
        """The sampling options ``task`` runs with when the caller passes none: the model's
        ``generation_config.json``, then the built-in defaults."""
        return self.generation_config.for_task(task_info(task).name)

    def _step_callback(
        self, callback: StepCallback, num_frames: int, stream_frames: bool
    ) -> Callable[[int, np.ndarray], None]:
        per_frame = self.spec.tokens_per_frame
        total = num_frames * per_frame
        h, w = self.spec.grid_h, self.spec.grid_w

        def on_step(position: int, tokens: np.ndarray) -> None:
            done = position + 1
            if done % per_frame:  # mid-frame
                callback(StepEvent(position, total, tokens))
                return
            frame = done // per_frame - 1  # (after a prefill: the last given frame)
            pixels = None
            if stream_frames:
                codes = tokens[:, frame * per_frame : done].reshape(-1, 1, h, w)
                pixels = self.backend.codes_to_frames(codes)[:, 0]
            callback(StepEvent(position, total, tokens, frame, pixels))

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


def resolve_sampling(
    generation: GenerationConfig,
    task: str,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance_scale: float | None = None,
    seed: int | None = None,
) -> SamplingOptions:
    """The checked sampling options of a ``task`` request: the values given, the model's
    defaults (``generation``) for those left ``None``. ``top_k=0`` turns top-k off; guidance
    other than 1 for a task that takes none is an error; so is a value of the wrong type
    (``top_k`` and ``seed`` are ints, the others real numbers) or not finite."""
    info = task_info(task)
    check_int(seed, "seed", 0, optional=True)
    check_int(top_k, "top_k", 0, optional=True)
    for name, value in (
        ("temperature", temperature),
        ("top_p", top_p),
        ("guidance_scale", guidance_scale),
    ):
        check_real(value, name)
    if info.name in UNGUIDED_TASKS and guidance_scale not in (None, 1.0):
        raise NuwaInputError(
            f"{info.name} ({info.title}) takes no classifier-free guidance (its condition is "
            f"the empty prompt); got guidance_scale {guidance_scale}"
        )
    values = generation.resolve(info.name, temperature, top_k, top_p, guidance_scale)
    options = SamplingOptions(**values, seed=seed)
    options.validate()
    return options


def check_real(value: object, name: str) -> None:
    """``None`` or a finite real number (int or float, not bool)."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise NuwaInputError(
            f"{name} must be a number (or None), got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise NuwaInputError(f"{name} must be a finite number, got {value}")


def check_flag(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise NuwaInputError(f"{name} must be True or False, got {type(value).__name__}")


def default_model_dir() -> Path:
    """The demo checkpoint shipped inside the package (``nuwa/model/checkpoints/demo``)."""
    import nuwa.model

    return Path(nuwa.model.__file__).parent / "checkpoints" / "demo"
