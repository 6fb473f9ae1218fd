"""The SQLite backend: several worker processes on one machine share one database file.

The file is in WAL mode (readers never block the writer) with a busy timeout; every change
is made inside a `BEGIN IMMEDIATE` transaction, so commits from different processes serialize
on the file lock and a step's commit (lease check, context, join state, successors, item done)
is atomic. Taking the lock polls every 50 us to 1 ms while another process holds it (SQLite's
own busy handler sleeps 1, 2, 5, 10 ms... between tries), up to the busy timeout.

Group commit: each backend object has one connection, used by one thread call at a time.
Calls made while one runs are queued, and the next thread call (started as soon as one
returns) takes them all: the reads one by one, then every transaction in ONE `BEGIN
IMMEDIATE ... COMMIT`, each in its own SAVEPOINT. So a worker's concurrent steps share one
thread hop and one lock acquisition. A transaction that raises (a stale lease returns its
result as usual; a failing merge or SQL statement raises) is rolled back to its savepoint and
its caller gets its exception, while the others commit; an error at COMMIT (or one that ends
the transaction) fails every transaction of the batch with `BackendError`, and nothing of it
is stored. A caller cancelled while its call is queued removes it, unrun; once taken into a
thread call, the call completes and its caller waits for it, shielded.

Waiting for work: SQLite has no notifications across processes, so an idle worker re-checks
for ready items with a short, bounded, backing-off wait (5 ms growing to 100 ms, and never
past the next delayed retry's due time); a commit in the same process wakes waiters at once.
Waiting for a run to finish reads its row the same way (5 ms growing to 50 ms): one
indexed read per poll, so a finished run is noticed within 50 ms.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from floxide._errors import BackendError
from floxide._step import DEADLINE_PASSED
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
    ErrorRecord,
    Lease,
    NewItem,
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

__all__ = ["SqliteBackend"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS floxide_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, queue TEXT NOT NULL,
    fingerprint TEXT NOT NULL, status TEXT NOT NULL, input BLOB NOT NULL,
    context BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL, deadline REAL,
    error TEXT, error_kind TEXT, pending INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL, item_id TEXT NOT NULL, queue TEXT NOT NULL, node TEXT NOT NULL,
    payload BLOB NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL, due REAL NOT NULL,
    seq INTEGER NOT NULL, worker_id TEXT, token INTEGER NOT NULL DEFAULT 0,
    deadline REAL NOT NULL DEFAULT 0, last_error TEXT, expired INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, item_id));
CREATE INDEX IF NOT EXISTS items_ready ON items (queue, state, due, seq);
CREATE INDEX IF NOT EXISTS items_leased ON items (state, deadline);
CREATE TABLE IF NOT EXISTS scopes (
    run_id TEXT NOT NULL, scope_id TEXT NOT NULL, open INTEGER NOT NULL, fired BLOB NOT NULL,
    PRIMARY KEY (run_id, scope_id));
CREATE TABLE IF NOT EXISTS collected (
    run_id TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS collected_key ON collected (run_id, key);
CREATE TABLE IF NOT EXISTS outputs (
    run_id TEXT NOT NULL, position TEXT NOT NULL, node TEXT NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outputs_run ON outputs (run_id);
CREATE TABLE IF NOT EXISTS errors (
    run_id TEXT NOT NULL, node TEXT NOT NULL, item_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS errors_run ON errors (run_id);
CREATE TABLE IF NOT EXISTS node_metrics (
    run_id TEXT NOT NULL, node TEXT NOT NULL, count INTEGER NOT NULL,
    total REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (run_id, node));
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, queue TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at REAL NOT NULL, last_seen REAL NOT NULL, concurrency INTEGER NOT NULL);
INSERT OR IGNORE INTO floxide_meta VALUES ('schema', 1), ('token', 0), ('seq', 0);
"""

_RUN_COLS = (
    "run_id, workflow, queue, fingerprint, status, input, created_at, updated_at, "
    "finished_at, deadline, error, error_kind, pending"
)
_ITEM_COLS = "run_id, item_id, node, payload, attempt, last_error, expired"
_RUN_TABLES = ("items", "scopes", "collected", "outputs", "errors", "node_metrics")

_BUSY_POLL_MAX = 0.001
"""Longest pause (s) between two tries to take the write lock that another process holds."""

_RUN_POLL_MAX = 0.05
"""Longest pause (s) between two reads of a run that `wait_run` waits for."""


def _run_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        queue=row["queue"],
        fingerprint=row["fingerprint"],
        status=RunStatus(row["status"]),
        input=bytes(row["input"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        deadline=row["deadline"],
        error=row["error"],
        error_kind=row["error_kind"],
        pending=row["pending"],
    )


def _encode_fired(fired: Sequence[NewItem]) -> bytes:
    return json.dumps([[f.item_id, f.node, f.payload.decode()] for f in fired]).encode()


def _decode_fired(raw: bytes) -> list[NewItem]:
    return [NewItem(i, n, p.encode()) for i, n, p in json.loads(raw)]


class _Scopes:
    """The open join scopes of one run, inside a transaction."""

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id

    def open_count(self, scope_id: str) -> int:
        row = self.conn.execute(
            "SELECT open FROM scopes WHERE run_id = ? AND scope_id = ?", (self.run_id, scope_id)
        ).fetchone()
        if row is None:
            raise BackendError(f"join scope {scope_id!r} of run {self.run_id!r} is missing")
        return int(row[0])

    def set_open(self, scope_id: str, count: int) -> None:
        self.conn.execute(
            "UPDATE scopes SET open = ? WHERE run_id = ? AND scope_id = ?",
            (count, self.run_id, scope_id),
        )

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO scopes VALUES (?, ?, ?, ?)",
            (self.run_id, scope_id, count, _encode_fired(fired)),
        )

    def close(self, scope_id: str) -> Sequence[NewItem]:
        row = self.conn.execute(
            "DELETE FROM scopes WHERE run_id = ? AND scope_id = ? RETURNING fired",
            (self.run_id, scope_id),
        ).fetchone()
        return _decode_fired(bytes(row[0]))


_QUEUED, _TAKEN, _DONE = "queued", "taken", "done"


class _Abort(Exception):
    """A batch's transaction cannot go on (raised from its failing request)."""


class _Request(Generic[T]):
    """One call on the connection (a read, or a transaction's body) queued or running."""

    __slots__ = ("done", "error", "fn", "state", "value", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> None:
        self.fn = fn
        self.write = write
        self.state = _QUEUED
        self.value: T | None = None
        self.error: BaseException | None = None
        self.done = trio.Event()

    def fail(self, error: BaseException) -> None:
        self.error = error

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class SqliteBackend:
    """Backend on one SQLite file (`sqlite:///relative.db` or `sqlite:////abs/path.db`)."""

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
        self._conn: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()
        self._use_lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._queue: list[_Request[Any]] = []
        self._busy = False
        self._local_change: trio.Event | None = None

    # -- plumbing -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        with self._open_lock:
            if self._conn is not None:
                return self._conn
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as e:
                raise BackendError(f"cannot open SQLite backend {self.url}: {e}") from e
            self._conn = conn
            return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection, outside a transaction (reads)."""
        return await self._submit(fn, write=False)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inside a `BEGIN IMMEDIATE` transaction (group commit: see `_call`)."""
        return await self._submit(fn, write=True)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Queue a call on the connection and wait for its result.

        One thread call at a time runs every call queued when it starts (see `_call`); the
        next starts as soon as one returns. A caller cancelled while its call is queued
        removes it (it never runs); once taken, the call completes and its caller waits for
        it, shielded, as for any running thread call.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:  # first call in this trio run
            self._token, self._queue, self._busy = token, [], False
        req: _Request[T] = _Request(fn, write)
        self._queue.append(req)
        if not self._busy:
            self._start(token)
        while req.state is not _DONE:
            if req.state is _TAKEN:
                with trio.CancelScope(shield=True):
                    await req.done.wait()
                continue
            try:
                await req.done.wait()
            except BaseException:
                if req.state is _QUEUED:  # not taken: it never runs
                    self._queue.remove(req)
                    raise
                # taken meanwhile: it runs to the end, and this caller gets its result
        return req.unwrap()

    def _start(self, token: trio.lowlevel.TrioToken) -> None:
        """Take every queued call into one thread call (in the trio thread)."""
        batch, self._queue = self._queue, []
        for r in batch:
            r.state = _TAKEN
        self._busy = True

        def deliver(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._finish, token, batch)

        try:
            trio.lowlevel.start_thread_soon(functools.partial(self._call, batch), deliver)
        except BaseException as e:
            for r in batch:
                r.fail(BackendError(f"SQLite backend {self.url}: cannot start a thread: {e}"))
            self._finish(token, batch)

    def _finish(self, token: trio.lowlevel.TrioToken, batch: list[_Request[Any]]) -> None:
        """A thread call returned (in the trio thread): wake its callers, start the next."""
        for r in batch:
            r.state = _DONE
            r.done.set()
        if token is self._token:
            self._busy = False
            if self._queue:
                self._start(token)

    def _call(self, batch: list[_Request[Any]]) -> None:
        """Run a batch (in a thread): each read alone, then every write in one transaction."""
        with self._use_lock:
            try:
                for r in batch:
                    if not r.write:
                        self._read(r)
                writes = [r for r in batch if r.write]
                if writes:
                    self._run_batch(writes)
            except BaseException as e:  # a bug: no call may be left without an outcome
                for r in batch:
                    if r.error is None:
                        r.fail(e)

    def _read(self, r: _Request[Any]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            r.value = r.fn(conn)
        except BaseException as e:
            r.fail(self._error(e) if isinstance(e, sqlite3.Error) else e)
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    def _run_batch(self, batch: list[_Request[Any]]) -> None:
        """One transaction for `batch`; each request in its own savepoint (in a thread).

        A request that raises is rolled back to its savepoint and gets its exception; the
        others go on and commit. An error that ends the transaction (or fails COMMIT)
        fails every request of the batch with `BackendError`: nothing of it was stored.
        """
        try:
            conn = self._connect()
        except BackendError as e:
            for r in batch:
                r.fail(e)
            return
        try:
            self._begin(conn)
        except sqlite3.Error as e:
            self._abort(conn, batch, None, e)
            return
        single = len(batch) == 1
        for r in batch:
            try:
                if not single:
                    conn.execute("SAVEPOINT floxide_request")
                try:
                    r.value = r.fn(conn)
                except BaseException as e:
                    r.fail(self._error(e) if isinstance(e, sqlite3.Error) else e)
                    if single or not conn.in_transaction:
                        raise _Abort from e
                    conn.execute("ROLLBACK TO floxide_request")
                if not single:
                    conn.execute("RELEASE floxide_request")
            except (_Abort, sqlite3.Error) as e:
                # the transaction is gone (or cannot go on): nothing of the batch is stored
                cause = e.__cause__ if isinstance(e, _Abort) else e
                self._abort(conn, batch, r, cause)
                return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._abort(conn, batch, None, e)
            return

    def _begin(self, conn: sqlite3.Connection) -> None:
        """`BEGIN IMMEDIATE`, polling a busy lock every 50 us to 1 ms (in a thread).

        SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between tries, far longer than
        another process holds the lock for a commit; so the connection's busy timeout is
        off while this polls, for at most that timeout.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            give_up = time.monotonic() + self.busy_timeout
            pause = 50e-6
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                        raise
                    if time.monotonic() + pause > give_up:
                        raise
                time.sleep(pause)
                pause = min(pause * 1.5, _BUSY_POLL_MAX)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def _abort(
        self,
        conn: sqlite3.Connection,
        batch: list[_Request[Any]],
        culprit: _Request[Any] | None,
        cause: BaseException | None,
    ) -> None:
        """Roll the batch's transaction back; every request but `culprit` fails."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        err = self._error(cause) if isinstance(cause, sqlite3.Error) else None
        for r in batch:
            if r is culprit and r.error is not None:
                continue
            r.value = None
            r.fail(err or BackendError(f"SQLite backend {self.url} failed: {cause!r}"))

    def _error(self, e: sqlite3.Error) -> BackendError:
        err = BackendError(f"SQLite backend {self.url} failed: {e}")
        err.__cause__ = e
        return err

    def _wake(self) -> None:
        if self._local_change is not None:
            self._local_change.set()
            self._local_change = None

    def connected(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def aclose(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            with self._open_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        if self._conn is not None:
            await self._run(close)

    @staticmethod
    def _next(conn: sqlite3.Connection, key: str, n: int = 1) -> int:
        row = conn.execute(
            "UPDATE floxide_meta SET value = value + ? WHERE key = ? RETURNING value", (n, key)
        ).fetchone()
        return int(row[0]) - n + 1

    @staticmethod
    def _set_run(
        conn: sqlite3.Connection,
        run_id: str,
        now: float,
        *,
        add_one: Sequence[str] = (),
        **cols: object,
    ) -> None:
        """Set columns of a run (and add one to each counter in `add_one`): one UPDATE."""
        status = cols.get("status")
        if isinstance(status, RunStatus) and status.finished:
            cols["finished_at"] = now
            conn.execute("DELETE FROM items WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM scopes WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM collected WHERE run_id = ?", (run_id,))
        cols["updated_at"] = now
        sets = ", ".join([*(f"{k} = ?" for k in cols), *(f"{k} = {k} + 1" for k in add_one)])
        values = [str(v) if isinstance(v, RunStatus) else v for v in cols.values()]
        conn.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*values, run_id))

    @staticmethod
    def _add_error(conn: sqlite3.Connection, run_id: str, e: ErrorRecord) -> None:
        conn.execute(
            "INSERT INTO errors VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, e.node, e.item_id, e.attempt, e.kind, e.message, e.at),
        )

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
            self._insert_items(conn, run.run_id, run.queue, run.items, now)

        await self._tx(tx)
        self._wake()

    def _insert_items(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        queue: str,
        items: Sequence[NewItem],
        now: float,
    ) -> None:
        if not items:
            return
        seq = self._next(conn, "seq", len(items))
        rows = [
            (
                run_id,
                it.item_id,
                queue,
                it.node,
                it.payload,
                it.attempt,
                "queued",
                now + it.delay,
                seq + k,
            )
            for k, it in enumerate(items)
        ]
        conn.executemany(
            "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        def q(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _run_record(row)

        return await self._run(q)

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        def q(conn: sqlite3.Connection) -> list[RunRecord]:
            sql = f"SELECT {_RUN_COLS} FROM runs"
            args: tuple[str, ...] = ()
            if queue is not None:
                sql += " WHERE queue = ?"
                args = (queue,)
            rows = conn.execute(sql + " ORDER BY created_at DESC", args).fetchall()
            return [_run_record(r) for r in rows]

        return await self._run(q)

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
                self._set_run(
                    conn,
                    run_id,
                    now,
                    status=RunStatus.CANCELLED,
                    error="cancelled",
                    error_kind="cancelled",
                    pending=0,
                )
            elif action == "pause" and status in (RunStatus.PENDING, RunStatus.RUNNING):
                self._set_run(conn, run_id, now, status=RunStatus.PAUSED)
            elif action == "resume" and status is RunStatus.PAUSED:
                self._set_run(conn, run_id, now, status=RunStatus.RUNNING)
            row = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return _run_record(row)

        rec = await self._tx(tx)
        self._wake()
        return rec

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or RunStatus(row["status"]).finished:
                return False
            self._add_error(conn, run_id, error)
            self._set_run(
                conn,
                run_id,
                time.time(),
                status=RunStatus.FAILED,
                error=error.message,
                error_kind=error.kind,
                pending=0,
            )
            return True

        return await self._tx(tx)

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
            outs = [Output(tuple(json.loads(r[0])), r[1], bytes(r[2])) for r in rows]
            return sorted(outs, key=lambda o: o.position)

        return await self._run(q)

    async def context(self, run_id: str) -> RunContext | None:
        def q(conn: sqlite3.Connection) -> RunContext | None:
            row = conn.execute(
                "SELECT context, version FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else RunContext(bytes(row[0]), row[1])

        return await self._run(q)

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        def q(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT data FROM collected WHERE run_id = ? AND key = ?", (run_id, key)
            )
            return [bytes(r[0]) for r in rows]

        return await self._run(q)

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        def q(conn: sqlite3.Connection) -> list[ErrorRecord]:
            rows = conn.execute(
                "SELECT node, item_id, attempt, kind, message, at FROM errors"
                " WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
            return [ErrorRecord(*tuple(r)) for r in rows]

        return await self._run(q)

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

        return await self._run(q)

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        deadline = trio.current_time() + wait
        nap = 0.005
        while True:
            with trio.CancelScope(shield=True):  # leases taken are never dropped by a cancel
                got, next_due = await self._tx(
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
            " r.status, r.deadline, r.context, r.version"
            " FROM items i JOIN runs r ON r.run_id = i.run_id"
            " WHERE i.queue = ? AND i.state = 'queued' AND i.due <= ?"
            " AND r.status IN ('pending', 'running') ORDER BY i.due, i.seq LIMIT ?",
            (queue, now, limit),
        ).fetchall()
        out: list[Lease] = []
        leased: list[tuple[str, int, float, str, str]] = []
        timed_out: set[str] = set()
        started: set[str] = set()
        tokens = self._next(conn, "token", len(rows)) if rows else 0  # one update for all
        for k, r in enumerate(rows):
            run_id = r["run_id"]
            if run_id in timed_out:
                continue
            if r["deadline"] is not None and now > r["deadline"]:
                err = ErrorRecord(
                    r["node"], r["item_id"], r["attempt"], "timeout", DEADLINE_PASSED, now
                )
                self._add_error(conn, run_id, err)
                self._set_run(
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
                self._set_run(conn, run_id, now, status=RunStatus.RUNNING)
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
                    context=RunContext(bytes(r["context"]), r["version"]),
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
                "SELECT min(due) FROM items WHERE queue = ? AND state = 'queued'", (queue,)
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

        return await self._tx(tx)

    @staticmethod
    def _check(conn: sqlite3.Connection, lease: Lease) -> tuple[CommitResult | None, sqlite3.Row]:
        run = conn.execute(
            "SELECT status, context, version, pending, queue, EXISTS (SELECT 1 FROM items"
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
            context = None
            update = plan.context
            if update is not None:  # merge first: if it raises, nothing is applied
                stale = run["version"] != update.base_version and update.merge is not None
                stored = bytes(run["context"])
                context = update.merge(stored) if update.merge and stale else update.value
            made = self._apply(conn, lease, plan, run["queue"], run["pending"], context)
            # Only a commit that made items ready leases here: a lease costs this
            # transaction more than its share of a batched `lease`, which the worker's
            # lease loop does when a commit made nothing (a fan-out branch, say).
            if min(limit, made) <= 0:
                return CommitResult.COMMITTED, []
            got, _ = self._take(conn, run["queue"], lease.worker_id, limit, lease_seconds)
            return CommitResult.COMMITTED, got

        result = await self._tx(tx)
        self._wake()
        return result

    def _apply(
        self,
        conn: sqlite3.Connection,
        lease: Lease,
        plan: CommitPlan,
        queue: str,
        pending: int,
        context: bytes | None,
    ) -> int:
        """Apply a commit's effects; how many items it made ready (not delayed)."""
        now = time.time()
        run_id = lease.run_id
        conn.execute("DELETE FROM items WHERE run_id = ? AND item_id = ?", (run_id, lease.item_id))
        conn.execute(
            "INSERT INTO node_metrics VALUES (?, ?, 1, ?, ?) ON CONFLICT (run_id, node) DO UPDATE"
            " SET count = count + 1, total = total + excluded.total,"
            " max = max(max, excluded.max)",
            (run_id, lease.node, plan.duration, plan.duration),
        )
        cols: dict[str, object] = {}
        counters: list[str] = []
        if context is not None:
            cols["context"] = context
            counters.append("version")
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
            self._add_error(conn, run_id, plan.failure)
            self._set_run(
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
        fired = count_scopes(plan, _Scopes(conn, run_id))
        items = [*plan.items, *fired]
        self._insert_items(conn, run_id, queue, items, now)
        pending = pending - 1 + len(items)
        counters.append("done")
        if pending == 0:
            self._set_run(
                conn, run_id, now, add_one=counters, status=RunStatus.COMPLETED, pending=0, **cols
            )
        else:
            self._set_run(conn, run_id, now, add_one=counters, pending=pending, **cols)
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
            self._add_error(conn, lease.run_id, error)
            conn.execute(
                "UPDATE runs SET retried = retried + 1, updated_at = ? WHERE run_id = ?",
                (now, lease.run_id),
            )
            return CommitResult.COMMITTED

        result = await self._tx(tx)
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

        result = await self._tx(tx)
        self._wake()
        return result

    async def reap(self) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            now = time.time()
            rows = conn.execute(
                "SELECT run_id, item_id, node, attempt, worker_id FROM items"
                " WHERE state = 'leased' AND deadline < ?",
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
                self._add_error(
                    conn,
                    r["run_id"],
                    ErrorRecord(r["node"], r["item_id"], r["attempt"], "lease", msg, now),
                )
                conn.execute(
                    "UPDATE runs SET retried = retried + 1 WHERE run_id = ?", (r["run_id"],)
                )
            old = [
                r[0]
                for r in conn.execute(
                    "SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?",
                    (now - self.ttl,),
                )
            ]
            for run_id in old:
                for table in _RUN_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - self.worker_ttl,))
            return len(rows)

        n = await self._tx(tx)
        if n:
            self._wake()
        return n

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.worker_id,
                    info.queue,
                    info.host,
                    info.pid,
                    info.started_at,
                    info.last_seen,
                    info.concurrency,
                ),
            )
        )

    async def unregister_worker(self, worker_id: str) -> None:
        await self._tx(
            lambda conn: conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        )

    async def workers(self) -> list[WorkerInfo]:
        def q(conn: sqlite3.Connection) -> list[WorkerInfo]:
            rows = conn.execute(
                "SELECT worker_id, queue, host, pid, started_at, last_seen, concurrency"
                " FROM workers WHERE last_seen >= ? ORDER BY started_at",
                (time.time() - self.worker_ttl,),
            ).fetchall()
            return [WorkerInfo(*tuple(r)) for r in rows]

        return await self._run(q)
