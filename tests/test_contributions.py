"""Contention-free merges: contributions, their fold and compaction.

The rule (`floxide._merge.contribution`) is checked against merging whole contexts, and
random interleavings of reads, commits and compactions by several workers, over the
memory, SQLite, Redis and PostgreSQL backends, must give the very context the reference
(every item's copy merged into the first context) gives. The backend side is in the conformance kit
(`floxide.testing._contributions`); real worker processes in test_distributed_faults.py.
"""

from __future__ import annotations

import inspect
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import attrs
import coredis
import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from floxide import (
    Counter,
    EventLog,
    FloxideError,
    Max,
    Mergeable,
    Next,
    Node,
    SetUnion,
    Transition,
    Workflow,
)
from floxide import workflow as make_workflow
from floxide._merge import contribution, private_copy
from floxide._running import enter_item, exit_item
from floxide._step import fold_context
from floxide.backends import (
    Backend,
    CommitPlan,
    NewItem,
    NewRun,
    open_backend,
    stores_contributions,
)
from floxide.backends._redis_keys import Keys
from floxide.backends._redis_keys import rid as redis_rid
from floxide.distributed import Orchestrator, RunStatus
from floxide.distributed._codec import payload_codec
from floxide.distributed._contexts import StepContexts, read_context
from tests.distributed_workflows import Ctx as DCtx
from tests.distributed_workflows import fan_join
from tests.test_distributed import with_workers


@attrs.define
class Ctx(Mergeable):
    region: str = "eu"
    count: Counter = attrs.field(factory=Counter)
    tags: SetUnion[str] = attrs.field(factory=SetUnion)
    peak: Max[int] = attrs.field(factory=lambda: Max(0))
    log: EventLog[int] = attrs.field(factory=EventLog)


@attrs.frozen
class Step(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input)


@make_workflow
class Flow(Workflow[Ctx, int, int]):
    a: Step
    start = "a"
    edges = {"a": []}


CODEC = payload_codec(Flow(a=Step()).graph)

# one item's change: (counter increment, tag, peak, log value)
Op = tuple[int, str, int, int]
ops = st.tuples(
    st.integers(-3, 5), st.sampled_from(["x", "y", "z"]), st.integers(0, 50), st.integers(0, 9)
)


def apply(ctx: Ctx, item_id: str, op: Op) -> None:
    """What item `item_id` does to its copy of the context."""
    n, tag, peak, value = op
    token = enter_item(item_id, (int(item_id),))
    try:
        ctx.count = ctx.count.add(n)
        ctx.tags = ctx.tags.add(tag)
        ctx.peak = ctx.peak.update(peak)
        ctx.log = ctx.log.append(value)
    finally:
        exit_item(token)


def reference(first: Ctx, changes: list[Op]) -> Ctx:
    """Every item's copy of `first`, changed, merged back (the local executor's answer)."""
    out = first
    for i, op in enumerate(changes):
        mine = private_copy(first)
        apply(mine, str(i), op)
        out = out.merge(mine)
    return out


def same(a: Ctx, b: Ctx) -> bool:
    return (a.region, a.count.value, a.tags.items, a.peak.value, a.log.values) == (
        b.region,
        b.count.value,
        b.tags.items,
        b.peak.value,
        b.log.values,
    )


@given(first=ops, second=ops)
def test_a_contribution_merges_like_the_whole_context(first: Op, second: Op) -> None:
    read = Ctx()
    apply(read, "9", first)  # a context that already holds something
    mine = private_copy(read)
    apply(mine, "1", second)
    got = contribution(read, mine)
    assert got is not None
    delta, changed = got
    assert changed
    grown = Ctx()
    apply(grown, "7", second)  # any context grown from `read`: merging gives the same
    later = read.merge(grown)
    assert same(later.merge(delta), later.merge(mine))
    assert same(read.merge(delta), mine)
    # the contribution is small: the new entries only
    assert set(delta.count.increments) | set(delta.count.decrements) <= {"1"}
    assert len(delta.log) == 1


def test_an_unchanged_context_contributes_nothing_and_a_changed_plain_field_goes_whole() -> None:
    read = Ctx()
    apply(read, "1", (1, "x", 3, 4))
    got = contribution(read, private_copy(read))
    assert got is not None and got[1] is False
    mine = private_copy(read)
    mine.region = "us"
    assert contribution(read, mine) is None  # merging cannot express it: committed whole
    shrunk = private_copy(read)
    shrunk.count = Counter({"1": 0})
    assert contribution(read, shrunk) is None


def test_fold_is_the_merge_of_everything_in_any_order() -> None:
    parts = []
    for i in range(5):
        c = Ctx()
        apply(c, str(i), (i, "xyz"[i % 3], i * 7, i))
        parts.append(c)
    want = fold_context(Ctx(), parts)
    assert same(fold_context(Ctx(), reversed(parts)), want)
    assert same(fold_context(Ctx(), [*parts, *parts[:2]]), want)  # duplicates count once


# -- random interleavings over real backends ---------------------------------------------

# An event: (kind, item) where kind 0 = the item reads its context, 1 = it commits
# (an item commits after its read; an item's read may be repeated by a duplicate).
schedules = st.lists(ops, min_size=1, max_size=10).flatmap(
    lambda changes: st.tuples(
        st.just(changes),
        st.permutations([(k, i) for i in range(len(changes)) for k in (0, 1)]),
        st.lists(st.integers(0, 2), min_size=len(changes), max_size=len(changes)),
        st.integers(1, 4),
    )
)


async def _interleave(
    backend: Backend, changes: list[Op], order: list[tuple[int, int]], workers: list[int],
    compact_after: int,
) -> Ctx:
    first = Ctx()
    apply(first, "100", (2, "w", 1, 0))
    run_id = "r"
    await backend.create_run(
        NewRun(
            run_id, "W", "q", "fp", b"0", CODEC.encode_context(first),
            [NewItem(str(i), "a", b"p") for i in range(len(changes))],
        )
    )
    leases = {
        le.item_id: le
        for le in await backend.lease("q", "w", limit=len(changes), lease_seconds=60, wait=0)
    }
    pool = [StepContexts(CODEC, stores_contributions(backend), compact_after) for _ in range(3)]
    reads: dict[int, Any] = {}
    # each item commits after its read: a commit met before its read reads first
    for kind, i in order:
        contexts = pool[workers[i]]
        if i not in reads:
            stored = await backend.context(run_id)
            assert stored is not None
            reads[i] = contexts.read(run_id, stored)
            if kind == 0:
                continue
        elif kind == 0:
            continue
        read = reads[i]
        apply(read.ctx, str(i), changes[i])
        update, contrib = contexts.change(read, read.ctx)
        plan = CommitPlan(context=update, contribution=contrib)
        await backend.commit(leases[str(i)], plan)
    stored = await backend.context(run_id)
    assert stored is not None
    final: Ctx = read_context(CODEC, stored, run_id)
    assert same(final, reference(first, changes)), (final, reference(first, changes))
    return final


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules)
def test_random_interleavings_give_the_reference_context_memory(schedule: Any) -> None:
    changes, order, workers, compact_after = schedule
    trio.run(_interleave, open_backend("memory://"), changes, list(order), workers, compact_after)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules)
def test_random_interleavings_give_the_reference_context_sqlite(
    schedule: Any, tmp_path: Path
) -> None:
    changes, order, workers, compact_after = schedule

    async def go() -> None:
        path = tmp_path / f"i{len(list(tmp_path.iterdir()))}.db"
        backend = open_backend(f"sqlite:///{path}")
        try:
            await _interleave(backend, changes, list(order), workers, compact_after)
        finally:
            await backend.aclose()

    trio.run(go)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules)
def test_random_interleavings_give_the_reference_context_postgres(
    schedule: Any, postgres_server: Any
) -> None:
    changes, order, workers, compact_after = schedule

    async def go() -> None:
        backend = open_backend(f"{postgres_server.url}?floxide_schema=i{uuid.uuid4().hex[:10]}")
        if inspect.isawaitable(backend):
            backend = await backend
        try:
            await _interleave(backend, changes, list(order), workers, compact_after)
        finally:
            await backend.aclose()

    trio.run(go)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules)
def test_random_interleavings_give_the_reference_context_redis(
    schedule: Any, redis_server: Any
) -> None:
    changes, order, workers, compact_after = schedule

    async def go() -> None:
        backend = open_backend(f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:8]}")
        if inspect.isawaitable(backend):
            backend = await backend
        try:
            await _interleave(backend, changes, list(order), workers, compact_after)
        finally:
            await backend.aclose()

    trio.run(go)


# -- a garbled contribution fails its own run only ---------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])  # the backends that store them
def test_a_garbled_contribution_fails_its_run_only(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        prefix = f"g{uuid.uuid4().hex[:8]}"
        url = f"{server.url}?prefix={prefix}"
    elif kind == "postgres":
        pg = request.getfixturevalue("postgres_server")
        schema = f"g{uuid.uuid4().hex[:10]}"
        url = f"{pg.url}?floxide_schema={schema}"
    else:
        path = tmp_path / "runs.db"
        url = f"sqlite:///{path}"

    async def garble(run_id: str) -> None:
        if kind == "redis":
            client = coredis.Redis.from_url(server.url, decode_responses=False)
            async with client:
                key = Keys(prefix, 1).run(redis_rid(run_id))
                await client.hset(f"{key}:contrib", {"x": b"\xff garbage"})
                await client.hset(key, {"contrib": "1"})
        elif kind == "postgres":
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("INSERT INTO {}.contributions VALUES (%s, 'x', %s)").format(
                        sql.Identifier(schema)
                    ),
                    (run_id, b"\xff garbage"),
                )
        else:
            db = sqlite3.connect(path)
            with db:
                db.execute("INSERT INTO contributions VALUES (?, 'x', 'garbage')", (run_id,))
            db.close()

    async def main() -> None:
        backend = open_backend(url)
        wf = fan_join()
        orch = Orchestrator(wf, backend)
        bad = await orch.start_run(DCtx(), 5)
        good = await orch.start_run(DCtx(), 6)
        await garble(bad)

        async def body(_: object) -> None:
            with trio.fail_after(30):
                assert await orch.wait(good, timeout=20) == sum(i * i for i in range(6))
                assert (await orch.context(good)).squared.value == 6
                with pytest.raises(FloxideError, match="context") as failed:
                    await orch.wait(bad, timeout=20)
                assert "Traceback" not in str(failed.value)
                assert await orch.status(bad) is RunStatus.FAILED

        await with_workers(wf, backend, body, n=2)
        await backend.aclose()

    trio.run(main)


@attrs.define
class WithList(Mergeable):
    names: list[str] = attrs.field(factory=list)
    count: Counter = attrs.field(factory=Counter)


def test_a_step_mutating_its_copy_leaves_the_read_alone_and_goes_whole() -> None:
    read = WithList(["a"])
    mine = private_copy(read)
    mine.names.append("b")  # a field that must agree, changed in place
    assert read.names == ["a"]
    assert contribution(read, mine) is None  # committed whole, as before contributions
    grown = private_copy(read)
    grown.count = grown.count.add(2, key="k")
    got = contribution(read, grown)
    assert got is not None and got[0].count.increments == {"k": 2} and got[0].names == ["a"]


def test_redis_leases_leave_out_a_base_the_backend_holds(redis_server: Any) -> None:
    """A lease of a run whose base this backend already got carries no copy of it (the
    script gives false), yet the lease's context is the stored one; a new base comes
    whole."""
    from floxide.backends._base import ContextUpdate, Contribution
    from floxide.backends._redis import RedisBackend

    async def go() -> None:
        backend = open_backend(f"{redis_server.url}?prefix=h{uuid.uuid4().hex[:8]}")
        assert isinstance(backend, RedisBackend)
        big = b'{"base": "' + b"x" * 10_000 + b'"}'
        items = [NewItem(str(i), "a", b"p") for i in range(4)]
        await backend.create_run(NewRun("r", "W", "q", "fp", b"0", big, items))
        first = await backend.lease("q", "w", limit=1, lease_seconds=60, wait=0)
        assert first[0].context == await backend.context("r")
        stored = redis_rid("r")
        tag = backend._bases[stored][0]
        raw = await backend._lease_script("q", 0, stored, "w", 1, 60.0, backend._bases[stored])
        assert raw[2 + 10] is None and raw[2 + 14] == tag  # the base was left out
        second = backend._taken(stored, raw, (tag, big))
        assert second[0].context is not None and second[0].context.data == big
        plan = CommitPlan(contribution=Contribution(b'{"c": 1}'))
        _, more = await backend.commit_and_lease(first[0], plan, limit=1, lease_seconds=60)
        assert more[0].context == await backend.context("r")
        assert more[0].context is not None and more[0].context.data == big
        assert more[0].context.contributions == (("0", b'{"c": 1}'),)
        whole = CommitPlan(context=ContextUpdate(b'{"new": 1}', 0, None, ()))
        _, last = await backend.commit_and_lease(more[0], whole, limit=1, lease_seconds=60)
        assert last[0].context is not None and last[0].context.data == b'{"new": 1}'
        await backend.aclose()

    trio.run(go)
