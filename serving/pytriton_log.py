"""A refused request in one log line instead of PyTriton's traceback.

PyTriton 0.7 logs every exception a model callable raises as a warning holding the whole
traceback (``Exception while performing inference on requests=<id>: Traceback ...``, ~14 lines),
so each bad client request floods the server's log. A request's own error
(:mod:`nuwa.serving.errors`: bad input, server busy, timeout, cancelled) is expected and its
message says everything, so :class:`OneLineRequestErrors` rewrites such a record to
``nuwa_stream: request <id> failed: <Kind>: <message>``. Any other exception keeps PyTriton's
record as it is; a failure inside the engine is also logged with its traceback where it happens
(:mod:`nuwa.serving.request_runner`).
"""

from __future__ import annotations

import logging
import re

from nuwa.serving.errors import error_line

PYTRITON_INFERENCE_LOGGER = "pytriton.proxy.inference"  # where PyTriton logs a callable's error
# PyTriton's message of a callable's exception: request ids, then the traceback text
PYTRITON_MESSAGE = re.compile(r"^Exception while performing inference on requests=(\S+): ")


class OneLineRequestErrors(logging.Filter):
    """Rewrites PyTriton's traceback record of a request's own error to one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        head = PYTRITON_MESSAGE.match(text)
        # only where the traceback ends in our error: anything raised after it keeps its record
        found = error_line(text.rstrip().rsplit("\n", 1)[-1]) if head else None
        if head and found:
            record.msg = "nuwa_stream: request %s failed: %s: %s"
            record.args = (head.group(1), *found)
            record.exc_info = record.exc_text = None
        return True


def log_request_errors_in_one_line() -> None:
    """Install :class:`OneLineRequestErrors` on PyTriton's inference logger (once)."""
    logger = logging.getLogger(PYTRITON_INFERENCE_LOGGER)
    if not any(isinstance(f, OneLineRequestErrors) for f in logger.filters):
        logger.addFilter(OneLineRequestErrors())
