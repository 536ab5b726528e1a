"""Errors a user can cause: each says what is wrong and what to do, in one line.

The ``nuwa`` CLI prints any exception as one line and exits 2; these classes let the Python API
catch the user-facing ones apart from bugs.
"""

from __future__ import annotations

import warnings


class NuwaInputError(ValueError):
    """An input that cannot be used: bad prompt, image, sketch, mask, video or option."""


class BackendUnavailableError(RuntimeError):
    """A backend or precision that is unknown or not installed here; the message says what to
    install."""


class NuwaInputWarning(UserWarning):
    """An input that was used after a change the user should know of (resized to the model's
    frame size, a mask rectangle clipped to the frame); ``nuwa generate`` prints it as one line."""


def warn_input(message: str) -> None:
    """Warn about an input once per call site (:class:`NuwaInputWarning`)."""
    warnings.warn(message, NuwaInputWarning, stacklevel=3)


class ExportError(RuntimeError):
    """A user-facing export failure: bad arguments, an unloadable checkpoint, an unwritable
    output directory, or a graph that failed its checks. The message is one line."""
