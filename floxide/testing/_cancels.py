"""Cancelling a backend call at any point: only `trio.Cancelled` comes out, and nothing is
lost or counted twice.

A service embedding floxide cancels its workers like any other trio task, so every backend
call must let the cancellation through as `trio.Cancelled` (no foreign exception from the
driver), and a call cut short must leave the backend consistent: a commit is applied whole
or not at all, and an item leased by a cancelled call comes back when its lease expires.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from floxide.backends._base import Backend, CommitResult, Lease, RunStatus, WorkerInfo
from floxide.testing._harness import LEASE, QUEUE, Property, expect, item, new_run, plan

__all__ = ["PROPERTIES"]

T = TypeVar("T")

_ITEMS = 6
_SHORT = 0.3
"""Lease seconds of the items leased while calls are cancelled (they expire soon)."""
_DELAYS = (0.0, 0.0001, 0.0005, 0.001, 0.002, 0.005)
"""How long each cancelled call runs before its cancel scope is cancelled."""


async def _cut(what: str, delay: float, call: Callable[[], Awaitable[T]]) -> T | None:
    """Run `call`, cancelled after `delay` s; its result, or None when it was cancelled.
    Anything but `trio.Cancelled` escaping the call fails the property, naming it."""
    with trio.move_on_after(delay):
        try:
            return await call()
        except trio.Cancelled:
            raise
        except BaseException as e:  # a foreign exception instead of trio.Cancelled
            expect(False, f"cancelling {what} raised {type(e).__name__}: {e}")
    return None


async def cancelled_calls(b: Backend) -> None:
    """Lease, heartbeat, commit, get_run, wait_run and the worker registry cancelled at many
    points."""
    run = new_run(*(item(i) for i in range(_ITEMS)))
    await b.create_run(run)
    now = time.time()
    worker = WorkerInfo("w1", QUEUE, "host", 1, now, now, 1)
    held: list[Lease] = []
    for delay in _DELAYS * 4:  # every call meets every delay
        got = await _cut(
            "lease", delay, lambda: b.lease(QUEUE, "w1", limit=1, lease_seconds=_SHORT, wait=0.02)
        )
        held.extend(got or [])
        await _cut("get_run", delay, lambda: b.get_run(run.run_id))
        await _cut("register_worker", delay, lambda: b.register_worker(worker))
        await _cut("unregister_worker", delay, lambda: b.unregister_worker("w1"))
    for lease, delay in zip(held, itertools.cycle(_DELAYS)):
        await _cut("heartbeat", delay, lambda: b.heartbeat([lease], _SHORT))  # noqa: B023
        await _cut("commit", delay, lambda: b.commit(lease, plan()))  # noqa: B023
    waited = await _cut("wait_run", 0.01, lambda: b.wait_run(run.run_id, 5.0))
    expect(waited is None or waited.status.finished, f"wait_run returned early: {waited}")
    with trio.move_on_after(10):
        while (rec := await b.get_run(run.run_id)) is not None and not rec.status.finished:
            await b.reap()
            for lease in await b.lease(QUEUE, "w2", limit=_ITEMS, lease_seconds=LEASE, wait=0.1):
                result = await b.commit(lease, plan())
                expect(result is CommitResult.COMMITTED, f"a commit after the cancels: {result}")
    rec = await b.get_run(run.run_id)
    expect(
        rec is not None and rec.status is RunStatus.COMPLETED and rec.pending == 0,
        f"after cancelled calls the run did not complete: {rec}",
    )
    metrics = await b.metrics(run.run_id)
    expect(
        metrics.done == _ITEMS,
        f"{metrics.done} steps were counted for {_ITEMS} items (lost or counted twice)",
    )


PROPERTIES = (Property("cancellation", cancelled_calls),)
