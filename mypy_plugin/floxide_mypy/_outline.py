"""The class body as `floxide._structure` sees it: plain names, each with its expression.

The plugin checks a workflow's structure with the runtime's own rules
(`floxide._structure.check_structure`); this module only translates what `_declared` read
into that plain description. Every name, key and value carries the expression that wrote
it (`at`), so each problem is reported on its line; what mypy cannot see is `UNSEEN`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mypy.nodes import Expression

from floxide._structure import (
    UNSEEN,
    Entry,
    Fallback,
    Field,
    Join,
    Malformed,
    Outline,
    RouteRow,
    Table,
    Unseen,
)
from floxide._structure import Name as PlainName
from floxide_mypy._declared import Declared, Name, written
from floxide_mypy._declared import RouteRow as DeclaredRow

__all__ = ["BadKey", "describe"]

BadKey = Callable[[DeclaredRow], str | None]
"""The route key of a row, shown, when it is not a valid key kind (mypy knows its type)."""


def describe(wf: str, fields: Sequence[Field], decl: Declared, bad_key: BadKey) -> Outline:
    """The structure of workflow `wf` as declared by its class body."""
    return Outline(
        wf,
        fields,
        start=_start(decl),
        edges=_edges(decl, bad_key),
        on_failure=_fallbacks(decl),
        joins=_joins(decl),
    )


def _name(name: Name) -> PlainName:
    return PlainName(name.value, name.expr)


def _names(names: Sequence[Name]) -> list[PlainName]:
    return [_name(n) for n in names]


def _malformed(value: Expression) -> Malformed:
    return Malformed(written(value) or "a non-list value", value)


def _bad(decl: Declared, attr: str) -> Expression | None:
    return next((expr for name, expr in decl.bad if name == attr), None)


def _start(decl: Declared) -> PlainName | Malformed | Unseen | None:
    if "start" in decl.inherited:
        return UNSEEN
    if decl.start_expr is None:
        return None
    if decl.start_bad:
        return _malformed(decl.start_expr)
    return _name(decl.start) if decl.start is not None else UNSEEN


def _edges(decl: Declared, bad_key: BadKey) -> Table[Entry] | Malformed | Unseen | None:
    if "edges" in decl.inherited:
        return UNSEEN
    if (bad := _bad(decl, "edges")) is not None:
        return _malformed(bad)
    if decl.edges_expr is None:
        return None
    entries: list[Entry] = []
    for entry in decl.edges:
        successors: list[PlainName] | list[RouteRow] | Malformed
        if entry.fanout is not None:
            successors = _names(entry.fanout)
        elif entry.routes is not None:
            successors = [
                RouteRow(
                    _names(row.targets) if row.targets is not None else _malformed(row.value),
                    bad_key(row),
                    row.key,
                )
                for row in entry.routes
            ]
        else:
            successors = Malformed(entry.bad or "a non-list value", entry.value)
        entries.append(Entry(_name(entry.source), successors))
    return Table(entries, decl.edges_complete, decl.edges_expr)


def _fallbacks(decl: Declared) -> Table[Fallback] | Malformed | Unseen | None:
    if "on_failure" in decl.inherited:
        return UNSEEN
    if (bad := _bad(decl, "on_failure")) is not None:
        return _malformed(bad)
    if decl.on_failure_expr is None:
        return None
    entries = [
        Fallback(_name(src), _names(targets) if targets is not None else _malformed(value))
        for src, value, targets in decl.on_failure
    ]
    return Table(entries, decl.on_failure_complete, decl.on_failure_expr)


def _joins(decl: Declared) -> Table[Join] | Malformed | Unseen | None:
    if "joins" in decl.inherited:
        return UNSEEN
    if decl.joins_bad is not None:
        return decl.joins_bad
    if decl.joins_expr is None:
        return None
    entries = [
        Join(_name(join), source if isinstance(source, Malformed) else _name(source))
        for join, source in decl.joins
    ]
    return Table(entries, decl.joins_complete, decl.joins_expr)
