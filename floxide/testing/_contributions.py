"""Properties of contributions (backends that `stores_contributions`; others pass at once):
a step's change stored under its item id without a version check, folded on read, and
compacted into the base by a compare-and-set on the version.

The kit's context is a JSON object of counts merged by the larger count per key (a
semilattice, like `floxide.Counter`); a contribution is such an object.
"""

from __future__ import annotations

import json

import trio

from floxide.backends._base import (
    Backend,
    CommitResult,
    ContextUpdate,
    Contribution,
    ErrorRecord,
    Lease,
    RunContext,
    RunStatus,
    stores_contributions,
)
from floxide.testing._harness import (
    LEASE,
    QUEUE,
    Property,
    expect,
    item,
    must_lease,
    new_run,
    plan,
)

__all__ = ["PROPERTIES"]


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}


def fold(stored: RunContext | None) -> dict[str, int]:
    """The context `stored` stands for: its base merged with every contribution."""
    assert stored is not None
    out: dict[str, int] = json.loads(stored.data)
    for _, data in stored.contributions:
        out = _merge(out, json.loads(data))
    return out


def _data(**counts: int) -> bytes:
    return json.dumps(counts, sort_keys=True).encode()


def _gives(data: bytes | None, compact: ContextUpdate | None = None) -> Contribution:
    return Contribution(data, compact)


def _compaction(read: RunContext) -> ContextUpdate:
    """`read` folded whole, as the new base at its version."""
    return ContextUpdate(json.dumps(fold(read)).encode(), read.version, None, read.contributions)


async def _leases(b: Backend, n: int) -> list[Lease]:
    got = await b.lease(QUEUE, "w", limit=n, lease_seconds=LEASE, wait=0)
    expect(len(got) == n, f"lease(limit={n}) of {n} ready items gave {len(got)}")
    return got


async def concurrent_contributions(b: Backend) -> None:
    """Many items contribute at once: none conflicts, nothing is lost, leases carry them
    (each of several leases taken together, before and after a compaction)."""
    if not stores_contributions(b):
        return
    n = 40
    last_items = (item(f"last{k}") for k in range(4))
    run = new_run(*(item(i) for i in range(n)), *last_items, context=b"{}")
    await b.create_run(run)
    leases = await _leases(b, n)
    results: list[CommitResult] = []

    async def commit_one(le: Lease) -> None:
        contribution = _gives(json.dumps({le.item_id: 1}).encode())
        results.append(await b.commit(le, plan(contribution=contribution)))

    async with trio.open_nursery() as nursery:
        for le in leases:
            nursery.start_soon(commit_one, le)
    expect(results.count(CommitResult.COMMITTED) == n, f"concurrent contributions: {results}")
    stored = await b.context(run.run_id)
    expect(stored is not None and stored.version == 0, f"contributions moved the version: {stored}")
    want = {str(i): 1 for i in range(n)}
    expect(fold(stored) == want, f"{n} concurrent contributions folded to {fold(stored)}")
    expect(
        stored is not None and sorted(k for k, _ in stored.contributions) == sorted(want),
        "contributions are not stored under their items' ids",
    )
    last = await must_lease(b)
    expect(
        last.context is None or fold(last.context) == want,
        f"a lease's context lacks the contributions: {last.context}",
    )
    assert stored is not None
    compacted = _gives(_data(c=1), _compaction(stored))
    expect(
        await b.commit(last, plan(contribution=compacted)) is CommitResult.COMMITTED,
        "a compaction after concurrent contributions did not commit",
    )
    want["c"] = 1
    together = await b.lease(QUEUE, "w", limit=3, lease_seconds=LEASE, wait=0)
    expect(bool(together), "no ready item was leased after a compaction")
    while len(together) < 3:  # a backend may give fewer at once: the rest one by one
        together.append(await must_lease(b))
    for le in together:
        expect(
            le.context is None or fold(le.context) == want,
            f"one of several leases taken together lacks the context: {le.context}",
        )
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.pending == 3, f"pending after the contributions: {rec}")


async def a_rerun_counts_once(b: Backend) -> None:
    """An item that contributes again (a re-run) replaces its contribution."""
    if not stores_contributions(b):
        return
    run = new_run(item(1), item(2), context=b"{}")
    await b.create_run(run)
    first = await must_lease(b)
    await b.commit(first, plan(contribution=_gives(_data(**{first.item_id: 1}))))
    # the other item contributes, then fails the run: it is kept for retry_run
    second = await must_lease(b)
    failure = ErrorRecord(second.node, second.item_id, second.attempt, "node", "boom", 0.0)
    await b.commit(second, plan(contribution=_gives(_data(x=2)), failure=failure))
    await b.retry_run(run.run_id, None)
    again = await must_lease(b)
    expect(again.item_id == second.item_id, f"retry_run re-queued {again.item_id}")
    await b.commit(again, plan(contribution=_gives(_data(x=1, y=1))))
    stored = await b.context(run.run_id)
    keys = [k for k, _ in stored.contributions] if stored else []
    expect(sorted(keys) == sorted({first.item_id, second.item_id}), f"contributions: {stored}")
    expect(fold(stored) == {first.item_id: 1, "x": 1, "y": 1}, f"a re-run: {fold(stored)}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.COMPLETED, f"run after a re-run: {rec}")


async def compaction(b: Backend) -> None:
    """A compaction writes the fold it read as the base and drops what it folded, only if
    the base is still the one it read; contributions racing with it are kept."""
    if not stores_contributions(b):
        return
    run = new_run(*(item(i) for i in range(9)), context=b'{"base": 1}')
    await b.create_run(run)
    leases = await _leases(b, 9)
    for le in leases[:4]:
        await b.commit(le, plan(contribution=_gives(_data(**{le.item_id: 1}))))
    read = await b.context(run.run_id)
    assert read is not None
    # a contribution committed after the read, then two compactions of that read: the
    # first applies, the second (a concurrent compactor that lost) is skipped
    await b.commit(leases[4], plan(contribution=_gives(_data(late=1))))
    compact = _compaction(read)
    await b.commit(leases[5], plan(contribution=_gives(_data(five=1), compact)))
    got = await b.context(run.run_id)
    assert got is not None
    expect(got.version == read.version + 1, f"a compaction did not bump the version: {got}")
    expect(json.loads(got.data) == fold(read), f"the compacted base is {got.data!r}")
    left = sorted(k for k, _ in got.contributions)
    want_left = sorted([leases[4].item_id, leases[5].item_id])
    expect(left == want_left, f"after a compaction the contributions are {left}")
    await b.commit(leases[6], plan(contribution=_gives(None, compact)))
    again = await b.context(run.run_id)
    expect(
        again is not None
        and (again.data, again.version, sorted(again.contributions))
        == (got.data, got.version, sorted(got.contributions)),
        f"a stale compaction was applied: {again} (was {got})",
    )
    want = {"base": 1, **{le.item_id: 1 for le in leases[:4]}, "late": 1, "five": 1}
    expect(fold(again) == want, f"the fold after compactions is {fold(again)}")
    # a whole write at the current version replaces what it read (the contributions it
    # folded go); one committed after its read stays
    assert again is not None
    read = again
    await b.commit(leases[7], plan(contribution=_gives(_data(after=1))))
    whole = ContextUpdate(b'{"whole": 1}', read.version, lambda s: s, read.contributions)
    await b.commit(leases[8], plan(context=whole))
    got = await b.context(run.run_id)
    expect(fold(got) == {"whole": 1, "after": 1}, f"a whole write left {fold(got)}")


async def a_stale_whole_write_merges(b: Backend) -> None:
    """A whole write from a stale version is merged into the base; contributions stay."""
    if not stores_contributions(b):
        return
    run = new_run(item(1), item(2), item(3), context=b'{"a": 1}')
    await b.create_run(run)
    leases = await _leases(b, 3)
    read = await b.context(run.run_id)
    assert read is not None
    compact = ContextUpdate(b'{"a": 2}', read.version, None, ())
    await b.commit(leases[0], plan(contribution=_gives(_data(c=1), compact)))

    def merge(stored: bytes) -> bytes:
        return json.dumps(_merge(json.loads(stored), {"w": 1})).encode()

    stale = ContextUpdate(b'{"w": 1}', read.version, merge, read.contributions)
    await b.commit(leases[1], plan(context=stale))
    got = await b.context(run.run_id)
    expect(fold(got) == {"a": 2, "c": 1, "w": 1}, f"a stale whole write left {fold(got)}")


async def isolation_and_garbage(b: Backend) -> None:
    """Contributions belong to their run: any bytes are kept as given, another run's
    context and leases are untouched."""
    if not stores_contributions(b):
        return
    bad = new_run(item(1), item(2), context=b"{}")
    good = new_run(item(1), item(2), context=b"{}")
    await b.create_run(bad)
    le = await must_lease(b)
    expect(le.run_id == bad.run_id, "the first run's item was not leased first")
    garbage = b'\xff\x00{"not json'
    await b.commit(le, plan(contribution=_gives(garbage)))
    await b.create_run(good)
    got = await b.context(bad.run_id)
    expect(
        got is not None and list(got.contributions) == [(le.item_id, garbage)],
        f"a contribution was not kept as given: {got}",
    )
    expect(await b.context(good.run_id) == RunContext(b"{}", 0), "another run's context moved")
    leases = await _leases(b, 3)
    by_run = {x.run_id: x for x in leases}
    other = by_run.get(good.run_id)
    expect(
        other is not None and (other.context is None or other.context == RunContext(b"{}", 0)),
        f"a lease of another run carries contributions: {other}",
    )


PROPERTIES = (
    Property("contributions", concurrent_contributions),
    Property("contributions: re-run", a_rerun_counts_once),
    Property("contributions: compaction", compaction),
    Property("contributions: stale whole write", a_stale_whole_write_merges),
    Property("contributions: isolation", isolation_and_garbage),
)
