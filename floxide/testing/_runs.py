"""Properties of runs as a whole: creating and listing them, cancel/pause/resume, run
deadlines, waiting, isolation of run ids, keeping finished runs for their TTL, the worker
registry and the errors the protocol promises.
"""

from __future__ import annotations

import math
import time

import trio

from floxide._errors import BackendError
from floxide.backends._base import (
    Backend,
    CommitResult,
    ErrorRecord,
    Output,
    RunContext,
    RunStatus,
    WorkerInfo,
)
from floxide.backends._registry import masked_url
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


async def create_and_get(b: Backend) -> None:
    run = new_run(item(1), deadline=time.time() + 3600)
    before = time.time()
    await b.create_run(run)
    rec = await b.get_run(run.run_id)
    expect(rec is not None, "a created run cannot be read back")
    assert rec is not None
    expect(
        (rec.run_id, rec.status, rec.workflow, rec.queue, rec.fingerprint, rec.input, rec.pending)
        == (run.run_id, RunStatus.PENDING, "W", QUEUE, "fp", b"7", 1),
        f"a new run was stored as {rec}",
    )
    expect(rec.deadline is not None and math.isclose(rec.deadline, run.deadline or 0),
           f"the run's deadline was stored as {rec.deadline}")  # fmt: skip
    expect(before - 5 <= rec.created_at <= time.time() + 5, f"created_at is {rec.created_at}")
    expect(rec.finished_at is None and rec.error is None, f"a new run looks finished: {rec}")
    expect(await b.get_run("nope") is None, "get_run of an unknown run is not None")
    expect(await b.context(run.run_id) == RunContext(b"0", 0), "the first context is not v0")
    expect(await b.context("nope") is None, "context of an unknown run is not None")
    for read in (b.outputs, b.errors):
        expect(await read(run.run_id) == [], f"{read.__name__} of a new run is not empty")
        expect(await read("nope") == [], f"{read.__name__} of an unknown run is not empty")
    expect(await b.collected("nope", "k") == [], "collected of an unknown run is not empty")


async def duplicate_run_id(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    try:
        await b.create_run(new_run(item(2), run_id=run.run_id))
    except BackendError as e:
        expect("already exists" in str(e), f"the duplicate's error does not say so: {e}")
    else:
        expect(False, "a second run with the same id was accepted")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == 1, f"a refused duplicate changed the run: {rec}")
    lease = await lease1(b)
    expect(lease is not None and lease.payload == b"p1", "a refused duplicate's items were kept")


async def empty_run(b: Backend) -> None:
    run = new_run()
    await b.create_run(run)
    rec = await b.get_run(run.run_id)
    expect(
        rec is not None and rec.status is RunStatus.COMPLETED and rec.finished_at is not None,
        f"a run without items did not complete at once: {rec}",
    )
    expect(await lease1(b) is None, "a run without items gave a lease")


async def list_runs_order(b: Backend) -> None:
    made = []
    for i in range(3):
        run = new_run(item(1), queue=QUEUE if i != 1 else "other")
        await b.create_run(run)
        made.append(run.run_id)
        await trio.sleep(0.01)
    listed = [r.run_id for r in await b.list_runs()]
    expect(listed == made[::-1], f"list_runs() is not newest first: {listed}, made {made}")
    mine = [r.run_id for r in await b.list_runs(QUEUE)]
    expect(mine == [made[2], made[0]], f"list_runs(queue) is {mine}")
    expect(await b.list_runs("nobody") == [], "list_runs of an unused queue is not empty")


async def cancel(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    lease = await must_lease(b)
    rec = await b.control(run.run_id, "cancel")
    expect(
        rec.status is RunStatus.CANCELLED and rec.error_kind == "cancelled" and rec.finished_at,
        f"control(cancel) returned {rec}",
    )
    result = await b.commit(lease, plan(context=ctx(b"x")))
    expect(result is CommitResult.INACTIVE, f"a commit after cancel was {result}, not inactive")
    expect(await b.context(run.run_id) == RunContext(b"0", 0), "a cancelled run's context moved")
    expect(await lease1(b) is None, "a cancelled run's items were still leased")
    expect(await b.retry(lease, 0, _err()) is CommitResult.INACTIVE, "retry after cancel")
    expect(await b.release(lease) is CommitResult.INACTIVE, "release after cancel")
    again = await b.control(run.run_id, "resume")
    expect(again.status is RunStatus.CANCELLED, f"resume revived a cancelled run: {again}")
    again = await b.control(run.run_id, "pause")
    expect(again.status is RunStatus.CANCELLED, f"pause changed a cancelled run: {again}")
    expect(await b.fail_run(run.run_id, _err()) is False, "fail_run failed a cancelled run")


async def pause_and_resume(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    first = await must_lease(b)
    rec = await b.control(run.run_id, "pause")
    expect(rec.status is RunStatus.PAUSED, f"control(pause) returned {rec}")
    expect(await lease1(b) is None, "a paused run's item was leased")
    # an item in flight still commits while paused; its successor waits
    result = await b.commit(first, plan(items=[item(3)]))
    expect(result is CommitResult.COMMITTED, f"an item in flight could not commit: {result}")
    expect(await lease1(b) is None, "the successor of a paused run's step was leased")
    rec = await b.control(run.run_id, "resume")
    expect(rec.status is RunStatus.RUNNING, f"control(resume) returned {rec}")
    got = await b.lease(QUEUE, "w", limit=5, lease_seconds=LEASE, wait=0)
    expect(
        sorted(le.item_id for le in got) == ["2", "3"],
        f"after resume the paused items were not leasable: {[le.item_id for le in got]}",
    )


async def control_errors(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    try:
        await b.control("missing", "cancel")
    except KeyError:
        pass
    else:
        expect(False, "control of an unknown run did not raise KeyError")
    try:
        await b.control(run.run_id, "explode")
    except ValueError as e:
        expect("unknown run action" in str(e), f"the error for a bad action: {e}")
    else:
        expect(False, "control with an unknown action did not raise ValueError")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.PENDING, f"a bad action changed: {rec}")


async def deadlines(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    failed = await b.fail_run(run.run_id, ErrorRecord("a", "1", 1, "timeout", "late"))
    expect(failed is True, "fail_run of a live run returned False")
    rec = await b.get_run(run.run_id)
    expect(
        rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout",
        f"fail_run did not fail the run with its error's kind: {rec}",
    )
    expect(await b.fail_run("missing", _err()) is False, "fail_run of an unknown run")

    late = new_run(item(1), deadline=time.time() - 1)
    await b.create_run(late)
    expect(await lease1(b) is None, "an item of a run past its deadline was leased")
    rec = await b.get_run(late.run_id)
    expect(
        rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout",
        f"leasing did not fail a run past its deadline: {rec}",
    )

    soon = new_run(item(1), deadline=time.time() + 0.5)
    await b.create_run(soon)
    lease = await must_lease(b)
    expect(lease.run_id == soon.run_id, "the item of a live run was not leased")
    expect(
        lease.run_deadline is None or math.isclose(lease.run_deadline, soon.deadline or 0),
        f"the lease carries run_deadline {lease.run_deadline}, not the run's",
    )
    await trio.sleep(0.6)
    result, got = await b.commit_and_lease(lease, plan(items=[item(2)]), limit=1,
                                           lease_seconds=LEASE)  # fmt: skip
    expect(result is CommitResult.COMMITTED, f"a commit after the deadline was {result}")
    expect(got == [], "an item was leased after its run's deadline")
    expect(await lease1(b) is None, "an item was leased after its run's deadline")
    rec = await b.get_run(soon.run_id)
    expect(
        rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout",
        f"a run past its deadline did not fail with a timeout: {rec}",
    )


async def wait_run(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b)
    rec = await b.wait_run(run.run_id, 0.05)
    expect(rec is not None and rec.status is RunStatus.RUNNING, f"wait_run timed out as {rec}")
    expect(await b.wait_run("missing", 0.05) is None, "wait_run of an unknown run")

    async def committer() -> None:
        await trio.sleep(0.05)
        await b.commit(lease, plan())

    started = time.monotonic()
    async with trio.open_nursery() as n:
        n.start_soon(committer)
        rec = await b.wait_run(run.run_id, 10.0)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"wait_run returned {rec}")
    expect(time.monotonic() - started < 5.0, "wait_run did not return soon after the run ended")


ISOLATED_IDS = (
    "a",
    "a:done",
    "a\x1fb",
    "a\x00b",
    "a%00b",
    "a:b",
    "a\x1f",
    "a:ctx",
    "a:items",
    "a b/é\n∂",
    "a*",
    "a?",
    "a[a-z]",
    "a%",
    "a_",
    "a\\",
    "a'; --",
    "{a}",
    "A",
    "\U0001f600a",
    "a" * 256,
    "a" * 255 + "b",
)
"""Run ids that look like run "a", like its key suffixes, glob or LIKE patterns, SQL, hash
tags, or that are as long as an id may be (256 characters) and differ only at the end."""


async def isolation(b: Backend) -> None:
    """Run ids that look like each other, or like key suffixes, share no state."""
    for rid in ISOLATED_IDS:
        await b.create_run(new_run(item(1), item(2), run_id=rid))
    lease = await must_lease(b)
    expect(lease.run_id == "a", f"the first run's item was not leased first: {lease}")
    step = plan(context=ctx(b"A"), collect=[("k", b"v")], outputs=[Output((0,), "a", b"o")])
    await b.commit(lease, step)
    await b.control("a", "cancel")
    for rid in ISOLATED_IDS[1:]:
        rec = await b.get_run(rid)
        expect(
            rec is not None and rec.run_id == rid and rec.status is RunStatus.PENDING,
            f"run {rid!r} changed with run 'a': {rec}",
        )
        assert rec is not None
        expect(rec.pending == 2, f"run {rid!r} has {rec.pending} pending items, not 2")
        expect(await b.context(rid) == RunContext(b"0", 0), f"run {rid!r}'s context moved")
        expect(await b.collected(rid, "k") == [], f"run {rid!r} got run 'a''s collection")
        expect(await b.outputs(rid) == [], f"run {rid!r} got run 'a''s output")
        m = await b.metrics(rid)
        expect((m.done, m.queued) == (0, 2), f"run {rid!r}'s metrics: {m}")
    listed = sorted(r.run_id for r in await b.list_runs())
    expect(listed == sorted(ISOLATED_IDS), f"list_runs gives {listed}")
    got = await b.lease(QUEUE, "w", limit=100, lease_seconds=LEASE, wait=0)
    taken = sorted((le.run_id, le.item_id) for le in got)
    want = sorted((rid, i) for rid in ISOLATED_IDS[1:] for i in ("1", "2"))
    expect(taken == want, f"the other runs' items were not all leasable: {taken}")
    for le in got:
        result = await b.commit(le, plan())
        expect(result is CommitResult.COMMITTED, f"{le.run_id!r} item {le.item_id}: {result}")
    for rid in ISOLATED_IDS[1:]:
        rec = await b.wait_run(rid, 0.05)
        expect(rec is not None and rec.status is RunStatus.COMPLETED, f"run {rid!r}: {rec}")
    rec = await b.get_run("a")
    expect(rec is not None and rec.status is RunStatus.CANCELLED, f"run 'a' is now {rec}")


async def ttl(b: Backend) -> None:
    """Finished runs are kept for the backend's TTL, then `reap` (or the store) forgets them.

    Every backend must keep live runs and runs finished just now through `reap`. A backend
    with a numeric, writable `ttl` attribute (seconds a finished run is kept, as the
    built-in ones have) is also checked to forget a finished run once a short TTL passed.
    """
    live = new_run(item(1), item(2))
    await b.create_run(live)
    done = new_run(item(1))
    await b.create_run(done)
    for lease in await b.lease(QUEUE, "w", limit=3, lease_seconds=LEASE, wait=0):
        if lease.run_id == done.run_id:
            await b.commit(lease, plan())
    finished = await b.get_run(done.run_id)
    expect(finished is not None and finished.status.finished, f"the run did not end: {finished}")
    await b.reap()
    expect(await b.get_run(live.run_id) is not None, "reap() purged a live run")
    expect(await b.get_run(done.run_id) is not None, "reap() purged a run finished just now")
    keep = getattr(b, "ttl", None)
    if not isinstance(keep, int | float) or isinstance(keep, bool):
        return
    b.ttl = 0.5  # type: ignore[attr-defined]
    short = new_run(item(1))
    await b.create_run(short)
    lease = await must_lease(b)
    expect(lease.run_id == short.run_id, "the new run's item was not leased")
    await b.commit(lease, plan())
    expect(await b.get_run(short.run_id) is not None, "a finished run was forgotten at once")
    neighbours = [short.run_id + suffix for suffix in (":done", "*", "\x1f", "_", "%")]
    for rid in neighbours:  # live runs whose ids extend the purged one's
        await b.create_run(new_run(item(1), run_id=rid))
    await trio.sleep(0.8)
    await b.reap()
    expect(await b.get_run(short.run_id) is None, "a finished run was kept after its ttl")
    for rid in neighbours:
        rec = await b.get_run(rid)
        expect(rec is not None and rec.pending == 1, f"run {rid!r} changed with a purge: {rec}")
        expect(await b.context(rid) == RunContext(b"0", 0), f"run {rid!r} lost its context")
    listed = [r.run_id for r in await b.list_runs()]
    expect(short.run_id not in listed, "list_runs lists a run purged after its ttl")
    expect(live.run_id in listed, "a live run was purged with the expired one")
    expect(set(neighbours) <= set(listed), "a purge dropped other runs from list_runs")


async def workers(b: Backend) -> None:
    now = time.time()
    await b.register_worker(WorkerInfo("w-1", QUEUE, "host", 123, now, now, 4))
    await b.register_worker(WorkerInfo("w-2", "other", "host2", 456, now, now, 1))
    seen = {w.worker_id: w for w in await b.workers()}
    expect(set(seen) == {"w-1", "w-2"}, f"registered workers: {sorted(seen)}")
    w1 = seen["w-1"]
    expect(
        (w1.queue, w1.host, w1.pid, w1.concurrency) == (QUEUE, "host", 123, 4),
        f"a worker was stored as {w1}",
    )
    later = time.time()
    await b.register_worker(WorkerInfo("w-1", QUEUE, "host", 123, now, later, 4))
    seen = {w.worker_id: w for w in await b.workers()}
    expect(len(seen) == 2, "registering a worker again added it twice")
    expect(math.isclose(seen["w-1"].last_seen, later, abs_tol=1e-3), "last_seen not updated")
    await b.unregister_worker("w-1")
    expect([w.worker_id for w in await b.workers()] == ["w-2"], "unregister kept the worker")
    await b.unregister_worker("w-2")
    await b.unregister_worker("never-seen")
    expect(await b.workers() == [], "workers remain after all unregistered")


async def connections(b: Backend) -> None:
    """Operations work inside `connected()` and after it; `url` hides any password."""
    async with b.connected():
        run = new_run(item(1))
        await b.create_run(run)
        lease = await must_lease(b)
    result = await b.commit(lease, plan())
    expect(result is CommitResult.COMMITTED, f"a commit after connected() ended: {result}")
    expect(isinstance(b.url, str) and b.url, "the backend has no url")
    expect(  # the url is shown in errors and logs: it must never show a password
        masked_url(b.url) == b.url,
        "the backend's url shows a password (show it as USER:***@)",
    )


def _err() -> ErrorRecord:
    return ErrorRecord("a", "1", 1, "node", "boom", time.time())


PROPERTIES = (
    Property("runs", create_and_get),
    Property("runs", duplicate_run_id),
    Property("runs", empty_run),
    Property("list_runs", list_runs_order),
    Property("cancel", cancel),
    Property("pause", pause_and_resume),
    Property("errors", control_errors),
    Property("deadlines", deadlines),
    Property("wait_run", wait_run),
    Property("isolation", isolation),
    Property("ttl", ttl),
    Property("workers", workers),
    Property("connections", connections),
)
