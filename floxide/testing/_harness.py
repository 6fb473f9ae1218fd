"""The kit's machinery: named properties, a runner that names what failed, small builders.

A property is an async check of one backend; it states what it expects with `expect`
(an `AssertionError` carrying the sentence), and the runner prefixes the property's name,
so a failure reads "heartbeats: a heartbeat did not extend the lease". Every property gets
a fresh backend from the caller's factory, so one broken behaviour cannot hide another.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from floxide.backends._base import (
    Backend,
    CommitPlan,
    ContextUpdate,
    Lease,
    NewItem,
    NewRun,
)

__all__ = [
    "LEASE",
    "QUEUE",
    "Property",
    "ctx",
    "expect",
    "item",
    "lease1",
    "must_lease",
    "new_run",
    "plan",
    "run_properties",
]

QUEUE = "wf"
"""The queue the kit's runs are created on."""
LEASE = 30.0
"""Lease seconds when a lease must not expire during a property."""
_TIME_LIMIT = 30.0
"""Seconds one property may take before it counts as hung."""
_ids = itertools.count()

Check = Callable[[Backend], Awaitable[None]]


@attrs.frozen
class Property:
    """One checked behaviour: `name` prefixes its failures; `check` runs on a fresh backend."""

    name: str
    check: Check


def expect(condition: object, failure: str) -> None:
    """Fail the running property with `failure` (what the backend did wrong) unless true."""
    if not condition:
        raise AssertionError(failure)


async def run_properties(make_backend: Callable[[], Backend], props: Sequence[Property]) -> None:
    """Run every property on its own backend; raise one `AssertionError` listing the failures."""
    failures: list[str] = []
    first: BaseException | None = None
    for prop in props:
        try:
            await _run_one(make_backend, prop)
        except Exception as group:  # a backend that raises where it should answer fails too
            e = _single(group)
            told = str(e) if isinstance(e, AssertionError) else f"raised {type(e).__name__}: {e}"
            failures.append(f"{prop.name}: {told}")
            first = first or e
    if failures:
        raise AssertionError("\n".join(failures)) from first


def _single(e: Exception) -> Exception:
    """The one exception inside (nested) single-member groups, e.g. from a nursery."""
    while isinstance(e, ExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


async def _run_one(make_backend: Callable[[], Backend], prop: Property) -> None:
    backend = make_backend()
    try:
        with trio.fail_after(_TIME_LIMIT):
            await prop.check(backend)
    except trio.TooSlowError:
        raise AssertionError(f"did not finish within {_TIME_LIMIT:.0f} s") from None
    finally:
        await backend.aclose()


# -- builders ---------------------------------------------------------------------------


def item(i: int | str, node: str = "a", delay: float = 0.0) -> NewItem:
    """Work item `i` of `node` with payload b"p<i>"."""
    return NewItem(item_id=str(i), node=node, payload=f"p{i}".encode(), delay=delay)


def new_run(
    *items: NewItem,
    run_id: str | None = None,
    deadline: float | None = None,
    queue: str = QUEUE,
    context: bytes = b"0",
) -> NewRun:
    """A run of workflow "W" on `queue` with input b"7", holding `items`."""
    return NewRun(
        run_id=run_id or f"run-{next(_ids)}-{uuid.uuid4().hex[:6]}",
        workflow="W",
        queue=queue,
        fingerprint="fp",
        input=b"7",
        context=context,
        items=list(items),
        deadline=deadline,
    )


def plan(
    *,
    context: ContextUpdate | None = None,
    items: Sequence[NewItem] = (),
    **kw: object,
) -> CommitPlan:
    """A `CommitPlan` (keyword arguments as its fields)."""
    return CommitPlan(context=context, items=items, **kw)  # type: ignore[arg-type]


def ctx(value: bytes, base: int = 0) -> ContextUpdate:
    """A context update to `value` from version `base`, without a merge."""
    return ContextUpdate(value, base)


async def lease1(
    b: Backend, worker: str = "w1", seconds: float = LEASE, wait: float = 0.0
) -> Lease | None:
    """Lease at most one item of the kit's queue."""
    got = await b.lease(QUEUE, worker, limit=1, lease_seconds=seconds, wait=wait)
    return got[0] if got else None


async def must_lease(b: Backend, worker: str = "w1", seconds: float = LEASE) -> Lease:
    """Lease one ready item of the kit's queue; fail when there is none."""
    got = await lease1(b, worker, seconds)
    expect(got is not None, "a ready item was not leased")
    assert got is not None
    return got
