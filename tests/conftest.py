"""Shared pytest configuration for floxide's tests (trio mode is set in pyproject).

The backend fixtures live here, once: `backend_kind` is parametrized over the built-in
backends, Redis twice: one server and a 3-master Redis Cluster ("redis-cluster"); a test
narrows it with `@pytest.mark.parametrize("backend_kind", [...])`;
`make_backend_url` gives a URL of a fresh, empty store of that kind at each call,
`backend_url` one such URL and `backend` a backend opened on it (closed afterwards).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from floxide.backends import Backend, open_backend
from tests.postgres_server import PostgresServer, postgres_bin_dir
from tests.redis_cluster import RedisCluster, redis_cli_path
from tests.redis_server import RedisServer, redis_server_path

settings.register_profile(
    "floxide",
    deadline=None,
    max_examples=int(os.environ.get("FLOXIDE_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("floxide")

BACKEND_KINDS = ["memory", "sqlite", "redis", "redis-cluster", "postgres"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session.

    Skipped when redis-server is missing, unless FLOXIDE_REQUIRE_REDIS=1 (then it fails).
    """
    exe = redis_server_path()
    if exe is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(exe, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free loopback ports for the whole session.

    Skipped when redis-server or redis-cli is missing, unless FLOXIDE_REQUIRE_REDIS=1.
    """
    exe = redis_server_path()
    cli = redis_cli_path()
    if exe is None or cli is None:
        if os.environ.get("FLOXIDE_REQUIRE_REDIS") == "1":
            pytest.fail("redis-cli is not installed but FLOXIDE_REQUIRE_REDIS=1")
        pytest.skip("redis-server or redis-cli is not installed")
    cluster = RedisCluster(exe, cli, tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (a cluster in a temporary directory) for the whole session.

    Skipped when PostgreSQL is missing, unless FLOXIDE_REQUIRE_POSTGRES=1 (then it fails).
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Which built-in backend a test runs on: "memory", "sqlite", "redis", "redis-cluster"
    or "postgres"."""
    return str(request.param)


@pytest.fixture
def make_backend_url(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], str]:
    """Each call: the URL of a new, empty store of `backend_kind` (named memory store,
    SQLite file in the test's temporary directory, Redis key prefix or PostgreSQL schema)."""
    numbers = itertools.count()
    server: RedisServer | None = None
    if backend_kind == "redis":
        server = request.getfixturevalue("redis_server")
    if backend_kind == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return lambda: f"{cluster.url}?prefix=t{uuid.uuid4().hex[:8]}"
    if backend_kind == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        return lambda: f"{pg.url}?floxide_schema=t{uuid.uuid4().hex[:10]}"

    def make() -> str:
        if backend_kind == "memory":
            return f"memory://{uuid.uuid4().hex}"
        if backend_kind == "sqlite":
            return f"sqlite:///{tmp_path / f'runs-{next(numbers)}.db'}"
        assert server is not None
        return f"{server.url}?prefix=t{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def backend_url(make_backend_url: Callable[[], str]) -> str:
    """The URL of a fresh, empty store of `backend_kind`."""
    return make_backend_url()


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    """A backend of `backend_kind` on a fresh store, closed after the test."""
    b = open_backend(backend_url)
    try:
        yield b
    finally:
        await b.aclose()
