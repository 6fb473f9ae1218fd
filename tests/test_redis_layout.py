"""Run records that floxide 0.1 wrote on Redis are still read."""

from __future__ import annotations

import uuid

import coredis

from floxide.backends import open_backend
from floxide.distributed import Orchestrator
from tests.distributed_workflows import Ctx, fan_join
from tests.redis_server import RedisServer
from tests.test_distributed import with_workers


async def test_node_metrics_in_the_three_fields_of_0_1(redis_server: RedisServer) -> None:
    prefix = f"l{uuid.uuid4().hex[:8]}"
    backend = open_backend(f"{redis_server.url}?prefix={prefix}")
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Ctx(), 3)

    async def finish(_: object) -> None:
        assert await orch.wait(run_id, timeout=30) == 0 + 1 + 4

    await with_workers(wf, backend, finish)
    now = (await orch.metrics(run_id)).per_node
    assert now["square"].count == 3
    client = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with client:
        keys = [k async for k in client.scan_iter(f"{prefix}:*{run_id}".encode())]
        assert len(keys) == 1, keys
        key = keys[0]
        fields = await client.hgetall(key)
        old = {k: v for k, v in fields.items() if k.startswith(b"m|")}
        await client.hdel(key, list(old))
        square = now["square"]
        await client.hset(  # how 0.1 kept them, beside one node in today's form
            key,
            {
                b"m|square|count": b"3",
                b"m|square|total": repr(square.total_seconds).encode(),
                b"m|square|max": repr(square.max_seconds).encode(),
                b"m|split": old[b"m|split"],
                b"m|total|count": b"2",
                b"m|total|total": b"0.5",
                b"m|total|max": b"0.25",
                b"m|total": b"1 0.25 0.5",  # both: a 0.1 run finished after an upgrade
            },
        )
    read = (await orch.metrics(run_id)).per_node
    assert read["square"] == square
    assert read["split"] == now["split"]
    assert (read["total"].count, read["total"].total_seconds, read["total"].max_seconds) == (
        3,
        0.75,
        0.5,
    )
