"""The identity of the work item being run: a leaf every layer may import.

`item_scope` / `current_item` tell merge values (`floxide.Counter`, `floxide.EventLog`) which
work item is contributing, so a re-run or duplicated item never counts twice. Every applier
(the local executor, checkpointed runs, distributed workers) runs a node inside
`item_scope(item.id, item.position)`, or, in a hot loop, sets `CURRENT_ITEM` itself (see
`item_entry`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Protocol

__all__ = [
    "CURRENT_ITEM",
    "ItemInfo",
    "RunningItem",
    "current_item",
    "enter_item",
    "exit_item",
    "item_entry",
    "item_scope",
    "renew_item",
]


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
