"""Numeric parameters checked where they are given; exact input in Python (issue 11)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from floxide import BackendError
from floxide.backends import open_backend
from floxide.checkpoints import SqliteCheckpointStore
from floxide.distributed import Orchestrator, Worker
from tests.cli_workflows import no_fallback
from tests.distributed_workflows import Ctx, Plain, fan_join

BAD_SECONDS = [math.nan, math.inf, -5, 0, "3", True]


@pytest.mark.parametrize("timeout", BAD_SECONDS)
async def test_run_timeouts(timeout: object) -> None:
    with pytest.raises((ValueError, TypeError), match="timeout"):
        await fan_join().run(Ctx(), 3, timeout=timeout)  # type: ignore[arg-type]
    orch = Orchestrator(fan_join(), open_backend("memory://"))
    with pytest.raises((ValueError, TypeError), match="timeout"):
        await orch.start_run(Ctx(), 3, timeout=timeout)  # type: ignore[arg-type]
    assert await orch.list_runs() == []


@pytest.mark.parametrize("concurrency", [2.5, 2.0, math.nan, math.inf, 0, -1, True])
async def test_concurrency(concurrency: object) -> None:
    with pytest.raises((ValueError, TypeError), match="concurrency"):
        await fan_join().run(Ctx(), 3, concurrency=concurrency)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError), match="concurrency"):
        Worker(fan_join(), open_backend("memory://"), concurrency=concurrency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lease_seconds": math.nan},
        {"lease_seconds": -1},
        {"grace_period": math.inf},
        {"heartbeat_interval": math.nan},
        {"reap_interval": 0},
        {"max_lease_attempts": 1.5},
    ],
)
def test_worker_parameters(kwargs: dict[str, object]) -> None:
    (name,) = kwargs
    with pytest.raises((ValueError, TypeError), match=name):
        Worker(fan_join(), open_backend("memory://"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1.5, True, "5", None])
async def test_exact_input_in_python(value: object) -> None:
    ran: list[int] = []
    with pytest.raises(ValueError, match="does not fit int"):
        await no_fallback().run(Plain(), value)  # type: ignore[arg-type]
    assert ran == []
    orch = Orchestrator(no_fallback(), open_backend("memory://"))
    with pytest.raises(ValueError, match="does not fit int"):
        await orch.start_run(Plain(), value)  # type: ignore[arg-type]
    assert await orch.list_runs() == []


async def test_sqlite_refuses_a_checkpoint_store_file(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    store = SqliteCheckpointStore(path)
    await no_fallback().run_with_checkpoint(Plain(), 1, store=store)
    await store.aclose()
    before = path.read_bytes()
    backend = open_backend(f"sqlite:///{path}")
    with pytest.raises(BackendError, match="did not create"):
        await backend.list_runs()
    await backend.aclose()
    assert path.read_bytes() == before


async def test_sqlite_layout_1_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    backend = open_backend(f"sqlite:///{path}")
    await backend.list_runs()
    await backend.aclose()
    conn = sqlite3.connect(path)  # back to layout 1: no traceback/handled/graph/in_flight
    for table, col in (("errors", "traceback"), ("errors", "handled"), ("workers", "graph"),
                       ("workers", "in_flight")):  # fmt: skip
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
    conn.execute("UPDATE floxide_meta SET value = 1 WHERE key = 'schema'")
    conn.commit()
    conn.close()
    orch = Orchestrator(no_fallback(), open_backend(f"sqlite:///{path}"))
    run_id = await orch.start_run(Plain(), -1)
    assert await orch.errors(run_id) == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM floxide_meta WHERE key = 'schema'").fetchone() == (2,)
    conn.close()


@pytest.mark.parametrize("query", ["ttl=nan", "ttl=-1", "busy_timeout=inf", "ttl=abc"])
def test_backend_url_numbers(tmp_path: Path, query: str) -> None:
    with pytest.raises(BackendError, match=query.split("=")[0]):
        open_backend(f"sqlite:///{tmp_path / 'x.db'}?{query}")


async def test_orchestrator_retry(backend_url: str, tmp_path: Path) -> None:
    import trio

    from floxide import FloxideError, NodeError
    from floxide.distributed import RunStatus, UnknownRunError
    from tests.distributed_workflows import retrying

    wf = retrying(failures=1, attempts=1, dir=str(tmp_path))
    backend = open_backend(backend_url)
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Plain(), 3, timeout=60)
    worker = Worker(wf, backend, lease_seconds=5, idle_wait=0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        with pytest.raises(NodeError, match="flaky call 1 for 3"):
            await orch.wait(run_id, timeout=30)
        (err,) = await orch.errors(run_id)
        assert err.traceback and "flaky call 1 for 3" in err.traceback and not err.handled
        assert await orch.retry(run_id, timeout=30) in (RunStatus.RUNNING, RunStatus.COMPLETED)
        assert await orch.wait(run_id, timeout=30) == "done 30"
        with pytest.raises(FloxideError, match="it completed"):
            await orch.retry(run_id)
        with pytest.raises(UnknownRunError):
            await orch.retry("nope")
        with pytest.raises(ValueError, match="timeout"):
            await orch.retry(run_id, timeout=math.nan)
        worker.stop()
    await backend.aclose()
