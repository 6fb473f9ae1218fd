"""The Redis backend (coredis, trio-native): many worker processes on many machines.

Every change to a run is one Lua script (create, lease, heartbeat, commit, retry, release,
reap, control, fail), so it is atomic on the server; see `_redis_lua` for the key layout.
Idle workers block on a per-queue wake-up list (`BLPOP`), never sleep-poll; the wait is
bounded by the next delayed retry. Waiting for a run blocks on its `done` list. Finished
runs expire after `ttl` seconds. Keys live under `prefix` (several deployments can share a
server). Redis Cluster is not supported (the scripts compute their keys). Run ids are
escaped where keys and queue members hold them (`_rid`), so every run id keeps its own keys.

Join scopes are counted inside the commit script, so concurrent commits of one fan-out
never contend. A step that changed the context commits optimistically: the script writes
it only if the stored context is still the version the step read; otherwise the step's
context is merged into the fresh one (the context's `merge`) and the commit sent again.

Connections: inside `async with backend.connected():` operations share one connection pool (workers
and the orchestrator hold one while they run); outside it, each operation opens its own.
Scripts, the hot path, go straight to one pooled connection held for the whole block
(`BaseConnection.create_request`, multiplexed as coredis multiplexes its own commands): the
client's per-command layers (argument checks, retry wrappers, telemetry, pool checkout)
cost more than the round trip itself. Blocking waits (`BLPOP`, `BLMOVE`) keep to the client,
which gives them connections of their own.

Why over 700 lines: this is the whole `Backend` protocol for one engine, one method per
operation, each a thin call of its script; the URL (`_redis_url`), the key escaping
(`_redis_keys`) and the scripts (`_redis_lua`) already live apart.
"""

from __future__ import annotations

import contextvars
import json
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.commands.script import Script
from coredis.connection import BaseConnection

from floxide._errors import BackendError, BackendUnreachableError, UnreadableDataError
from floxide.backends import _redis_lua as lua
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
    unreadable,
    unreadable_record,
)
from floxide.backends._redis_keys import rid as _rid
from floxide.backends._redis_keys import unrid as _unrid
from floxide.backends._redis_url import TlsOptions, parse_redis_url
from floxide.backends._registry import masked_url

__all__ = ["RedisBackend"]

T = TypeVar("T")
_LOST = (
    coredis.exceptions.ConnectionError,
    ConnectionError,
    socket.gaierror,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)
"""A connection lost or refused (coredis' streams closed under it included)."""
_REDIS_ERRORS = (coredis.exceptions.RedisError, *_LOST)
"""What counts as the server failing (a plain TimeoutError raised by a caller does not)."""
_Client = coredis.Redis[bytes]
_SCRIPT_ATTEMPTS = 3
"""Tries of a script on connection errors (as coredis' own default retry policy: 2 retries)."""
_NO_DELAY = repr(0.0)
"""A new item's delay when it has none (one string for all of a fan-out's items)."""
_VALUE, _BASE = 4, 5
"""Where COMMIT's arguments hold the context and its base version (rewritten on a conflict)."""


class _Session:
    """One `connected()` block: its client, and the connection its scripts are sent on.

    The connection is checked out of the client's pool for the whole block, so the pool
    never hands it to a blocking command (whose reply would hold up the scripts behind it).
    """

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.conn: BaseConnection | None = None
        self._lock = trio.Lock()

    async def connection(self) -> BaseConnection:
        conn = self.conn
        if conn is not None and conn.usable:
            return conn
        async with self._lock:
            conn = self.conn
            if conn is None or not conn.usable:
                pool = self.client.connection_pool
                if conn is not None:
                    pool.release(conn)  # an unusable connection is dropped, not pooled
                    self.conn = None
                conn = self.conn = await pool.get_connection()
            return conn

    def drop(self, conn: BaseConnection) -> None:
        """Forget `conn` (lost): the next script gets a fresh connection."""
        if self.conn is conn:
            self.client.connection_pool.release(conn)
            self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.client.connection_pool.release(self.conn)
            self.conn = None


def _field(h: dict[bytes, bytes], name: bytes, parse: Callable[[bytes | None], T]) -> T:
    """Field `name` of hash `h`, read by `parse`; `UnreadableDataError` if it cannot be."""
    try:
        return parse(h.get(name))
    except (ValueError, UnicodeDecodeError):
        raise UnreadableDataError(name.decode()) from None


def _s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


def _f(v: bytes | str | None) -> float | None:
    text = _s(v)
    return float(text) if text else None


class RedisBackend:
    """Backend on a Redis 7 server (`redis://HOST:PORT/DB?prefix=floxide&ttl=SECONDS`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        url: str | None = None,
        password: str | None = None,
        username: str | None = None,
        prefix: str = "floxide",
        ttl: float = 7 * 86400,
        worker_ttl: float = 30.0,
        connect_timeout: float = 5.0,
        tls: TlsOptions | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        scheme = "redis" if tls is None else "rediss"
        self.url = masked_url(url or f"{scheme}://{host}:{port}/{db}")
        self._ssl = None if tls is None else tls.context()
        self._password = password
        self._username = username
        self.prefix = prefix
        self.ttl = ttl
        self.worker_ttl = worker_ttl
        self.connect_timeout = connect_timeout
        self._session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
            f"floxide_redis_{id(self)}", default=None
        )
        self._scripts: dict[str, Script[bytes]] = {
            name: Script(script=getattr(lua, name).encode())
            for name in (
                "CREATE",
                "LEASE",
                "HEARTBEAT",
                "COMMIT",
                "RETRY",
                "RELEASE",
                "REAP",
                "CONTROL",
                "FAIL",
                "COUNTS",
                "RETRY_RUN",
            )
        }

    @classmethod
    def from_url(cls, url: str, *, ttl: float = 7 * 86400) -> RedisBackend:
        """A backend for a `redis://` or `rediss://` URL (see `_redis_url`)."""
        target = parse_redis_url(url)
        return cls(
            target.host,
            target.port,
            target.db,
            url=target.url,  # shown in errors and logs: no password
            password=target.password,
            username=target.username,
            prefix=target.prefix,
            ttl=ttl,
            tls=target.tls,
        )

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, prefix={self.prefix!r})"

    # -- connections --------------------------------------------------------------------
    def _new_client(self) -> _Client:
        return coredis.Redis(
            self.host,
            self.port,
            self.db,
            username=self._username,
            password=self._password,
            connect_timeout=self.connect_timeout,
            decode_responses=False,
            ssl_context=self._ssl,
        )

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Share one connection pool among the operations of this task and its children."""
        if self._session.get() is not None:
            yield
            return
        async with self._wrap("connect"), self._new_client() as client:
            session = _Session(client)
            token = self._session.set(session)
            try:
                yield
            finally:
                self._session.reset(token)
                session.close()

    @asynccontextmanager
    async def _wrap(self, what: str) -> AsyncIterator[None]:
        """Redis and socket errors become `BackendError`; coredis' task-group wrapping of
        any other single exception is removed, so callers see what they raised."""
        try:
            yield
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            cancelled = [e for e in leaves if isinstance(e, trio.Cancelled)]
            if cancelled:  # cancelled while coredis' tasks ran: only that gets through
                raise cancelled[0] from None
            redis_errs = [e for e in leaves if isinstance(e, _REDIS_ERRORS)]
            if redis_errs and len(redis_errs) == len(leaves):
                raise self._error(what, redis_errs[0]) from group
            if len(leaves) == 1:
                raise leaves[0] from leaves[0].__cause__
            raise
        except _REDIS_ERRORS as e:
            await trio.lowlevel.checkpoint_if_cancelled()  # lost because we were cancelled
            raise self._error(what, e) from e

    def _error(self, what: str, e: BaseException) -> BackendError:
        if isinstance(e, (*_LOST, OSError)):
            return BackendUnreachableError(self._describe(what, e))
        return BackendError(self._describe(what, e))

    def _describe(self, what: str, e: BaseException) -> str:
        errors = coredis.exceptions
        if isinstance(e, errors.AuthenticationRequiredError):
            return (
                f"Redis at {self.url} needs a password ({what}): "
                "give it in the URL, redis://USER:PASSWORD@HOST:PORT/DB"
            )
        if isinstance(e, errors.AuthenticationError):
            return f"Redis at {self.url} refused the user or password ({what})"
        if isinstance(e, errors.AuthorizationError):
            return f"Redis at {self.url} does not allow this user to {what}: {e}"
        if isinstance(e, (*_LOST, OSError)):
            tls = _tls_cause(e)
            why = f"TLS: {tls}" if tls is not None else f"{type(e).__name__}: {e}"
            return f"Redis at {self.url} is unreachable ({what}): {why}"
        return f"Redis at {self.url} failed ({what}): {type(e).__name__}: {e}"

    @asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[_Client]:
        session = self._session.get()
        if session is not None:
            async with self._wrap(what):
                yield session.client
            return
        async with self._wrap(what), self._new_client() as fresh:
            yield fresh

    async def _script(self, name: str, args: Sequence[Any]) -> Any:
        """Run script `name` (EVALSHA, loading it first if the server lacks it)."""
        session = self._session.get()
        if session is None:
            async with self.connected():
                return await self._script(name, args)
        script = self._scripts[name]
        ttl = max(1, int(self.ttl * 1000))
        for attempt in range(1, _SCRIPT_ATTEMPTS + 1):
            conn: BaseConnection | None = None
            try:
                conn = await session.connection()
                try:
                    return await conn.create_request(
                        b"EVALSHA", script.sha, 0, self.prefix, ttl, *args, decode=False
                    )
                except coredis.exceptions.NoScriptError:  # a new or flushed server
                    await conn.create_request(b"SCRIPT LOAD", script.script, decode=False)
                    return await conn.create_request(
                        b"EVALSHA", script.sha, 0, self.prefix, ttl, *args, decode=False
                    )
            except _LOST as e:
                await trio.lowlevel.checkpoint_if_cancelled()  # lost because we were cancelled
                if conn is not None:
                    session.drop(conn)
                if attempt == _SCRIPT_ATTEMPTS:
                    raise self._error(name.lower(), e) from e
                await trio.sleep(0.01)
            except _REDIS_ERRORS as e:
                raise self._error(name.lower(), e) from e
        raise AssertionError("unreachable")

    @contextmanager
    def _reading(self, run_id: str, what: str) -> Iterator[None]:
        """Stored `what` of a run that cannot be read becomes one `BackendError` naming both."""
        try:
            yield
        except (ValueError, TypeError, UnicodeDecodeError, AttributeError):
            raise UnreadableDataError(what, f"{unreadable(run_id, what)} (in {self.url})") from None

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def aclose(self) -> None:
        return None

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        args: list[Any] = [
            _rid(run.run_id),
            run.workflow,
            run.queue,
            run.fingerprint,
            run.input,
            run.context,
            "" if run.deadline is None else repr(run.deadline),
            len(run.items),
        ]
        for it in run.items:
            args += [it.item_id, it.node, it.payload, it.attempt, repr(it.delay)]
        result = _s(await self._script("CREATE", args))
        if result == "exists":
            raise BackendError(f"run {run.run_id!r} already exists in {self.url}")

    def _record(self, run_id: str, h: dict[bytes, bytes]) -> RunRecord:
        """The run record in hash `h`; a record that cannot be read shows the run failed,
        naming the field (the scripts fail it for good when a worker meets it)."""
        try:
            return RunRecord(
                run_id=run_id,
                workflow=_field(h, b"workflow", _s),
                queue=_field(h, b"queue", _s),
                fingerprint=_field(h, b"fingerprint", _s),
                status=_field(h, b"status", lambda v: RunStatus(_s(v))),
                input=h.get(b"input", b""),
                created_at=_field(h, b"created_at", _f) or 0.0,
                updated_at=_field(h, b"updated_at", _f) or 0.0,
                finished_at=_field(h, b"finished_at", _f),
                deadline=_field(h, b"deadline", _f),
                error=_field(h, b"error", _s) or None,
                error_kind=_field(h, b"error_kind", _s) or None,
                pending=_field(h, b"pending", lambda v: int(_s(v) or 0)),
            )
        except UnreadableDataError as e:
            workflow = h.get(b"workflow", b"?").decode(errors="replace")
            return unreadable_record(run_id, e.what, workflow)

    _FIELDS = (
        b"workflow",
        b"queue",
        b"fingerprint",
        b"status",
        b"input",
        b"created_at",
        b"updated_at",
        b"finished_at",
        b"deadline",
        b"error",
        b"error_kind",
        b"pending",
    )

    async def _get(self, c: _Client, run_id: str) -> RunRecord | None:
        values = await c.hmget(self._k("run", _rid(run_id)), self._FIELDS)
        h = {k: v for k, v in zip(self._FIELDS, values, strict=True) if v is not None}
        if not h.get(b"status"):
            return None
        return self._record(run_id, h)

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with self._conn("get run") as c:
            return await self._get(c, run_id)

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        async with self._conn("list runs") as c:
            ids = await c.zrevrange(self._k("runs"), 0, -1)
            out: list[RunRecord] = []
            gone: list[bytes] = []
            for raw in ids:
                if not isinstance(raw, bytes):
                    continue
                rec = await self._get(c, _unrid(_s(raw)))
                if rec is None:
                    gone.append(raw)
                elif queue is None or rec.queue == queue:
                    out.append(rec)
            if gone:
                await c.zrem(self._k("runs"), gone)
            return out

    async def control(self, run_id: str, action: str) -> RunRecord:
        if action not in ("cancel", "pause", "resume"):
            raise ValueError(f"unknown run action {action!r} (cancel, pause or resume)")
        if _s(await self._script("CONTROL", [_rid(run_id), action])) == "missing":
            raise KeyError(run_id)
        rec = await self.get_run(run_id)
        if rec is None:
            raise KeyError(run_id)
        return rec

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        args = [
            _rid(run_id),
            error.node,
            error.item_id,
            error.attempt,
            error.kind,
            error.message,
            error.traceback or "",
        ]
        return bool(await self._script("FAIL", args))

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        args = [_rid(run_id), "" if deadline is None else repr(deadline)]
        if _s(await self._script("RETRY_RUN", args)) == "missing":
            raise KeyError(run_id)
        rec = await self.get_run(run_id)
        if rec is None:
            raise KeyError(run_id)
        return rec

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        with trio.move_on_after(timeout):
            async with self._conn("wait") as c:
                done = self._k("run", _rid(run_id), "done")
                if not await c.exists([done]):
                    await c.blmove(
                        done,
                        done,
                        coredis.PureToken.LEFT,
                        coredis.PureToken.RIGHT,
                        timeout=max(timeout, 0.01),
                    )
        return await self.get_run(run_id)

    async def outputs(self, run_id: str) -> list[Output]:
        async with self._conn("outputs") as c:
            raws = await c.lrange(self._k("run", _rid(run_id), "outputs"), 0, -1)
        outs = []
        for n, raw in enumerate(raws):
            with self._reading(run_id, f"outputs[{n}]"):
                pos, node, value = json.loads(raw)
                outs.append(Output(tuple(int(p) for p in pos), str(node), value.encode()))
        return sorted(outs, key=lambda o: o.position)

    async def context(self, run_id: str) -> RunContext | None:
        async with self._conn("context") as c:
            data, version = await c.hmget(self._k("run", _rid(run_id)), [b"context", b"version"])
        if data is None:
            return None
        with self._reading(run_id, "version"):
            return RunContext(data, int(_s(version) or 0))

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        async with self._conn("collected") as c:
            return list(await c.lrange(self._k("run", _rid(run_id), "col", key), 0, -1))

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        async with self._conn("errors") as c:
            raws = await c.lrange(self._k("run", _rid(run_id), "errors"), 0, -1)
        out = []
        for n, raw in enumerate(raws):
            with self._reading(run_id, f"errors[{n}]"):
                node, item, attempt, kind, msg, at, *more = json.loads(raw)
                tb, handled = [*more, "", 0][:2]
                out.append(
                    ErrorRecord(
                        node, item, int(attempt), kind, msg, float(at), tb or None, bool(handled)
                    )
                )
        return out

    async def metrics(self, run_id: str) -> RunMetrics:
        rid = _rid(run_id)
        async with self._conn("metrics") as c:
            values = await c.hmget(self._k("run", rid), [b"done", b"failed", b"retried", b"status"])
            if values[0] is None:
                return RunMetrics()
            raw = await c.hgetall(self._k("run", rid, "metrics"))
        leased, queued = 0, 0
        if _s(values[3]) != RunStatus.FAILED:  # a failed run's kept items wait for a retry
            leased, queued = await self._script("COUNTS", [rid])
        per: dict[str, dict[str, float]] = {}
        with self._reading(run_id, "metrics"):
            for k, v in raw.items():
                node, _, field = _s(k).rpartition("|")
                per.setdefault(node, {})[field] = float(_s(v))
            return RunMetrics(
                done=int(_s(values[0]) or 0),
                failed=int(_s(values[1]) or 0),
                retried=int(_s(values[2]) or 0),
                in_flight=int(leased),
                queued=int(queued),
                per_node={
                    n: NodeMetrics(int(m.get("count", 0)), m.get("total", 0.0), m.get("max", 0.0))
                    for n, m in per.items()
                },
            )

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        deadline = trio.current_time() + wait
        wake = self._k("q", queue, "wake")
        while True:
            with trio.CancelScope(shield=True):
                raw = await self._script("LEASE", [queue, worker_id, limit, repr(lease_seconds)])
            leases = _leases(raw)
            remaining = deadline - trio.current_time()
            if leases or remaining <= 0:
                return leases
            pause = remaining
            next_due = _f(raw[0])
            if next_due is not None:
                pause = min(pause, max(0.01, next_due - time.time()))
            async with self._conn("wait for work") as c:
                await c.blpop([wake], timeout=max(pause, 0.01))

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        if not leases:
            return []
        args: list[Any] = [repr(lease_seconds)]
        for le in leases:
            args += [_rid(le.run_id), le.item_id, le.token]
        return [bool(x) for x in await self._script("HEARTBEAT", args)]

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        result, _ = await self.commit_and_lease(lease, plan, limit=0, lease_seconds=0.0)
        return result

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        update = plan.context
        mode, value, base = "0", b"", ""
        if update is not None:
            mode = "1" if update.merge is not None else "2"
            value, base = update.value, str(update.base_version)
        # One argument list, built once (a 100,000-item fan-out's has 500,000 entries).
        argv: list[Any] = [_rid(lease.run_id), lease.item_id, lease.token, mode, value, base]
        argv += [lease.node, repr(plan.duration)]
        opened = plan.open_scope
        if opened is None:
            argv += ["0", "", 0, ""]
        else:
            fired = [[f.item_id, f.node, f.payload.decode()] for f in opened.fired]
            argv += ["1", opened.scope_id, opened.open, json.dumps(fired, ensure_ascii=False)]
        argv.append(len(plan.scopes))
        argv += list(plan.scopes)
        argv.append(len(plan.items))
        for it in plan.items:
            argv += [it.item_id, it.node, it.payload, it.attempt,
                     _NO_DELAY if it.delay == 0 else repr(it.delay)]
        argv.append(len(plan.outputs))
        argv += [
            json.dumps([list(o.position), o.node, o.value.decode()], ensure_ascii=False)
            for o in plan.outputs
        ]
        argv.append(len(plan.collect))
        for key, data in plan.collect:
            argv += [key, data]
        argv.append(len(plan.drop_collected))
        argv += list(plan.drop_collected)
        failure = plan.failure
        argv += [failure.kind, failure.message] if failure is not None else ["", ""]
        argv += [max(limit, 0), repr(lease_seconds), lease.worker_id, len(plan.handled)]
        argv += [_error_entry(e) for e in plan.handled]
        argv += [failure.traceback or "", "1"] if failure is not None else ["", ""]
        while True:
            raw = await self._script("COMMIT", argv)
            if isinstance(raw, list):  # committed, with the leases taken
                return CommitResult.COMMITTED, _leases(raw)
            result = _s(raw)
            if result != "conflict":
                return CommitResult(result), []
            # another step changed the context since this one read it: merge into the fresh one
            assert update is not None and update.merge is not None
            current = await self.context(lease.run_id)
            if current is None:
                return CommitResult.INACTIVE, []
            argv[_VALUE], argv[_BASE] = update.merge(current.data), str(current.version)

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        args = [
            _rid(lease.run_id),
            lease.item_id,
            lease.token,
            repr(delay),
            error.kind,
            error.message,
            error.traceback or "",
        ]
        return CommitResult(_s(await self._script("RETRY", args)))

    async def release(self, lease: Lease) -> CommitResult:
        args = [_rid(lease.run_id), lease.item_id, lease.token]
        return CommitResult(_s(await self._script("RELEASE", args)))

    async def reap(self) -> int:
        return int(await self._script("REAP", [repr(self.worker_ttl)]))

    # -- workers ------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        data = json.dumps(
            [
                info.worker_id,
                info.queue,
                info.host,
                info.pid,
                info.started_at,
                info.last_seen,
                info.concurrency,
                info.graph,
                info.in_flight,
            ]
        )
        async with self._conn("register worker") as c:
            await c.hset(self._k("workers"), {info.worker_id: data})

    async def unregister_worker(self, worker_id: str) -> None:
        async with self._conn("unregister worker") as c:
            await c.hdel(self._k("workers"), [worker_id])

    async def workers(self) -> list[WorkerInfo]:
        async with self._conn("workers") as c:
            raw = await c.hgetall(self._k("workers"))
        now = time.time()
        out = []
        for v in raw.values():
            try:
                out.append(WorkerInfo(*json.loads(v)))
            except (ValueError, TypeError):  # unreadable: the reaper drops it
                continue
        return sorted(
            (w for w in out if now - w.last_seen <= self.worker_ttl), key=lambda w: w.started_at
        )


def _error_entry(e: ErrorRecord) -> str:
    """An error log entry as the scripts' `add_error` writes it."""
    return json.dumps(
        [e.node, e.item_id, e.attempt, e.kind, e.message, e.at, e.traceback or "", int(e.handled)],
        ensure_ascii=False,
    )


def _deadline(v: bytes | str | None) -> float:
    d = _f(v)
    return math.inf if d is None else d


def _leases(raw: list[Any]) -> list[Lease]:
    """The leases in a LEASE (or COMMIT) reply: 13 fields each, after one leading field."""
    return [
        Lease(
            run_id=_unrid(_s(raw[i])),
            item_id=_s(raw[i + 1]),
            node=_s(raw[i + 2]),
            payload=raw[i + 3],
            attempt=int(raw[i + 4]),
            token=int(raw[i + 5]),
            deadline=float(raw[i + 6]),
            last_error=_s(raw[i + 7]) or None,
            expired=_s(raw[i + 8]) == "1",
            worker_id=_s(raw[i + 9]),
            context=RunContext(raw[i + 10], int(raw[i + 11])),
            run_deadline=_deadline(raw[i + 12]),
        )
        for i in range(1, len(raw), 13)
    ]


def _tls_cause(e: BaseException) -> str | None:
    """What a TLS failure behind a connection error said, if one is behind it."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]
