"""Runs are isolated whatever their ids; cancelling floxide at any await lets `trio.Cancelled`
through (nothing else); waiting callers ride out a Redis restart."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from floxide.backends import Backend, open_backend
from floxide.distributed import Orchestrator, RunStatus, Worker, WorkerPool
from tests.distributed_workflows import Ctx, fan_join
from tests.redis_server import RedisServer, redis_server_path
from tests.test_distributed import with_workers

TRICKY_IDS = [
    "a",
    "a:done",
    "a:scopes",
    "a:outputs",
    "a\x1fb",
    "a\x1f",
    "%",
    "a%3Adone",
    "run:a",
    "é ☃ 🚀",
    "x" * 256,
    " ",
    "a\nb",
    "a\x00b",
]


async def test_tricky_run_ids_share_nothing(backend: Backend) -> None:
    wf = fan_join()
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        for k, run_id in enumerate(TRICKY_IDS):
            assert await orch.start_run(Ctx(), k % 5 + 1, run_id=run_id) == run_id
        for k, run_id in enumerate(TRICKY_IDS):
            n = k % 5 + 1
            assert await orch.wait(run_id, timeout=30) == sum(i * i for i in range(n)), run_id
            assert (await orch.context(run_id)).squared.value == n, run_id
            assert (await orch.metrics(run_id)).done == n + 2, run_id
        listed = {r.run_id for r in await orch.list_runs()}
        assert set(TRICKY_IDS) <= listed

    await with_workers(wf, backend, body, n=2)


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\ud800b", 7, b"bytes"])
async def test_start_run_refuses_bad_run_ids_before_storing(backend: Backend, bad: object) -> None:
    orch = Orchestrator(fan_join(), backend)
    with pytest.raises(ValueError, match="run id"):
        await orch.start_run(Ctx(), 3, run_id=bad)  # type: ignore[arg-type]
    assert await backend.list_runs() == []


async def test_cancelling_at_random_awaits_lets_only_cancelled_through(backend: Backend) -> None:
    """Pools, workers and orchestrator calls cancelled at random points while they talk
    to the backend; afterwards a fresh worker finishes every run."""
    wf = fan_join(delay=0.002)
    orch = Orchestrator(wf, backend)
    rng = random.Random(15)
    run_ids: list[str] = []
    for _ in range(12):
        with trio.move_on_after(rng.uniform(0, 0.01)):
            run_ids.append(await orch.start_run(Ctx(), 6))
    for _ in range(12):
        with trio.move_on_after(rng.uniform(0, 0.05)):
            await WorkerPool(wf, backend, concurrency=3, lease_seconds=1.0, idle_wait=0.1).run()
        with trio.move_on_after(rng.uniform(0, 0.05)):
            await Worker(wf, backend, concurrency=2, lease_seconds=1.0, idle_wait=0.1).run()
        if run_ids:
            with trio.move_on_after(rng.uniform(0, 0.02)):
                await orch.wait(rng.choice(run_ids), timeout=5)
    with trio.CancelScope() as scope:
        scope.cancel()
        await orch.status(run_ids[0]) if run_ids else None

    async def body(_: object) -> None:
        for run_id in run_ids:
            assert await orch.wait(run_id, timeout=60) == sum(i * i for i in range(6))
            assert (await orch.context(run_id)).squared.value == 6
            assert await orch.status(run_id) is RunStatus.COMPLETED

    await with_workers(wf, backend, body, lease_seconds=1.0)


async def test_wait_rides_out_a_redis_restart(tmp_path: Path) -> None:
    exe = redis_server_path()
    if exe is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(exe, tmp_path, appendonly=True)
    server.start()
    try:
        backend = open_backend(server.url)
        wf = fan_join()
        orch = Orchestrator(wf, backend)
        run_id = await orch.start_run(Ctx(), 5)
        result: list[int] = []

        async def waiter() -> None:
            result.append(await orch.wait(run_id, timeout=60))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.3)
            await trio.to_thread.run_sync(server.stop)
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(server.start)

            async def body(_: object) -> None:
                with trio.fail_after(60):
                    while not result:
                        await trio.sleep(0.05)

            await with_workers(wf, backend, body)
        assert result == [sum(i * i for i in range(5))]
    finally:
        server.stop()


async def test_redis_index_of_runs_and_token_expire(redis_server: RedisServer) -> None:
    import coredis

    prefix = f"exp{random.randrange(10**9)}"
    backend = open_backend(f"{redis_server.url}?prefix={prefix}&ttl=0.3")
    wf = fan_join()
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        first = await orch.start_run(Ctx(), 2)
        await orch.wait(first, timeout=30)
        await trio.sleep(0.5)
        second = await orch.start_run(Ctx(), 2)
        await orch.wait(second, timeout=30)
        client = coredis.Redis("127.0.0.1", redis_server.port, decode_responses=True)
        async with client:
            members = await client.zrange(f"{prefix}:{{0}}:runs", 0, -1)
            assert first not in members and second in members
            # a finished run's keys (its token sequence is in its record) expire with it
            assert [k async for k in client.scan_iter(f"{prefix}:*{first}*")] == []
            second_keys = [k async for k in client.scan_iter(f"{prefix}:*{second}*")]
            assert second_keys
            for key in second_keys:
                assert 0 < await client.pttl(key) <= 300, key

    await with_workers(wf, backend, body)
