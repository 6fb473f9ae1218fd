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

`contribution(read, mine)` is what a work item added to a context it read: small (a
Counter's own entry, a set's new elements, a log's new events), and merging it into any
context that has grown from `read` gives the same as merging `mine`. Distributed runs
commit contributions instead of whole contexts, so concurrent items never conflict.
"""

from __future__ import annotations

import bisect
import copy
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

import attrs

from floxide._errors import MergeConflictError
from floxide._running import current_item

__all__ = [
    "MERGE_WITH",
    "Counter",
    "Event",
    "EventLog",
    "Fixed",
    "Max",
    "Merge",
    "Mergeable",
    "Min",
    "SetUnion",
    "contribution",
    "merge_values",
    "private_copy",
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
    same item changes nothing. An item that runs again (a retry, or a re-run after a crash,
    on a context that may already hold its earlier contribution) replaces its contribution
    rather than adding to it. Increments and decrements are kept apart (a PN-counter), so
    negative `n` works too. `value` is the sum.

    ```python
    ctx.orders = ctx.orders.add(1)
    ```

    The counter keeps one entry per contributing work item; to total something over a very
    large fan-out, prefer a join that sums the branch outputs.
    """

    increments: dict[str, int] = attrs.field(factory=dict, validator=_check_counts)
    decrements: dict[str, int] = attrs.field(factory=dict, validator=_check_counts)
    _lineage: object = attrs.field(init=False, eq=False, repr=False, factory=object)
    _origin: tuple[Counter, frozenset[str]] | None = attrs.field(
        init=False, eq=False, repr=False, default=None
    )
    """The counter `add` started from and the keys it changed since (`contribution` then
    looks at those keys only)."""

    @property
    def value(self) -> int:
        """The count: all increments minus all decrements."""
        return sum(self.increments.values()) - sum(self.decrements.values())

    def __int__(self) -> int:
        return self.value

    def add(self, n: int = 1, *, key: str | None = None) -> Counter:
        """A counter with `n` more, recorded under `key` (default: the running item's id)."""
        if not isinstance(n, int):
            raise TypeError(f"Counter.add takes a whole number, got {n!r}")
        inc = dict(self.increments)
        dec = dict(self.decrements)
        if key is None:
            item = current_item()
            if item is None:
                key = ""
            else:
                key = item.id
                if item.first_touch(self._lineage):  # a new execution of this item
                    inc.pop(key, None)
                    dec.pop(key, None)
        if n >= 0:
            inc[key] = inc.get(key, 0) + n
        else:
            dec[key] = dec.get(key, 0) - n
        new = _counter(inc, dec, self._lineage)
        origin = self._origin
        touched = (self, frozenset((key,))) if origin is None else (origin[0], origin[1] | {key})
        object.__setattr__(new, "_origin", touched)
        return new

    def merge(self, other: Counter) -> Counter:
        """Per item id, keep the larger contribution."""
        if type(other) is not Counter:  # a subclass or a stranger: validated as before
            return Counter(
                _max_per_key(self.increments, other.increments),
                _max_per_key(self.decrements, other.decrements),
            )
        return _counter(  # both are valid counters: so is their merge
            _max_per_key(self.increments, other.increments),
            _max_per_key(self.decrements, other.decrements),
            object(),
        )


def _counter(inc: dict[str, int], dec: dict[str, int], lineage: object) -> Counter:
    """A Counter from trusted parts, without re-validating every entry."""
    new: Counter = object.__new__(Counter)
    object.__setattr__(new, "increments", inc)
    object.__setattr__(new, "decrements", dec)
    object.__setattr__(new, "_lineage", lineage)
    object.__setattr__(new, "_origin", None)
    return new


def _max_per_key(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Per key, the larger count: a copy of the bigger dict, updated from the smaller (a
    contribution merged into a big fold costs its own size and one copy, no sort: the
    encoding sorts, see `floxide._merge_serde`)."""
    if len(a) < len(b):
        a, b = b, a
    out = dict(a)
    get = out.get
    for key, n in b.items():
        if n > get(key, n - 1):
            out[key] = n
    return out


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


_Key = tuple[int, tuple[int, ...], str]


def _sort_key(event: Event[Any]) -> _Key:
    return (event.seq, event.position, event.id)


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


def _item_of(event_id: str) -> str | None:
    """The work item id an event id was derived from (`"<item>.<n>"`), if it was."""
    item, dot, n = event_id.rpartition(".")
    return item if dot and n.isdigit() else None


class _LogIndex:
    """Lookups that make `EventLog.append` cheap; rebuilt from the events when missing."""

    __slots__ = ("at", "ids", "keys", "per_item", "subtree")

    def __init__(self, events: Iterable[Event[Any]]) -> None:
        self.ids: set[str] = set()
        self.per_item: dict[str, int] = {}  # events appended by each work item
        self.at: dict[tuple[int, ...], int] = {}  # largest seq at exactly this position
        self.subtree: dict[tuple[int, ...], int] = {}  # largest seq at or below it
        self.keys: list[_Key] = []
        for event in events:
            self.add(event)

    def add(self, event: Event[Any]) -> int:
        """Record `event`; returns where it goes in the sorted events."""
        self.ids.add(event.id)
        item = _item_of(event.id)
        if item is not None:
            self.per_item[item] = self.per_item.get(item, 0) + 1
        pos, seq = event.position, event.seq
        if self.at.get(pos, -1) < seq:
            self.at[pos] = seq
        for i in range(len(pos) + 1):
            prefix = pos[:i]
            if self.subtree.get(prefix, -1) < seq:
                self.subtree[prefix] = seq
        key = _sort_key(event)
        where = bisect.bisect(self.keys, key)
        self.keys.insert(where, key)
        return where

    def seen_by(self, position: tuple[int, ...]) -> int:
        """The largest seq on the line of descent through `position` (-1 if none)."""
        best = self.subtree.get(position, -1)
        for i in range(len(position)):
            best = max(best, self.at.get(position[:i], -1))
        return best


@attrs.frozen
class EventLog(Generic[T]):
    """An append-only log that parallel work items write to.

    The order is causal, then by branch: each event comes after every event the work item
    appending it could see (those of its ancestors and, at a join, of the whole fan-out),
    and events of concurrent branches are ordered by branch position, the order `run_all`
    reports outputs in. A branch's own events stay in the order it appended them. This
    order depends only on the workflow, never on scheduling or on which copy merged first.
    `merge` is the union by event id: the same event merged twice appears once. Two
    different events with one id raise `MergeConflictError`. An item that runs again (a
    retry, or a re-run after a crash) replaces the events it appended before.

    ```python
    ctx.log = ctx.log.append("paid")
    ctx.log.values   # ["validated", "paid", ...]
    ```
    """

    events: tuple[Event[T], ...] = attrs.field(default=(), converter=_normalize)
    _lineage: object = attrs.field(init=False, eq=False, repr=False, factory=object)
    _index: _LogIndex | None = attrs.field(init=False, eq=False, repr=False, default=None)

    def _take_index(self) -> _LogIndex:
        """This log's index, handed over to the log about to be made from it.

        Logs are usually replaced by the result of `append`, so the index moves along
        instead of being copied; if this log is used again it rebuilds its own.
        """
        index = self._index
        object.__setattr__(self, "_index", None)
        return index if index is not None else _LogIndex(self.events)

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
        position = tuple(position)
        events = self.events
        index = self._take_index()
        if id is None and item is not None:
            if item.first_touch(self._lineage) and index.per_item.get(item.id):
                # A new execution of an item that appended before: drop its earlier events.
                events = tuple(e for e in events if _item_of(e.id) != item.id)
                index = _LogIndex(events)
            id = f"{item.id}.{index.per_item.get(item.id, 0)}"
        elif id is None:
            id = uuid.uuid4().hex
        if id in index.ids:
            if events is self.events:
                object.__setattr__(self, "_index", index)  # untouched: give it back
            raise ValueError(f"EventLog already has an event with id {id!r}")
        event = Event(id, position, 1 + index.seen_by(position), value)
        where = index.add(event)
        new: EventLog[T] = object.__new__(EventLog)
        object.__setattr__(new, "events", (*events[:where], event, *events[where:]))
        object.__setattr__(new, "_lineage", self._lineage)
        object.__setattr__(new, "_index", index)
        return new

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


# --------------------------------------------------------------------------- contributions

_FROZEN_VALUES = (Counter, Max, Min, SetUnion, EventLog, Fixed)
"""Merge values a step replaces rather than mutates (`add`, `update`, `append` return new
ones): a copy of a context may share them."""


def contribution(read: T, mine: T) -> tuple[T, bool] | None:
    """What a step that read context `read` and left `mine` added to it, and whether it
    changed anything: a value `d` with `read.merge(d) == mine`, usually far smaller than
    `mine`, so that merging `d` into any context grown from `read` (by merges) gives the
    same as merging `mine`. None when `mine` did not grow from `read` by merging (a field
    that must agree changed, a Counter entry shrank, an event was dropped): such a change
    is committed whole. `read` must be a value the step could not mutate."""
    try:
        return _delta(read, mine)
    except Exception:  # a custom merge or a class that cannot be rebuilt: commit it whole
        return None


def private_copy(ctx: T) -> T:
    """A copy of context `ctx` a step may mutate without touching `ctx`: built-in merge
    values are shared (steps replace them), anything else is deep-copied."""
    cls = type(ctx)
    names = _copied_fields(cls) if isinstance(ctx, Mergeable) else None
    if names is None:
        return copy.deepcopy(ctx)
    new = object.__new__(cls)
    extra = getattr(ctx, "__dict__", None)
    if extra:
        new.__dict__.update(extra)
    for name in names:
        value = getattr(ctx, name)
        if not isinstance(value, _IMMUTABLE):
            value = copy.deepcopy(value)
        object.__setattr__(new, name, value)
    return new


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _copied_fields(cls: type) -> tuple[str, ...] | None:
    """The attributes `private_copy` copies for attrs class `cls` (its fields), or None
    when it has slots of its own beyond them (then it is deep-copied whole)."""
    if cls not in _FIELDS:
        names: tuple[str, ...] | None = None
        if attrs.has(cls):
            names = tuple(f.name for f in attrs.fields(cls))
            slots: set[str] = set()
            for c in cls.__mro__:
                own = getattr(c, "__slots__", ())
                slots.update((own,) if isinstance(own, str) else own)
            if not slots <= {*names, "__weakref__", "__dict__"}:
                names = None
        _FIELDS[cls] = names
    return _FIELDS[cls]


_IMMUTABLE = (*_FROZEN_VALUES, str, int, float, bool, bytes, type(None), frozenset)


def _delta(read: Any, mine: Any) -> tuple[Any, bool] | None:
    """`contribution`, None when `mine` did not grow from `read`."""
    if type(read) is not type(mine):
        return None
    if isinstance(mine, Counter):
        return _counter_delta(read, mine)
    if isinstance(mine, SetUnion):
        if not read.items <= mine.items:
            return None
        added = mine.items - read.items
        return SetUnion(added), bool(added)
    if isinstance(mine, EventLog):
        return _log_delta(read, mine)
    if isinstance(mine, Max):
        if mine.value < read.value:
            return None
        return mine, read.value < mine.value
    if isinstance(mine, Min):
        if read.value < mine.value:
            return None
        return mine, mine.value < read.value
    if isinstance(mine, Fixed):
        if read.value is not None and mine.value != read.value:
            return None
        return mine, mine.value != read.value
    if isinstance(mine, Mergeable) and attrs.has(type(mine)):
        return _fields_delta(read, mine)
    if mine is read or mine == read:
        return read, False
    if callable(getattr(read, "merge", None)) and read.merge(mine) == mine:
        return mine, True
    return None


def _counter_delta(read: Counter, mine: Counter) -> tuple[Counter, bool] | None:
    if mine is read:
        return Counter(), False
    origin = mine._origin
    parts = []
    for old, new in ((read.increments, mine.increments), (read.decrements, mine.decrements)):
        if origin is not None and origin[0] is read:  # made by `add` from `read`: its keys
            changed = {k: new[k] for k in sorted(origin[1]) if k in new and new[k] != old.get(k)}
            dropped = [(k, old[k]) for k in origin[1] if k in old]
        else:
            changed = dict(sorted(new.items() - old.items()))
            dropped = list(old.items() - new.items())  # entries the step changed or dropped
        for key, n in dropped:
            if new.get(key, -1) < n:
                return None
        parts.append(changed)
    return _counter(parts[0], parts[1], object()), bool(parts[0] or parts[1])


def _log_delta(read: EventLog[Any], mine: EventLog[Any]) -> tuple[EventLog[Any], bool] | None:
    if mine is read:
        return EventLog(), False
    by_id = {e.id: e for e in mine.events}
    for event in read.events:
        if by_id.pop(event.id, None) != event:
            return None
    return EventLog(tuple(by_id.values())), bool(by_id)


def _fields_delta(read: Any, mine: Any) -> tuple[Any, bool] | None:
    cls = type(mine)
    init: dict[str, Any] = {}
    later: dict[str, Any] = {}
    changed = False
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)
    for field in fields:
        old, new = getattr(read, field.name), getattr(mine, field.name)
        custom: Callable[[Any, Any], Any] | None = field.metadata.get(MERGE_WITH)
        if custom is not None:
            if new is old or new == old:
                part, moved = old, False
            elif custom(old, new) == new:
                part, moved = new, True
            else:
                return None
        elif callable(getattr(new, "merge", None)):
            got = _delta(old, new)
            if got is None:
                return None
            part, moved = got
        elif new is old or new == old:
            part, moved = old, False
        else:
            return None
        changed = changed or moved
        if field.init:
            init[field.alias or field.name] = part
        else:
            later[field.name] = part
    result = cls(**init)
    for name, value in later.items():
        object.__setattr__(result, name, value)
    return result, changed
