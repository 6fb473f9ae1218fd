"""The validated graph of a workflow class: names, successors, routes, fallbacks, joins.

Built once per `@workflow` class. Every definition problem is collected (not just the
first) and raised together as a `WorkflowDefinitionError`. The messages come from
`_rules.RULES`, which the mypy plugin formats too.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from floxide._errors import WorkflowDefinitionError
from floxide._rules import RESERVED, RULES
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
            extra = ', style=bold' if n == self.start else ""
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
    *,
    workflow_types: Callable[[], NodeTypes | None] | None = None,
) -> Graph:
    """Validate a workflow class's declarations; raise every problem at once.

    `workflow_types` reads the class's `Workflow[Ctx, In, Out]` (see `Graph.workflow_types`).
    """
    problems: list[str] = []

    def say(rule: str, **kw: object) -> None:
        problems.append(RULES[rule].format(wf=name, **kw))

    node_names = tuple(fields)
    known = set(node_names)
    for f in node_names:
        if f in RESERVED:
            say("reserved", name=f)
    if not node_names:
        say("no-nodes")

    start = attrs_of_class.get("start")
    if not isinstance(start, str):
        say("no-start")
        start = ""
    elif start not in known:
        say("unknown-start", name=start)

    edges = attrs_of_class.get("edges")
    specs: dict[str, NodeSpec] = {}
    fallbacks = _fallbacks(attrs_of_class.get("on_failure", {}), known, say)
    if not isinstance(edges, Mapping):
        say("no-edges")
        edges = {}
    for src, value in edges.items():
        if not isinstance(src, str) or src not in known:
            say("unknown-source", name=src)
            continue
        successors = _names(value)
        routes: list[Route] = []
        if successors is not None:
            for t in successors:
                if t not in known:
                    say("unknown-target", src=src, name=t)
        elif isinstance(value, Mapping):
            for key, targets in value.items():
                if not (
                    isinstance(key, type)
                    or isinstance(key, enum.Enum)
                    or isinstance(key, _LITERAL_TYPES)
                ):
                    say("bad-route-key", src=src, key=repr(key))
                tnames = _names(targets)
                if tnames is None:
                    say("bad-successors", src=src, got=repr(targets))
                    continue
                for t in tnames:
                    if t not in known:
                        say("unknown-target", src=src, name=t)
                routes.append(Route(key, tnames))
        else:
            say("bad-successors", src=src, got=repr(value))
            successors = ()
        specs[src] = NodeSpec(src, successors, tuple(routes), fallbacks.get(src, ()))
    for n in node_names:
        if n not in specs and n not in RESERVED:
            say("missing-entry", name=n)
            specs[n] = NodeSpec(n, (), (), fallbacks.get(n, ()))

    joins = _joins(attrs_of_class.get("joins", {}), known, say)
    if start in known:
        reach = _reachable(start, specs)
        for n in node_names:
            if n not in reach and n not in RESERVED:
                say("unreachable", name=n, start=start)
        for join, source in joins.items():
            if join == source:
                say("join-is-source", name=join)
            elif join not in _reachable(source, specs, include_self=False):
                say("join-not-reached", name=join, src=source)
    if problems:
        raise WorkflowDefinitionError(name, problems)

    _finish(specs, joins)
    return Graph(
        name, module, node_names, annotations, start, specs, joins, workflow_types=workflow_types
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


def _fallbacks(value: object, known: set[str], say: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if not isinstance(value, Mapping):
        say("bad-fallback", src="*")
        return out
    for src, targets in value.items():
        if src not in known:
            say("unknown-fallback-source", name=src)
            continue
        names = _names(targets)
        if names is None:
            say("bad-fallback", src=src)
            continue
        for t in names:
            if t not in known:
                say("unknown-fallback", src=src, name=t)
        out[src] = tuple(t for t in names if t in known)
    return out


def _joins(value: object, known: set[str], say: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(value, Mapping):
        say("bad-joins", got=repr(value))
        return out
    for join, source in value.items():
        if join not in known:
            say("unknown-join", name=join)
        elif isinstance(source, (list, tuple, set, frozenset, dict)):
            say("bad-joins", got=repr({join: source}))
        elif source not in known:
            say("unknown-join-source", name=join, src=source)
        else:
            out[join] = source
    return out


def _reachable(start: str, specs: Mapping[str, NodeSpec], include_self: bool = True) -> set[str]:
    seen: set[str] = set()
    stack = [start] if include_self else _next(start, specs)
    while stack:
        n = stack.pop()
        if n in seen or n not in specs:
            continue
        seen.add(n)
        stack.extend(_next(n, specs))
    return seen


def _next(n: str, specs: Mapping[str, NodeSpec]) -> list[str]:
    spec = specs.get(n)
    if spec is None:
        return []
    return [*spec.all_targets(), *spec.fallback]
