"""PyTriton's record of a request's own error becomes one line; other records stay as they are."""

from __future__ import annotations

import logging

from nuwa.serving.errors import InvalidRequestError, client_line
from nuwa.serving.pytriton_log import (
    PYTRITON_INFERENCE_LOGGER,
    OneLineRequestErrors,
    log_request_errors_in_one_line,
)

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "pytriton/proxy/inference.py", line 393, in _handle_requests\n'
    "    async for responses in self._model_callable(requests):\n"
    '  File "nuwa/serving/request_runner.py", line 74, in run\n'
    "    raise InvalidRequestError(str(exc)) from None\n"
)


def pytriton_record(error_text: str) -> logging.LogRecord:
    """A record as PyTriton 0.7's inference handler makes it (``LOGGER.warning``)."""
    return logging.LogRecord(
        PYTRITON_INFERENCE_LOGGER,
        logging.WARNING,
        "inference.py",
        405,
        "Exception while performing inference on requests=%s: %s",
        ("0000001b", error_text),
        None,
    )


def test_a_request_error_is_one_line() -> None:
    error = client_line(InvalidRequestError("unknown task 't2x'; choose one of: t2i, t2v"))
    record = pytriton_record(TRACEBACK + error + "\n")
    assert OneLineRequestErrors().filter(record)
    assert record.getMessage() == (
        "nuwa_stream: request 0000001b failed: InvalidRequestError: "
        "unknown task 't2x'; choose one of: t2i, t2v"
    )
    assert record.levelno == logging.WARNING


def test_other_errors_keep_their_traceback() -> None:
    ours_then_other = (
        TRACEBACK
        + client_line(InvalidRequestError("bad"))
        + "\n\nDuring handling of the above exception, another exception occurred:\n\n"
        + TRACEBACK
        + "TypeError: 'NoneType' object is not callable\n"
    )
    for text in (TRACEBACK + "ValueError: something of PyTriton's\n", ours_then_other):
        record = pytriton_record(text)
        assert OneLineRequestErrors().filter(record)
        assert record.getMessage().endswith(text)  # untouched


def test_installed_once_on_pytritons_logger() -> None:
    logger = logging.getLogger(PYTRITON_INFERENCE_LOGGER)
    log_request_errors_in_one_line()
    log_request_errors_in_one_line()
    assert sum(isinstance(f, OneLineRequestErrors) for f in logger.filters) == 1
