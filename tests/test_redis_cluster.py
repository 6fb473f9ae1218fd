"""Redis Cluster and the one key layout: every script declares the keys it touches, a run's
keys share one slot, and a deployment's runs spread over the cluster's masters."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import uuid
from typing import Any

import coredis
import pytest
import trio
from coredis._utils import hash_slot

from floxide import BackendError
from floxide.backends import open_backend
from floxide.backends._redis import RedisBackend
from floxide.backends._redis_url import parse_redis_url
from floxide.testing import check_backend
from tests.distributed_workflows import Ctx, fan_join
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.test_distributed import with_workers

_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ALL_KEYS = {b"DEL", b"EXISTS"}
"""Lua commands whose every argument is a key (the others: their first)."""


class _Monitor:
    """MONITOR on a raw socket, read by a thread: every command the server runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.data = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.data += chunk
        except OSError:  # closed by `stop` (or the server) while reading
            pass

    def stop(self) -> list[bytes]:
        """Everything monitored: once the reader has seen a marker sent last (on a loaded
        machine it may lag behind the server by seconds), the connection is closed."""
        marker = f"monitor-end-{uuid.uuid4().hex}".encode()
        with socket.create_connection(("127.0.0.1", self.port)) as other:
            other.sendall(b"ECHO " + marker + b"\r\n")
            other.recv(1024)
        deadline, seen = time.monotonic() + 60, 0
        while time.monotonic() < deadline:
            end = len(self.data)
            if self.data.find(marker, max(0, seen - len(marker))) >= 0:
                break
            seen = end
            time.sleep(0.01)
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.sock.close()
        return bytes(self.data).split(b"\r\n")


def _tokens(line: bytes) -> list[bytes]:
    return [m.group(1) for m in _TOKEN.finditer(line)]


def test_every_script_declares_every_key_it_touches(redis_server: RedisServer) -> None:
    """The whole conformance kit under MONITOR: each command a script runs touches only
    keys its EVALSHA passed in KEYS (so it runs on a cluster, where keys must be declared)."""
    monitor = _Monitor(redis_server.port)
    base = f"{redis_server.url}?shards=3&prefix="
    trio.run(check_backend, lambda: open_backend(base + f"k{uuid.uuid4().hex[:8]}"))
    lines = monitor.stop()
    declared: set[bytes] | None = None
    checked = 0
    scripts = 0
    undeclared: list[bytes] = []
    for line in lines:
        words = _tokens(line)
        if not words:
            continue
        if b"[0 lua]" not in line:
            if words[0].upper() == b"EVALSHA":
                n = int(words[2])
                declared = set(words[3 : 3 + n])
                scripts += 1
            continue
        command = words[0].upper()
        keys = words[1:] if command in _ALL_KEYS else words[1:2]
        if command == b"TIME":
            keys = []
        for key in keys:
            checked += 1
            if declared is None or key not in declared:
                undeclared.append(line[:200])
    assert scripts > 100 and checked > 1000, (scripts, checked)
    assert undeclared == [], undeclared[:5]


def test_cluster_urls() -> None:
    t = parse_redis_url("redis+cluster://u%40x:p%3Aw@10.0.0.1:7000,10.0.0.2:7001?prefix=app")
    assert t.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (t.username, t.password, t.prefix, t.shards) == ("u@x", "p:w", "app", 16)
    assert "p:w" not in t.url and "***" in t.url
    assert parse_redis_url("redis+cluster://h:7000?shards=4").shards == 4
    assert parse_redis_url("redis://h:6379/0").shards == 1
    b = RedisBackend.from_url("redis+cluster://u:secret@h1:7000,h2:7001")
    assert "secret" not in repr(b) and "secret" not in b.url
    for bad, why in [
        ("redis+cluster://h:7000/3", "one database"),
        ("redis+cluster://h:7000?prefix=a{b}", "hash tags"),
        ("redis+cluster://h:7000?shards=0", "shards"),
        ("redis+cluster://h:notaport", "HOST:PORT"),
        ("redis+cluster://h:7000?ssl_ca_certs=x", "rediss"),
    ]:
        with pytest.raises(BackendError, match=why):
            open_backend(bad)


def test_rediss_cluster_scheme_is_known() -> None:
    with pytest.raises(BackendError, match="ssl_ca_certs"):
        open_backend("rediss+cluster://u:pw@h:7000?ssl_ca_certs=/no/such/file")


async def test_runs_spread_over_the_masters_and_keep_to_one_slot(
    redis_cluster: RedisCluster,
) -> None:
    """A deployment's runs land on every master; each run's keys hash to one slot."""
    prefix = f"s{uuid.uuid4().hex[:8]}"
    backend = open_backend(f"{redis_cluster.url}?prefix={prefix}")
    wf = fan_join()
    from floxide.distributed import Orchestrator

    orch = Orchestrator(wf, backend)
    ids = [await orch.start_run(Ctx(), 3) for _ in range(24)]

    async def body(_: Any) -> None:
        with trio.fail_after(60):
            for run_id in ids:
                assert await orch.wait(run_id, timeout=30) == 5

    await with_workers(wf, backend, body, n=2)
    per_node: dict[int, set[int]] = {}
    for port in redis_cluster.ports:
        async with coredis.Redis("127.0.0.1", port, decode_responses=False) as c:
            keys = [k async for k in c.scan_iter(f"{prefix}:*".encode())]
        per_node[port] = {hash_slot(k) for k in keys if b":run:" in k}
    assert all(per_node.values()), per_node  # every master holds some runs
    for run_id in ids:
        slots = set()
        for port in redis_cluster.ports:
            async with coredis.Redis("127.0.0.1", port, decode_responses=False) as c:
                pattern = f"{prefix}:*:run:{run_id}*".encode()
                slots |= {hash_slot(k) async for k in c.scan_iter(pattern)}
        assert len(slots) == 1, (run_id, slots)


def _cli(*args: str) -> str:
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, check=True).stdout


async def test_scripts_follow_a_slot_moved_mid_session(redis_cluster: RedisCluster) -> None:
    """Resharding: the slot of a run's keys moves to another master while a worker's
    session holds connections; its next commits follow the MOVED reply and succeed."""
    from floxide.testing._harness import QUEUE, item, new_run, plan

    backend = open_backend(f"{redis_cluster.url}?prefix=mv{uuid.uuid4().hex[:8]}&shards=1")
    ports = redis_cluster.ports
    async with backend.connected():
        run = new_run(item(1), item(2), item(3))
        await backend.create_run(run)
        lease = (await backend.lease(QUEUE, "w", limit=1, lease_seconds=30, wait=0))[0]
        slot = hash_slot(f"{backend.prefix}:{{0}}".encode())  # type: ignore[attr-defined]
        ids = {p: _cli("-p", str(p), "cluster", "myid").strip() for p in ports}
        owner = next(
            p for p in ports if _cli("-p", str(p), "cluster", "countkeysinslot", str(slot)) != "0\n"
        )
        target = next(p for p in ports if p != owner)
        _cli("-p", str(target), "cluster", "setslot", str(slot), "importing", ids[owner])
        _cli("-p", str(owner), "cluster", "setslot", str(slot), "migrating", ids[target])
        for key in _cli("-p", str(owner), "cluster", "getkeysinslot", str(slot), "1000").split():
            _cli("-p", str(owner), "migrate", "127.0.0.1", str(target), key, "0", "5000")
        for p in ports:
            _cli("-p", str(p), "cluster", "setslot", str(slot), "node", ids[target])
        for _ in range(3):
            result, got = await backend.commit_and_lease(lease, plan(), limit=1, lease_seconds=30)
            assert result.value == "committed"
            if not got:
                break
            lease = got[0]
    rec = await backend.get_run(run.run_id)
    assert rec is not None and rec.status.value == "completed"
