"""`floxide graph`'s drawings: each node with its In -> Out and its wrappers (retry,
timeout, batch), composite workflows as subgraphs of their own nodes.

`Workflow.to_mermaid` / `to_dot` draw one graph's edges; this adds what an operator wants
to see of the nodes, recursively.
"""

from __future__ import annotations

from typing import Any

from floxide._graph import route_key_label
from floxide._node import Node
from floxide._nodes.batch import BatchNode
from floxide._nodes.composite import CompositeNode
from floxide._retry import RetryNode
from floxide._timeout import TimeoutNode
from floxide._workflow import Workflow
from floxide.serde import type_name

__all__ = ["dot", "mermaid", "unwrap"]


def unwrap(node: Node[Any, Any, Any]) -> tuple[list[str], Node[Any, Any, Any]]:
    """The wrappers around a node, outermost first, and the node inside them."""
    wrappers: list[str] = []
    while True:
        if isinstance(node, RetryNode):
            wrappers.append(f"retry x{node.policy.max_attempts}")
            node = node.inner
        elif isinstance(node, TimeoutNode):
            wrappers.append(f"timeout {node.seconds:g}s")
            node = node.inner
        elif isinstance(node, BatchNode):
            wrappers.append("batch")
            node = node.inner
        else:
            return wrappers, node


def _label(wf: Workflow[Any, Any, Any], name: str) -> str:
    _, tin, tout = wf.graph.node_types(name)
    wrappers, inner = unwrap(wf.nodes[name])
    kind = type(inner).__name__
    extra = f" [{', '.join(wrappers)}]" if wrappers else ""
    return f"{name}: {kind}{extra}\n{type_name(tin)} -> {type_name(tout)}"


def _edges(wf: Workflow[Any, Any, Any], ids: dict[str, str], arrow: Any) -> list[str]:
    g = wf.graph
    out: list[str] = []
    for n in g.node_names:
        spec = g.specs[n]
        if spec.successors is not None:
            out.extend(arrow(ids[n], ids[t], None, False) for t in spec.successors)
        for r in spec.routes:
            out.extend(arrow(ids[n], ids[t], route_key_label(r.key), False) for t in r.targets)
        out.extend(arrow(ids[n], ids[t], "on failure", True) for t in spec.fallback)
    for join, source in g.joins.items():
        out.append(arrow(ids[source], ids[join], "join", True))
    return out


def mermaid(wf: Workflow[Any, Any, Any]) -> str:
    """A Mermaid flowchart of `wf`, composite nodes drawn as subgraphs."""
    out = ["flowchart LR"]
    counter = [0]

    def q(text: str) -> str:
        return text.replace('"', "#quot;").replace("\n", "<br/>")

    def arrow(a: str, b: str, label: str | None, dashed: bool) -> str:
        line = "-.->" if dashed else "-->"
        return f"  {a} {line}|\"{q(label)}\"| {b}" if label else f"  {a} {line} {b}"

    def draw(w: Workflow[Any, Any, Any], indent: str) -> dict[str, str]:
        ids: dict[str, str] = {}
        for n in w.graph.node_names:
            counter[0] += 1
            ids[n] = f"n{counter[0]}"
            _, inner = unwrap(w.nodes[n])
            if isinstance(inner, CompositeNode):
                out.append(f'{indent}subgraph {ids[n]}["{q(_label(w, n))}"]')
                inner_ids = draw(inner.workflow, indent + "  ")
                out.extend(_edges(inner.workflow, inner_ids, arrow))
                out.append(f"{indent}end")
            elif w.graph.is_terminal(n):
                out.append(f'{indent}{ids[n]}(["{q(_label(w, n))}"])')
            else:
                out.append(f'{indent}{ids[n]}["{q(_label(w, n))}"]')
        return ids

    ids = draw(wf, "  ")
    out.extend(_edges(wf, ids, arrow))
    return "\n".join(out) + "\n"


def dot(wf: Workflow[Any, Any, Any]) -> str:
    """Graphviz DOT of `wf`, composite nodes drawn as clusters."""
    out = [f'digraph "{wf.graph.name}" {{', "  rankdir=LR;", "  compound=true;"]
    counter = [0]

    def q(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    def arrow(a: str, b: str, label: str | None, dashed: bool) -> str:
        attrs = [f'label="{q(label)}"'] if label else []
        if dashed:
            attrs.append("style=dashed")
        tail = f" [{', '.join(attrs)}]" if attrs else ""
        return f'  "{a}" -> "{b}"{tail};'

    def draw(w: Workflow[Any, Any, Any], indent: str) -> dict[str, str]:
        ids: dict[str, str] = {}
        for n in w.graph.node_names:
            counter[0] += 1
            ids[n] = f"n{counter[0]}"
            _, inner = unwrap(w.nodes[n])
            if isinstance(inner, CompositeNode):
                out.append(f"{indent}subgraph cluster_{ids[n]} {{")
                out.append(f'{indent}  label="{q(_label(w, n))}";')
                inner_ids = draw(inner.workflow, indent + "  ")
                out.extend(_edges(inner.workflow, inner_ids, arrow))
                # the cluster's anchor: edges to and from the composite meet here
                out.append(f'{indent}  "{ids[n]}" [label="", shape=point, width=0.05];')
                out.append(f"{indent}}}")
            else:
                shape = "doublecircle" if w.graph.is_terminal(n) else "box"
                bold = ", style=bold" if n == w.graph.start else ""
                out.append(f'{indent}"{ids[n]}" [label="{q(_label(w, n))}", shape={shape}{bold}];')
        return ids

    ids = draw(wf, "  ")
    out.extend(_edges(wf, ids, arrow))
    out.append("}")
    return "\n".join(out) + "\n"
