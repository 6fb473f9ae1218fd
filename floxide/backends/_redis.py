"""The Redis backend (coredis, trio-native): many worker processes on many machines, on
one Redis server (`redis[s]://`) or a Redis Cluster (`redis[s]+cluster://`).

Every change to a run is one Lua script (create, lease, heartbeat, commit, retry, release,
reap, control, fail), so it is atomic on the server; see `_redis_lua` for the key layout.
Every key a script touches is passed in KEYS, and a run's keys share the hash tag of the
queue shard the run is pinned to (`_redis_keys`): a script touches one slot of a cluster,
and a deployment's queues are spread over `shards` slots. Workers lease from the shards
in turn; idle ones block on the shards' wake-up lists (`BLPOP`), never sleep-poll, and
waiting for a run blocks on its `done` list (on a cluster, on a lane of the node: see
`_POLL`). The wait is bounded by the next delayed retry. Finished runs expire
after `ttl` seconds. Keys live under `prefix` (several deployments can share a server).
Run ids are escaped where keys and queue members hold them (`_rid`), so every run id
keeps its own keys.

A commit of more than `_redis_stage.STAGE_OVER` items sends them first, in slices, to a
staging list that the commit script applies whole (`_redis_stage`): no message holds them
all, and a worker killed while staging changes nothing.

A chain step is one round trip: the commit leases the item it made to the committing
worker (`commit_and_lease`). Join scopes are counted inside the commit script, so
concurrent commits of one fan-out never contend. A step's change to a mergeable context
is stored as its contribution, under its item id with no version check, so concurrent
steps never conflict either (`stores_contributions`; leases carry the run's contributions,
and readers fold them into the base). Any other change commits optimistically: the script
writes it only if the stored context is still the version the step read; otherwise the
step's context is merged into the fresh one (the context's `merge`) and the commit sent
again.

Connections: inside `async with backend.connected():` operations share one client (workers
and the orchestrator hold one while they run); outside it, each operation opens its own.
Scripts go straight to held connections (`_redis_conn`); blocking waits (`BLPOP`, `BLMOVE`)
keep to the client, which gives them connections of their own.

Why over 700 lines: this is the whole `Backend` protocol for one engine, one method per
operation, each a thin call of its script; the URL (`_redis_url`), the keys
(`_redis_keys`), the connections (`_redis_conn`) and the scripts (`_redis_lua`) live apart.
"""

from __future__ import annotations

import contextvars
import json
import math
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.commands.script import Script

from floxide._errors import BackendError, BackendUnreachableError, UnreadableDataError
from floxide.backends import _redis_lua, _redis_lua_ops, _redis_stage
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
    unreadable,
)
from floxide.backends._redis_conn import ClusterSession, Session
from floxide.backends._redis_keys import SEP, Keys
from floxide.backends._redis_keys import rid as _rid
from floxide.backends._redis_keys import unrid as _unrid
from floxide.backends._redis_lane import Lane, Unavailable
from floxide.backends._redis_reply import FIELDS as _FIELDS
from floxide.backends._redis_reply import base_of as _base_of
from floxide.backends._redis_reply import contributions as _contributions
from floxide.backends._redis_reply import describe as _describe
from floxide.backends._redis_reply import error_entry as _error_entry
from floxide.backends._redis_reply import f as _f
from floxide.backends._redis_reply import leases as _leases
from floxide.backends._redis_reply import leaves as _leaves
from floxide.backends._redis_reply import record as _record
from floxide.backends._redis_reply import s as _s
from floxide.backends._redis_url import TlsOptions, parse_redis_url
from floxide.backends._registry import masked_url

__all__ = ["RedisBackend"]

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
_Client = Any
"""`coredis.Redis[bytes]` or `coredis.RedisCluster[bytes]`."""
_SCRIPT_ATTEMPTS = 3
"""Tries of a script on connection errors (as coredis' own default retry policy: 2 retries)."""
_POLL = 0.02
"""On a cluster, how often an idle worker looks at its queue's wake-up list and a waiter at
a run's `done` list when no lane of waits can block on it (`_redis_conn`): a blocking
command cancelled on the cluster client costs its pool a connection for good (coredis drops
it without a placeholder), so the client only polls."""
_PROMOTE_EVERY = 0.05
"""How often (seconds) a worker's commits move due delayed retries to the ready list."""


def _script_text(name: str) -> str:
    text = getattr(_redis_lua, name, None) or getattr(_redis_lua_ops, name)
    assert isinstance(text, str)
    return text


def _node_metrics(raw: dict[bytes, bytes]) -> dict[str, NodeMetrics]:
    """Per-node metrics of a run record: `m|NODE` = "COUNT TOTAL MAX" (see _redis_lua),
    added to those of a run stored by floxide 0.1, which kept them in three fields
    (`m|NODE|count`, `|total`, `|max`, each one number)."""
    per: dict[str, NodeMetrics] = {}
    legacy: dict[str, dict[str, str]] = {}
    for k, v in raw.items():
        if not k.startswith(b"m|"):
            continue
        text = _s(v)
        if " " in text:
            count, total, most = text.split(" ")
            per[_s(k)[2:]] = NodeMetrics(int(count), float(total), float(most))
        else:
            name, _, part = _s(k)[2:].rpartition("|")
            legacy.setdefault(name, {})[part] = text
    for name, parts in legacy.items():
        get = parts.get
        old = NodeMetrics(int(get("count", "")), float(get("total", "")), float(get("max", "")))
        new = per.get(name)
        per[name] = (
            old
            if new is None
            else NodeMetrics(
                old.count + new.count,
                old.total_seconds + new.total_seconds,
                max(old.max_seconds, new.max_seconds),
            )
        )
    return per


class RedisBackend:
    """Backend on a Redis 7 server (`redis://HOST:PORT/DB?prefix=floxide&ttl=SECONDS`)."""

    stores_contributions = True

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
        cluster_nodes: Sequence[tuple[str, int]] = (),
        shards: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.cluster_nodes = tuple(cluster_nodes)
        """Seed nodes of a Redis Cluster (empty: one server)."""
        self.shards = shards if shards is not None else (16 if self.cluster_nodes else 1)
        scheme = "redis" if tls is None else "rediss"
        if self.cluster_nodes:
            seeds = ",".join(f"{h}:{p}" for h, p in self.cluster_nodes)
            default = f"{scheme}+cluster://{seeds}"
        else:
            default = f"{scheme}://{host}:{port}/{db}"
        self.url = masked_url(url or default)
        self._ssl = None if tls is None else tls.context()
        self._password = password
        self._username = username
        self.prefix = prefix
        self.ttl = ttl
        self.worker_ttl = worker_ttl
        self.connect_timeout = connect_timeout
        self._keys = Keys(prefix, self.shards)
        self._queue_of: dict[str, str] = {}
        """Run id (as keys hold it) -> its queue, as leases showed it (bounded)."""
        self._guess: dict[str, str] = {}
        """Queue -> the run last seen at the head of its ready list (one shard)."""
        self._bases: dict[str, tuple[bytes, bytes]] = {}
        """Run id (as keys hold it) -> the (tag, base context) its last lease here gave:
        the scripts leave that base out of the next leases (their HELD; bounded)."""
        self._contributed: dict[str, list[Any]] = {}
        """Run id (as keys hold it) -> the contributions its last lease here gave, as
        [sent, pairs]: the next reply's are read from where they differ (bounded)."""
        self._promoted: dict[int, float] = {}
        """Shard -> when this process last moved its due delayed retries (see COMMIT)."""
        self._session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
            f"floxide_redis_{id(self)}", default=None
        )
        self._scripts: dict[str, Script[bytes]] = {
            name: Script(script=_script_text(name).encode())
            for name in (
                "CREATE",
                "LEASE",
                "HEARTBEAT",
                "COMMIT",
                "RETRY",
                "RELEASE",
                "REAP_SCAN",
                "REAP_RUN",
                "REAP_WORKERS",
                "WAKE",
                "CONTROL",
                "FAIL",
                "COUNTS",
                "NODE_COUNTS",
                "RETRY_RUN",
                "CONTEXT",
                "STAGE",
            )
        }

    @classmethod
    def from_url(cls, url: str, *, ttl: float = 7 * 86400) -> RedisBackend:
        """A backend for a `redis[s]://` or `redis[s]+cluster://` URL (see `_redis_url`)."""
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
            cluster_nodes=target.nodes,
            shards=target.shards,
        )

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, prefix={self.prefix!r})"

    # -- connections --------------------------------------------------------------------
    def _new_client(self) -> _Client:
        if self.cluster_nodes:
            return coredis.RedisCluster(
                startup_nodes=[coredis.connection.TCPLocation(h, p) for h, p in self.cluster_nodes],
                username=self._username,
                password=self._password,
                connect_timeout=self.connect_timeout,
                decode_responses=False,
                ssl_context=self._ssl,
            )
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

    def _lane(self, host: str | None = None, port: int | None = None) -> Lane:
        """A fast lane of a session (`_redis_lane`): to the server, or a cluster's node."""
        return Lane(
            host or self.host,
            port or self.port,
            self.db,
            username=self._username,
            password=self._password,
            ssl_context=self._ssl,
            connect_timeout=self.connect_timeout,
        )

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Share one connection pool among the operations of this task and its children."""
        if self._session.get() is not None:
            yield
            return
        async with self._wrap("connect"), self._new_client() as client:
            session = (
                ClusterSession(client, self._lane)
                if self.cluster_nodes
                else Session(client, self._lane(), self._lane())
            )
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
        return _describe(self.url, what, e, _LOST)

    @asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[_Client]:
        session = self._session.get()
        if session is not None:
            async with self._wrap(what):
                yield session.client
            return
        async with self._wrap(what), self._new_client() as fresh:
            yield fresh

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script `name` on `keys` (EVALSHA, loading it first if the server lacks it)."""
        session = self._session.get()
        if session is None:
            async with self.connected():
                return await self._script(name, keys, args)
        script = self._scripts[name]
        argv = [max(1, int(self.ttl * 1000)), *args]
        for attempt in range(1, _SCRIPT_ATTEMPTS + 1):
            try:
                return await session.evalsha(script, keys, argv)
            except _LOST as e:
                await trio.lowlevel.checkpoint_if_cancelled()  # lost because we were cancelled
                if attempt == _SCRIPT_ATTEMPTS:
                    raise self._error(name.lower(), e) from e
                await trio.sleep(0.01)
            except _REDIS_ERRORS as e:
                raise self._error(name.lower(), e) from e
        raise AssertionError("unreachable")

    async def _run_script(
        self, name: str, stored: str, args: Sequence[Any], extra: tuple[str, ...] = ()
    ) -> Any:
        """Run script `name` on the keys of run `stored` (its queue looked up if unknown),
        then `extra` keys (of the run's slot)."""
        queue = self._queue_of.get(stored)
        if queue is None and self._session.get() is None:
            async with self.connected():
                return await self._run_script(name, stored, args, extra)
        if queue is None:
            async with self._conn(name.lower()) as c:
                queue = _s(await c.hget(self._keys.run(stored), "queue"))
            self._remember(stored, queue)
        keys = self._keys.script_keys(stored, queue)
        return await self._script(name, keys + extra if extra else keys, [stored, *args])

    def _remember(self, stored: str, queue: str) -> None:
        if stored not in self._queue_of:
            if len(self._queue_of) >= 8192:
                del self._queue_of[next(iter(self._queue_of))]
            self._queue_of[stored] = queue

    @contextmanager
    def _reading(self, run_id: str, what: str) -> Iterator[None]:
        """Stored `what` of a run that cannot be read becomes one `BackendError` naming both."""
        try:
            yield
        except (ValueError, TypeError, UnicodeDecodeError, AttributeError):
            raise UnreadableDataError(what, f"{unreadable(run_id, what)} (in {self.url})") from None

    def _rk(self, run_id: str, suffix: str = "") -> str:
        """Key of run `run_id` (`suffix`: `:items`, `:outputs`, ...)."""
        return self._keys.run(_rid(run_id)) + suffix

    async def aclose(self) -> None:
        return None

    # -- runs ---------------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None:
        stored = _rid(run.run_id)
        args: list[Any] = [
            stored,
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
        self._remember(stored, run.queue)
        keys = self._keys.script_keys(stored, run.queue)
        result = _s(await self._script("CREATE", keys, args))
        if result == "exists":
            raise BackendError(f"run {run.run_id!r} already exists in {self.url}")
        await self._wake(run.queue, stored, len(run.items))

    async def _get(self, c: _Client, run_id: str) -> RunRecord | None:
        values = await c.hmget(self._rk(run_id), _FIELDS)
        h = {k: v for k, v in zip(_FIELDS, values, strict=True) if v is not None}
        if not h.get(b"status"):
            return None
        return _record(run_id, h)

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with self._conn("get run") as c:
            return await self._get(c, run_id)

    async def list_runs(self, queue: str | None = None) -> list[RunRecord]:
        async with self._conn("list runs") as c:
            listed: list[tuple[float, str, int]] = []
            for shard in range(self.shards):
                for raw, score in await c.zrange(
                    self._keys.runs(shard), 0, -1, rev=True, withscores=True
                ):
                    listed.append((float(score), _s(raw), shard))
            listed.sort(key=lambda x: x[0], reverse=True)
            out: list[RunRecord] = []
            for _, stored, shard in listed:
                rec = await self._get(c, _unrid(stored))
                if rec is None:
                    await c.zrem(self._keys.runs(shard), [stored])
                elif queue is None or rec.queue == queue:
                    out.append(rec)
            return out

    async def list_runs_page(
        self, status: str | None, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """A page of `list_runs()` (all queues), optionally of one status, and how many
        runs that listing holds in all: the newest `offset + limit` of each shard, merged."""
        if status is not None:
            recs = [r for r in await self.list_runs() if r.status == status]
            return recs[offset : offset + limit], len(recs)
        async with self._conn("list runs") as c:
            total = 0
            listed: list[tuple[float, str]] = []
            for shard in range(self.shards):
                key = self._keys.runs(shard)
                total += int(await c.zcard(key))
                if limit > 0:
                    top = await c.zrange(key, 0, offset + limit - 1, rev=True, withscores=True)
                    listed += [(float(score), _s(raw)) for raw, score in top]
            listed.sort(key=lambda x: x[0], reverse=True)
            out: list[RunRecord] = []
            for _, stored in listed[offset : offset + limit]:
                rec = await self._get(c, _unrid(stored))
                if rec is not None:
                    out.append(rec)
            return out, total

    async def control(self, run_id: str, action: str) -> RunRecord:
        if action not in ("cancel", "pause", "resume"):
            raise ValueError(f"unknown run action {action!r} (cancel, pause or resume)")
        if self._session.get() is None:
            async with self.connected():
                return await self.control(run_id, action)
        if _s(await self._run_script("CONTROL", _rid(run_id), [action])) == "missing":
            raise KeyError(run_id)
        if action == "resume":
            await self._wake(None, _rid(run_id), 8)
        rec = await self.get_run(run_id)
        if rec is None:
            raise KeyError(run_id)
        return rec

    async def fail_run(self, run_id: str, error: ErrorRecord) -> bool:
        args = [
            error.node,
            error.item_id,
            error.attempt,
            error.kind,
            error.message,
            error.traceback or "",
        ]
        return bool(await self._run_script("FAIL", _rid(run_id), args))

    async def retry_run(self, run_id: str, deadline: float | None) -> RunRecord:
        if self._session.get() is None:
            async with self.connected():
                return await self.retry_run(run_id, deadline)
        args = ["" if deadline is None else repr(deadline)]
        if _s(await self._run_script("RETRY_RUN", _rid(run_id), args)) == "missing":
            raise KeyError(run_id)
        await self._wake(None, _rid(run_id), 8)
        rec = await self.get_run(run_id)
        if rec is None:
            raise KeyError(run_id)
        return rec

    async def wait_run(self, run_id: str, timeout: float) -> RunRecord | None:
        with trio.move_on_after(timeout):
            async with self._conn("wait") as c:
                done = self._rk(run_id, ":done")
                if self.cluster_nodes:  # blocking on a lane, else polled (see _POLL)
                    if not await self._waited(done, timeout):
                        while not await c.exists([done]):
                            await trio.sleep(_POLL)
                elif not await self._waited(done, timeout):
                    if not await c.exists([done]):
                        await c.blmove(
                            done,
                            done,
                            coredis.PureToken.LEFT,
                            coredis.PureToken.RIGHT,
                            timeout=max(timeout, 0.01),
                        )
        return await self.get_run(run_id)

    async def _waited(self, done: str, timeout: float) -> bool:
        """Wait for list `done` on the session's lane of waits; False if it cannot take it
        (its server timeout ends before the caller's, so a timeout keeps the lane open)."""
        session = self._session.get()
        if session is None:
            return False
        try:
            if not await session.waiting([b"EXISTS", done], done):
                blmove = [b"BLMOVE", done, done, b"LEFT", b"RIGHT", max(timeout - 0.05, 0.01)]
                await session.waiting(blmove, done)
        except Unavailable:
            return False
        return True

    async def outputs(self, run_id: str) -> list[Output]:
        async with self._conn("outputs") as c:
            raws = await c.lrange(self._rk(run_id, ":outputs"), 0, -1)
        outs = []
        for n, raw in enumerate(raws):
            with self._reading(run_id, f"outputs[{n}]"):
                pos, node, value = json.loads(raw)
                outs.append(Output(tuple(int(p) for p in pos), str(node), value.encode()))
        return sorted(outs, key=lambda o: o.position)

    async def context(self, run_id: str) -> RunContext | None:
        async with self._conn("context") as c:
            data, version, counted = await c.hmget(
                self._rk(run_id), [b"context", b"version", b"contrib"]
            )
        if data is None:
            return None
        flat: Any = []
        if counted is not None:  # base and contributions in one atomic read
            stored = _rid(run_id)
            keys = self._keys.script_keys(stored, self._queue_of.get(stored, ""))
            raw = await self._script("CONTEXT", keys, [stored])
            if not raw:
                return None
            data, version, counted, flat = raw
        with self._reading(run_id, "version"):
            number = int(_s(version) or 0)
        with self._reading(run_id, "context contributions"):
            int(_s(counted) or 0)
            return RunContext(data, number, _contributions(flat)[0] if counted else ())

    async def collected(self, run_id: str, key: str) -> list[bytes]:
        async with self._conn("collected") as c:
            entries = await c.lrange(self._rk(run_id, ":col"), 0, -1)
        head = key.encode() + SEP.encode()
        n, out = len(head), []
        for k, e in enumerate(entries):  # each entry released as its value is cut out
            entries[k] = b""
            if e.startswith(head):
                out.append(e[n:])
        return out

    async def errors(self, run_id: str) -> list[ErrorRecord]:
        async with self._conn("errors") as c:
            raws = await c.lrange(self._rk(run_id, ":errors"), 0, -1)
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
        if self._session.get() is None:
            async with self.connected():
                return await self.metrics(run_id)
        rid = _rid(run_id)
        async with self._conn("metrics") as c:
            raw = await c.hgetall(self._keys.run(rid))
        if raw.get(b"done") is None:
            return RunMetrics()
        values = [raw.get(b"done"), raw.get(b"failed"), raw.get(b"retried")]
        leased, queued = 0, 0
        if _s(raw.get(b"status")) != RunStatus.FAILED:  # its kept items wait for a retry
            leased, queued = await self._run_script("COUNTS", rid, [])
        with self._reading(run_id, "metrics"):
            per = _node_metrics(raw)
            return RunMetrics(
                done=int(_s(values[0]) or 0),
                failed=int(_s(values[1]) or 0),
                retried=int(_s(values[2]) or 0),
                in_flight=int(leased),
                queued=int(queued),
                per_node=per,
            )

    async def node_load(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Items not yet done per node, as (queued, in flight); empty unless the run is live."""
        if self._session.get() is None:
            async with self.connected():
                return await self.node_load(run_id)
        rid = _rid(run_id)
        async with self._conn("node load") as c:
            status = await c.hget(self._keys.run(rid), b"status")
        with self._reading(run_id, "node load"):
            if status is None or RunStatus(_s(status)).finished:
                return {}
        raw = await self._run_script("NODE_COUNTS", rid, [])
        with self._reading(run_id, "node load"):
            return {_s(raw[i]): (int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw), 3)}

    # -- work ---------------------------------------------------------------------------
    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        async with self.connected():  # one client for all the shards' scripts
            return await self._lease(queue, worker_id, limit, lease_seconds, wait)

    async def _lease(
        self, queue: str, worker_id: str, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        deadline = trio.current_time() + wait
        n = self.shards
        while True:
            leases, next_due = await self._lease_once(queue, worker_id, limit, lease_seconds)
            remaining = deadline - trio.current_time()
            if leases or remaining <= 0:
                return leases
            pause = remaining
            if next_due is not None:
                pause = min(pause, max(0.01, next_due - time.time()))
            if self.cluster_nodes:  # a blocking command takes keys of one slot
                wakes = [self._keys.wake_all(queue)]
            else:
                wakes = [self._keys.wake(shard, queue) for shard in range(n)]
            async with self._conn("wait for work") as c:
                session = self._session.get()
                if not self.cluster_nodes and session is not None:
                    woken = await session.blpop(wakes, max(pause, 0.01))
                    if woken is not None and n == 1:  # the token names the run: lease it
                        self._guess[queue] = _s(woken[1])
                    continue
                if session is not None:  # a cluster: on a lane, else polled (see _POLL)
                    try:
                        await session.waiting([b"BLPOP", wakes[0], max(pause, 0.01)], wakes[0])
                        continue
                    except Unavailable:
                        pass
                end = trio.current_time() + pause  # no blocking commands on a cluster
                while await c.lpop(wakes[0]) is None and trio.current_time() < end:
                    await trio.sleep(min(_POLL, max(end - trio.current_time(), 0)))

    async def _wake(self, queue: str | None, stored: str, n: int) -> None:
        """On a cluster, wake up to `n` idle workers of `queue` (the run's if None)."""
        if not self.cluster_nodes or n <= 0:
            return
        if queue is None:
            queue = self._queue_of.get(stored, "")
        await self._script("WAKE", [self._keys.wake_all(queue)], [n])

    async def _lease_once(
        self, queue: str, worker_id: str, limit: int, lease_seconds: float
    ) -> tuple[list[Lease], float | None]:
        """Up to `limit` leases, oldest ready items first across the shards, and when the
        next delayed item is due. A script leases only the items of the run whose keys it
        is given: it names the run at the head of its queue, asked next with its keys."""
        heads: dict[int, tuple[float, str]] = {}  # shard -> (ready since, run at its head)
        dues: list[float] = []

        def note(shard: int, raw: list[Any]) -> None:
            head = _s(raw[0])
            if head:
                stored, _, rest = head.partition(SEP)
                heads[shard] = (float(rest.partition(SEP)[0] or 0), stored)
            else:
                heads.pop(shard, None)
                due = _f(raw[1])
                if due is not None:
                    dues.append(due)

        if self.shards == 1:
            heads[0] = (0.0, self._guess.get(queue, ""))
        else:  # look at every shard's head first (concurrently)

            async def look(shard: int) -> None:
                note(shard, await self._lease_script(queue, shard, "", worker_id, 0, 0.0))

            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    for shard in range(self.shards):
                        nursery.start_soon(look, shard)
        out: list[Lease] = []
        for _ in range(64):
            if len(out) >= limit or not heads:
                break
            shard = min(heads, key=lambda k: heads[k])
            stored = heads[shard][1]
            held = self._bases.get(stored) if stored else None
            raw = await self._lease_script(
                queue, shard, stored, worker_id, limit - len(out), lease_seconds, held
            )
            got = self._taken(stored, raw, held)
            out += got
            note(shard, raw)
            if self.shards == 1 and shard in heads:
                self._guess[queue] = heads[shard][1]
            if got:
                self._remember(stored, queue)
        return out, min(dues) if dues else None

    async def _lease_script(
        self,
        queue: str,
        shard: int,
        stored: str,
        worker_id: str,
        limit: int,
        seconds: float,
        held: tuple[bytes, bytes] | None = None,
    ) -> list[Any]:
        keys = self._keys.script_keys(stored, queue, shard)
        tag = held[0] if held is not None else b""
        with trio.CancelScope(shield=True):
            raw: list[Any] = await self._script(
                "LEASE", keys, [stored, worker_id, limit, repr(seconds), tag]
            )
        return raw

    def _taken(self, stored: str, raw: list[Any], held: tuple[bytes, bytes] | None) -> list[Lease]:
        """The leases of a LEASE or COMMIT reply (bases left out are `held`'s, the base
        the script was told of); the base they give is remembered for the next ones."""
        known = self._contributed.get(stored)
        if known is None:
            if len(self._contributed) >= 256:
                del self._contributed[next(iter(self._contributed))]
            known = self._contributed[stored] = [None, ()]
        got = _leases(raw, 2, held, known)
        given = _base_of(raw, 2)
        if given is not None:
            bases = self._bases
            if stored not in bases and len(bases) >= 256:
                del bases[next(iter(bases))]
            bases[stored] = given
        return got

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        if self._session.get() is None:
            async with self.connected():
                return await self.heartbeat(leases, lease_seconds)
        by_run: dict[str, list[int]] = {}
        for n, le in enumerate(leases):
            by_run.setdefault(le.run_id, []).append(n)
        held = [False] * len(leases)
        for run_id, where in by_run.items():
            args: list[Any] = [repr(lease_seconds)]
            for n in where:
                args += [leases[n].item_id, leases[n].token]
            got = await self._run_script("HEARTBEAT", _rid(run_id), args)
            for n, ok in zip(where, got, strict=True):
                held[n] = bool(ok)
        return held

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        result, _ = await self.commit_and_lease(lease, plan, limit=0, lease_seconds=0.0)
        return result

    async def commit_and_lease(
        self, lease: Lease, plan: CommitPlan, *, limit: int, lease_seconds: float
    ) -> tuple[CommitResult, list[Lease]]:
        if self._session.get() is None:  # one client for the commit and its retries
            async with self.connected():
                return await self.commit_and_lease(
                    lease, plan, limit=limit, lease_seconds=lease_seconds
                )
        update = plan.context
        mode, value, base = "0", b"", ""
        folded: Sequence[tuple[str, bytes]] = ()
        compacted = b""
        if update is not None:
            mode = "1" if update.merge is not None else "2"
            value, base = update.value, str(update.base_version)
            folded = update.folded
        elif plan.contribution is not None:  # see COMMIT's mode '3'
            mode, value = "3", plan.contribution.data or b""
            compact = plan.contribution.compact
            if compact is not None:
                base, compacted, folded = str(compact.base_version), compact.value, compact.folded
        rest: list[Any] = [lease.node, repr(plan.duration)]
        opened = plan.open_scope
        if opened is None:
            rest += ["0", "", 0, ""]
        else:
            fired = [[f.item_id, f.node, f.payload.decode()] for f in opened.fired]
            rest += ["1", opened.scope_id, opened.open, json.dumps(fired, ensure_ascii=False)]
        rest.append(len(plan.scopes))
        rest += list(plan.scopes)
        rid = _rid(lease.run_id)
        items = plan.items
        stage: tuple[
            str, ...
        ] = ()  # a big commit's items go to a staging list first (`_redis_stage`)
        if len(items) > _redis_stage.STAGE_OVER:
            stage = (_redis_stage.key(self._keys.run(rid), lease.token),)
            await self._stage(stage[0], items)
        rest.append(len(items))
        if not stage:
            for it in items:
                rest += [it.item_id, it.node, it.payload, it.attempt, repr(it.delay)]
        rest.append(len(plan.outputs))
        rest += [
            json.dumps([list(o.position), o.node, o.value.decode()], ensure_ascii=False)
            for o in plan.outputs
        ]
        rest.append(len(plan.collect))
        for key, data in plan.collect:
            rest += [key, data]
        rest.append(len(plan.drop_collected))
        rest += list(plan.drop_collected)
        failure = plan.failure
        rest += [failure.kind, failure.message] if failure is not None else ["", ""]
        rest += [max(limit, 0), repr(lease_seconds), lease.worker_id, len(plan.handled)]
        rest += [_error_entry(e) for e in plan.handled]
        rest += [failure.traceback or "", "1"] if failure is not None else ["", ""]
        shard = self._keys.shard(rid)
        now = trio.current_time()
        promote = "0"
        if limit > 0 and now - self._promoted.get(shard, -math.inf) >= _PROMOTE_EVERY:
            self._promoted[shard] = now
            promote = "1"
        rest.append(promote)
        held = self._bases.get(rid) if limit > 0 else None
        restaged = 0
        while True:
            tail: list[Any] = [len(folded)]
            for key, data in folded:
                tail += [key, data]
            tail += [compacted, held[0] if held is not None else b""]
            head = [lease.item_id, lease.token, mode, value, base]
            raw = await self._run_script("COMMIT", rid, [*head, *rest, *tail], stage)
            if isinstance(raw, list):  # committed, with the leases taken
                await self._wake(None, rid, int(raw[1]))
                return CommitResult.COMMITTED, self._taken(rid, raw, held)
            result = _s(raw)
            if result == "restage":  # the staged items did not all arrive (or expired)
                restaged += 1
                if restaged > _SCRIPT_ATTEMPTS:
                    raise BackendError(f"{self.url}: commit: the staged items were lost")
                await self._stage(stage[0], items)
                continue
            if result != "conflict":
                if stage:  # not applied: the staged items go
                    async with self._conn("commit") as c:
                        await c.delete(stage)
                return CommitResult(result), []
            # another step changed the context since this one read it: merge into the fresh
            # base (its contributions stay: they fold on top)
            assert update is not None and update.merge is not None
            current = await self.context(lease.run_id)
            if current is None:
                return CommitResult.INACTIVE, []
            value, base, folded = update.merge(current.data), str(current.version), ()

    async def _stage(self, key: str, items: Sequence[NewItem]) -> None:
        """Send `items` to the staging list `key`, emptied first, a slice at a time."""
        for attempt in range(1, _SCRIPT_ATTEMPTS + 1):
            fresh, length = "1", 0
            for values in _redis_stage.slices(items):
                length = int(
                    await self._script("STAGE", [key], [fresh, _redis_stage.EXPIRE_MS, *values])
                )
                fresh = "0"
            if length == len(items) * 5:
                return
            if attempt == _SCRIPT_ATTEMPTS:  # a slice was sent twice (a retried call)
                raise BackendError(f"{self.url}: commit: cannot stage its items")

    async def retry(self, lease: Lease, delay: float, error: ErrorRecord) -> CommitResult:
        args = [
            lease.item_id,
            lease.token,
            repr(delay),
            error.kind,
            error.message,
            error.traceback or "",
        ]
        result = CommitResult(_s(await self._run_script("RETRY", _rid(lease.run_id), args)))
        if result is CommitResult.COMMITTED and delay <= 0:
            await self._wake(None, _rid(lease.run_id), 1)
        return result

    async def release(self, lease: Lease) -> CommitResult:
        args = [lease.item_id, lease.token]
        result = CommitResult(_s(await self._run_script("RELEASE", _rid(lease.run_id), args)))
        if result is CommitResult.COMMITTED:
            await self._wake(None, _rid(lease.run_id), 1)
        return result

    async def reap(self) -> int:
        """Requeue expired leases, shard by shard (a scan, then one script per run), and
        forget workers not seen within `worker_ttl`."""
        if self._session.get() is None:
            async with self.connected():
                return await self.reap()
        count = 0
        for shard in range(self.shards):
            expired = await self._script("REAP_SCAN", [self._keys.leases(shard)], [])
            by_run: dict[str, list[Any]] = {}
            for raw in expired:
                member = _s(raw)
                stored, _, rest = member.partition(SEP)
                item_id, _, token = rest.rpartition(SEP)
                by_run.setdefault(stored, []).extend([item_id, token])
            for stored, pairs in by_run.items():
                requeued = int(await self._run_script("REAP_RUN", stored, pairs))
                await self._wake(None, stored, requeued)
                count += requeued
        await self._script("REAP_WORKERS", [self._keys.workers], [repr(self.worker_ttl)])
        return count

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
            await c.hset(self._keys.workers, {info.worker_id: data})

    async def unregister_worker(self, worker_id: str) -> None:
        async with self._conn("unregister worker") as c:
            await c.hdel(self._keys.workers, [worker_id])

    async def workers(self) -> list[WorkerInfo]:
        async with self._conn("workers") as c:
            raw = await c.hgetall(self._keys.workers)
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
