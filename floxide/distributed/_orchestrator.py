"""The orchestrator: starts distributed runs, watches them, steers them and reads results."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

import trio

from floxide import _params
from floxide._errors import (
    BackendError,
    BackendUnreachableError,
    FloxideError,
    NodeError,
    RemoteError,
    RunCancelled,
    RunTimeoutError,
    UnknownRunError,
)
from floxide._step import (
    DEADLINE_GRACE,
    DEADLINE_PASSED,
    WorkItem,
    check_run_id,
    deadline_passed,
    first_output,
    timeout_message,
)
from floxide._workflow import Workflow
from floxide.backends._base import (
    UNREADABLE_KIND,
    Backend,
    ErrorRecord,
    NewItem,
    NewRun,
    RunMetrics,
    RunRecord,
    RunStatus,
    WorkerInfo,
)
from floxide.distributed._codec import ROOT_ID, payload_codec
from floxide.distributed._contexts import read_context
from floxide.distributed._worker import queue_name
from floxide.serde import check_exact

__all__ = ["Orchestrator", "retry_refusal", "retry_run", "run_error"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
R = TypeVar("R")

logger = logging.getLogger("floxide.orchestrator")


def run_error(rec: RunRecord, errors: list[ErrorRecord]) -> FloxideError:
    """The exception a failed or cancelled run raises to whoever waits for it."""
    if rec.status is RunStatus.CANCELLED:
        return RunCancelled(f"run {rec.run_id} of workflow {rec.workflow!r} was cancelled")
    if rec.error_kind == UNREADABLE_KIND:
        return BackendError(f"run {rec.run_id} of workflow {rec.workflow!r} failed: {rec.error}")
    if rec.error_kind == "timeout":
        return RunTimeoutError(timeout_message(rec.workflow, rec.run_id))
    last = next((e for e in reversed(errors) if e.message == rec.error), None)
    if last is not None and rec.error_kind in ("node", "lease"):
        return NodeError(
            last.node,
            RemoteError(last.message),
            run_id=rec.run_id,
            item_id=last.item_id,
            attempt=last.attempt,
            workflow=rec.workflow,
        )
    return FloxideError(f"run {rec.run_id} of workflow {rec.workflow!r} failed: {rec.error}")


def retry_refusal(rec: RunRecord) -> str:
    """Why a run that is not `FAILED` cannot be retried."""
    why = {
        RunStatus.COMPLETED: "it completed",
        RunStatus.CANCELLED: "it was cancelled (start a new run)",
    }.get(rec.status, f"it is still {rec.status} (only a failed run can be retried)")
    return f"cannot retry run {rec.run_id}: {why}"


async def retry_run(backend: Backend, run_id: str, timeout: float | None = None) -> RunRecord:
    """`Orchestrator.retry` without the workflow (the command line uses it): the run after."""
    _params.timeout("timeout", timeout)
    rec = await backend.get_run(run_id)
    if rec is None:
        raise UnknownRunError(f"no run {run_id!r} in {backend.url}")
    if rec.status is not RunStatus.FAILED:
        raise FloxideError(retry_refusal(rec))
    now = time.time()
    if timeout is not None:
        deadline: float | None = now + timeout
    else:
        deadline = rec.deadline if rec.deadline is not None and rec.deadline > now else None
    try:
        after = await backend.retry_run(run_id, deadline)
    except KeyError:
        raise UnknownRunError(f"no run {run_id!r} in {backend.url}") from None
    logger.info(
        "retrying run %s of %s",
        run_id,
        rec.workflow,
        extra={"run_id": run_id, "node": "-", "item_id": "-", "attempt": 0},
    )
    return after


async def fail_overdue(backend: Backend, rec: RunRecord) -> bool:
    """Fail a live run found past its deadline (in case no worker is left to notice);
    whether it was overdue."""
    if not deadline_passed(rec.deadline, time.time(), DEADLINE_GRACE):
        return False
    error = ErrorRecord("-", "-", 0, "timeout", DEADLINE_PASSED, time.time())
    await backend.fail_run(rec.run_id, error)
    return True


_FIRST_PAUSE = 0.05
_MAX_PAUSE = 2.0
"""Backoff (seconds) of a waiting call while the backend is unreachable."""


def _limit(timeout: float | None) -> float:
    """The trio clock time a call with `timeout` gives up at."""
    return trio.current_time() + timeout if timeout is not None else float("inf")


class Orchestrator(Generic[C, I, O]):
    """Starts runs of `workflow` in `backend` and follows them; workers do the work."""

    def __init__(self, workflow: Workflow[C, I, O], backend: Backend) -> None:
        self.workflow = workflow
        self.backend = backend
        self.codec = payload_codec(workflow.graph)
        self.queue = queue_name(workflow)

    async def start_run(
        self,
        ctx: C,
        input: I,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Store a new run (its first work item ready for any worker); return its id.

        A run still going after `timeout` seconds fails with `RunTimeoutError`.
        """
        _params.timeout("timeout", timeout)
        graph = self.workflow.graph
        run_id = uuid.uuid4().hex if run_id is None else check_run_id(run_id)
        check_exact(input, graph.workflow_types()[1], what=f"input of {graph.name}")
        root = WorkItem(ROOT_ID, graph.start, input)
        async with self.backend.connected():
            await self._create(run_id, root, input, ctx, timeout)
        logger.info(
            "started run %s of %s",
            run_id,
            graph.name,
            extra={"run_id": run_id, "node": "-", "item_id": "-", "attempt": 0},
        )
        return run_id

    async def _create(
        self, run_id: str, root: WorkItem, input: I, ctx: C, timeout: float | None
    ) -> None:
        graph = self.workflow.graph
        await self.backend.create_run(
            NewRun(
                run_id=run_id,
                workflow=graph.name,
                queue=self.queue,
                fingerprint=graph.fingerprint,
                input=self.codec.encode_input(input),
                context=self.codec.encode_context(ctx),
                items=[NewItem(ROOT_ID, graph.start, self.codec.encode_item(root))],
                deadline=time.time() + timeout if timeout is not None else None,
            )
        )

    async def info(self, run_id: str) -> RunRecord:
        """The stored record of a run; `UnknownRunError` if there is none."""
        rec = await self.backend.get_run(run_id)
        if rec is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.backend.url}")
        return rec

    async def status(self, run_id: str) -> RunStatus:
        return (await self.info(run_id)).status

    async def wait_finished(self, run_id: str, *, timeout: float | None = None) -> RunRecord:
        """Wait until the run is finished (completed, failed or cancelled); its record.

        A run past its deadline is failed here too, in case no worker is left to notice.
        `TimeoutError` if it is still going after `timeout` seconds.
        """
        async with self.backend.connected():
            return await self._wait_finished(run_id, timeout)

    async def _wait_finished(self, run_id: str, timeout: float | None) -> RunRecord:
        limit = _limit(timeout)
        while True:
            rec = await self._riding_out(lambda: self.info(run_id), limit)
            if rec.status.finished:
                return rec
            if await self._riding_out(partial(fail_overdue, self.backend, rec), limit):
                continue
            remaining = limit - trio.current_time()
            if remaining <= 0:
                raise TimeoutError(f"run {run_id} is still {rec.status} after {timeout} s")
            wait = partial(self.backend.wait_run, run_id, min(remaining, 1.0))
            await self._riding_out(wait, limit)

    async def _riding_out(self, call: Callable[[], Awaitable[R]], limit: float) -> R:
        """`call()`, tried again with backoff while the backend is unreachable (a server
        restart, a network blip) until the trio clock reaches `limit`."""
        pause = _FIRST_PAUSE
        while True:
            try:
                return await call()
            except BackendUnreachableError as e:
                remaining = limit - trio.current_time()
                if remaining <= 0:
                    raise
                logger.warning("%s; trying again in %.2f s", e, min(pause, remaining))
                await trio.sleep(min(pause, remaining))
                pause = min(pause * 2, _MAX_PAUSE)

    async def wait(self, run_id: str, *, timeout: float | None = None) -> O:
        """The run's first terminal output in branch order, once the run is finished.

        Raises `NodeError` (a node failed without fallback), `RunTimeoutError`,
        `RunCancelled`, `NoOutputError`, or `TimeoutError` when `timeout` passes first.
        """
        limit = _limit(timeout)
        async with self.backend.connected():
            rec = await self.wait_finished(run_id, timeout=timeout)
            outputs = await self._outputs(rec, limit)
        result: O = first_output(rec.workflow, [((), o) for o in outputs], run_id)
        return result

    async def results(self, run_id: str, *, timeout: float | None = None) -> list[O]:
        """Every terminal output of the run, in branch order, once it is finished."""
        limit = _limit(timeout)
        async with self.backend.connected():
            rec = await self.wait_finished(run_id, timeout=timeout)
            return await self._outputs(rec, limit)

    async def _outputs(self, rec: RunRecord, limit: float) -> list[O]:
        if rec.status is not RunStatus.COMPLETED:
            errors = await self._riding_out(lambda: self.backend.errors(rec.run_id), limit)
            raise run_error(rec, errors)
        outputs = await self._riding_out(lambda: self.backend.outputs(rec.run_id), limit)
        return [
            self.codec.decode_output(o.value, f"$.outputs[{n}]", rec.run_id)[1]
            for n, o in enumerate(outputs)
        ]

    async def context(self, run_id: str) -> C:
        """The run's context as merged so far (final once the run is finished)."""
        raw = await self.backend.context(run_id)
        if raw is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.backend.url}")
        ctx: C = read_context(self.codec, raw, run_id)
        return ctx

    async def _control(self, run_id: str, action: str) -> RunStatus:
        try:
            rec = await self.backend.control(run_id, action)
        except KeyError:
            raise UnknownRunError(f"no run {run_id!r} in {self.backend.url}") from None
        return rec.status

    async def cancel(self, run_id: str) -> RunStatus:
        """Cancel the run: once this returns, none of its steps commit any more."""
        return await self._control(run_id, "cancel")

    async def pause(self, run_id: str) -> RunStatus:
        """Pause the run: no new item starts (items in flight finish and commit)."""
        return await self._control(run_id, "pause")

    async def resume(self, run_id: str) -> RunStatus:
        """Resume a paused run."""
        return await self._control(run_id, "resume")

    async def retry(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Continue a `FAILED` run from the items that failed (fresh attempts; the rest of
        its state as it was), like `Workflow.resume` does for checkpoints.

        `timeout` sets a new deadline, counted from now; without it the run keeps its
        deadline unless that has passed (then it has none). Any other status raises
        `FloxideError` saying why; `UnknownRunError` for an unknown run.
        """
        return (await retry_run(self.backend, run_id, timeout)).status

    async def list_runs(self) -> list[RunRecord]:
        """Runs of this workflow, newest first."""
        name = self.workflow.graph.name
        return [r for r in await self.backend.list_runs() if r.workflow == name]

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        """Every failed attempt of the run (retried or not) and what ended it, if anything."""
        await self.info(run_id)
        return await self.backend.errors(run_id)

    async def metrics(self, run_id: str) -> RunMetrics:
        """Items done, failed, retried, in flight and queued; latency per node."""
        await self.info(run_id)
        return await self.backend.metrics(run_id)

    async def workers(self) -> list[WorkerInfo]:
        """Workers of this workflow seen recently."""
        return [w for w in await self.backend.workers() if w.queue == self.queue]
