"""Properties of join scopes: counted by the backend, innermost first, fired once.

A step that opens a scope registers how many live items carry it and the join items to
enqueue when none is left; every commit of an item inside it changes the count by the
items it made minus itself, plus the joins its inner scopes fired in the same commit.
"""

from __future__ import annotations

from floxide.backends._base import Backend, CommitResult, RunStatus, ScopeOpen
from floxide.testing._harness import (
    LEASE,
    QUEUE,
    Property,
    expect,
    item,
    lease1,
    new_run,
    plan,
)

__all__ = ["PROPERTIES"]


async def _step(b: Backend, expect_id: str, **kw: object) -> None:
    lease = await lease1(b)
    expect(
        lease is not None and lease.item_id == expect_id,
        f"expected item {expect_id!r} to be ready next, got {lease and lease.item_id!r}",
    )
    assert lease is not None
    result = await b.commit(lease, plan(**kw))  # type: ignore[arg-type]
    expect(result is CommitResult.COMMITTED, f"the commit of {expect_id!r} was {result}")


async def scopes_innermost_first(b: Backend) -> None:
    """Outer scope S1 (2 items), inner scope S2 opened by one of them; J2 fires into S1."""
    run = new_run(item("root"))
    await b.create_run(run)
    await _step(
        b, "root", open_scope=ScopeOpen("S1", 2, [item("J1", "j1")]), items=[item("a1"), item("a2")]
    )
    await _step(
        b, "a1", scopes=["S1"], open_scope=ScopeOpen("S2", 1, [item("J2", "j2")]),
        items=[item("b1")],
    )  # fmt: skip
    await _step(b, "a2", scopes=["S1"])
    await _step(b, "b1", scopes=["S2", "S1"])  # S2 closes: J2 fires and counts in S1
    rec = await b.get_run(run.run_id)
    expect(
        rec is not None and rec.status is RunStatus.RUNNING,
        f"closing an inner scope closed the outer one too early: {rec}",
    )
    await _step(b, "J2", scopes=["S1"])  # S1 closes: J1 fires
    await _step(b, "J1")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"the run did not end: {rec}")
    expect((await b.metrics(run.run_id)).done == 6, "six steps were not counted done")


async def fan_out_inside_a_scope(b: Backend) -> None:
    """A step inside scope S fans out into three items: S counts them before closing."""
    run = new_run(item("root"))
    await b.create_run(run)
    opened = ScopeOpen("S", 1, [item("J", "j")])
    await _step(b, "root", open_scope=opened, items=[item("x")])
    await _step(b, "x", scopes=["S"], items=[item("y0"), item("y1"), item("y2")])
    got = await b.lease(QUEUE, "w", limit=10, lease_seconds=LEASE, wait=0)
    expect(
        sorted(le.item_id for le in got) == ["y0", "y1", "y2"],
        f"the fan-out inside a scope gave {[le.item_id for le in got]} (the join fired early?)",
    )
    for i, le in enumerate(got):
        result = await b.commit(le, plan(scopes=["S"]))
        expect(result is CommitResult.COMMITTED, f"commit of {le.item_id}: {result}")
        if i < len(got) - 1:
            expect(await lease1(b) is None, "a join fired before its scope's last item")
    last = await lease1(b)
    expect(last is not None and last.item_id == "J", f"the join did not fire: {last}")


async def empty_fan_out_closes_its_scope(b: Backend) -> None:
    """A scope whose only item makes nothing fires its join in that same commit."""
    run = new_run(item("root"))
    await b.create_run(run)
    await _step(b, "root", open_scope=ScopeOpen("S", 1, [item("J", "j")]), items=[item("x")])
    await _step(b, "x", scopes=["S"])
    last = await lease1(b)
    expect(last is not None and last.item_id == "J", f"the join did not fire: {last}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status.live, f"a run with a fired join ended: {rec}")


async def joins_fire_once_with_their_collection(b: Backend) -> None:
    """Values collected in a scope reach the join; dropping them after it empties the key."""
    run = new_run(item("root"))
    await b.create_run(run)
    await _step(
        b, "root", open_scope=ScopeOpen("S", 2, [item("J", "j")]), items=[item("x1"), item("x2")]
    )
    await _step(b, "x1", scopes=["S"], collect=[("S/v", b"1")])
    await _step(b, "x2", scopes=["S"], collect=[("S/v", b"2")])
    got = await b.lease(QUEUE, "w", limit=10, lease_seconds=LEASE, wait=0)
    expect([le.item_id for le in got] == ["J"], f"the join fired as {got}, not once")
    values = sorted(await b.collected(run.run_id, "S/v"))
    expect(values == [b"1", b"2"], f"the join's collection holds {values}")
    result = await b.commit(got[0], plan(drop_collected=["S/v"]))
    expect(result is CommitResult.COMMITTED, f"the join's commit was {result}")
    expect(await b.collected(run.run_id, "S/v") == [], "a consumed collection was kept")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"the run did not end: {rec}")


PROPERTIES = (
    Property("joins", scopes_innermost_first),
    Property("joins", fan_out_inside_a_scope),
    Property("joins", empty_fan_out_closes_its_scope),
    Property("joins", joins_fire_once_with_their_collection),
)
