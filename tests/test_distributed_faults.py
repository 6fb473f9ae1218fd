"""Faults with real processes: killed workers, SIGTERM, a Redis or PostgreSQL restart mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from floxide.backends import Backend, open_backend
from floxide.distributed import Orchestrator, RunStatus
from tests.distributed_workflows import Ctx, fan_join, worker_env
from tests.postgres_server import PostgresServer, postgres_bin_dir
from tests.redis_server import RedisServer, redis_server_path

SPEC = "tests.distributed_workflows:fault_fan_join"


class Workers:
    """Worker processes started with the `floxide worker` command."""

    def __init__(self, url: str, tmp: Path, delay: float, lease: float = 1.0) -> None:
        self.url = url
        self.marker = tmp / "running"
        self.env = worker_env()
        self.env.update(
            FLOXIDE_TEST_DELAY=str(delay),
            FLOXIDE_TEST_MARKER=str(self.marker),
            FLOXIDE_LEASE_SECONDS=str(lease),
            FLOXIDE_GRACE_SECONDS="0",
            FLOXIDE_LOG_LEVEL=os.environ.get("FLOXIDE_TEST_WORKER_LOG", "WARNING"),
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 2, **env: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "floxide.cli", "worker", SPEC, "--backend", self.url]
        proc = subprocess.Popen([*cmd, "--concurrency", str(concurrency)], env={**self.env, **env})
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def workers_factory() -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for w in made:
        w.stop_all()


async def _wait_marker(marker: Path) -> None:
    with trio.fail_after(30):
        while not marker.exists():
            await trio.sleep(0.01)


@pytest.mark.parametrize("backend_kind", ["sqlite", "redis", "redis-cluster", "postgres"])
async def test_sigkill_mid_node_reruns_item_elsewhere(
    backend_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],
) -> None:
    url = backend_url
    backend: Backend = open_backend(url)
    wf = fan_join()
    n = 6
    expected = await wf.run(Ctx(), n)
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Ctx(), n)
    procs = Workers(url, tmp_path, delay=0.4)
    workers_factory.append(procs)
    first = procs.start(concurrency=2)
    await _wait_marker(procs.marker)  # a square step is running in the first worker
    first.send_signal(signal.SIGKILL)
    first.wait()
    procs.start(concurrency=3)
    assert await orch.wait(run_id, timeout=60) == expected
    ctx = await orch.context(run_id)
    assert ctx.squared.value == n  # nothing lost, nothing counted twice
    assert sorted(ctx.seen) == list(range(n))
    errors = await orch.errors(run_id)
    assert errors and {e.kind for e in errors} == {"lease"}
    assert all("did not finish in time" in e.message for e in errors)
    m = await orch.metrics(run_id)
    assert m.done == n + 2 and m.per_node["square"].count == n
    await backend.aclose()


@pytest.mark.parametrize("backend_kind", ["sqlite", "redis", "redis-cluster", "postgres"])
async def test_sigterm_is_graceful(
    backend_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],
) -> None:
    url = backend_url
    backend = open_backend(url)
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Ctx(), 4)
    # a long lease: if the items were not given back, the run could not finish in time
    procs = Workers(url, tmp_path, delay=0.5, lease=120.0)
    workers_factory.append(procs)
    first = procs.start(concurrency=4)
    await _wait_marker(procs.marker)
    first.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(first.wait) == 0
    procs.start(concurrency=4)
    assert await orch.wait(run_id, timeout=60) == 14
    assert await orch.errors(run_id) == []  # no lease expired: items were given back
    assert (await orch.context(run_id)).squared.value == 4
    await backend.aclose()


async def test_redis_restart_with_aof_mid_run(
    tmp_path: Path, workers_factory: list[Workers]
) -> None:
    exe = redis_server_path()
    if exe is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(exe, tmp_path / "aof", appendonly=True)
    server.start()
    try:
        url = server.url
        backend = open_backend(url)
        wf = fan_join()
        n = 16
        expected = await wf.run(Ctx(), n)
        orch = Orchestrator(wf, backend)
        run_id = await orch.start_run(Ctx(), n)
        procs = Workers(url, tmp_path, delay=0.2, lease=2.0)
        workers_factory.append(procs)
        procs.start(concurrency=2)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).done < 3:
                await trio.sleep(0.02)
        await trio.to_thread.run_sync(server.stop)
        await trio.sleep(0.5)  # workers see the server gone and back off
        await trio.to_thread.run_sync(server.start)
        assert await orch.wait(run_id, timeout=60) == expected
        assert (await orch.context(run_id)).squared.value == n
        assert await orch.status(run_id) is RunStatus.COMPLETED
        assert all(p.poll() is None for p in procs.procs)  # the worker survived
        await backend.aclose()
    finally:
        server.stop()


async def test_postgres_restart_mid_run(tmp_path: Path, workers_factory: list[Workers]) -> None:
    """Workers and the orchestrator ride out a PostgreSQL restart (immediate shutdown: the
    server recovers from its WAL); the run completes with nothing lost or counted twice."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        url = server.url
        backend = open_backend(url)
        wf = fan_join()
        n = 16
        expected = await wf.run(Ctx(), n)
        orch = Orchestrator(wf, backend)
        run_id = await orch.start_run(Ctx(), n)
        procs = Workers(url, tmp_path, delay=0.2, lease=2.0)
        workers_factory.append(procs)
        procs.start(concurrency=2)
        with trio.fail_after(30):
            while (await orch.metrics(run_id)).done < 3:
                await trio.sleep(0.02)
        await trio.to_thread.run_sync(server.stop, "immediate")
        await trio.sleep(0.5)  # workers see the server gone and back off
        await trio.to_thread.run_sync(server.start)
        assert await orch.wait(run_id, timeout=60) == expected
        assert (await orch.context(run_id)).squared.value == n
        assert await orch.status(run_id) is RunStatus.COMPLETED
        assert all(p.poll() is None for p in procs.procs)  # the worker survived
        await backend.aclose()
    finally:
        server.stop()
        server.cleanup()


@pytest.mark.parametrize("backend_kind", ["sqlite", "redis", "redis-cluster", "postgres"])
async def test_cancel_and_pause_with_worker_processes(
    backend_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],
) -> None:
    url = backend_url
    backend = open_backend(url)
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    procs = Workers(url, tmp_path, delay=0.1, lease=5.0)
    workers_factory.append(procs)
    procs.start(concurrency=2)

    paused = await orch.start_run(Ctx(), 12)
    with trio.fail_after(30):
        while (await orch.metrics(paused)).done < 3:
            await trio.sleep(0.01)
    assert await orch.pause(paused) is RunStatus.PAUSED
    with trio.fail_after(30):
        while (await orch.metrics(paused)).in_flight:
            await trio.sleep(0.01)
    done = (await orch.metrics(paused)).done
    await trio.sleep(0.5)
    assert (await orch.metrics(paused)).done == done  # nothing started while paused
    await orch.resume(paused)
    assert await orch.wait(paused, timeout=60) == sum(i * i for i in range(12))

    cancelled = await orch.start_run(Ctx(), 12)
    with trio.fail_after(30):
        while (await orch.metrics(cancelled)).done < 3:
            await trio.sleep(0.01)
    await orch.cancel(cancelled)
    after = await orch.metrics(cancelled)
    context = await backend.context(cancelled)
    await trio.sleep(0.5)  # steps in flight in the worker finish: none may commit
    assert await orch.metrics(cancelled) == after
    assert await backend.context(cancelled) == context
    assert await orch.status(cancelled) is RunStatus.CANCELLED
    await backend.aclose()
