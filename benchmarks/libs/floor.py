"""Floors, not a framework: a hand-written trio loop, a bare nursery, a raw SQLite commit.

They show what the interpreter and SQLite cost on this machine before any framework
does anything, so the framework rows can be read against them.
"""

from __future__ import annotations

import importlib.util
import itertools
import pickle
import sqlite3
from typing import Any

from common import NotAvailable, Run, Scratch, redis_server, timed

NAME = "floor"
DISTS = ("trio",)
NOTE = "trio loop over node objects; bare nursery fan-out; raw sqlite3 INSERT+COMMIT (WAL)"


def available() -> bool:
    return importlib.util.find_spec("trio") is not None


class _Step:
    __slots__ = ("nxt",)

    def __init__(self) -> None:
        self.nxt: _Step | None = None

    async def run(self, ctx: object, x: int) -> int:
        return x + 1


def _build_chain(n: int) -> _Step:
    steps = [_Step() for _ in range(n)]
    for a, b in itertools.pairwise(steps):
        a.nxt = b
    return steps[0]


async def _walk(head: _Step) -> int:
    ctx = object()
    x = 0
    step: _Step | None = head
    while step is not None:
        x = await step.run(ctx, x)
        step = step.nxt
    return x


def chain(n: int, scratch: Scratch) -> Run:
    import trio

    return timed(lambda: _build_chain(n), lambda head: trio.run(_walk, head))


def fanout(n: int, scratch: Scratch) -> Run:
    import trio

    async def go() -> int:
        out = [0] * n

        async def branch(i: int) -> None:
            out[i] = i

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(branch, i)
        return sum(out)

    return timed(lambda: None, lambda _: trio.run(go))


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    raise NotAvailable


def _open(path: str, synchronous: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute("CREATE TABLE ck (step INTEGER PRIMARY KEY, blob BLOB)")
    return con


def _commits(n: int, scratch: Scratch, synchronous: str) -> Run:
    """n transactions, each one INSERT of a small pickled row and a COMMIT."""

    def run(con: sqlite3.Connection) -> int:
        try:
            for i in range(n):
                blob = pickle.dumps({"node": i, "x": i + 1})
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO ck VALUES (?, ?)", (i, blob))
                con.execute("COMMIT")
            return int(con.execute("SELECT count(*) FROM ck").fetchone()[0])
        finally:
            con.close()

    return timed(lambda: _open(scratch.file("raw"), synchronous), run)


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    """The raw WAL commit (synchronous=FULL, SQLite's default) per step."""
    return _commits(n, scratch, "FULL")


def raw_commit_normal(n: int, scratch: Scratch) -> Run:
    """The same with synchronous=NORMAL (WAL's usual setting: durable up to power loss)."""
    return _commits(n, scratch, "NORMAL")


def _redis_pings(n: int, scratch: Scratch, client: str) -> Run:
    """n sequential PING round trips to a local redis-server, from trio."""
    import trio

    with redis_server(scratch) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])

        async def go() -> int:
            if client == "coredis":
                try:
                    import coredis
                except ImportError as e:
                    raise NotAvailable("coredis is not installed") from e
                async with coredis.Redis(host="127.0.0.1", port=port) as c:
                    await c.ping()
                    t0 = trio.current_time()
                    for _ in range(n):
                        await c.ping()
                    go.elapsed = trio.current_time() - t0  # type: ignore[attr-defined]
                return n
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                t0 = trio.current_time()
                for _ in range(n):
                    await stream.send_all(b"PING\r\n")
                    reply = await stream.receive_some(64)
                    if not reply.startswith(b"+PONG"):
                        raise AssertionError(f"unexpected reply {reply!r}")
                go.elapsed = trio.current_time() - t0  # type: ignore[attr-defined]
            return n

        res = trio.run(go)
        return 0.0, go.elapsed, res  # type: ignore[attr-defined]


def redis_rtt_socket(n: int, scratch: Scratch) -> Run:
    return _redis_pings(n, scratch, "socket")


def redis_rtt_coredis(n: int, scratch: Scratch) -> Run:
    return _redis_pings(n, scratch, "coredis")


# Extra measurements (name -> fn(n, scratch)), reported in the notes under the table.
EXTRAS = {
    "raw-commit-normal": raw_commit_normal,
    "redis-rtt-socket": redis_rtt_socket,
    "redis-rtt-coredis": redis_rtt_coredis,
}


def versions() -> dict[str, Any]:
    return {"sqlite": sqlite3.sqlite_version}
