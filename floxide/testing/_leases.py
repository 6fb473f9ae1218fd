"""Properties of work items and their leases: leasing, fencing, heartbeats, reaping,
release and durable delayed retries.

A lease gives one item to one worker until its deadline; its token fences the commit, so a
worker that lost its lease (expired, reaped and given to another) can change nothing.
"""

from __future__ import annotations

import time

import trio

from floxide.backends._base import Backend, CommitResult, ErrorRecord, RunContext, RunStatus
from floxide.testing._harness import (
    LEASE,
    QUEUE,
    Property,
    ctx,
    expect,
    item,
    lease1,
    must_lease,
    new_run,
    plan,
)

__all__ = ["PROPERTIES"]


async def leasing(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await lease1(b)
    expect(lease is not None, "the ready item of a new run was not leased")
    assert lease is not None
    expect(
        (lease.run_id, lease.item_id, lease.node, lease.payload, lease.attempt)
        == (run.run_id, "1", "a", b"p1", 1),
        f"the lease does not describe the item it leased: {lease}",
    )
    expect(lease.worker_id == "w1", "the lease does not name the worker that took it")
    expect(lease.deadline > time.time(), "a fresh lease's deadline is already past")
    expect(not lease.expired and lease.last_error is None, "a first attempt claims a history")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.RUNNING, "leasing did not start the run")
    expect(await lease1(b) is None, "a leased item was leased a second time")


async def lease_limit_and_order(b: Backend) -> None:
    run = new_run(*(item(i) for i in range(5)))
    await b.create_run(run)
    got = await b.lease(QUEUE, "w", limit=3, lease_seconds=LEASE, wait=0)
    expect(
        [le.item_id for le in got] == ["0", "1", "2"],
        f"lease(limit=3) did not give the three oldest items: {[le.item_id for le in got]}",
    )
    expect(len({le.token for le in got}) == 3, "leases given together share a fencing token")
    m = await b.metrics(run.run_id)
    expect((m.in_flight, m.queued) == (3, 2), f"metrics after leasing 3 of 5 items: {m}")
    other = await b.lease("other-queue", "w", limit=3, lease_seconds=LEASE, wait=0)
    expect(other == [], "an item was leased from a queue it is not on")


async def blocking_lease(b: Backend) -> None:
    run = new_run(item(1))
    got: list[object] = []

    async def leaser() -> None:
        got.append(await lease1(b, wait=10.0))

    with trio.fail_after(8):
        async with trio.open_nursery() as n:
            n.start_soon(leaser)
            await trio.sleep(0.05)
            await b.create_run(run)
    expect(got and got[0] is not None, "a waiting lease did not get the item of a new run")
    lease = await lease1(b, wait=0.05)
    expect(lease is None, "lease(wait=...) returned an item that was already leased")


async def fencing(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    old = await must_lease(b, "w1", seconds=0.05)
    await trio.sleep(0.15)
    await b.reap()
    new = await lease1(b, "w2")
    expect(new is not None, "an expired, reaped lease's item was not leased again")
    assert new is not None
    expect(new.token != old.token, "the next attempt has the expired attempt's fencing token")
    held = await b.heartbeat([old, new], LEASE)
    expect(held == [False, True], f"heartbeat of the lost and the new lease: {held}")
    stale = await b.commit(old, plan(context=ctx(b"stale")))
    expect(stale is CommitResult.LOST, f"a commit with a lost lease was {stale}, not lost")
    fresh = await b.commit(new, plan(context=ctx(b"fresh")))
    expect(fresh is CommitResult.COMMITTED, f"the current lease's commit was {fresh}")
    got = await b.context(run.run_id)
    expect(got == RunContext(b"fresh", 1), f"a lost lease's commit changed the context: {got}")
    expect(await b.retry(old, 0, _error()) is not CommitResult.COMMITTED, "a lost lease retried")
    expect(await b.release(old) is not CommitResult.COMMITTED, "a lost lease was released")


async def heartbeats(b: Backend) -> None:
    await b.create_run(new_run(item(1)))
    lease = await must_lease(b, seconds=0.2)
    expect(await b.heartbeat([lease], 60) == [True], "a heartbeat of a held lease said lost")
    await trio.sleep(0.3)
    reaped = await b.reap()
    expect(reaped == 0, "a heartbeat did not extend the lease (reap took it back)")
    expect(await b.heartbeat([lease], 60) == [True], "a heartbeat did not extend the lease")
    expect(await lease1(b, "w2") is None, "a heartbeat did not extend the lease (re-leased)")
    done = await b.commit(lease, plan())
    expect(done is CommitResult.COMMITTED, f"a heartbeated lease's commit was {done}")
    expect(await b.heartbeat([lease], 60) == [False], "a heartbeat of a committed item held")


async def reaping(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    old = await must_lease(b, "w1", seconds=0.05)
    keep = await must_lease(b, "w1", seconds=LEASE)
    await trio.sleep(0.15)
    reaped = await b.reap()
    expect(reaped == 1, f"reap() returned {reaped} for one expired lease (and one held)")
    new = await lease1(b, "w2")
    expect(new is not None, "the reaper did not give an expired lease's item back")
    assert new is not None
    expect(new.item_id == old.item_id, "the reaper gave back the wrong item")
    expect(new.attempt == 2 and new.expired, "a reaped item is not marked as an expired attempt")
    expect(
        new.last_error is not None and "w1" in new.last_error,
        f"a reaped item's last error does not name the worker that lost it: {new.last_error}",
    )
    errs = await b.errors(run.run_id)
    expect([e.kind for e in errs] == ["lease"], f"errors after a reap: {errs}")
    expect((await b.metrics(run.run_id)).retried == 1, "a reaped attempt was not counted retried")
    expect(await b.heartbeat([keep], LEASE) == [True], "the reaper took a lease that was held")
    expect(await b.reap() == 0, "a second reap found the same expired lease again")


async def release(b: Backend) -> None:
    await b.create_run(new_run(item(1)))
    lease = await must_lease(b)
    result = await b.release(lease)
    expect(result is CommitResult.COMMITTED, f"releasing a held lease was {result}")
    again = await lease1(b, "w2")
    expect(again is not None, "a released item was not leasable at once")
    assert again is not None
    expect(
        again.attempt == 1 and again.item_id == "1" and not again.expired,
        f"a released item came back changed: {again}",
    )
    expect(await b.commit(lease, plan()) is CommitResult.LOST, "a released lease committed")


async def retries(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b)
    err = _error("boom")
    result = await b.retry(lease, 0.3, err)
    expect(result is CommitResult.COMMITTED, f"retry of a held lease was {result}")
    expect(await lease1(b) is None, "a delayed retry was leased before its delay")
    started = time.time()
    again = await lease1(b, wait=5.0)
    expect(again is not None, "a delayed retry was not leasable after its delay")
    assert again is not None
    expect(time.time() - started < 4.0, "a waiting lease was not woken for a delayed retry")
    expect(
        again.attempt == 2 and again.last_error == "boom" and not again.expired,
        f"a retried item does not carry its next attempt and last error: {again}",
    )
    expect([e.message for e in await b.errors(run.run_id)] == ["boom"], "retry error not kept")
    expect((await b.metrics(run.run_id)).retried == 1, "a retry was not counted")
    expect(await b.retry(lease, 0, err) is CommitResult.LOST, "an old lease retried again")


def _error(message: str = "boom") -> ErrorRecord:
    return ErrorRecord("a", "1", 1, "node", message, time.time())


PROPERTIES = (
    Property("leases", leasing),
    Property("leases", lease_limit_and_order),
    Property("leases", blocking_lease),
    Property("fencing", fencing),
    Property("heartbeats", heartbeats),
    Property("reaping", reaping),
    Property("release", release),
    Property("retries", retries),
)
