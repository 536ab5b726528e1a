"""Why a request failed, as the client sees it: one class per kind, each message one line.

PyTriton 0.7 answers a model's error as HTTP 500 / gRPC INTERNAL whose text is a Python
traceback ending in ``nuwa.serving.errors.<Kind>: <message>``; :func:`error_line` finds that line
in a client's error text. The kinds: :class:`InvalidRequestError` (bad input: the runtime's own
one-line message, as the CLI prints it), :class:`ServerBusyError` (rows in flight and queue
full, answered at once), :class:`RequestTimeoutError` (past ``nuwa serve --timeout``),
:class:`RequestCancelledError` (the client went away, where Triton tells) and
:class:`InternalRequestError` (something failed inside the engine: this request alone).
"""

from __future__ import annotations

import re


class RequestError(Exception):
    """A request that failed; ``str()`` is the one-line message for the client."""


class InvalidRequestError(RequestError):
    """Bad input: the runtime's one-line message."""


class ServerBusyError(RequestError):
    """The server is full (rows in flight and queue): try again later or elsewhere."""


class RequestTimeoutError(RequestError):
    """A request ran past the server's per-request timeout (``nuwa serve --timeout``)."""


class RequestCancelledError(RequestError):
    """The client went away (where Triton tells: the model repository's Python backend)."""


class InternalRequestError(RequestError):
    """Something failed inside the engine; only this request is affected."""


KINDS = {
    cls.__name__: cls
    for cls in (
        InvalidRequestError,
        ServerBusyError,
        RequestTimeoutError,
        RequestCancelledError,
        InternalRequestError,
    )
}


def timeout_message(timeout_s: float) -> str:
    return f"the request ran past the server's timeout of {timeout_s:g} s (nuwa serve --timeout)"


# Triton's error code of each kind where a model can set it (the model repository's Python
# backend; PyTriton 0.7 answers every error as INTERNAL): INVALID_ARG is HTTP 400, UNAVAILABLE 503
TRITON_CODES = {"InvalidRequestError": "INVALID_ARG", "ServerBusyError": "UNAVAILABLE"}
_LINE = re.compile(r"nuwa\.serving\.errors\.(\w+): (.*)")


def client_line(exc: RequestError) -> str:
    """The line a client gets: ``nuwa.serving.errors.<Kind>: <message>``."""
    return f"{__name__}.{type(exc).__name__}: {exc}"


def line_of(text: str) -> str:
    """``text`` cut to its error line (a traceback's last ``nuwa.serving.errors.<Kind>: ...``
    line), or all of it where it holds none."""
    found = error_line(text)
    return f"{__name__}.{found[0]}: {found[1]}" if found else text


def triton_code_name(text: str) -> str:
    """The name of Triton's error code for an error text (``INTERNAL`` unless it is one of
    ours with a code of its own)."""
    found = error_line(text)
    return TRITON_CODES.get(found[0], "INTERNAL") if found else "INTERNAL"


def error_line(text: str) -> tuple[str, str] | None:
    """The kind and one-line message of a request's error in a Triton error text (the last
    ``nuwa.serving.errors.<Kind>: <message>`` line), or ``None`` if it holds none."""
    found = [(m.group(1), m.group(2).strip()) for m in _LINE.finditer(text) if m.group(1) in KINDS]
    return found[-1] if found else None
