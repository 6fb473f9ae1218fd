"""How a `Counter` is written and read: in bulk, and canonically.

A Counter keeps one entry per contributing work item, so the context of a big fan-out is
mostly Counter entries, and a distributed run writes and reads it whole at every
compaction. cattrs' generated hooks convert each entry on its own; these check the
entries' types in bulk and keep cattrs' hook for anything that is not plainly a valid
counter (so odd data is read, or refused with its message, exactly as before). Merges
do not sort their entries; the writer does, so equal counters are written alike whatever
order merges built them in.
"""

from __future__ import annotations

from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn

from floxide._merge import Counter, _counter

__all__ = ["register_counter_hooks"]

_FIELDS = frozenset({"increments", "decrements"})


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    """`counts` in key order (the canonical encoding)."""
    if len(counts) < 2:
        return counts
    keys = sorted(counts)
    return dict(zip(keys, map(counts.__getitem__, keys), strict=True))


def _unstructure(counter: Counter) -> dict[str, Any]:
    return {"increments": _sorted(counter.increments), "decrements": _sorted(counter.decrements)}


def _valid_counts(data: Any) -> dict[str, int] | None:
    """A copy of `data` if it is a dict of str to non-negative int (no bool), else None."""
    if type(data) is not dict:
        return None
    if not data:
        return {}
    if set(map(type, data)) != {str} or set(map(type, data.values())) != {int}:
        return None
    if min(data.values()) < 0:
        return None
    return dict(data)


def register_counter_hooks(converter: cattrs.Converter) -> None:
    """Teach `converter` the bulk hooks for `Counter` (exactly that class: a subclass may
    add fields, and keeps cattrs' hooks)."""
    generic = make_dict_structure_fn(Counter, converter)

    def structure(data: Any, tp: Any) -> Counter:
        if type(data) is dict and data.keys() <= _FIELDS:
            inc = _valid_counts(data.get("increments", {}))
            dec = _valid_counts(data.get("decrements", {}))
            if inc is not None and dec is not None:
                return _counter(inc, dec, object())
        return generic(data, tp)

    converter.register_structure_hook_func(lambda t: t is Counter, structure)
    converter.register_unstructure_hook_func(lambda t: t is Counter, _unstructure)
