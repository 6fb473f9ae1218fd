"""A layered (Sugiyama-style) layout of a `Shape`, left to right, computed in Python.

Layers: back edges (found by a depth-first walk from the start node) are set aside, so a
loop does not stretch the drawing, and each node goes one layer right of its furthest
predecessor. Order within a layer: a few barycentre sweeps, which untangle most crossings
of the small graphs workflows are. Composite nodes are laid out recursively and drawn as
boxes holding their own layout. Coordinates are plain numbers; `_svg` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from floxide._ui._shape import Edge, NodeShape, Shape

__all__ = ["Box", "Layout", "Link", "layout"]

NODE_H = 74.0
MIN_W = 140.0
MAX_W = 280.0
CHAR_W = 7.6
GAP_X = 56.0
GAP_Y = 26.0
MARGIN = 16.0
HEADER = 56.0
SWEEPS = 6
ARC = 34.0


@attrs.define
class Box:
    node: NodeShape
    x: float = 0.0
    y: float = 0.0
    w: float = MIN_W
    h: float = NODE_H
    inner: Layout | None = None


@attrs.define
class Link:
    """An edge as drawn: its end points (right side to left side, or under the boxes for
    a back edge) and its kind and label."""

    edge: Edge
    points: tuple[float, float, float, float, float, float, float, float]
    """Start, two control points and end of a cubic Bézier curve."""
    back: bool = False


@attrs.define
class Layout:
    shape: Shape
    boxes: dict[str, Box]
    links: list[Link]
    w: float
    h: float


def _leaf_width(node: NodeShape) -> float:
    text = max(len(node.name), len(node.kind) * 0.85, 18)
    return min(MAX_W, max(MIN_W, text * CHAR_W + 28))


def layout(shape: Shape) -> Layout:
    boxes: dict[str, Box] = {}
    for n in shape.nodes:
        if n.inner is not None and n.inner.nodes:
            inner = layout(n.inner)
            boxes[n.name] = Box(
                n,
                w=max(inner.w, _leaf_width(n)),
                h=inner.h + HEADER,
                inner=inner,
            )
        else:
            boxes[n.name] = Box(n, w=_leaf_width(n))
    names = [n.name for n in shape.nodes]
    back = _back_edges(names, shape.start, shape.edges)
    forward = [e for i, e in enumerate(shape.edges) if i not in back and e.source != e.target]
    layers = _layers(names, forward)
    _order(layers, forward)
    w, h = _place(layers, boxes)
    arcs = any(e.kind == "join" for i, e in enumerate(shape.edges) if i not in back)
    if arcs:  # room above the boxes for the join arcs
        for box in boxes.values():
            box.y += ARC
        h += ARC
    links = [
        _link(e, boxes[e.source], boxes[e.target], i in back or e.source == e.target, h)
        for i, e in enumerate(shape.edges)
    ]
    has_back = any(link.back for link in links)
    return Layout(shape, boxes, links, w, h + (40.0 if has_back else 0.0))


def _back_edges(names: Sequence[str], start: str | None, edges: Sequence[Edge]) -> set[int]:
    """Indices of the edges closing a cycle in a depth-first walk (from the start node
    first, then from every node not reached yet, in declaration order)."""
    out_edges: dict[str, list[int]] = {n: [] for n in names}
    for i, e in enumerate(edges):
        out_edges[e.source].append(i)
    state: dict[str, int] = {}  # 1 on the walk's stack, 2 done
    back: set[int] = set()
    roots = ([start] if start else []) + list(names)
    for root in roots:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, k = stack[-1]
            if k < len(out_edges[node]):
                stack[-1] = (node, k + 1)
                i = out_edges[node][k]
                target = edges[i].target
                s = state.get(target)
                if s == 1:
                    back.add(i)
                elif s is None:
                    state[target] = 1
                    stack.append((target, 0))
            else:
                state[node] = 2
                stack.pop()
    return back


def _layers(names: Sequence[str], forward: Sequence[Edge]) -> list[list[str]]:
    """Longest-path layering of the acyclic forward edges."""
    preds: dict[str, list[str]] = {n: [] for n in names}
    succs: dict[str, list[str]] = {n: [] for n in names}
    for e in forward:
        preds[e.target].append(e.source)
        succs[e.source].append(e.target)
    indegree = {n: len(preds[n]) for n in names}
    level = dict.fromkeys(names, 0)
    ready = [n for n in names if indegree[n] == 0]
    while ready:
        node = ready.pop(0)
        for t in succs[node]:
            level[t] = max(level[t], level[node] + 1)
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    layers: list[list[str]] = [[] for _ in range(max(level.values(), default=0) + 1)]
    for n in names:
        layers[level[n]].append(n)
    return [layer for layer in layers if layer]


def _order(layers: list[list[str]], forward: Sequence[Edge]) -> None:
    """Barycentre sweeps, left to right then right to left, ordering nodes in place."""
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for e in forward:
        preds.setdefault(e.target, []).append(e.source)
        succs.setdefault(e.source, []).append(e.target)
    for sweep in range(SWEEPS):
        rng = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        for i in rng:
            ref = layers[i - 1] if sweep % 2 == 0 else layers[i + 1]
            where = {n: k for k, n in enumerate(ref)}
            links = preds if sweep % 2 == 0 else succs
            current = {n: k for k, n in enumerate(layers[i])}

            def key(
                n: str,
                where: dict[str, int] = where,
                current: dict[str, int] = current,
                links: dict[str, list[str]] = links,
            ) -> float:
                ks = [where[m] for m in links.get(n, ()) if m in where]
                return sum(ks) / len(ks) if ks else float(current[n])

            layers[i].sort(key=key)


def _place(layers: list[list[str]], boxes: dict[str, Box]) -> tuple[float, float]:
    """Coordinates: layers left to right, each layer's boxes stacked and centred."""
    heights = [sum(boxes[n].h for n in layer) + GAP_Y * (len(layer) - 1) for layer in layers]
    total_h = max(heights, default=0.0)
    x = MARGIN
    for layer, height in zip(layers, heights, strict=True):
        width = max(boxes[n].w for n in layer)
        y = MARGIN + (total_h - height) / 2
        for n in layer:
            box = boxes[n]
            box.x = x + (width - box.w) / 2
            box.y = y
            y += box.h + GAP_Y
        x += width + GAP_X
    return max(x - GAP_X + MARGIN, 2 * MARGIN), total_h + 2 * MARGIN


def _link(edge: Edge, a: Box, b: Box, back: bool, height: float) -> Link:
    if back:  # under the boxes, from the source's bottom to the target's bottom
        sx, sy = a.x + a.w * 0.6, a.y + a.h
        tx, ty = b.x + b.w * 0.4, b.y + b.h
        if a is b:
            return Link(edge, (sx, sy, sx + 30, sy + 40, tx - 30, ty + 40, tx, ty), True)
        low = max(sy, ty) + 22 + (height - max(sy, ty)) * 0.25
        return Link(edge, (sx, sy, sx, low, tx, low, tx, ty), True)
    if edge.kind == "join":  # an arc over the boxes, from the source's top to the join's
        sx, sy = a.x + a.w * 0.6, a.y
        tx, ty = b.x + b.w * 0.4, b.y
        top = (MARGIN + 4 - 0.25 * min(sy, ty)) / 0.75  # the curve peaks just inside the top
        return Link(edge, (sx, sy, sx, top, tx, top, tx, ty))
    sx, sy = a.x + a.w, a.y + a.h / 2
    tx, ty = b.x, b.y + b.h / 2
    dx = max(30.0, (tx - sx) / 2)
    return Link(edge, (sx, sy, sx + dx, sy, tx - dx, ty, tx, ty))
