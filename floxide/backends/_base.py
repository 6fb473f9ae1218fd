"""The backend contract: what a distributed run stores and the atomic operations on it.

A backend holds runs (status, input, context, outputs, errors, metrics), their work items
(queued, delayed or leased) and join state, plus the liveness of workers. It knows nothing
about workflows: payloads, contexts and join scopes are opaque bytes that the workers encode.
Every operation that changes a run is atomic; the central one is `commit`, applied at most
once per work item and only while the committing worker still holds the item's lease
(its fencing token is the current one) and the run is still live.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs

from floxide import _step
from floxide._errors import UnreadableDataError

__all__ = [
    "UNREADABLE_KIND",
    "Backend",
    "CommitPlan",
    "CommitResult",
    "ContextUpdate",
    "ContextWrite",
    "Contribution",
    "ErrorRecord",
    "Lease",
    "NewItem",
    "NewRun",
    "NodeMetrics",
    "Output",
    "RunContext",
    "RunMetrics",
    "RunRecord",
    "RunStatus",
    "ScopeOpen",
    "ScopeTable",
    "WorkerInfo",
    "context_write",
    "count_scopes",
    "missing_scope",
    "stores_contributions",
    "unreadable",
    "unreadable_error",
    "unreadable_record",
]


class RunStatus(enum.StrEnum):
    """Where a distributed run is in its life."""

    PENDING = "pending"
    """Created; no work item has been leased yet."""
    RUNNING = "running"
    PAUSED = "paused"
    """No new item is leased; items in flight may still commit."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for completed, failed and cancelled runs (nothing will change any more)."""
        return self in _FINISHED

    @property
    def live(self) -> bool:
        """True while the run's items may still commit (pending, running, paused)."""
        return not self.finished


_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class CommitResult(enum.StrEnum):
    """What happened to a `commit`, `retry` or `release`."""

    COMMITTED = "committed"
    LOST = "lost"
    """The lease is no longer this worker's (expired and re-leased) or the item is done."""
    INACTIVE = "inactive"
    """The run is finished (cancelled, failed or completed): nothing was applied."""


Position = tuple[int, ...]


@attrs.frozen
class NewItem:
    """A work item to enqueue: `payload` is the encoded item, opaque to the backend."""

    item_id: str
    node: str
    payload: bytes
    attempt: int = 1
    delay: float = 0.0
    """Seconds before the item may be leased (durable delayed retries)."""


@attrs.frozen
class NewRun:
    """Everything `Backend.create_run` stores for a new run."""

    run_id: str
    workflow: str
    queue: str
    fingerprint: str
    input: bytes
    context: bytes
    items: Sequence[NewItem]
    deadline: float | None = None
    """Wall-clock time (`time.time()`) after which the run fails with a timeout."""


@attrs.frozen
class RunRecord:
    """A run as stored: status, timestamps and what went wrong, if anything."""

    run_id: str
    workflow: str
    queue: str
    fingerprint: str
    status: RunStatus
    input: bytes
    created_at: float
    updated_at: float
    finished_at: float | None = None
    deadline: float | None = None
    error: str | None = None
    error_kind: str | None = None
    """"node", "timeout", "cancelled", "lease" or "backend" (its stored data cannot be read:
    `unreadable`) when the run failed or was cancelled."""
    pending: int = 0
    """Work items not yet done (queued, delayed or leased)."""


@attrs.frozen
class RunContext:
    """A run's stored context and its version (bumped by every commit that writes it).

    In a backend that stores contributions (`stores_contributions`), `data` is the base
    and `contributions` the (item id, contribution) pairs not yet folded into it; the run's
    context is their fold (`floxide._step.fold_context`), which readers compute. Other
    backends always give no contributions.
    """

    data: bytes
    version: int = 0
    contributions: Sequence[tuple[str, bytes]] = ()


@attrs.frozen
class Lease:
    """A work item leased to one worker until `deadline`; `token` fences its commit."""

    run_id: str
    item_id: str
    node: str
    payload: bytes
    attempt: int
    worker_id: str
    token: int
    deadline: float
    last_error: str | None = None
    """Why the previous attempt ended, when it did not commit (e.g. its lease expired)."""
    expired: bool = False
    """True when the previous attempt's lease expired (its worker died or hung)."""
    context: RunContext | None = None
    """The run's context when the item was leased (saves the worker a read), if given."""
    run_deadline: float | None = None
    """The run's deadline (`time.time()`; `math.inf` when it has none), if given with the
    lease (saves the worker a read of the run); None when not given."""


@attrs.frozen
class ContextUpdate:
    """How a step changes the run's context.

    `value` is the context after the step, which started from version `base_version`. If
    the stored context is still at that version, `value` is written; otherwise `merge`
    (given the stored context, returning the merged one) is applied to the stored context,
    or, without `merge`, `value` replaces it (the last commit wins).
    """

    value: bytes
    base_version: int
    merge: Callable[[bytes], bytes] | None = None
    folded: Sequence[tuple[str, bytes]] = ()
    """The contributions the step's read folded into `value` (backends that store
    contributions): when `value` is written at `base_version`, those still stored unchanged
    are removed; when it is merged (a stale base), they are kept."""


@attrs.frozen
class Contribution:
    """A step's change to a mergeable context as what it added (backends that store
    contributions only; see `RunContext`).

    `data` (None: nothing) is stored under the item's id with no version check, replacing
    that item's earlier contribution, so concurrent steps never conflict and a duplicate
    counts once. `compact`, when given, is the context the step read folded whole, with
    the contributions folded into it: written as the base, and those contributions still
    stored unchanged removed, only if the base is still at `compact.base_version` (else
    skipped: a concurrent compaction won). Its `merge` is unused.
    """

    data: bytes | None
    compact: ContextUpdate | None = None


@attrs.frozen
class ScopeOpen:
    """A join scope opened by a step: `open` items carry it; `fired` run when none is left."""

    scope_id: str
    open: int
    fired: Sequence[NewItem]


@attrs.frozen
class Output:
    """A terminal output of a run, at its branch position."""

    position: Position
    node: str
    value: bytes


@attrs.frozen
class ErrorRecord:
    """One failed attempt (kept for `errors`), or the failure that ended a run."""

    node: str
    item_id: str
    attempt: int
    kind: str
    """"node" (raised or aborted), "lease" (lease expired), "timeout" or "cancelled"."""
    message: str
    at: float = 0.0
    traceback: str | None = None
    """The formatted traceback of the failed attempt (the node's own frames included)."""
    handled: bool = False
    """True when the run went on: a fallback took over or a retry followed."""


@attrs.frozen
class CommitPlan:
    """The effects of one step, applied atomically by `Backend.commit`.

    `context` updates the stored context; `items` are the successors; `outputs` the terminal
    outputs; `collect` appends the values joins will receive to append-only collections
    (kept apart from the scopes, so a commit costs the same however much a join has
    collected) and `drop_collected` deletes the collections a fired join consumed; a
    `failure` fails the run.

    Join scopes are counted by the backend, so concurrent commits never contend on them:
    `open_scope` registers a scope opened by this step; then, for each scope in `scopes`
    (the item's open scopes, innermost first), the count of live items carrying it changes
    by `len(items) - 1` plus the join items fired so far by inner scopes in this commit;
    a scope whose count reaches zero is closed and its `fired` items are enqueued.
    """

    context: ContextUpdate | None = None
    open_scope: ScopeOpen | None = None
    contribution: Contribution | None = None
    """Instead of `context`: the step's contribution (only given to a backend that
    `stores_contributions`)."""
    scopes: Sequence[str] = ()
    items: Sequence[NewItem] = ()
    outputs: Sequence[Output] = ()
    collect: Sequence[tuple[str, bytes]] = ()
    """Values appended to join collections, as (collection key, encoded value)."""
    drop_collected: Sequence[str] = ()
    """Join collections consumed by this step (deleted)."""
    failure: ErrorRecord | None = None
    handled: Sequence[ErrorRecord] = ()
    """Failed attempts a fallback took over: logged with the step and counted as failed."""
    duration: float = 0.0
    """Seconds the node ran (per-node latency metrics)."""


class ScopeTable(_step.ScopeTable[NewItem], Protocol):
    """Open join-scope counts of one run, as a backend stores them, with the items each
    fires (`add_open` and `close` are what the rulebook's arithmetic uses)."""

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        """Register a scope a step opened: `count` items carry it, `fired` run at its close."""


def count_scopes(plan: CommitPlan, table: ScopeTable) -> list[NewItem]:
    """Apply a plan's join bookkeeping; return the join items it fires.

    Registers the scope the step opened, then counts the step in the item's scopes with
    `floxide._step.count_scopes`, the one join arithmetic (the Redis commit script ports it).
    """
    if plan.open_scope is not None:
        scope = plan.open_scope
        table.open(scope.scope_id, scope.open, scope.fired)
    return _step.count_scopes(table, plan.scopes, len(plan.items))


@attrs.frozen
class ContextWrite:
    """What a commit does to a stored context: write `base` (bumping the version; None:
    keep it), then remove the contributions `drop`, then store `put` (item id, data)."""

    base: bytes | None = None
    drop: Sequence[str] = ()
    put: tuple[str, bytes] | None = None


def context_write(
    plan: CommitPlan,
    item_id: str,
    version: int,
    base: Callable[[], bytes],
    stored: Callable[[str], bytes | None],
) -> ContextWrite | None:
    """How `plan` changes a context stored at `version` (`base()` reads the base,
    `stored(key)` a contribution): the one rule of `ContextUpdate` and `Contribution`,
    applied by the in-process backends (the Redis commit script ports it). Errors of the
    context's merge propagate (nothing is applied)."""
    update = plan.context
    if update is not None:
        if update.merge is not None and version != update.base_version:
            return ContextWrite(update.merge(base()))  # contributions stay: they fold on top
        return ContextWrite(update.value, [k for k, v in update.folded if stored(k) == v])
    contribution = plan.contribution
    if contribution is None:
        return None
    put = None if contribution.data is None else (item_id, contribution.data)
    compact = contribution.compact
    if compact is None or compact.base_version != version:
        return ContextWrite(None, (), put)
    return ContextWrite(compact.value, [k for k, v in compact.folded if stored(k) == v], put)


def stores_contributions(backend: object) -> bool:
    """Whether `backend` stores contributions (its class sets `stores_contributions =
    True`): it applies `CommitPlan.contribution` and gives `RunContext.contributions`.
    Workers send contributions only to such backends, so any other stays correct."""
    return getattr(backend, "stores_contributions", False) is True


UNREADABLE_KIND = "backend"
"""The `error_kind` of a run failed because its stored data cannot be read."""


def unreadable(run_id: str, what: str) -> str:
    """Why a run whose stored `what` (a field, an entry) cannot be read failed; the Lua
    scripts of the Redis backend write the same words."""
    return f"stored data of run {run_id} cannot be read: {what}"


def missing_scope(scope_id: str) -> UnreadableDataError:
    """A live run's step carries a join scope that has no stored count: the run's join
    state was changed by another hand, so the run fails (`unreadable_error`), not the step."""
    return UnreadableDataError(f"join scope {scope_id!r} (missing)")


def unreadable_error(lease: Lease, what: str) -> ErrorRecord:
    """The error that fails a run whose stored `what` a commit of `lease` could not read."""
    return ErrorRecord(
        lease.node,
        lease.item_id,
        lease.attempt,
        UNREADABLE_KIND,
        unreadable(lease.run_id, what),
        time.time(),
    )


def unreadable_record(run_id: str, what: str, workflow: str = "?") -> RunRecord:
    """The record shown for a run whose stored record cannot be read: failed, saying why."""
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        queue="",
        fingerprint="",
        status=RunStatus.FAILED,
        input=b"",
        created_at=0.0,
        updated_at=0.0,
        finished_at=0.0,
        deadline=None,
        error=unreadable(run_id, what),
        error_kind=UNREADABLE_KIND,
        pending=0,
    )


@attrs.frozen
class NodeMetrics:
    """Steps committed for one node and how long they took."""

    count: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.count if self.count else 0.0


@attrs.frozen
class RunMetrics:
    """Counters of a run: items done, failed, retried, in flight, queued and per-node latency."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    queued: int = 0
    per_node: Mapping[str, NodeMetrics] = attrs.field(factory=dict)

    @property
    def total_known(self) -> int:
        """Items done plus items still pending: the run's size as far as it is known now."""
        return self.done + self.in_flight + self.queued


@attrs.frozen
class WorkerInfo:
    """A worker process as registered in the backend."""

    worker_id: str
    queue: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    concurrency: int = 1
    graph: str = ""
    """The workflow the worker serves: its qualified name and graph fingerprint."""
    in_flight: int = 0
    """Items it is running now."""


@runtime_checkable
class Backend(Protocol):
    """Storage and atomic operations for distributed runs (memory, SQLite or Redis).

    Times are wall-clock seconds (`time.time()`), so processes on one host agree; hosts
    sharing a Redis server should keep their clocks in sync (NTP), as with any lease.
    """

    url: str

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""

    def connected(self) -> AbstractAsyncContextManager[None]:
        """Hold connections open for the operations of this task and the tasks it starts.

        Outside it every operation still works (Redis then connects per operation).
        """

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        """Store a new run with its first items; `BackendError` if the run id exists."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        """Known runs (optionally of one queue), newest first."""

    async def control(self, run_id: str, action: str) -> RunRecord:
        """Apply "cancel", "pause" or "resume" atomically; returns the run after it.

        Cancelling or pausing a finished run changes nothing. `KeyError` for an unknown run.
        Once `control(..., "cancel")` returns, no commit of that run is applied.
        """

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        """Fail a live run with `error` (its kind becomes the run's error kind).

        A failed run keeps its work state (items, join scopes, collected values) for
        `retry_run`; the failing item is kept too.
        """

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        """Make a `FAILED` run live again, atomically: its kept items are queued as fresh
        attempts (attempt 1), its error is cleared and its deadline becomes `deadline`.

        `KeyError` for an unknown run; a run in any other status is returned unchanged.
        """

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        """Return the run once it is finished, or its record after `timeout` seconds."""

    async def outputs(self, run_id: str) -> list[Output]:
        """Terminal outputs so far, in branch order."""

    async def context(self, run_id: str) -> RunContext | None:
        """The run's current (merged) context and its version."""

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        """The values appended to join collection `key` (in no particular order)."""

    async def errors(self, run_id: str) -> list[ErrorRecord]: ...

    async def metrics(self, run_id: str) -> RunMetrics: ...

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        """Lease up to `limit` ready items of live, unpaused runs of `queue`.

        Waits up to `wait` seconds for work when none is ready. Items of finished runs are
        dropped; a pending run becomes running.
        """

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        """Extend each lease still held; False for a lease that was lost."""

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        """Apply `plan` atomically if the lease is still held and the run live.

        The item is marked done, the run completes when no item is left and fails when the
        plan carries a failure. Errors raised by the plan's context merge propagate and
        nothing is applied.
        """

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        """`commit`, then lease up to `limit` ready items of the run's queue to the same worker.

        One atomic operation: when the commit is applied, items are leased as `lease` would
        lease them (without waiting), so a worker with room for more work saves a round
        trip, and a chain step needs one operation instead of commit, wake-up and lease.
        Nothing is leased when the commit is not applied. A backend may also lease nothing
        when the commit made no item ready, if a separate, batched `lease` is cheaper there.
        """

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        """Give the item back as its next attempt, leasable after `delay` seconds."""

    async def release(self, lease: Lease) -> CommitResult:
        """Give the item back unchanged (same attempt), leasable at once (graceful stop)."""

    async def reap(self) -> int:
        """Return items whose lease expired to the queue (next attempt); purge expired runs."""

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None: ...

    async def unregister_worker(self, worker_id: str) -> None: ...

    async def workers(self) -> list[WorkerInfo]:
        """Workers seen recently (a worker not seen for a while is dropped)."""
