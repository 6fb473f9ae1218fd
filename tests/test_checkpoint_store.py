"""The checkpoint store contract (memory and SQLite), and SQLite files that are not usable."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from floxide import CheckpointError, CheckpointStore, InMemoryCheckpointStore, SqliteCheckpointStore
from floxide.checkpoints import Commit, StoredCheckpoint


def record(run_id: str = "r", **kw: object) -> StoredCheckpoint:
    base: dict[str, object] = {
        "run_id": run_id,
        "workflow": "W",
        "meta": b'{"format":1}',
        "context": b"{}",
        "items": {"0": b"root"},
    }
    base.update(kw)
    return StoredCheckpoint(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CheckpointStore]:
    if request.param == "memory":
        yield InMemoryCheckpointStore()
    else:
        async with SqliteCheckpointStore(tmp_path / "runs.db", durable=False) as s:
            yield s


async def test_round_trip_of_commits(store: CheckpointStore) -> None:
    await store.create_run(record())
    await store.commit(
        "r",
        Commit(
            seq=1,
            items=[("a", b"A"), ("b", b"B")],
            done=["0"],
            scopes=[("0", b"S0"), ("1", b"S1")],
            contributions=[("0", b"c1"), ("1", b"x")],
            outputs=[b"o1"],
            context=b'{"n":1}',
        ),
    )
    await store.commit(
        "r",
        Commit(
            seq=2,
            items=[("c", b"C")],
            done=["a"],
            scopes=[("0", b"S0'")],
            contributions=[("0", b"c2")],
            closed=["1"],
            outputs=[b"o2"],
        ),
    )
    got = await store.load_run("r")
    assert got.seq == 2 and got.status == "running"
    assert dict(got.items) == {"b": b"B", "c": b"C"}
    assert dict(got.scopes) == {"0": b"S0'"}
    assert list(got.contributions) == [("0", b"c1"), ("0", b"c2")]
    assert list(got.outputs) == [b"o1", b"o2"]
    assert got.context == b'{"n":1}'
    await store.commit("r", Commit(seq=3, status="failed", error="boom"))
    [info] = await store.list_runs()
    assert (info.run_id, info.status, info.error, info.steps, info.pending) == (
        "r",
        "failed",
        "boom",
        3,
        2,
    )


@pytest.mark.parametrize(
    "bad",
    [
        Commit(seq=1, done=["missing"]),  # consumes an item that is not pending
        Commit(seq=1, items=[("0", b"dup")]),  # makes an item that already exists
        Commit(seq=5, done=["0"]),  # out of sequence
        Commit(seq=1, items=[("x", b"X")], done=["0", "0"]),  # consumes one item twice
    ],
)
async def test_a_refused_commit_changes_nothing(store: CheckpointStore, bad: Commit) -> None:
    await store.create_run(record())
    before = await store.load_run("r")
    with pytest.raises(CheckpointError):
        await store.commit("r", bad)
    assert await store.load_run("r") == before
    await store.commit("r", Commit(seq=1, done=["0"]))  # the store still works


async def test_unknown_and_duplicate_runs(store: CheckpointStore) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint for run 'r'"):
        await store.load_run("r")
    with pytest.raises(CheckpointError, match="no checkpoint for run 'r'"):
        await store.commit("r", Commit(seq=1))
    await store.create_run(record(items={"0": b"one"}))
    with pytest.raises(CheckpointError, match="already has a checkpoint"):
        await store.create_run(record(items={"0": b"two"}))
    assert (await store.load_run("r")).items == {"0": b"one"}


async def test_several_runs_list_and_delete(store: CheckpointStore) -> None:
    for rid in ("a", "b", "c"):
        await store.create_run(record(rid))
        await trio.sleep(0.001)
    await store.commit("b", Commit(seq=1, outputs=[b"x"], status="finished"))
    assert [(r.run_id, r.status) for r in await store.list_runs()] == [
        ("a", "running"),
        ("b", "finished"),
        ("c", "running"),
    ]
    assert await store.delete_run("b") is True
    assert await store.delete_run("b") is False
    assert [r.run_id for r in await store.list_runs()] == ["a", "c"]
    await store.create_run(record("b"))  # the id is free again, with nothing left behind
    assert (await store.load_run("b")).outputs == ()


async def test_memory_store_keeps_bytes_not_objects() -> None:
    store = InMemoryCheckpointStore()
    data = bytearray(b"root")
    await store.create_run(record(items={"0": data}))
    data[:] = b"XXXX"
    assert (await store.load_run("r")).items == {"0": b"root"}
    assert type((await store.load_run("r")).items["0"]) is bytes


# ------------------------------------------------------------------------ SQLite files
async def _load(path: Path) -> None:
    async with SqliteCheckpointStore(path) as store:
        await store.load_run("r")
        await store.list_runs()


async def _valid_file(path: Path, n: int = 200) -> None:
    async with SqliteCheckpointStore(path) as store:
        await store.create_run(record(items={str(i): b"x" * 500 for i in range(n)}))


def _same_after(path: Path, action: object) -> None:
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        trio.run(action)  # type: ignore[arg-type]
    assert path.read_bytes() == before, "the store was modified"
    assert not isinstance(info.value, sqlite3.Error)
    assert str(path) in str(info.value)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite at all\n" * 200)
    _same_after(path, lambda: _load(path))


def test_truncated_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    trio.run(_valid_file, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _same_after(path, lambda: _load(path))


def test_damaged_pages(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    trio.run(_valid_file, path)
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # scribble over every page header but the first
        data[offset : offset + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    _same_after(path, lambda: _load(path))


def test_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()

    async def use() -> None:
        async with SqliteCheckpointStore(path) as store:
            await store.create_run(record())

    _same_after(path, use)
    with pytest.raises(CheckpointError, match=r"not a floxide checkpoint store.*users"):
        trio.run(use)


def test_newer_layout(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    trio.run(_valid_file, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE floxide_schema SET version = 99")
    conn.close()
    _same_after(path, lambda: _load(path))
    with pytest.raises(CheckpointError, match="layout version 99, written by a newer floxide"):
        trio.run(_load, path)


def test_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="opening"):
        trio.run(_load, tmp_path)  # a directory
    with pytest.raises(CheckpointError, match="opening"):
        trio.run(_load, tmp_path / "missing" / "dir" / "runs.db")


async def test_two_stores_share_one_file(tmp_path: Path) -> None:
    """As two processes would: each sees the other's runs; commits interleave safely."""
    path = tmp_path / "runs.db"
    async with SqliteCheckpointStore(path) as one, SqliteCheckpointStore(path) as two:
        await one.create_run(record("a"))
        await two.create_run(record("b"))

        async def commits(store: SqliteCheckpointStore, rid: str) -> None:
            for seq in range(1, 21):
                await store.commit(rid, Commit(seq=seq, items=[(f"{rid}{seq}", b"x")]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(commits, one, "a")
            nursery.start_soon(commits, two, "b")
        assert {r.run_id: r.steps for r in await two.list_runs()} == {"a": 20, "b": 20}
        assert len((await one.load_run("b")).items) == 21


async def test_closed_store(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "runs.db")
    await store.create_run(record())
    await store.aclose()
    with pytest.raises(CheckpointError, match="closed"):
        await store.load_run("r")


async def test_wal_mode(tmp_path: Path) -> None:
    async with SqliteCheckpointStore(tmp_path / "runs.db") as store:
        await store.create_run(record())
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
