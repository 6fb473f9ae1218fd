"""Merging contexts of parallel work items: the `Merge` protocol and built-in merge values.

Checkpointed and distributed runs give each work item its own copy of the context and
merge the copies back. Each built-in value here is a semilattice (its `merge` is
idempotent, commutative and associative), so merging the same contribution twice, in any
order or grouping, gives the same context: a retried or duplicated work item never counts
twice.

- `Counter`: a number that branches add to; each work item's contribution is kept under
  its id, and merging keeps the larger contribution per id.
- `Max` / `Min`: the largest / smallest value seen.
- `SetUnion`: a growing set.
- `EventLog`: an append-only log in causal and branch order, deduplicated by event id.
- `Fixed`: a value every branch must agree on (disagreement raises `MergeConflictError`).
- `Mergeable`: a base class giving an attrs class a field-wise `merge`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

import attrs

from floxide._context import current_item
from floxide._errors import FloxideError

__all__ = [
    "MERGE_WITH",
    "Counter",
    "Event",
    "EventLog",
    "Fixed",
    "Max",
    "Merge",
    "MergeConflictError",
    "Mergeable",
    "Min",
    "SetUnion",
    "merge_values",
]

T = TypeVar("T")


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


OT = TypeVar("OT", bound=_Ordered)


@runtime_checkable
class Merge(Protocol):
    """A value that can combine with another copy of itself: `a.merge(b)`.

    floxide's built-in merge values are semilattices: `a.merge(a) == a`,
    `a.merge(b) == b.merge(a)` and `a.merge(b).merge(c) == a.merge(b.merge(c))`.
    Keep those laws in your own implementations, or re-running a work item can change
    the result.
    """

    def merge(self, other: Self) -> Self:
        """Combine `self` with `other` into a new value; neither is modified."""
        ...


class MergeConflictError(FloxideError, ValueError):
    """Two copies of a value that must agree (a `Fixed`, an event id, a plain field) differ."""


def _item_key() -> str:
    item = current_item()
    return item.id if item is not None else ""


# --------------------------------------------------------------------------- Counter


def _check_counts(_: Any, attribute: attrs.Attribute[Any], value: dict[str, int]) -> None:
    for key, n in value.items():
        if n < 0:
            raise ValueError(f"Counter.{attribute.name}[{key!r}] must be >= 0, got {n}")


@attrs.frozen
class Counter:
    """A count that parallel work items add to without ever counting one item twice.

    `add(n)` records `n` under the id of the running work item (see `floxide.item_scope`);
    `merge` keeps, per item id, the larger total, so merging a duplicate or a re-run of the
    same item changes nothing. Increments and decrements are kept apart (a PN-counter), so
    negative `n` works too. `value` is the sum.

    ```python
    ctx.orders = ctx.orders.add(1)
    ```
    """

    increments: dict[str, int] = attrs.field(factory=dict, validator=_check_counts)
    decrements: dict[str, int] = attrs.field(factory=dict, validator=_check_counts)

    @property
    def value(self) -> int:
        """The count: all increments minus all decrements."""
        return sum(self.increments.values()) - sum(self.decrements.values())

    def __int__(self) -> int:
        return self.value

    def add(self, n: int = 1, *, key: str | None = None) -> Counter:
        """A counter with `n` more, recorded under `key` (default: the running item's id)."""
        key = _item_key() if key is None else key
        if n >= 0:
            inc = dict(self.increments)
            inc[key] = inc.get(key, 0) + n
            return Counter(inc, dict(self.decrements))
        dec = dict(self.decrements)
        dec[key] = dec.get(key, 0) - n
        return Counter(dict(self.increments), dec)

    def merge(self, other: Counter) -> Counter:
        """Per item id, keep the larger contribution."""
        return Counter(
            _max_per_key(self.increments, other.increments),
            _max_per_key(self.decrements, other.decrements),
        )


def _max_per_key(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        if n > out.get(key, n - 1):
            out[key] = n
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- Max / Min


@attrs.frozen
class Max(Generic[OT]):
    """The largest value seen: `merge` keeps the larger (values must be totally ordered)."""

    value: OT

    def update(self, value: OT) -> Max[OT]:
        """A `Max` that has also seen `value`."""
        return self.merge(Max(value))

    def merge(self, other: Max[OT]) -> Max[OT]:
        return other if self.value < other.value else self


@attrs.frozen
class Min(Generic[OT]):
    """The smallest value seen: `merge` keeps the smaller (values must be totally ordered)."""

    value: OT

    def update(self, value: OT) -> Min[OT]:
        """A `Min` that has also seen `value`."""
        return self.merge(Min(value))

    def merge(self, other: Min[OT]) -> Min[OT]:
        return other if other.value < self.value else self


# --------------------------------------------------------------------------- SetUnion


def _frozen(values: Iterable[T]) -> frozenset[T]:
    return frozenset(values)


@attrs.frozen
class SetUnion(Generic[T]):
    """A set that only grows: `merge` is the union. Elements must be hashable."""

    items: frozenset[T] = attrs.field(factory=frozenset, converter=_frozen)

    def add(self, *values: T) -> SetUnion[T]:
        """A set with `values` added."""
        return SetUnion(self.items.union(values))

    def merge(self, other: SetUnion[T]) -> SetUnion[T]:
        return SetUnion(self.items | other.items)

    def __contains__(self, value: object) -> bool:
        return value in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


# --------------------------------------------------------------------------- EventLog


@attrs.frozen
class Event(Generic[T]):
    """One entry of an `EventLog`.

    `id` identifies the event across copies (appending inside a work item derives it from
    the item's id, so a re-run of the item makes the same ids); `position` is the branch
    position of the work item that appended it; `seq` is one more than the largest `seq`
    that item could see (a logical clock), so an event sorts after everything before it.
    """

    id: str
    position: tuple[int, ...]
    seq: int
    value: T


def _sort_key(event: Event[Any]) -> tuple[int, tuple[int, ...], str]:
    return (event.seq, event.position, event.id)


def _related(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether one position is a prefix of the other (same line of descent)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _normalize(events: Iterable[Event[T]]) -> tuple[Event[T], ...]:
    by_id: dict[str, Event[T]] = {}
    for event in events:
        seen = by_id.get(event.id)
        if seen is None:
            by_id[event.id] = event
        elif seen != event:
            raise MergeConflictError(
                f"EventLog: two different events share id {event.id!r}: {seen!r} and {event!r}"
            )
    return tuple(sorted(by_id.values(), key=_sort_key))


@attrs.frozen
class EventLog(Generic[T]):
    """An append-only log that parallel work items write to.

    The order is causal, then by branch: each event comes after every event the work item
    appending it could see (those of its ancestors and, at a join, of the whole fan-out),
    and events of concurrent branches are ordered by branch position, the order `run_all`
    reports outputs in. A branch's own events stay in the order it appended them. This
    order depends only on the workflow, never on scheduling or on which copy merged first.
    `merge` is the union by event id: the same event merged twice appears once. Two
    different events with one id raise `MergeConflictError`.

    ```python
    ctx.log = ctx.log.append("paid")
    ctx.log.values   # ["validated", "paid", ...]
    ```
    """

    events: tuple[Event[T], ...] = attrs.field(default=(), converter=_normalize)

    def append(
        self, value: T, *, id: str | None = None, position: tuple[int, ...] | None = None
    ) -> EventLog[T]:
        """A log with `value` appended.

        `id` defaults to `"<item id>.<n>"` for the n-th event the running work item
        appended (a random id outside any run); `position` to the item's branch position.
        """
        item = current_item()
        if position is None:
            position = item.position if item is not None else ()
        if id is None:
            if item is None:
                id = uuid.uuid4().hex
            else:
                prefix = f"{item.id}."
                id = prefix + str(sum(1 for e in self.events if e.id.startswith(prefix)))
        if any(e.id == id for e in self.events):
            raise ValueError(f"EventLog already has an event with id {id!r}")
        seq = 1 + max(
            (e.seq for e in self.events if _related(e.position, position)), default=-1
        )
        return EventLog((*self.events, Event(id, tuple(position), seq, value)))

    def merge(self, other: EventLog[T]) -> EventLog[T]:
        return EventLog((*self.events, *other.events))

    @property
    def values(self) -> list[T]:
        """The event values, in log order."""
        return [e.value for e in self.events]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event[T]]:
        return iter(self.events)


# --------------------------------------------------------------------------- Fixed


@attrs.frozen
class Fixed(Generic[T]):
    """A value that every copy must agree on, set at most once (None means not set yet).

    `merge` of an unset and a set `Fixed` is the set one; of two equal values, that value;
    of two different values, `MergeConflictError` (the run's step fails rather than silently
    picking one).
    """

    value: T | None = None

    @property
    def is_set(self) -> bool:
        return self.value is not None

    def get(self) -> T:
        """The value; `LookupError` if not set."""
        if self.value is None:
            raise LookupError("Fixed value is not set")
        return self.value

    def merge(self, other: Fixed[T]) -> Fixed[T]:
        if other.value is None or self.value == other.value:
            return self
        if self.value is None:
            return other
        raise MergeConflictError(f"Fixed values disagree: {self.value!r} != {other.value!r}")


# --------------------------------------------------------------------------- Mergeable

MERGE_WITH = "floxide_merge"
"""Field metadata key for a custom merge of one field of a `Mergeable` class:
`attrs.field(metadata={MERGE_WITH: fn})`, `fn(mine, theirs) -> merged`. Keep `fn` a
semilattice (idempotent, commutative, associative)."""


class Mergeable:
    """Base class that gives an attrs class a field-wise `merge` (the class must be attrs).

    Each field is merged by, in order: a function in its metadata under `MERGE_WITH`; its
    value's own `merge` (built-in merge values, nested `Mergeable` classes, `SharedState`);
    otherwise the two values must be equal (like `Fixed`), else `MergeConflictError` names
    the field. Built only from semilattices, the derived merge is a semilattice too.

    ```python
    @attrs.define
    class Ctx(Mergeable):
        region: str                                  # must agree
        orders: Counter = attrs.field(factory=Counter)
        peak: Max[int] = attrs.field(default=Max(0))
    ```
    """

    __slots__ = ()

    def merge(self, other: Self) -> Self:
        cls = type(self)
        if type(other) is not cls:
            raise TypeError(f"cannot merge {cls.__name__} with {type(other).__name__}")
        if not attrs.has(type(self)):
            raise TypeError(f"{cls.__name__} derives from Mergeable but is not an attrs class")
        init: dict[str, Any] = {}
        later: dict[str, Any] = {}
        fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)  # type: ignore[arg-type]
        for field in fields:
            merged = _merge_field(cls, field, getattr(self, field.name), getattr(other, field.name))
            if field.init:
                init[field.alias or field.name] = merged
            else:
                later[field.name] = merged
        result = cls(**init)
        for name, value in later.items():
            object.__setattr__(result, name, value)
        return result


def merge_values(mine: T, theirs: T) -> T:
    """Merge two values the way `Mergeable` merges a field without custom metadata.

    By the value's own `merge` if it has one; otherwise the values must be equal, else
    `MergeConflictError`.
    """
    merge = getattr(mine, "merge", None)
    if callable(merge):
        merged: T = merge(theirs)
        return merged
    if mine == theirs:
        return mine
    raise MergeConflictError(
        f"values differ between copies ({mine!r} != {theirs!r}) and have no merge; "
        "use a merge value (Counter, Max, Min, SetUnion, EventLog, Fixed) or a Mergeable class"
    )


def _merge_field(cls: type, field: attrs.Attribute[Any], mine: Any, theirs: Any) -> Any:
    custom: Callable[[Any, Any], Any] | None = field.metadata.get(MERGE_WITH)
    if custom is not None:
        return custom(mine, theirs)
    merge = getattr(mine, "merge", None)
    if callable(merge):
        return merge(theirs)
    if mine == theirs:
        return mine
    raise MergeConflictError(
        f"{cls.__name__}.{field.name} differs between copies ({mine!r} != {theirs!r}) and has "
        "no merge; use a merge value (Counter, Max, Min, SetUnion, EventLog, Fixed)"
    )
