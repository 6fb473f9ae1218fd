"""Storage for distributed runs: one contract (`Backend`), four implementations.

`open_backend(url)` picks one by URL: `memory://[NAME]` (in-process), `sqlite:///PATH`
(several processes on one machine), `redis://HOST:PORT/DB` or
`postgresql://USER:PASSWORD@HOST:PORT/DB` (many machines). Query parameters tune them:
`ttl` (seconds a finished run is kept), and for Redis `prefix` (key namespace); for SQLite
`busy_timeout` (seconds); for PostgreSQL `floxide_schema` (the tables' schema).

Other backends plug in by URL scheme: `register_backend(scheme, opener)` at import, or an
entry point in the `floxide.backends` group (name: the scheme, object: the opener), loaded
when a URL of that scheme is first opened. `floxide.testing.check_backend` checks that a
backend keeps the contract.

A backend may store contributions (`stores_contributions`): a step's change to a mergeable
context kept under its item id and folded by readers, so concurrent steps never conflict
(`Contribution`, `RunContext.contributions`, `context_write`). Memory, SQLite, Redis and
PostgreSQL do; a backend that does not is given whole contexts and stays correct.
"""

from __future__ import annotations

import floxide.backends._openers  # noqa: F401  (registers the built-in schemes)
from floxide._errors import BackendUnreachableError, PayloadError, UnreadableDataError
from floxide._public import publish
from floxide.backends._base import (
    Backend,
    CommitPlan,
    CommitResult,
    ContextUpdate,
    Contribution,
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
    stores_contributions,
)
from floxide.backends._memory import MemoryBackend
from floxide.backends._registry import open_backend, register_backend
from floxide.backends._sqlite import SqliteBackend

__all__ = [
    "Backend",
    "BackendUnreachableError",
    "CommitPlan",
    "CommitResult",
    "ContextUpdate",
    "Contribution",
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
    "UnreadableDataError",
    "WorkerInfo",
    "count_scopes",
    "open_backend",
    "register_backend",
    "stores_contributions",
]


publish(__name__, globals())
del publish
