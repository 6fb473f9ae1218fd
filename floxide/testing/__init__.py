"""A conformance kit for backends: `check_backend` runs the whole backend contract.

The contract is what `floxide.backends.Backend` promises (see its docstrings): leases and
their fencing tokens, heartbeats, reaping, `commit` applied atomically and at most once
(a fan-out of thousands of items too: whole, once and in order, or not at all),
join scopes counted innermost first with their fired items and collections, context
merges, contributions (for backends that store them: concurrent, re-run, compaction,
isolation), cancel/pause/resume, run deadlines, durable delayed retries, keeping finished runs
for their TTL, isolation of runs, `commit_and_lease`, `release`, `list_runs` order,
metrics, the errors the protocol names, the worker registry, tracebacks and handled
failures in the error log, retrying a failed run, and calls cancelled at any point (only
`trio.Cancelled` comes out, nothing is lost or counted twice).

A third-party backend is checked the same way as the built-in ones, from any trio test
runner (pytest is not needed)::

    import trio
    from floxide.testing import check_backend

    def test_my_backend() -> None:
        trio.run(check_backend, lambda: MyBackend(...))

Each property runs on a fresh backend from `make_backend` and takes a few seconds at most
in all (short leases, short real sleeps where time must pass). Every property runs even
when an earlier one failed, and the `AssertionError` names each one that failed, e.g.
"heartbeats: a heartbeat did not extend the lease".
"""

from __future__ import annotations

from collections.abc import Callable

from floxide._public import publish
from floxide.backends._base import Backend
from floxide.testing import (
    _big,
    _cancels,
    _commits,
    _contributions,
    _failures,
    _harness,
    _joins,
    _leases,
    _runs,
)

__all__ = ["check_backend"]

_PROPERTIES: tuple[_harness.Property, ...] = (
    *_runs.PROPERTIES,
    *_leases.PROPERTIES,
    *_commits.PROPERTIES,
    *_big.PROPERTIES,
    *_contributions.PROPERTIES,
    *_joins.PROPERTIES,
    *_failures.PROPERTIES,
    *_cancels.PROPERTIES,
)


async def check_backend(make_backend: Callable[[], Backend]) -> None:
    """Check that the backends `make_backend` makes keep the whole backend contract.

    `make_backend` is called with no arguments once per property and must return a fresh,
    empty backend each time (e.g. a new temporary database, or a new key prefix). Only the
    `Backend` protocol is used, plus a numeric `ttl` attribute when the backend has one (the
    kit shortens it to check that finished runs are forgotten). Raises `AssertionError`
    naming every property that failed; returns None when the backend passes.
    """
    await _harness.run_properties(make_backend, _PROPERTIES)


publish(__name__, globals())
del publish
