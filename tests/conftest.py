"""Shared pytest configuration for floxide's tests (trio mode is set in pyproject)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.redis_server import RedisServer, redis_server_path

settings.register_profile(
    "floxide",
    deadline=None,
    max_examples=int(os.environ.get("FLOXIDE_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("floxide")


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
