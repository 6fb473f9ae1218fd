"""Connections of the PostgreSQL backend: psycopg's sync API in worker threads, and a
notification listener.

psycopg 3's async connection needs asyncio, floxide runs on trio; so each operation is a
function of one connection run in a worker thread (`trio.to_thread.run_sync`) inside one
transaction, at most `size` at a time (a `trio.CapacityLimiter`, which also bounds the
connections held). A function that raises rolls its transaction back; `Rollback` does so
and returns a value. A deadlock or serialization failure (PostgreSQL rolled the transaction
back) is run again; so is an operation whose connection broke, after reconnecting, for up
to `reconnect_timeout` seconds once the server was reached (a restart); a commit sent again
after its connection broke is fenced by its lease, so it is never applied twice.

`Listener` holds one more connection in a thread of its own, blocked on `LISTEN`, and wakes
the trio tasks waiting for a key ("q:QUEUE" for work, "r:RUN" for a run's end); when the
connection is lost it reconnects and wakes every waiter to look again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import trio
from psycopg import sql

from floxide._errors import BackendError, UnreadableDataError
from floxide.backends._postgres_text import register as register_text
from floxide.backends._postgres_text import unescape

__all__ = [
    "STEP_BY_STEP",
    "AfterCommit",
    "Deferred",
    "Listener",
    "Pool",
    "Rollback",
    "backend_error",
]

T = TypeVar("T")
Conn = psycopg.Connection[Any]

_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
STEP_BY_STEP = "FX001"
"""The SQLSTATE a statement of a group raises when the check `Deferred.settle` left to the
server fails: the group runs again, settled unchecked."""
UNREADABLE = "FX002"
"""The SQLSTATE of the server function `unreadable(what)`, called by a statement that met
a run's garbled `what` (its pending count): in a group, the group runs again call by
call; a call alone fails with `UnreadableDataError` (its run then fails alone)."""
_ATTEMPTS = 20
_GATHER_CHECKPOINTS = 32
"""At most this many checkpoints for a group's leader to wait for more commits."""


class Rollback(Exception):
    """Raised by a transaction function: roll back and return `value`. `clean`: the
    function changed nothing before (no savepoint needed to undo it in a group)."""

    def __init__(self, value: object, *, clean: bool = False) -> None:
        super().__init__()
        self.value = value
        self.clean = clean


class AfterCommit:
    """What a transaction function returns whose result is read once the transaction
    committed (its statements went in one pipeline with the COMMIT): `read(conn)`, on
    the same connection, outside any transaction (it may open one of its own)."""

    def __init__(self, read: Callable[[Conn], Any]) -> None:
        self.read = read


class Deferred:
    """What a grouped call returns when it leaves its updates of rows that every call of
    the group may share to the group's end: `settle` applies those of all such calls of a
    group at once, in the same transaction, and gives each call its result."""

    @staticmethod
    def settle(conn: Conn, calls: list[Deferred], checked: bool) -> list[object] | AfterCommit:
        """When `checked`, `settle` may leave the check that the calls can be settled
        together to a statement sent with the COMMIT, which raises `STEP_BY_STEP` if not
        (the group then runs again, `checked` False); and may return its results as an
        `AfterCommit`."""
        raise NotImplementedError

    @staticmethod
    def settle_alone(conn: Conn, calls: list[Deferred]) -> list[object] | None:
        """`settle` on a connection in autocommit mode, when that can be done without a
        transaction (one statement); else None, having done nothing."""
        return None


class _Redo(Exception):
    """A call of a group must be undone alone: run the group again, with savepoints; or,
    `unchecked`, the check `Deferred.settle` left to the server failed (`STEP_BY_STEP`):
    run the group again, settled unchecked."""

    def __init__(self, *, unchecked: bool = False) -> None:
        super().__init__()
        self.unchecked = unchecked


def backend_error(url: str, exc: BaseException, password: str | None) -> BackendError:
    """One clear `BackendError` for a psycopg failure; the password never appears in it."""
    text = str(exc).strip() or type(exc).__name__
    if password:
        text = text.replace(password, "***")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return BackendError(f"PostgreSQL backend {url}: missing privilege: {text}")
    if isinstance(exc, psycopg.OperationalError):
        return BackendError(f"cannot reach PostgreSQL backend {url}: {text}")
    return BackendError(f"PostgreSQL backend {url} failed: {text}")


class Pool:
    """Connections to one database, each with the backend's schema on its search path."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        *,
        url: str,
        password: str | None,
        size: int = 4,
        connect_timeout: float = 10.0,
        reconnect_timeout: float = 30.0,
        prepare: Callable[[Conn], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.url = url
        self.password = password
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._prepare = prepare
        self._prepared = False
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self._reached = False
        self._closed = False
        self._queued: list[_Slot] = []
        self._leading = False

    def connect(self, *, autocommit: bool = False) -> Conn:
        """A new connection (in the calling thread); `BackendError` when it fails."""
        try:
            conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=int(self.connect_timeout)
            )
            register_text(conn)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute("SET plan_cache_mode TO force_generic_plan")
            conn.prepare_threshold = 0  # every statement prepared on first use
            conn.autocommit = autocommit
        except psycopg.Error as e:
            raise backend_error(self.url, e, self.password) from None
        self._reached = True
        return conn

    def _take(self) -> Conn:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        if self._closed:
            raise BackendError(f"PostgreSQL backend {self.url} is closed")
        return self.connect()

    def _give(self, conn: Conn) -> None:
        with self._lock:
            if not self._closed and not conn.broken:
                self._idle.append(conn)
                return
        conn.close()

    def _call(self, fn: Callable[[Conn], T], alone: bool = False, pipelined: bool = False) -> T:
        started = time.monotonic()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                conn = self._take()
            except BackendError:
                if not self._reached or time.monotonic() - started > self.reconnect_timeout:
                    raise
                time.sleep(min(0.05 * attempt, 0.5))
                continue
            try:
                if not self._prepared and self._prepare is not None:
                    self._prepare(conn)
                    self._prepared = True
                try:
                    if alone:  # `fn` makes its own transactions (autocommit mode)
                        conn.autocommit = True
                        try:
                            return fn(conn)
                        finally:
                            if not conn.broken:
                                conn.autocommit = False
                    if pipelined:  # BEGIN goes with the first statements, COMMIT with the last
                        with conn.pipeline(), conn.transaction():
                            value = fn(conn)
                        if isinstance(value, AfterCommit):
                            return value.read(conn)  # type: ignore[no-any-return]
                        return value
                    with conn.transaction():
                        return fn(conn)
                except Rollback as r:
                    return r.value  # type: ignore[return-value]
            except _RETRIED:
                if attempt == _ATTEMPTS:
                    raise
            except psycopg.Error as e:
                if e.sqlstate == STEP_BY_STEP:
                    raise _Redo(unchecked=True) from None
                if e.sqlstate == UNREADABLE:
                    raise (_Redo() if pipelined else unreadable_data(e)) from None
                if isinstance(e, psycopg.OperationalError) and conn.broken:
                    if time.monotonic() - started > self.reconnect_timeout:
                        raise backend_error(self.url, e, self.password) from None
                    time.sleep(min(0.05 * attempt, 0.5))
                    continue
                raise backend_error(self.url, e, self.password) from None
            finally:
                self._give(conn)
        raise BackendError(f"PostgreSQL backend {self.url}: gave up after {_ATTEMPTS} tries")

    async def run(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn(conn)` in one transaction in a worker thread; its result."""
        return await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter)

    async def run_alone(self, fn: Callable[[Conn], T]) -> T:
        """`run` in autocommit mode: each statement of `fn` its own transaction."""
        return await trio.to_thread.run_sync(self._call, fn, True, limiter=self._limiter)

    async def run_grouped(
        self, fn: Callable[[Conn, bool], T | Deferred], deferred: Deferred | None = None
    ) -> T:
        """`run`, sharing one transaction with the calls queued meanwhile (group commit).

        Each call runs in a savepoint of its own: one that raises (or `Rollback`s) is undone
        alone; a failure of the transaction itself fails every call of the group. Calls wait
        while a group is in flight, so commits of one run, which meet on its row, share one
        COMMIT instead of waiting for each other's. `fn(conn, defer)` may, when `defer`,
        return a `Deferred`: its shared rows are updated at the group's end, once for all
        the group's calls, so other processes' groups wait for them only from there to the
        COMMIT. A call alone in its group runs in autocommit mode: `fn` makes its own
        transaction (or applies itself in one statement). `deferred`: the `Deferred` that
        `fn(conn, True)` would return without a statement, if known; a group of such calls
        only is first offered to its `settle_alone`. Not cancellable once queued.
        """
        slot = _Slot(fn, deferred)
        self._queued.append(slot)
        while not slot.finished:
            if self._leading:  # a group is in flight: wait to be run, or to lead
                await slot.wait()
                continue
            with trio.CancelScope(shield=True):
                await self._lead()
        return slot.result()  # type: ignore[return-value]

    async def _lead(self) -> None:
        """Run the calls queued as one group, settle each, and wake the next leader."""
        self._leading = True
        await self._gather()
        batch, self._queued = self._queued, []
        try:
            try:
                try:
                    outcomes = await self._group(batch, savepoints=False)
                except _Redo as e:
                    if not e.unchecked:
                        raise
                    outcomes = await self._group(batch, savepoints=False, checked=False)
            except _Redo:
                outcomes = await self._group(batch, savepoints=True)
        except BaseException as e:  # the transaction failed: so did every call
            outcomes = [(False, e)] * len(batch)
        for s, (ok, value) in zip(batch, outcomes, strict=True):
            s.settle(ok, value)
        self._leading = False
        if self._queued:
            self._queued[0].wake()  # the next group's leader

    async def _gather(self) -> None:
        """Let the commits ready to run meanwhile join the group: yield until the queue has
        not grown for two checkpoints in a row (at most `_GATHER_CHECKPOINTS`): trio runs
        a batch of woken tasks in either order, so the slots the last group woke may run
        only after the leader's first checkpoint."""
        queued, still = len(self._queued), 0
        for _ in range(_GATHER_CHECKPOINTS):
            await trio.lowlevel.checkpoint()
            still = still + 1 if len(self._queued) == queued else 0
            queued = len(self._queued)
            if still == 2:
                break

    async def _group(
        self, batch: list[_Slot], *, savepoints: bool, checked: bool = True
    ) -> list[tuple[bool, object]]:
        if len(batch) == 1 and not savepoints:  # alone: in autocommit mode (see `fn`)
            alone = batch[0].fn
            value = await trio.to_thread.run_sync(
                self._call, lambda conn: alone(conn, False), True, limiter=self._limiter
            )
            return [(True, value)]
        deferred = [s.deferred for s in batch]
        if checked and not savepoints and all(d is not None for d in deferred):
            calls = [d for d in deferred if d is not None]
            settle_alone = type(calls[0]).settle_alone

            def in_one(conn: Conn) -> list[object] | None:
                try:
                    return settle_alone(conn, calls)
                except psycopg.Error as e:  # one statement: nothing was applied
                    if e.sqlstate == UNREADABLE:
                        return None  # find whose run it is, call by call
                    raise

            settled = await trio.to_thread.run_sync(self._call, in_one, True, limiter=self._limiter)
            if settled is not None:
                return [(True, value) for value in settled]
        run = functools.partial(self._run_group, batch=batch, savepoints=savepoints)
        if not checked:
            run = functools.partial(run, checked=False)
        return await trio.to_thread.run_sync(
            self._call, run, False, not savepoints, limiter=self._limiter
        )

    def _run_group(
        self, conn: Conn, *, batch: list[_Slot], savepoints: bool, checked: bool = True
    ) -> list[tuple[bool, object]]:
        """Run each call of a group, in a savepoint of its own if `savepoints` (else a call
        that must be undone alone raises `_Redo`), then settle the `Deferred` ones (only
        without savepoints, in a group of several); (succeeded, result or exception)."""
        defer = not savepoints and len(batch) > 1
        if not defer:
            return self._each(conn, batch, savepoints=savepoints, defer=False)
        outcomes = self._each(conn, batch, savepoints=False, defer=True)
        waiting = [k for k, (_, value) in enumerate(outcomes) if isinstance(value, Deferred)]
        if waiting:
            calls = [v for k in waiting if isinstance(v := outcomes[k][1], Deferred)]
            try:
                settled = type(calls[0]).settle(conn, calls, checked)
            except (*_RETRIED, psycopg.OperationalError):
                raise
            except Exception:  # a run ended meanwhile, a scope is missing: call by call
                raise _Redo() from None
            if isinstance(settled, AfterCommit):  # read once the group committed
                read = settled.read

                def after(conn: Conn) -> list[tuple[bool, object]]:
                    for k, value in zip(waiting, read(conn), strict=True):
                        outcomes[k] = (True, value)
                    return outcomes

                return AfterCommit(after)  # type: ignore[return-value]
            for k, value in zip(waiting, settled, strict=True):
                outcomes[k] = (True, value)
        return outcomes

    def _each(
        self, conn: Conn, batch: list[_Slot], *, savepoints: bool, defer: bool
    ) -> list[tuple[bool, object]]:
        outcomes: list[tuple[bool, object]] = []
        for slot in batch:
            try:
                if savepoints:
                    with conn.transaction():
                        outcomes.append((True, slot.fn(conn, False)))
                else:
                    outcomes.append((True, slot.fn(conn, defer)))
            except Rollback as r:
                if not (savepoints or r.clean):
                    raise _Redo() from None
                outcomes.append((True, r.value))
            except (*_RETRIED, psycopg.OperationalError) as e:
                if not savepoints or e.sqlstate != UNREADABLE:  # (its class is "F")
                    raise  # the whole group runs again, or fails
                outcomes.append((False, unreadable_data(e)))
            except Exception as e:
                if not savepoints:
                    raise _Redo() from None
                if isinstance(e, psycopg.Error):
                    e = (
                        unreadable_data(e)
                        if e.sqlstate == UNREADABLE
                        else backend_error(self.url, e, self.password)
                    )
                outcomes.append((False, e))
        return outcomes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def unreadable_data(e: psycopg.Error) -> UnreadableDataError:
    """The `UnreadableDataError` of a statement failed by `unreadable(what)` (only ever
    called on a run's pending count)."""
    return UnreadableDataError("pending", f"a run's stored pending count is garbled ({e})")


class _Slot:
    """A call waiting in a group: its function, then its outcome. Its task waits without
    a cancel scope of its own (one per call costs more than the rest of the wait), and
    cannot be cancelled meanwhile (`wait`)."""

    def __init__(self, fn: Callable[[Conn, bool], object], deferred: Deferred | None) -> None:
        self.fn = fn
        self.deferred = deferred
        self.task: trio.lowlevel.Task | None = None
        self.finished = False
        self.ok = False
        self.value: object = None

    async def wait(self) -> None:
        """Sleep until `wake`; a cancellation meanwhile is delivered at the caller's next
        checkpoint, after the call's outcome is known (it is never abandoned)."""
        self.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    def wake(self) -> None:
        if self.task is not None:
            task, self.task = self.task, None
            trio.lowlevel.reschedule(task)

    def settle(self, ok: bool, value: object) -> None:
        self.ok, self.value, self.finished = ok, value, True
        self.wake()

    def result(self) -> object:
        if not self.ok:
            assert isinstance(self.value, BaseException)
            raise self.value
        return self.value


class Listener:
    """Wakes trio tasks on the channel's notifications (payload: the key to wake)."""

    def __init__(self, pool: Pool, channel: str) -> None:
        self.pool = pool
        self.channel = channel
        self._waiters: dict[str, set[trio.Event]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    async def start(self) -> None:
        """Listen (once per trio run); returns when notifications are being received."""
        token = trio.lowlevel.current_trio_token()
        if self._thread is not None and self._thread.is_alive() and self._token is token:
            return
        self._stop.set()
        self._stop = threading.Event()
        conn = await trio.to_thread.run_sync(self._listen)
        self._token = token
        self._thread = threading.Thread(
            target=self._loop, args=(conn, token, self._stop), daemon=True, name="floxide-pg"
        )
        self._thread.start()

    def _listen(self) -> Conn:
        conn = self.pool.connect(autocommit=True)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return conn

    def _loop(
        self, conn: Conn | None, token: trio.lowlevel.TrioToken, stop: threading.Event
    ) -> None:
        try:
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = self._listen()
                        token.run_sync_soon(self._wake_all)  # what came meanwhile was missed
                    for note in conn.notifies(timeout=0.5):
                        token.run_sync_soon(self._wake, unescape(note.payload))
                except (psycopg.Error, BackendError):
                    if conn is not None:
                        conn.close()
                    conn = None
                    stop.wait(0.2)
        except trio.RunFinishedError:
            pass
        finally:
            if conn is not None:
                conn.close()

    def waiter(self, key: str) -> trio.Event:
        """An event set by the next notification of `key` (register before looking)."""
        ev = trio.Event()
        self._waiters.setdefault(key, set()).add(ev)
        return ev

    def forget(self, key: str, ev: trio.Event) -> None:
        got = self._waiters.get(key)
        if got is not None:
            got.discard(ev)
            if not got:
                del self._waiters[key]

    def _wake(self, key: str) -> None:
        if key == "*":
            self._wake_all()
            return
        for ev in self._waiters.pop(key, ()):
            ev.set()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for ev in events:
                ev.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake_all()
