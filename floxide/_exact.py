"""Exact fit of JSON data to a declared type, by the one converter's round trip.

`floxide.serde.structure` is lenient the way cattrs is (1.5 becomes 1, "ab" a list of
letters, unknown keys are dropped). Input a user gives must fit exactly: the data is
structured, written back, and must read the same as what was given, the written form
having nothing less (it may add fields the input left to their defaults). The first place
where they part is the error, as a JSON path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["first_difference"]


def _kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, Sequence | set | frozenset):
        return "an array"
    return type(v).__name__


def first_difference(given: Any, written: Any, path: str = "$") -> str | None:
    """Where `given` (the user's JSON data) and `written` (the structured value written
    back) part, as "PATH: why"; None when the given data fits exactly."""
    if isinstance(given, bool) or isinstance(written, bool):
        if type(given) is type(written) and given == written:
            return None
        return f"{path}: expected {_kind(written)}, got {given!r}"
    if isinstance(given, int | float) and isinstance(written, int | float):
        if isinstance(written, int) and not isinstance(given, int):
            return f"{path}: expected an integer, got {given!r}"
        return None if given == written else f"{path}: {given!r} does not fit (read as {written!r})"
    if isinstance(given, Mapping):
        if not isinstance(written, Mapping):
            return f"{path}: expected {_kind(written)}, got an object"
        for key, value in given.items():
            if key not in written:
                return f"{path}: unknown key {key!r}"
            found = first_difference(value, written[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(given, list):
        if isinstance(written, set | frozenset):
            written = [w for w in written]  # a set: compare as members, in any order
            if len(given) == len(written) and all(g in written for g in given):
                return None
            return f"{path}: does not fit (read as {written!r})"
        if not isinstance(written, list | tuple):
            return f"{path}: expected {_kind(written)}, got an array"
        if len(given) != len(written):
            return f"{path}: expected {len(written)} items, got {len(given)}"
        for k, (g, w) in enumerate(zip(given, written, strict=True)):
            found = first_difference(g, w, f"{path}[{k}]")
            if found is not None:
                return found
        return None
    if type(given) is not type(written) and not (given is None and written is None):
        return f"{path}: expected {_kind(written)}, got {given!r}"
    return None if given == written else f"{path}: {given!r} does not fit (read as {written!r})"
