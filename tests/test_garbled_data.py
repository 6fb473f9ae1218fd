"""Stored data that cannot be read fails its own run only (Redis, SQLite, PostgreSQL).

Hypothesis garbles random stored fields of one run among several, mid-run; the other runs
must complete exactly, and the garbled one must end (completed if the garbling was
harmless, failed or reported with a floxide error otherwise): it never hangs, and no
worker, queue or other run is held up.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import coredis
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floxide import BackendError, FloxideError
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, RunStatus
from tests.distributed_workflows import Ctx, fan_join
from tests.test_distributed import with_workers

N = 4


def _expected(n: int) -> int:
    return sum(i * i for i in range(n))


async def _garble_redis(
    url: str, prefix: str, run_id: str, pick: Callable[[list[Any]], Any]
) -> str:
    client = coredis.Redis.from_url(url, decode_responses=False)
    async with client:
        keys = [k async for k in client.scan_iter(f"{prefix}:*{run_id}*".encode())]
        key = pick(sorted(keys))
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        garbage = pick([b"garbage", b"\xff\xfe", b"", b"-1", b"[[", b"3.5", b"nan"])
        if kind == "hash":
            fields = sorted(await client.hkeys(key))
            field = pick(fields)
            await client.hset(key, {field: garbage})
            return f"{key!r} {field!r}"
        if kind == "list" and await client.llen(key):
            await client.lset(key, 0, garbage)
        return f"{key!r}"


def _garble_sqlite(path: str, run_id: str, pick: Callable[[list[Any]], Any]) -> str:
    db = sqlite3.connect(path, timeout=30)
    try:
        table, columns = pick(
            [
                ("runs", ["status", "deadline", "version", "pending", "created_at", "context"]),
                ("items", ["attempt", "payload", "node", "token", "state", "due"]),
                ("scopes", ["open", "fired"]),
                ("outputs", ["position", "value"]),
                ("node_metrics", ["count", "total", "max"]),
                ("contributions", ["data", "key"]),
            ]
        )
        column = pick(columns)
        value = pick(["garbage", b"\xff\xfe", "[[", "-1", 3.5])
        # one row of a key column (a contribution's key): no two rows may share a value
        rows = "run_id = ?"
        if column == "key":
            rows = f"rowid IN (SELECT rowid FROM {table} WHERE run_id = ? LIMIT 1)"
        with db:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {rows}", (value, run_id))
        return f"{table}.{column}"
    finally:
        db.close()


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_garbled_fields_fail_their_run_only(
    kind: str, data: st.DataObject, request: pytest.FixtureRequest, tmp_path_factory: Any
) -> None:
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        prefix = f"g{data.draw(st.integers(0, 10**12))}"
        url = f"{server.url}?prefix={prefix}"
    else:
        path = str(tmp_path_factory.mktemp("garble") / "runs.db")
        url = f"sqlite:///{path}"
    target = data.draw(st.integers(0, N - 1))
    sizes = [data.draw(st.integers(1, 6)) for _ in range(N)]
    progress = data.draw(st.floats(0, 0.05))

    choices = iter(data.draw(st.lists(st.integers(0, 10**6), min_size=4, max_size=4)))

    def pick(options: list[Any]) -> Any:
        return options[next(choices) % len(options)] if options else None

    async def main() -> None:
        backend = open_backend(url)
        wf = fan_join(delay=0.005)
        orch = Orchestrator(wf, backend)
        ids = [await orch.start_run(Ctx(), n) for n in sizes]

        async def some(_: object) -> None:
            await trio.sleep(progress)

        await with_workers(wf, backend, some)
        if kind == "redis":
            what = await _garble_redis(server.url, prefix, ids[target], pick)
        else:
            what = await trio.to_thread.run_sync(_garble_sqlite, path, ids[target], pick)

        async def finish(_: object) -> None:
            with trio.fail_after(40):
                for k, run_id in enumerate(ids):
                    if k == target:
                        continue
                    assert await orch.wait(run_id, timeout=30) == _expected(sizes[k])
                    assert (await orch.context(run_id)).squared.value == sizes[k]
                    assert await orch.status(run_id) is RunStatus.COMPLETED
                try:
                    await orch.wait(ids[target], timeout=15)
                except TimeoutError:
                    raise AssertionError(f"the garbled run hangs ({what})") from None
                except FloxideError:
                    pass  # failed, or reported clearly

        await with_workers(wf, backend, finish, n=2)

    trio.run(main)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("state", "garbage"),
        ("state", b"\xff\xfe"),
        ("state", 3.5),
        ("state", "-1"),
        ("state", "zzz"),
        ("due", "garbage"),
        ("due", b"\xff\xfe"),
        ("due", "[["),
    ],
)
def test_sqlite_item_that_can_never_be_leased_fails_its_run(
    column: str, value: object, tmp_path: Any
) -> None:
    """An item whose `state` or `due` is garbled is never leased: the reaper fails its run
    (a `BackendError` naming the run and the column), and the other runs complete."""
    path = str(tmp_path / "runs.db")

    async def main() -> None:
        backend = open_backend(f"sqlite:///{path}")
        wf = fan_join(delay=0.001)
        orch = Orchestrator(wf, backend)
        ids = [await orch.start_run(Ctx(), n) for n in (3, 2, 4)]
        db = sqlite3.connect(path, timeout=30)
        with db:
            db.execute(f"UPDATE items SET {column} = ? WHERE run_id = ?", (value, ids[1]))
        db.close()

        async def finish(_: object) -> None:
            with trio.fail_after(20):
                for k in (0, 2):
                    assert await orch.wait(ids[k], timeout=15) == _expected((3, 2, 4)[k])
                with pytest.raises(BackendError) as e:
                    await orch.wait(ids[1], timeout=15)
                assert ids[1] in str(e.value) and column in str(e.value)
                assert await orch.status(ids[1]) is RunStatus.FAILED

        await with_workers(wf, backend, finish, lease_seconds=0.5)

    trio.run(main)


@pytest.mark.parametrize(
    ("column", "value"),
    [("state", "zzz"), ("state", ""), ("state", "QUEUED"), ("due", "NaN"), ("due", "Infinity")],
)
def test_postgres_item_that_can_never_be_leased_fails_its_run(
    column: str, value: str, postgres_server: Any
) -> None:
    """PostgreSQL: an item whose `state` is none of the three or whose `due` never comes is
    never leased: the reaper fails its run (a `BackendError` naming the run and the
    column), and the other runs complete; `retry` then runs it from its items again."""
    import psycopg

    schema = f"g{uuid.uuid4().hex[:10]}"
    url = f"{postgres_server.url}?floxide_schema={schema}"

    async def main() -> None:
        backend = open_backend(url)
        wf = fan_join(delay=0.001)
        orch = Orchestrator(wf, backend)
        ids = [await orch.start_run(Ctx(), n) for n in (3, 2, 4)]
        with psycopg.connect(postgres_server.url, autocommit=True) as db:
            db.execute(
                f'UPDATE "{schema}".items SET {column} = %s WHERE run_id = %s',  # type: ignore[arg-type]
                (value, ids[1]),
            )

        async def finish(_: object) -> None:
            with trio.fail_after(20):
                for k in (0, 2):
                    assert await orch.wait(ids[k], timeout=15) == _expected((3, 2, 4)[k])
                with pytest.raises(BackendError) as e:
                    await orch.wait(ids[1], timeout=15)
                assert ids[1] in str(e.value) and column in str(e.value)
                assert await orch.status(ids[1]) is RunStatus.FAILED
                await orch.retry(ids[1])
                assert await orch.wait(ids[1], timeout=15) == _expected(2)

        await with_workers(wf, backend, finish, lease_seconds=0.5)
        await backend.aclose()

    trio.run(main)


async def _garble_pending(kind: str, url: str, raw: Any, run_id: str, stored: int) -> None:
    """Store `stored` as the pending count of `run_id` behind the backend's back."""
    if kind == "redis":
        client = coredis.Redis.from_url(raw, decode_responses=False)
        async with client:
            prefix = url.rsplit("prefix=", 1)[1]
            keys = [k async for k in client.scan_iter(f"{prefix}:*{run_id}".encode())]
            assert len(keys) == 1, keys
            await client.hset(keys[0], {b"pending": str(stored).encode()})
    elif kind == "postgres":
        import psycopg

        schema = url.rsplit("floxide_schema=", 1)[1]
        with psycopg.connect(raw, autocommit=True) as db:
            db.execute(
                f'UPDATE "{schema}".runs SET pending = %s WHERE run_id = %s',  # type: ignore[arg-type]
                (stored, run_id),
            )
    else:
        db = sqlite3.connect(raw)
        with db:
            db.execute("UPDATE runs SET pending = ? WHERE run_id = ?", (stored, run_id))
        db.close()


def _garbling_url(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, str]:
    """A fresh backend URL of `kind`, and how to reach its storage directly."""
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        return f"{server.url}?prefix=p{uuid.uuid4().hex[:8]}", server.url
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        return f"{server.url}?floxide_schema=g{uuid.uuid4().hex[:10]}", server.url
    path = str(tmp_path / "runs.db")
    return f"sqlite:///{path}", path


@pytest.mark.parametrize("kind", ["redis", "sqlite", "postgres"])
@pytest.mark.parametrize("stored", [0, -1])
async def test_a_run_whose_pending_count_is_garbled_fails_instead_of_hanging(
    kind: str, stored: int, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """A commit's run always counts the committing item as pending: a count below one is
    garbled (with -1 the run would never reach zero), so the commit fails its run."""
    from floxide.testing._harness import item, must_lease, new_run, plan

    url, raw = _garbling_url(kind, request, tmp_path)
    b = open_backend(url)
    try:
        run = new_run(item(1), item(2))
        await b.create_run(run)
        lease = await must_lease(b)
        await _garble_pending(kind, url, raw, run.run_id, stored)
        await b.commit(lease, plan())
        rec = await b.get_run(run.run_id)
        assert rec is not None and rec.status == RunStatus.FAILED, rec
        assert rec.error is not None and "pending" in rec.error, rec.error
    finally:
        await b.aclose()


@pytest.mark.parametrize("kind", ["redis", "sqlite", "postgres"])
async def test_a_garbled_pending_count_fails_its_run_alone_among_commits_made_together(
    kind: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """Branches of two runs committed at once (on PostgreSQL, in one group): the run whose
    pending count is garbled fails as unreadable; the other's commits all count."""
    from floxide.backends import CommitResult
    from floxide.testing._harness import QUEUE, item, new_run, plan

    url, raw = _garbling_url(kind, request, tmp_path)
    b = open_backend(url)
    try:
        bad, good = new_run(*(item(k) for k in range(4))), new_run(*(item(k) for k in range(4)))
        await b.create_run(bad)
        await b.create_run(good)
        leases = await b.lease(QUEUE, "w", limit=8, lease_seconds=60, wait=0)
        assert len(leases) == 8
        await _garble_pending(kind, url, raw, bad.run_id, 0)  # 4 items are pending
        results: dict[str, list[CommitResult]] = {bad.run_id: [], good.run_id: []}

        async def one(le: Any) -> None:
            results[le.run_id].append(await b.commit(le, plan()))

        async with trio.open_nursery() as nursery:
            for le in leases:
                nursery.start_soon(one, le)
        assert results[good.run_id] == [CommitResult.COMMITTED] * 4, (good.run_id, results)
        rec = await b.get_run(bad.run_id)
        assert rec is not None and rec.status == RunStatus.FAILED, rec
        assert rec.error is not None and "pending" in rec.error, rec.error
        rec = await b.get_run(good.run_id)
        assert rec is not None and rec.status == RunStatus.COMPLETED and rec.pending == 0, rec
    finally:
        await b.aclose()
