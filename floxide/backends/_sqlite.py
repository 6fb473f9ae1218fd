"""The SQLite backend: several worker processes on one machine share one database file.

The file (its tables: `floxide.backends._sqlite_tables`) is opened through the shared SQLite
layer, `floxide._sqlite.SqliteFile`: WAL mode, `synchronous=NORMAL`, a busy timeout, one
connection per backend object used by one worker thread call at a time, and group commit. Every
change is made inside a `BEGIN IMMEDIATE` transaction, so commits from different processes
serialize on the file lock and a step's commit (lease check, context, join state, successors,
item done) is atomic; taking the lock polls every 50 us to 1 ms while another process holds it.

Group commit: a worker's concurrent steps share one thread hop and one lock acquisition, each
transaction in its own savepoint. A transaction that raises (a stale lease returns its result
as usual; a failing merge or SQL statement raises) is rolled back to its savepoint and its
caller gets its exception, while the others commit; an error at COMMIT (or one that ends the
transaction) fails every transaction of the batch with `BackendError`, and nothing of it is
stored. A caller cancelled while its call is queued removes it, unrun; once taken into a
thread call, the call completes and its caller waits for it, shielded.

Waiting for work: SQLite has no notifications across processes, so an idle worker re-checks
for ready items with a short, bounded, backing-off wait (5 ms growing to 100 ms, and never
past the next delayed retry's due time); a commit in the same process wakes waiters at once.
Waiting for a run to finish reads its row the same way (5 ms growing to 50 ms): one
indexed read per poll, so a finished run is noticed within 50 ms.

Why over 700 lines: this is the whole `Backend` protocol for one engine, one method per
operation, each one transaction; the tables and the statements several operations share
live in `_sqlite_tables`, the connection and group commit in `floxide._sqlite`.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path

import trio

from floxide._errors import BackendError, UnreadableDataError
from floxide._sqlite import OPENING, SqliteFile
from floxide._step import DEADLINE_PASSED
from floxide.backends._base import (
    UNREADABLE_KIND,
    CommitPlan,
    CommitResult,
    ContextWrite,
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
    context_write,
    count_scopes,
    unreadable,
    unreadable_error,
)
from floxide.backends._sqlite_tables import (
    RUN_COLS,
    RUN_TABLES,
    Scopes,
    add_error,
    garbled_items,
    insert_items,
    next_value,
    prepare,
    run_record,
    set_run,
    unreadable_column,
)

_LEASED_COLUMNS = (
    ("status", str),
    ("node", str),
    ("payload", bytes),
    ("attempt", int),
    ("version", int),
    ("deadline", (int, float, type(None))),
)
"""What a lease reads of its item and run, and the type each must have (and the run's
context: bytes, read once per run, see `_take`)."""

__all__ = ["SqliteBackend"]

_RUN_POLL_MAX = 0.05
"""Longest pause (s) between two reads of a run that `wait_run` waits for."""


def _base(conn: sqlite3.Connection, run_id: str) -> bytes:
    """The stored context (base) of a run."""
    return bytes(conn.execute("SELECT context FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])


def _base_value(conn: sqlite3.Connection, run_id: str) -> object:
    """The stored context (base) of a run as read (bytes unless garbled)."""
    return conn.execute("SELECT context FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]


def _contributions(conn: sqlite3.Connection, run_id: str) -> tuple[tuple[str, bytes], ...]:
    """The contributions of a run not yet folded into its stored context (a garbled one is
    given as text: decoding it fails that run only)."""
    rows = conn.execute("SELECT key, data FROM contributions WHERE run_id = ?", (run_id,))
    return tuple((str(k), d if isinstance(d, bytes) else str(d).encode()) for k, d in rows)


class _Stored:
    """The contributions of one run, read at the first lookup (a compaction's)."""

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self.conn, self.run_id = conn, run_id
        self.found: dict[str, bytes] | None = None

    def get(self, key: str) -> bytes | None:
        if self.found is None:
            self.found = dict(_contributions(self.conn, self.run_id))
        return self.found.get(key)


class SqliteBackend:
    """Backend on one SQLite file (`sqlite:///relative.db` or `sqlite:////abs/path.db`)."""

    stores_contributions = True

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        ttl: float = 7 * 86400,
        worker_ttl: float = 30.0,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{path}"
        self.ttl = ttl
        self.worker_ttl = worker_ttl
        self.busy_timeout = busy_timeout
        self._file = SqliteFile(
            self.path,
            error=self._error,
            prepare=lambda conn: prepare(conn, self.url),
            synchronous="NORMAL",
            busy_timeout=busy_timeout,
            row_factory=sqlite3.Row,
        )
        self._local_change: trio.Event | None = None

    # -- plumbing -----------------------------------------------------------------------
    def _error(self, exc: BaseException, doing: str) -> BackendError:
        if doing == OPENING:
            return BackendError(f"cannot open SQLite backend {self.url}: {exc}")
        text = str(exc) if isinstance(exc, sqlite3.Error) else repr(exc)
        return BackendError(f"SQLite backend {self.url} failed: {text}")

    def _wake(self) -> None:
        if self._local_change is not None:
            self._local_change.set()
            self._local_change = None

    def connected(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def aclose(self) -> None:
        await self._file.aclose()

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            now = time.time()
            exists = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,))
            if exists.fetchone() is not None:
                raise BackendError(f"run {run.run_id!r} already exists in {self.url}")
            status = RunStatus.PENDING if run.items else RunStatus.COMPLETED
            conn.execute(
                "INSERT INTO runs (run_id, workflow, queue, fingerprint, status, input, context,"
                " created_at, updated_at, finished_at, deadline, pending)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            )
            insert_items(conn, run.run_id, run.queue, run.items, now)

        await self._file.write(tx)
        self._wake()

    @contextmanager
    def _reading(self, run_id: str, what: str) -> Iterator[None]:
        """Stored `what` of a run that cannot be read becomes one `BackendError` naming both."""
        try:
            yield
        except (ValueError, TypeError, UnicodeDecodeError):
            raise UnreadableDataError(what, f"{unreadable(run_id, what)} (in {self.url})") from None

    async def get_run(self, run_id: str) -> RunRecord | None:
        def q(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else run_record(row)

        return await self._file.read(q)

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        def q(conn: sqlite3.Connection) -> list[RunRecord]:
            sql = f"SELECT {RUN_COLS} FROM runs"
            args: tuple[str, ...] = ()
            if queue is not None:
                sql += " WHERE queue = ?"
                args = (queue,)
            rows = conn.execute(sql + " ORDER BY created_at DESC", args).fetchall()
            return [run_record(r) for r in rows]

        return await self._file.read(q)

    async def list_runs_page(
        self, status: str | None, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """A page of `list_runs()` (all queues), optionally of one status, and how many
        runs that listing holds in all."""

        def q(conn: sqlite3.Connection) -> tuple[list[RunRecord], int]:
            where, args = ("", ()) if status is None else (" WHERE status = ?", (status,))
            total = conn.execute("SELECT count(*) FROM runs" + where, args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {RUN_COLS} FROM runs{where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [run_record(r) for r in rows], int(total)

        return await self._file.read(q)

    async def control(self, run_id: str, action: str) -> RunRecord:
        if action not in ("cancel", "pause", "resume"):
            raise ValueError(f"unknown run action {action!r} (cancel, pause or resume)")

        def tx(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            status = RunStatus(row["status"])
            now = time.time()
            if action == "cancel" and status.live:
                set_run(
                    conn,
                    run_id,
                    now,
                    status=RunStatus.CANCELLED,
                    error="cancelled",
                    error_kind="cancelled",
                    pending=0,
                )
            elif action == "pause" and status in (RunStatus.PENDING, RunStatus.RUNNING):
                set_run(conn, run_id, now, status=RunStatus.PAUSED)
            elif action == "resume" and status is RunStatus.PAUSED:
                set_run(conn, run_id, now, status=RunStatus.RUNNING)
            row = conn.execute(
                f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return run_record(row)

        rec = await self._file.write(tx)
        self._wake()
        return rec

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        def tx(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            if row["status"] == RunStatus.FAILED:
                now = time.time()
                seq = conn.execute(
                    "SELECT count(*) FROM items WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
                first = next_value(conn, "seq") if seq else 0
                conn.execute(
                    "UPDATE items SET state = 'queued', attempt = 1, due = ?, expired = 0,"
                    " last_error = NULL, worker_id = NULL, token = 0, seq = ? WHERE run_id = ?",
                    (now, first, run_id),
                )
                conn.execute(
                    "UPDATE runs SET status = ?, error = NULL, error_kind = NULL,"
                    " finished_at = NULL, deadline = ?, pending = ?, updated_at = ?"
                    " WHERE run_id = ?",
                    (
                        str(RunStatus.RUNNING if seq else RunStatus.COMPLETED),
                        deadline,
                        seq,
                        now,
                        run_id,
                    ),
                )
            return run_record(
                conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            )

        rec = await self._file.write(tx)
        self._wake()
        return rec

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or RunStatus(row["status"]).finished:
                return False
            add_error(conn, run_id, error)
            set_run(
                conn,
                run_id,
                time.time(),
                status=RunStatus.FAILED,
                error=error.message,
                error_kind=error.kind,
                pending=0,
            )
            return True

        return await self._file.write(tx)

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        nap = 0.005
        with trio.move_on_after(timeout):
            while True:
                rec = await self.get_run(run_id)
                if rec is None or rec.status.finished:
                    return rec
                await trio.sleep(nap)
                nap = min(nap * 1.5, _RUN_POLL_MAX)
        return await self.get_run(run_id)

    async def outputs(self, run_id: str) -> list[Output]:
        def q(conn: sqlite3.Connection) -> list[Output]:
            rows = conn.execute(
                "SELECT position, node, value FROM outputs WHERE run_id = ?", (run_id,)
            ).fetchall()
            outs = []
            for n, r in enumerate(rows):
                with self._reading(run_id, f"outputs[{n}]"):
                    outs.append(Output(tuple(int(p) for p in json.loads(r[0])), r[1], bytes(r[2])))
            return sorted(outs, key=lambda o: o.position)

        return await self._file.read(q)

    async def context(self, run_id: str) -> RunContext | None:
        def q(conn: sqlite3.Connection) -> RunContext | None:
            row = conn.execute(
                "SELECT context, version FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            with self._reading(run_id, "context"):
                if not isinstance(row[1], int):
                    raise ValueError("version")
                return RunContext(bytes(row[0]), row[1], _contributions(conn, run_id))

        return await self._file.read(q)

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        def q(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT data FROM collected WHERE run_id = ? AND key = ?", (run_id, key)
            )
            return [bytes(r[0]) for r in rows]

        return await self._file.read(q)

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        def q(conn: sqlite3.Connection) -> list[ErrorRecord]:
            rows = conn.execute(
                "SELECT node, item_id, attempt, kind, message, at, traceback, handled"
                " FROM errors WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
            return [
                ErrorRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows
            ]

        return await self._file.read(q)

    async def node_load(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Items not yet done per node, as (queued, in flight); a failed run's kept items
        (waiting for a retry) are not counted."""

        def q(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
            rows = conn.execute(
                "SELECT node, sum(state != 'leased'), sum(state = 'leased') FROM items"
                " WHERE run_id = ? AND state != 'failed' GROUP BY node",
                (run_id,),
            ).fetchall()
            return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

        return await self._file.read(q)

    async def metrics(self, run_id: str) -> RunMetrics:
        def q(conn: sqlite3.Connection) -> RunMetrics:
            row = conn.execute(
                "SELECT done, failed, retried FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return RunMetrics()
            counts = dict(
                conn.execute(
                    "SELECT state = 'leased', count(*) FROM items WHERE run_id = ?"
                    " AND state != 'failed'"
                    " GROUP BY state = 'leased'",
                    (run_id,),
                ).fetchall()
            )
            per_node = {
                r[0]: NodeMetrics(r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT node, count, total, max FROM node_metrics WHERE run_id = ?", (run_id,)
                )
            }
            return RunMetrics(
                done=row[0],
                failed=row[1],
                retried=row[2],
                in_flight=counts.get(1, 0),
                queued=counts.get(0, 0),
                per_node=per_node,
            )

        return await self._file.read(q)

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        deadline = trio.current_time() + wait
        nap = 0.005
        while True:
            with trio.CancelScope(shield=True):  # leases taken are never dropped by a cancel
                got, next_due = await self._file.write(
                    lambda conn: self._take(conn, queue, worker_id, limit, lease_seconds)
                )
            remaining = deadline - trio.current_time()
            if got or remaining <= 0:
                return got
            pause = min(nap, remaining)
            if next_due is not None:
                pause = min(pause, max(0.0, next_due - time.time()))
            if self._local_change is None:
                self._local_change = trio.Event()
            event = self._local_change
            with trio.move_on_after(pause):
                await event.wait()
            nap = min(nap * 2, 0.1)

    def _take(
        self,
        conn: sqlite3.Connection,
        queue: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
    ) -> tuple[list[Lease], float | None]:
        now = time.time()
        rows = conn.execute(
            "SELECT i.run_id, i.item_id, i.node, i.payload, i.attempt, i.last_error, i.expired,"
            " r.status, r.deadline, r.version"
            " FROM items i JOIN runs r ON r.run_id = i.run_id"
            " WHERE i.queue = ? AND i.state = 'queued' AND i.due <= ?"
            " AND r.status IN ('pending', 'running') ORDER BY i.due, i.seq LIMIT ?",
            (queue, now, limit),
        ).fetchall()
        out: list[Lease] = []
        leased: list[tuple[str, int, float, str, str]] = []
        timed_out: set[str] = set()
        started: set[str] = set()
        tokens = next_value(conn, "token", len(rows)) if rows else 0  # one update for all
        contexts: dict[str, RunContext | None] = {}

        def of_run(run_id: str, version: int) -> RunContext | None:
            """The run's context, read once for all its leases (a big base is not copied
            per lease); None if its base is not bytes (garbled)."""
            if run_id not in contexts:
                base = _base_value(conn, run_id)
                contexts[run_id] = (
                    RunContext(base, version, _contributions(conn, run_id))
                    if isinstance(base, bytes)
                    else None
                )
            return contexts[run_id]

        for k, r in enumerate(rows):
            run_id = r["run_id"]
            if run_id in timed_out:
                continue
            bad = unreadable_column(r, _LEASED_COLUMNS)
            context = of_run(run_id, r["version"]) if bad is None else None
            if bad is None and context is None:
                bad = "context"
            if bad is not None:  # fail that run alone; the queue goes on
                message = unreadable(run_id, bad)
                set_run(
                    conn,
                    run_id,
                    now,
                    status=RunStatus.FAILED,
                    error=message,
                    error_kind=UNREADABLE_KIND,
                    pending=0,
                )
                timed_out.add(run_id)
                continue
            if r["deadline"] is not None and now > r["deadline"]:
                err = ErrorRecord(
                    r["node"], r["item_id"], r["attempt"], "timeout", DEADLINE_PASSED, now
                )
                add_error(conn, run_id, err)
                set_run(
                    conn,
                    run_id,
                    now,
                    status=RunStatus.FAILED,
                    error=err.message,
                    error_kind="timeout",
                    pending=0,
                )
                timed_out.add(run_id)
                continue
            if r["status"] == "pending" and run_id not in started:
                set_run(conn, run_id, now, status=RunStatus.RUNNING)
                started.add(run_id)
            token = tokens + k
            leased.append((worker_id, token, now + lease_seconds, run_id, r["item_id"]))
            out.append(
                Lease(
                    run_id=run_id,
                    item_id=r["item_id"],
                    node=r["node"],
                    payload=bytes(r["payload"]),
                    attempt=r["attempt"],
                    worker_id=worker_id,
                    token=token,
                    deadline=now + lease_seconds,
                    last_error=r["last_error"],
                    expired=bool(r["expired"]),
                    context=context,
                    run_deadline=math.inf if r["deadline"] is None else r["deadline"],
                )
            )
        if leased:
            conn.executemany(
                "UPDATE items SET state = 'leased', worker_id = ?, token = ?, deadline = ?"
                " WHERE run_id = ? AND item_id = ?",
                leased,
            )
        next_due: float | None = None
        if not out:
            row = conn.execute(
                "SELECT min(due) FROM items WHERE queue = ? AND state = 'queued'"
                " AND typeof(due) IN ('integer', 'real')",
                (queue,),
            ).fetchone()
            next_due = row[0]
        return out, next_due

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        def tx(conn: sqlite3.Connection) -> list[bool]:
            now = time.time()
            return [
                conn.execute(
                    "UPDATE items SET deadline = ? WHERE run_id = ? AND item_id = ?"
                    " AND state = 'leased' AND token = ?",
                    (now + lease_seconds, le.run_id, le.item_id, le.token),
                ).rowcount
                == 1
                for le in leases
            ]

        return await self._file.write(tx)

    @staticmethod
    def _check(conn: sqlite3.Connection, lease: Lease) -> tuple[CommitResult | None, sqlite3.Row]:
        run = conn.execute(
            "SELECT status, version, pending, queue, EXISTS (SELECT 1 FROM items"
            " WHERE run_id = ? AND item_id = ? AND state = 'leased' AND token = ?) AS held"
            " FROM runs WHERE run_id = ?",
            (lease.run_id, lease.item_id, lease.token, lease.run_id),
        ).fetchone()
        if run is None or RunStatus(run["status"]).finished:
            return CommitResult.INACTIVE, run
        return (None if run["held"] else CommitResult.LOST), run

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        result, _ = await self.commit_and_lease(lease, plan, limit=0, lease_seconds=0.0)
        return result

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        def tx(conn: sqlite3.Connection) -> tuple[CommitResult, list[Lease]]:
            bad, run = self._check(conn, lease)
            if bad is not None:
                return bad, []
            pending = run["pending"]
            if type(pending) is not int or pending < 1:  # the committing item is one of them
                raise UnreadableDataError("pending")
            # merge first: if it raises, nothing is applied
            write = context_write(
                plan,
                lease.item_id,
                run["version"],
                lambda: _base(conn, lease.run_id),  # read only to merge a stale update
                _Stored(conn, lease.run_id).get,
            )
            made = self._apply(conn, lease, plan, run["queue"], pending, write)
            # Only a commit that made items ready leases here: a lease costs this
            # transaction more than its share of a batched `lease`, which the worker's
            # lease loop does when a commit made nothing (a fan-out branch, say).
            if min(limit, made) <= 0:
                return CommitResult.COMMITTED, []
            got, _ = self._take(conn, run["queue"], lease.worker_id, limit, lease_seconds)
            return CommitResult.COMMITTED, got

        try:
            result = await self._file.write(tx)
        except UnreadableDataError as e:  # its savepoint undid the step: fail the run alone
            await self.fail_run(lease.run_id, unreadable_error(lease, e.what))
            return CommitResult.INACTIVE, []
        self._wake()
        return result

    def _apply(
        self,
        conn: sqlite3.Connection,
        lease: Lease,
        plan: CommitPlan,
        queue: str,
        pending: int,
        write: ContextWrite | None,
    ) -> int:
        """Apply a commit's effects; how many items it made ready (not delayed)."""
        now = time.time()
        run_id = lease.run_id
        cols: dict[str, object] = {}
        counters: list[str] = []
        if plan.failure is None:  # a failing item is kept for `retry_run` (see `set_run`)
            conn.execute(
                "DELETE FROM items WHERE run_id = ? AND item_id = ?", (run_id, lease.item_id)
            )
        if plan.handled:
            for e in plan.handled:
                add_error(conn, run_id, e)
            conn.execute(
                "UPDATE runs SET failed = failed + ? WHERE run_id = ?", (len(plan.handled), run_id)
            )
        conn.execute(
            "INSERT INTO node_metrics VALUES (?, ?, 1, ?, ?) ON CONFLICT (run_id, node) DO UPDATE"
            " SET count = count + 1, total = total + excluded.total,"
            " max = max(max, excluded.max)",
            (run_id, lease.node, plan.duration, plan.duration),
        )
        if write is not None:
            if write.base is not None:
                cols["context"] = write.base
                counters.append("version")
            if write.drop:
                conn.executemany(
                    "DELETE FROM contributions WHERE run_id = ? AND key = ?",
                    [(run_id, k) for k in write.drop],
                )
            if write.put is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO contributions VALUES (?, ?, ?)", (run_id, *write.put)
                )
        if plan.collect:
            conn.executemany(
                "INSERT INTO collected VALUES (?, ?, ?)", [(run_id, k, v) for k, v in plan.collect]
            )
        if plan.drop_collected:
            conn.executemany(
                "DELETE FROM collected WHERE run_id = ? AND key = ?",
                [(run_id, k) for k in plan.drop_collected],
            )
        if plan.outputs:
            conn.executemany(
                "INSERT INTO outputs VALUES (?, ?, ?, ?)",
                [(run_id, json.dumps(list(o.position)), o.node, o.value) for o in plan.outputs],
            )
        if plan.failure is not None:
            add_error(conn, run_id, plan.failure)
            set_run(
                conn,
                run_id,
                now,
                add_one=[*counters, "failed"],
                status=RunStatus.FAILED,
                error=plan.failure.message,
                error_kind=plan.failure.kind,
                pending=0,
                **cols,
            )
            return 0
        fired = count_scopes(plan, Scopes(conn, run_id))
        items = [*plan.items, *fired]
        insert_items(conn, run_id, queue, items, now)
        pending = pending - 1 + len(items)
        counters.append("done")
        if pending == 0:
            set_run(
                conn, run_id, now, add_one=counters, status=RunStatus.COMPLETED, pending=0, **cols
            )
        else:
            set_run(conn, run_id, now, add_one=counters, pending=pending, **cols)
        return sum(it.delay <= 0 for it in items)

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        def tx(conn: sqlite3.Connection) -> CommitResult:
            bad, _ = self._check(conn, lease)
            if bad is not None:
                return bad
            now = time.time()
            conn.execute(
                "UPDATE items SET state = 'queued', attempt = attempt + 1, due = ?,"
                " last_error = ?, expired = 0, worker_id = NULL WHERE run_id = ? AND item_id = ?",
                (now + delay, error.message, lease.run_id, lease.item_id),
            )
            add_error(conn, lease.run_id, error)
            conn.execute(
                "UPDATE runs SET retried = retried + 1, updated_at = ? WHERE run_id = ?",
                (now, lease.run_id),
            )
            return CommitResult.COMMITTED

        result = await self._file.write(tx)
        self._wake()
        return result

    async def release(self, lease: Lease) -> CommitResult:
        def tx(conn: sqlite3.Connection) -> CommitResult:
            bad, _ = self._check(conn, lease)
            if bad is not None:
                return bad
            conn.execute(
                "UPDATE items SET state = 'queued', due = ?, worker_id = NULL"
                " WHERE run_id = ? AND item_id = ?",
                (time.time(), lease.run_id, lease.item_id),
            )
            return CommitResult.COMMITTED

        result = await self._file.write(tx)
        self._wake()
        return result

    async def reap(self) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            now = time.time()
            rows = conn.execute(
                "SELECT run_id, item_id, node, attempt, worker_id FROM items"
                " WHERE state = 'leased' AND deadline < ? AND run_id IN (SELECT run_id"
                " FROM runs WHERE status IN ('pending', 'running', 'paused'))",
                (now,),
            ).fetchall()
            for r in rows:
                msg = f"lease expired: worker {r['worker_id']} did not finish in time"
                conn.execute(
                    "UPDATE items SET state = 'queued', attempt = attempt + 1, due = ?,"
                    " last_error = ?, expired = 1, worker_id = NULL"
                    " WHERE run_id = ? AND item_id = ?",
                    (now, msg, r["run_id"], r["item_id"]),
                )
                add_error(
                    conn,
                    r["run_id"],
                    ErrorRecord(
                        r["node"], r["item_id"], r["attempt"], "lease", msg, now, handled=True
                    ),
                )
                conn.execute(
                    "UPDATE runs SET retried = retried + 1 WHERE run_id = ?", (r["run_id"],)
                )
            for run_id, column in garbled_items(conn):  # never leasable: fail that run alone
                message = unreadable(run_id, column)
                set_run(conn, run_id, now, status=RunStatus.FAILED, error=message,
                        error_kind=UNREADABLE_KIND, pending=0)  # fmt: skip
            old = [
                r[0]
                for r in conn.execute(
                    "SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?",
                    (now - self.ttl,),
                )
            ]
            for run_id in old:
                for table in RUN_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - self.worker_ttl,))
            return len(rows)

        n = await self._file.write(tx)
        if n:
            self._wake()
        return n

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        await self._file.write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        )

    async def unregister_worker(self, worker_id: str) -> None:
        await self._file.write(
            lambda conn: conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        )

    async def workers(self) -> list[WorkerInfo]:
        def q(conn: sqlite3.Connection) -> list[WorkerInfo]:
            rows = conn.execute(
                "SELECT worker_id, queue, host, pid, started_at, last_seen, concurrency, graph,"
                " in_flight FROM workers WHERE last_seen >= ? ORDER BY started_at",
                (time.time() - self.worker_ttl,),
            ).fetchall()
            return [WorkerInfo(*tuple(r)) for r in rows]

        return await self._file.read(q)
