"""Storage for distributed runs: one contract (`Backend`), three implementations.

`open_backend(url)` picks one by URL: `memory://[NAME]` (in-process), `sqlite:///PATH`
(several processes on one machine) or `redis://HOST:PORT/DB` (many machines). Query
parameters tune them: `ttl` (seconds a finished run is kept), and for Redis `prefix`
(key namespace); for SQLite `busy_timeout` (seconds).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from floxide._errors import BackendError, PayloadError
from floxide._public import publish
from floxide.backends._base import (
    Backend,
    CommitPlan,
    CommitResult,
    ContextUpdate,
    ErrorRecord,
    Lease,
    NewItem,
    NewRun,
    NodeMetrics,
    Output,
    RunContext,
    RunMetrics,
    RunRecord,
    RunStatus,
    ScopeOpen,
    WorkerInfo,
    count_scopes,
)
from floxide.backends._memory import MemoryBackend
from floxide.backends._sqlite import SqliteBackend

__all__ = [
    "Backend",
    "CommitPlan",
    "CommitResult",
    "ContextUpdate",
    "ErrorRecord",
    "Lease",
    "MemoryBackend",
    "NewItem",
    "NewRun",
    "NodeMetrics",
    "Output",
    "PayloadError",
    "RunContext",
    "RunMetrics",
    "RunRecord",
    "RunStatus",
    "ScopeOpen",
    "SqliteBackend",
    "WorkerInfo",
    "count_scopes",
    "open_backend",
]


def _float(params: dict[str, list[str]], name: str, default: float, url: str) -> float:
    raw = params.get(name)
    if not raw:
        return default
    try:
        return float(raw[-1])
    except ValueError:
        raise BackendError(f"backend URL {url!r}: {name}={raw[-1]!r} is not a number") from None


def open_backend(url: str) -> Backend:
    """Open the backend a URL names (`memory://`, `sqlite:///path`, `redis://host:port/db`).

    Nothing is contacted yet: connection problems surface, as `BackendError` naming the URL,
    on first use.
    """
    parts = urlsplit(url)
    params = parse_qs(parts.query)
    ttl = _float(params, "ttl", 7 * 86400.0, url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryBackend(url.split("?", 1)[0], ttl=ttl)
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise BackendError(
                f"backend URL {url!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        return SqliteBackend(
            path, url=url, ttl=ttl, busy_timeout=_float(params, "busy_timeout", 30.0, url)
        )
    if scheme == "redis":
        try:
            from floxide.backends._redis import RedisBackend
        except ImportError as e:
            raise BackendError(
                f"backend URL {url!r} needs the Redis extra: pip install 'floxide[redis]' ({e})"
            ) from e
        return RedisBackend.from_url(url, ttl=ttl)
    raise BackendError(
        f"unknown backend URL {url!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )


publish(__name__, globals())
del publish
