"""Distributed runs in one process: orchestrator and workers on memory, SQLite and Redis."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from floxide import (
    Next,
    NextAll,
    Node,
    NodeError,
    NoOutputError,
    RunCancelled,
    RunTimeoutError,
    Transition,
    Workflow,
    with_timeout,
    workflow,
)
from floxide.backends import Backend, NewItem, NewRun, open_backend
from floxide.distributed import (
    Orchestrator,
    RunStatus,
    UnknownRunError,
    Worker,
    WorkerPool,
    queue_name,
)
from tests.distributed_workflows import (
    Ctx,
    Done,
    Inc,
    NoFallback,
    Plain,
    Rescue,
    WithFallback,
    fan_join,
    retrying,
)

FAST = {"lease_seconds": 2.0, "idle_wait": 0.2}


async def with_workers(
    wf: Workflow[Any, Any, Any],
    backend: Backend,
    body: Callable[[list[Worker[Any, Any, Any]]], Awaitable[None]],
    *,
    n: int = 1,
    concurrency: int = 4,
    **kw: Any,
) -> None:
    """Run `body` while `n` workers serve `wf`; stop them afterwards."""
    settings = {**FAST, **kw}
    workers = [Worker(wf, backend, concurrency=concurrency, **settings) for _ in range(n)]
    async with trio.open_nursery() as nursery:
        for w in workers:
            await nursery.start(w.run)
        try:
            await body(workers)
        finally:
            for w in workers:
                w.stop()


async def test_fan_join_gives_local_result_and_merged_context(backend: Backend) -> None:
    wf = fan_join()
    local_ctx = Ctx()
    expected = await wf.run(local_ctx, 20)
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Ctx(), 20)
        assert await orch.wait(run_id, timeout=30) == expected == sum(i * i for i in range(20))
        ctx = await orch.context(run_id)
        assert ctx.squared.value == 20  # each item counted once
        assert sorted(ctx.seen) == list(range(20))
        assert await orch.status(run_id) is RunStatus.COMPLETED
        m = await orch.metrics(run_id)
        assert (m.done, m.in_flight, m.queued, m.failed) == (22, 0, 0, 0)
        assert m.per_node["square"].count == 20
        assert await orch.results(run_id) == [expected]
        assert run_id in [r.run_id for r in await orch.list_runs()]

    await with_workers(wf, backend, body, n=2)


async def test_durable_retries_then_success(backend: Backend, tmp_path: Path) -> None:
    wf = retrying(failures=2, attempts=3, dir=str(tmp_path))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 4)
        assert await orch.wait(run_id, timeout=30) == "done 40"
        errors = await orch.errors(run_id)
        assert [(e.node, e.attempt, e.kind) for e in errors] == [
            ("flaky", 1, "node"),
            ("flaky", 2, "node"),
        ]
        assert "ConnectionError: flaky call 1 for 4" in errors[0].message
        assert (await orch.metrics(run_id)).retried == 2

    await with_workers(wf, backend, body)


async def test_retries_exhausted_fail_the_run(backend: Backend, tmp_path: Path) -> None:
    wf = retrying(failures=5, attempts=2, dir=str(tmp_path))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 3)
        with pytest.raises(NodeError, match=r"flaky call 2 for 3") as info:
            await orch.wait(run_id, timeout=30)
        assert info.value.node == "flaky" and info.value.attempt == 2
        assert info.value.run_id == run_id
        assert await orch.status(run_id) is RunStatus.FAILED

    await with_workers(wf, backend, body)


async def test_on_failure_fallback_and_plain_failure(backend: Backend) -> None:
    ok = WithFallback(inc=Inc(), done=Done(), rescue=Rescue())
    bad = NoFallback(inc=Inc(), done=Done())
    o1, o2 = Orchestrator(ok, backend), Orchestrator(bad, backend)

    async def body(_: object) -> None:
        r1 = await o1.start_run(Plain(), -5)
        r2 = await o2.start_run(Plain(), -5)
        assert await o1.wait(r1, timeout=30) == "rescued -5"
        with pytest.raises(NodeError, match="negative input -5"):
            await o2.wait(r2, timeout=30)
        errors = await o2.errors(r2)
        assert errors[-1].node == "inc" and "ValueError" in errors[-1].message

    async def both(_: object) -> None:
        await with_workers(bad, backend, body)

    await with_workers(ok, backend, both)


@attrs.frozen
class Sleep(Node[Plain, int, int]):
    seconds: float

    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        await trio.sleep(self.seconds)
        return Next(input)


@attrs.frozen
class Spread(Node[Plain, int, int]):
    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        return NextAll(range(input))


@workflow
class Slow(Workflow[Plain, int, int]):
    spread: Spread
    sleep: Sleep

    start = "spread"
    edges = {"spread": ["sleep"], "sleep": []}


async def test_run_timeout(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(5.0))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 2, timeout=0.3)
        with pytest.raises(RunTimeoutError):
            await orch.wait(run_id, timeout=30)
        rec = await orch.info(run_id)
        assert rec.status is RunStatus.FAILED and rec.error_kind == "timeout"

    await with_workers(wf, backend, body)


async def test_node_longer_than_lease_keeps_its_item(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(5.0))  # 2.5 leases long
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 2)
        assert await orch.results(run_id, timeout=30) == [0, 1]
        assert await orch.errors(run_id) == []  # heartbeats kept the leases: no re-run

    await with_workers(wf, backend, body, lease_seconds=2.0, n=2)


async def test_cancel_stops_commits(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0.2))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 40)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).done < 3:
                await trio.sleep(0.02)
        assert await orch.cancel(run_id) is RunStatus.CANCELLED
        done_at_cancel = (await orch.metrics(run_id)).done
        outputs_at_cancel = len(await backend.outputs(run_id))
        await trio.sleep(0.5)  # items in flight finish; their commits must be discarded
        assert (await orch.metrics(run_id)).done == done_at_cancel
        assert len(await backend.outputs(run_id)) == outputs_at_cancel
        assert await orch.status(run_id) is RunStatus.CANCELLED
        with pytest.raises(RunCancelled):
            await orch.wait(run_id)
        assert await orch.cancel(run_id) is RunStatus.CANCELLED  # idempotent

    await with_workers(wf, backend, body, concurrency=4)


async def test_pause_and_resume(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0.05))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 30)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).done < 3:
                await trio.sleep(0.01)
        assert await orch.pause(run_id) is RunStatus.PAUSED
        with trio.fail_after(30):  # items in flight finish, nothing new starts
            while (await orch.metrics(run_id)).in_flight:
                await trio.sleep(0.02)
        done = (await orch.metrics(run_id)).done
        await trio.sleep(0.4)
        assert (await orch.metrics(run_id)).done == done < 31
        assert await orch.status(run_id) is RunStatus.PAUSED
        assert await orch.resume(run_id) is RunStatus.RUNNING
        assert await orch.results(run_id, timeout=30) == list(range(30))

    await with_workers(wf, backend, body, concurrency=2)


async def test_graceful_stop_gives_items_back(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0.5))
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 4)
    first = Worker(wf, backend, concurrency=4, grace_period=0.0, **FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).in_flight < 4:
                await trio.sleep(0.01)
        first.stop()
    # the stopped worker gave its items back at once: no lease expiry, no error
    m = await orch.metrics(run_id)
    assert (m.in_flight, m.queued, m.done) == (0, 4, 1)

    async def body(_: object) -> None:
        assert await orch.results(run_id, timeout=30) == [0, 1, 2, 3]
        assert await orch.errors(run_id) == []

    await with_workers(wf, backend, body)


async def test_grace_period_lets_items_finish(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0.3))
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 3)
    worker = Worker(wf, backend, concurrency=4, grace_period=30.0, **FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).in_flight < 3:
                await trio.sleep(0.01)
        worker.stop()
    assert await orch.status(run_id) is RunStatus.COMPLETED
    assert await orch.results(run_id) == [0, 1, 2]


@attrs.frozen
class SlowStep(Node[Plain, int, int]):
    seconds: float

    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        await trio.sleep(self.seconds)
        return Next(input + 1)


@workflow
class SlowChain(Workflow[Plain, int, int]):
    a: SlowStep
    b: SlowStep
    c: SlowStep

    start = "a"
    edges = {"a": ["b"], "b": ["c"], "c": []}


async def test_stopping_mid_chain_takes_no_next_step(backend: Backend) -> None:
    """A commit leases the next step to its worker, unless the worker is stopping."""
    step = SlowStep(0.5)
    wf = SlowChain(a=step, b=step, c=step)
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 0)
    first = Worker(wf, backend, concurrency=1, grace_period=30.0, **FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        with trio.fail_after(30):  # step a committed and leased b to the same worker
            while (await orch.metrics(run_id)).done < 1:
                await trio.sleep(0.01)
        m = await orch.metrics(run_id)
        assert (m.in_flight, m.queued) == (1, 0)
        first.stop()
    # b finished within the grace period; c was left queued for others, not leased
    m = await orch.metrics(run_id)
    assert (m.done, m.in_flight, m.queued) == (2, 0, 1)

    async def body(_: object) -> None:
        assert await orch.wait(run_id, timeout=30) == 3
        assert await orch.errors(run_id) == []

    await with_workers(wf, backend, body)


async def test_repeatedly_expired_lease_fails_the_item(backend: Backend) -> None:
    wf = NoFallback(inc=Inc(), done=Done())
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 1)
    queue = queue_name(wf)
    for _ in range(3):  # three workers that die holding the item
        got = await backend.lease(queue, "doomed", limit=1, lease_seconds=0.01, wait=1.0)
        assert len(got) == 1
        await trio.sleep(0.05)
        assert await backend.reap() == 1

    async def body(_: object) -> None:
        with pytest.raises(NodeError, match="lease expired") as info:
            await orch.wait(run_id, timeout=30)
        assert info.value.attempt == 4

    await with_workers(wf, backend, body, max_lease_attempts=3)


async def test_expired_lease_is_rerun_once(backend: Backend) -> None:
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Ctx(), 3)
    got = await backend.lease(queue_name(wf), "dead", limit=1, lease_seconds=0.01, wait=1.0)
    assert len(got) == 1
    await trio.sleep(0.05)

    async def body(_: object) -> None:
        assert await orch.wait(run_id, timeout=30) == 5
        assert [e.kind for e in await orch.errors(run_id)] == ["lease"]
        assert (await orch.context(run_id)).squared.value == 3

    await with_workers(wf, backend, body, reap_interval=0.05)


async def test_unknown_run_and_workers(backend: Backend) -> None:
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    with pytest.raises(UnknownRunError, match="nope"):
        await orch.status("nope")
    with pytest.raises(UnknownRunError):
        await orch.cancel("nope")

    async def body(workers: list[Worker[Any, Any, Any]]) -> None:
        seen = {w.worker_id for w in await orch.workers()}
        assert seen == {w.worker_id for w in workers}
        assert len(seen) == 2  # random ids never collide

    await with_workers(wf, backend, body, n=2)
    assert await orch.workers() == []


async def test_no_output_and_duplicate_run_id(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 0, run_id="fixed-id")
        with pytest.raises(NoOutputError):
            await orch.wait(run_id, timeout=30)
        assert await orch.results(run_id) == []
        with pytest.raises(Exception, match="already exists"):
            await orch.start_run(Plain(), 1, run_id="fixed-id")

    await with_workers(wf, backend, body)


async def test_wait_timeout_and_worker_pool(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(0))
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 3)
    with pytest.raises(TimeoutError):
        await orch.wait(run_id, timeout=0.1)
    pool = WorkerPool(wf, backend, concurrency=2, **FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        assert await orch.results(run_id, timeout=30) == [0, 1, 2]
        pool.stop()
    assert pool.steps == 4


async def test_distributed_example(backend: Backend) -> None:
    from examples import distributed

    result, words, local, steps = await distributed.main(backend.url)
    assert result == local == "4 documents, 17 words"
    assert (words, steps) == (17, 6)


async def test_corrupt_payload_fails_the_run(backend: Backend) -> None:
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    bad_item = b'{"node": "split", "input": "many", "position": [], "scopes": []}'
    await backend.create_run(
        NewRun(
            run_id="corrupt",
            workflow=wf.graph.name,
            queue=queue_name(wf),
            fingerprint=wf.graph.fingerprint,
            input=b"1",
            context=orch.codec.encode_context(Ctx()),
            items=[NewItem("0", "split", bad_item)],
        )
    )

    async def body(_: object) -> None:
        with pytest.raises(NodeError, match=r"does not fit int") as info:
            await orch.wait("corrupt", timeout=30)
        assert info.value.node == "split"

    await with_workers(wf, backend, body)


async def test_log_records_carry_run_node_item_attempt(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wf = retrying(failures=1, attempts=2, dir=str(tmp_path))
    orch = Orchestrator(wf, backend)
    caplog.set_level(logging.DEBUG, logger="floxide")

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 6)
        assert await orch.wait(run_id, timeout=30) == "done 60"
        steps = [r for r in caplog.records if getattr(r, "run_id", None) == run_id]
        retried = [r for r in steps if "retry in" in r.getMessage()]
        assert len(retried) == 1
        rec = retried[0]
        assert (rec.node, rec.item_id, rec.attempt) == ("flaky", "0", 1)  # type: ignore[attr-defined]
        assert {r.node for r in steps} >= {"flaky", "done"}  # type: ignore[attr-defined]
        assert not any("Plain(" in r.getMessage() for r in caplog.records)  # no context dumps

    await with_workers(wf, backend, body)


async def test_opentelemetry_span_per_step() -> None:
    otel_trace = pytest.importorskip("opentelemetry.trace")
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    memory_export = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = memory_export.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    backend = open_backend("memory://")
    wf = fan_join()
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Ctx(), 3)
        assert await orch.wait(run_id, timeout=30) == 5
        spans = [
            s for s in exporter.get_finished_spans() if s.attributes["floxide.run_id"] == run_id
        ]
        assert sorted(s.name for s in spans) == [
            "floxide.step split",
            "floxide.step square",
            "floxide.step square",
            "floxide.step square",
            "floxide.step total",
        ]
        assert {s.attributes["floxide.attempt"] for s in spans} == {1}

    await with_workers(wf, backend, body)


@workflow
class Guarded(Workflow[Plain, int, int]):
    sleep: Node[Plain, int, int]
    fallback: Sleep

    start = "sleep"
    edges = {"sleep": [], "fallback": []}
    on_failure = {"sleep": ["fallback"]}


async def test_node_timeout_goes_to_fallback(backend: Backend) -> None:
    wf = Guarded(sleep=with_timeout(Sleep(30.0), 0.1), fallback=Sleep(0))
    orch = Orchestrator(wf, backend)

    async def body(_: object) -> None:
        run_id = await orch.start_run(Plain(), 9)
        assert await orch.wait(run_id, timeout=30) == 9  # the fallback's output
        assert (await orch.metrics(run_id)).per_node["fallback"].count == 1

    await with_workers(wf, backend, body)


async def test_cancel_stops_a_running_node(backend: Backend) -> None:
    wf = Slow(spread=Spread(), sleep=Sleep(60.0))
    orch = Orchestrator(wf, backend)

    async def body(workers: list[Worker[Any, Any, Any]]) -> None:
        run_id = await orch.start_run(Plain(), 1)
        with trio.fail_after(30):
            while workers[0].in_flight == 0 or (await orch.metrics(run_id)).done < 1:
                await trio.sleep(0.01)
        await orch.cancel(run_id)
        with trio.fail_after(30):  # the heartbeat notices and the node is stopped
            while workers[0].in_flight:
                await trio.sleep(0.02)
        assert await orch.status(run_id) is RunStatus.CANCELLED

    await with_workers(wf, backend, body, lease_seconds=0.6)
