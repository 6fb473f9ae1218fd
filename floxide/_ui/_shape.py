"""What the UI draws of a run: its workflow's structure as plain names (a `Shape`).

A distributed run stores its queue, `MODULE.CLASS@FINGERPRINT`, not its graph, so the UI
finds the graph where a worker does: it imports MODULE (the current directory is on the
path, as for `floxide worker`) and takes CLASS's graph when its fingerprint is the run's.
Nothing is added to what backends store, every run ever stored (and every backend,
third-party ones too) can be drawn, and the drawing is the very graph the workers run.
A module-level instance of the class, when the module has one, also gives the workflows
of its composite nodes, drawn as nested boxes. When the module cannot be imported here
(or its graph changed since), the UI draws the nodes the run's records name, without
edges, and says so. A checkpointed run stores its graph description in its header
(`Graph.describe()`), which `from_description` reads.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Edge", "NodeShape", "Shape", "from_description", "from_names", "shape_of_queue"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@attrs.frozen
class Edge:
    """An arrow: `kind` is "next" (fan-out or single successor), "route" (labelled with
    its route key), "fallback" (on failure) or "join" (the join's source to the join)."""

    source: str
    target: str
    kind: str = "next"
    label: str = ""


@attrs.frozen
class NodeShape:
    name: str
    kind: str = ""
    """The node's class as its annotation names it (`CompositeNode[...]`, ...)."""
    terminal: bool = False
    inner: Shape | None = None
    """The workflow inside a composite node, when known."""


@attrs.frozen
class Shape:
    """A workflow's structure: nodes in declaration order, its start node and its edges."""

    name: str
    nodes: tuple[NodeShape, ...]
    start: str | None
    edges: tuple[Edge, ...]
    known: bool = True
    """False when only the node names the run's records hold are known (no edges)."""
    note: str = ""
    """Why the structure is not known, when it is not."""


def from_description(
    desc: Mapping[str, Any],
    inner: Mapping[str, Shape] | None = None,
    kinds_of: Mapping[str, str] | None = None,
) -> Shape:
    """A shape from `Graph.describe()`'s dict (also what a checkpoint header holds);
    `inner` gives composites' workflows, `kinds_of` better node labels than annotations."""
    nodes_raw = desc.get("nodes")
    nodes = [str(n) for n in nodes_raw] if isinstance(nodes_raw, list) else []
    edges: list[Edge] = []
    terminal: set[str] = set()
    raw_edges = desc.get("edges")
    for source, targets in (raw_edges if isinstance(raw_edges, dict) else {}).items():
        if isinstance(targets, list):
            if not targets:
                terminal.add(str(source))
            edges.extend(Edge(str(source), str(t)) for t in targets)
        elif isinstance(targets, dict):
            for label, routed in targets.items():
                if isinstance(routed, list):
                    if not routed:
                        terminal.add(str(source))
                    edges.extend(Edge(str(source), str(t), "route", str(label)) for t in routed)
    fallbacks = desc.get("on_failure")
    for source, targets in (fallbacks if isinstance(fallbacks, dict) else {}).items():
        if isinstance(targets, list):
            edges.extend(Edge(str(source), str(t), "fallback", "on failure") for t in targets)
    joins = desc.get("joins")
    for join, source in (joins if isinstance(joins, dict) else {}).items():
        edges.append(Edge(str(source), str(join), "join", "join"))
    types = desc.get("types")
    kinds = types if isinstance(types, dict) else {}
    known = set(nodes)
    edges = [e for e in edges if e.source in known and e.target in known]
    start = desc.get("start")
    return Shape(
        name=str(desc.get("workflow", "?")),
        nodes=tuple(
            NodeShape(
                n,
                (kinds_of or {}).get(n) or _kind(kinds.get(n)),
                n in terminal,
                (inner or {}).get(n),
            )
            for n in nodes
        ),
        start=str(start) if isinstance(start, str) and start in known else None,
        edges=tuple(edges),
    )


def _kind(annotation: object) -> str:
    """`floxide._nodes.composite.CompositeNode[Ctx, int, int]` -> `CompositeNode`."""
    if not isinstance(annotation, str):
        return ""
    text = annotation.removeprefix("<class '").removesuffix("'>")
    head = text.split("[", 1)[0]
    return head.rsplit(".", 1)[-1]


def from_names(name: str, names: Iterable[str], note: str) -> Shape:
    """The nodes a run's records name, without edges (the graph itself is not known)."""
    return Shape(
        name=name,
        nodes=tuple(NodeShape(n) for n in dict.fromkeys(names)),
        start=None,
        edges=(),
        known=False,
        note=note,
    )


_found: dict[str, Shape | str] = {}
"""Per queue: its shape, or why it cannot be found (imports are made once)."""


def shape_of_queue(queue: str) -> Shape | str:
    """The shape of the workflow a queue (`MODULE.CLASS@FINGERPRINT`) names, or why not."""
    found = _found.get(queue)
    if found is None:
        found = _found[queue] = _import_shape(queue)
    return found


def _import_shape(queue: str) -> Shape | str:
    from floxide._workflow import Workflow

    qualified, _, fingerprint = queue.rpartition("@")
    module_name, _, class_name = qualified.rpartition(".")
    if not module_name or not _DOTTED.fullmatch(qualified) or module_name == "__main__":
        return f"its workflow's module is not known ({qualified or queue!r})"
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:
        return f"module {module_name} cannot be imported here ({type(e).__name__}: {e})"
    cls = getattr(module, class_name, None)
    graph = getattr(cls, "__floxide_graph__", None)
    if graph is None or not (isinstance(cls, type) and issubclass(cls, Workflow)):
        return f"module {module_name} has no workflow class {class_name}"
    if graph.fingerprint != fingerprint:
        return f"the graph of {qualified} changed since the run started"
    instance = next((v for v in vars(module).values() if isinstance(v, cls)), None)
    return of_workflow(instance) if instance is not None else from_description(graph.describe())


def of_workflow(wf: Any) -> Shape:
    """The shape of a workflow instance, the workflows of its composite nodes nested."""
    from floxide._cli._drawing import unwrap
    from floxide._nodes.composite import CompositeNode

    inner: dict[str, Shape] = {}
    kinds: dict[str, str] = {}
    for name, node in wf.nodes.items():
        wrappers, core = unwrap(node)
        kinds[name] = type(core).__name__ + (f" [{', '.join(wrappers)}]" if wrappers else "")
        if isinstance(core, CompositeNode):
            inner[name] = of_workflow(core.workflow)
    return from_description(wf.graph.describe(), inner, kinds)
