"""The SVG picture of a run: its graph's layout, each node with its counts and state.

Every node of the run's workflow is a `<g class="node state-S" data-node="NAME">` whose
`<tspan data-k="done|in_flight|failed|retried">` the page's script updates live; styles
come from the CSS file (no inline style: the page's Content-Security-Policy forbids it).
Every name and label is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from floxide._ui._layout import HEADER, Box, Layout, Link

__all__ = ["COUNT_KEYS", "node_state", "svg"]

COUNT_KEYS = (
    ("done", "done"),
    ("in_flight", "in flight"),
    ("failed", "failed"),
    ("retried", "retried"),
)


def node_state(counts: Mapping[str, Any]) -> str:
    """The colour class of a node: failed > running > queued > done > idle."""
    if counts.get("failed"):
        return "failed"
    if counts.get("in_flight"):
        return "running"
    if counts.get("queued"):
        return "queued"
    if counts.get("done"):
        return "done"
    return "idle"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def svg(lay: Layout, counts: Mapping[str, Mapping[str, Any]], *, live: bool = True) -> str:
    """The picture; `counts` maps a (top-level) node to its counts (see `_data`)."""
    title = escape(lay.shape.name)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {_n(lay.w)} '
        f'{_n(lay.h)}" width="{_n(lay.w)}" height="{_n(lay.h)}" role="img" '
        f'aria-label="graph of {title}">',
        "<defs>",
        *(
            f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            f'class="head head-{k}"/></marker>'
            for k in ("next", "route", "fallback", "join")
        ),
        "</defs>",
    ]
    _draw(lay, counts if live else {}, out, top=True)
    out.append("</svg>")
    return "\n".join(out)


def _draw(lay: Layout, counts: Mapping[str, Mapping[str, Any]], out: list[str], top: bool) -> None:
    out.append('<g class="links">')
    for link in lay.links:
        out.append(_link(link))
    out.append("</g>")
    for box in lay.boxes.values():
        _box(box, counts.get(box.node.name, {}), out, top, lay.shape.start == box.node.name)


def _link(link: Link) -> str:
    p = link.points
    kind = link.edge.kind
    d = f"M{_n(p[0])},{_n(p[1])} C{_n(p[2])},{_n(p[3])} {_n(p[4])},{_n(p[5])} {_n(p[6])},{_n(p[7])}"
    back = " back" if link.back else ""
    text = ""
    if link.edge.label and kind != "next":
        mx = (p[0] + 3 * p[2] + 3 * p[4] + p[6]) / 8
        my = (p[1] + 3 * p[3] + 3 * p[5] + p[7]) / 8
        text = (
            f'<text class="link-label label-{kind}" x="{_n(mx)}" y="{_n(my - 4)}" '
            f'text-anchor="middle">{escape(link.edge.label)}</text>'
        )
    return (
        f'<g class="link link-{kind}{back}" data-source="{escape(link.edge.source)}" '
        f'data-target="{escape(link.edge.target)}"><path d="{d}" '
        f'marker-end="url(#arrow-{kind})"/>{text}</g>'
    )


def _count(v: object) -> str:
    return "&#8211;" if v is None else str(v)


def _counts_text(counts: Mapping[str, Any], x: float, y: float, top: bool) -> str:
    if not top:
        return (
            f'<text class="node-counts muted" x="{_n(x)}" y="{_n(y)}">'
            "runs inside its composite</text>"
        )
    parts = []
    for i, (key, label) in enumerate(COUNT_KEYS):
        sep = " · " if i else ""
        value = _count(counts.get(key, 0))
        parts.append(f'{sep}<tspan class="c-{key}" data-k="{key}">{value}</tspan> {label}')
    line1 = "".join(parts[:2])
    line2 = "".join(parts[2:]).removeprefix(" · ")
    return (
        f'<text class="node-counts" x="{_n(x)}" y="{_n(y)}">{line1}</text>'
        f'<text class="node-counts" x="{_n(x)}" y="{_n(y + 14)}">{line2}</text>'
    )


def _box(box: Box, counts: Mapping[str, Any], out: list[str], top: bool, start: bool) -> None:
    node = box.node
    name = escape(node.name)
    classes = ["node", f"state-{node_state(counts) if top else 'idle'}"]
    if box.inner is not None:
        classes.append("composite")
    if start:
        classes.append("start")
    if node.terminal:
        classes.append("terminal")
    if counts.get("retried"):
        classes.append("retried")
    data = f' data-node="{name}"' if top else ""
    out.append(
        f'<g class="{" ".join(classes)}"{data} transform="translate({_n(box.x)},{_n(box.y)})">'
    )
    tip = f"{node.name} ({node.kind})" if node.kind else node.name
    out.append(f"<title>{escape(tip)}</title>")
    radius = 14 if node.terminal else 6
    out.append(f'<rect class="box" width="{_n(box.w)}" height="{_n(box.h)}" rx="{radius}"/>')
    out.append(f'<text class="node-name" x="10" y="19">{name}</text>')
    kind = escape(node.kind)
    if box.inner is None:
        if kind:
            out.append(f'<text class="node-kind" x="10" y="34">{kind}</text>')
        out.append(_counts_text(counts, 10, 52, top))
    else:
        if top:
            out.append(_counts_text(counts, 10, 36, top))
        out.append(f'<g class="inner" transform="translate(0,{_n(HEADER)})">')
        _draw(box.inner, {}, out, top=False)
        out.append("</g>")
    out.append("</g>")
