"""The structural rules of a workflow definition, written once over plain names.

A workflow's structure is described as plain data (an `Outline`): its fields, `start`, and
the entries of `edges`, `on_failure` and `joins`, every name a string. `check_structure`
applies every structural rule to it and returns the problems in a fixed order, each worded
by `_rules.RULES`. Two enforcers describe their own world and call it:

- the runtime validation (`_graph.build_graph`) describes the class's Python values and
  raises the problems as one `WorkflowDefinitionError`;
- the mypy plugin (`floxide_mypy`) describes the class body's literals, gives each name,
  key and value the expression that wrote it (`at`, handed back on the problem so the error
  points at that line), and marks what it cannot see as `UNSEEN` (the rules that need it
  are then skipped, never guessed).

Type rules (edge types, exhaustive routes, ...) are not here: each enforcer adds its own.
A leaf: this module imports only `_rules`, so the plugin can run it inside mypy.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from floxide._rules import RESERVED, RULES

__all__ = [
    "UNSEEN",
    "Entry",
    "Fallback",
    "Field",
    "Join",
    "Malformed",
    "Name",
    "Outline",
    "Problem",
    "ProtocolKey",
    "RouteRow",
    "Table",
    "Unseen",
    "check_structure",
]


class Unseen(enum.Enum):
    """A value the describer cannot read (for mypy: not a literal): its rules are skipped."""

    UNSEEN = "unseen"


UNSEEN: Final = Unseen.UNSEEN


@dataclass(frozen=True, slots=True)
class Name:
    """A name as written (a non-string key is given as its text); `at`: where it is."""

    value: str
    at: object = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A value of the wrong shape, `shown` as written (its `repr`)."""

    shown: str
    at: object = None


@dataclass(frozen=True, slots=True)
class Field:
    """A field of the workflow class; `not_a_node` is its annotation, shown, when it
    declares no Node."""

    name: str
    at: object = None
    not_a_node: str | None = None


class ProtocolKey(str):
    """A route key, shown, that is a Protocol without `@runtime_checkable` (isinstance
    cannot test it, so the row could never match)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One row `key: targets` of a routing table; `bad_key` is the key, shown, when it is
    not a class, an enum member or a literal; `at` is where the key is."""

    targets: Sequence[Name] | Malformed
    bad_key: str | None = None
    at: object = None


@dataclass(frozen=True, slots=True)
class Entry:
    """`edges[source]`: a fan-out list of names, a routing table (rows) or neither."""

    source: Name
    successors: Sequence[Name] | Sequence[RouteRow] | Malformed


@dataclass(frozen=True, slots=True)
class Fallback:
    """`on_failure[source]`: the nodes given the failing node's input."""

    source: Name
    targets: Sequence[Name] | Malformed


@dataclass(frozen=True, slots=True)
class Join:
    """`joins[join]`: the node whose fan-out `join` collects."""

    join: Name
    source: Name | Malformed


E = TypeVar("E", Entry, Fallback, Join)


@dataclass(frozen=True, slots=True)
class Table(Generic[E]):
    """A mapping attribute; `complete` is False when some entry could not be read."""

    entries: Sequence[E] = ()
    complete: bool = True
    at: object = None


@dataclass(frozen=True, slots=True)
class Outline:
    """A workflow's structure as plain names. An attribute is None when the class does not
    declare it (`on_failure` and `joins` then default to empty), `UNSEEN` when it cannot be
    read, `Malformed` when it is not a name (`start`) or not a mapping."""

    workflow: str
    fields: Sequence[Field]
    start: Name | Malformed | Unseen | None
    edges: Table[Entry] | Malformed | Unseen | None
    on_failure: Table[Fallback] | Malformed | Unseen | None = None
    joins: Table[Join] | Malformed | Unseen | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: its id in `RULES`, its message, and the `at` of the name or value it
    is about (None: the workflow class itself)."""

    rule: str
    message: str
    at: object = None


def check_structure(outline: Outline) -> list[Problem]:
    """Every structural problem of `outline`, in a fixed order: the fields' problems first,
    then start, on_failure, edges, missing entries, joins, and reachability last.

    Missing entries need every edge seen; reachability (unreachable nodes, joins their
    source does not reach) needs a known start and every edge and fallback seen.
    """
    return _Check(outline).run()


class _Check:
    """One run of the rules over one outline, collecting problems as it goes."""

    def __init__(self, outline: Outline) -> None:
        self.outline = outline
        self.known = {f.name for f in outline.fields}
        self.problems: list[Problem] = []
        self.successors: dict[str, list[str]] = {}  # known targets, for reachability
        self.meant: set[str] = set()  # nodes a misspelt name probably meant: their
        # missing entry or unreachability follows from the typo, and is not reported
        self.roots: list[Problem] = []  # misspelt names: the root causes, reported first

    def say(self, rule: str, at: object, **kw: object) -> None:
        text = RULES[rule].format(wf=self.outline.workflow, **kw)
        self.problems.append(Problem(rule, text, at))

    def unknown(self, rule: str, at: object, name: str, **kw: object) -> None:
        """An unknown node name, with the nearest node name when one is close."""
        text = RULES[rule].format(wf=self.outline.workflow, name=name, **kw)
        near = difflib.get_close_matches(name, sorted(self.known - RESERVED), n=1, cutoff=0.6)
        if near:
            self.meant.add(near[0])
            self.roots.append(Problem(rule, text + RULES["did-you-mean"].format(near=near[0]), at))
        else:
            self.problems.append(Problem(rule, text, at))

    def run(self) -> list[Problem]:
        out = self.outline
        for f in out.fields:
            if f.not_a_node is not None and f.name not in RESERVED:
                self.say("not-a-node", f.at, name=f.name, annotation=f.not_a_node)
        for f in out.fields:
            if f.name in RESERVED:
                self.say("reserved", f.at, name=f.name)
        if not out.fields:
            self.say("no-nodes", None)
        start = self.start(out.start)
        fallbacks_complete = self.fallbacks(out.on_failure)
        edges_complete = self.edges(out.edges)
        joins = self.joins(out.joins)
        if start is not None and edges_complete and fallbacks_complete:
            self.reachability(start, joins)
        return [*self.roots, *self.problems]

    def start(self, start: Name | Malformed | Unseen | None) -> str | None:
        """The start node's name when it is a node; reports a missing or unknown one."""
        if start is None or isinstance(start, Malformed):
            self.say("no-start", start.at if start is not None else None)
        elif isinstance(start, Name):
            if start.value in self.known:
                return start.value
            self.unknown("unknown-start", start.at, start.value)
        return None

    def fallbacks(self, table: Table[Fallback] | Malformed | Unseen | None) -> bool:
        """Check `on_failure`; True when every fallback is known."""
        if isinstance(table, Malformed):
            self.say("bad-fallback", table.at, src="*")
            return True
        if table is None or table is UNSEEN:
            return table is None
        for entry in table.entries:
            src = entry.source.value
            if src not in self.known:
                self.unknown("unknown-fallback-source", entry.source.at, src)
            elif isinstance(entry.targets, Malformed):
                self.say("bad-fallback", entry.targets.at, src=src)
            else:
                for t in entry.targets:
                    if t.value not in self.known:
                        self.unknown("unknown-fallback", t.at, t.value, src=src)
                self.link(src, entry.targets)
        return table.complete

    def edges(self, table: Table[Entry] | Malformed | Unseen | None) -> bool:
        """Check `edges` (an entry per node); True when every edge is known."""
        if table is UNSEEN:
            return False
        if not isinstance(table, Table):  # absent, or not a mapping: no edges at all
            at = table.at if table is not None else None
            self.say("no-edges", at)
            table = Table((), True, at)
        entered: set[str] = set()
        for entry in table.entries:
            src = entry.source.value
            if src not in self.known:
                self.unknown("unknown-source", entry.source.at, src)
                continue
            entered.add(src)
            successors = entry.successors
            if isinstance(successors, Malformed):
                self.say("bad-successors", successors.at, src=src, got=successors.shown)
                continue
            for item in successors:
                if isinstance(item, Name):
                    self.targets(src, (item,))
                    continue
                if isinstance(item.bad_key, ProtocolKey):
                    self.say("protocol-route-key", item.at, src=src, key=item.bad_key)
                elif item.bad_key is not None:
                    self.say("bad-route-key", item.at, src=src, key=item.bad_key)
                if isinstance(item.targets, Malformed):
                    self.say("bad-successors", item.targets.at, src=src, got=item.targets.shown)
                else:
                    self.targets(src, item.targets)
        if not table.complete:
            return False
        for f in self.outline.fields:
            if f.name not in entered and f.name not in RESERVED and f.name not in self.meant:
                self.say("missing-entry", table.at, name=f.name)
        return True

    def targets(self, src: str, targets: Sequence[Name]) -> None:
        for t in targets:
            if t.value not in self.known:
                self.unknown("unknown-target", t.at, t.value, src=src)
        self.link(src, targets)

    def link(self, src: str, targets: Iterable[Name]) -> None:
        found = self.successors.setdefault(src, [])
        found.extend(t.value for t in targets if t.value in self.known)

    def joins(self, table: Table[Join] | Malformed | Unseen | None) -> list[Join]:
        """Check `joins`; the joins whose two names are nodes."""
        if isinstance(table, Malformed):
            self.say("bad-joins", table.at, got=table.shown)
            return []
        if table is None or table is UNSEEN:
            return []
        good: list[Join] = []
        for entry in table.entries:
            join, source = entry.join, entry.source
            if join.value not in self.known:
                self.unknown("unknown-join", join.at, join.value)
            elif isinstance(source, Malformed):
                self.say("bad-joins", source.at, got=f"{{{join.value!r}: {source.shown}}}")
            elif source.value not in self.known:
                self.say("unknown-join-source", source.at, name=join.value, src=source.value)
            else:
                good.append(entry)
        return good

    def reachability(self, start: str, joins: Sequence[Join]) -> None:
        reach = self.reachable([start, *self.meant])  # what a misspelt name meant counts
        for f in self.outline.fields:
            if f.name not in reach and f.name not in RESERVED:
                self.say("unreachable", f.at, name=f.name, start=start)
        for entry in joins:
            join, source = entry.join, entry.source
            assert isinstance(source, Name)
            if join.value == source.value:
                self.say("join-is-source", join.at, name=join.value)
            elif join.value not in self.reachable(self.successors.get(source.value, [])):
                self.say("join-not-reached", source.at, name=join.value, src=source.value)

    def reachable(self, first: Iterable[str]) -> set[str]:
        """Every node reached from `first` (included) through edges and fallbacks."""
        seen: set[str] = set()
        stack = list(first)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.successors.get(n, ()))
        return seen


