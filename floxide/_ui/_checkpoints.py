"""The UI's data for a checkpoint store (`floxide ui --checkpoints runs.db`).

A checkpointed run's header holds its graph description, so it is drawn exactly (from
the workflow's class when its module imports here, for node kinds and composites); its
stored work items, join scopes, collected values and outputs are plain JSON, read here
without the workflow's types. A checkpointed run is steered by the program that resumes
it (`Workflow.resume`), not by the UI: the page shows it and offers no button. Opening the
store reads it only (a missing file is an error, never created).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from floxide._errors import CheckpointError
from floxide._ui._data import RunPage, decoded
from floxide._ui._shape import Shape, from_description, from_names, shape_of_queue
from floxide.checkpoints import CheckpointStore, RunInfo, StoredCheckpoint

__all__ = ["CheckpointSource"]

_STATUS = {"running": "running", "finished": "completed", "failed": "failed"}


def _meta(record: StoredCheckpoint) -> dict[str, Any]:
    meta = decoded(record.meta)
    return meta if isinstance(meta, dict) else {}


class CheckpointSource:
    """Runs of a checkpoint store: listed, drawn and read, never changed."""

    kind = "checkpoints"
    statuses: Sequence[str] = ("running", "completed", "failed")
    can_control = False

    def __init__(self, store: CheckpointStore, url: str) -> None:
        self.store = store
        self.url = url

    async def runs(self, status: str | None, offset: int, limit: int) -> RunPage:
        every = list(reversed(await self.store.list_runs()))  # newest first
        if status:
            every = [r for r in every if _STATUS.get(r.status) == status]
        return {
            "source": self.url,
            "total": len(every),
            "offset": offset,
            "limit": limit,
            "status": status,
            "runs": [self._row(r) for r in every[offset : offset + limit]],
        }

    def _row(self, r: RunInfo) -> dict[str, Any]:
        return {
            "run_id": r.run_id,
            "workflow": r.workflow,
            "status": _STATUS.get(r.status, r.status),
            "created_at": None,
            "finished_at": r.updated if r.status != "running" else None,
            "updated_at": r.updated or None,
            "duration": None,
            "progress": {"done": r.steps, "known": r.steps + r.pending},
            "pending": r.pending,
            "error": r.error,
        }

    async def _load(self, run_id: str) -> StoredCheckpoint | None:
        try:
            return await self.store.load_run(run_id)
        except CheckpointError:
            if not any(r.run_id == run_id for r in await self.store.list_runs()):
                return None
            raise

    def _shape(self, record: StoredCheckpoint, nodes: Sequence[str]) -> Shape:
        meta = _meta(record)
        module, name, fingerprint = (
            meta.get("module"),
            meta.get("workflow"),
            meta.get("fingerprint"),
        )
        if all(isinstance(v, str) for v in (module, name, fingerprint)):
            found = shape_of_queue(f"{module}.{name}@{fingerprint}")
            if not isinstance(found, str):  # the class itself: node kinds, composites
                return found
        graph = meta.get("graph")
        if isinstance(graph, dict):
            return from_description(graph)
        return from_names(record.workflow, nodes, "graph not known: the header holds none")

    async def run(self, run_id: str, *, summary: bool = False) -> dict[str, Any] | None:
        found = await self.view(run_id, summary=summary)
        return None if found is None else found[0]

    async def view(
        self, run_id: str, *, summary: bool = False
    ) -> tuple[dict[str, Any], Shape] | None:
        """The run's data and the shape of its graph (None for an unknown run)."""
        record = await self._load(run_id)
        if record is None:
            return None
        meta = _meta(record)
        items = [decoded(v) for v in record.items.values()]
        pending: dict[str, int] = {}
        for it in items:
            node = str(it.get("node")) if isinstance(it, dict) else "?"
            pending[node] = pending.get(node, 0) + 1
        outputs = [decoded(v) for v in record.outputs]
        produced: dict[str, int] = {}
        for o in outputs:
            if isinstance(o, dict):
                produced[str(o.get("node"))] = produced.get(str(o.get("node")), 0) + 1
        shape = self._shape(record, [*pending, *produced])
        names = dict.fromkeys([*(n.name for n in shape.nodes), *pending])
        nodes = {
            n: {
                "done": None,
                "in_flight": 0,
                "queued": pending.get(n, 0),
                "failed": 0,
                "retried": 0,
                "outputs": produced.get(n, 0),
            }
            for n in names
        }
        status = _STATUS.get(record.status, record.status)
        created = meta.get("created")
        created_at = float(created) if isinstance(created, int | float) else None
        out: dict[str, Any] = {
            "run_id": record.run_id,
            "workflow": record.workflow,
            "queue": None,
            "fingerprint": meta.get("fingerprint"),
            "status": status,
            "finished": status != "running",
            "created_at": created_at,
            "updated_at": None,
            "finished_at": None,
            "deadline": None,
            "duration": None,
            "error": record.error,
            "error_kind": None,
            "progress": {
                "done": record.seq,
                "known": record.seq + len(items),
                "in_flight": 0,
                "queued": len(items),
                "failed": 1 if record.status == "failed" else 0,
                "retried": 0,
            },
            "nodes": nodes,
            "graph_known": shape.known,
            "graph_note": shape.note,
            "actions": [],
            "errors_total": 1 if record.error else 0,
            "outputs_total": len(outputs),
            "timeout": meta.get("timeout"),
            "steps": record.seq,
        }
        if not summary:
            out["errors"] = (
                [
                    {
                        "node": "",
                        "item_id": "",
                        "attempt": 0,
                        "kind": "run",
                        "handled": False,
                        "message": record.error,
                        "at": 0.0,
                        "traceback": None,
                    }
                ]
                if record.error
                else []
            )
            out["outputs"] = [
                {
                    "position": o.get("position"),
                    "node": o.get("node"),
                    "value": o.get("value"),
                }
                if isinstance(o, dict)
                else {"position": None, "node": None, "value": o}
                for o in outputs
            ]
            out["pending_items"] = [
                {"item_id": k, **(v if isinstance(v, dict) else {"value": v})}
                for k, v in zip(record.items, items, strict=True)
            ]
            out["joins"] = self._joins(record)
        return out, shape

    def _joins(self, record: StoredCheckpoint) -> list[dict[str, Any]]:
        """Each open join scope: its source, the joins waiting on it, how many branches
        are still open and what each join collected so far."""
        collected: dict[str, dict[str, int]] = {}
        for scope_id, raw in record.contributions:
            value = decoded(raw)
            join = str(value.get("join")) if isinstance(value, dict) else "?"
            per = collected.setdefault(scope_id, {})
            per[join] = per.get(join, 0) + 1
        out = []
        for scope_id, raw in record.scopes.items():
            scope = decoded(raw)
            scope = scope if isinstance(scope, dict) else {}
            out.append(
                {
                    "scope": scope_id,
                    "source": scope.get("source"),
                    "joins": scope.get("joins"),
                    "open": scope.get("open"),
                    "collected": collected.get(scope_id, {}),
                }
            )
        return out

    async def context(self, run_id: str) -> Any:
        record = await self._load(run_id)
        return None if record is None else {"version": record.seq, "value": decoded(record.context)}

    async def workers(self) -> list[dict[str, Any]]:
        return []

    async def control(self, run_id: str, action: str) -> str:
        raise CheckpointError("a checkpointed run is steered by the program that resumes it")
