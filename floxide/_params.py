"""Numeric parameters checked where they are given: one rule per kind of number.

NaN, infinities (unless allowed), negatives, booleans and non-integers where an int is meant
fail at once with an error naming the parameter (`TypeError` for a value that is no number
at all, `ValueError` for a number out of range), instead of misbehaving deep inside a run.
"""

from __future__ import annotations

import math
import os

__all__ = ["count", "env_seconds", "seconds", "timeout"]


def count(name: str, value: object, minimum: int = 1) -> int:
    """An int of at least `minimum` (no bool, no float such as 2.0 or 2.5)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float):
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def seconds(name: str, value: object, *, zero: bool = False, infinite: bool = False) -> float:
    """A number of seconds: > 0 (>= 0 with `zero`), finite unless `infinite`, never NaN."""
    bound = ">= 0" if zero else "> 0"
    finite = "" if infinite else " and finite"
    message = f"{name} must be a number of seconds {bound}{finite}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(message)
    if math.isnan(value) or not (value >= 0 if zero else value > 0):
        raise ValueError(message)
    if math.isinf(value) and not infinite:
        raise ValueError(message)
    return value


def env_seconds(name: str, default: float, *, zero: bool = False) -> float:
    """A number of seconds read from environment variable `name` (finite, > 0)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    return seconds(name, value, zero=zero)


def timeout(name: str, value: object) -> float | None:
    """A run's timeout: None (no deadline) or a finite number of seconds > 0."""
    return None if value is None else seconds(name, value)
