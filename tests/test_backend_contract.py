"""One contract, every backend: memory, SQLite and Redis pass the conformance kit.

The contract itself lives in `floxide.testing` (`check_backend`), where third-party
backends are checked the same way. What stays here is what only the built-in backends
promise (URL options, what every lease carries, Redis and SQLite specifics).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import trio

from floxide import BackendError
from floxide.backends import (
    Backend,
    CommitResult,
    MemoryBackend,
    RunContext,
    SqliteBackend,
    _registry,
    open_backend,
    register_backend,
)
from floxide.backends._registry import masked_url
from floxide.testing import check_backend
from floxide.testing._harness import ctx, item, lease1, new_run, plan
from tests.redis_server import RedisServer


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


# -- the scheme registry ----------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo registrations made by a test."""
    saved = dict(_registry._openers), dict(_registry._examples)
    yield
    _registry._openers.clear()
    _registry._openers.update(saved[0])
    _registry._examples.clear()
    _registry._examples.update(saved[1])


def test_unknown_scheme_lists_the_known_ones(registry: None) -> None:
    register_backend("mystore", lambda url: MemoryBackend())
    with pytest.raises(BackendError) as e:
        open_backend("ftp://x")
    msg = str(e.value)
    assert msg.startswith("unknown backend URL 'ftp://x': use ")
    assert msg.endswith(
        "memory://, sqlite:///PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB,"
        " redis+cluster://HOST:PORT[,HOST:PORT...], rediss+cluster://HOST:PORT[,...],"
        " postgresql://USER@HOST:PORT/DB, postgres://USER@HOST:PORT/DB or mystore://"
    )


def test_a_registered_scheme_opens_with_its_opener(registry: None) -> None:
    opened: list[str] = []

    def opener(url: str) -> Backend:
        opened.append(url)
        return MemoryBackend()

    register_backend("MyStore", opener, example="mystore://BUCKET")
    b = open_backend("mystore://bucket/x?opt=1")
    assert isinstance(b, MemoryBackend) and opened == ["mystore://bucket/x?opt=1"]
    with pytest.raises(BackendError, match=r"mystore://BUCKET"):
        open_backend("nope://")
    with pytest.raises(ValueError, match="not a URL scheme"):
        register_backend("my store", opener)
    with pytest.raises(TypeError, match="must be callable"):
        register_backend("bad", "not a function")  # type: ignore[arg-type]


def _entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=_registry.ENTRY_POINT_GROUP)


def test_an_entry_point_is_loaded_on_its_first_url(
    registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def fake_entry_points(*, group: str, name: str) -> list[EntryPoint]:
        asked.append((group, name))
        points = {"plugged": "floxide.backends:MemoryBackend", "broken": "no_such_mod:x"}
        return [_entry_point(name, points[name])] if name in points else []

    monkeypatch.setattr(_registry, "entry_points", fake_entry_points)
    assert isinstance(open_backend("memory://"), MemoryBackend)
    assert asked == []  # registered schemes never look at entry points
    assert isinstance(open_backend("plugged://"), MemoryBackend)
    assert isinstance(open_backend("plugged://again"), MemoryBackend)
    assert asked == [("floxide.backends", "plugged")]  # loaded once, then registered
    with pytest.raises(BackendError, match=r"entry point 'no_such_mod:x' for scheme 'broken'"):
        open_backend("broken://user:secret@host")
    with pytest.raises(BackendError, match="unknown backend URL"):
        open_backend("absent://")


async def test_credentials_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert masked_url("redis://me:s3cret@host:6379/0?x=1") == "redis://me:***@host:6379/0?x=1"
    assert masked_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert masked_url("redis://host:6379/0") == "redis://host:6379/0"
    assert masked_url("redis://me@host/0") == "redis://me@host/0"
    with pytest.raises(BackendError) as e:
        open_backend("ftp://me:s3cret@x")
    assert "s3cret" not in str(e.value) and "me:***@x" in str(e.value)
    with pytest.raises(BackendError) as e:
        open_backend("memory://me:s3cret@x?ttl=soon")
    assert "s3cret" not in str(e.value)
    unreachable = open_backend("redis://me:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in unreachable.url and "s3cret" not in repr(unreachable)
    with pytest.raises(BackendError, match=r"redis://me:\*\*\*@127\.0\.0\.1:1/0") as e:
        await unreachable.get_run("x")
    assert "s3cret" not in str(e.value)
    monkeypatch.setitem(sys.modules, "floxide.backends._redis", None)
    with pytest.raises(BackendError, match=r"needs the Redis extra") as e:
        open_backend("redis://me:s3cret@host:6379/0")
    assert "s3cret" not in str(e.value) and "redis://me:***@host:6379/0" in str(e.value)


def test_url_options_still_reach_the_built_in_backends(tmp_path: Path) -> None:
    m = open_backend("memory://named?ttl=12")
    assert isinstance(m, MemoryBackend) and m.url == "memory://named" and m.ttl == 12
    s = open_backend(f"sqlite:///{tmp_path / 'x.db'}?ttl=5&busy_timeout=2")
    assert isinstance(s, SqliteBackend) and s.ttl == 5
    with pytest.raises(BackendError, match="busy_timeout='x' is not a number"):
        open_backend(f"sqlite:///{tmp_path / 'x.db'}?busy_timeout=x")
    r = open_backend("redis://127.0.0.1:1/3?prefix=p&ttl=9")
    assert r.ttl == 9 and r.prefix == "p"  # type: ignore[attr-defined]
