"""The PostgreSQL backend: many worker processes on many machines share one database.

`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB?floxide_schema=NAME` (libpq's URL; other query
options go to libpq). The tables (`_postgres_tables`) live in a schema of their own, created
and migrated on first use. Every operation is one transaction in a worker thread
(`_postgres_conn.Pool`); leasing is `_postgres_take`, applying a step `_postgres_steps`
(alone) and `_postgres_group` (with the commits queued meanwhile).

Locking: leasing takes ready items with `SELECT ... FOR UPDATE SKIP LOCKED`, so workers
never wait on each other's items, and holds their runs' rows in KEY SHARE mode: `control`
and `retry_run` lock a run's row FOR UPDATE, so a pause waits for the leases in flight and a
lease after it sees the run paused. A commit first deletes its item if its lease (fencing
token) is still held, writes what the step made, counts its join scopes and, last, updates
its run's row (`... WHERE status is live`): that row is the only one every commit of a run
meets, and it is held only for the end of the transaction (commits queued meanwhile in one
process share a transaction and update it once: `_postgres_steps`). A context written over a
newer version is merged with the stored one (the context's `merge`) under that row lock. A
step's change to a mergeable context is a row of `contributions` under its item id, written
with no version check by the step's first statement (so such a step needs neither the run's
version nor its row's lock before the end); a compaction writes the base by a compare-and-
set on the version. Leases and `context` carry the run's contributions, read in the same
statement as its base. They are kept with the run (a finished run's context is their fold)
and deleted when it expires.
Finishing a run (completion, cancel) updates its row; its work state (items, scopes,
collected values) is deleted by a second transaction, and by `reap` should that one never
run, so no transaction waits for item rows while it holds a run's row. A failed run (a
step's failure, a timeout, `fail_run`) keeps its work state, the failing item included, for
`retry_run`.

Waiting: idle workers and `wait_run` block on LISTEN/NOTIFY (`Listener`): a transaction that
makes items ready notifies "q:QUEUE", one that finishes a run "r:RUN". A wait for work is
also bounded by the next delayed item's due time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio

from floxide._errors import BackendError, UnreadableDataError
from floxide.backends import _postgres_sql as sql
from floxide.backends import _postgres_steps as steps
from floxide.backends._base import (
    UNREADABLE_KIND,
    CommitPlan,
    CommitResult,
    ContextUpdate,
    ErrorRecord,
    Lease,
    NewRun,
    NodeMetrics,
    Output,
    RunContext,
    RunMetrics,
    RunRecord,
    RunStatus,
    WorkerInfo,
    unreadable,
    unreadable_error,
)
from floxide.backends._postgres_conn import Conn, Deferred, Listener, Pool, Rollback
from floxide.backends._postgres_tables import (
    CONTRIBUTED,
    RUN_COLS,
    RUN_TABLES,
    add_errors,
    channel_name,
    garbled_items,
    insert_items,
    migrate,
    pairs,
    run_record,
)
from floxide.backends._registry import masked_url

__all__ = ["PostgresBackend"]

T = TypeVar("T")
_OWN_OPTIONS = ("floxide_schema", "ttl")
_LOCKED = 0.005
"""Seconds before looking again for work when an item due already was not leased: another
transaction holds it (it is being leased or given back), so looking at once would spin."""


class PostgresBackend:
    """Backend on a PostgreSQL database (`postgresql://USER:PASSWORD@HOST:PORT/DB`)."""

    stores_contributions = True

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 7 * 86400,
        worker_ttl: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in _OWN_OPTIONS}
        libpq = [(k, v) for k, v in query if k not in _OWN_OPTIONS]
        password = parts.password or next((v for k, v in libpq if k == "password"), None)
        self.schema = own.get("floxide_schema") or "floxide"
        self.url = masked_url(url)
        self.ttl = ttl
        self.worker_ttl = worker_ttl
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(libpq)))
        self._channel = channel_name(self.schema)
        self._pool = Pool(
            conninfo,
            self.schema,
            url=self.url,
            password=password,
            size=pool_size,
            prepare=lambda conn: migrate(conn, self.schema),
        )
        self._listener = Listener(self._pool, self._channel)

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    def connected(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def aclose(self) -> None:
        self._listener.stop()
        self._pool.close()

    async def _tx(self, fn: Callable[[Conn], T]) -> T:
        return await self._pool.run(fn)

    async def _cleanup(self, run_ids: Sequence[str]) -> None:
        """Delete the work state of finished runs (items, scopes, collected values)."""
        if not run_ids:
            return

        def tx(conn: Conn) -> None:
            for table in ("items", "scopes", "collected"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (list(run_ids),))

        with trio.CancelScope(shield=True):
            await self._tx(tx)

    async def _wait(
        self,
        key: str,
        timeout: float,
        look: Callable[[], Awaitable[tuple[T, bool, float | None]]],
    ) -> T:
        """Look until `look` says done or `timeout` passed; between looks wait for a
        notification of `key` (or the due time `look` gives)."""
        await self._listener.start()
        deadline = trio.current_time() + timeout
        while True:
            ev = self._listener.waiter(key)
            try:
                value, done, due = await look()
                remaining = deadline - trio.current_time()
                if done or remaining <= 0:
                    return value
                soon = remaining if due is None else max(_LOCKED, due - time.time())
                pause = min(remaining, soon)
                with trio.move_on_after(pause):
                    await ev.wait()
            finally:
                self._listener.forget(key, ev)

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        def tx(conn: Conn) -> None:
            now = time.time()
            status = RunStatus.PENDING if run.items else RunStatus.COMPLETED
            row = conn.execute(
                "INSERT INTO runs (run_id, workflow, queue, fingerprint, status, input, context,"
                " created_at, updated_at, finished_at, deadline, pending)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                (
                    run.run_id,
                    run.workflow,
                    run.queue,
                    run.fingerprint,
                    str(status),
                    run.input,
                    run.context,
                    now,
                    now,
                    None if run.items else now,
                    run.deadline,
                    len(run.items),
                ),
            ).fetchone()
            if row is None:
                raise BackendError(f"run {run.run_id!r} already exists in {self.url}")
            insert_items(conn, run.run_id, run.queue, run.items, now)
            key = f"q:{run.queue}" if run.items else f"r:{run.run_id}"
            steps.notify(conn, self._channel, [key])

        await self._tx(tx)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def q(conn: Conn) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            return None if row is None else run_record(row)

        return await self._tx(q)

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        def q(conn: Conn) -> list[RunRecord]:
            if queue is None:
                rows = conn.execute(f"SELECT {RUN_COLS} FROM runs ORDER BY created_at DESC")
            else:
                rows = conn.execute(
                    f"SELECT {RUN_COLS} FROM runs WHERE queue = %s ORDER BY created_at DESC",
                    (queue,),
                )
            return [run_record(r) for r in rows.fetchall()]

        return await self._tx(q)

    async def list_runs_page(
        self, status: str | None, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """A page of `list_runs()` (all queues), optionally of one status, and how many
        runs that listing holds in all."""

        def q(conn: Conn) -> tuple[list[RunRecord], int]:
            where, args = ("", ()) if status is None else (" WHERE status = %s", (status,))
            total = conn.execute("SELECT count(*) FROM runs" + where, args).fetchone()
            rows = conn.execute(
                f"SELECT {RUN_COLS} FROM runs{where} ORDER BY created_at DESC LIMIT %s OFFSET %s",
                (*args, limit, offset),
            ).fetchall()
            return [run_record(r) for r in rows], int(total[0]) if total else 0

        return await self._tx(q)

    async def control(self, run_id: str, action: str) -> RunRecord:
        if action not in ("cancel", "pause", "resume"):
            raise ValueError(f"unknown run action {action!r} (cancel, pause or resume)")

        def tx(conn: Conn) -> tuple[RunRecord, bool]:
            row = conn.execute(
                "SELECT status, queue FROM runs WHERE run_id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise KeyError(run_id)
            status, queue = RunStatus(row[0]), row[1]
            now = time.time()
            ended = False
            if action == "cancel" and status.live:
                conn.execute(
                    steps.FINISH,
                    {
                        "status": "cancelled",
                        "error": "cancelled",
                        "kind": "cancelled",
                        "now": now,
                        "failed": 0,
                        "run": run_id,
                    },
                )
                steps.notify(conn, self._channel, [f"r:{run_id}"])
                ended = True
            elif action == "pause" and status in (RunStatus.PENDING, RunStatus.RUNNING):
                conn.execute(
                    "UPDATE runs SET status = 'paused', updated_at = %s WHERE run_id = %s",
                    (now, run_id),
                )
            elif action == "resume" and status is RunStatus.PAUSED:
                conn.execute(
                    "UPDATE runs SET status = 'running', updated_at = %s WHERE run_id = %s",
                    (now, run_id),
                )
                steps.notify(conn, self._channel, [f"q:{queue}"])
            got = conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,))
            rec = got.fetchone()
            assert rec is not None
            return run_record(rec), ended

        rec, ended = await self._tx(tx)
        if ended:
            await self._cleanup([run_id])
        return rec

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        def tx(conn: Conn) -> RunRecord:
            row = conn.execute(
                "SELECT status, queue FROM runs WHERE run_id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise KeyError(run_id)
            if row[0] == RunStatus.FAILED:
                now = time.time()
                kept = conn.execute(
                    "UPDATE items SET state = 'queued', attempt = 1, due = %s, expired = false,"
                    " last_error = NULL, worker_id = NULL, token = 0 WHERE run_id = %s"
                    " RETURNING 1",
                    (now, run_id),
                ).fetchall()
                status = RunStatus.RUNNING if kept else RunStatus.COMPLETED
                conn.execute(
                    "UPDATE runs SET status = %s, error = NULL, error_kind = NULL,"
                    " finished_at = %s, deadline = %s, pending = %s, updated_at = %s"
                    " WHERE run_id = %s",
                    (str(status), None if kept else now, deadline, len(kept), now, run_id),
                )
                steps.notify(conn, self._channel, [f"q:{row[1]}" if kept else f"r:{run_id}"])
            got = conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,))
            rec = got.fetchone()
            assert rec is not None
            return run_record(rec)

        return await self._tx(tx)

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        def tx(conn: Conn) -> bool:
            if not steps.finish(conn, run_id, error, failed=0):
                return False
            steps.notify(conn, self._channel, [f"r:{run_id}"])
            return True

        return await self._tx(tx)

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        async def look() -> tuple[RunRecord | None, bool, float | None]:
            rec = await self.get_run(run_id)
            return rec, rec is None or rec.status.finished, None

        return await self._wait(f"r:{run_id}", timeout, look)

    async def outputs(self, run_id: str) -> list[Output]:
        def q(conn: Conn) -> list[Output]:
            rows = conn.execute(
                "SELECT position, node, value FROM outputs WHERE run_id = %s", (run_id,)
            ).fetchall()
            outs = [Output(tuple(json.loads(r[0])), r[1], bytes(r[2])) for r in rows]
            return sorted(outs, key=lambda o: o.position)

        return await self._tx(q)

    async def context(self, run_id: str) -> RunContext | None:
        def q(conn: Conn) -> RunContext | None:
            row = conn.execute(
                "SELECT r.context, r.version, contributed.keys, contributed.data FROM runs r "
                + CONTRIBUTED.format(run="r.run_id")
                + " WHERE r.run_id = %s",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            return RunContext(bytes(row[0]), row[1], pairs(row[2], row[3]))

        return await self._tx(q)

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        def q(conn: Conn) -> list[bytes]:
            rows = conn.execute(
                "SELECT coalesce(batch, ARRAY[data]) FROM collected WHERE run_id = %s AND key = %s",
                (run_id, key),
            ).fetchall()
            return [bytes(d) for r in rows for d in r[0]]

        return await self._tx(q)

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        def q(conn: Conn) -> list[ErrorRecord]:
            rows = conn.execute(
                "SELECT node, item_id, attempt, kind, message, at, traceback, handled"
                " FROM errors WHERE run_id = %s ORDER BY id",
                (run_id,),
            ).fetchall()
            return [ErrorRecord(*tuple(r)) for r in rows]

        return await self._tx(q)

    async def node_load(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Items not yet done per node, as (queued, in flight); empty unless the run is live."""

        def q(conn: Conn) -> dict[str, tuple[int, int]]:
            rows = conn.execute(
                "SELECT i.node, count(*) FILTER (WHERE i.state <> 'leased'),"
                " count(*) FILTER (WHERE i.state = 'leased') FROM items i"
                " JOIN runs r ON r.run_id = i.run_id"
                " WHERE i.run_id = %s AND r.status IN ('pending', 'running', 'paused')"
                " GROUP BY i.node",
                (run_id,),
            ).fetchall()
            return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

        return await self._tx(q)

    async def metrics(self, run_id: str) -> RunMetrics:
        def q(conn: Conn) -> RunMetrics:
            row = conn.execute(
                "SELECT done, failed, retried, status FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            if row is None:
                return RunMetrics()
            counts: dict[bool, int] = {}
            if RunStatus(row[3]).live:
                counts = dict(
                    conn.execute(
                        "SELECT state = 'leased', count(*) FROM items WHERE run_id = %s"
                        " GROUP BY state = 'leased'",
                        (run_id,),
                    ).fetchall()
                )
            per_node = {
                r[0]: NodeMetrics(r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT node, sum(n)::bigint, sum(seconds), max(coalesce(longest, seconds))"
                    " FROM steps WHERE run_id = %s GROUP BY node",
                    (run_id,),
                ).fetchall()
            }
            return RunMetrics(
                done=row[0],
                failed=row[1],
                retried=row[2],
                in_flight=counts.get(True, 0),
                queued=counts.get(False, 0),
                per_node=per_node,
            )

        return await self._tx(q)

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        def tx(conn: Conn) -> tuple[list[Lease], float | None]:
            got, _ = steps.take(conn, self._channel, queue, worker_id, limit, lease_seconds)
            due = None
            if not got and wait > 0:
                row = conn.execute(  # of runs that may lease (not paused, not failed)
                    "SELECT min(i.due) FROM items i JOIN runs r ON r.run_id = i.run_id"
                    " WHERE i.queue = %s AND i.state = 'queued'"
                    " AND r.status IN ('pending', 'running')",
                    (queue,),
                ).fetchone()
                due = None if row is None else row[0]
            return got, due

        async def look() -> tuple[list[Lease], bool, float | None]:
            with trio.CancelScope(shield=True):  # leases taken are never dropped by a cancel
                got, due = await self._tx(tx)
            return got, bool(got), due

        if wait <= 0:
            got, _, _ = await look()
            return got
        return await self._wait(f"q:{queue}", wait, look)

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        if not leases:
            return []

        def tx(conn: Conn) -> list[bool]:
            rows = conn.execute(
                "UPDATE items i SET deadline = %s"
                " FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS l(run_id, item_id, token)"
                " WHERE i.run_id = l.run_id AND i.item_id = l.item_id AND i.token = l.token"
                " AND i.state = 'leased' RETURNING i.run_id, i.item_id, i.token",
                (
                    time.time() + lease_seconds,
                    [le.run_id for le in leases],
                    [le.item_id for le in leases],
                    [le.token for le in leases],
                ),
            ).fetchall()
            held = {(r[0], r[1], r[2]) for r in rows}
            return [(le.run_id, le.item_id, le.token) in held for le in leases]

        return await self._tx(tx)

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        result, _ = await self.commit_and_lease(lease, plan, limit=0, lease_seconds=0.0)
        return result

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        def tx(conn: Conn, defer: bool) -> steps.Committed | Deferred:
            return steps.commit(conn, self._channel, lease, plan, limit, lease_seconds, defer)

        try:
            batched = steps.deferred(self._channel, lease, plan, limit, lease_seconds)
            result, got, ended = await self._pool.run_grouped(tx, batched)
        except UnreadableDataError as e:  # rolled back: fail the run alone
            await self.fail_run(lease.run_id, unreadable_error(lease, e.what))
            return CommitResult.INACTIVE, []
        if ended:
            await self._cleanup([lease.run_id])
        elif result is CommitResult.COMMITTED:
            compact = sql.compaction(plan)
            if compact is not None:
                await self._compact(lease.run_id, compact)
        return result, got

    async def _compact(self, run_id: str, compact: ContextUpdate) -> None:
        """Apply a committed step's compaction (`_postgres_sql.COMPACT`). Its outcome is not
        the step's: should it fail, the contributions stay and are folded when read."""

        def q(conn: Conn) -> None:
            conn.execute(sql.COMPACT, sql.compact_params(run_id, compact))

        with trio.CancelScope(shield=True):
            try:
                await self._pool.run_alone(q)
            except BackendError:
                pass  # unreachable now: the next compaction folds these contributions

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        def tx(conn: Conn) -> CommitResult:
            now = time.time()
            back = self._give_back(conn, lease)
            conn.execute(
                "UPDATE items SET attempt = attempt + 1, due = %s, last_error = %s,"
                " expired = false WHERE run_id = %s AND item_id = %s",
                (now + delay, error.message, lease.run_id, lease.item_id),
            )
            add_errors(conn, lease.run_id, [error])
            conn.execute(
                "UPDATE runs SET retried = retried + 1, updated_at = %s WHERE run_id = %s",
                (now, lease.run_id),
            )
            steps.notify(conn, self._channel, [f"q:{back}"])
            return CommitResult.COMMITTED

        return await self._tx(tx)

    async def release(self, lease: Lease) -> CommitResult:
        def tx(conn: Conn) -> CommitResult:
            back = self._give_back(conn, lease)
            steps.notify(conn, self._channel, [f"q:{back}"])
            return CommitResult.COMMITTED

        return await self._tx(tx)

    @staticmethod
    def _give_back(conn: Conn, lease: Lease) -> str:
        """Queue a held item again (due now); its queue. Rolls back unless held and live."""
        row = conn.execute(
            "UPDATE items i SET state = 'queued', due = %s, worker_id = NULL FROM runs r"
            " WHERE i.run_id = %s AND i.item_id = %s AND i.state = 'leased' AND i.token = %s"
            " AND r.run_id = i.run_id AND r.status IN ('pending', 'running', 'paused')"
            " RETURNING i.queue",
            (time.time(), lease.run_id, lease.item_id, lease.token),
        ).fetchone()
        if row is not None:
            return str(row[0])
        run = conn.execute("SELECT status FROM runs WHERE run_id = %s", (lease.run_id,))
        status = run.fetchone()
        if status is None or RunStatus(status[0]).finished:
            raise Rollback(CommitResult.INACTIVE)
        raise Rollback(CommitResult.LOST)

    async def reap(self) -> int:
        def tx(conn: Conn) -> int:
            now = time.time()
            rows = conn.execute(
                "UPDATE items SET state = 'queued', attempt = attempt + 1, due = %(now)s,"
                " last_error = 'lease expired: worker ' || coalesce(worker_id, '?')"
                " || ' did not finish in time', expired = true, worker_id = NULL"
                " WHERE state = 'leased' AND deadline < %(now)s AND run_id IN (SELECT run_id"
                " FROM runs WHERE status IN ('pending', 'running', 'paused'))"
                " RETURNING run_id, item_id, node, attempt - 1, last_error, queue",
                {"now": now},
            ).fetchall()
            by_run: dict[str, list[ErrorRecord]] = {}
            for r in rows:
                err = ErrorRecord(r[2], r[1], r[3], "lease", r[4], now, handled=True)
                by_run.setdefault(r[0], []).append(err)
            for run_id, errs in sorted(by_run.items()):
                add_errors(conn, run_id, errs)
                conn.execute(
                    "UPDATE runs SET retried = retried + %s WHERE run_id = %s",
                    (len(errs), run_id),
                )
            ended = []
            for run_id, item_id, node, attempt, column in garbled_items(conn):
                err = ErrorRecord(node, item_id, attempt, UNREADABLE_KIND,
                                  unreadable(run_id, column), now)  # fmt: skip
                if steps.finish(conn, run_id, err, failed=0):  # never leasable: fail it alone
                    ended.append(f"r:{run_id}")
            old = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM runs WHERE finished_at < %s RETURNING run_id", (now - self.ttl,)
                ).fetchall()
            ]
            if old:
                for table in RUN_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (old,))
            conn.execute(
                "DELETE FROM items i USING runs r WHERE r.run_id = i.run_id"
                " AND r.status IN ('completed', 'cancelled')"
            )
            conn.execute("DELETE FROM workers WHERE last_seen < %s", (now - self.worker_ttl,))
            steps.notify(conn, self._channel, [f"q:{r[5]}" for r in rows] + ended)
            return len(rows)

        return await self._tx(tx)

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        def tx(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO workers (worker_id, queue, host, pid, started_at, last_seen,"
                " concurrency, graph, in_flight) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (worker_id) DO UPDATE SET queue = excluded.queue,"
                " host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,"
                " last_seen = excluded.last_seen, concurrency = excluded.concurrency,"
                " graph = excluded.graph, in_flight = excluded.in_flight",
                (
                    info.worker_id,
                    info.queue,
                    info.host,
                    info.pid,
                    info.started_at,
                    info.last_seen,
                    info.concurrency,
                    info.graph,
                    info.in_flight,
                ),
            )

        await self._tx(tx)

    async def unregister_worker(self, worker_id: str) -> None:
        def tx(conn: Conn) -> None:
            conn.execute("DELETE FROM workers WHERE worker_id = %s", (worker_id,))

        await self._tx(tx)

    async def workers(self) -> list[WorkerInfo]:
        def q(conn: Conn) -> list[WorkerInfo]:
            rows = conn.execute(
                "SELECT worker_id, queue, host, pid, started_at, last_seen, concurrency, graph,"
                " in_flight FROM workers WHERE last_seen >= %s ORDER BY started_at",
                (time.time() - self.worker_ttl,),
            ).fetchall()
            return [WorkerInfo(*tuple(r)) for r in rows]

        return await self._tx(q)
