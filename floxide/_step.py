"""Step semantics: what one executed work item turns into. Pure: no I/O, no clocks.

`advance` maps (item, outcome) to `Effects`: successor items with their branch positions,
terminal outputs, contributions to open joins, a newly opened join scope, or a failure.
`settle` applies an item's join bookkeeping to a join-state mapping and returns the join
items that fire. The local executor, checkpointed runs and distributed workers all call
these two functions, so a workflow behaves the same however it is run.

Branch positions: a lone successor keeps its parent's position; the k-th of several gets
`parent.position + (k,)`. Sorting outputs by position gives branch order, independent of
scheduling.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, MutableMapping
from hashlib import blake2b
from typing import Any, TypeAlias

from floxide._errors import NoRouteError, StrayJoinError
from floxide._graph import Graph
from floxide._node import Abort, Hold, Next, NextAll
from floxide._running import ItemInfo

__all__ = [
    "ROOT_ID",
    "Effects",
    "IdFactory",
    "JoinScope",
    "Position",
    "ScopeRef",
    "WorkItem",
    "advance",
    "derived_id",
    "settle",
]

Position: TypeAlias = tuple[int, ...]
ItemId: TypeAlias = Hashable
ScopeId: TypeAlias = Hashable
ScopeRef: TypeAlias = tuple[ScopeId, str]
"""An open join scope on an item's stack: (id of the item that opened it, its node)."""


class WorkItem:
    """One pending execution of one node on one input."""

    __slots__ = ("attempt", "id", "info", "input", "node", "position", "scopes")

    def __init__(
        self,
        id: ItemId,
        node: str,
        input: Any,
        position: Position = (),
        scopes: tuple[ScopeRef, ...] = (),
        attempt: int = 1,
    ) -> None:
        self.id = id
        self.node = node
        self.input = input
        self.position = position
        self.scopes = scopes
        self.attempt = attempt
        self.info: ItemInfo | None = None  # made by `current_item()` while it runs

    def __repr__(self) -> str:
        return (
            f"WorkItem(id={self.id!r}, node={self.node!r}, input={self.input!r}, "
            f"position={self.position!r}, scopes={self.scopes!r}, attempt={self.attempt})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkItem) and all(
            getattr(self, s) == getattr(other, s) for s in _ITEM_FIELDS
        )

    __hash__ = None  # type: ignore[assignment]


_ITEM_FIELDS = ("attempt", "id", "input", "node", "position", "scopes")


IdFactory: TypeAlias = Callable[[WorkItem, int], ItemId]
"""Makes the id of the k-th item created by executing `parent` (joins use k < 0)."""

ROOT_ID = "0"
"""Id of the first work item of a checkpointed or distributed run."""

_ID_HASH = blake2b(digest_size=8)


def derived_id(parent: WorkItem, k: int) -> str:
    """The id of the k-th item made by executing `parent`: the same on every re-run, so a
    step re-run after a crash makes the same successors (an `IdFactory` for durable runs)."""
    h = _ID_HASH.copy()  # cheaper than constructing one with its keyword arguments
    h.update(f"{parent.id}/{k}".encode())
    return h.hexdigest()


class JoinScope:
    """One fan-out instance of a join source: counts live descendants, collects outputs."""

    __slots__ = ("collected", "id", "joins", "open", "parent", "position", "source")

    def __init__(
        self,
        id: ScopeId,
        source: str,
        joins: tuple[str, ...],
        position: Position,
        parent: tuple[ScopeRef, ...],
        open: int = 0,
        collected: dict[str, list[tuple[Position, Any]]] | None = None,
    ) -> None:
        self.id = id
        self.source = source
        self.joins = joins
        self.position = position
        self.parent = parent
        self.open = open
        self.collected = collected if collected is not None else {j: [] for j in joins}

    def __repr__(self) -> str:
        return (
            f"JoinScope(id={self.id!r}, source={self.source!r}, joins={self.joins!r}, "
            f"open={self.open}, collected={self.collected!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JoinScope) and all(
            getattr(self, s) == getattr(other, s) for s in JoinScope.__slots__
        )

    __hash__ = None  # type: ignore[assignment]


class Effects:
    """What executing one item produced."""

    __slots__ = ("contributions", "failure", "items", "opened", "outputs")

    def __init__(self) -> None:
        self.items: list[WorkItem] = []
        self.outputs: list[tuple[Position, Any]] = []
        self.contributions: list[tuple[ScopeId, str, Position, Any]] = []
        self.opened: JoinScope | None = None
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"Effects(items={self.items!r}, outputs={self.outputs!r}, "
            f"contributions={self.contributions!r}, opened={self.opened!r}, "
            f"failure={self.failure!r})"
        )


def advance(graph: Graph, item: WorkItem, outcome: object, new_id: IdFactory) -> Effects:
    """Turn one item's outcome (a Transition, or the exception it raised) into effects."""
    fx = Effects()
    spec = graph.specs[item.node]
    if type(outcome) is Next and spec.single is not None:  # the common chain step
        fx.items.append(
            WorkItem(new_id(item, 0), spec.single, outcome.value, item.position, item.scopes)
        )
        return fx
    if isinstance(outcome, Next):
        values: tuple[Any, ...] = (outcome.value,)
    elif isinstance(outcome, NextAll):
        values = outcome.values
    elif isinstance(outcome, Hold):
        return fx
    else:
        error = outcome.error if isinstance(outcome, Abort) else outcome
        if not isinstance(error, BaseException):
            error = TypeError(
                f"node {item.node!r} returned {outcome!r}; expected Next, NextAll, Hold or Abort"
            )
        return _fail(fx, spec.fallback, item, error, new_id, spec.target_joins)

    scopes = item.scopes
    if spec.opens_scope:
        fx.opened = JoinScope(item.id, item.node, spec.opens_scope, item.position, scopes)
        scopes = (*scopes, (item.id, item.node))

    # Pair every value with its targets (routing decides per value).
    pairs: list[tuple[Any, tuple[str, ...]]] = []
    if spec.successors is not None:
        targets = spec.successors
        pairs = [(v, targets) for v in values]
        total = len(values) * (len(targets) or 1)
    else:
        for v in values:
            routed = spec.route(v)
            if routed is None:
                keys = ", ".join(repr(r) for r in spec.routes)
                error = NoRouteError(
                    f"output {v!r} of node {item.node!r} matches no route ({keys})"
                )
                fx.opened = None
                return _fail(fx, spec.fallback, item, error, new_id, spec.target_joins)
            pairs.append((v, routed))
        total = sum(len(t) or 1 for _, t in pairs)

    base = item.position
    target_joins = spec.target_joins
    k = 0
    for value, targets in pairs:
        if not targets:  # terminal for this value
            fx.outputs.append((base if total == 1 else (*base, k), value))
            k += 1
            continue
        for target in targets:
            pos = base if total == 1 else (*base, k)
            join_source = target_joins.get(target) if target_joins else None
            if join_source is not None:
                scope_id = _find_scope(fx, scopes, join_source)
                if scope_id is None:
                    fx.items.clear()
                    fx.outputs.clear()
                    fx.contributions.clear()
                    fx.opened = None
                    error = StrayJoinError(
                        f"node {item.node!r} sent an item to join {target!r} outside any "
                        f"fan-out of {join_source!r}"
                    )
                    return _fail(fx, (), item, error, new_id)
                fx.contributions.append((scope_id, target, pos, value))
            else:
                fx.items.append(WorkItem(new_id(item, k), target, value, pos, scopes))
            k += 1
    if fx.opened is not None:
        fx.opened.open = len(fx.items)
    return fx


def _find_scope(
    fx: Effects, scopes: tuple[ScopeRef, ...], source: str
) -> ScopeId | None:
    if fx.opened is not None and fx.opened.source == source:
        return fx.opened.id
    for sid, src in reversed(scopes):
        if src == source:
            return sid
    return None


def _fail(
    fx: Effects,
    fallback: tuple[str, ...],
    item: WorkItem,
    error: BaseException,
    new_id: IdFactory,
    target_joins: dict[str, str] | None = None,
) -> Effects:
    """Send the failing item's input to its fallbacks, or record the run's failure."""
    if not fallback:
        fx.failure = error
        return fx
    n = len(fallback)
    for k, target in enumerate(fallback):
        pos = item.position if n == 1 else (*item.position, k)
        source = target_joins.get(target) if target_joins else None
        if source is not None:
            scope_id = _find_scope(fx, item.scopes, source)
            if scope_id is None:
                fx.items.clear()
                fx.contributions.clear()
                fx.failure = StrayJoinError(
                    f"fallback of {item.node!r} sent an item to join {target!r} outside any "
                    f"fan-out of {source!r}"
                )
                return fx
            fx.contributions.append((scope_id, target, pos, item.input))
        else:
            fx.items.append(WorkItem(new_id(item, k), target, item.input, pos, item.scopes))
    return fx


def settle(
    join_state: MutableMapping[ScopeId, JoinScope],
    item: WorkItem,
    fx: Effects,
    new_id: IdFactory,
) -> list[WorkItem]:
    """Apply `item`'s join bookkeeping; return the join items fired by closed scopes.

    Contributions are added to their scopes, a newly opened scope is registered, and every
    scope on the item's stack gets (new items carrying it) - 1 live items, innermost first,
    so a join fired by an inner scope counts in the outer ones before those are checked.
    """
    fired: list[WorkItem] = []
    for scope_id, join, pos, value in fx.contributions:
        scope = _resolve(join_state, fx, scope_id, join)
        scope.collected[join].append((pos, value))
    n_new = len(fx.items)
    opened = fx.opened
    if opened is not None:
        if opened.open == 0:
            fired.extend(_fire(opened, new_id))
        else:
            join_state[opened.id] = opened
    n_new += len(fired)
    extra = 0
    for scope_id, _ in reversed(item.scopes):
        scope = join_state[scope_id]
        scope.open += n_new - 1 + extra
        if scope.open == 0:
            del join_state[scope_id]
            new = _fire(scope, new_id)
            fired.extend(new)
            extra += len(new)
    return fired


def _resolve(
    join_state: MutableMapping[ScopeId, JoinScope], fx: Effects, scope_id: ScopeId, join: str
) -> JoinScope:
    if fx.opened is not None and fx.opened.id == scope_id:
        return fx.opened
    return join_state[scope_id]


def _fire(scope: JoinScope, new_id: IdFactory) -> list[WorkItem]:
    source = WorkItem(scope.id, scope.source, None, scope.position, scope.parent)
    many = len(scope.joins) > 1
    out = []
    for k, join in enumerate(scope.joins):
        values = [v for _, v in sorted(scope.collected[join], key=_by_position)]
        pos = (*scope.position, k) if many else scope.position
        out.append(WorkItem(new_id(source, -1 - k), join, values, pos, scope.parent))
    return out


def _by_position(entry: tuple[Position, Any]) -> Position:
    return entry[0]
