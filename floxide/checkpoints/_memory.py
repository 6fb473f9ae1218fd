"""`InMemoryCheckpointStore`: checkpoints as bytes in this process's dictionaries."""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
import trio

from floxide._errors import CheckpointError
from floxide.checkpoints._base import (
    CheckpointStatus,
    Commit,
    RunInfo,
    StoredCheckpoint,
    missing_run,
    run_exists,
    stale_run,
)

__all__ = ["InMemoryCheckpointStore"]


@attrs.define
class _MemRun:
    """One run as the memory store keeps it: bytes, and when it was created and changed."""

    workflow: str
    meta: bytes
    context: bytes
    status: CheckpointStatus
    error: str | None
    seq: int
    items: dict[str, bytes]
    scopes: dict[str, bytes]
    contributions: dict[str, list[bytes]]
    outputs: list[bytes]
    created: float
    updated: float


class InMemoryCheckpointStore:
    """A `CheckpointStore` in this process's memory, holding serialized bytes only.

    Nothing stored is a live object, so loading a run rebuilds everything from bytes,
    exactly as from a file. Useful in tests and for runs that should survive cancellation
    but not the process.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _MemRun] = {}

    async def create_run(self, record: StoredCheckpoint) -> None:
        await trio.lowlevel.checkpoint()
        if record.run_id in self._runs:
            raise run_exists(record.run_id)
        now = time.time()
        contributions: dict[str, list[bytes]] = {}
        for scope_id, data in record.contributions:
            contributions.setdefault(scope_id, []).append(bytes(data))
        self._runs[record.run_id] = _MemRun(
            workflow=record.workflow,
            meta=bytes(record.meta),
            context=bytes(record.context),
            status=record.status,
            error=record.error,
            seq=record.seq,
            items={k: bytes(v) for k, v in record.items.items()},
            scopes={k: bytes(v) for k, v in record.scopes.items()},
            contributions=contributions,
            outputs=[bytes(v) for v in record.outputs],
            created=now,
            updated=now,
        )

    async def commit(self, run_id: str, commit: Commit) -> None:
        await trio.lowlevel.checkpoint()
        self._apply(
            run_id,
            commit.seq,
            commit.items,
            commit.done,
            commit.context,
            commit.scopes,
            commit.contributions,
            commit.closed,
            commit.outputs,
            commit.status,
            commit.error,
        )

    def _apply(
        self,
        run_id: str,
        seq: int,
        new: Sequence[tuple[str, bytes]],
        done: Sequence[str],
        context: bytes | None,
        scopes: Sequence[tuple[str, bytes]],
        contributions: Sequence[tuple[str, bytes]],
        closed: Sequence[str],
        outputs: Sequence[bytes],
        status: CheckpointStatus | None = None,
        error: str | None = None,
    ) -> None:
        """`commit` with the fields of a `Commit`, without the trio checkpoint: applying
        it never waits, so it is atomic. Checkpointed runs call it directly, with no
        `Commit` object and no task switch per step.
        """
        run = self._runs.get(run_id)
        if run is None:
            raise missing_run(run_id)
        if seq != run.seq + 1:
            raise stale_run(run_id, seq - 1, run.seq)
        # Check everything first, then apply: a refused commit changes nothing. Both cost
        # what the commit holds, not what the run holds.
        items = run.items
        added = dict(new) if len(new) != 1 else {new[0][0]: new[0][1]}
        if len(added) != len(new):
            raise CheckpointError(f"run {run_id!r}: a new work item is already stored")
        for k in added:
            if k in items:
                raise CheckpointError(f"run {run_id!r}: a new work item is already stored")
        if len(done) > 1 and len(set(done)) != len(done):
            raise CheckpointError(f"run {run_id!r}: a consumed work item was not pending")
        for k in done:
            if k not in items and k not in added:
                raise CheckpointError(f"run {run_id!r}: a consumed work item was not pending")
        for k, data in added.items():
            items[k] = data if type(data) is bytes else bytes(data)
        for k in done:
            del items[k]
        if scopes:
            run.scopes.update((k, bytes(v)) for k, v in scopes)
        for scope_id, data in contributions:
            run.contributions.setdefault(scope_id, []).append(bytes(data))
        for scope_id in closed:
            run.scopes.pop(scope_id, None)
            run.contributions.pop(scope_id, None)
        if outputs:
            run.outputs.extend(bytes(o) for o in outputs)
        if context is not None:
            run.context = bytes(context)
        if status is not None:
            run.status = status
            run.error = error
        run.seq = seq
        run.updated = time.time()

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        await trio.lowlevel.checkpoint()
        run = self._runs.get(run_id)
        if run is None:
            raise missing_run(run_id)
        return StoredCheckpoint(
            run_id=run_id,
            workflow=run.workflow,
            meta=run.meta,
            context=run.context,
            status=run.status,
            error=run.error,
            seq=run.seq,
            items=dict(run.items),
            scopes=dict(run.scopes),
            contributions=tuple((k, v) for k, vs in run.contributions.items() for v in vs),
            outputs=tuple(run.outputs),
        )

    async def list_runs(self) -> list[RunInfo]:
        await trio.lowlevel.checkpoint()
        return [
            RunInfo(rid, r.workflow, r.status, r.seq, len(r.items), r.error, r.updated)
            for rid, r in sorted(self._runs.items(), key=lambda kv: kv[1].created)
        ]

    async def delete_run(self, run_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._runs.pop(run_id, None) is not None
