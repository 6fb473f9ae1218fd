"""How a worker describes a failed attempt: one line, its traceback, its error log entry."""

from __future__ import annotations

import time
import traceback

from floxide.backends._base import ErrorRecord

__all__ = ["describe", "error_record", "format_traceback"]


def describe(error: BaseException) -> str:
    """One line naming an exception: `Type: message`."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def format_traceback(error: BaseException) -> str:
    """The formatted traceback of `error`, its notes and causes included."""
    return "".join(traceback.format_exception(error)).rstrip()


def error_record(
    node: str, item_id: str, attempt: int, error: BaseException, *, handled: bool = False
) -> ErrorRecord:
    """The error log entry of a failed attempt, with its traceback."""
    return ErrorRecord(
        node,
        item_id,
        attempt,
        "node",
        describe(error),
        time.time(),
        traceback=format_traceback(error),
        handled=handled,
    )
