"""Staging a big commit's items on Redis: sent in slices before the commit, so that no
message (and no buffer of the worker) holds them all at once.

A commit that makes more than `STAGE_OVER` items first sends them, `SLICE` at a time, to
a staging list of its lease (`key`: in the run's hash slot, named by the lease's token, so
a re-run of the item stages apart) with the STAGE script; the COMMIT script then reads the
list in slices, applies it with the rest of the commit and deletes it: all the items or
none. The list is inert until then: a worker killed while staging changes nothing (its
lease expires, the item runs again under a new token) and its list expires after
`EXPIRE_MS`. Each slice's arguments are built as it is sent (`slices`), so the cost of a
commit grows linearly with its items and the worker holds one slice of arguments at a
time, never the whole command (a 100,000-item command packed at once took ~65 MB).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from floxide.backends._base import NewItem

__all__ = ["EXPIRE_MS", "SLICE", "STAGE_OVER", "key", "slices"]

STAGE_OVER = 2000
"""A commit with more items than this stages them (smaller ones go in the commit itself:
one round trip)."""
SLICE = 1000
"""Items per STAGE call (5 values each: within the 8000 values a Lua `unpack` takes)."""
EXPIRE_MS = 600_000
"""How long a staging list outlives its last slice if no commit reads it."""


def key(run_key: str, token: int) -> str:
    """The staging list of the commit of the lease with `token` (run record `run_key`)."""
    return f"{run_key}:stage:{token}"


def slices(items: Sequence[NewItem]) -> Iterator[list[Any]]:
    """The STAGE values of `items`, `SLICE` items at a time: (id, node, payload, attempt,
    delay) each, as COMMIT reads them."""
    n = len(items)
    for start in range(0, n, SLICE):
        values: list[Any] = []
        for j in range(start, min(n, start + SLICE)):
            it = items[j]
            values += (it.item_id, it.node, it.payload, it.attempt, repr(it.delay))
        yield values
