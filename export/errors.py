"""Errors of ``nuwa export`` (no torch here: the runtime catches them without PyTorch)."""

from __future__ import annotations


class ExportError(RuntimeError):
    """A user-facing export failure: bad arguments, an unloadable checkpoint, an unwritable
    output directory, or a graph that failed its checks. The message is one line."""
