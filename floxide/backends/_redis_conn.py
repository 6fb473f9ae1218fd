"""The Redis backend's script fast path: sessions holding connections, on one server or a
cluster.

Inside `connected()` the scripts, the hot path, go straight to pooled connections held for
the whole block (`BaseConnection.create_request`, multiplexed as coredis multiplexes its
own commands): the client's per-command layers (argument checks, retry wrappers,
telemetry, pool checkout) cost more than the round trip itself. On a cluster the session
holds one connection per node and sends a script to the node that owns the slot of its
first key (`ClusterLayout`); a MOVED or ASK reply (resharding) reports the error to the
layout and sends the script again through the cluster client, which follows redirects.
Connections are checked out for the whole block, so the pool never hands them to a
blocking command (whose reply would hold up the scripts behind it). On one server a
script goes first to the session's fast lane (`_redis_lane`; on a cluster, the lane of the
node owning its slot), and to the held coredis connection when the lane cannot take it
(busy with a concurrent call, NOSCRIPT, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import coredis
import coredis.exceptions
import trio
from coredis._utils import hash_slot
from coredis.commands.script import Script
from coredis.connection import BaseConnection

from floxide.backends._redis_lane import Lane, Unavailable

__all__ = ["ClusterSession", "Session"]

_Script = Script[bytes]


class Session:
    """One `connected()` block on one server: its client, and the connection its scripts
    are sent on."""

    def __init__(
        self, client: Any, lane: Lane | None = None, waits: Lane | None = None
    ) -> None:
        self.client = client
        self.lane = lane
        self.waits = waits
        """The lane of blocking waits (a blocked lane takes no script)."""
        self.conn: BaseConnection | None = None
        self._lock = trio.Lock()

    def lane_for(self, key: str) -> Lane | None:
        """The fast lane of the server owning `key` (None: coredis only)."""
        return self.lane

    async def connection(self, key: str) -> BaseConnection:
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

    async def evalsha(self, script: _Script, keys: Sequence[str], argv: Sequence[Any]) -> Any:
        """EVALSHA on the connection for `keys[0]`, loading the script first if the server
        lacks it (a new or flushed server)."""
        lane = self.lane_for(keys[0])
        if lane is not None:
            try:
                return await lane.evalsha(script.sha, keys, argv, script.script)
            except Unavailable:
                pass
        conn = await self.connection(keys[0])
        try:
            try:
                return await conn.create_request(
                    b"EVALSHA", script.sha, len(keys), *keys, *argv, decode=False
                )
            except coredis.exceptions.NoScriptError:
                await conn.create_request(b"SCRIPT LOAD", script.script, decode=False)
                return await conn.create_request(
                    b"EVALSHA", script.sha, len(keys), *keys, *argv, decode=False
                )
        except BaseException:
            if not conn.usable:
                self.drop(conn)
            raise

    async def blpop(self, keys: Sequence[str], timeout: float) -> Any:
        """BLPOP on the lane of waits (on the client's connections if it cannot take it)."""
        try:
            return await self.waiting([b"BLPOP", *keys, timeout], keys[0])
        except Unavailable:
            return await self.client.blpop(keys, timeout=timeout)

    def waits_for(self, key: str) -> Lane | None:
        """The lane of waits of the server owning `key`."""
        return self.waits

    async def waiting(self, args: Sequence[Any], key: str) -> Any:
        """A command on `key` on the lane of waits (blocking ones: it takes no script);
        `Unavailable` when it cannot take it (the caller uses the client)."""
        lane = self.waits_for(key)
        if lane is None:
            raise Unavailable("no lane")
        return await lane.call(args)

    def drop(self, conn: BaseConnection) -> None:
        """Forget `conn` (lost): the next script gets a fresh connection."""
        if self.conn is conn:
            self.client.connection_pool.release(conn)
            self.conn = None

    def close(self) -> None:
        for lane in (self.lane, self.waits):
            if lane is not None:
                lane.close()
        if self.conn is not None:
            self.client.connection_pool.release(self.conn)
            self.conn = None


class ClusterSession(Session):
    """One `connected()` block on a cluster: a held connection per node."""

    def __init__(self, client: Any, lane_to: Callable[[str, int], Lane] | None = None) -> None:
        super().__init__(client)
        self.conns: dict[tuple[str, int], tuple[Any, BaseConnection]] = {}
        self._lane_to = lane_to
        self.lanes: dict[tuple[str, int], Lane] = {}
        """A fast lane per node (a MOVED or ASK reply on one goes back to coredis)."""
        self.wait_lanes: dict[tuple[str, int], Lane] = {}

    def lane_for(self, key: str) -> Lane | None:
        return self._node_lane(self.lanes, key)

    def waits_for(self, key: str) -> Lane | None:
        return self._node_lane(self.wait_lanes, key)

    def _node_lane(self, lanes: dict[tuple[str, int], Lane], key: str) -> Lane | None:
        if self._lane_to is None:
            return None
        node = self._node(key)
        where = (node.host, node.port)
        lane = lanes.get(where)
        if lane is None:
            lane = lanes[where] = self._lane_to(*where)
        return lane

    async def waiting(self, args: Sequence[Any], key: str) -> Any:
        """As on one server; a slot moved (MOVED, ASK) leaves this wait to the caller's
        polling (the cluster client's pool loses a connection to a cancelled blocking
        command, so blocking waits keep to the lanes)."""
        try:
            return await super().waiting(args, key)
        except coredis.exceptions.AskError as e:
            if isinstance(e, coredis.exceptions.MovedError):
                layout = self.client.connection_pool.cluster_layout
                layout.report_errors(self._node(key), e)
            raise Unavailable("moved") from None

    def _node(self, key: str) -> Any:
        layout = self.client.connection_pool.cluster_layout
        return layout.node_for_slot(hash_slot(key.encode()))

    async def connection(self, key: str) -> BaseConnection:
        node = self._node(key)
        where = (node.host, node.port)
        held = self.conns.get(where)
        if held is not None and held[1].usable:
            return held[1]
        async with self._lock:
            held = self.conns.get(where)
            if held is None or not held[1].usable:
                if held is not None:
                    self._release(held[1])
                    del self.conns[where]
                pool = self.client.connection_pool
                conn: BaseConnection = await pool.get_connection(node)
                self.conns[where] = (node, conn)
                return conn
            return held[1]

    async def evalsha(self, script: _Script, keys: Sequence[str], argv: Sequence[Any]) -> Any:
        try:
            return await super().evalsha(script, keys, argv)
        except coredis.exceptions.AskError as e:  # MOVED too: the slot moved (resharding)
            if isinstance(e, coredis.exceptions.MovedError):  # the layout learns the new owner
                layout = self.client.connection_pool.cluster_layout
                layout.report_errors(self._node(keys[0]), e)
        return await self._through_client(script, keys, argv)

    async def _through_client(
        self, script: _Script, keys: Sequence[str], argv: Sequence[Any]
    ) -> Any:
        """The script sent by the cluster client (which follows MOVED and ASK)."""
        try:
            return await self.client.evalsha(script.sha, keys, argv)
        except coredis.exceptions.NoScriptError:
            await self.client.script_load(script.script)
            return await self.client.evalsha(script.sha, keys, argv)

    def _release(self, conn: BaseConnection) -> None:
        """Give `conn` back to the pool; a lost one leaves a free slot in its place (the
        cluster pool would otherwise lose the slot for good)."""
        pool = self.client.connection_pool
        pool.release(conn)
        if not conn.usable:
            try:
                pool._node_pool(conn.location).append_nowait(None)
            except Exception:
                pass

    def drop(self, conn: BaseConnection) -> None:
        for where, (_, held) in list(self.conns.items()):
            if held is conn:
                self._release(conn)
                del self.conns[where]

    def close(self) -> None:
        super().close()
        for lanes in (self.lanes, self.wait_lanes):
            for lane in lanes.values():
                lane.close()
            lanes.clear()
        for _, conn in self.conns.values():
            self._release(conn)
        self.conns.clear()
