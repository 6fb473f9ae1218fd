"""Big fan-outs: a fan-out node's commit holds its items once and completes on Redis."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import attrs
import trio

from floxide import Next, NextAll, Node, Transition, Workflow, workflow
from floxide._step import ScopeRef, WorkItem
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, Worker
from floxide.distributed._codec import payload_codec
from floxide.distributed._worker import _encoded
from tests.distributed_workflows import fan_join
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
