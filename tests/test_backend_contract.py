"""One contract, every backend: memory, SQLite and Redis pass the conformance kit.

The contract itself lives in `floxide.testing` (`check_backend`), where third-party
backends are checked the same way. What stays here is what only the built-in backends
promise (URL options, what every lease carries, Redis and SQLite specifics).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from floxide import BackendError
from floxide.backends import Backend, CommitResult, RunContext, open_backend
from floxide.testing import check_backend
from floxide.testing._harness import QUEUE, ctx, item, lease1, new_run, plan
from tests.redis_server import RedisServer

__all__ = ["QUEUE", "item", "new_run", "plan"]  # shared with the SQLite group-commit tests


async def test_backend_keeps_the_contract(make_backend_url: Callable[[], str]) -> None:
    started = time.monotonic()
    await check_backend(lambda: open_backend(make_backend_url()))
    assert time.monotonic() - started < 60  # seconds per backend, not minutes


async def test_every_lease_carries_context_and_run_deadline(backend: Backend) -> None:
    """The built-in backends give both with every lease (the protocol allows None)."""
    run = new_run(item(1))
    await backend.create_run(run)
    lease = await lease1(backend, "w1")
    assert lease is not None
    assert lease.context == RunContext(b"0", 0) and lease.run_deadline == math.inf
    step = plan(context=ctx(b"1"), items=[item(2, "b")])
    result, got = await backend.commit_and_lease(lease, step, limit=1, lease_seconds=30)
    assert result is CommitResult.COMMITTED and len(got) == 1
    assert got[0].context == RunContext(b"1", 1)  # the context as this very commit left it
    assert got[0].run_deadline == math.inf  # given with the lease: the run has none

    late = new_run(item(1), deadline=time.time() + 60)
    await backend.create_run(late)
    lease = await lease1(backend)
    assert lease is not None and lease.run_id == late.run_id
    assert lease.run_deadline == pytest.approx(late.deadline)


async def test_finished_runs_expire(backend: Backend) -> None:
    """The `ttl` URL option: seconds a finished run is kept."""
    sep = "&" if "?" in backend.url else "?"
    url = backend.url
    if url.startswith("redis"):
        prefix = getattr(backend, "prefix", "floxide")
        url = f"{url}?prefix={prefix}&ttl=0.3"
    else:
        url = f"{url}{sep}ttl=0.3"
    short = open_backend(url)
    run = new_run(item(1))
    await short.create_run(run)
    lease = await lease1(short)
    assert lease is not None
    assert await short.commit(lease, plan()) is CommitResult.COMMITTED
    assert await short.get_run(run.run_id) is not None
    await trio.sleep(0.5)
    await short.reap()
    assert await short.get_run(run.run_id) is None
    assert run.run_id not in [r.run_id for r in await short.list_runs()]
    await short.aclose()


async def test_redis_scripts_survive_a_flush_and_a_lost_connection(
    request: pytest.FixtureRequest,
) -> None:
    """Scripts are loaded again when the server forgot them; a dropped connection is replaced."""
    server: RedisServer = request.getfixturevalue("redis_server")
    import coredis

    b = open_backend(f"{server.url}?prefix=t{uuid.uuid4().hex[:8]}")
    async with b.connected(), coredis.Redis(port=server.port) as admin:
        run = new_run(item(1), item(2))
        await b.create_run(run)
        await admin.script_flush()
        first = await lease1(b)
        assert first is not None
        await admin.client_kill(type_=coredis.PureToken.NORMAL, skipme=True)
        assert await b.commit(first, plan()) is CommitResult.COMMITTED
        second = await lease1(b)
        assert second is not None and second.item_id == "2"
    await b.aclose()


def test_open_backend_rejects_bad_urls() -> None:
    with pytest.raises(BackendError, match="unknown backend URL"):
        open_backend("ftp://x")
    with pytest.raises(BackendError, match="sqlite:///"):
        open_backend("sqlite://")
    with pytest.raises(BackendError, match="not a number"):
        open_backend("memory://?ttl=soon")


async def test_sqlite_unreadable_file_is_a_backend_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    b = open_backend(f"sqlite:///{bad}")
    with pytest.raises(BackendError, match=r"garbage\.db"):
        await b.get_run("x")
