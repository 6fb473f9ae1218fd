"""The PostgreSQL backend: many worker processes on many machines share one database.

`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB?floxide_schema=NAME` (libpq's URL; other query
options go to libpq). The tables (`_postgres_tables`) live in a schema of their own, created
and migrated on first use. Every operation is one transaction in a worker thread
(`_postgres_conn.Pool`).

Locking: leasing takes ready items with `SELECT ... FOR UPDATE SKIP LOCKED`, so workers never
wait on each other's items, and holds their runs' rows in KEY SHARE mode: `control` and
`retry_run` lock a run's row FOR UPDATE, so a pause waits for the leases in flight and a
lease after it sees the run paused. A commit first deletes its item if its lease (fencing token) is
still held, writes what the step made, counts its join scopes and, last, updates its run's
row (`... WHERE status is live`): that row is the only one every commit of a run meets, and
it is held only for the end of the transaction. A context written over a newer version is
merged with the stored one (the context's `merge`) under that row lock. Finishing a run
(completion, cancel) updates its row; its work state (items, scopes, collected values) is
deleted by a second transaction, and by `reap` should that one never run, so no transaction
waits for item rows while it holds a run's row. A failed run (a step's failure, a timeout,
`fail_run`) keeps its work state, the failing item included, for `retry_run`.

Waiting: idle workers and `wait_run` block on LISTEN/NOTIFY (`Listener`): a transaction that
makes items ready notifies "q:QUEUE", one that finishes a run "r:RUN". A wait for work is
also bounded by the next delayed item's due time.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio

from floxide._errors import BackendError
from floxide._step import DEADLINE_PASSED
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
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
    count_scopes,
)
from floxide.backends._postgres_conn import Conn, Listener, Pool, Rollback
from floxide.backends._postgres_tables import (
    RUN_COLS,
    RUN_TABLES,
    Scopes,
    add_errors,
    channel_name,
    insert_items,
    migrate,
    run_record,
)
from floxide.backends._registry import masked_url

__all__ = ["PostgresBackend"]

T = TypeVar("T")
_OWN_OPTIONS = ("floxide_schema", "ttl")
_MAX_PAYLOAD = 7000
"""Longest NOTIFY payload sent as is (PostgreSQL allows 8000 bytes); longer wakes all."""

_TAKE = """
WITH picked AS (
    SELECT i.run_id, i.item_id, i.node, i.payload, i.attempt, i.last_error, i.expired,
           i.due, i.seq, (r.deadline IS NOT NULL AND r.deadline < %(now)s) AS late
    FROM items i JOIN runs r ON r.run_id = i.run_id
    WHERE i.queue = %(queue)s AND i.state = 'queued' AND i.due <= %(now)s
      AND r.status IN ('pending', 'running')
    ORDER BY i.due, i.seq LIMIT %(limit)s
    FOR UPDATE OF i SKIP LOCKED FOR KEY SHARE OF r
), taken AS (
    UPDATE items i SET state = 'leased', worker_id = %(worker)s, token = nextval('tokens'),
           deadline = %(until)s
    FROM picked p WHERE i.run_id = p.run_id AND i.item_id = p.item_id AND NOT p.late
    RETURNING i.run_id, i.item_id, i.token
)
SELECT p.run_id, p.item_id, p.node, p.payload, p.attempt, p.last_error, p.expired, t.token,
       r.status, r.deadline, r.context, r.version, p.late
FROM picked p JOIN runs r ON r.run_id = p.run_id
LEFT JOIN taken t ON t.run_id = p.run_id AND t.item_id = p.item_id
ORDER BY p.due, p.seq
"""

_HELD = """
WITH held AS (
    DELETE FROM items WHERE run_id = %(run)s AND item_id = %(item)s AND state = 'leased'
    AND token = %(token)s AND EXISTS (SELECT 1 FROM runs WHERE run_id = %(run)s
    AND status IN ('pending', 'running', 'paused')) RETURNING run_id, queue
), step AS (
    INSERT INTO steps (run_id, node, seconds) SELECT run_id, %(node)s, %(seconds)s FROM held
)"""
_MADE = """, made AS (
    INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)
    SELECT h.run_id, u.item_id, h.queue, u.node, u.payload, u.attempt, 'queued', u.due,
           nextval('seq')
    FROM held h, (SELECT * FROM unnest(%(ids)s::text[], %(nodes)s::text[],
                  %(payloads)s::bytea[], %(attempts)s::int[], %(dues)s::float8[])
                  WITH ORDINALITY AS u(item_id, node, payload, attempt, due, ord) ORDER BY ord) u
)"""
_KEPT = """, kept AS (
    INSERT INTO collected (run_id, key, data)
    SELECT h.run_id, c.key, c.data FROM held h,
           unnest(%(ckeys)s::text[], %(cdata)s::bytea[]) AS c(key, data)
)"""
_DROPPED = """, dropped AS (
    DELETE FROM collected WHERE run_id = %(run)s AND key = ANY(%(drop)s::text[])
    AND EXISTS (SELECT 1 FROM held)
)"""
_OUTS = """, outs AS (
    INSERT INTO outputs (run_id, position, node, value)
    SELECT h.run_id, o.position, o.node, o.value FROM held h,
           unnest(%(opos)s::text[], %(onodes)s::text[], %(ovalues)s::bytea[])
           AS o(position, node, value)
)"""
_RUN = """
SELECT r.status, r.context, r.version, r.queue, (SELECT count(*) FROM held)
FROM runs r WHERE r.run_id = %(run)s
"""


def _check_sql(plan: CommitPlan) -> str:
    """A commit's first statement: if the lease is held and the run live, delete the item
    and write what the step made (metric, successors, collected values, outputs); then read
    the run. Only the parts the plan needs (each variant is prepared once)."""
    return "".join(
        (
            _HELD,
            _MADE if plan.items and plan.failure is None else "",
            _KEPT if plan.collect else "",
            _DROPPED if plan.drop_collected else "",
            _OUTS if plan.outputs else "",
            _RUN,
        )
    )


_FINISH = (
    "UPDATE runs SET status = %(status)s, error = %(error)s, error_kind = %(kind)s,"
    " pending = 0, finished_at = %(now)s, updated_at = %(now)s, failed = failed + %(failed)s"
    " WHERE run_id = %(run)s AND status IN ('pending', 'running', 'paused') RETURNING queue"
)


def _notify(conn: Conn, channel: str, keys: Sequence[str]) -> None:
    """Notify `keys` when this transaction commits (duplicates collapse)."""
    for key in dict.fromkeys(keys):
        conn.execute(
            "SELECT pg_notify(%s, %s)", (channel, key if len(key) <= _MAX_PAYLOAD else "*")
        )


class PostgresBackend:
    """Backend on a PostgreSQL database (`postgresql://USER:PASSWORD@HOST:PORT/DB`)."""

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
                pause = remaining if due is None else min(remaining, max(0.0, due - time.time()))
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
            _notify(conn, self._channel, [f"q:{run.queue}" if run.items else f"r:{run.run_id}"])

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
                    _FINISH,
                    {
                        "status": "cancelled",
                        "error": "cancelled",
                        "kind": "cancelled",
                        "now": now,
                        "failed": 0,
                        "run": run_id,
                    },
                )
                _notify(conn, self._channel, [f"r:{run_id}"])
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
                _notify(conn, self._channel, [f"q:{queue}"])
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
                _notify(conn, self._channel, [f"q:{row[1]}" if kept else f"r:{run_id}"])
            got = conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,))
            rec = got.fetchone()
            assert rec is not None
            return run_record(rec)

        return await self._tx(tx)

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        def tx(conn: Conn) -> bool:
            if not self._finish(conn, run_id, error, failed=0):
                return False
            _notify(conn, self._channel, [f"r:{run_id}"])
            return True

        return await self._tx(tx)

    @staticmethod
    def _finish(conn: Conn, run_id: str, error: ErrorRecord, *, failed: int) -> bool:
        """Fail a live run with `error` (logged); False when it is finished already."""
        row = conn.execute(
            _FINISH,
            {
                "status": "failed",
                "error": error.message,
                "kind": error.kind,
                "now": time.time(),
                "failed": failed,
                "run": run_id,
            },
        ).fetchone()
        if row is None:
            return False
        add_errors(conn, run_id, [error])
        return True

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
                "SELECT context, version FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            return None if row is None else RunContext(bytes(row[0]), row[1])

        return await self._tx(q)

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        def q(conn: Conn) -> list[bytes]:
            rows = conn.execute(
                "SELECT data FROM collected WHERE run_id = %s AND key = %s", (run_id, key)
            ).fetchall()
            return [bytes(r[0]) for r in rows]

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
                    "SELECT node, count(*), sum(seconds), max(seconds) FROM steps"
                    " WHERE run_id = %s GROUP BY node",
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
            got, _ = self._take(conn, queue, worker_id, limit, lease_seconds)
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

    def _take(
        self, conn: Conn, queue: str, worker_id: str, limit: int, lease_seconds: float
    ) -> tuple[list[Lease], list[str]]:
        """Lease up to `limit` ready items; fail the runs found past their deadline."""
        now = time.time()
        rows = conn.execute(
            _TAKE,
            {
                "now": now,
                "queue": queue,
                "limit": limit,
                "worker": worker_id,
                "until": now + lease_seconds,
            },
        ).fetchall()
        out: list[Lease] = []
        ended: list[str] = []
        pending: set[str] = set()
        for r in rows:
            run_id = r[0]
            if r[12]:
                if run_id not in ended:
                    err = ErrorRecord(r[2], r[1], r[4], "timeout", DEADLINE_PASSED, now)
                    if self._finish(conn, run_id, err, failed=0):
                        ended.append(run_id)
                continue
            if r[8] == "pending":
                pending.add(run_id)
            out.append(
                Lease(
                    run_id=run_id,
                    item_id=r[1],
                    node=r[2],
                    payload=bytes(r[3]),
                    attempt=r[4],
                    worker_id=worker_id,
                    token=r[7],
                    deadline=now + lease_seconds,
                    last_error=r[5],
                    expired=bool(r[6]),
                    context=RunContext(bytes(r[10]), r[11]),
                    run_deadline=math.inf if r[9] is None else r[9],
                )
            )
        if pending:
            conn.execute(
                "UPDATE runs SET status = 'running', updated_at = %s"
                " WHERE run_id = ANY(%s) AND status = 'pending'",
                (now, sorted(pending)),
            )
        if ended:
            _notify(conn, self._channel, [f"r:{rid}" for rid in ended])
        return out, ended

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
        def tx(conn: Conn) -> tuple[CommitResult, list[Lease], bool]:
            return self._commit(conn, lease, plan, limit, lease_seconds)

        result, got, ended = await self._pool.run_grouped(tx)
        if ended:
            await self._cleanup([lease.run_id])
        return result, got

    def _commit(
        self, conn: Conn, lease: Lease, plan: CommitPlan, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease], bool]:
        run_id = lease.run_id
        now = time.time()
        items = plan.items
        row = conn.execute(
            _check_sql(plan),
            {
                "run": run_id,
                "item": lease.item_id,
                "token": lease.token,
                "node": lease.node,
                "seconds": plan.duration,
                "ids": [it.item_id for it in items],
                "nodes": [it.node for it in items],
                "payloads": [it.payload for it in items],
                "attempts": [it.attempt for it in items],
                "dues": [now + it.delay for it in items],
                "ckeys": [k for k, _ in plan.collect],
                "cdata": [v for _, v in plan.collect],
                "drop": list(plan.drop_collected),
                "opos": [json.dumps(list(o.position)) for o in plan.outputs],
                "onodes": [o.node for o in plan.outputs],
                "ovalues": [o.value for o in plan.outputs],
            },
        ).fetchone()
        if row is None or RunStatus(row[0]).finished:
            raise Rollback((CommitResult.INACTIVE, [], False), clean=True)
        if not row[4]:
            raise Rollback((CommitResult.LOST, [], False), clean=True)
        stored, version, queue = bytes(row[1]), int(row[2]), row[3]
        update = plan.context
        context = None
        if update is not None:  # if the merge raises, nothing is applied (rolled back)
            stale = version != update.base_version and update.merge is not None
            context = update.merge(stored) if update.merge and stale else update.value
        if plan.handled:
            add_errors(conn, run_id, plan.handled)
        if plan.failure is not None:
            if context is not None:
                self._write_context(conn, lease, plan, context, version)
            if not self._finish(conn, run_id, plan.failure, failed=1 + len(plan.handled)):
                raise Rollback((CommitResult.INACTIVE, [], False))
            conn.execute(  # kept, with the run's work state, for `retry_run`
                "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due,"
                " seq) VALUES (%s, %s, %s, %s, %s, %s, 'failed', %s, nextval('seq'))",
                (run_id, lease.item_id, queue, lease.node, lease.payload, lease.attempt, now),
            )
            _notify(conn, self._channel, [f"r:{run_id}"])
            return CommitResult.COMMITTED, [], False
        fired = count_scopes(plan, Scopes(conn, run_id))
        insert_items(conn, run_id, queue, fired, now)
        items = [*items, *fired]
        status = self._count(conn, lease, plan, context, version, len(items) - 1, now)
        ended = status == "completed"
        made = sum(it.delay <= 0 for it in items)
        got: list[Lease] = []
        if min(limit, made) > 0:
            got, _ = self._take(conn, queue, lease.worker_id, limit, lease_seconds)
        keys = [f"r:{run_id}"] if ended else []
        if items and len(got) < len(items):
            keys.append(f"q:{queue}")
        _notify(conn, self._channel, keys)
        return CommitResult.COMMITTED, got, ended

    def _count(
        self,
        conn: Conn,
        lease: Lease,
        plan: CommitPlan,
        context: bytes | None,
        version: int,
        delta: int,
        now: float,
    ) -> str:
        """Update the run's row last (counters, context, completion); its new status."""
        sets = (
            "pending = pending + %(delta)s, done = done + 1, updated_at = %(now)s,"
            " failed = failed + %(handled)s,"
            " status = CASE WHEN pending + %(delta)s <= 0 THEN 'completed' ELSE status END,"
            " finished_at = CASE WHEN pending + %(delta)s <= 0 THEN %(now)s END"
        )
        args: dict[str, Any] = {
            "delta": delta,
            "now": now,
            "run": lease.run_id,
            "handled": len(plan.handled),
        }
        live = "run_id = %(run)s AND status IN ('pending', 'running', 'paused')"
        if context is None:
            row = conn.execute(
                f"UPDATE runs SET {sets} WHERE {live} RETURNING status", args
            ).fetchone()
        else:
            args.update(context=context, version=version)
            row = conn.execute(
                f"UPDATE runs SET {sets}, context = %(context)s, version = version + 1"
                f" WHERE {live} AND version = %(version)s RETURNING status",
                args,
            ).fetchone()
            if row is None:  # another commit changed the context since: merge into it
                fresh = self._locked_context(conn, lease.run_id)
                args["context"] = self._merged(plan, fresh, context)
                args["version"] = fresh[1]
                row = conn.execute(
                    f"UPDATE runs SET {sets}, context = %(context)s, version = version + 1"
                    f" WHERE {live} RETURNING status",
                    args,
                ).fetchone()
        if row is None:
            raise Rollback((CommitResult.INACTIVE, [], False))
        return str(row[0])

    @staticmethod
    def _locked_context(conn: Conn, run_id: str) -> tuple[bytes, int]:
        row = conn.execute(
            "SELECT context, version, status FROM runs WHERE run_id = %s FOR NO KEY UPDATE",
            (run_id,),
        ).fetchone()
        if row is None or RunStatus(row[2]).finished:
            raise Rollback((CommitResult.INACTIVE, [], False))
        return bytes(row[0]), int(row[1])

    @staticmethod
    def _merged(plan: CommitPlan, fresh: tuple[bytes, int], context: bytes) -> bytes:
        update = plan.context
        assert update is not None
        if update.merge is not None and fresh[1] != update.base_version:
            return update.merge(fresh[0])
        return context

    def _write_context(
        self, conn: Conn, lease: Lease, plan: CommitPlan, context: bytes, version: int
    ) -> None:
        fresh = self._locked_context(conn, lease.run_id)
        value = context if fresh[1] == version else self._merged(plan, fresh, context)
        conn.execute(
            "UPDATE runs SET context = %s, version = version + 1 WHERE run_id = %s",
            (value, lease.run_id),
        )

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
            _notify(conn, self._channel, [f"q:{back}"])
            return CommitResult.COMMITTED

        return await self._tx(tx)

    async def release(self, lease: Lease) -> CommitResult:
        def tx(conn: Conn) -> CommitResult:
            back = self._give_back(conn, lease)
            _notify(conn, self._channel, [f"q:{back}"])
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
            _notify(conn, self._channel, [f"q:{r[5]}" for r in rows])
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
