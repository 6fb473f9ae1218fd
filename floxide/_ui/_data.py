"""The UI's data: runs, a run's detail and workers as JSON-ready dicts, read from a backend.

The JSON API returns these dicts as they are and the HTML pages are drawn from them, so
both always show the same data. Only `control` writes (the page's buttons); everything
else reads. Per-node counts: items done are the node's committed steps (its metrics);
queued and in flight come from the backend's `node_load` when it has one (every built-in
backend does); failed and retried come from the run's error records: an attempt followed
by a retry (or a lease that expired) is retried, one that a fallback took over or that
failed the run is failed, as the run's own counters count them (`split_errors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from floxide._codec import output_json
from floxide._errors import FloxideError, PayloadError
from floxide._ui._shape import Shape, from_names, shape_of_queue
from floxide.backends import Backend, ErrorRecord, RunMetrics, RunRecord, RunStatus
from floxide.backends._registry import masked_url

__all__ = [
    "ACTIONS",
    "LIST_LIMIT",
    "BackendSource",
    "RunPage",
    "Source",
    "allowed_actions",
    "decoded",
]

ACTIONS = ("pause", "resume", "cancel", "retry")
LIST_LIMIT = 500
"""Errors and outputs a run's detail holds at most (the newest errors, the first outputs)."""

RunPage = dict[str, Any]


class Source(Protocol):
    """Where the UI reads runs from: a backend or a checkpoint store."""

    url: str
    kind: str
    """"backend" or "checkpoints"."""
    statuses: Sequence[str]
    can_control: bool

    async def runs(self, status: str | None, offset: int, limit: int) -> RunPage: ...

    async def run(self, run_id: str, *, summary: bool = False) -> dict[str, Any] | None: ...

    async def view(
        self, run_id: str, *, summary: bool = False
    ) -> tuple[dict[str, Any], Shape] | None: ...

    async def context(self, run_id: str) -> Any: ...

    async def workers(self) -> list[dict[str, Any]]: ...

    async def control(self, run_id: str, action: str) -> str: ...


def decoded(raw: bytes) -> Any:
    """Stored JSON bytes as data; text that is not JSON as itself."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


def allowed_actions(status: RunStatus) -> list[str]:
    """The buttons a run of this status offers."""
    if status in (RunStatus.PENDING, RunStatus.RUNNING):
        return ["pause", "cancel"]
    if status is RunStatus.PAUSED:
        return ["resume", "cancel"]
    if status is RunStatus.FAILED:
        return ["retry"]
    return []


def _duration(rec: RunRecord, now: float) -> float | None:
    if not rec.created_at:
        return None
    end = rec.finished_at if rec.finished_at is not None else now
    return max(0.0, end - rec.created_at)


def _error_json(e: ErrorRecord) -> dict[str, Any]:
    return {
        "node": e.node,
        "item_id": e.item_id,
        "attempt": e.attempt,
        "kind": e.kind,
        "message": e.message,
        "at": e.at,
        "traceback": e.traceback,
        "handled": e.handled,
    }


def _fallback_nodes(shape: Shape | None) -> set[str]:
    if shape is None:
        return set()
    return {e.source for e in shape.edges if e.kind == "fallback"}


def split_errors(
    errors: Sequence[ErrorRecord], fallbacks: set[str], run_failed: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Per node: attempts that failed (a fallback took over, or the run failed) and
    attempts that were retried.

    An error record says `handled` both when a retry followed and when a fallback took
    over. At a node without a fallback it was a retry; at the one node with a fallback
    the run's own counter (`run_failed`: fallbacks plus the failure that ended the run)
    tells how many were fallbacks. With several fallback nodes, an item's last recorded
    attempt at a node is taken for its fallback.
    """
    failed: dict[str, int] = {}
    retried: dict[str, int] = {}

    def add(counts: dict[str, int], node: str, n: int = 1) -> None:
        if n:
            counts[node] = counts.get(node, 0) + n

    candidates: dict[str, list[ErrorRecord]] = {}
    for e in errors:
        if e.kind == "cancelled":
            continue
        if not e.handled:
            add(failed, e.node)
        elif e.kind == "lease" or e.node not in fallbacks:
            add(retried, e.node)
        else:
            candidates.setdefault(e.node, []).append(e)
    if len(candidates) == 1:
        node, records = next(iter(candidates.items()))
        taken = max(0, min(len(records), run_failed - sum(failed.values())))
        add(failed, node, taken)
        add(retried, node, len(records) - taken)
        return failed, retried
    for node, records in candidates.items():
        last: dict[str, int] = {}
        for e in records:
            last[e.item_id] = max(last.get(e.item_id, 0), e.attempt)
        taken = sum(e.attempt == last[e.item_id] for e in records)
        add(failed, node, taken)
        add(retried, node, len(records) - taken)
    return failed, retried


class BackendSource:
    """Runs of a distributed backend (`floxide ui --backend URL`)."""

    kind = "backend"
    statuses: Sequence[str] = tuple(s.value for s in RunStatus)

    def __init__(self, backend: Backend, *, read_only: bool) -> None:
        self.backend = backend
        self.url = masked_url(backend.url)
        self.can_control = not read_only

    async def runs(self, status: str | None, offset: int, limit: int) -> RunPage:
        paged = getattr(self.backend, "list_runs_page", None)
        if paged is not None:  # every built-in backend: one page read, not every run
            page, total = await paged(status, offset, limit)
        else:
            every = await self.backend.list_runs()
            if status:
                every = [r for r in every if r.status == status]
            page, total = every[offset : offset + limit], len(every)
        now = time.time()
        rows = []
        for rec in page:
            m = await self.backend.metrics(rec.run_id)
            rows.append(self._row(rec, m, now))
        return {
            "source": self.url,
            "total": total,
            "offset": offset,
            "limit": limit,
            "status": status,
            "runs": rows,
        }

    def _row(self, rec: RunRecord, m: RunMetrics, now: float) -> dict[str, Any]:
        return {
            "run_id": rec.run_id,
            "workflow": rec.workflow,
            "status": rec.status.value,
            "created_at": rec.created_at or None,
            "finished_at": rec.finished_at,
            "duration": _duration(rec, now),
            "progress": {
                "done": m.done,
                "known": m.total_known,
            },
            "pending": rec.pending,
            "error": rec.error,
        }

    async def _shape(
        self,
        rec: RunRecord,
        m: RunMetrics,
        load: Mapping[str, tuple[int, int]],
        errors: Sequence[ErrorRecord],
    ) -> Shape:
        found = shape_of_queue(rec.queue)
        if not isinstance(found, str):
            return found
        names = [*m.per_node, *load, *(e.node for e in errors)]
        return from_names(rec.workflow, names, f"graph not known: {found}")

    async def _load(self, run_id: str) -> dict[str, tuple[int, int]] | None:
        node_load = getattr(self.backend, "node_load", None)
        if node_load is None:
            return None
        loaded: dict[str, tuple[int, int]] = await node_load(run_id)
        return loaded

    async def run(self, run_id: str, *, summary: bool = False) -> dict[str, Any] | None:
        found = await self.view(run_id, summary=summary)
        return None if found is None else found[0]

    async def view(
        self, run_id: str, *, summary: bool = False
    ) -> tuple[dict[str, Any], Shape] | None:
        """The run's data and the shape of its graph (None for an unknown run)."""
        rec = await self.backend.get_run(run_id)
        if rec is None:
            return None
        m = await self.backend.metrics(run_id)
        load = await self._load(run_id)
        errors = await self.backend.errors(run_id)
        shape = await self._shape(rec, m, load or {}, errors)
        failed, retried = split_errors(errors, _fallback_nodes(shape), m.failed)
        node_names = [n.name for n in shape.nodes]
        node_names += [n for n in (*m.per_node, *(load or {}), *failed) if n not in node_names]
        nodes: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(node_names):
            nm = m.per_node.get(name)
            queued, in_flight = (load or {}).get(name, (0, 0))
            nodes[name] = {
                "done": nm.count if nm else 0,
                "in_flight": in_flight if load is not None else None,
                "queued": queued if load is not None else None,
                "failed": failed.get(name, 0),
                "retried": retried.get(name, 0),
                "mean_ms": round(nm.mean_seconds * 1000, 3) if nm else None,
                "max_ms": round(nm.max_seconds * 1000, 3) if nm else None,
            }
        now = time.time()
        out: dict[str, Any] = {
            "run_id": rec.run_id,
            "workflow": rec.workflow,
            "queue": rec.queue,
            "fingerprint": rec.fingerprint,
            "status": rec.status.value,
            "finished": rec.status.finished,
            "created_at": rec.created_at or None,
            "updated_at": rec.updated_at or None,
            "finished_at": rec.finished_at,
            "deadline": rec.deadline,
            "duration": _duration(rec, now),
            "error": rec.error,
            "error_kind": rec.error_kind,
            "progress": {
                "done": m.done,
                "known": m.total_known,
                "in_flight": m.in_flight,
                "queued": m.queued,
                "failed": m.failed,
                "retried": m.retried,
            },
            "nodes": nodes,
            "metrics": {
                "done": m.done,
                "failed": m.failed,
                "retried": m.retried,
                "in_flight": m.in_flight,
                "queued": m.queued,
                "per_node": {
                    n: {
                        "count": v.count,
                        "total_seconds": v.total_seconds,
                        "max_seconds": v.max_seconds,
                    }
                    for n, v in m.per_node.items()
                },
            },
            "graph_known": shape.known,
            "graph_note": shape.note,
            "actions": allowed_actions(rec.status) if self.can_control else [],
            "errors_total": len(errors),
        }
        outputs = await self.backend.outputs(run_id)
        out["outputs_total"] = len(outputs)
        if not summary:
            out["errors"] = [_error_json(e) for e in errors[-LIST_LIMIT:]]
            out["outputs"] = [
                {"position": list(o.position), "node": o.node, "value": _output_value(o.value)}
                for o in outputs[:LIST_LIMIT]
            ]
        return out, shape

    async def context(self, run_id: str) -> Any:
        ctx = await self.backend.context(run_id)
        return None if ctx is None else {"version": ctx.version, "value": decoded(ctx.data)}

    async def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "worker_id": w.worker_id,
                "graph": w.graph or w.queue,
                "queue": w.queue,
                "host": w.host,
                "pid": w.pid,
                "concurrency": w.concurrency,
                "in_flight": w.in_flight,
                "started_at": w.started_at,
                "last_seen": w.last_seen,
                "seen_seconds_ago": round(max(0.0, now - w.last_seen), 1),
            }
            for w in await self.backend.workers()
        ]

    async def control(self, run_id: str, action: str) -> str:
        """Apply a button's action; the run's status after it. `FloxideError` saying why
        when the run's status does not allow it."""
        from floxide.distributed._orchestrator import retry_run

        rec = await self.backend.get_run(run_id)
        if rec is None:
            raise KeyError(run_id)
        if action not in allowed_actions(rec.status):
            raise FloxideError(f"cannot {action} run {run_id}: it is {rec.status}")
        if action == "retry":
            return (await retry_run(self.backend, run_id)).status.value
        return (await self.backend.control(run_id, action)).status.value


def _output_value(raw: bytes) -> Any:
    try:
        return json.loads(output_json(raw, PayloadError))
    except (FloxideError, ValueError):
        return decoded(raw)
