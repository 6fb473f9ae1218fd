"""The Redis backend's fast lane (`floxide.backends._redis_lane`): the hot scripts on one
plain connection, replying as coredis does, on plain, TLS and ACL servers, and falling
back to coredis on anything unusual (busy, NOSCRIPT, a server it cannot log in to).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import coredis.exceptions
import pytest
import trio
from coredis._packer import Packer
from hypothesis import given
from hypothesis import strategies as st

from floxide.backends import open_backend
from floxide.backends._redis import RedisBackend
from floxide.backends._redis_lane import Lane, Reader, Unavailable, pack
from floxide.distributed import Orchestrator
from floxide.testing._harness import item, lease1, new_run
from tests import test_redis_security as security
from tests.distributed_workflows import Ctx, fan_join
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer, redis_server_path
from tests.test_distributed import with_workers
from tests.test_redis_security import ENCODED, PASSWORD, USER_PASSWORD, tls_url

certs, tls_server, acl_server = security.certs, security.tls_server, security.acl_server

# -- the protocol -------------------------------------------------------------------------

values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.binary(max_size=40) | st.integers(-(2**63), 2**63 - 1),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


def resp(v: Any) -> bytes:
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if isinstance(v, int):
        return b":%d\r\n" % v
    return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)


@given(values, st.lists(st.integers(1, 50), max_size=20))
def test_a_reply_is_parsed_whole_however_it_arrives(value: Any, cuts: list[int]) -> None:
    data = resp(value)
    reader = Reader()
    got: Any = None
    at = 0
    for size in itertools.chain(cuts, itertools.repeat(7)):
        if at >= len(data):
            break
        reader.feed(data[at : at + size])
        at += size
        got = reader.reply()
        if at < len(data):
            assert got is not None and not isinstance(got, (bytes, int, list))
    assert got == value


def test_error_replies_are_coredis_exceptions() -> None:
    for line, kind in [
        (b"-NOSCRIPT No matching script\r\n", coredis.exceptions.NoScriptError),
        (b"-ERR unknown command 'X'\r\n", coredis.exceptions.UnknownCommandError),
        (b"-MOVED 3999 127.0.0.1:6381\r\n", coredis.exceptions.MovedError),
        (b"-BUSY script running\r\n", coredis.exceptions.ResponseError),
    ]:
        reader = Reader()
        reader.feed(line)
        assert isinstance(reader.reply(), kind)


def test_commands_are_packed_as_coredis_packs_them() -> None:
    args = [b"EVALSHA", "abc", 3, "k\u00e9y", b"\x00\r\n", 0, -7, 1.5, 1e-7, "", b""]
    assert pack(args) == b"".join(Packer("utf-8").pack_command(*args))
    with pytest.raises(Unavailable):
        pack([object()])


# -- on real servers ----------------------------------------------------------------------

SCRIPT = b"""
return {'a', 7, false, {}, {'x', {1, ''}}, ARGV[1], KEYS[1], tonumber(ARGV[2]) * 2}
"""


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The script calls the lane answered (by reply kind), in this test."""
    calls: list[str] = []
    real = Lane.evalsha

    async def counted(self: Lane, sha: Any, keys: Any, argv: Any, script: Any = None) -> Any:
        got = await real(self, sha, keys, argv, script)
        calls.append(type(got).__name__)
        return got

    monkeypatch.setattr(Lane, "evalsha", counted)
    yield calls


async def test_the_lane_replies_as_coredis_does(redis_server: RedisServer) -> None:
    async with coredis.Redis(port=redis_server.port, decode_responses=False) as c:
        sha = await c.script_load(SCRIPT)
        want = await c.evalsha(sha, ["k\u00e9"], [b"\xff\x00v", 21])
    lane = Lane("127.0.0.1", redis_server.port, 0, username=None, password=None,
                ssl_context=None, connect_timeout=5)  # fmt: skip
    try:
        assert await lane.evalsha(sha, ["k\u00e9"], [b"\xff\x00v", 21]) == want
        assert want == [b"a", 7, None, [], [b"x", [1, b""]], b"\xff\x00v", "ké".encode(), 42]
        with pytest.raises(Unavailable):  # not loaded, and no script to load: coredis
            await lane.evalsha("0" * 40, ["k"], [])
        async with coredis.Redis(port=redis_server.port) as c:
            await c.script_flush()
        assert await lane.evalsha(sha, ["k\u00e9"], [b"\xff\x00v", 21], SCRIPT) == want
        with pytest.raises(coredis.exceptions.ResponseError):  # a script's error is raised
            async with coredis.Redis(port=redis_server.port, decode_responses=False) as c:
                bad = await c.script_load(b"return redis.call('NOSUCHCOMMAND')")
            await lane.evalsha(bad, ["k"], [])
        assert await lane.evalsha(sha, ["k"], [b"", 1]) == [*want[:5], b"", b"k", 2]
    finally:
        lane.close()


async def test_a_cancelled_call_leaves_no_reply_behind(redis_server: RedisServer) -> None:
    """Cancelled while the server runs its script: the next call gets its own reply."""
    async with coredis.Redis(port=redis_server.port, decode_responses=False) as c:
        slow = await c.script_load(
            b"local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]"
            b" while true do t = redis.call('TIME')"
            b" if t[1] * 1e6 + t[2] - s > 50000 then break end end return 'slow'"
        )
        echo = await c.script_load(b"return ARGV[1]")
    lane = Lane("127.0.0.1", redis_server.port, 0, username=None, password=None,
                ssl_context=None, connect_timeout=5)  # fmt: skip
    try:
        with trio.move_on_after(0.01) as scope:
            await lane.evalsha(slow, ["k"], [])
        assert scope.cancelled_caught
        assert await lane.evalsha(echo, ["k"], [b"mine"]) == b"mine"
    finally:
        lane.close()


async def _one_run(backend: Any) -> int:
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    result: list[int] = []

    async def body(_: object) -> None:
        run_id = await orch.start_run(Ctx(), 5)
        result.append(await orch.wait(run_id, timeout=30))

    await with_workers(wf, backend, body)
    return result[0]


async def test_runs_go_through_the_lane(redis_server: RedisServer, lane_calls: list[str]) -> None:
    assert await _one_run(open_backend(redis_server.url + "?prefix=lane")) == 30
    assert lane_calls.count("list") >= 5  # leases and commits


async def test_the_lane_speaks_tls_with_a_password(
    tls_server: int, certs: Path, lane_calls: list[str]
) -> None:
    assert await _one_run(open_backend(tls_url(tls_server, certs))) == 30
    assert lane_calls.count("list") >= 5


async def test_a_cluster_has_a_lane_per_node(
    redis_cluster: RedisCluster, lane_calls: list[str]
) -> None:
    backend = open_backend(f"{redis_cluster.url}?prefix=lanes")
    assert await _one_run(backend) == 30
    assert lane_calls.count("list") >= 5


@pytest.mark.parametrize("auth", [f"app:{USER_PASSWORD}@", f":{ENCODED}@"])
async def test_the_lane_logs_in_as_an_acl_user(
    acl_server: RedisServer, auth: str, lane_calls: list[str]
) -> None:
    backend = open_backend(f"redis://{auth}127.0.0.1:{acl_server.port}/3?prefix=acl")
    assert await _one_run(backend) == 30
    assert lane_calls.count("list") >= 5
    assert PASSWORD not in repr(backend) and USER_PASSWORD not in repr(backend)
    assert isinstance(backend, RedisBackend)
    lane = backend._lane()
    assert PASSWORD not in repr(lane) and USER_PASSWORD not in repr(lane)
    async with coredis.Redis(
        port=acl_server.port, username="app", password=USER_PASSWORD, db=3
    ) as c:  # the lane selected the URL's database
        assert await c.exists(["acl:{0}:runs"]) == 1


async def test_a_lane_refused_by_the_server_leaves_the_call_to_coredis(
    acl_server: RedisServer,
) -> None:
    lane = Lane("127.0.0.1", acl_server.port, 0, username="app", password="wrong",
                ssl_context=None, connect_timeout=5)  # fmt: skip
    with pytest.raises(Unavailable):
        await lane.evalsha("0" * 40, ["k"], [])
    with pytest.raises(Unavailable):  # and it does not try again in this session
        await lane.evalsha("0" * 40, ["k"], [])


async def test_concurrent_calls_and_a_flushed_script_cache(redis_server: RedisServer) -> None:
    """A busy lane leaves concurrent calls to coredis; NOSCRIPT loads the script again."""
    backend = open_backend(redis_server.url + "?prefix=busy")
    orch = Orchestrator(fan_join(), backend)
    async with backend.connected():
        ids: list[str] = []

        async def start() -> None:
            ids.append(await orch.start_run(Ctx(), 3))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(start)
        async with coredis.Redis(port=redis_server.port) as c:
            await c.script_flush()
        ids.append(await orch.start_run(Ctx(), 3))
    assert len(set(ids)) == 21
    for run_id in ids:
        assert (await orch.status(run_id)).value == "pending"


async def test_starting_a_run_unconnected_needs_no_client_handshake(
    redis_server: RedisServer,
) -> None:
    """Outside `connected()`, a script opens one plain connection (no HELLO)."""
    backend = open_backend(redis_server.url + "?prefix=cold")
    orch = Orchestrator(fan_join(), backend)
    await orch.start_run(Ctx(), 3)  # the scripts are loaded

    async def hellos() -> int:
        async with coredis.Redis(port=redis_server.port, decode_responses=True) as c:
            stats: Any = await c.info("commandstats")
        return int(stats.get("cmdstat_hello", {}).get("calls", 0))

    before = await hellos()
    await orch.start_run(Ctx(), 3)
    assert await hellos() == before + 1  # the one of hellos() itself


async def test_starting_a_run_on_a_connected_backend_is_one_round_trip(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One command (the CREATE script, on the lane) and nothing through coredis."""
    from coredis.connection import BaseConnection

    backend = open_backend(redis_server.url + "?prefix=one")
    orch = Orchestrator(fan_join(), backend)
    sent: list[object] = []
    lane_call, request = Lane.call, BaseConnection.create_request

    async def on_lane(self: Lane, args: Any) -> Any:
        sent.append(args[0])
        return await lane_call(self, args)

    async def on_coredis(self: BaseConnection, *args: Any, **kw: Any) -> Any:
        sent.append(("coredis", args[0]))
        return await request(self, *args, **kw)

    async with backend.connected():
        await orch.start_run(Ctx(), 3)  # connections open, scripts loaded
        monkeypatch.setattr(Lane, "call", on_lane)
        monkeypatch.setattr(BaseConnection, "create_request", on_coredis)
        await orch.start_run(Ctx(), 3)
    assert sent == [b"EVALSHA"]


async def test_the_lane_rides_out_a_restarted_server(tmp_path: Path) -> None:
    exe = redis_server_path()
    if exe is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(exe, tmp_path)
    server.start()
    try:
        backend = open_backend(server.url)
        orch = Orchestrator(fan_join(), backend)
        async with backend.connected():
            await orch.start_run(Ctx(), 3)
            await trio.to_thread.run_sync(server.stop)
            await trio.to_thread.run_sync(server.start)
            run_id = await orch.start_run(Ctx(), 3)
            assert (await orch.status(run_id)).value == "pending"
    finally:
        server.stop()


async def test_an_idle_worker_wakes_at_once_and_waits_on_its_own_lane(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease waiting on an idle queue (BLPOP on the lane of waits) wakes as soon as
    another client creates a run and leases its item at once, in one script call; a
    waiter of the run (EXISTS + BLMOVE there too) wakes when it ends."""
    url = redis_server.url + "?prefix=idle"
    waiter, other = open_backend(url), open_backend(url)
    commands: list[bytes] = []
    real = Lane.call

    async def noted(self: Lane, args: Any) -> Any:
        commands.append(args[0])
        return await real(self, args)

    monkeypatch.setattr(Lane, "call", noted)
    got: list[float] = []

    async def lease_waiting() -> None:
        async with waiter.connected():
            le = await lease1(waiter, wait=20)
            got.append(time.monotonic())
            assert le is not None and le.item_id == "1"

    async with trio.open_nursery() as n:
        n.start_soon(lease_waiting)
        await trio.sleep(0.5)
        assert commands.count(b"BLPOP") == 1  # blocked, not polling
        commands.clear()
        created = time.monotonic()
        run = new_run(item(1))
        await other.create_run(run)
    assert got and got[0] - created < 0.5, "the waiting lease did not wake on the new run"
    assert commands.count(b"EVALSHA") == 2  # the run's creation, then one lease
    ended: list[float] = []

    async def run_waiting() -> None:
        async with waiter.connected():
            rec = await waiter.wait_run(run.run_id, 20)
        ended.append(time.monotonic())
        assert rec is not None and rec.status.finished

    async with trio.open_nursery() as n:
        n.start_soon(run_waiting)
        await trio.sleep(0.3)
        assert b"BLMOVE" in commands
        done = time.monotonic()
        await other.control(run.run_id, "cancel")
    assert ended and ended[0] - done < 0.5, "wait_run did not wake when the run ended"


async def test_a_cancelled_wait_leaves_the_next_one_its_reply(redis_server: RedisServer) -> None:
    backend = open_backend(redis_server.url + "?prefix=cwait")
    async with backend.connected():
        with trio.move_on_after(0.2):
            await lease1(backend, wait=10)  # cancelled inside its BLPOP
        await backend.create_run(new_run(item(7)))
        le = await lease1(backend, wait=5)
        assert le is not None and le.item_id == "7"
