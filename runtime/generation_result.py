"""What a generation gives back: the :class:`GenerationResult` of a call (frames, tokens, how to
save them) and the :class:`StepEvent` a Pipeline's step callback sees after every decoded
position (with ``stream_frames``, the pixels of a frame the moment it is finished)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nuwa.runtime.media import DEFAULT_FPS, check_fps, contact_sheet, write_image, write_video
from nuwa.runtime.request_checks import check_int
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.sampling import SamplingOptions
from nuwa.spec.tasks import TASKS


@dataclass
class StepEvent:
    """What a step callback sees after each decoded position."""

    position: int  # last raster position done (0-based)
    total: int  # positions in the whole request
    tokens: np.ndarray  # (B, position+1) int64: every token so far
    frame: int | None = None  # index of the frame this step finished, if it finished one
    frame_pixels: np.ndarray | None = None  # (B, S, S, 3) uint8 of that frame (stream_frames)
    # (stream_frames) every frame finished so far, 0 .. ``frame``, each (B, S, S, 3) uint8: a
    # prefill finishes several frames (a video prediction's given frames) in one event
    finished_frames: tuple[np.ndarray, ...] | None = None

    @property
    def fraction(self) -> float:
        return (self.position + 1) / self.total


# A Pipeline call's ``callback``: called with a StepEvent after every decoded position. (The
# decode loops' own per-position hook, ``(position, tokens)``, is their ``StepObserver``.)
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
