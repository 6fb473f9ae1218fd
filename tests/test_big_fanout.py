"""Big fan-outs: a fan-out node's commit holds its items once and completes on Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import coredis
import pytest
import trio

from floxide import Next, NextAll, Node, Transition, Workflow, workflow
from floxide._step import ScopeRef, WorkItem
from floxide.backends import CommitResult, _redis_stage, open_backend
from floxide.backends._redis import RedisBackend
from floxide.backends._redis_keys import rid
from floxide.distributed import Orchestrator, Worker
from floxide.distributed._codec import payload_codec
from floxide.distributed._worker import _encoded
from floxide.testing._harness import QUEUE, item, lease1, must_lease, new_run, plan
from tests.distributed_workflows import fan_join, worker_env
from tests.redis_server import RedisServer


@attrs.define
class Empty:
    """No context: a big run measures items, not merges."""


@attrs.frozen
class Split(Node[Empty, int, int]):
    async def process(self, ctx: Empty, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Pass(Node[Empty, int, int]):
    async def process(self, ctx: Empty, input: int) -> Transition[int]:
        return Next(input)


@attrs.frozen
class Sum(Node[Empty, Sequence[int], int]):
    async def process(self, ctx: Empty, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class Big(Workflow[Empty, int, int]):
    split: Split
    w: Pass
    total: Sum

    start = "split"
    edges = {"split": ["w"], "w": ["total"], "total": []}
    joins = {"total": "split"}


def big() -> Big:
    """The big fan-out, for worker processes (`floxide worker tests.test_big_fanout:big`)."""
    return Big(split=Split(), w=Pass(), total=Sum())


def _work(n: int) -> list[WorkItem]:
    scopes: tuple[ScopeRef, ...] = (("s" * 16, "split"),)
    return [WorkItem(f"{i:016x}", "square", i, (i,), scopes) for i in range(n)]


def test_encoding_keeps_order_and_releases_each_work_item() -> None:
    codec = payload_codec(fan_join().graph)
    work = _work(50)
    expected = [codec.encode_item(i) for i in work]
    items = _encoded(work, codec)
    assert work == []  # every work item was handed over
    assert [it.item_id for it in items] == [f"{i:016x}" for i in range(50)]
    assert [it.payload for it in items] == expected
    assert {it.node for it in items} == {"square"}


def test_a_big_fan_outs_items_are_not_in_memory_twice() -> None:
    """Encoding n items peaks near the larger of (the work items, their encodings), not at
    their sum: a fan-out's commit does not hold every item twice."""
    codec = payload_codec(fan_join().graph)
    n = 20_000
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        work = _work(n)
        with_work = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        items = _encoded(work, codec)
        current, peak = tracemalloc.get_traced_memory()
        encoded = current - base
        assert len(items) == n
        # Holding both at once (a list built beside the work items) would peak at their sum.
        assert peak - base < max(with_work, encoded) + 0.3 * min(with_work, encoded)
    finally:
        tracemalloc.stop()


async def test_a_20000_item_fan_out_completes_on_redis_with_two_workers(
    redis_server: RedisServer,
) -> None:
    url = f"{redis_server.url}?prefix=big{id(redis_server) % 10_000}"
    n = 20_000
    wf = Big(split=Split(), w=Pass(), total=Sum())
    backend = open_backend(url)
    try:
        orch = Orchestrator(wf, backend)
        workers = [Worker(wf, backend, concurrency=16) for _ in range(2)]
        async with trio.open_nursery() as nursery:
            for w in workers:
                await nursery.start(w.run)
            try:
                small = await orch.start_run(Empty(), 100)  # the server served other runs
                assert await orch.wait(small, timeout=60) == sum(range(100))
                run_id = await orch.start_run(Empty(), n)
                assert await orch.wait(run_id, timeout=240) == sum(range(n))
                m = await orch.metrics(run_id)
                assert (m.done, m.in_flight, m.queued, m.failed) == (n + 2, 0, 0, 0)
            finally:
                for w in workers:
                    w.stop()
    finally:
        await backend.aclose()


# -- staging: a commit of many items on Redis (`floxide.backends._redis_stage`) ------------
N_STAGED = 4500
"""Items of a commit that stages (over 2000: five slices of 1000)."""


class _Killed(BaseException):
    """The worker dies here (nothing after runs, as under SIGKILL)."""


async def _stage_keys(url: str, prefix: str) -> list[bytes]:
    async with coredis.Redis(*_host_port(url)) as c:
        return sorted(await c.keys(f"{prefix}:*:stage:*"))


def _backend(redis_server: RedisServer) -> RedisBackend:
    b = open_backend(f"{redis_server.url}?prefix=stg{uuid.uuid4().hex[:8]}")
    assert isinstance(b, RedisBackend)
    return b


async def test_a_big_commit_leaves_no_staged_items(redis_server: RedisServer) -> None:
    b = _backend(redis_server)
    run = new_run(item("root"))
    await b.create_run(run)
    lease = await must_lease(b)
    made = [item(f"i{k}", "b") for k in range(N_STAGED)]
    assert await b.commit(lease, plan(items=made)) is CommitResult.COMMITTED
    assert await _stage_keys(redis_server.url, b.prefix) == []
    rec = await b.get_run(run.run_id)
    assert rec is not None and rec.pending == N_STAGED


async def test_a_worker_killed_while_staging_applies_nothing_and_the_rerun_everything(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = _backend(redis_server)
    run = new_run(item("root"))
    await b.create_run(run)
    lease = await must_lease(b, seconds=0.3)
    made = [item(f"i{k}", "b") for k in range(N_STAGED)]
    real = RedisBackend._script
    calls = 0

    async def dies_on_the_third_slice(self: Any, name: str, keys: Any, args: Any) -> Any:
        nonlocal calls
        if name == "STAGE":
            calls += 1
            if calls == 3:
                raise _Killed
        return await real(self, name, keys, args)

    monkeypatch.setattr(RedisBackend, "_script", dies_on_the_third_slice)
    with pytest.raises(_Killed):
        await b.commit(lease, plan(items=made))
    monkeypatch.setattr(RedisBackend, "_script", real)
    staged = await _stage_keys(redis_server.url, b.prefix)
    assert len(staged) == 1  # two slices sent, inert, and expiring
    async with coredis.Redis(*_host_port(redis_server.url)) as c:
        assert 0 < await c.pttl(staged[0]) <= 600_000
    rec = await b.get_run(run.run_id)
    assert rec is not None and rec.pending == 1 and await lease1(b) is None  # nothing applied
    await trio.sleep(0.4)
    assert await b.reap() == 1
    again = await must_lease(b)
    assert again.item_id == "root" and again.token != lease.token
    assert await b.commit(again, plan(items=made)) is CommitResult.COMMITTED
    got = await b.lease(QUEUE, "w2", limit=N_STAGED + 1, lease_seconds=30.0, wait=0.0)
    ids = [le.item_id for le in got]
    while more := await b.lease(QUEUE, "w2", limit=1000, lease_seconds=30.0, wait=0.0):
        ids += [le.item_id for le in more]
    assert ids == [it.item_id for it in made]  # every item once: none from the dead commit
    assert await b.commit(lease, plan(items=made)) is CommitResult.LOST  # the dead lease


async def test_staged_items_that_went_missing_are_staged_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staging list that does not hold all the items (expired, or a slice sent twice by
    a retried call) is refused by the commit, which writes nothing; the items are sent again."""
    b = _backend(redis_server)
    run = new_run(item("root"))
    await b.create_run(run)
    lease = await must_lease(b)
    made = [item(f"i{k}", "b") for k in range(N_STAGED)]
    real = RedisBackend._stage
    stages = 0

    async def loses_the_first(self: Any, key: str, items: Any) -> None:
        nonlocal stages
        stages += 1
        await real(self, key, items)
        if stages == 1:
            async with coredis.Redis(*_host_port(redis_server.url)) as c:
                await c.rpop(key)  # a value lost: the list no longer holds them all

    monkeypatch.setattr(RedisBackend, "_stage", loses_the_first)
    assert await b.commit(lease, plan(items=made)) is CommitResult.COMMITTED
    assert stages == 2
    rec = await b.get_run(run.run_id)
    assert rec is not None and rec.pending == N_STAGED
    assert await _stage_keys(redis_server.url, b.prefix) == []


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


async def test_sigkill_while_a_big_fan_out_commits_loses_and_duplicates_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker process SIGKILLed while it stages a 40,000-item fan-out: no item of it
    appears; the fan-out node runs again elsewhere and the run completes exactly."""
    prefix = f"kill{uuid.uuid4().hex[:8]}"
    url = f"{redis_server.url}?prefix={prefix}"
    n = 40_000
    wf = big()
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    env = {**worker_env(), "FLOXIDE_LEASE_SECONDS": "1", "FLOXIDE_GRACE_SECONDS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "floxide.cli",
        "worker",
        "tests.test_big_fanout:big",
        "--backend",
        url,
        "--concurrency",
        "4",
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        run_id = await orch.start_run(Empty(), n)
        procs.append(subprocess.Popen(cmd, env=env))
        assert isinstance(backend, RedisBackend)
        staging = _redis_stage.key(backend._keys.run(rid(run_id)), 1)  # the first lease's
        async with coredis.Redis(*_host_port(redis_server.url)) as c:
            with trio.fail_after(60):  # the split step is staging its items
                while not await c.exists([staging]):
                    await trio.sleep(0.001)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        m = await orch.metrics(run_id)
        killed_mid_commit = m.done == 0
        if killed_mid_commit:
            assert m.queued == 0  # none of the fan-out's items appeared
        procs.append(subprocess.Popen(cmd, env=env))
        assert await orch.wait(run_id, timeout=240) == sum(range(n))
        m = await orch.metrics(run_id)
        assert (m.done, m.in_flight, m.queued) == (n + 2, 0, 0)  # nothing lost or doubled
        assert m.per_node["split"].count == 1 and m.per_node["w"].count == n
        assert killed_mid_commit  # (else the kill came too late to test anything)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        await backend.aclose()
