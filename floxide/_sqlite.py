"""One SQLite file behind one connection: the layer the checkpoint store and the backend share.

`SqliteFile` opens the file on first use: WAL mode (readers never block the writer), the
owner's `synchronous` setting (FULL syncs every commit to disk, NORMAL survives process
crashes) and a busy timeout. A new, empty file is switched to WAL before its owner's `prepare`
creates its tables; a file that has tables is only read until `prepare` has accepted it, so a
foreign file is left unchanged.

Every call runs on the one connection in a worker thread, one thread call at a time (the
object is its own limiter). Group commit: calls made while a thread call runs are queued, and
the next thread call (started as soon as one returns) takes them all: the reads one by one,
then every write in ONE `BEGIN IMMEDIATE ... COMMIT`, each in its own SAVEPOINT. So concurrent
callers share one thread hop, one lock acquisition and one sync to disk. A write that raises is
rolled back to its savepoint and its caller gets its exception, while the others commit; an
error at COMMIT (or one that ends the transaction) fails every write of the batch, and nothing
of it is stored. A caller cancelled while its call is queued removes it, unrun; once taken into
a thread call, the call completes and its caller waits for it, shielded.

Taking the write lock polls every 50 us to 1 ms while another process holds it (SQLite's own
busy handler sleeps 1, 2, 5, 10 ms... between tries, far longer than another process holds the
lock for a commit), up to the busy timeout.

Errors: an `sqlite3.Error`, or a failure of this layer, reaches the caller as the exception
the owner's `error(exc, doing)` makes (`CheckpointError`, `BackendError`), `doing` being the
call's description (`OPENING` when the file could not be opened); any other exception a call
raises reaches its caller unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import trio

__all__ = ["OPENING", "SqliteFile", "begin_immediate"]

T = TypeVar("T")

OPENING = "opening"
"""What `error` is told a call was doing when the file could not be opened."""

_BUSY_POLL_MIN = 50e-6
_BUSY_POLL_MAX = 0.001
"""Longest pause (s) between two tries to take the write lock that another process holds."""

_READ, _WRITE, _CLOSE = "read", "write", "close"
_QUEUED, _TAKEN, _DONE = "queued", "taken", "done"


def begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """`BEGIN IMMEDIATE`, polling a busy lock every 50 us to 1 ms (in a thread).

    The connection's busy timeout is off while this polls, for at most `busy_timeout`
    seconds, and back afterwards; an error other than SQLITE_BUSY raises at once.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        give_up = time.monotonic() + busy_timeout
        pause = _BUSY_POLL_MIN
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
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


class _Abort(Exception):
    """A batch's transaction cannot go on (raised from its failing request)."""


class _Request(Generic[T]):
    """One call on the connection (a read, a write's body, or closing) queued or running."""

    __slots__ = ("doing", "done", "error", "fn", "kind", "state", "value")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], kind: str, doing: str) -> None:
        self.fn = fn
        self.kind = kind
        self.doing = doing
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


def _nothing(conn: sqlite3.Connection) -> None:
    return None


class SqliteFile:
    """One SQLite file, one connection, group commit (see the module docstring).

    `prepare(conn)` runs once per opening, before anything is written: it checks the file is
    its owner's (raising the owner's error if not) and creates the tables of a new one.
    `error(exc, doing)` makes the owner's exception for a failure. With `closed`, the file is
    closed for good by `close`/`aclose` and later calls raise `closed()`; without, the next
    call opens it again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        error: Callable[[BaseException, str], Exception],
        prepare: Callable[[sqlite3.Connection], object] = _nothing,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 10.0,
        row_factory: Callable[[sqlite3.Cursor, tuple[Any, ...]], object] | None = None,
        closed: Callable[[], Exception] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._error = error
        self._prepare = prepare
        self._row_factory = row_factory
        self._closed_error = closed
        self._closed = False  # closed for good (only with `closed`)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the connection: one thread at a time
        self._token: trio.lowlevel.TrioToken | None = None
        self._queue: list[_Request[Any]] = []
        self._busy = False

    @property
    def queued(self) -> int:
        """Calls waiting for the next thread call."""
        return len(self._queue)

    # -- the calls ----------------------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T], doing: str = "") -> T:
        """Run `fn` on the connection outside a transaction (it may open a read one)."""
        return await self._submit(fn, _READ, doing)

    async def write(self, fn: Callable[[sqlite3.Connection], T], doing: str = "") -> T:
        """Run `fn` inside a `BEGIN IMMEDIATE` transaction, shared with the writes queued
        with it, in its own savepoint: if `fn` raises, only its changes are undone."""
        return await self._submit(fn, _WRITE, doing)

    async def aclose(self) -> None:
        """Close the file once the calls queued before are done."""
        if self._closed_error is not None:
            self._closed = True  # from now on calls fail; those queued still run
        elif self._conn is None and not self._busy:
            return
        await self._submit(_nothing, _CLOSE, "closing")

    async def open(self) -> None:
        """Open the file now, so that a problem with it raises here."""
        await self._submit(_nothing, _READ, OPENING)

    def close(self) -> None:
        """Close the file now (blocking: waits for a thread call in progress)."""
        with self._lock:
            self._close_locked()

    def connection(self) -> sqlite3.Connection:
        """The connection, opened if need be (blocking; for tests and tools)."""
        with self._lock:
            return self._connect()

    # -- the queue (in the trio thread) -------------------------------------------------
    async def _submit(self, fn: Callable[[sqlite3.Connection], T], kind: str, doing: str) -> T:
        """Queue a call on the connection and wait for its result.

        One thread call at a time runs every call queued when it starts (see `_call`); the
        next starts as soon as one returns. A caller cancelled while its call is queued
        removes it (it never runs); once taken, the call completes and its caller waits for
        it, shielded, as for any running thread call.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed and kind is not _CLOSE:
            assert self._closed_error is not None
            raise self._closed_error()
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:  # first call in this trio run
            self._token, self._queue, self._busy = token, [], False
        req: _Request[T] = _Request(fn, kind, doing)
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
        """Take every queued call into one thread call."""
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
                r.fail(self._failure(e, r.doing))
            self._finish(token, batch)

    def _finish(self, token: trio.lowlevel.TrioToken, batch: list[_Request[Any]]) -> None:
        """A thread call returned: wake its callers, start the next."""
        for r in batch:
            r.state = _DONE
            r.done.set()
        if token is self._token:
            self._busy = False
            if self._queue:
                self._start(token)

    # -- the connection (in a thread) ---------------------------------------------------
    def _call(self, batch: list[_Request[Any]]) -> None:
        """Run a batch: each read alone, then every write in one transaction, then a close."""
        with self._lock:
            try:
                writes: list[_Request[Any]] = []
                closing = False
                for r in batch:
                    if r.kind is _READ:
                        self._read(r)
                    elif r.kind is _WRITE:
                        writes.append(r)
                    else:
                        closing = True
                if writes:
                    self._write(writes)
                if closing:
                    self._close_locked()
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
            r.fail(self._failure(e, r.doing) if isinstance(e, sqlite3.Error) else e)
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    def _write(self, batch: list[_Request[Any]]) -> None:
        """One transaction for `batch`; each request in its own savepoint.

        A request that raises is rolled back to its savepoint and gets its exception; the
        others go on and commit. An error that ends the transaction (or fails COMMIT) fails
        every request of the batch: nothing of it was stored.
        """
        try:
            conn = self._connect()
        except BaseException as e:
            for r in batch:
                r.fail(e)
            return
        try:
            begin_immediate(conn, self.busy_timeout)
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
                    r.fail(self._failure(e, r.doing) if isinstance(e, sqlite3.Error) else e)
                    if single or not conn.in_transaction:
                        raise _Abort from e
                    conn.execute("ROLLBACK TO floxide_request")
                if not single:
                    conn.execute("RELEASE floxide_request")
            except (_Abort, sqlite3.Error) as e:
                # the transaction is gone (or cannot go on): nothing of the batch is stored
                cause = e.__cause__ if isinstance(e, _Abort) else e
                self._abort(conn, batch, r, cause or e)
                return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._abort(conn, batch, None, e)

    def _abort(
        self,
        conn: sqlite3.Connection,
        batch: list[_Request[Any]],
        culprit: _Request[Any] | None,
        cause: BaseException,
    ) -> None:
        """Roll the batch's transaction back; every request but `culprit` fails."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for r in batch:
            if r is culprit and r.error is not None:
                continue
            r.value = None
            r.fail(self._failure(cause, r.doing))

    def _failure(self, exc: BaseException, doing: str) -> Exception:
        err = self._error(exc, doing)
        if err.__cause__ is None:
            err.__cause__ = exc
        return err

    def _connect(self) -> sqlite3.Connection:
        """The connection, opened and prepared on first use (the lock is held)."""
        if self._conn is not None:
            return self._conn
        if self._closed:
            assert self._closed_error is not None
            raise self._closed_error()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise self._failure(e, OPENING) from e
        try:
            if self._row_factory is not None:
                conn.row_factory = self._row_factory
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.execute("PRAGMA journal_mode = WAL")  # a new file: WAL from the start
            self._prepare(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException as e:
            conn.close()
            if isinstance(e, sqlite3.Error):
                raise self._failure(e, OPENING) from e
            raise
        self._conn = conn
        return conn

    def _close_locked(self) -> None:
        if self._closed_error is not None:
            self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
