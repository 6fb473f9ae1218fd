"""Shared context state and the identity of the work item being run.

`SharedState[T]` is a lock-guarded cell for context fields that concurrent branches of one
run read and write across `await`s. It serializes as its bare value, so a context holding
`SharedState[int]` checkpoints as `{"hits": 3}`.

`item_scope` / `current_item` tell merge values (`floxide.Counter`, `floxide.EventLog`) which
work item is contributing, so a re-run or duplicated item never counts twice. Every applier
(the local executor, checkpointed runs, distributed workers) runs a node inside
`item_scope(item.id, item.position)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, get_args, get_origin

import trio

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "Cell",
    "ItemInfo",
    "SharedState",
    "current_item",
    "enter_item",
    "exit_item",
    "item_scope",
    "register_shared_state_hooks",
    "renew_item",
]

T = TypeVar("T")


class Cell(Generic[T]):
    """The value of a `SharedState`, read and written while its lock is held.

    Yielded by `SharedState.lock()`; using it after the `async with` block has ended raises
    `RuntimeError`, since the lock no longer protects it.
    """

    __slots__ = ("_open", "_state")

    def __init__(self, state: SharedState[T]) -> None:
        self._state = state
        self._open = True

    def _check(self) -> None:
        if not self._open:
            raise RuntimeError("SharedState cell used after its lock was released")

    @property
    def value(self) -> T:
        self._check()
        return self._state._value

    @value.setter
    def value(self, value: T) -> None:
        self._check()
        self._state._value = value

    def __repr__(self) -> str:
        state = "open" if self._open else "released"
        return f"Cell({self._state._value!r}, {state})"


class SharedState(Generic[T]):
    """A cell that concurrent branches update safely: every access holds a `trio.Lock`.

    ```python
    @attrs.define
    class Ctx:
        hits: SharedState[int] = attrs.field(factory=lambda: SharedState(0))

    await ctx.hits.update(lambda n: n + 1)
    async with ctx.hits.lock() as cell:      # several steps under one lock
        cell.value = cell.value * 2 + 1
    ```

    Within one process every branch of a run sees the same object. Serialized with
    `floxide.serde.converter` it is just its value. Copies (`copy`, `deepcopy`, pickle) get
    their own lock. If `T` is a merge value, `merge` merges the values, so a `SharedState`
    can be a field of a `Mergeable` context.
    """

    __slots__ = ("_lock", "_value")

    def __init__(self, value: T) -> None:
        self._value = value
        self._lock = trio.Lock()

    async def get(self) -> T:
        """The current value (read under the lock, so never mid-update)."""
        async with self._lock:
            return self._value

    async def set(self, value: T) -> None:
        """Replace the value."""
        async with self._lock:
            self._value = value

    async def update(self, fn: Callable[[T], T]) -> T:
        """Replace the value with `fn(value)` atomically; returns the new value."""
        async with self._lock:
            self._value = fn(self._value)
            return self._value

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[Cell[T]]:
        """Hold the lock for several steps; the yielded cell's `.value` reads and writes."""
        async with self._lock:
            cell = Cell(self)
            try:
                yield cell
            finally:
                cell._open = False

    def peek(self) -> T:
        """The value without taking the lock: for code outside any run (tests, serializers)."""
        return self._value

    def merge(self, other: SharedState[T]) -> SharedState[T]:
        """Merge the values: by their own `merge` if they have one, else they must be equal.

        Raises `floxide.MergeConflictError` for different values that cannot merge.
        """
        from floxide._merge import merge_values

        return SharedState(merge_values(self._value, other._value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedState) and bool(self._value == other._value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SharedState({self._value!r})"

    def __copy__(self) -> SharedState[T]:
        return SharedState(self._value)

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedState[T]:
        import copy

        return SharedState(copy.deepcopy(self._value, memo))

    def __reduce__(self) -> tuple[type[SharedState[T]], tuple[T]]:
        return (SharedState, (self._value,))


def _is_shared_state(tp: Any) -> bool:
    origin = get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, SharedState)


def _value_type(tp: Any) -> Any:
    args = get_args(tp)
    return args[0] if args else Any


def register_shared_state_hooks(converter: cattrs.Converter) -> None:
    """Teach a cattrs converter that `SharedState[T]` (de)serializes as its `T` value.

    `floxide.serde.converter` calls this; call it yourself on any other converter.
    """

    def structure_factory(tp: Any) -> Callable[[Any, Any], SharedState[Any]]:
        value_type = _value_type(tp)

        def structure(data: Any, _: Any) -> SharedState[Any]:
            if value_type is Any:
                return SharedState(data)
            return SharedState(converter.structure(data, value_type))

        return structure

    def unstructure_factory(tp: Any) -> Callable[[SharedState[Any]], Any]:
        value_type = _value_type(tp)

        def unstructure(state: SharedState[Any]) -> Any:
            if value_type is Any:
                return converter.unstructure(state._value)
            return converter.unstructure(state._value, unstructure_as=value_type)

        return unstructure

    converter.register_structure_hook_factory(_is_shared_state, structure_factory)
    converter.register_unstructure_hook_factory(_is_shared_state, unstructure_factory)


class ItemInfo:
    """One execution of a work item: its `id` (as text) and branch `position`.

    Each `enter_item` / `item_scope` is a new execution, even of the same id: merge values
    use `first_touch` to notice that an item is running again (a retry, or a re-run after a
    crash) and replace that item's earlier contribution instead of adding to it.
    """

    __slots__ = ("_id", "_touched", "position")

    def __init__(self, id: object, position: tuple[int, ...] = ()) -> None:
        self._id = id
        self.position = position
        self._touched: set[object] | None = None

    @property
    def id(self) -> str:
        return self._id if isinstance(self._id, str) else str(self._id)

    def first_touch(self, lineage: object) -> bool:
        """True the first time this execution writes to the value `lineage` identifies."""
        touched = self._touched
        if touched is None:
            touched = self._touched = set()
        if lineage in touched:
            return False
        touched.add(lineage)
        return True

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ItemInfo) and self.id == other.id and self.position == other.position
        )

    def __hash__(self) -> int:
        return hash((self.id, self.position))

    def __repr__(self) -> str:
        return f"ItemInfo(id={self.id!r}, position={self.position!r})"


class RunningItem(Protocol):
    """A work item set as current as it is (the executor's hot loop does, see
    `item_entry`); its `ItemInfo` is made by `current_item` the first time it is asked."""

    @property
    def id(self) -> Hashable: ...

    @property
    def position(self) -> tuple[int, ...]: ...

    info: ItemInfo | None


_current_item: ContextVar[ItemInfo | RunningItem | None] = ContextVar(
    "floxide_current_item", default=None
)
CURRENT_ITEM = _current_item
"""The context variable holding the running work item (see `enter_item`)."""


def current_item() -> ItemInfo | None:
    """The work item being run in this task, or None outside any run."""
    found = _current_item.get()
    if found is None or type(found) is ItemInfo:
        return found
    assert not isinstance(found, ItemInfo)
    info = found.info
    if info is None:
        info = found.info = ItemInfo(found.id, found.position)
    return info


def enter_item(
    item_id: object, position: tuple[int, ...] = ()
) -> Token[ItemInfo | RunningItem | None]:
    """Make `item_id` at `position` the current work item; undo with `exit_item(token)`.

    The cheap form of `item_scope` for appliers' hot loops. Inside another item (a
    workflow run by a node, as `CompositeNode` does) the id and position are qualified by
    the enclosing item's: id `"<outer>/<inner>"`, position `outer + inner`, so nested runs
    never collide with the items of the run around them.
    """
    outer = current_item()
    if outer is None:
        info = ItemInfo(item_id, position)
    else:
        info = ItemInfo(f"{outer.id}/{item_id}", (*outer.position, *position))
    return _current_item.set(info)


def renew_item() -> Token[ItemInfo | RunningItem | None] | None:
    """Start a new execution of the current work item (same id and position), for a retry.

    Returns a token for `exit_item`, or None outside any item.
    """
    current = current_item()
    if current is None:
        return None
    return _current_item.set(ItemInfo(current.id, current.position))


def item_entry(
    outer: ItemInfo | None,
) -> Callable[[RunningItem], ItemInfo | RunningItem] | None:
    """What a hot loop that sets `CURRENT_ITEM` itself sets for each item under `outer`
    (a task's enclosing item does not change between its steps): None when the item can be
    set as it is (no enclosing item), else the maker of its qualified `ItemInfo`."""
    if outer is None:
        return None
    prefix, base = f"{outer.id}/", outer.position
    return lambda item: ItemInfo(f"{prefix}{item.id}", (*base, *item.position))


def exit_item(token: Token[ItemInfo | RunningItem | None]) -> None:
    """Restore the work item that was current before `enter_item` returned `token`."""
    _current_item.reset(token)


@contextmanager
def item_scope(item_id: object, position: tuple[int, ...] = ()) -> Iterator[ItemInfo]:
    """Run the enclosed code as work item `item_id` at `position`.

    Appliers (the local executor, checkpointed runs, distributed workers) run each node
    call inside its item's scope, so merge values (`Counter`, `EventLog`) key their
    contributions by the item: re-running the same item reproduces, rather than adds to,
    its contribution. Set it around the node call only; tasks started inside it inherit it.
    Nested scopes are qualified as described in `enter_item`.
    """
    token = enter_item(item_id, position)
    try:
        info = current_item()
        assert info is not None
        yield info
    finally:
        exit_item(token)
