"""The built-in backends' URL openers (`memory://`, `sqlite:///`, `redis://`,
`postgresql://` alias `postgres://`), registered
with the scheme registry when `floxide.backends` is imported.

Query options: `ttl` (seconds a finished run is kept) for every scheme; `busy_timeout`
(seconds) for SQLite; `prefix` (key namespace) and, for `rediss://`, the TLS options for
Redis (`_redis_url`); `floxide_schema` for PostgreSQL (other query options go to libpq).
Redis and psycopg are imported only when such a URL is opened, so the `redis` and
`postgres` extras stay optional.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from floxide import _params
from floxide._errors import BackendError
from floxide.backends._base import Backend
from floxide.backends._memory import MemoryBackend
from floxide.backends._registry import masked_url, register_backend
from floxide.backends._sqlite import SqliteBackend

__all__: list[str] = []

_DEFAULT_TTL = 7 * 86400.0


def _float(params: dict[str, list[str]], name: str, default: float, url: str) -> float:
    raw = params.get(name)
    if not raw:
        return default
    try:
        return _params.seconds(name, float(raw[-1]), infinite=name == "ttl")
    except ValueError:
        raise BackendError(
            f"backend URL {masked_url(url)!r}: {name}={raw[-1]!r} is not a number of "
            "seconds > 0"
        ) from None


def _ttl(url: str) -> float:
    return _float(parse_qs(urlsplit(url).query), "ttl", _DEFAULT_TTL, url)


def open_memory(url: str) -> Backend:
    return MemoryBackend(url.split("?", 1)[0], ttl=_ttl(url))


def open_sqlite(url: str) -> Backend:
    parts = urlsplit(url)
    ttl = _ttl(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise BackendError(
            f"backend URL {masked_url(url)!r}: write sqlite:///relative/path.db "
            "or sqlite:////abs/path.db"
        )
    busy = _float(parse_qs(parts.query), "busy_timeout", 30.0, url)
    return SqliteBackend(path, url=url, ttl=ttl, busy_timeout=busy)


def open_redis(url: str) -> Backend:
    ttl = _ttl(url)
    try:
        from floxide.backends._redis import RedisBackend
    except ImportError as e:
        raise BackendError(
            f"backend URL {masked_url(url)!r} needs the Redis extra: "
            f"pip install 'floxide[redis]' ({e})"
        ) from e
    return RedisBackend.from_url(url, ttl=ttl)


def open_postgres(url: str) -> Backend:
    ttl = _ttl(url)
    try:
        from floxide.backends._postgres import PostgresBackend
    except ImportError as e:
        raise BackendError(
            f"backend URL {masked_url(url)!r} needs the PostgreSQL extra: "
            f"pip install 'floxide[postgres]' ({e})"
        ) from e
    return PostgresBackend(url, ttl=ttl)


register_backend("memory", open_memory, example="memory://")
register_backend("sqlite", open_sqlite, example="sqlite:///PATH")
register_backend("redis", open_redis, example="redis://HOST:PORT/DB")
register_backend("rediss", open_redis, example="rediss://HOST:PORT/DB")
register_backend("redis+cluster", open_redis, example="redis+cluster://HOST:PORT[,HOST:PORT...]")
register_backend("rediss+cluster", open_redis, example="rediss+cluster://HOST:PORT[,...]")
register_backend("postgresql", open_postgres, example="postgresql://USER@HOST:PORT/DB")
register_backend("postgres", open_postgres, example="postgres://USER@HOST:PORT/DB")
