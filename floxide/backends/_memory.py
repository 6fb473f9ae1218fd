"""The in-process backend: everything in dictionaries, for tests and single-process use.

Every operation runs without awaiting inside its critical section, so on trio each one is
atomic. It still stores bytes only (never live objects), so a workflow behaves the same here
as on SQLite or Redis. `memory://NAME` URLs share one store per name within a process.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import attrs
import trio

from floxide._errors import BackendError
from floxide._step import DEADLINE_PASSED
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
    ContextWrite,
    ErrorRecord,
    Lease,
    NewItem,
    NewRun,
    NodeMetrics,
    Output,
    RunContext,
    RunMetrics,
    RunRecord,
    RunStatus,
    WorkerInfo,
    context_write,
    count_scopes,
)

__all__ = ["MemoryBackend"]

_Key = tuple[str, str]


@attrs.define
class _Item:
    run_id: str
    item_id: str
    node: str
    payload: bytes
    attempt: int
    state: str = "queued"  # queued | delayed | leased | parked | done
    worker_id: str = ""
    token: int = 0
    deadline: float = 0.0
    last_error: str | None = None
    expired: bool = False


@attrs.define
class _Run:
    record: RunRecord
    context: bytes
    scopes: dict[str, tuple[int, Sequence[NewItem]]] = attrs.Factory(dict)
    collected: dict[str, list[bytes]] = attrs.Factory(dict)
    version: int = 0
    contributions: dict[str, bytes] = attrs.Factory(dict)
    outputs: list[Output] = attrs.Factory(list)
    errors: list[ErrorRecord] = attrs.Factory(list)
    done: int = 0
    failed: int = 0
    retried: int = 0
    per_node: dict[str, NodeMetrics] = attrs.Factory(dict)
    live_items: set[str] = attrs.Factory(set)
    parked: list[str] = attrs.Factory(list)


def _context(run: _Run) -> RunContext:
    return RunContext(run.context, run.version, tuple(run.contributions.items()))


def add_latency(per_node: dict[str, NodeMetrics], node: str, seconds: float) -> None:
    """Fold one step's duration into the per-node metrics."""
    m = per_node.get(node, NodeMetrics())
    per_node[node] = NodeMetrics(
        m.count + 1, m.total_seconds + seconds, max(m.max_seconds, seconds)
    )


class _Scopes:
    def __init__(self, scopes: dict[str, tuple[int, Sequence[NewItem]]]) -> None:
        self.scopes = scopes

    def add_open(self, scope_id: str, delta: int) -> int:
        count, fired = self.scopes[scope_id]
        self.scopes[scope_id] = (count + delta, fired)
        return count + delta

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.scopes[scope_id] = (count, fired)

    def close(self, scope_id: str) -> Sequence[NewItem]:
        return self.scopes.pop(scope_id)[1]


class _Store:
    """The shared state behind every `MemoryBackend` opened on one name."""

    def __init__(self) -> None:
        self.runs: dict[str, _Run] = {}
        self.items: dict[_Key, _Item] = {}
        self.ready: dict[str, deque[_Key]] = {}
        self.delayed: list[tuple[float, int, _Key]] = []
        self.leased: dict[_Key, _Item] = {}
        self.workers: dict[str, WorkerInfo] = {}
        self.tokens = itertools.count(1)
        self.seq = itertools.count()
        self.changed = trio.Event()


_NAMED: dict[str, _Store] = {}


class MemoryBackend:
    """Backend keeping runs in process memory (`memory://` or `memory://NAME`)."""

    stores_contributions = True

    def __init__(
        self, url: str = "memory://", *, ttl: float = 7 * 86400, worker_ttl: float = 30.0
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.worker_ttl = worker_ttl
        name = url.removeprefix("memory://").strip("/")
        self._s = _NAMED.setdefault(name, _Store()) if name else _Store()

    def connected(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def aclose(self) -> None:
        return None

    # -- helpers ------------------------------------------------------------------------
    def _notify(self) -> None:
        self._s.changed.set()
        self._s.changed = trio.Event()

    def _enqueue(self, run: _Run, it: NewItem, now: float) -> None:
        key = (run.record.run_id, it.item_id)
        item = _Item(run.record.run_id, it.item_id, it.node, it.payload, it.attempt)
        self._s.items[key] = item
        run.live_items.add(it.item_id)
        self._schedule(run, item, it.delay, now)

    def _schedule(self, run: _Run, item: _Item, delay: float, now: float) -> None:
        key = (item.run_id, item.item_id)
        if delay > 0:
            item.state = "delayed"
            heapq.heappush(self._s.delayed, (now + delay, next(self._s.seq), key))
        else:
            item.state = "queued"
            self._s.ready.setdefault(run.record.queue, deque()).append(key)

    def _touch(self, run: _Run, now: float, **changes: object) -> None:
        status = changes.get("status", run.record.status)
        if isinstance(status, RunStatus) and status.finished and run.record.finished_at is None:
            changes["finished_at"] = now
        run.record = attrs.evolve(run.record, updated_at=now, **changes)  # type: ignore[arg-type]

    def _finish_items(self, run: _Run) -> None:
        if run.record.status is RunStatus.FAILED:  # kept for `retry_run`, out of every queue
            for item_id in run.live_items:
                item = self._s.items.get((run.record.run_id, item_id))
                if item is not None:
                    self._s.leased.pop((item.run_id, item.item_id), None)
                    item.state = "failed"
            run.parked.clear()
            return
        self._drop_items(run)

    def _drop_items(self, run: _Run) -> None:
        for item_id in run.live_items:
            item = self._s.items.pop((run.record.run_id, item_id), None)
            if item is not None:
                self._s.leased.pop((item.run_id, item.item_id), None)
                item.state = "done"
        run.live_items.clear()
        run.parked.clear()
        run.scopes.clear()
        run.collected.clear()

    def _lease_ok(self, lease: Lease) -> tuple[_Run | None, _Item | None]:
        run = self._s.runs.get(lease.run_id)
        item = self._s.items.get((lease.run_id, lease.item_id))
        if item is None or item.state != "leased" or item.token != lease.token:
            item = None
        return run, item

    def _promote(self, now: float) -> None:
        s = self._s
        while s.delayed and s.delayed[0][0] <= now:
            _, _, key = heapq.heappop(s.delayed)
            item = s.items.get(key)
            run = s.runs.get(key[0])
            if item is not None and run is not None and item.state == "delayed":
                item.state = "queued"
                s.ready.setdefault(run.record.queue, deque()).append(key)

    def _record(self, run_id: str) -> _Run:
        run = self._s.runs.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        if run.run_id in self._s.runs:
            raise BackendError(f"run {run.run_id!r} already exists in {self.url}")
        now = time.time()
        rec = RunRecord(
            run_id=run.run_id,
            workflow=run.workflow,
            queue=run.queue,
            fingerprint=run.fingerprint,
            status=RunStatus.PENDING,
            input=run.input,
            created_at=now,
            updated_at=now,
            deadline=run.deadline,
            pending=len(run.items),
        )
        r = _Run(rec, run.context)
        self._s.runs[run.run_id] = r
        for it in run.items:
            self._enqueue(r, it, now)
        if not run.items:
            self._touch(r, now, status=RunStatus.COMPLETED)
        self._notify()

    async def get_run(self, run_id: str) -> RunRecord | None:
        run = self._s.runs.get(run_id)
        return None if run is None else run.record

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        recs = [r.record for r in self._s.runs.values() if queue in (None, r.record.queue)]
        return sorted(recs, key=lambda r: r.created_at, reverse=True)

    async def list_runs_page(
        self, status: str | None, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """A page of `list_runs()` (all queues), optionally of one status, and how many
        runs that listing holds in all."""
        recs = [r for r in await self.list_runs() if status in (None, r.status)]
        return recs[offset : offset + limit], len(recs)

    async def control(self, run_id: str, action: str) -> RunRecord:
        run = self._record(run_id)
        now = time.time()
        status = run.record.status
        if action == "cancel":
            if status.live:
                self._touch(
                    run, now, status=RunStatus.CANCELLED, error="cancelled", error_kind="cancelled"
                )
                self._finish_items(run)
        elif action == "pause":
            if status in (RunStatus.PENDING, RunStatus.RUNNING):
                self._touch(run, now, status=RunStatus.PAUSED)
        elif action == "resume":
            if status is RunStatus.PAUSED:
                self._touch(run, now, status=RunStatus.RUNNING)
                q = self._s.ready.setdefault(run.record.queue, deque())
                for item_id in run.parked:
                    item = self._s.items.get((run_id, item_id))
                    if item is not None and item.state == "parked":
                        item.state = "queued"
                        q.append((run_id, item_id))
                run.parked.clear()
                self._notify()
        else:
            raise ValueError(f"unknown run action {action!r} (cancel, pause or resume)")
        return run.record

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        run = self._record(run_id)
        if run.record.status is not RunStatus.FAILED:
            return run.record
        now = time.time()
        for item_id in run.live_items:
            item = self._s.items[(run_id, item_id)]
            item.attempt, item.expired, item.last_error = 1, False, None
            self._schedule(run, item, 0.0, now)
        self._touch(
            run,
            now,
            status=RunStatus.RUNNING if run.live_items else RunStatus.COMPLETED,
            error=None,
            error_kind=None,
            finished_at=None,
            deadline=deadline,
            pending=len(run.live_items),
        )
        self._notify()
        return run.record

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        run = self._s.runs.get(run_id)
        if run is None or run.record.status.finished:
            return False
        run.errors.append(error)
        self._touch(
            run, time.time(), status=RunStatus.FAILED, error=error.message, error_kind=error.kind
        )
        self._finish_items(run)
        return True

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        with trio.move_on_after(timeout):
            while True:
                run = self._s.runs.get(run_id)
                if run is None or run.record.status.finished:
                    return None if run is None else run.record
                changed = self._s.changed
                with trio.move_on_after(0.05):
                    await changed.wait()
        run = self._s.runs.get(run_id)
        return None if run is None else run.record

    async def outputs(self, run_id: str) -> list[Output]:
        run = self._s.runs.get(run_id)
        return [] if run is None else sorted(run.outputs, key=lambda o: o.position)

    async def context(self, run_id: str) -> RunContext | None:
        run = self._s.runs.get(run_id)
        return None if run is None else _context(run)

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        run = self._s.runs.get(run_id)
        return [] if run is None else list(run.collected.get(key, ()))

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        run = self._s.runs.get(run_id)
        return [] if run is None else list(run.errors)

    async def metrics(self, run_id: str) -> RunMetrics:
        run = self._s.runs.get(run_id)
        if run is None:
            return RunMetrics()
        live = run.live_items if run.record.status.live else ()
        states = [self._s.items[(run_id, i)].state for i in live]
        return RunMetrics(
            done=run.done,
            failed=run.failed,
            retried=run.retried,
            in_flight=sum(s == "leased" for s in states),
            queued=sum(s != "leased" for s in states),
            per_node=dict(run.per_node),
        )

    async def node_load(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Items not yet done per node, as (queued, in flight); empty for a finished run."""
        run = self._s.runs.get(run_id)
        out: dict[str, tuple[int, int]] = {}
        if run is None or not run.record.status.live:
            return out
        for i in run.live_items:
            item = self._s.items[(run_id, i)]
            queued, leased = out.get(item.node, (0, 0))
            leasing = item.state == "leased"
            out[item.node] = (queued + (not leasing), leased + leasing)
        return out

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        deadline = trio.current_time() + wait
        while True:
            got = self._take(queue, worker_id, limit, lease_seconds)
            remaining = deadline - trio.current_time()
            if got or remaining <= 0:
                return got
            changed = self._s.changed
            nap = remaining
            if self._s.delayed:
                nap = min(nap, max(0.0, self._s.delayed[0][0] - time.time()))
            with trio.move_on_after(nap):
                await changed.wait()

    def _take(self, queue: str, worker_id: str, limit: int, lease_seconds: float) -> list[Lease]:
        now = time.time()
        self._promote(now)
        q = self._s.ready.get(queue)
        out: list[Lease] = []
        while q and len(out) < limit:
            key = q.popleft()
            item = self._s.items.get(key)
            run = self._s.runs.get(key[0])
            if item is None or run is None or item.state != "queued":
                continue
            status = run.record.status
            if status.finished:
                continue
            if run.record.deadline is not None and now > run.record.deadline:
                err = ErrorRecord(
                    item.node, item.item_id, item.attempt, "timeout", DEADLINE_PASSED, now
                )
                run.errors.append(err)
                self._touch(
                    run, now, status=RunStatus.FAILED, error=err.message, error_kind="timeout"
                )
                self._finish_items(run)
                continue
            if status is RunStatus.PAUSED:
                item.state = "parked"
                run.parked.append(item.item_id)
                continue
            if status is RunStatus.PENDING:
                self._touch(run, now, status=RunStatus.RUNNING)
            item.state = "leased"
            item.worker_id = worker_id
            item.token = next(self._s.tokens)
            item.deadline = now + lease_seconds
            self._s.leased[key] = item
            out.append(
                Lease(
                    run_id=item.run_id,
                    item_id=item.item_id,
                    node=item.node,
                    payload=item.payload,
                    attempt=item.attempt,
                    worker_id=worker_id,
                    token=item.token,
                    deadline=item.deadline,
                    last_error=item.last_error,
                    expired=item.expired,
                    context=_context(run),
                    run_deadline=math.inf if run.record.deadline is None else run.record.deadline,
                )
            )
        return out

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        now = time.time()
        held: list[bool] = []
        for lease in leases:
            _, item = self._lease_ok(lease)
            if item is not None:
                item.deadline = now + lease_seconds
            held.append(item is not None)
        return held

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        run, item = self._lease_ok(lease)
        if run is None or run.record.status.finished:
            return CommitResult.INACTIVE
        if item is None:
            return CommitResult.LOST
        # merge first: if it raises, nothing is applied
        write = context_write(
            plan, item.item_id, run.version, lambda: run.context, run.contributions.get
        )
        self._apply(run, item, plan, write)
        return CommitResult.COMMITTED

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        result = await self.commit(lease, plan)  # no await inside: commit and take are atomic
        if result is not CommitResult.COMMITTED or limit <= 0:
            return result, []
        queue = self._s.runs[lease.run_id].record.queue
        return result, self._take(queue, lease.worker_id, limit, lease_seconds)

    def _apply(self, run: _Run, item: _Item, plan: CommitPlan, write: ContextWrite | None) -> None:
        now = time.time()
        key = (item.run_id, item.item_id)
        self._s.leased.pop(key, None)
        if plan.failure is None:  # a failing item is kept for `retry_run`
            self._s.items.pop(key, None)
            item.state = "done"
            run.live_items.discard(item.item_id)
        if write is not None:
            if write.base is not None:
                run.context = write.base
                run.version += 1
            for dropped in write.drop:
                run.contributions.pop(dropped, None)
            if write.put is not None:
                run.contributions[write.put[0]] = write.put[1]
        for ckey, value in plan.collect:
            run.collected.setdefault(ckey, []).append(value)
        for ckey in plan.drop_collected:
            run.collected.pop(ckey, None)
        run.outputs.extend(plan.outputs)
        add_latency(run.per_node, item.node, plan.duration)
        run.failed += len(plan.handled)
        run.errors.extend(plan.handled)
        if plan.failure is not None:
            run.failed += 1
            run.errors.append(plan.failure)
            self._touch(
                run,
                now,
                status=RunStatus.FAILED,
                error=plan.failure.message,
                error_kind=plan.failure.kind,
            )
            self._finish_items(run)
            self._notify()
            return
        run.done += 1
        fired = count_scopes(plan, _Scopes(run.scopes))
        for it in (*plan.items, *fired):
            self._enqueue(run, it, now)
        pending = len(run.live_items)
        if pending == 0:
            self._touch(run, now, status=RunStatus.COMPLETED, pending=0)
        else:
            self._touch(run, now, pending=pending)
        self._notify()

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        run, item = self._lease_ok(lease)
        if run is None or run.record.status.finished:
            return CommitResult.INACTIVE
        if item is None:
            return CommitResult.LOST
        now = time.time()
        self._s.leased.pop((item.run_id, item.item_id), None)
        item.attempt += 1
        item.last_error = error.message
        item.expired = False
        run.retried += 1
        run.errors.append(error)
        self._schedule(run, item, delay, now)
        self._touch(run, now)
        self._notify()
        return CommitResult.COMMITTED

    async def release(self, lease: Lease) -> CommitResult:
        run, item = self._lease_ok(lease)
        if run is None or run.record.status.finished:
            return CommitResult.INACTIVE
        if item is None:
            return CommitResult.LOST
        self._s.leased.pop((item.run_id, item.item_id), None)
        self._schedule(run, item, 0.0, time.time())
        self._notify()
        return CommitResult.COMMITTED

    async def reap(self) -> int:
        now = time.time()
        count = 0
        for key, item in list(self._s.leased.items()):
            if item.deadline > now:
                continue
            del self._s.leased[key]
            run = self._s.runs.get(item.run_id)
            if run is None or run.record.status.finished:
                continue
            msg = f"lease expired: worker {item.worker_id} did not finish in time"
            run.errors.append(
                ErrorRecord(item.node, item.item_id, item.attempt, "lease", msg, now, handled=True)
            )
            run.retried += 1
            item.attempt += 1
            item.last_error = msg
            item.expired = True
            self._schedule(run, item, 0.0, now)
            count += 1
        for run_id, run in list(self._s.runs.items()):
            fin = run.record.finished_at
            if fin is not None and now - fin > self.ttl:
                self._drop_items(run)
                del self._s.runs[run_id]
        for wid, info in list(self._s.workers.items()):
            if now - info.last_seen > self.worker_ttl:
                del self._s.workers[wid]
        if count:
            self._notify()
        return count

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        self._s.workers[info.worker_id] = info

    async def unregister_worker(self, worker_id: str) -> None:
        self._s.workers.pop(worker_id, None)

    async def workers(self) -> list[WorkerInfo]:
        now = time.time()
        return [w for w in self._s.workers.values() if now - w.last_seen <= self.worker_ttl]
