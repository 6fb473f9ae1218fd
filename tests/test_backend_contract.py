"""One contract, every backend: memory, SQLite and Redis pass the same tests."""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from floxide import BackendError
from floxide.backends import (
    Backend,
    CommitPlan,
    CommitResult,
    ContextUpdate,
    ErrorRecord,
    NewItem,
    NewRun,
    Output,
    RunContext,
    RunStatus,
    ScopeOpen,
    WorkerInfo,
    open_backend,
)
from tests.redis_server import RedisServer

QUEUE = "wf"
_ids = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "memory":
        b = open_backend("memory://")
    elif kind == "sqlite":
        b = open_backend(f"sqlite:///{tmp_path / 'runs.db'}")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        b = open_backend(f"{server.url}?prefix=t{uuid.uuid4().hex[:8]}")
    try:
        yield b
    finally:
        await b.aclose()


def item(i: int | str, node: str = "a", delay: float = 0.0) -> NewItem:
    return NewItem(item_id=str(i), node=node, payload=f"p{i}".encode(), delay=delay)


def new_run(*items: NewItem, run_id: str | None = None, deadline: float | None = None) -> NewRun:
    return NewRun(
        run_id=run_id or f"run-{next(_ids)}-{uuid.uuid4().hex[:6]}",
        workflow="W",
        queue=QUEUE,
        fingerprint="fp",
        input=b"7",
        context=b"0",
        items=list(items),
        deadline=deadline,
    )


def plan(**kw: object) -> CommitPlan:
    return CommitPlan(**kw)  # type: ignore[arg-type]


def ctx(value: bytes, base: int = 0) -> ContextUpdate:
    return ContextUpdate(value, base)


async def lease1(b: Backend, worker: str = "w1", seconds: float = 30.0, wait: float = 0.0):  # type: ignore[no-untyped-def]
    got = await b.lease(QUEUE, worker, limit=1, lease_seconds=seconds, wait=wait)
    return got[0] if got else None


async def test_create_get_list_and_duplicate(backend: Backend) -> None:
    run = new_run(item(1))
    await backend.create_run(run)
    rec = await backend.get_run(run.run_id)
    assert rec is not None
    assert (rec.status, rec.workflow, rec.queue, rec.input, rec.pending) == (
        RunStatus.PENDING,
        "W",
        QUEUE,
        b"7",
        1,
    )
    assert await backend.get_run("nope") is None
    assert run.run_id in [r.run_id for r in await backend.list_runs()]
    assert await backend.context(run.run_id) == RunContext(b"0", 0)
    with pytest.raises(BackendError, match="already exists"):
        await backend.create_run(run)


async def test_lease_commit_completes_run(backend: Backend) -> None:
    run = new_run(item(1))
    await backend.create_run(run)
    lease = await lease1(backend)
    assert lease is not None and (lease.item_id, lease.node, lease.payload, lease.attempt) == (
        "1",
        "a",
        b"p1",
        1,
    )
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.RUNNING
    assert await lease1(backend) is None  # nothing else is ready

    first = plan(
        context=ctx(b"1"),
        items=[item(2, "b")],
        outputs=[Output((1,), "a", b"out1")],
        collect=[("k", b"v1"), ("k", b"v2"), ("other", b"x")],
        duration=0.5,
    )
    assert await backend.commit(lease, first) is CommitResult.COMMITTED
    assert await backend.context(run.run_id) == RunContext(b"1", 1)
    # the same item cannot commit twice
    assert await backend.commit(lease, first) in (CommitResult.LOST, CommitResult.INACTIVE)

    lease2 = await lease1(backend)
    assert lease2 is not None and lease2.item_id == "2" and lease2.node == "b"
    second = plan(outputs=[Output((0,), "b", b"out0")], drop_collected=["other"])
    assert sorted(await backend.collected(run.run_id, "k")) == [b"v1", b"v2"]
    assert await backend.collected(run.run_id, "other") == [b"x"]

    assert await backend.commit(lease2, second) is CommitResult.COMMITTED
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED and rec.finished_at is not None
    assert [o.value for o in await backend.outputs(run.run_id)] == [b"out0", b"out1"]
    assert await backend.collected(run.run_id, "other") == []
    m = await backend.metrics(run.run_id)
    assert (m.done, m.in_flight, m.queued) == (2, 0, 0)
    assert m.per_node["a"].count == 1 and m.per_node["a"].max_seconds == pytest.approx(0.5)
    assert await backend.context(run.run_id) == RunContext(b"1", 1)


async def test_lease_limit_and_order(backend: Backend) -> None:
    run = new_run(*(item(i) for i in range(5)))
    await backend.create_run(run)
    got = await backend.lease(QUEUE, "w", limit=3, lease_seconds=30, wait=0)
    assert [le.item_id for le in got] == ["0", "1", "2"]
    assert len({le.token for le in got}) == 3
    m = await backend.metrics(run.run_id)
    assert (m.in_flight, m.queued) == (3, 2)
    other = await backend.lease("other-queue", "w", limit=3, lease_seconds=30, wait=0)
    assert other == []


async def test_expired_lease_is_reaped_and_fenced(backend: Backend) -> None:
    run = new_run(item(1))
    await backend.create_run(run)
    old = await lease1(backend, "w1", seconds=0.05)
    assert old is not None
    await trio.sleep(0.15)
    assert await backend.reap() == 1
    new = await lease1(backend, "w2")
    assert new is not None and new.attempt == 2 and new.expired and new.token != old.token
    assert new.last_error is not None and "w1" in new.last_error
    # the first worker lost its lease: heartbeat says so and its commit is discarded
    assert await backend.heartbeat([old, new], 30) == [False, True]
    assert await backend.commit(old, plan(context=ctx(b"stale"))) is CommitResult.LOST
    assert await backend.commit(new, plan(context=ctx(b"fresh"))) is CommitResult.COMMITTED
    assert await backend.context(run.run_id) == RunContext(b"fresh", 1)
    errs = await backend.errors(run.run_id)
    assert [e.kind for e in errs] == ["lease"]
    assert (await backend.metrics(run.run_id)).retried == 1


async def test_heartbeat_keeps_the_lease(backend: Backend) -> None:
    await backend.create_run(new_run(item(1)))
    lease = await lease1(backend, seconds=0.2)
    assert lease is not None
    assert await backend.heartbeat([lease], 60) == [True]
    await trio.sleep(0.3)
    assert await backend.reap() == 0
    assert await backend.heartbeat([lease], 60) == [True]


async def test_retry_is_delayed_and_counted(backend: Backend) -> None:
    run = new_run(item(1))
    await backend.create_run(run)
    lease = await lease1(backend)
    assert lease is not None
    err = ErrorRecord("a", "1", 1, "node", "boom", time.time())
    assert await backend.retry(lease, 0.3, err) is CommitResult.COMMITTED
    assert await lease1(backend) is None  # not due yet
    again = await lease1(backend, wait=5.0)  # waits for the delayed retry
    assert again is not None and again.attempt == 2 and again.last_error == "boom"
    assert not again.expired
    assert [e.message for e in await backend.errors(run.run_id)] == ["boom"]
    assert (await backend.metrics(run.run_id)).retried == 1
    # the old lease token is gone
    assert await backend.retry(lease, 0, err) is CommitResult.LOST


async def test_release_gives_item_back(backend: Backend) -> None:
    await backend.create_run(new_run(item(1)))
    lease = await lease1(backend)
    assert lease is not None
    assert await backend.release(lease) is CommitResult.COMMITTED
    again = await lease1(backend, "w2")
    assert again is not None and again.attempt == 1 and again.item_id == "1"
    assert await backend.commit(lease, plan()) is CommitResult.LOST


async def test_cancel_discards_commits_and_items(backend: Backend) -> None:
    run = new_run(item(1), item(2))
    await backend.create_run(run)
    lease = await lease1(backend)
    assert lease is not None
    rec = await backend.control(run.run_id, "cancel")
    assert rec.status is RunStatus.CANCELLED and rec.error_kind == "cancelled"
    assert await backend.commit(lease, plan(context=ctx(b"x"))) is CommitResult.INACTIVE
    assert await backend.context(run.run_id) == RunContext(b"0", 0)
    assert await lease1(backend) is None
    assert (await backend.control(run.run_id, "resume")).status is RunStatus.CANCELLED
    with pytest.raises(KeyError):
        await backend.control("missing", "cancel")
    with pytest.raises(ValueError, match="unknown run action"):
        await backend.control(run.run_id, "explode")


async def test_pause_stops_leasing_and_resume_restarts(backend: Backend) -> None:
    run = new_run(item(1), item(2))
    await backend.create_run(run)
    first = await lease1(backend)
    assert first is not None
    assert (await backend.control(run.run_id, "pause")).status is RunStatus.PAUSED
    assert await lease1(backend) is None
    # an item in flight still commits while paused; its successor waits
    assert await backend.commit(first, plan(items=[item(3)])) is CommitResult.COMMITTED
    assert await lease1(backend) is None
    assert (await backend.control(run.run_id, "resume")).status is RunStatus.RUNNING
    got = await backend.lease(QUEUE, "w", limit=5, lease_seconds=30, wait=0)
    assert sorted(le.item_id for le in got) == ["2", "3"]


async def test_failure_fails_run_and_drops_items(backend: Backend) -> None:
    run = new_run(item(1), item(2))
    await backend.create_run(run)
    lease = await lease1(backend)
    assert lease is not None
    failure = ErrorRecord("a", "1", 1, "node", "ValueError: bad", time.time())
    assert await backend.commit(lease, plan(failure=failure)) is CommitResult.COMMITTED
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.FAILED
    assert (rec.error, rec.error_kind) == ("ValueError: bad", "node")
    assert await lease1(backend) is None
    assert (await backend.errors(run.run_id))[-1].message == "ValueError: bad"
    assert (await backend.metrics(run.run_id)).failed == 1
    assert await backend.fail_run(run.run_id, failure) is False


async def test_fail_run_and_deadline(backend: Backend) -> None:
    run = new_run(item(1))
    await backend.create_run(run)
    assert await backend.fail_run(run.run_id, ErrorRecord("a", "1", 1, "timeout", "late"))
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout"

    late = new_run(item(1), deadline=time.time() - 1)
    await backend.create_run(late)
    assert await lease1(backend) is None
    rec = await backend.get_run(late.run_id)
    assert rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout"


async def test_wait_run_and_blocking_lease(backend: Backend) -> None:
    run = new_run(item(1))
    got: list[object] = []

    async def leaser() -> None:
        got.append(await lease1(backend, wait=10.0))

    async with trio.open_nursery() as n:
        n.start_soon(leaser)
        await trio.sleep(0.05)
        await backend.create_run(run)
    lease = got[0]
    assert lease is not None
    rec = await backend.wait_run(run.run_id, 0.05)
    assert rec is not None and rec.status is RunStatus.RUNNING

    async def committer() -> None:
        await trio.sleep(0.05)
        await backend.commit(lease, plan())  # type: ignore[arg-type]

    async with trio.open_nursery() as n:
        n.start_soon(committer)
        rec = await backend.wait_run(run.run_id, 10.0)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_concurrent_commits_are_atomic(backend: Backend) -> None:
    """Read-modify-write of the context from many concurrent commits loses nothing."""
    n = 30
    run = new_run(*(item(i) for i in range(n)))
    await backend.create_run(run)
    leases = await backend.lease(QUEUE, "w", limit=n, lease_seconds=30, wait=0)
    assert len(leases) == n

    def bump(stored: bytes) -> bytes:
        return json.dumps(json.loads(stored) + 1).encode()

    # every step read version 0 ("0") and wrote "1"; all but the first find the context
    # changed and merge into the stored one instead
    update = ContextUpdate(b"1", 0, bump)
    async with trio.open_nursery() as nursery:
        for le in leases:
            nursery.start_soon(backend.commit, le, plan(context=update))
    stored = await backend.context(run.run_id)
    assert stored is not None and json.loads(stored.data) == n and stored.version == n
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_join_scopes_are_counted_innermost_first(backend: Backend) -> None:
    """Outer scope S1 (2 items), inner scope S2 opened by one of them; J2 fires into S1."""
    run = new_run(item("root"))
    await backend.create_run(run)

    async def step(expect: str, **kw: object) -> None:
        lease = await lease1(backend)
        assert lease is not None and lease.item_id == expect
        assert await backend.commit(lease, plan(**kw)) is CommitResult.COMMITTED

    await step(
        "root", open_scope=ScopeOpen("S1", 2, [item("J1", "j1")]), items=[item("a1"), item("a2")]
    )
    await step("a1", scopes=["S1"], open_scope=ScopeOpen("S2", 1, [item("J2", "j2")]),
               items=[item("b1")])  # fmt: skip
    await step("a2", scopes=["S1"])
    await step("b1", scopes=["S2", "S1"])  # S2 closes: J2 fires and counts in S1
    assert (await backend.get_run(run.run_id)).status is RunStatus.RUNNING  # type: ignore[union-attr]
    await step("J2", scopes=["S1"])  # S1 closes: J1 fires
    await step("J1")
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED
    assert (await backend.metrics(run.run_id)).done == 6


async def test_scope_with_fanout_in_one_commit(backend: Backend) -> None:
    """A step inside scope S fans out into three items: S counts them before closing."""
    run = new_run(item("root"))
    await backend.create_run(run)
    lease = await lease1(backend)
    assert lease is not None
    opened = ScopeOpen("S", 1, [item("J", "j")])
    assert await backend.commit(lease, plan(open_scope=opened, items=[item("x")])) == "committed"
    lease = await lease1(backend)
    assert lease is not None
    fan = plan(scopes=["S"], items=[item("y0"), item("y1"), item("y2")])
    assert await backend.commit(lease, fan) is CommitResult.COMMITTED
    got = await backend.lease(QUEUE, "w", limit=10, lease_seconds=30, wait=0)
    assert sorted(le.item_id for le in got) == ["y0", "y1", "y2"]
    for le in got:
        assert await backend.commit(le, plan(scopes=["S"])) is CommitResult.COMMITTED
    last = await lease1(backend)
    assert last is not None and last.item_id == "J"


async def test_commit_and_lease_takes_the_successor(backend: Backend) -> None:
    """A chain step in one operation: the commit leases the item it made to the same worker."""
    run = new_run(item(1))
    await backend.create_run(run)
    lease = await lease1(backend, "w1")
    assert lease is not None
    step = plan(context=ctx(b"1"), items=[item(2, "b")])
    result, got = await backend.commit_and_lease(lease, step, limit=1, lease_seconds=30)
    assert result is CommitResult.COMMITTED
    assert [(le.item_id, le.node, le.payload, le.attempt) for le in got] == [("2", "b", b"p2", 1)]
    nxt = got[0]
    assert nxt.worker_id == "w1" and nxt.token != lease.token and nxt.deadline > time.time()
    assert nxt.context == RunContext(b"1", 1)  # the context as this very commit left it
    assert nxt.run_deadline == math.inf  # given with the lease: the run has none
    m = await backend.metrics(run.run_id)
    assert (m.done, m.in_flight, m.queued) == (1, 1, 0)
    assert await lease1(backend, "w2") is None  # leased: nobody else gets it
    # applied once: a repeat is refused and leases nothing
    assert await backend.commit_and_lease(lease, step, limit=1, lease_seconds=30) in (
        (CommitResult.LOST, []),
        (CommitResult.INACTIVE, []),
    )
    assert await backend.heartbeat([nxt], 30) == [True]
    result, got = await backend.commit_and_lease(nxt, plan(), limit=1, lease_seconds=30)
    assert (result, got) == (CommitResult.COMMITTED, [])
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_commit_and_lease_limit_and_the_rest(backend: Backend) -> None:
    """At most `limit` leases, oldest first; the rest stay ready and wake waiting workers."""
    run = new_run(item(1), item(2))
    await backend.create_run(run)
    lease = await lease1(backend, "w1")
    assert lease is not None and lease.item_id == "1"
    fan = plan(items=[item(3), item(4), item(5, delay=60)])
    result, got = await backend.commit_and_lease(lease, fan, limit=2, lease_seconds=30)
    assert result is CommitResult.COMMITTED
    assert [le.item_id for le in got] == ["2", "3"]
    rest = await backend.lease(QUEUE, "w2", limit=5, lease_seconds=30, wait=0)
    assert [le.item_id for le in rest] == ["4"]  # the delayed item is never taken early

    waited: list[list[str]] = []

    async def waiting() -> None:
        got = await backend.lease(QUEUE, "w2", limit=5, lease_seconds=30, wait=60)
        waited.append([le.item_id for le in got])

    with trio.fail_after(20):  # a waiting worker is woken, not left to its 60 s wait
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting)
            await trio.sleep(0.1)
            result, more = await backend.commit_and_lease(
                got[0], plan(items=[item(6), item(7)]), limit=1, lease_seconds=30
            )
            assert result is CommitResult.COMMITTED and [le.item_id for le in more] == ["6"]
    assert waited == [["7"]]
    # limit 0 is a plain commit
    result, none = await backend.commit_and_lease(got[1], plan(), limit=0, lease_seconds=30)
    assert (result, none) == (CommitResult.COMMITTED, [])
    m = await backend.metrics(run.run_id)
    assert (m.done, m.in_flight, m.queued) == (3, 3, 1)


async def test_commit_and_lease_respects_pause_cancel_and_deadline(backend: Backend) -> None:
    run = new_run(item(1), item(2))
    await backend.create_run(run)
    first = await lease1(backend)
    second = await lease1(backend)
    assert first is not None and second is not None
    await backend.control(run.run_id, "pause")
    # the item in flight commits; its successor is not started while the run is paused
    result, got = await backend.commit_and_lease(first, plan(items=[item(3)]), limit=1,
                                                 lease_seconds=30)  # fmt: skip
    assert (result, got) == (CommitResult.COMMITTED, [])
    await backend.control(run.run_id, "resume")
    again = await lease1(backend)
    assert again is not None and again.item_id == "3"
    await backend.control(run.run_id, "cancel")
    result, got = await backend.commit_and_lease(again, plan(items=[item(4)]), limit=1,
                                                 lease_seconds=30)  # fmt: skip
    assert (result, got) == (CommitResult.INACTIVE, [])

    late = new_run(item(1), deadline=time.time() + 0.5)
    await backend.create_run(late)
    lease = await lease1(backend)
    assert lease is not None and lease.run_id == late.run_id
    assert lease.run_deadline == pytest.approx(late.deadline)
    await trio.sleep(0.6)
    result, got = await backend.commit_and_lease(lease, plan(items=[item(2)]), limit=1,
                                                 lease_seconds=30)  # fmt: skip
    assert result is CommitResult.COMMITTED and got == []  # leasing found the deadline passed
    rec = await backend.get_run(late.run_id)
    assert rec is not None and rec.status is RunStatus.FAILED and rec.error_kind == "timeout"


async def test_workers_registry(backend: Backend) -> None:
    now = time.time()
    info = WorkerInfo("w-1", QUEUE, "host", 123, now, now, 4)
    await backend.register_worker(info)
    assert [w.worker_id for w in await backend.workers()] == ["w-1"]
    assert (await backend.workers())[0].concurrency == 4
    await backend.unregister_worker("w-1")
    assert await backend.workers() == []


async def test_empty_run_completes_at_once(backend: Backend) -> None:
    run = new_run()
    await backend.create_run(run)
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_finished_runs_expire(backend: Backend) -> None:
    sep = "&" if "?" in backend.url else "?"
    url = backend.url
    if url.startswith("redis"):
        prefix = getattr(backend, "prefix", "floxide")
        url = f"{url}?prefix={prefix}&ttl=0.3"
    else:
        url = f"{url}{sep}ttl=0.3"
    short = open_backend(url)
    run = new_run(item(1))
    await short.create_run(run)
    lease = await lease1(short)
    assert lease is not None
    assert await short.commit(lease, plan()) is CommitResult.COMMITTED
    assert await short.get_run(run.run_id) is not None
    await trio.sleep(0.5)
    await short.reap()
    assert await short.get_run(run.run_id) is None
    assert run.run_id not in [r.run_id for r in await short.list_runs()]
    await short.aclose()


async def test_redis_scripts_survive_a_flush_and_a_lost_connection(
    request: pytest.FixtureRequest,
) -> None:
    """Scripts are loaded again when the server forgot them; a dropped connection is replaced."""
    server: RedisServer = request.getfixturevalue("redis_server")
    import coredis

    b = open_backend(f"{server.url}?prefix=t{uuid.uuid4().hex[:8]}")
    async with b.connected(), coredis.Redis(port=server.port) as admin:
        run = new_run(item(1), item(2))
        await b.create_run(run)
        await admin.script_flush()
        first = await lease1(b)
        assert first is not None
        await admin.client_kill(type_=coredis.PureToken.NORMAL, skipme=True)
        assert await b.commit(first, plan()) is CommitResult.COMMITTED
        second = await lease1(b)
        assert second is not None and second.item_id == "2"
    await b.aclose()


def test_open_backend_rejects_bad_urls() -> None:
    with pytest.raises(BackendError, match="unknown backend URL"):
        open_backend("ftp://x")
    with pytest.raises(BackendError, match="sqlite:///"):
        open_backend("sqlite://")
    with pytest.raises(BackendError, match="not a number"):
        open_backend("memory://?ttl=soon")


async def test_sqlite_unreadable_file_is_a_backend_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    b = open_backend(f"sqlite:///{bad}")
    with pytest.raises(BackendError, match=r"garbage\.db"):
        await b.get_run("x")
