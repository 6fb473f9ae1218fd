"""Profile the distributed fan-out on PostgreSQL, server side and worker side.

    .venv/bin/python benchmarks/pgprofile.py [--n 1000] [--runs 5] [--spy DIR]

Starts a throw-away PostgreSQL (as `make bench` does) and 2 workers, runs `--runs`
fan-outs of `--n` branches, and prints per item: transactions committed, rows inserted,
updated (HOT among them) and deleted per table, WAL bytes, and the CPU seconds of the
server's backends and of the workers. With `--spy DIR`, py-spy records each worker
(`--format raw`, summarize with `hotspots.py --self-time FILE`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Scratch, postgres_server


@contextlib.contextmanager
def _server(statements: bool) -> Iterator[str]:
    """`postgres_server`, with pg_stat_statements loaded when `statements`."""
    with postgres_server() as url:
        if statements:
            import psycopg

            from tests.postgres_server import PostgresServer

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            server = next(o for o in gc.get_objects()
                          if isinstance(o, PostgresServer) and o.port == port)
            server.stop()
            server.start()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
        yield url


def _top_statements(conn: Any, items: int) -> None:
    print("statements (calls and exec time per item, rows per call), by time:")
    for calls, ms, rows, query in conn.execute(
        "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY total_exec_time DESC LIMIT 14"
    ).fetchall():
        text = " ".join(query.split())[:150]
        print(f"  {calls / items:6.3f} calls {ms * 1000 / items:7.1f} us"
              f" {rows / max(calls, 1):7.1f} rows  {text}")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(parent: int) -> list[int]:
    """Pids of the processes whose parent is `parent`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == parent:
                found.append(int(name))
    return found


def _server_cpu(conn: Any) -> float:
    pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity").fetchall()]
    return sum(_cpu(p) for p in pids)


class _Waits:
    """Samples what the server's client backends are doing (state, wait event) every ms."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = self.conn.info.backend_pid
        while not self.stop.is_set():
            for state, kind, event in self.conn.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> %s AND state <> 'idle'",
                (me,),
            ).fetchall():
                key = f"{state} {kind or '-'}:{event or '-'}"
                self.counts[key] = self.counts.get(key, 0) + 1
            time.sleep(0.001)

    def report(self) -> None:
        total = sum(self.counts.values()) or 1
        print("server backends (non-idle samples):")
        for key, count in sorted(self.counts.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {count / total:6.1%}  {key}")


def _stats(conn: Any) -> dict[str, Any]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    db = conn.execute(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    tables = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
            " FROM pg_stat_user_tables WHERE schemaname = 'floxide'"
        ).fetchall()
    }
    lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
    wal = conn.execute("SELECT wal_records, wal_fpi, wal_sync FROM pg_stat_wal").fetchone()
    return {"commits": db[0], "rollbacks": db[1], "tables": tables, "wal": int(lsn),
            "records": wal[0], "fpi": wal[1], "syncs": wal[2]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--spec", default="fanout")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spy", default="")
    ap.add_argument("--statements", action="store_true", help="load pg_stat_statements")
    ap.add_argument("--waits", action="store_true",
                    help="sample the server's wait events every ms (costs CPU itself)")
    a = ap.parse_args()

    import flows
    import psycopg
    import trio
    from libs.floxide_lib import _workers

    from floxide.backends import open_backend
    from floxide.distributed import Orchestrator

    scratch = Scratch("floxide-pgprof")
    with _server(a.statements) as url:
        wf = flows.by_name(a.spec)
        ctx_type = flows.CountCtx if a.spec == "counter" else flows.BenchCtx
        with psycopg.connect(url, autocommit=True) as conn, _workers(
            url, a.spec, a.workers, 16, scratch.path
        ):
            workers = _children(os.getpid())

            async def go() -> float:
                backend = open_backend(url)
                orch = Orchestrator(wf, backend)
                run_id = await orch.start_run(ctx_type(), 10)  # warm-up
                await orch.wait(run_id)
                await trio.sleep(0.5)
                nonlocal before, cpu0, wcpu0, spies
                if a.statements:
                    conn.execute("SELECT pg_stat_statements_reset()")
                before, cpu0 = _stats(conn), _server_cpu(conn)
                wcpu0 = sum(_cpu(p) for p in workers)
                spies = [
                    subprocess.Popen(
                        [os.environ.get("PY_SPY", "py-spy"), "record", "-r", "500", "--format",
                         "raw", "--gil", "-o", os.path.join(a.spy, f"worker{k}.txt"),
                         "--pid", str(p)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                    for k, p in enumerate(workers)
                ] if a.spy else []
                if spies:
                    await trio.sleep(1.0)
                if waits is not None:
                    waits.thread.start()
                t0 = time.perf_counter()
                for _ in range(a.runs):
                    run_id = await orch.start_run(ctx_type(), a.n)
                    await orch.wait(run_id)
                took = time.perf_counter() - t0
                if waits is not None:
                    waits.stop.set()
                await backend.aclose()
                return took

            waits = _Waits(url) if a.waits else None
            before: dict[str, Any] = {}
            cpu0 = wcpu0 = 0.0
            spies: list[subprocess.Popen[bytes]] = []
            took = trio.run(go)
            time.sleep(1.5)  # the server's statistics are flushed about once a second
            after, cpu1 = _stats(conn), _server_cpu(conn)
            wcpu1 = sum(_cpu(p) for p in workers)
            if a.statements:
                _top_statements(conn, a.runs * (a.n + 2))
            for s in spies:
                s.send_signal(2)
                s.wait()
    items = a.runs * (a.n + 2)
    print(f"{items} items in {took:.2f} s: {items / took:.0f} items/s")
    print(f"commits/item {(after['commits'] - before['commits']) / items:.3f}"
          f"  rollbacks {after['rollbacks'] - before['rollbacks']}")
    print(f"WAL bytes/item {(after['wal'] - before['wal']) / items:.0f}"
          f"  records/item {(after['records'] - before['records']) / items:.2f}"
          f"  full pages/item {(after['fpi'] - before['fpi']) / items:.3f}"
          f"  fsyncs/item {(after['syncs'] - before['syncs']) / items:.3f}")
    print(f"server CPU us/item {(cpu1 - cpu0) / items * 1e6:.0f}"
          f"  workers CPU us/item {(wcpu1 - wcpu0) / items * 1e6:.0f}")
    print("table: inserted updated (hot) deleted, per item")
    for name, now in sorted(after["tables"].items()):
        was = before["tables"].get(name, (0, 0, 0, 0))
        d = [(x - y) / items for x, y in zip(now, was, strict=True)]
        if any(d):
            print(f"  {name:14} " + " ".join(f"{v:6.3f}" for v in d))
    if waits is not None:
        waits.report()
    scratch.cleanup()


if __name__ == "__main__":
    main()
