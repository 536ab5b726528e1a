"""Errors a user can cause: each says what is wrong and what to do, in one line.

The ``nuwa`` CLI prints any exception as one line and exits 2; these classes let the Python API
catch the user-facing ones apart from bugs.
"""

from __future__ import annotations


class NuwaInputError(ValueError):
    """An input that cannot be used: bad prompt, image, sketch, mask, video or option."""


class BackendUnavailableError(RuntimeError):
    """A backend or precision that is unknown or not installed here; the message says what to
    install."""
