"""What a checkpoint costs per step, against a raw SQLite commit measured in the same process.

    .venv/bin/python benchmarks/checkpoint_cost.py [--chain 1000] [--fanout 10000]

Prints, in microseconds per step: a raw WAL transaction (insert one row, delete one row)
called directly and through `trio.to_thread`; a 1000-step chain run plainly, with an
in-memory checkpoint store and with an SQLite store (durable and not); and a 10k-item
fan-out into a join with the same stores, with the rows each commit wrote.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from floxide import (
    InMemoryCheckpointStore,
    Next,
    NextAll,
    Node,
    SqliteCheckpointStore,
    Transition,
    Workflow,
    workflow,
)
from floxide.checkpoints import Commit, RunInfo, StoredCheckpoint


@attrs.define
class Ctx:
    label: str = "bench"


@attrs.frozen
class Step(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Loop(Node[Ctx, int, int]):
    """Goes back to itself until `input` reaches `n` (a chain of n steps, one node)."""

    n: int

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Sum(Node[Ctx, Sequence[int], int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


def chain_workflow(n: int) -> Workflow[Ctx, int, int]:
    names = [f"s{i}" for i in range(n)]
    ns: dict[str, Any] = {
        "__annotations__": dict.fromkeys(names, Step),
        "__module__": __name__,
        "start": names[0],
        "edges": {a: [b] for a, b in zip(names, [*names[1:], None], strict=True) if b}
        | {names[-1]: []},
    }
    cls: type[Workflow[Ctx, int, int]] = workflow(type(f"Chain{n}", (Workflow,), ns))
    wf: Workflow[Ctx, int, int] = cls(**{name: Step() for name in names})
    return wf


@workflow
class FanIn(Workflow[Ctx, int, int]):
    split: Split
    work: Step
    total: Sum

    start = "split"
    edges = {"split": ["work"], "work": ["total"], "total": []}
    joins = {"total": "split"}


@attrs.define
class Spy:
    """Counts commits and rows written, delegating to a real store."""

    inner: Any
    commits: int = 0
    rows: list[int] = attrs.field(factory=list)

    async def create_run(self, record: StoredCheckpoint) -> None:
        await self.inner.create_run(record)

    async def commit(self, run_id: str, commit: Commit) -> None:
        self.commits += 1
        self.rows.append(
            len(commit.items)
            + len(commit.done)
            + len(commit.scopes)
            + len(commit.closed)
            + len(commit.contributions)
            + len(commit.outputs)
            + (commit.context is not None)
        )
        await self.inner.commit(run_id, commit)

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        return await self.inner.load_run(run_id)  # type: ignore[no-any-return]

    async def list_runs(self) -> list[RunInfo]:
        return await self.inner.list_runs()  # type: ignore[no-any-return]

    async def delete_run(self, run_id: str) -> bool:
        return await self.inner.delete_run(run_id)  # type: ignore[no-any-return]


def raw_sqlite(path: str, n: int, durable: bool) -> tuple[float, float]:
    """µs per transaction (insert a row, delete the previous one): direct and via a thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def one(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", b"x" * 80))
        conn.execute("DELETE FROM t WHERE k = ?", (f"k{i - 1}",))
        conn.execute("COMMIT")

    t0 = time.perf_counter()
    for i in range(n):
        one(i)
    direct = (time.perf_counter() - t0) / n * 1e6

    async def threaded() -> float:
        limiter = trio.CapacityLimiter(1)
        t0 = time.perf_counter()
        for i in range(n, 2 * n):
            await trio.to_thread.run_sync(one, i, limiter=limiter)
        return (time.perf_counter() - t0) / n * 1e6

    via_thread = trio.run(threaded)
    conn.close()
    return direct, via_thread


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


def best(runs: list[float]) -> float:
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="floxide-bench-")
    n = args.chain

    print(f"raw SQLite WAL transaction, {n} commits (µs per commit):")
    for durable in (True, False):
        direct, threaded = raw_sqlite(os.path.join(tmp, f"raw{durable}.db"), n, durable)
        mode = "FULL  " if durable else "NORMAL"
        print(f"  synchronous={mode} direct {direct:8.1f}   via trio.to_thread {threaded:8.1f}")

    chain = chain_workflow(n)
    counter = iter(range(10**9))

    async def chain_with(store_factory: Callable[[], Any]) -> tuple[float, int]:
        spy = Spy(store_factory())
        seconds = await timed(
            lambda: chain.run_with_checkpoint(Ctx(), 0, store=spy, run_id=f"c{next(counter)}")
        )
        return seconds, spy.commits

    print(f"\n{n}-step chain (µs per step):")
    plain = best([trio.run(timed, lambda: chain.run(Ctx(), 0)) for _ in range(args.reps)])
    print(f"  plain run                          {plain / n * 1e6:8.1f}")
    stores: list[tuple[str, Callable[[], Any]]] = [
        ("checkpoint, memory store", InMemoryCheckpointStore),
        (
            "checkpoint, SQLite durable=False",
            lambda: SqliteCheckpointStore(os.path.join(tmp, "nd.db"), durable=False),
        ),
        (
            "checkpoint, SQLite durable=True",
            lambda: SqliteCheckpointStore(os.path.join(tmp, "d.db"), durable=True),
        ),
    ]
    for label, factory in stores:
        results = [trio.run(chain_with, factory) for _ in range(args.reps)]
        seconds, commits = min(results)
        print(f"  {label:34} {seconds / n * 1e6:8.1f}   ({commits} commits)")

    m = args.fanout
    fan = FanIn(split=Split(), work=Step(), total=Sum())

    async def fan_with(store: Any) -> tuple[float, Spy]:
        spy = Spy(store)
        seconds = await timed(
            lambda: fan.run_with_checkpoint(Ctx(), m, store=spy, run_id=f"f{next(counter)}")
        )
        return seconds, spy

    print(f"\n{m}-item fan-out into a join (µs per item):")
    plain = best([trio.run(timed, lambda: fan.run(Ctx(), m)) for _ in range(args.reps)])
    print(f"  plain run                          {plain / m * 1e6:8.1f}")
    for label, factory in stores:
        seconds, spy = min(
            (trio.run(fan_with, factory()) for _ in range(args.reps)), key=lambda r: r[0]
        )
        rows = spy.rows
        print(
            f"  {label:34} {seconds / m * 1e6:8.1f}   ({spy.commits} commits; rows per "
            f"commit: first {rows[0]}, then median {statistics.median(rows[1:]):.0f}, "
            f"max {max(rows[1:])}; {sum(rows)} rows in all)"
        )
    naive = m * (m + 1) // 2
    print(f"  (rewriting every pending item at each step would write ~{naive:,} item rows)")


if __name__ == "__main__":
    main()
