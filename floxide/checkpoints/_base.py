"""The checkpoint store contract: the `CheckpointStore` protocol, the records it stores and
lists, and the errors every store raises in the same words.

A store keeps serialized bytes only, one record per run: a header (`meta`), the context,
the pending work items, the open join scopes, the values collected by those scopes and the
terminal outputs so far. Each of those is its own row, so a step's commit writes what the
step changed (the item it consumed, the items it made, the scopes it touched, the new
context) and never rewrites the rest of the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

from floxide._errors import CheckpointError

__all__ = [
    "CheckpointStatus",
    "CheckpointStore",
    "Commit",
    "RunInfo",
    "StoredCheckpoint",
    "missing_run",
    "run_exists",
    "stale_run",
]

CheckpointStatus = Literal["running", "finished", "failed"]


@attrs.frozen
class RunInfo:
    """A run as listed by `CheckpointStore.list_runs`."""

    run_id: str
    workflow: str
    status: CheckpointStatus
    steps: int
    """Commits so far (each covers one or more steps)."""
    pending: int
    """Work items still waiting."""
    error: str | None = None
    updated: float = 0.0
    """Unix time of the last commit."""


@attrs.frozen
class StoredCheckpoint:
    """Everything a store holds for one run, as bytes (see `floxide._checkpoint`)."""

    run_id: str
    workflow: str
    meta: bytes
    context: bytes
    status: CheckpointStatus = "running"
    error: str | None = None
    seq: int = 0
    items: Mapping[str, bytes] = attrs.field(factory=dict)
    scopes: Mapping[str, bytes] = attrs.field(factory=dict)
    contributions: Sequence[tuple[str, bytes]] = ()
    """(scope id, value) in commit order."""
    outputs: Sequence[bytes] = ()
    """In commit order."""


@attrs.frozen
class Commit:
    """What one commit changes; applied atomically, in this order of fields.

    New items are inserted before consumed ones are deleted, scope upserts come before
    scope deletions, and contributions to a deleted scope go with it, so several steps can
    be concatenated into one commit.
    """

    seq: int
    """The run's commit number after this commit; the store refuses any other than +1."""
    items: Sequence[tuple[str, bytes]] = ()
    done: Sequence[str] = ()
    context: bytes | None = None
    scopes: Sequence[tuple[str, bytes]] = ()
    contributions: Sequence[tuple[str, bytes]] = ()
    closed: Sequence[str] = ()
    outputs: Sequence[bytes] = ()
    status: CheckpointStatus | None = None
    error: str | None = None


@runtime_checkable
class CheckpointStore(Protocol):
    """Durable home of checkpointed runs. Every method is atomic; errors are
    `CheckpointError` and leave the store unchanged."""

    async def create_run(self, record: StoredCheckpoint) -> None:
        """Store a new run; a run with the same id already stored is an error."""
        ...

    async def commit(self, run_id: str, commit: Commit) -> None:
        """Apply `commit` to the run in one transaction (see `Commit`)."""
        ...

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        """Everything stored for `run_id`; an unknown id is an error."""
        ...

    async def list_runs(self) -> list[RunInfo]:
        """Every stored run, oldest first."""
        ...

    async def delete_run(self, run_id: str) -> bool:
        """Forget `run_id`; False when there was no such run."""
        ...


def missing_run(run_id: str) -> CheckpointError:
    """The error for a run the store does not hold."""
    return CheckpointError(f"no checkpoint for run {run_id!r} in this store")


def run_exists(run_id: str) -> CheckpointError:
    """The error for creating a run the store already holds."""
    return CheckpointError(
        f"run {run_id!r} already has a checkpoint in this store; resume it with "
        f"`resume(store, {run_id!r})` or delete it first (it was left unchanged)"
    )


def stale_run(run_id: str, expected: int, found: int) -> CheckpointError:
    """The error for a commit whose sequence number is not the stored one plus one."""
    return CheckpointError(
        f"run {run_id!r} was changed by someone else (commit {found} stored, this run "
        f"expected {expected}); is it being resumed twice? Nothing was written"
    )
