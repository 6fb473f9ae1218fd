"""Group commit of the shared SQLite layer (`floxide._sqlite.SqliteFile`), as the SQLite
backend and the SQLite checkpoint store use it: concurrent transactions of one object share
one thread call and one `BEGIN IMMEDIATE ... COMMIT`, each in its own savepoint."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from floxide import BackendError, CheckpointError, SqliteCheckpointStore
from floxide._sqlite import SqliteFile
from floxide.backends import CommitResult, ContextUpdate, Lease, RunStatus
from floxide.backends._sqlite import SqliteBackend
from floxide.checkpoints import Commit
from floxide.testing._harness import QUEUE, item, new_run, plan
from tests.test_checkpoint_store import record


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(tmp_path / "runs.db")
    try:
        yield b
    finally:
        await b.aclose()


class Gate:
    """Keeps a file's one thread call busy until opened, so that calls made meanwhile
    queue up and run together in the next batch."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.open = threading.Event()

    def hold(self, conn: sqlite3.Connection) -> None:
        self.started.set()
        assert self.open.wait(10)

    async def close(self, file: SqliteFile, nursery: trio.Nursery) -> None:
        nursery.start_soon(file.read, self.hold)
        await trio.to_thread.run_sync(self.started.wait)


def trace(file: SqliteFile) -> list[str]:
    """Every SQL statement the file's connection runs from now on."""
    statements: list[str] = []
    file.connection().set_trace_callback(statements.append)
    return statements


async def batched(file: SqliteFile, calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run `calls` concurrently, queued behind a gate so they form one batch; each call's
    ("ok", value) or ("error", exception), in order."""
    out: list[tuple[str, Any]] = [("none", None)] * len(calls)

    async def one(k: int) -> None:
        try:
            out[k] = ("ok", await calls[k]())
        except Exception as e:
            out[k] = ("error", e)

    gate = Gate()
    async with trio.open_nursery() as nursery:
        await gate.close(file, nursery)
        for k in range(len(calls)):  # queued in this order
            nursery.start_soon(one, k)
            await trio.testing.wait_all_tasks_blocked()
        assert file.queued == len(calls)
        gate.open.set()
    return out


async def leased_run(b: SqliteBackend, n: int) -> tuple[str, list[Lease]]:
    run = new_run(*(item(i) for i in range(n)))
    await b.create_run(run)
    leases = await b.lease(QUEUE, "w1", limit=n, lease_seconds=30, wait=0)
    assert len(leases) == n
    return run.run_id, leases


async def test_concurrent_commits_share_one_transaction_and_a_stale_one_is_lost(
    backend: SqliteBackend,
) -> None:
    run_id, leases = await leased_run(backend, 5)
    stale = attrs.evolve(leases[2], token=leases[2].token + 1000)  # not this lease's token
    sent = [*leases[:2], stale, *leases[3:]]
    statements = trace(backend._file)
    results = await batched(
        backend._file, [lambda le=le: backend.commit(le, plan(duration=0.1)) for le in sent]
    )
    assert results == [
        ("ok", CommitResult.COMMITTED),
        ("ok", CommitResult.COMMITTED),
        ("ok", CommitResult.LOST),
        ("ok", CommitResult.COMMITTED),
        ("ok", CommitResult.COMMITTED),
    ]
    # the five commits were one transaction (the gate's read took none)
    assert sum(s == "BEGIN IMMEDIATE" for s in statements) == 1
    assert sum(s == "COMMIT" for s in statements) == 1
    m = await backend.metrics(run_id)
    assert (m.done, m.in_flight, m.queued) == (4, 1, 0)  # only the stale item is left
    rec = await backend.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.RUNNING and rec.pending == 1
    # and its real lease still commits
    assert await backend.commit(leases[2], plan()) is CommitResult.COMMITTED
    rec = await backend.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_a_raising_request_rolls_back_only_itself(backend: SqliteBackend) -> None:
    def put(key: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
        def tx(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO floxide_meta VALUES (?, 1)", (key,))
            if fail:
                raise ValueError(f"no {key}")
            # a later request never sees an earlier one's rolled back changes
            seen = [r[0] for r in conn.execute("SELECT key FROM floxide_meta WHERE key LIKE 'k%'")]
            return ",".join(sorted(seen))

        return tx

    def duplicate(conn: sqlite3.Connection) -> None:  # an SQL error in one request
        conn.execute("INSERT INTO floxide_meta VALUES ('k1', 2)")

    run = new_run(item(1))
    results = await batched(
        backend._file,
        [
            lambda: backend._file.write(put("k1")),
            lambda: backend._file.write(put("k2", fail=True)),
            lambda: backend._file.write(duplicate),
            lambda: backend.control("missing-run", "pause"),
            lambda: backend._file.write(put("k3")),
            lambda: backend.create_run(run),
        ],
    )
    assert results[0] == ("ok", "k1")
    assert results[1][0] == "error" and isinstance(results[1][1], ValueError)
    assert str(results[1][1]) == "no k2"
    assert results[2][0] == "error" and isinstance(results[2][1], BackendError)
    assert "UNIQUE" in str(results[2][1])
    assert results[3][0] == "error" and isinstance(results[3][1], KeyError)
    assert results[4] == ("ok", "k1,k3")
    assert results[5] == ("ok", None)

    def stored(conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute("SELECT key, value FROM floxide_meta WHERE key LIKE 'k%'")
        return {r[0]: r[1] for r in rows}

    assert await backend._file.read(stored) == {"k1": 1, "k3": 1}
    assert await backend.get_run(run.run_id) is not None


async def test_a_failed_commit_fails_the_whole_batch_and_stores_nothing(
    backend: SqliteBackend,
) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (id INTEGER, parent INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )

    await backend._file.read(setup)
    run_id, leases = await leased_run(backend, 2)

    def orphan(conn: sqlite3.Connection) -> str:  # fine now, fails the COMMIT
        conn.execute("INSERT INTO child VALUES (1, 42)")
        return "inserted"

    results = await batched(
        backend._file,
        [
            lambda: backend.commit(leases[0], plan()),
            lambda: backend._file.write(orphan),
            lambda: backend.commit(leases[1], plan()),
        ],
    )
    assert [kind for kind, _ in results] == ["error", "error", "error"]
    assert all(isinstance(e, BackendError) for _, e in results)
    m = await backend.metrics(run_id)
    assert (m.done, m.in_flight) == (0, 2)
    count = await backend._file.read(lambda c: c.execute("SELECT count(*) FROM child").fetchone())
    assert count[0] == 0
    # the connection goes on: both leases still commit
    for le in leases:
        assert await backend.commit(le, plan()) is CommitResult.COMMITTED
    rec = await backend.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


async def test_a_merge_that_raises_fails_only_its_commit(backend: SqliteBackend) -> None:
    run_id, leases = await leased_run(backend, 3)

    def boom(stored: bytes) -> bytes:
        raise RuntimeError("merge failed")

    bad = plan(context=ContextUpdate(b"x", base_version=-1, merge=boom))  # stale: merges
    results = await batched(
        backend._file,
        [
            lambda: backend.commit(leases[0], plan()),
            lambda: backend.commit(leases[1], bad),
            lambda: backend.commit(leases[2], plan()),
        ],
    )
    assert results[0] == ("ok", CommitResult.COMMITTED)
    assert results[1][0] == "error" and str(results[1][1]) == "merge failed"
    assert results[2] == ("ok", CommitResult.COMMITTED)
    m = await backend.metrics(run_id)
    assert (m.done, m.in_flight) == (2, 1)
    ctx = await backend.context(run_id)
    assert ctx is not None and ctx.data == b"0"


async def test_a_caller_cancelled_while_queued_does_not_run(backend: SqliteBackend) -> None:
    ran: list[str] = []

    def tx(conn: sqlite3.Connection) -> None:
        ran.append("ran")
        conn.execute("INSERT INTO floxide_meta VALUES ('cancelled', 1)")

    gate = Gate()
    async with trio.open_nursery() as nursery:
        await gate.close(backend._file, nursery)
        with trio.move_on_after(0.05) as scope:
            await backend._file.write(tx)  # queued behind the gate
        assert scope.cancelled_caught
        gate.open.set()
    assert backend._file.queued == 0
    assert await backend._file.write(lambda c: "next") == "next"  # the backend goes on
    assert ran == []
    row = await backend._file.read(
        lambda c: c.execute("SELECT 1 FROM floxide_meta WHERE key = 'cancelled'").fetchone()
    )
    assert row is None


async def test_a_caller_cancelled_once_taken_gets_its_result(backend: SqliteBackend) -> None:
    started = threading.Event()
    release = threading.Event()

    def tx(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO floxide_meta VALUES ('taken', 1)")
        started.set()
        assert release.wait(10)
        return "done"

    got: list[str] = []
    scope = trio.CancelScope()

    async def call() -> None:
        with scope:
            got.append(await backend._file.write(tx))
            await trio.sleep(0)  # the cancel arrives here, after the result
            got.append("not cancelled")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.to_thread.run_sync(started.wait)
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert scope.cancelled_caught
    assert got == ["done"]
    row = await backend._file.read(
        lambda c: c.execute("SELECT value FROM floxide_meta WHERE key = 'taken'").fetchone()
    )
    assert row is not None and row[0] == 1


async def test_calls_from_an_already_cancelled_scope_do_not_run(
    backend: SqliteBackend,
) -> None:
    ran: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await backend._file.write(lambda c: ran.append(1))
    assert scope.cancelled_caught and ran == []


async def test_many_concurrent_steps_on_one_backend(backend: SqliteBackend) -> None:
    """A burst of commits, leases and reads from many tasks: every commit lands once."""
    n = 60
    run_id, leases = await leased_run(backend, n)
    results: list[CommitResult] = []

    async def step(le: Lease) -> None:
        await backend.get_run(run_id)
        results.append(await backend.commit(le, plan(duration=0.01)))
        await backend.lease(QUEUE, "w1", limit=1, lease_seconds=30, wait=0)

    statements = trace(backend._file)
    async with trio.open_nursery() as nursery:
        for le in leases:
            nursery.start_soon(step, le)
    assert results == [CommitResult.COMMITTED] * n
    assert sum(s == "BEGIN IMMEDIATE" for s in statements) < 2 * n  # some were batched
    rec = await backend.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED
    m = await backend.metrics(run_id)
    assert m.done == n and m.per_node["a"].count == n


async def test_a_lock_held_by_another_connection_is_waited_for(tmp_path: Path) -> None:
    b = SqliteBackend(tmp_path / "runs.db", busy_timeout=0.3)
    try:
        await b.create_run(new_run(item(1)))
        other = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's transaction
        statements = trace(b._file)
        # held past the busy timeout: the lease gives up
        with pytest.raises(BackendError, match="locked"):
            await b.lease(QUEUE, "w1", limit=1, lease_seconds=30, wait=0)
        # it polled the lock (SQLite's own busy handler would make one try, sleeping ms)
        assert statements.count("BEGIN IMMEDIATE") > 3

        async def release() -> None:
            await trio.sleep(0.05)
            other.execute("COMMIT")

        # released while it waits: it goes through
        async with trio.open_nursery() as nursery:
            nursery.start_soon(release)
            got = await b.lease(QUEUE, "w1", limit=1, lease_seconds=30, wait=0)
        assert [le.item_id for le in got] == ["1"]
        other.close()
        # the connection's own busy timeout is back for everything else
        timeout = await b._file.read(lambda c: c.execute("PRAGMA busy_timeout").fetchone()[0])
        assert timeout == 300
    finally:
        await b.aclose()


async def test_cancels_at_any_moment_leave_every_commit_applied_once(
    backend: SqliteBackend,
) -> None:
    """Callers cancelled at random moments: a commit is applied at most once, and a caller
    that got COMMITTED was applied; the backend goes on afterwards."""
    rng = random.Random(7)
    n = 80
    run_id, leases = await leased_run(backend, n + 1)  # the last keeps the run going
    got: dict[int, CommitResult] = {}

    async def step(k: int) -> None:
        await trio.sleep(rng.random() * 0.002)
        with trio.move_on_after(rng.random() * 0.01):
            got[k] = await backend.commit(leases[k], plan())
            await backend.get_run(run_id)

    async with trio.open_nursery() as nursery:
        for k in range(n):
            nursery.start_soon(step, k)
    assert backend._file.queued == 0
    again = [await backend.commit(le, plan()) for le in leases[:n]]
    for k, result in got.items():
        assert result is CommitResult.COMMITTED and again[k] is CommitResult.LOST
    assert await backend.commit(leases[n], plan()) is CommitResult.COMMITTED
    m = await backend.metrics(run_id)
    assert m.done == n + 1  # each item exactly once: in the burst or now
    rec = await backend.get_run(run_id)
    assert rec is not None and rec.status is RunStatus.COMPLETED


# ------------------------------------------------------------- the checkpoint store
@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteCheckpointStore]:
    async with SqliteCheckpointStore(tmp_path / "runs.db", durable=False) as s:
        yield s


async def test_checkpoint_commits_share_one_transaction_and_a_refused_one_changes_nothing(
    store: SqliteCheckpointStore,
) -> None:
    for rid in "abcd":
        await store.create_run(record(rid))
    statements = trace(store._file)
    results = await batched(
        store._file,
        [
            lambda: store.commit("a", Commit(seq=1, items=[("a1", b"A")], done=["0"])),
            lambda: store.commit("b", Commit(seq=5, done=["0"])),  # out of sequence
            # passes the sequence fence (its run row is updated), then is refused
            lambda: store.commit("c", Commit(seq=1, items=[("c1", b"C")], done=["missing"])),
            lambda: store.commit("d", Commit(seq=1, context=b'{"d":1}')),
        ],
    )
    assert results[0] == ("ok", None) and results[3] == ("ok", None)
    for k, match in ((1, "changed by someone else"), (2, "was not pending")):
        assert results[k][0] == "error" and isinstance(results[k][1], CheckpointError)
        assert match in str(results[k][1])
    assert sum(s == "BEGIN IMMEDIATE" for s in statements) == 1
    assert sum(s == "COMMIT" for s in statements) == 1
    a, b, c, d = [await store.load_run(rid) for rid in "abcd"]
    assert (a.seq, dict(a.items)) == (1, {"a1": b"A"})
    assert (b.seq, dict(b.items)) == (0, {"0": b"root"})
    assert (c.seq, dict(c.items)) == (0, {"0": b"root"})  # nothing of it is left
    assert (d.seq, d.context) == (1, b'{"d":1}')
    await store.commit("c", Commit(seq=1, done=["0"]))  # the refused run goes on


async def test_a_failed_commit_fails_every_checkpoint_commit_of_its_batch(
    store: SqliteCheckpointStore,
) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (id INTEGER, parent INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )

    await store._file.read(setup)
    for rid in "ab":
        await store.create_run(record(rid))

    def orphan(conn: sqlite3.Connection) -> None:  # fine now, fails the COMMIT
        conn.execute("INSERT INTO child VALUES (1, 42)")

    results = await batched(
        store._file,
        [
            lambda: store.commit("a", Commit(seq=1, done=["0"])),
            lambda: store._file.write(orphan),
            lambda: store.commit("b", Commit(seq=1, done=["0"])),
        ],
    )
    assert [kind for kind, _ in results] == ["error", "error", "error"]
    assert all(isinstance(e, CheckpointError) for _, e in results)
    assert "committing run 'a'" in str(results[0][1])
    assert [(await store.load_run(rid)).seq for rid in "ab"] == [0, 0]
    for rid in "ab":  # the store goes on
        await store.commit(rid, Commit(seq=1, done=["0"]))


async def test_a_checkpoint_commit_cancelled_while_queued_does_not_run(
    store: SqliteCheckpointStore,
) -> None:
    await store.create_run(record())
    gate = Gate()
    async with trio.open_nursery() as nursery:
        await gate.close(store._file, nursery)
        with trio.move_on_after(0.05) as scope:
            await store.commit("r", Commit(seq=1, done=["0"]))  # queued behind the gate
        assert scope.cancelled_caught
        gate.open.set()
    assert store._file.queued == 0
    assert (await store.load_run("r")).seq == 0
    await store.commit("r", Commit(seq=1, done=["0"]))


async def test_a_checkpoint_store_polls_a_lock_held_by_another_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SqliteCheckpointStore(path, busy_timeout=0.3) as store:
        await store.create_run(record())
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's transaction
        statements = trace(store._file)
        with pytest.raises(CheckpointError, match="locked"):
            await store.commit("r", Commit(seq=1))
        assert statements.count("BEGIN IMMEDIATE") > 3

        async def release() -> None:
            await trio.sleep(0.05)
            other.execute("COMMIT")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(release)
            await store.commit("r", Commit(seq=1))
        other.close()
        assert (await store.load_run("r")).seq == 1


async def test_closing_a_checkpoint_store_lets_queued_commits_finish(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "runs.db")
    await store.create_run(record())
    gate = Gate()
    async with trio.open_nursery() as nursery:
        await gate.close(store._file, nursery)
        nursery.start_soon(store.commit, "r", Commit(seq=1, done=["0"]))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(store.aclose)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CheckpointError, match="closed"):  # closed from the call on
            await store.load_run("r")
        gate.open.set()
    with pytest.raises(CheckpointError, match="closed"):
        await store.load_run("r")
    async with SqliteCheckpointStore(tmp_path / "runs.db") as again:
        assert (await again.load_run("r")).seq == 1  # the queued commit was written
