"""The validated graph of a workflow class: names, successors, routes, fallbacks, joins.

Built once per `@workflow` class: the class's declarations are described as plain names
and checked by `_structure.check_structure` (the same rules the mypy plugin applies); every
problem (not just the first) is raised together as a `WorkflowDefinitionError`.
"""

from __future__ import annotations

import enum
import hashlib
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

from floxide._errors import WorkflowDefinitionError
from floxide._structure import (
    Entry,
    Fallback,
    Field,
    Join,
    Malformed,
    Name,
    Outline,
    ProtocolKey,
    RouteRow,
    Table,
    check_structure,
)
from floxide._typeinfo import NodeTypes

__all__ = ["Graph", "NodeSpec", "Route", "build_graph", "route_key_label"]

_LITERAL_TYPES: Final = (str, int, bool, bytes, type(None))


def route_key_label(key: object) -> str:
    """How a route key is shown in messages and diagrams."""
    if isinstance(key, type):
        return key.__qualname__
    if isinstance(key, enum.Enum):
        return f"{type(key).__qualname__}.{key.name}"
    return repr(key)


class Route:
    """One row of a routing table: outputs matching `key` go to `targets`."""

    __slots__ = ("is_class", "key", "targets")

    def __init__(self, key: object, targets: tuple[str, ...]) -> None:
        self.key = key
        self.targets = targets
        self.is_class = isinstance(key, type)

    def __repr__(self) -> str:
        return f"Route({route_key_label(self.key)} -> {list(self.targets)})"


class NodeSpec:
    """Where one node's results go. Immutable after the graph is built."""

    __slots__ = (
        "class_routes",
        "fallback",
        "join_of",
        "name",
        "opens_scope",
        "routes",
        "single",
        "successors",
        "target_joins",
        "value_routes",
    )

    def __init__(
        self,
        name: str,
        successors: tuple[str, ...] | None,
        routes: tuple[Route, ...],
        fallback: tuple[str, ...],
    ) -> None:
        self.name = name
        self.successors = successors
        self.routes = routes
        self.fallback = fallback
        self.join_of: str | None = None
        self.opens_scope: tuple[str, ...] = ()
        # Filled in once the whole graph is known (see `_finish`):
        self.target_joins: dict[str, str] = {}
        self.single: str | None = None
        self.class_routes: tuple[tuple[type, tuple[str, ...]], ...] = tuple(
            (r.key, r.targets) for r in routes if isinstance(r.key, type)
        )
        self.value_routes: dict[tuple[type, object], tuple[str, ...]] = {
            (type(r.key), r.key): r.targets for r in routes if not r.is_class
        }

    def route(self, value: object) -> tuple[str, ...] | None:
        """The targets for `value` (first matching row), or None when no row matches."""
        if self.value_routes:
            try:
                found = self.value_routes.get((type(value), value))
            except TypeError:  # unhashable output: only class rows can match
                found = None
            if found is not None:
                return found
        for cls, targets in self.class_routes:
            if isinstance(value, cls):
                return targets
        return None

    def all_targets(self) -> tuple[str, ...]:
        """Every node this node's output may reach (fan-out list or any route)."""
        if self.successors is not None:
            return self.successors
        seen: dict[str, None] = {}
        for r in self.routes:
            seen.update(dict.fromkeys(r.targets))
        return tuple(seen)


class Graph:
    """A workflow's validated structure, shared by every instance of the class.

    It also carries the declared types, read on first use (a forward reference may name a
    class defined after the workflow): `workflow_types()` is the workflow's
    `Workflow[Ctx, In, Out]`, `node_types(name)` a node's `Node[Ctx, In, Out]`.
    """

    def __init__(
        self,
        name: str,
        module: str,
        node_names: tuple[str, ...],
        annotations: Mapping[str, Any],
        start: str,
        specs: dict[str, NodeSpec],
        joins: dict[str, str],
        *,
        workflow_types: Callable[[], NodeTypes | None] | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.node_names = node_names
        self.start = start
        self.specs = specs
        self.joins = joins
        self._annotations = dict(annotations)
        self._types: dict[str, NodeTypes] = {}
        self._read_workflow_types = workflow_types
        self._workflow_types: NodeTypes | None = None
        self.fingerprint = self._fingerprint()

    def workflow_types(self) -> NodeTypes:
        """(Ctx, In, Out) declared by the workflow class (`Workflow[Ctx, In, Out]`)."""
        found = self._workflow_types
        if found is None:
            read = self._read_workflow_types
            found = (read() if read is not None else None) or (Any, Any, Any)
            self._workflow_types = found
        return found

    def node_types(self, name: str) -> NodeTypes:
        """(Ctx, In, Out) declared for node `name` (field annotation, then node class)."""
        found = self._types.get(name)
        if found is None:
            from floxide._node import Node
            from floxide._typeinfo import node_types

            found = node_types(self._annotations.get(name), Node, self.module) or (
                Any,
                Any,
                Any,
            )
            self._types[name] = found
        return found

    def describe(self) -> dict[str, object]:
        """A plain description (names, edges, routes, fallbacks, joins) for fingerprints."""
        edges: dict[str, object] = {}
        for n in self.node_names:
            spec = self.specs[n]
            if spec.successors is not None:
                edges[n] = list(spec.successors)
            else:
                edges[n] = {route_key_label(r.key): list(r.targets) for r in spec.routes}
        return {
            "workflow": self.name,
            "nodes": list(self.node_names),
            "start": self.start,
            "edges": edges,
            "on_failure": {n: list(s.fallback) for n, s in self.specs.items() if s.fallback},
            "joins": dict(self.joins),
            "types": {n: str(self._annotations.get(n)) for n in self.node_names},
        }

    def _fingerprint(self) -> str:
        return hashlib.blake2b(repr(self.describe()).encode(), digest_size=12).hexdigest()

    # ------------------------------------------------------------------ diagrams
    def to_dot(self) -> str:
        """The graph in Graphviz DOT."""
        out = [f'digraph "{self.name}" {{', "  rankdir=LR;"]
        for n in self.node_names:
            shape = "doublecircle" if self.is_terminal(n) else "box"
            extra = ", style=bold" if n == self.start else ""
            out.append(f'  "{n}" [shape={shape}{extra}];')
        for n in self.node_names:
            spec = self.specs[n]
            if spec.successors is not None:
                out.extend(f'  "{n}" -> "{t}";' for t in spec.successors)
            for r in spec.routes:
                label = route_key_label(r.key).replace('"', '\\"')
                out.extend(f'  "{n}" -> "{t}" [label="{label}"];' for t in r.targets)
            out.extend(
                f'  "{n}" -> "{t}" [style=dashed, label="on failure"];' for t in spec.fallback
            )
        for join, source in self.joins.items():
            out.append(f'  "{source}" -> "{join}" [style=dotted, label="join"];')
        out.append("}")
        return "\n".join(out) + "\n"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        ids = {n: f"n{i}" for i, n in enumerate(self.node_names)}
        out = ["flowchart LR"]
        for n in self.node_names:
            out.append(f'  {ids[n]}(["{n}"])' if self.is_terminal(n) else f'  {ids[n]}["{n}"]')
        for n in self.node_names:
            spec = self.specs[n]
            if spec.successors is not None:
                out.extend(f"  {ids[n]} --> {ids[t]}" for t in spec.successors)
            for r in spec.routes:
                label = route_key_label(r.key).replace('"', "#quot;")
                out.extend(f'  {ids[n]} -->|"{label}"| {ids[t]}' for t in r.targets)
            out.extend(f"  {ids[n]} -.->|on failure| {ids[t]}" for t in spec.fallback)
        for join, source in self.joins.items():
            out.append(f"  {ids[source]} -.->|join| {ids[join]}")
        return "\n".join(out) + "\n"

    def is_terminal(self, name: str) -> bool:
        """True when some output of `name` ends a branch with a workflow output."""
        spec = self.specs[name]
        if spec.successors is not None:
            return not spec.successors
        return any(not r.targets for r in spec.routes)


# ---------------------------------------------------------------------- building
def _names(value: object) -> tuple[str, ...] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def build_graph(
    name: str,
    module: str,
    fields: Sequence[str],
    annotations: Mapping[str, Any],
    attrs_of_class: Mapping[str, object],
    not_nodes: Mapping[str, str] | None = None,
    *,
    workflow_types: Callable[[], NodeTypes | None] | None = None,
) -> Graph:
    """Validate a workflow class's declarations; raise every problem at once.

    `workflow_types` reads the class's `Workflow[Ctx, In, Out]` (see `Graph.workflow_types`).

    `not_nodes` maps the fields whose annotation declares no Node to that annotation, shown.
    """
    outline = _outline(name, fields, attrs_of_class, not_nodes or {})
    problems = check_structure(outline)
    if problems:
        raise WorkflowDefinitionError(name, [p.message for p in problems])
    edges = cast(Mapping[str, object], attrs_of_class["edges"])
    fallbacks = cast(Mapping[str, Sequence[str]], attrs_of_class.get("on_failure", {}))
    specs: dict[str, NodeSpec] = {}
    for src, value in edges.items():
        successors = _names(value)
        routes: tuple[Route, ...] = ()
        if successors is None:
            table = cast(Mapping[object, Sequence[str]], value)
            routes = tuple(Route(key, tuple(targets)) for key, targets in table.items())
        specs[src] = NodeSpec(src, successors, routes, tuple(fallbacks.get(src, ())))
    joins = dict(cast(Mapping[str, str], attrs_of_class.get("joins", {})))
    _finish(specs, joins)
    start = cast(str, attrs_of_class["start"])
    return Graph(
        name,
        module,
        tuple(fields),
        annotations,
        start,
        specs,
        joins,
        workflow_types=workflow_types,
    )


def _outline(
    name: str,
    fields: Sequence[str],
    attrs_of_class: Mapping[str, object],
    not_nodes: Mapping[str, str],
) -> Outline:
    """The workflow's structure as plain names, for `check_structure`."""
    return Outline(
        name,
        [Field(f, not_a_node=not_nodes.get(f)) for f in fields],
        start=_start(attrs_of_class["start"]) if "start" in attrs_of_class else None,
        edges=_edges(attrs_of_class["edges"]) if "edges" in attrs_of_class else None,
        on_failure=_fallbacks(attrs_of_class.get("on_failure", {})),
        joins=_joins(attrs_of_class.get("joins", {})),
    )


def _start(value: object) -> Name | Malformed:
    return Name(value) if isinstance(value, str) else Malformed(repr(value))


def _name(value: object) -> Name:
    return Name(value if isinstance(value, str) else f"{value}")


def _targets(value: object) -> list[Name] | Malformed:
    names = _names(value)
    return [Name(n) for n in names] if names is not None else Malformed(repr(value))


def _route_key(key: object) -> str | None:
    """The key, shown, when it is not a class, an enum member or a literal."""
    if isinstance(key, type) and getattr(key, "_is_protocol", False):
        if not getattr(key, "_is_runtime_protocol", False):
            return ProtocolKey(key.__qualname__)
    if isinstance(key, types.UnionType):  # `Dog | Cat`: shown as written
        return " | ".join(getattr(a, "__qualname__", repr(a)) for a in key.__args__)
    ok = isinstance(key, type) or isinstance(key, enum.Enum) or isinstance(key, _LITERAL_TYPES)
    return None if ok else repr(key)


def _edges(value: object) -> Table[Entry] | Malformed:
    if not isinstance(value, Mapping):
        return Malformed(repr(value))
    entries: list[Entry] = []
    for src, successors in value.items():
        described: list[Name] | list[RouteRow] | Malformed
        if _names(successors) is None and isinstance(successors, Mapping):
            described = [
                RouteRow(_targets(targets), _route_key(key)) for key, targets in successors.items()
            ]
        else:
            described = _targets(successors)
        entries.append(Entry(_name(src), described))
    return Table(entries)


def _fallbacks(value: object) -> Table[Fallback] | Malformed:
    if not isinstance(value, Mapping):
        return Malformed(repr(value))
    return Table([Fallback(_name(src), _targets(targets)) for src, targets in value.items()])


def _joins(value: object) -> Table[Join] | Malformed:
    if not isinstance(value, Mapping):
        return Malformed(repr(value))
    return Table(
        [
            Join(
                _name(join),
                Malformed(repr(source))
                if isinstance(source, (list, tuple, set, frozenset, dict))
                else _name(source),
            )
            for join, source in value.items()
        ]
    )


def _finish(specs: dict[str, NodeSpec], joins: dict[str, str]) -> None:
    """Precompute what the step function needs per node, so a step does no lookups."""
    for join, source in joins.items():
        specs[join].join_of = source
        specs[source].opens_scope = (*specs[source].opens_scope, join)
    for spec in specs.values():
        targets = (*spec.all_targets(), *spec.fallback)
        spec.target_joins = {t: joins[t] for t in targets if t in joins}
        succ = spec.successors
        if succ is not None and len(succ) == 1 and not spec.target_joins and not spec.opens_scope:
            spec.single = succ[0]
