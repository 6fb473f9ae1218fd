"""Properties of `commit`: what one applies, that it applies at most once and atomically,
how it merges the context, and how a failure ends the run.
"""

from __future__ import annotations

import json
import math
import time

import trio

from floxide.backends._base import (
    Backend,
    CommitResult,
    ContextUpdate,
    ErrorRecord,
    Output,
    RunContext,
    RunStatus,
)
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


async def commit_applies_a_step(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b)
    first = plan(
        context=ctx(b"1"),
        items=[item(2, "b")],
        outputs=[Output((1,), "a", b"out1")],
        collect=[("k", b"v1"), ("k", b"v2"), ("other", b"x")],
        duration=0.5,
    )
    result = await b.commit(lease, first)
    expect(result is CommitResult.COMMITTED, f"a commit with a held lease was {result}")
    got = await b.context(run.run_id)
    expect(got == RunContext(b"1", 1), f"the committed context (version 1) is {got}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == 1, f"pending after a step made one item: {rec}")

    lease2 = await lease1(b)
    expect(
        lease2 is not None and (lease2.item_id, lease2.node) == ("2", "b"),
        f"the item a commit made was not leasable: {lease2}",
    )
    assert lease2 is not None
    expect(sorted(await b.collected(run.run_id, "k")) == [b"v1", b"v2"], "collect was lost")
    expect(await b.collected(run.run_id, "other") == [b"x"], "collections mixed up their keys")
    second = plan(outputs=[Output((0,), "b", b"out0")], drop_collected=["other"])
    result = await b.commit(lease2, second)
    expect(result is CommitResult.COMMITTED, f"the last item's commit was {result}")
    rec = await b.get_run(run.run_id)
    expect(
        rec is not None and rec.status is RunStatus.COMPLETED and rec.finished_at is not None,
        f"a run with no item left did not complete: {rec}",
    )
    assert rec is not None
    expect(rec.pending == 0, f"a completed run has pending items: {rec.pending}")
    outs = [o.value for o in await b.outputs(run.run_id)]
    expect(outs == [b"out0", b"out1"], f"outputs are not in branch order: {outs}")
    expect(await b.collected(run.run_id, "other") == [], "drop_collected kept the collection")
    got = await b.context(run.run_id)
    expect(got == RunContext(b"1", 1), f"a commit without context changed it: {got}")


async def commit_metrics(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b)
    await b.commit(lease, plan(items=[item(2, "b")], duration=0.5))
    lease2 = await must_lease(b)
    await b.commit(lease2, plan(duration=0.25))
    m = await b.metrics(run.run_id)
    expect((m.done, m.in_flight, m.queued) == (2, 0, 0), f"done/in flight/queued: {m}")
    a = m.per_node.get("a")
    expect(a is not None and a.count == 1, f"per-node count of node a: {m.per_node}")
    assert a is not None
    expect(math.isclose(a.max_seconds, 0.5, rel_tol=1e-3), f"node a's latency: {a}")
    nb = m.per_node.get("b")
    expect(nb is not None and math.isclose(nb.total_seconds, 0.25, rel_tol=1e-3), f"b: {nb}")
    expect((m.failed, m.retried) == (0, 0), f"a run without failures counts some: {m}")
    expect(m.total_known == 2, f"total_known of a finished 2-item run: {m.total_known}")
    none = await b.metrics("no-such-run")
    expect(none.done == 0 and none.per_node == {}, f"metrics of an unknown run: {none}")


async def at_most_once(b: Backend) -> None:
    run = new_run(item(1), item(9))  # item 9 keeps the run live after item 1
    await b.create_run(run)
    lease = await must_lease(b)
    step = plan(
        context=ctx(b"1"),
        items=[item(2, "b")],
        outputs=[Output((1,), "a", b"o")],
        collect=[("k", b"v")],
        duration=0.1,
    )
    expect(await b.commit(lease, step) is CommitResult.COMMITTED, "the first commit failed")
    again = await b.commit(lease, step)
    expect(
        again in (CommitResult.LOST, CommitResult.INACTIVE),
        f"the same item committed twice (second commit: {again})",
    )
    got = await b.context(run.run_id)
    expect(got == RunContext(b"1", 1), f"a repeated commit changed the context: {got}")
    expect(len(await b.outputs(run.run_id)) == 1, "a repeated commit added its outputs again")
    expect(await b.collected(run.run_id, "k") == [b"v"], "a repeated commit collected again")
    m = await b.metrics(run.run_id)
    expect((m.done, m.queued) == (1, 2), f"a repeated commit was counted or enqueued: {m}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == 2, f"pending after a repeated commit: {rec}")
    again2, got2 = await b.commit_and_lease(lease, step, limit=5, lease_seconds=LEASE)
    expect(
        again2 in (CommitResult.LOST, CommitResult.INACTIVE) and got2 == [],
        f"commit_and_lease applied a committed item again: {again2}, {got2}",
    )


async def atomicity(b: Backend) -> None:
    """Read-modify-write of the context from many concurrent commits loses nothing."""
    n = 30
    run = new_run(*(item(i) for i in range(n)))
    await b.create_run(run)
    leases = await b.lease(QUEUE, "w", limit=n, lease_seconds=LEASE, wait=0)
    expect(len(leases) == n, f"lease(limit={n}) of {n} ready items gave {len(leases)}")

    def bump(stored: bytes) -> bytes:
        return json.dumps(json.loads(stored) + 1).encode()

    # every step read version 0 ("0") and wrote "1"; all but the first find the context
    # changed and merge into the stored one instead
    update = ContextUpdate(b"1", 0, bump)
    results: list[CommitResult] = []

    async def commit_one(i: int) -> None:
        results.append(await b.commit(leases[i], plan(context=update)))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(commit_one, i)
    expect(results.count(CommitResult.COMMITTED) == n, f"concurrent commits: {results}")
    stored = await b.context(run.run_id)
    expect(
        stored is not None and json.loads(stored.data) == n and stored.version == n,
        f"{n} concurrent merging commits left the context at {stored}",
    )
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, "the run did not complete")
    m = await b.metrics(run.run_id)
    expect(m.done == n, f"{n} concurrent commits counted {m.done} done")


async def merges(b: Backend) -> None:
    run = new_run(item(1), item(2), item(3), item(4), context=b'"base"')
    await b.create_run(run)
    leases = [await must_lease(b) for _ in range(4)]
    # the base version is current: the value is written as it is, the merge not called
    calls: list[bytes] = []

    def merge(stored: bytes) -> bytes:
        calls.append(stored)
        return stored + b"+merged"

    await b.commit(leases[0], plan(context=ContextUpdate(b'"first"', 0, merge)))
    got = await b.context(run.run_id)
    expect(got == RunContext(b'"first"', 1), f"a current-version update was not written: {got}")
    expect(calls == [], "a merge was called though the context had not changed")
    # a stale base version with a merge: the merge gets the stored context
    await b.commit(leases[1], plan(context=ContextUpdate(b'"second"', 0, merge)))
    got = await b.context(run.run_id)
    expect(calls and calls[-1] == b'"first"', f"a merge was not given the stored context: {calls}")
    expect(got == RunContext(b'"first"+merged', 2), f"a stale update was not merged: {got}")
    # a stale base version without a merge: the last commit wins
    await b.commit(leases[2], plan(context=ContextUpdate(b'"third"', 0)))
    got = await b.context(run.run_id)
    expect(got == RunContext(b'"third"', 3), f"a stale update without merge: {got}")

    # a merge that raises: the error propagates and nothing of the commit is applied
    def broken(stored: bytes) -> bytes:
        raise ValueError("merge refused")

    bad = plan(context=ContextUpdate(b"x", 0, broken), items=[item(5)], collect=[("k", b"v")])
    raised: BaseException | None = None
    try:
        await b.commit(leases[3], bad)
    except ValueError as e:
        raised = e
    expect(raised is not None, "an error raised by a context merge did not propagate")
    got = await b.context(run.run_id)
    expect(got == RunContext(b'"third"', 3), f"a commit whose merge raised changed it: {got}")
    expect(await b.collected(run.run_id, "k") == [], "a commit whose merge raised collected")
    expect(await lease1(b) is None, "a commit whose merge raised enqueued its items")
    expect(await b.heartbeat([leases[3]], LEASE) == [True], "a raising merge lost the lease")
    result = await b.commit(leases[3], plan())
    expect(result is CommitResult.COMMITTED, f"the item could not commit after a raise: {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"run after merges: {rec}")


async def failures(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    lease = await must_lease(b)
    failure = ErrorRecord("a", "1", 1, "node", "ValueError: bad", time.time())
    result = await b.commit(lease, plan(failure=failure, items=[item(3)]))
    expect(result is CommitResult.COMMITTED, f"a failing commit was {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.FAILED, f"a failure did not fail: {rec}")
    assert rec is not None
    expect(
        (rec.error, rec.error_kind) == ("ValueError: bad", "node") and rec.finished_at,
        f"a failed run does not carry its failure: {rec}",
    )
    expect(await lease1(b) is None, "items of a failed run were still leased")
    errs = await b.errors(run.run_id)
    expect(errs and errs[-1].message == "ValueError: bad", f"the failure is not in errors: {errs}")
    expect((await b.metrics(run.run_id)).failed == 1, "a failed step was not counted")
    expect(await b.fail_run(run.run_id, failure) is False, "fail_run failed a finished run")


async def commit_and_lease_takes_the_successor(b: Backend) -> None:
    """A chain step in one operation: the commit leases the item it made to the same worker."""
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b, "w1")
    step = plan(context=ctx(b"1"), items=[item(2, "b")])
    result, got = await b.commit_and_lease(lease, step, limit=1, lease_seconds=LEASE)
    expect(result is CommitResult.COMMITTED, f"commit_and_lease of a held lease: {result}")
    expect(
        [(le.item_id, le.node, le.payload, le.attempt) for le in got] == [("2", "b", b"p2", 1)],
        f"commit_and_lease did not lease the successor it made: {got}",
    )
    nxt = got[0]
    expect(
        nxt.worker_id == "w1" and nxt.token != lease.token and nxt.deadline > time.time(),
        f"the successor's lease is not the worker's own fresh lease: {nxt}",
    )
    expect(
        nxt.context in (None, RunContext(b"1", 1)),
        f"the successor's lease carries another context than the commit left: {nxt.context}",
    )
    expect(nxt.run_deadline in (None, math.inf), f"run_deadline of a run without: {nxt}")
    m = await b.metrics(run.run_id)
    expect((m.done, m.in_flight, m.queued) == (1, 1, 0), f"metrics after the chain step: {m}")
    expect(await lease1(b, "w2") is None, "an item commit_and_lease leased was leased again")
    again = await b.commit_and_lease(lease, step, limit=1, lease_seconds=LEASE)
    expect(
        again in ((CommitResult.LOST, []), (CommitResult.INACTIVE, [])),
        f"a repeated commit_and_lease was applied: {again}",
    )
    expect(await b.heartbeat([nxt], LEASE) == [True], "the successor's lease is not held")
    result, got = await b.commit_and_lease(nxt, plan(), limit=1, lease_seconds=LEASE)
    expect((result, got) == (CommitResult.COMMITTED, []), f"the last chain step: {result}, {got}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"the chain ended: {rec}")


async def commit_and_lease_limit_and_the_rest(b: Backend) -> None:
    """At most `limit` leases, oldest first; the rest stay ready and wake waiting workers."""
    run = new_run(item(1), item(2))
    await b.create_run(run)
    lease = await must_lease(b, "w1")
    expect(lease.item_id == "1", "the oldest item was not leased first")
    fan = plan(items=[item(3), item(4), item(5, delay=60)])
    result, got = await b.commit_and_lease(lease, fan, limit=2, lease_seconds=LEASE)
    expect(result is CommitResult.COMMITTED, f"commit_and_lease of a fan-out: {result}")
    expect([le.item_id for le in got] == ["2", "3"], f"limit=2 leased {got}, not items 2, 3")
    rest = await b.lease(QUEUE, "w2", limit=5, lease_seconds=LEASE, wait=0)
    expect(
        [le.item_id for le in rest] == ["4"],
        f"the rest of a fan-out is not ready (or a delayed item was taken early): {rest}",
    )
    waited: list[list[str]] = []

    async def waiting() -> None:
        got = await b.lease(QUEUE, "w2", limit=5, lease_seconds=LEASE, wait=60)
        waited.append([le.item_id for le in got])

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiting)
                await trio.sleep(0.1)
                result, more = await b.commit_and_lease(
                    got[0], plan(items=[item(6), item(7)]), limit=1, lease_seconds=LEASE
                )
    except trio.TooSlowError:
        expect(False, "a waiting worker was not woken by the items commit_and_lease left")
    expect(
        result is CommitResult.COMMITTED and [le.item_id for le in more] == ["6"],
        f"commit_and_lease(limit=1) of two new items: {result}, {more}",
    )
    expect(waited == [["7"]], f"the waiting worker got {waited}, not the item left over")
    result, none = await b.commit_and_lease(got[1], plan(), limit=0, lease_seconds=LEASE)
    expect((result, none) == (CommitResult.COMMITTED, []), "limit=0 is not a plain commit")
    m = await b.metrics(run.run_id)
    expect((m.done, m.in_flight, m.queued) == (3, 3, 1), f"metrics after the fan-out: {m}")


async def commit_and_lease_respects_pause_and_cancel(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    first = await must_lease(b)
    await must_lease(b)
    await b.control(run.run_id, "pause")
    # the item in flight commits; its successor is not started while the run is paused
    result, got = await b.commit_and_lease(
        first, plan(items=[item(3)]), limit=1, lease_seconds=LEASE
    )
    expect((result, got) == (CommitResult.COMMITTED, []), f"while paused: {result}, {got}")
    await b.control(run.run_id, "resume")
    again = await lease1(b)
    expect(again is not None and again.item_id == "3", f"after resume: {again}")
    assert again is not None
    await b.control(run.run_id, "cancel")
    result, got = await b.commit_and_lease(
        again, plan(items=[item(4)]), limit=1, lease_seconds=LEASE
    )
    expect((result, got) == (CommitResult.INACTIVE, []), f"once cancelled: {result}, {got}")


PROPERTIES = (
    Property("commits", commit_applies_a_step),
    Property("metrics", commit_metrics),
    Property("at-most-once", at_most_once),
    Property("atomicity", atomicity),
    Property("merges", merges),
    Property("failures", failures),
    Property("commit_and_lease", commit_and_lease_takes_the_successor),
    Property("commit_and_lease", commit_and_lease_limit_and_the_rest),
    Property("commit_and_lease", commit_and_lease_respects_pause_and_cancel),
)
