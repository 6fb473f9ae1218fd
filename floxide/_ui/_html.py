"""The UI's HTML pages, drawn from the data layer's dicts; everything shown is escaped.

No inline script or style (the Content-Security-Policy forbids both): behaviour comes from
`/static/ui.js`, which reads `data-*` attributes, and looks from `/static/ui.css`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from floxide._ui._data import ACTIONS
from floxide._ui._layout import layout
from floxide._ui._shape import Shape
from floxide._ui._svg import svg

__all__ = [
    "details_fragment",
    "message_page",
    "run_page",
    "run_path",
    "runs_page",
    "runs_table",
    "workers_page",
    "workers_table",
]


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def run_path(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def when(t: object) -> str:
    if not isinstance(t, int | float) or not t:
        return "&#8211;"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def seconds(s: object) -> str:
    if not isinstance(s, int | float):
        return "&#8211;"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def page(title: str, body: str, source: str, *, nav: str = "", data: str = "") -> str:
    def link(href: str, text: str) -> str:
        current = ' aria-current="page"' if nav == href else ""
        return f'<a href="{href}"{current}>{text}</a>'

    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · floxide</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js" defer></script>'
        f"</head><body{data}>"
        '<header class="top"><span class="brand">floxide</span>'
        f"<nav>{link('/', 'Runs')}{link('/workers', 'Workers')}</nav>"
        f'<span class="source" title="where the runs are stored">{e(source)}</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def message_page(title: str, message: str, source: str) -> str:
    body = f'<h1>{e(title)}</h1><p class="message">{e(message)}</p><p><a href="/">All runs</a></p>'
    return page(title, body, source)


# ------------------------------------------------------------------------------ runs
def _progress(p: Mapping[str, Any]) -> str:
    done, known = int(p.get("done") or 0), int(p.get("known") or 0)
    return (
        f'<progress value="{done}" max="{max(known, 1)}"></progress> '
        f'<span class="count" data-k="progress">{done} / {known}</span>'
    )


def runs_table(data: Mapping[str, Any]) -> str:
    rows = []
    for r in data["runs"]:
        rows.append(
            f'<tr data-run="{e(r["run_id"])}">'
            f'<td class="id"><a href="{e(run_path(r["run_id"]))}">{e(r["run_id"])}</a></td>'
            f"<td>{e(r['workflow'])}</td>"
            f'<td><span class="status status-{e(r["status"])}">{e(r["status"])}</span></td>'
            f'<td class="progress">{_progress(r["progress"])}</td>'
            f'<td class="time">{when(r["created_at"])}</td>'
            f'<td class="num">{seconds(r["duration"])}</td></tr>'
        )
    if not rows:
        what = f" {data['status']}" if data.get("status") else ""
        rows.append(
            f'<tr><td colspan="6" class="empty">no{e(what)} runs in {e(data["source"])}</td></tr>'
        )
    return (
        '<table class="runs"><thead><tr><th>Run</th><th>Workflow</th><th>Status</th>'
        "<th>Progress (done / known items)</th><th>Started</th><th>Duration</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _pager(data: Mapping[str, Any], per: int) -> str:
    total, offset, limit = data["total"], data["offset"], data["limit"]
    status = data.get("status")

    def href(start: int) -> str:
        q: dict[str, str | int] = {}
        if status:
            q["status"] = status
        if per != 50:
            q["per"] = per
        if start:
            q["page"] = start // limit + 1
        return "/?" + urlencode(q) if q else "/"

    shown = f"{offset + 1}&#8211;{min(offset + limit, total)} of {total}" if total else "0 runs"
    parts = [f'<span class="shown">{shown}</span>']
    if offset > 0:
        parts.insert(
            0, f'<a rel="prev" href="{e(href(max(0, offset - limit)))}">&lsaquo; newer</a>'
        )
    if offset + limit < total:
        parts.append(f'<a rel="next" href="{e(href(offset + limit))}">older &rsaquo;</a>')
    return f'<nav class="pager">{" ".join(parts)}</nav>'


def runs_page(data: Mapping[str, Any], statuses: Sequence[str], per: int, fragment_url: str) -> str:
    current = data.get("status") or ""
    filters = []
    for s in ("", *statuses):
        q = {"status": s} if s else {}
        href = "/?" + urlencode(q) if q else "/"
        mark = ' aria-current="true"' if s == current else ""
        filters.append(
            f'<a class="filter status-{e(s or "all")}" href="{e(href)}"{mark}>{e(s or "all")}</a>'
        )
    body = (
        "<h1>Runs</h1>"
        f'<nav class="filters" aria-label="filter by status">{"".join(filters)}</nav>'
        f'<div id="runs" data-refresh="{e(fragment_url)}">{runs_table(data)}</div>'
        f"{_pager(data, per)}"
    )
    return page("Runs", body, data["source"], nav="/")


# ------------------------------------------------------------------------------- run
def _buttons(run: Mapping[str, Any], csrf: str, can_control: bool) -> str:
    if not can_control:
        return ""
    allowed = set(run["actions"])
    path = e(run_path(run["run_id"]))
    forms = []
    for action in ACTIONS:
        hidden = "" if action in allowed else " hidden"
        forms.append(
            f'<form method="post" action="{path}" class="action" data-action="{action}"{hidden}>'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<input type="hidden" name="action" value="{action}">'
            f'<button type="submit" class="btn btn-{action}">{action.capitalize()}</button></form>'
        )
    return f'<div class="actions">{"".join(forms)}</div>'


def _facts(run: Mapping[str, Any]) -> str:
    rows = [
        ("Workflow", e(run["workflow"])),
        ("Started", when(run["created_at"])),
        ("Finished", f'<span data-k="finished_at">{when(run["finished_at"])}</span>'),
        ("Duration", f'<span data-k="duration">{seconds(run["duration"])}</span>'),
    ]
    if run.get("deadline"):
        rows.append(("Deadline", when(run["deadline"])))
    if run.get("queue"):
        rows.append(("Graph", f"<code>{e(run['queue'])}</code>"))
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{facts}</dl>'


def _progress_line(p: Mapping[str, Any]) -> str:
    return (
        f'<span data-k="done">{p["done"]}</span> / <span data-k="known">{p["known"]}</span> '
        f'items done · <span data-k="in_flight">{p["in_flight"]}</span> in flight · '
        f'<span data-k="queued">{p["queued"]}</span> queued · '
        f'<span data-k="failed">{p["failed"]}</span> failed · '
        f'<span data-k="retried">{p["retried"]}</span> retried'
    )


def _count(v: object) -> str:
    return "&#8211;" if v is None else e(v)


def _node_table(run: Mapping[str, Any]) -> str:
    rows = []
    for name, c in run["nodes"].items():
        cells = "".join(
            f'<td class="num" data-k="{k}">{_count(c.get(k))}</td>'
            for k in ("done", "in_flight", "queued", "failed", "retried")
        )
        mean = c.get("mean_ms")
        latency = "&#8211;" if mean is None else f"{mean:.2f} / {c.get('max_ms') or 0:.2f}"
        rows.append(
            f'<tr data-node="{e(name)}"><td>{e(name)}</td>{cells}'
            f'<td class="num" data-k="latency">{latency}</td></tr>'
        )
    return (
        '<table class="nodes"><thead><tr><th>Node</th><th>Done</th><th>In flight</th>'
        "<th>Queued</th><th>Failed</th><th>Retried</th><th>Mean / max ms</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _json_block(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return f'<pre class="json">{e(text)}</pre>'


def details_fragment(run: Mapping[str, Any]) -> str:
    """The run's errors (tracebacks folded), outputs and, for checkpoints, pending items
    and join state: replaced by the page's script when their counts change."""
    parts = []
    errors = run.get("errors", [])
    more = run.get("errors_total", len(errors)) - len(errors)
    items = []
    for err in reversed(errors):
        tag = " handled" if err.get("handled") else ""
        where = (
            f"{e(err['node'])} · item {e(err['item_id'])} · attempt {e(err['attempt'])} · "
            if err.get("node")
            else ""
        )
        tb = err.get("traceback")
        trace = (
            f'<details><summary>traceback</summary><pre class="traceback">{e(tb)}</pre></details>'
            if tb
            else ""
        )
        items.append(
            f'<li class="error{tag}"><div class="error-head"><span class="when">'
            f'{when(err.get("at"))}</span> {where}<span class="kind">{e(err["kind"])}'
            f'{tag}</span></div><pre class="message">{e(err["message"])}</pre>{trace}</li>'
        )
    note = f'<p class="muted">{more} older errors not shown</p>' if more > 0 else ""
    parts.append(
        f'<section id="errors"><h2>Errors <span class="badge">{e(run.get("errors_total", 0))}'
        f"</span></h2>{note}"
        + (f'<ol class="errors">{"".join(items)}</ol>' if items else '<p class="muted">none</p>')
        + "</section>"
    )
    outputs = run.get("outputs", [])
    rows = "".join(
        f"<tr><td><code>{e(o.get('position'))}</code></td><td>{e(o.get('node'))}</td>"
        f"<td>{_json_block(o.get('value'))}</td></tr>"
        for o in outputs
    )
    more = run.get("outputs_total", len(outputs)) - len(outputs)
    note = f'<p class="muted">{more} more outputs not shown</p>' if more > 0 else ""
    parts.append(
        f'<section id="outputs"><h2>Outputs <span class="badge">'
        f"{e(run.get('outputs_total', 0))}</span></h2>{note}"
        + (
            '<table class="outputs"><thead><tr><th>Branch</th><th>Node</th><th>Value</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else '<p class="muted">none yet</p>'
        )
        + "</section>"
    )
    if "pending_items" in run:
        pending = "".join(
            f"<tr><td><code>{e(i.get('item_id'))}</code></td><td>{e(i.get('node'))}</td>"
            f"<td>{_json_block(i.get('input'))}</td></tr>"
            for i in run["pending_items"][:500]
        )
        parts.append(
            f'<section id="pending"><h2>Pending items <span class="badge">'
            f"{len(run['pending_items'])}</span></h2>"
            + (
                '<table class="outputs"><thead><tr><th>Item</th><th>Node</th><th>Input</th>'
                f"</tr></thead><tbody>{pending}</tbody></table>"
                if pending
                else '<p class="muted">none</p>'
            )
            + "</section>"
        )
        joins = "".join(
            f"<tr><td><code>{e(j['scope'])}</code></td><td>{e(j['source'])}</td>"
            f'<td>{e(", ".join(map(str, j["joins"] or [])))}</td><td class="num">{e(j["open"])}'
            f"</td><td>{e(', '.join(f'{k}: {v}' for k, v in j['collected'].items()) or '&#8211;')}"
            "</td></tr>"
            for j in run.get("joins", [])
        )
        parts.append(
            '<section id="joins"><h2>Join state</h2>'
            + (
                '<table class="outputs"><thead><tr><th>Scope</th><th>Source</th><th>Joins</th>'
                "<th>Open branches</th><th>Collected</th></tr></thead>"
                f"<tbody>{joins}</tbody></table>"
                if joins
                else '<p class="muted">no open join</p>'
            )
            + "</section>"
        )
    return "".join(parts)


def run_page(
    run: Mapping[str, Any],
    shape: Shape,
    source: str,
    csrf: str,
    can_control: bool,
    message: str = "",
    context: Any = None,
) -> str:
    path = run_path(run["run_id"])
    status = e(run["status"])
    note = "" if run["graph_known"] else f'<p class="note">{e(run["graph_note"])}</p>'
    error = f'<pre class="run-error">{e(run["error"])}</pre>' if run.get("error") else ""
    flash = f'<p class="flash" role="status">{e(message)}</p>' if message else ""
    ctx = (
        _json_block(context)
        if context is not None
        else f'<p><a class="load-context" href="{e(path)}?context=1">Show the context</a></p>'
    )
    body = (
        f'<h1>Run <code class="run-id">{e(run["run_id"])}</code> '
        f'<span id="run-status" class="status status-{status}">{status}</span></h1>'
        f"{flash}{_facts(run)}"
        f'<p class="progress-line"><progress id="run-progress" value="{run["progress"]["done"]}"'
        f' max="{max(1, run["progress"]["known"])}"></progress> {_progress_line(run["progress"])}'
        f"</p>{error}{_buttons(run, csrf, can_control)}"
        f'<section id="graph"><h2>Graph</h2>{note}<div class="graph-box">'
        f"{svg(layout(shape), run['nodes'])}</div>"
        '<p class="legend"><span class="state-done">done</span>'
        '<span class="state-running">in flight</span><span class="state-queued">queued</span>'
        '<span class="state-failed">failed</span><span class="state-idle">not reached</span>'
        f"</p>{_node_table(run)}</section>"
        f'<div id="details">{details_fragment(run)}</div>'
        f'<section id="context"><h2>Context</h2><div id="context-body" '
        f'data-url="{e("/api" + path)}?context=1">{ctx}</div></section>'
    )
    data = (
        f' data-run-api="{e("/api" + path)}?summary=1" data-details="{e(path)}?fragment=details"'
        f' data-finished="{"1" if run["finished"] else "0"}"'
    )
    return page(f"Run {run['run_id']}", body, source, data=data)


# --------------------------------------------------------------------------- workers
def workers_table(workers: Sequence[Mapping[str, Any]], source: str, kind: str) -> str:
    if not workers:
        why = "a checkpoint store has no workers" if kind == "checkpoints" else "no live workers"
        return f'<p class="empty">{e(why)} in {e(source)}</p>'
    rows = "".join(
        f"<tr><td><code>{e(w['worker_id'])}</code></td><td><code>{e(w['graph'])}</code></td>"
        f'<td>{e(w["host"])}</td><td class="num">{e(w["pid"])}</td>'
        f'<td class="num">{e(w["in_flight"])} / {e(w["concurrency"])}</td>'
        f'<td class="time">{when(w["last_seen"])} ({e(w["seen_seconds_ago"])} s ago)</td></tr>'
        for w in workers
    )
    return (
        '<table class="workers"><thead><tr><th>Worker</th><th>Graph served</th><th>Host</th>'
        "<th>PID</th><th>In flight / concurrency</th><th>Last heartbeat</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def workers_page(workers: Sequence[Mapping[str, Any]], source: str, kind: str) -> str:
    body = (
        "<h1>Workers</h1>"
        f'<div id="workers" data-refresh="/workers?fragment=table">'
        f"{workers_table(workers, source, kind)}</div>"
    )
    return page("Workers", body, source, nav="/workers")
