"""Properties of big commits: a fan-out of thousands of items (more than a backend may
send in one message) is applied whole, once and in order, or not at all.
"""

from __future__ import annotations

from floxide.backends._base import Backend, CommitResult, Lease
from floxide.testing._harness import (
    QUEUE,
    Property,
    expect,
    item,
    lease1,
    must_lease,
    new_run,
    plan,
)

__all__ = ["PROPERTIES"]

BIG = 3000
"""Items of the kit's big fan-out (Redis stages commits of over 2000)."""


async def _drain(b: Backend) -> list[Lease]:
    got: list[Lease] = []
    while True:
        batch = await b.lease(QUEUE, "w2", limit=500, lease_seconds=30.0, wait=0.0)
        if not batch:
            return got
        got += batch


async def a_big_commit_applies_every_item_once(b: Backend) -> None:
    run = new_run(item("root"))
    await b.create_run(run)
    lease = await must_lease(b)
    made = [item(f"i{k}", "b") for k in range(BIG)]
    result, taken = await b.commit_and_lease(lease, plan(items=made), limit=1, lease_seconds=30.0)
    expect(result is CommitResult.COMMITTED, f"a commit of {BIG} items was {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == BIG, f"pending after {BIG} items: {rec}")
    leased = [*taken, *await _drain(b)]
    ids = [le.item_id for le in leased]
    expect(len(ids) == BIG, f"{len(ids)} of the {BIG} items a commit made were leasable")
    expect(ids == [it.item_id for it in made], "the items of a big commit are out of order")
    expect(
        all(le.payload == f"p{le.item_id}".encode() and le.node == "b" for le in leased),
        "an item of a big commit came back changed",
    )
    last = leased[-1]
    result = await b.commit(last, plan())
    expect(result is CommitResult.COMMITTED, f"committing an item of a big fan-out: {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == BIG - 1, f"pending after one of {BIG}: {rec}")


async def a_refused_big_commit_applies_nothing(b: Backend) -> None:
    run = new_run(item("root"))
    await b.create_run(run)
    lease = await must_lease(b)
    expect(await b.release(lease) is CommitResult.COMMITTED, "release of a held lease failed")
    again = await must_lease(b)
    made = [item(f"i{k}", "b") for k in range(BIG)]
    result = await b.commit(lease, plan(items=made))  # the released lease: refused
    expect(result is CommitResult.LOST, f"a big commit of a lost lease was {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == 1, f"a refused big commit changed pending: {rec}")
    expect(await lease1(b) is None, "a refused big commit made items")
    result = await b.commit(again, plan(items=made[:3]))  # the holder's commit is unaffected
    expect(result is CommitResult.COMMITTED, f"the holder's commit after a refused one: {result}")
    ids = sorted(le.item_id for le in await _drain(b))
    expect(ids == ["i0", "i1", "i2"], f"after a refused big commit, the holder's made {ids}")


PROPERTIES = (
    Property("big commits", a_big_commit_applies_every_item_once),
    Property("big commits", a_refused_big_commit_applies_nothing),
)
