"""Workers: processes that lease work items of a workflow from a backend and run them.

A worker leases up to `concurrency` items at a time; for each it runs the node (with the
same step semantics as an in-process run: `floxide._step.advance` and `settle`), then makes
one atomic commit of the step's effects, which also leases it the next ready item for the slot
it frees (`Backend.commit_and_lease`: a chain step is one round trip, the chain stays on
one worker while it has work). While a node runs, heartbeats extend its lease, so
a node longer than the lease keeps its item; a lease that was lost (the worker hung past its
deadline and another worker took the item) cancels the node and its result is discarded.

Failures: a node wrapped in `with_retry` is unwrapped, and its retries become durable,
delayed work items (the policy's backoff, full jitter), so a retry survives a worker crash.
When a worker dies mid-step, the reaper (every worker runs one) returns its expired leases
as the next attempt; an item whose lease expired more often than the node's retry policy
allows (`max_lease_attempts` for nodes without one) fails like a raised error, going to the
node's `on_failure` fallback or failing the run.

Contexts: each step runs on its own copy of the run's context; the commit merges the copy
back into the stored context with the context's `merge` (the semilattice `Merge` protocol),
so a duplicated or re-run step never counts twice. In a backend that stores contributions,
a step commits only what it added, with no version check, so concurrent steps of one run
never conflict (`_contexts`). A context class without `merge` is
written back whole when a step changed it (the last commit wins), so parallel branches
should not mutate such a context.

Stopping: `stop()` (and SIGTERM / SIGINT under `WorkerPool.run`) stops leasing, lets items in
flight finish for `grace_period` seconds, then cancels the rest and gives them back at once
(no lease wait), and returns.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from floxide import _params
from floxide._codec import Codec
from floxide._errors import BackendError, FloxideError, LeaseExpiredError, PayloadError
from floxide._logging import StepLogger, step_fields, step_span
from floxide._node import Node
from floxide._retry import RetryNode, RetryPolicy
from floxide._running import enter_item, exit_item
from floxide._step import (
    Effects,
    WorkItem,
    advance,
    fire,
    fires_at_once,
    innermost_first,
    note_attempts,
    outcome_error,
    retry_delay,
    timeout_message,
)
from floxide._workflow import Workflow
from floxide.backends._base import (
    Backend,
    CommitPlan,
    CommitResult,
    ErrorRecord,
    Lease,
    NewItem,
    Output,
    RunRecord,
    ScopeOpen,
    WorkerInfo,
    stores_contributions,
)
from floxide.distributed._codec import collection_key, item_id, payload_codec
from floxide.distributed._contexts import StepContexts, StepRead
from floxide.distributed._records import describe, error_record, format_traceback

__all__ = ["Worker", "queue_name"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
R = TypeVar("R")

logger = logging.getLogger("floxide.worker")


def queue_name(wf: Workflow[Any, Any, Any]) -> str:
    """The queue a workflow's items go to: its qualified name and graph fingerprint.

    Workers only lease items of runs made by the very same graph, so a deploy that changes
    the workflow never runs old items with new nodes (or the reverse).
    """
    g = wf.graph
    return f"{g.module}.{g.name}@{g.fingerprint}"


@attrs.define(eq=False)
class _Slot:
    lease: Lease
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    lost: bool = False
    finished: bool = False
    next: Lease | None = None
    """The item the commit leased to this worker, to run next in the same slot."""


class _DecodeError(Exception):
    pass


class Worker(Generic[C, I, O]):
    """Leases and runs work items of one workflow, `concurrency` at a time.

    `lease_seconds` bounds how long a dead worker keeps an item; heartbeats (every
    `heartbeat_interval`, a third of the lease by default) extend leases of running items.
    `idle_wait` is the longest single wait for new work before re-checking for a stop.
    """

    def __init__(
        self,
        workflow: Workflow[C, I, O],
        backend: Backend,
        *,
        concurrency: int = 1,
        lease_seconds: float = 30.0,
        heartbeat_interval: float | None = None,
        reap_interval: float | None = None,
        grace_period: float = 30.0,
        idle_wait: float = 1.0,
        max_lease_attempts: int = 3,
        worker_id: str | None = None,
    ) -> None:
        _params.count("concurrency", concurrency)
        _params.seconds("lease_seconds", lease_seconds)
        if heartbeat_interval is not None:
            _params.seconds("heartbeat_interval", heartbeat_interval)
        if reap_interval is not None:
            _params.seconds("reap_interval", reap_interval)
        _params.seconds("grace_period", grace_period, zero=True)
        _params.seconds("idle_wait", idle_wait, zero=True)
        _params.count("max_lease_attempts", max_lease_attempts)
        self.workflow = workflow
        self.backend = backend
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = heartbeat_interval or lease_seconds / 3
        self.reap_interval = reap_interval or max(lease_seconds / 2, 0.05)
        self.grace_period = grace_period
        self.idle_wait = idle_wait
        self.max_lease_attempts = max_lease_attempts
        host = socket.gethostname()
        self.worker_id = worker_id or f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.queue = queue_name(workflow)
        self.codec = payload_codec(workflow.graph)
        self._contexts = StepContexts(self.codec, stores_contributions(backend))
        self.graph = workflow.graph
        self.nodes = workflow.nodes
        self.steps = 0
        """Steps this worker committed."""
        self._host = host
        self._started = time.time()
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._slot_freed = trio.Event()
        self._stopping = False
        self._lease_scope: trio.CancelScope | None = None
        self._runs: dict[str, RunRecord] = {}

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop gracefully: lease nothing more, finish or give back what is in flight."""
        self._stopping = True
        if self._lease_scope is not None:
            self._lease_scope.cancel()
        self._slot_freed.set()

    @property
    def in_flight(self) -> int:
        """Items being run now."""
        return len(self._slots)

    def _info(self) -> WorkerInfo:
        return WorkerInfo(
            self.worker_id,
            self.queue,
            self._host,
            os.getpid(),
            self._started,
            time.time(),
            self.concurrency,
            graph=self.queue,
            in_flight=len(self._slots),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work until `stop()` is called (or the task is cancelled)."""
        async with self.backend.connected():
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        log = StepLogger(logger, step_fields("-"))
        # fail fast when the backend is unreachable at start; later outages are retried
        await self.backend.register_worker(self._info())
        log.info("worker %s started on %s (queue %s)", self.worker_id, self.backend.url, self.queue)
        try:
            async with trio.open_nursery() as background:
                background.start_soon(self._heartbeats)
                background.start_soon(self._reaper)
                async with trio.open_nursery() as work:
                    task_status.started()
                    await self._lease_loop(work)
                    if self._slots:
                        log.info(
                            "stopping: waiting up to %.1fs for %d items in flight",
                            self.grace_period,
                            len(self._slots),
                        )
                    with trio.move_on_after(self.grace_period):
                        while self._slots:
                            self._slot_freed = trio.Event()
                            await self._slot_freed.wait()
                    for slot in self._slots.values():
                        slot.scope.cancel()
                background.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.backend.unregister_worker(self.worker_id)
                except BackendError:
                    pass
            log.info("worker %s stopped after %d steps", self.worker_id, self.steps)

    async def _retrying(self, call: Callable[[], Any], what: str) -> Any:
        """Call the backend, retrying with capped exponential backoff while it is down."""
        delay = 0.05
        while True:
            try:
                return await call()
            except BackendError as e:
                if self._stopping:
                    raise
                logger.warning(
                    "backend %s unavailable (%s: %s); retrying in %.2fs",
                    self.backend.url,
                    what,
                    e,
                    delay,
                    extra=step_fields("-"),
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _lease_loop(self, work: trio.Nursery) -> None:
        delay = 0.05
        while not self._stopping:
            free = self.concurrency - len(self._slots)
            if free <= 0:
                self._slot_freed = trio.Event()
                await self._slot_freed.wait()
                continue
            leases: list[Lease] = []
            with trio.CancelScope() as self._lease_scope:
                try:
                    leases = await self.backend.lease(
                        self.queue,
                        self.worker_id,
                        limit=free,
                        lease_seconds=self.lease_seconds,
                        wait=self.idle_wait,
                    )
                    delay = 0.05
                except BackendError as e:
                    logger.warning(
                        "cannot lease from %s (%s); retrying in %.2fs",
                        self.backend.url,
                        e,
                        delay,
                        extra=step_fields("-"),
                    )
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
            self._lease_scope = None
            for lease in leases:
                slot = _Slot(lease)
                self._slots[(lease.run_id, lease.item_id)] = slot
                work.start_soon(self._process, slot)

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self.heartbeat_interval)
            slots = list(self._slots.values())
            try:
                await self.backend.register_worker(self._info())
                if not slots:
                    continue
                held = await self.backend.heartbeat([s.lease for s in slots], self.lease_seconds)
            except BackendError as e:
                logger.warning("heartbeat failed: %s", e, extra=step_fields("-"))
                continue
            for slot, ok in zip(slots, held, strict=True):
                if not ok and not slot.finished:
                    slot.lost = True
                    slot.scope.cancel()
                    le = slot.lease
                    logger.warning(
                        "lost the lease of item %s (run cancelled or lease expired); stopping it",
                        le.item_id,
                        extra=step_fields(le.run_id, le.node, le.item_id, le.attempt),
                    )

    async def _reaper(self) -> None:
        while True:
            await trio.sleep(self.reap_interval)
            try:
                n = await self.backend.reap()
            except BackendError as e:
                logger.warning("reaper failed: %s", e, extra=step_fields("-"))
                continue
            if n:
                logger.info("returned %d expired leases to the queue", n, extra=step_fields("-"))

    # -- one item -----------------------------------------------------------------------
    async def _process(self, first: _Slot) -> None:
        """Run an item, then each item its commit leased to this slot (a chain stays here)."""
        slot: _Slot | None = first
        while slot is not None:
            slot = await self._process_one(slot)
            if slot is not None and self._stopping:
                await self._give_back(slot)
                self._slots.pop((slot.lease.run_id, slot.lease.item_id), None)
                self._slot_freed.set()
                return

    async def _process_one(self, slot: _Slot) -> _Slot | None:
        """Run one item; the slot of the item to run next, if its commit leased one."""
        lease = slot.lease
        nxt: _Slot | None = None
        try:
            with slot.scope:
                await self._step(slot)
            if not slot.finished and not slot.lost:
                await self._give_back(slot)
        except trio.Cancelled:
            if not slot.finished and not slot.lost:
                await self._give_back(slot)
            if slot.next is not None:
                await self._give_back(_Slot(slot.next))
                slot.next = None
            raise
        except BackendError as e:
            logger.warning(
                "backend error while running item %s: %s (its lease will expire)",
                lease.item_id,
                e,
                extra=step_fields(lease.run_id, lease.node, lease.item_id, lease.attempt),
            )
        except Exception as e:  # a bug must not take the worker down: fail this run instead
            logger.exception(
                "internal error while running item %s",
                lease.item_id,
                extra=step_fields(lease.run_id, lease.node, lease.item_id, lease.attempt),
            )
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                try:
                    await self.backend.fail_run(
                        lease.run_id,
                        ErrorRecord(
                            lease.node,
                            lease.item_id,
                            lease.attempt,
                            "node",
                            f"internal error: {describe(e)}",
                            time.time(),
                            format_traceback(e),
                        ),
                    )
                except BackendError:
                    pass
        finally:
            self._slots.pop((lease.run_id, lease.item_id), None)
            if slot.next is not None:
                nxt = _Slot(slot.next)
                self._slots[(slot.next.run_id, slot.next.item_id)] = nxt
            else:
                self._slot_freed.set()
        return nxt

    async def _give_back(self, slot: _Slot) -> None:
        le = slot.lease
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                await self.backend.release(le)
                logger.info(
                    "gave item %s back unfinished",
                    le.item_id,
                    extra=step_fields(le.run_id, le.node, le.item_id, le.attempt),
                )
            except BackendError as e:
                logger.warning("could not give item %s back: %s", le.item_id, e)

    async def _commit_with_retries(self, call: Callable[[], Awaitable[R]]) -> R:
        """Make a commit, retrying while the backend is unreachable (for up to two leases).

        Safe to repeat: a commit that was applied but whose reply was lost comes back as
        LOST (the item is done), never applied twice; an item it leased to this worker then
        waits for its lease to expire, as after a crash.
        """
        give_up = trio.current_time() + 2 * self.lease_seconds
        delay = 0.05
        while True:
            try:
                return await call()
            except BackendError as e:
                if trio.current_time() + delay > give_up:
                    raise
                logger.warning(
                    "commit failed (%s); retrying in %.2fs", e, delay, extra=step_fields("-")
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _run_record(self, run_id: str) -> RunRecord | None:
        rec = self._runs.get(run_id)
        if rec is None:
            rec = await self.backend.get_run(run_id)
            if rec is not None:
                if len(self._runs) > 1000:
                    self._runs.clear()
                self._runs[run_id] = rec
        return rec

    @staticmethod
    def _shielded() -> trio.CancelScope:
        return trio.CancelScope(shield=True)

    async def _step(self, slot: _Slot) -> None:
        lease = slot.lease
        run_id = lease.run_id
        log = StepLogger(logger, step_fields(run_id, lease.node, lease.item_id, lease.attempt))
        codec = self.codec
        try:
            payload = codec.decode_leased_item(lease.item_id, lease.payload, run_id, lease.attempt)
            item = payload.item
            if payload.collect is not None:
                raws = await self.backend.collected(run_id, payload.collect)
                item.input = codec.decode_collection(item.node, raws, run_id)
            stored = lease.context or await self.backend.context(run_id)
            if stored is None:
                slot.finished = True
                return
            ctx_read = self._contexts.read(run_id, stored)
            ctx = ctx_read.ctx
        except PayloadError as e:
            log.error("cannot decode item %s: %s", lease.item_id, e)
            with self._shielded():
                await self.backend.fail_run(
                    run_id,
                    ErrorRecord(
                        lease.node, lease.item_id, lease.attempt, "node", str(e), time.time()
                    ),
                )
            slot.finished = True
            return
        run_deadline = lease.run_deadline
        if run_deadline is None:  # not given with the lease: read the run (cached)
            rec = await self._run_record(run_id)
            run_deadline = math.inf if rec is None or rec.deadline is None else rec.deadline
        node: Node[Any, Any, Any] = self.nodes[item.node]
        policy: RetryPolicy | None = None
        if isinstance(node, RetryNode):
            policy = node.policy
            node = node.inner
        limit = policy.max_attempts if policy is not None else self.max_lease_attempts

        outcome: object
        started = time.perf_counter()
        if lease.expired and lease.attempt > limit:
            outcome = LeaseExpiredError(
                f"{lease.last_error}; gave up after {lease.attempt - 1} attempts"
            )
        else:
            deadline = math.inf
            if run_deadline != math.inf:
                deadline = trio.current_time() + (run_deadline - time.time())
            log.debug("running %s (attempt %d)", item.node, lease.attempt)
            timed_out = False
            with step_span(run_id, item.node, lease.item_id, lease.attempt):
                if deadline == math.inf:  # no cancel scope to pay for
                    outcome = await _call(node, ctx, item)
                else:
                    with trio.CancelScope(deadline=deadline) as dl:
                        outcome = await _call(node, ctx, item)
                    timed_out = dl.cancelled_caught
            if timed_out:
                log.warning("run %s passed its deadline while %s ran", run_id, item.node)
                with self._shielded():
                    await self.backend.fail_run(
                        run_id,
                        ErrorRecord(
                            item.node,
                            lease.item_id,
                            lease.attempt,
                            "timeout",
                            timeout_message(self.graph.name, run_id),
                            time.time(),
                        ),
                    )
                slot.finished = True
                return
        duration = time.perf_counter() - started

        error = outcome_error(item.node, outcome)
        delay = retry_delay(policy, error, lease.attempt) if error is not None else None
        if error is not None and delay is not None:
            record = error_record(item.node, lease.item_id, lease.attempt, error, handled=True)
            with self._shielded():
                result = await self._commit_with_retries(
                    lambda: self.backend.retry(lease, delay, record)
                )
            slot.finished = True
            log.warning(
                "%s failed on attempt %d (%s); retry in %.3fs: %s",
                item.node,
                lease.attempt,
                describe(error),
                delay,
                result,
            )
            return
        if error is not None:
            note_attempts(error, lease.attempt)

        try:
            fx: Effects = advance(self.graph, item, outcome, item_id)
            outcome = None  # its values are held by the new items alone, released as encoded
            plan = self._plan(item, fx, error, payload.collect, ctx, ctx_read, duration)
        except FloxideError as e:  # a result or the context cannot be serialized
            log.error("cannot store the results of %s: %s", item.node, e)
            failure = ErrorRecord(
                item.node,
                lease.item_id,
                lease.attempt,
                "node",
                f"cannot store the results of {item.node!r}: {e}",
                time.time(),
            )
            plan = CommitPlan(failure=failure, duration=duration)
        # the slot this step frees may take the next ready item in the same operation
        take = 0 if self._stopping else 1
        with self._shielded():
            try:
                result, taken = await self._commit_with_retries(
                    lambda: self.backend.commit_and_lease(
                        lease, plan, limit=take, lease_seconds=self.lease_seconds
                    )
                )
                slot.next = taken[0] if taken else None
            except BackendError:
                raise
            except Exception as e:  # the context's merge failed: nothing was applied
                log.error("merging the context of %s failed: %s", item.node, describe(e))
                await self.backend.fail_run(
                    run_id,
                    ErrorRecord(
                        item.node,
                        lease.item_id,
                        lease.attempt,
                        "node",
                        f"merging the context failed: {describe(e)}",
                        time.time(),
                    ),
                )
                result = CommitResult.INACTIVE
        slot.finished = True
        if result is CommitResult.COMMITTED:
            self.steps += 1
            if plan.failure is not None:
                log.error(
                    "%s failed the run: %s\n%s",
                    item.node,
                    plan.failure.message,
                    plan.failure.traceback or "",
                )
            for handled in plan.handled:
                log.error(
                    "%s failed; its fallback takes over: %s\n%s",
                    item.node,
                    handled.message,
                    handled.traceback or "",
                )
            log.debug("committed %s in %.4fs", item.node, duration)
        elif result is CommitResult.LOST:
            log.warning("lease of item %s was lost; its result is discarded", lease.item_id)
        else:
            log.info("run %s is no longer live; result of %s discarded", run_id, item.node)

    def _plan(
        self,
        item: WorkItem,
        fx: Effects,
        error: BaseException | None,
        consumed: str | None,
        ctx: Any,
        ctx_read: StepRead,
        duration: float,
    ) -> CommitPlan:
        """The commit of one step: its effects (`advance`), encoded once."""
        codec = self.codec
        if fx.failure is not None:
            failure = error_record(item.node, str(item.id), item.attempt, fx.failure)
            return CommitPlan(failure=failure, duration=duration)
        handled = (
            [error_record(item.node, str(item.id), item.attempt, error, handled=True)]
            if error is not None
            else []
        )
        items = _encoded(fx.items, codec)
        opened: ScopeOpen | None = None
        if fx.opened is not None:
            scope = fx.opened
            fired = [
                NewItem(
                    str(f.id),
                    f.node,
                    codec.encode_item(f, collect=collection_key(scope.id, f.node)),
                )
                for f in fire(scope, item_id)
            ]
            if fires_at_once(scope):
                items += fired  # nothing went into the fan-out: its joins fire at once
            else:
                opened = ScopeOpen(str(scope.id), scope.open, fired)
        update, contribution = self._contexts.change(ctx_read, ctx)
        return CommitPlan(
            context=update,
            contribution=contribution,
            open_scope=opened,
            scopes=[str(sid) for sid in innermost_first(item)],
            items=items,
            outputs=[
                Output(pos, item.node, codec.encode_output(item.node, pos, v))
                for pos, v in fx.outputs
            ],
            collect=[
                (collection_key(sid, join), codec.encode_contribution(item.node, join, pos, value))
                for sid, join, pos, value in fx.contributions
            ],
            drop_collected=[consumed] if consumed is not None else [],
            handled=handled,
            duration=duration,
        )


def _encoded(work: list[WorkItem], codec: Codec) -> list[NewItem]:
    """The step's new items, encoded in order; each `WorkItem` is released once encoded, so a
    big fan-out holds its items once (not as items and encodings at the same time)."""
    work.reverse()
    out: list[NewItem] = []
    while work:
        i = work.pop()
        out.append(NewItem(str(i.id), i.node, codec.encode_item(i)))
    return out


async def _call(node: Node[Any, Any, Any], ctx: Any, item: WorkItem) -> object:
    """Run `node` on `item` as that work item (see `item_scope`); an exception is returned."""
    token = enter_item(item.id, item.position)
    try:
        return await node.process(ctx, item.input)
    except Exception as exc:
        return exc
    finally:
        exit_item(token)
