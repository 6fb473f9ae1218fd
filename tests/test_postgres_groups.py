"""PostgreSQL group commit: commits queued while one is in flight share a transaction (one
statement for branches that made no items, else pipelined statements) and the rows they
share (their join scope's count, their run's counters) updated once at the group's end;
the slots they free are leased in the same transaction. Each commit's result is what it
would be alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio

from floxide.backends import open_backend
from floxide.backends._base import CommitResult, ErrorRecord, Lease, RunStatus, ScopeOpen
from floxide.backends._postgres import PostgresBackend
from floxide.testing._harness import LEASE, QUEUE, item, new_run, plan
from tests.postgres_server import PostgresServer


@pytest.fixture
def backend(postgres_server: PostgresServer) -> PostgresBackend:
    b = open_backend(f"{postgres_server.url}?floxide_schema=g{uuid.uuid4().hex[:10]}")
    assert isinstance(b, PostgresBackend)
    return b


def _group_sizes(b: PostgresBackend) -> list[int]:
    """Record the size of every group the backend's pool runs."""
    sizes: list[int] = []
    pool: Any = b._pool
    group: Callable[..., Any] = pool._group

    async def spy(batch: list[Any], **more: Any) -> Any:
        if len(batch) > 1 or more.get("savepoints"):
            sizes.append(len(batch))
        return await group(batch, **more)

    pool._group = spy
    return sizes


def _sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every statement the backend's connections execute (whitespace collapsed)."""
    import psycopg

    sent: list[str] = []
    execute = psycopg.Connection.execute

    def counting(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
        sent.append(" ".join(str(query).split()))
        return execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    return sent


async def _fan_out(b: PostgresBackend, n: int) -> tuple[str, list[Lease]]:
    """A run whose root opened scope S over `n` items (join J); all of them leased."""
    run = new_run(item("root"))
    await b.create_run(run)
    (root,) = await b.lease(QUEUE, "w1", limit=1, lease_seconds=LEASE, wait=0)
    opened = ScopeOpen("S", n, [item("J", "j")])
    fan = plan(open_scope=opened, items=[item(f"x{k}") for k in range(n)])
    assert await b.commit(root, fan) is CommitResult.COMMITTED
    leases = await b.lease(QUEUE, "w1", limit=n, lease_seconds=LEASE, wait=0)
    assert len(leases) == n
    return run.run_id, leases


async def _all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    out: list[Any] = [None] * len(calls)

    async def one(k: int) -> None:
        out[k] = await calls[k]()

    async with trio.open_nursery() as nursery:
        for k in range(len(calls)):
            nursery.start_soon(one, k)
    return out


async def test_postgres_group_counts_each_step_once_and_fires_the_join(
    backend: PostgresBackend,
) -> None:
    """Eight branch commits and a repeated one at once: grouped, each counted once in its
    scope and run, the repeat refused, the join fired once with every value."""
    b = backend
    sizes = _group_sizes(b)
    run_id, leases = await _fan_out(b, 8)
    other = new_run(item("c1"))  # another run's chain step in the same groups
    await b.create_run(other)
    (chain,) = await b.lease(QUEUE, "w1", limit=1, lease_seconds=LEASE, wait=0)

    def branch(le: Lease) -> Callable[[], Any]:
        step = plan(scopes=["S"], collect=[("J", le.item_id.encode())])
        return lambda: b.commit_and_lease(le, step, limit=1, lease_seconds=LEASE)

    calls = [branch(le) for le in leases] + [branch(leases[0])]
    calls.append(lambda: b.commit_and_lease(chain, plan(items=[item("c2")]), limit=1,
                                            lease_seconds=LEASE))  # fmt: skip
    results = await _all_at_once(calls)
    assert max(sizes) > 1, f"no commits were grouped: {sizes}"
    outcomes = [r[0] for r in results[:9]]
    assert outcomes.count(CommitResult.COMMITTED) == 8
    assert set(outcomes) - {CommitResult.COMMITTED} <= {CommitResult.LOST}
    assert results[9][0] is CommitResult.COMMITTED
    taken = [le.item_id for r in results for le in r[1]]
    assert len(taken) == len(set(taken)) and set(taken) <= {"c2", "J"}
    assert "c2" in taken or "J" in taken
    rest = await b.lease(QUEUE, "w2", limit=5, lease_seconds=LEASE, wait=0)
    assert sorted(taken + [le.item_id for le in rest]) == ["J", "c2"]
    assert sorted(await b.collected(run_id, "J")) == sorted(le.item_id.encode() for le in leases)
    join = next(le for r in results for le in r[1] + rest if le.item_id == "J")
    assert await b.commit(join, plan()) is CommitResult.COMMITTED
    rec = await b.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED and rec.pending == 0
    assert (await b.metrics(run_id)).done == 10
    await b.aclose()


async def test_postgres_group_with_a_failing_step_is_undone_call_by_call(
    backend: PostgresBackend,
) -> None:
    """A step that fails its run, grouped with the run's other steps: the group is run
    again call by call, so the steps before the failure count and the ones after it find
    the run finished."""
    b = backend
    sizes = _group_sizes(b)
    run_id, leases = await _fan_out(b, 6)
    failure = ErrorRecord("a", leases[2].item_id, 1, "node", "ValueError: bad", 0.0)

    def step(le: Lease) -> Callable[[], Any]:
        fails = le is leases[2]
        p = plan(scopes=["S"], failure=failure) if fails else plan(scopes=["S"])
        return lambda: b.commit_and_lease(le, p, limit=1, lease_seconds=LEASE)

    results = await _all_at_once([step(le) for le in leases])
    assert max(sizes) > 1, f"no commits were grouped: {sizes}"
    assert results[2][0] is CommitResult.COMMITTED
    rec = await b.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.FAILED
    committed = sum(r[0] is CommitResult.COMMITTED for r in results) - 1
    assert all(r[0] in (CommitResult.COMMITTED, CommitResult.INACTIVE) for r in results)
    m = await b.metrics(run_id)
    assert m.done == 1 + committed and m.failed == 1
    assert all(not r[1] for r in results), "a step of a failed run leased work"
    await b.aclose()


async def test_postgres_chain_step_alone_is_one_statement(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain step committed alone is one statement in autocommit mode (no BEGIN, no
    COMMIT round trips) that also leases the successor; with an older ready item in the
    queue it is a transaction that leases that item first, as `lease` would."""
    import psycopg

    b = backend
    run = new_run(item(1))
    await b.create_run(run)
    (first,) = await b.lease(QUEUE, "w1", limit=1, lease_seconds=LEASE, wait=0)
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def counting(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
        sent.append(str(query)[:40])
        return execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    result, got = await b.commit_and_lease(first, plan(items=[item(2)]), limit=1,
                                           lease_seconds=LEASE)  # fmt: skip
    assert result is CommitResult.COMMITTED and [le.item_id for le in got] == ["2"]
    assert len(sent) == 1, sent
    assert got[0].token > first.token and got[0].worker_id == "w1"
    assert (await b.metrics(run.run_id)).in_flight == 1
    await b.create_run(new_run(item("older")))  # another run's item, ready before ours
    sent.clear()
    result, got = await b.commit_and_lease(got[0], plan(items=[item(3)]), limit=1,
                                           lease_seconds=LEASE)  # fmt: skip
    assert result is CommitResult.COMMITTED and [le.item_id for le in got] == ["older"]
    assert len(sent) > 1
    rest = await b.lease(QUEUE, "w2", limit=5, lease_seconds=LEASE, wait=0)
    assert [le.item_id for le in rest] == ["3"]
    assert await b.commit(rest[0], plan()) is CommitResult.COMMITTED
    rec = await b.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED
    await b.aclose()


async def test_postgres_group_locks_its_shared_rows_only_with_the_commit(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group whose steps leave their scope open and their run going writes the counts
    in the COMMIT's round trip (`count_steps`), not locking them before (steps that made
    no items: with their own writes, in one round trip); the group that closes the scope
    is settled again with the rows locked first, and fires the join once."""
    import psycopg

    from floxide.backends import _postgres_group as group

    b = backend
    run_id, leases = await _fan_out(b, 8)
    locked: list[int] = []
    settle_locked = group._settle_locked

    def spy(conn: Any, steps: list[Any]) -> Any:
        locked.append(len(steps))
        return settle_locked(conn, steps)

    monkeypatch.setattr(group, "_settle_locked", spy)
    sent = _sent_statements(monkeypatch)
    fetched_in_pipeline: list[bool] = []  # a fetch in pipeline mode: a round trip more
    fetchall = psycopg.Cursor.fetchall

    def fetching(self: Any) -> Any:
        status = self.connection.info.pipeline_status
        fetched_in_pipeline.append(status != psycopg.pq.PipelineStatus.OFF)
        return fetchall(self)

    monkeypatch.setattr(psycopg.Cursor, "fetchall", fetching)

    def branch(le: Lease) -> Callable[[], Any]:
        seconds = 0.5 + leases.index(le)  # the longest: the last branch's
        step = plan(scopes=["S"], collect=[("J", le.item_id.encode())], duration=seconds)
        return lambda: b.commit_and_lease(le, step, limit=0, lease_seconds=LEASE)

    sizes = _group_sizes(b)
    first = await _all_at_once([branch(le) for le in leases[:5]])
    assert all(r[0] is CommitResult.COMMITTED for r in first)
    assert max(sizes) > 1 and not locked, (sizes, locked)
    counted = [k for k, s in enumerate(sent) if "count_steps(" in s]
    assert counted, sent  # the group's writes and counts: one statement, sent last
    assert not any("FOR NO KEY UPDATE" in s for s in sent)
    assert fetched_in_pipeline and not any(fetched_in_pipeline)
    assert (await b.metrics(run_id)).done == 1 + 5
    rest = await _all_at_once([branch(le) for le in leases[5:]])
    assert all(r[0] is CommitResult.COMMITTED for r in rest)
    (join,) = await b.lease(QUEUE, "w2", limit=5, lease_seconds=LEASE, wait=0)
    assert join.item_id == "J"
    assert sorted(await b.collected(run_id, "J")) == sorted(le.item_id.encode() for le in leases)
    assert await b.commit(join, plan()) is CommitResult.COMMITTED
    rec = await b.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED and rec.pending == 0
    m = await b.metrics(run_id)
    assert m.done == 10  # and per node, the steps of a group one row of `steps`:
    assert sum(n.count for n in m.per_node.values()) == 10
    branches = m.per_node[leases[0].node]
    assert branches.count == 1 + 8 and branches.max_seconds == 7.5  # the root: same node
    assert branches.total_seconds == sum(0.5 + k for k in range(8))
    await b.aclose()


async def test_postgres_group_in_one_round_trip_gives_back_a_refused_steps_share(
    backend: PostgresBackend,
) -> None:
    """Branch commits that made no items, grouped, one of them a repeat (its lease lost:
    the group is settled again the locked way): the repeat is refused and the lease taken
    for its slot given back, the others each lease one of the items still queued; the run
    then completes."""
    b = backend
    sizes = _group_sizes(b)
    run = new_run(item("root"))
    await b.create_run(run)
    (root,) = await b.lease(QUEUE, "w1", limit=1, lease_seconds=LEASE, wait=0)
    opened = ScopeOpen("S", 8, [item("J", "j")])
    fan = plan(open_scope=opened, items=[item(f"x{k}") for k in range(8)])
    assert await b.commit(root, fan) is CommitResult.COMMITTED
    leases = await b.lease(QUEUE, "w1", limit=4, lease_seconds=LEASE, wait=0)

    def branch(le: Lease) -> Callable[[], Any]:
        return lambda: b.commit_and_lease(le, plan(scopes=["S"]), limit=1, lease_seconds=LEASE)

    results = await _all_at_once([branch(le) for le in leases] + [branch(leases[0])])
    assert max(sizes) > 1, f"no commits were grouped: {sizes}"
    outcomes = [r[0] for r in results]
    assert outcomes.count(CommitResult.COMMITTED) == 4 and CommitResult.LOST in outcomes
    taken = [le for r in results for le in r[1]]
    assert all(len(r[1]) <= 1 for r in results)
    assert all(not r[1] for r in results if r[0] is CommitResult.LOST)
    rest = await b.lease(QUEUE, "w2", limit=8, lease_seconds=LEASE, wait=0)
    ids = [le.item_id for le in taken + rest]
    assert sorted(ids) == sorted(f"x{k}" for k in range(4, 8)), ids  # each once
    for le in taken + rest:
        assert await b.commit(le, plan(scopes=["S"])) is CommitResult.COMMITTED
    (join,) = await b.lease(QUEUE, "w2", limit=8, lease_seconds=LEASE, wait=0)
    assert join.item_id == "J" and await b.commit(join, plan()) is CommitResult.COMMITTED
    rec = await b.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED and rec.pending == 0
    assert (await b.metrics(run.run_id)).done == 1 + 8 + 1
    await b.aclose()


async def test_postgres_branch_step_alone_is_one_round_trip(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch step committed alone (it made no items, its scope stays open) is a group
    of one: its lease for the next item, then its writes and counts, and the COMMIT, in
    one pipeline read after it; the step that closes the scope is applied the careful way
    and fires the join."""
    import psycopg

    b = backend
    run_id, leases = await _fan_out(b, 3)
    fetched_in_pipeline: list[bool] = []
    fetchall = psycopg.Cursor.fetchall

    def fetching(self: Any) -> Any:
        status = self.connection.info.pipeline_status
        fetched_in_pipeline.append(status != psycopg.pq.PipelineStatus.OFF)
        return fetchall(self)

    monkeypatch.setattr(psycopg.Cursor, "fetchall", fetching)
    for le in leases[:2]:
        fetched_in_pipeline.clear()
        step = plan(scopes=["S"], collect=[("J", le.item_id.encode())])
        result, got = await b.commit_and_lease(le, step, limit=1, lease_seconds=LEASE)
        assert result is CommitResult.COMMITTED and got == []
        assert fetched_in_pipeline and not any(fetched_in_pipeline)
    last = plan(scopes=["S"], collect=[("J", leases[2].item_id.encode())])
    result, got = await b.commit_and_lease(leases[2], last, limit=1, lease_seconds=LEASE)
    assert result is CommitResult.COMMITTED and [le.item_id for le in got] == ["J"]
    assert sorted(await b.collected(run_id, "J")) == sorted(le.item_id.encode() for le in leases)
    assert await b.commit(got[0], plan()) is CommitResult.COMMITTED
    rec = await b.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED and rec.pending == 0
    await b.aclose()


async def test_postgres_group_of_branches_is_one_statement_with_its_leases(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Branch commits of one worker that made no items and leave their scope open, grouped:
    one statement in autocommit mode (no BEGIN, no COMMIT, no pipeline) writes them, counts
    them and leases the next items for the slots they free; each commit gets its own."""
    import psycopg

    b = backend
    run_id, leases = await _fan_out(b, 6)
    extra = new_run(*(item(f"e{k}") for k in range(4)))  # ready items for the freed slots
    await b.create_run(extra)
    (started,) = await b.lease(QUEUE, "w2", limit=1, lease_seconds=LEASE, wait=0)
    assert started.run_id == extra.run_id  # the run is running: leasing it writes no more
    sent = _sent_statements(monkeypatch)
    transactions: list[bool] = []
    transaction = psycopg.Connection.transaction

    def opening(self: Any, *args: Any, **kw: Any) -> Any:
        transactions.append(True)
        return transaction(self, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "transaction", opening)
    sizes = _group_sizes(b)

    def branch(le: Lease) -> Callable[[], Any]:
        step = plan(scopes=["S"], collect=[("J", le.item_id.encode())])
        return lambda: b.commit_and_lease(le, step, limit=1, lease_seconds=LEASE)

    results = await _all_at_once([branch(le) for le in leases[:3]])
    assert sizes == [3], sizes
    assert len(sent) == 1 and "count_steps(" in sent[0] and "SKIP LOCKED" in sent[0], sent
    assert not transactions
    assert all(r is CommitResult.COMMITTED for r, _ in results)
    got = sorted(le.item_id for _, taken in results for le in taken)
    assert len(got) == 3 and all(len(taken) == 1 for _, taken in results), results
    assert set(got) == {"e1", "e2", "e3"}
    m = await b.metrics(run_id)
    assert m.done == 1 + 3
    await b.aclose()


async def test_postgres_group_leader_waits_for_the_commits_woken_with_it() -> None:
    """The next group's leader yields until no commit has joined for two checkpoints in a
    row: the callers a group just woke, which trio may run after the leader's first
    checkpoint, join its group instead of forming one of their own."""
    from floxide.backends._postgres_conn import Pool

    pool: Any = Pool.__new__(Pool)
    for _ in range(20):  # trio runs each batch of woken tasks in either order
        pool._queued = ["leader"]
        woken = trio.Event()

        async def caller(k: int, woken: trio.Event) -> None:
            await woken.wait()  # then its next step, which does not yield, and its commit
            pool._queued.append(k)

        async with trio.open_nursery() as nursery:
            for k in range(8):
                nursery.start_soon(caller, k, woken)
            await trio.sleep(0.01)
            woken.set()
            await pool._gather()
            assert sorted(pool._queued[1:]) == list(range(8)), pool._queued
