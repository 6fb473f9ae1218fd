"""What only the PostgreSQL backend promises: its schema and layout version, clear errors
for connection problems with credentials masked, and waits that block on LISTEN/NOTIFY."""

from __future__ import annotations

import sys
import time
import uuid

import psycopg
import pytest
import trio

from floxide import BackendError
from floxide.backends import CommitPlan, CommitResult, Contribution, Lease, NewItem, open_backend
from floxide.backends._postgres import PostgresBackend
from floxide.backends._postgres_tables import SCHEMA_VERSION
from floxide.testing._harness import QUEUE, item, lease1, new_run, plan
from tests.postgres_server import PostgresServer


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


def _schema() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def _admin(pg: PostgresServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.url, autocommit=True)


async def test_tables_live_in_their_own_versioned_schema(pg: PostgresServer) -> None:
    schema = _schema()
    b = open_backend(f"{pg.url}?floxide_schema={schema}")
    assert isinstance(b, PostgresBackend) and b.schema == schema
    await b.create_run(new_run(item(1)))
    with _admin(pg) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
        assert {"runs", "items", "scopes", "meta", "errors", "workers"} <= tables
        version = conn.execute(f'SELECT value FROM "{schema}".meta WHERE key = \'schema\'')
        assert version.fetchone() == (SCHEMA_VERSION,)
    again = open_backend(f"postgres://{pg.url.split('://', 1)[1]}?floxide_schema={schema}")
    assert len(await again.list_runs()) == 1  # the alias opens the same store
    default = open_backend(pg.url)
    assert isinstance(default, PostgresBackend) and default.schema == "floxide"
    for backend in (b, again, default):
        await backend.aclose()


async def test_a_newer_schema_is_refused(pg: PostgresServer) -> None:
    schema = _schema()
    url = f"{pg.url}?floxide_schema={schema}"
    b = open_backend(url)
    await b.list_runs()
    await b.aclose()
    with _admin(pg) as conn:
        conn.execute(f"UPDATE \"{schema}\".meta SET value = 99 WHERE key = 'schema'")
    newer = open_backend(url)
    with pytest.raises(BackendError, match=r"layout version 99, newer than this floxide"):
        await newer.get_run("x")
    await newer.aclose()


async def test_clear_errors_with_credentials_masked(pg: PostgresServer) -> None:
    with _admin(pg) as conn:
        conn.execute("DROP ROLE IF EXISTS floxide_pw")
        conn.execute("CREATE ROLE floxide_pw LOGIN PASSWORD 'right-s3cret'")
        conn.execute("DROP ROLE IF EXISTS floxide_np")
        conn.execute("CREATE ROLE floxide_np LOGIN")
    host = f"127.0.0.1:{pg.port}"
    cases = {
        f"postgresql://floxide_pw:wr0ng-s3cret@{host}/postgres": "password authentication",
        "postgresql://floxide_pw:wr0ng-s3cret@127.0.0.1:1/postgres": "cannot reach",
        f"postgresql://floxide_pw:right-s3cret@{host}/no_such_db": "does not exist",
        f"postgresql://floxide_np@{host}/postgres?password=wr0ng-s3cret": "missing privilege",
    }
    for url, what in cases.items():
        b = open_backend(url)
        assert "s3cret" not in b.url and "s3cret" not in repr(b)
        with pytest.raises(BackendError, match=what) as e:
            await b.get_run("x")
        assert "s3cret" not in str(e.value), str(e.value)
        assert "***" in str(e.value)
        await b.aclose()
    ok = open_backend(f"postgresql://floxide_pw:right-s3cret@{host}/postgres?floxide_schema=x")
    with pytest.raises(BackendError, match="missing privilege"):
        await ok.get_run("x")  # may log in, may not create a schema
    await ok.aclose()


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "floxide.backends._postgres", None)
    with pytest.raises(BackendError, match=r"needs the PostgreSQL extra") as e:
        open_backend("postgresql://me:s3cret@host/db")
    assert "s3cret" not in str(e.value) and "postgresql://me:***@host/db" in str(e.value)


def _commits(pg: PostgresServer) -> int:
    with _admin(pg) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'"
        ).fetchone()
        assert row is not None
        return int(row[0])  # type: ignore[call-overload]


async def test_idle_waits_block_on_notifications(pg: PostgresServer) -> None:
    """A waiting lease and `wait_run` wake on another client's change at once, and issue
    (next to) no queries while they wait: no sleep-polling."""
    url = f"{pg.url}?floxide_schema={_schema()}"
    waiter, other = open_backend(url), open_backend(url)
    await waiter.list_runs()
    await other.list_runs()
    got: list[float] = []

    async def lease_waiting() -> None:
        le = await lease1(waiter, wait=20)
        got.append(time.monotonic())
        assert le is not None

    async with trio.open_nursery() as n:
        n.start_soon(lease_waiting)
        await trio.sleep(0.3)
        await trio.sleep(0.7)  # the statistics collector's view settles
        before = _commits(pg)
        await trio.sleep(1.5)
        idle = _commits(pg) - before
        created = time.monotonic()
        run = new_run(item(1))
        await other.create_run(run)
    assert got and got[0] - created < 0.5, "the waiting lease did not wake on the new run"
    assert idle <= 4, f"{idle} transactions while one lease waited 1.5 s"

    lease = await lease1(other)
    assert lease is None  # taken by the waiter already
    ended: list[float] = []

    async def run_waiting() -> None:
        rec = await waiter.wait_run(run.run_id, 20)
        ended.append(time.monotonic())
        assert rec is not None and rec.status.finished

    async with trio.open_nursery() as n:
        n.start_soon(run_waiting)
        await trio.sleep(0.3)
        done = time.monotonic()
        await other.control(run.run_id, "cancel")
    assert ended and ended[0] - done < 0.5, "wait_run did not wake when the run ended"
    await waiter.aclose()
    await other.aclose()


async def test_concurrent_workers_never_share_an_item(pg: PostgresServer) -> None:
    """Several clients lease the same queue at once: SKIP LOCKED gives each item once."""
    url = f"{pg.url}?floxide_schema={_schema()}"
    backends = [open_backend(url) for _ in range(4)]
    await backends[0].create_run(new_run(*[item(i) for i in range(200)]))
    taken: list[str] = []

    async def drain(k: int) -> None:
        b = backends[k]
        while True:
            got = await b.lease(QUEUE, f"w{k}", limit=7, lease_seconds=30, wait=0)
            if not got:
                return
            for le in got:
                taken.append(le.item_id)
                await b.commit(le, plan())

    async with trio.open_nursery() as n:
        for k in range(4):
            n.start_soon(drain, k)
    assert sorted(taken) == sorted(str(i) for i in range(200))
    runs = await backends[0].list_runs()
    assert runs[0].status.finished and runs[0].pending == 0
    for b in backends:
        await b.aclose()


async def test_an_older_schema_is_migrated(pg: PostgresServer) -> None:
    """A schema of layout version 1 (no error tracebacks, no worker load) is brought up to
    date on first use, its runs kept."""
    from floxide.backends._postgres_tables import _MIGRATIONS

    schema = _schema()
    with _admin(pg) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(_MIGRATIONS[1])
        conn.execute("INSERT INTO meta VALUES ('schema', 1)")
        conn.execute(
            "INSERT INTO runs (run_id, workflow, queue, fingerprint, status, input, context,"
            " created_at, updated_at) VALUES ('old', 'W', 'wf', 'fp', 'completed', '', '', 1, 1)"
        )
    b = open_backend(f"{pg.url}?floxide_schema={schema}")
    assert [r.run_id for r in await b.list_runs()] == ["old"]
    assert await b.errors("old") == []
    with _admin(pg) as conn:
        version = conn.execute(f'SELECT value FROM "{schema}".meta WHERE key = \'schema\'')
        assert version.fetchone() == (SCHEMA_VERSION,)
        cols = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = 'errors'",
                (schema,),
            )
        }
        assert {"traceback", "handled"} <= cols
    await b.aclose()


async def test_a_version_3_schema_gains_contributions_in_place(pg: PostgresServer) -> None:
    """Layout version 4 adds the `contributions` table: a version-3 schema is migrated on
    open, its live run kept and going on with contributions."""
    from floxide.backends._postgres_tables import _MIGRATIONS

    schema = _schema()
    with _admin(pg) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        for v in (1, 2, 3):
            conn.execute(_MIGRATIONS[v])
        conn.execute("INSERT INTO meta VALUES ('schema', 3)")
        conn.execute(
            "INSERT INTO runs (run_id, workflow, queue, fingerprint, status, input, context,"
            " created_at, updated_at, pending) VALUES ('old', 'W', 'q', 'fp', 'running', '',"
            " 'base', 1, 1, 1)"
        )
        conn.execute(
            "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)"
            " VALUES ('old', 'i', 'q', 'a', '', 1, 'queued', 0, 1)"
        )
    b = open_backend(f"{pg.url}?floxide_schema={schema}")
    assert b.stores_contributions
    (lease,) = await b.lease("q", "w", limit=1, lease_seconds=60, wait=0)
    assert lease.context is not None and lease.context.data == b"base"
    assert list(lease.context.contributions) == []
    step = CommitPlan(items=[NewItem("j", "a", b"")], contribution=Contribution(b"mine"))
    assert await b.commit(lease, step) is CommitResult.COMMITTED
    stored = await b.context("old")
    assert stored is not None and list(stored.contributions) == [("i", b"mine")]
    with _admin(pg) as conn:
        version = conn.execute(f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema'")
        assert version.fetchone() == (SCHEMA_VERSION,)
    await b.aclose()


async def test_a_version_4_schema_gains_its_group_count_function(pg: PostgresServer) -> None:
    """Layout version 5 adds `count_steps` (a group's counts written with its COMMIT), one
    `steps` row per node and one `collected` row per key of a group, and drops the index
    of leased items: a version-4 schema holding a fan-out in progress is migrated on open
    and the fan-out goes on, its branches committed in groups, its join fired once, its
    values and metrics read from the rows of either layout."""
    from floxide.backends._postgres_tables import _MIGRATIONS
    from floxide.backends._sqlite_tables import encode_fired

    schema = _schema()
    with _admin(pg) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        for v in (1, 2, 3, 4):
            conn.execute(_MIGRATIONS[v])
        conn.execute("INSERT INTO meta VALUES ('schema', 4)")
        conn.execute(
            "INSERT INTO runs (run_id, workflow, queue, fingerprint, status, input, context,"
            " created_at, updated_at, pending) VALUES ('old', 'W', 'q', 'fp', 'running', '',"
            " '', 1, 1, 6)"
        )
        conn.execute(
            "INSERT INTO scopes VALUES ('old', 'S', 6, %s)",
            (encode_fired([NewItem("J", "j", b"")]),),
        )
        for k in range(6):
            conn.execute(
                "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state,"
                " due, seq) VALUES ('old', %s, 'q', 'a', '', 1, 'queued', 0, %s)",
                (f"x{k}", k),
            )
        conn.execute("INSERT INTO steps VALUES ('old', 'a', 2.0)")  # a step before, and
        conn.execute("INSERT INTO collected VALUES ('old', 'J', 'before')")  # its value
    b = open_backend(f"{pg.url}?floxide_schema={schema}")
    assert isinstance(b, PostgresBackend)
    leases = await b.lease("q", "w", limit=6, lease_seconds=60, wait=0)
    assert len(leases) == 6
    results: list[CommitResult] = []

    async def one(le: Lease) -> None:
        step = CommitPlan(scopes=["S"], collect=[("J", le.item_id.encode())])
        results.append(await b.commit(le, step))

    for half in (leases[:3], leases[3:]):  # the first half leaves the scope open
        async with trio.open_nursery() as nursery:
            for le in half:
                nursery.start_soon(one, le)
    assert results == [CommitResult.COMMITTED] * 6
    (join,) = await b.lease("q", "w", limit=6, lease_seconds=60, wait=0)
    values = sorted(await b.collected("old", "J"))  # `collected` rows of both layouts
    assert values == sorted([b"before", *(le.item_id.encode() for le in leases)])
    assert join.item_id == "J" and await b.commit(join, CommitPlan()) is CommitResult.COMMITTED
    rec = await b.get_run("old")
    assert rec is not None and rec.status.finished and rec.pending == 0
    per_node = (await b.metrics("old")).per_node  # `steps` rows of both layouts
    assert (per_node["a"].count, per_node["a"].max_seconds) == (1 + 6, 2.0)
    with _admin(pg) as conn:
        version = conn.execute(f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema'")
        assert version.fetchone() == (SCHEMA_VERSION,) == (6,)
        found = conn.execute(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s AND p.proname = 'count_steps'",
            (schema,),
        )
        assert found.fetchone() == (1,)
    await b.aclose()


async def test_contributions_stay_with_a_completed_run_until_it_expires(
    pg: PostgresServer,
) -> None:
    """A completed run's context is its base and contributions folded: they are kept with
    it, and deleted with its other rows when it expires."""
    schema = _schema()
    b = open_backend(f"{pg.url}?floxide_schema={schema}")
    assert isinstance(b, PostgresBackend)
    await b.create_run(new_run(item("a"), item("b"), run_id="r"))
    leases = await b.lease(QUEUE, "w", limit=2, lease_seconds=60, wait=0)
    for le in leases:
        step = CommitPlan(contribution=Contribution(le.item_id.encode()))
        assert await b.commit(le, step) is CommitResult.COMMITTED
    record = await b.get_run("r")
    assert record is not None and record.status.finished
    stored = await b.context("r")
    assert stored is not None and sorted(stored.contributions) == [("a", b"a"), ("b", b"b")]
    b.ttl = 0.0
    time.sleep(0.01)
    await b.reap()
    assert await b.context("r") is None
    with _admin(pg) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{schema}".contributions').fetchone()
        assert left == (0,)
    await b.aclose()
