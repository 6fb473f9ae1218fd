"""Shared context state: `SharedState[T]`, its `Cell`, and its cattrs hooks.

`SharedState[T]` is a lock-guarded cell for context fields that concurrent branches of one
run read and write across `await`s. It serializes as its bare value, so a context holding
`SharedState[int]` checkpoints as `{"hits": 3}`. It merges like the merge values of
`floxide._merge` (which it builds on), so it can be a field of a `Mergeable` context. The
identity of the running work item lives in `floxide._running`.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_args, get_origin

import trio

from floxide._merge import merge_values

if TYPE_CHECKING:
    import cattrs

__all__ = ["Cell", "SharedState", "register_shared_state_hooks"]

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
        return SharedState(merge_values(self._value, other._value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedState) and bool(self._value == other._value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SharedState({self._value!r})"

    def __copy__(self) -> SharedState[T]:
        return SharedState(self._value)

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedState[T]:
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
