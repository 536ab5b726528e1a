"""The server's limits (``nuwa serve --max-rows --max-queue --max-frames --timeout``), with their
defaults; plain Python, so the command's parser reads them without loading the runtime."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServingLimits:
    max_rows: int = 8  # decoder rows in flight (classifier-free guidance: 2 per sample)
    max_queue: int = 8  # requests waiting for rows; past it a request is refused at once
    max_frames: int = 64  # frames one request may make
    timeout_s: float = 300.0  # per request, waiting included
