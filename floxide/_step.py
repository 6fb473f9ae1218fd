"""The rulebook: every semantic rule of a run, written once. Pure: no I/O, no clocks.

Read this module to learn how a run behaves; the local executor (`_local`), checkpointed
runs (`_checkpoint`) and distributed workers (`distributed/_worker`) only apply what it
decides, and the backends count join scopes with `count_scopes` (the Redis commit script
is a labelled port of it). The rules, in the order a step meets them:

1. **Items.** A run is a set of `WorkItem`s (id, node, input, position, join scopes,
   attempt). A lone successor keeps its parent's position; the k-th of several gets
   `parent.position + (k,)`. Sorting by position gives branch order, independent of
   scheduling. Durable runs derive ids from the parent (`derived_id`), so a step re-run
   after a crash makes the same successors.
2. **One step.** `advance` turns a node's outcome into `Effects`: `Next` sends its value to
   every successor (or routes it, first matching row), `NextAll` sends each value, `Hold`
   ends the branch, `Abort(e)` or a raised exception is a failure (`outcome_error`) that
   goes to the node's `on_failure` fallback with the failing input, or fails the run. The
   common chain step (`Next` to a lone successor, no joins) is `chain_step`.
3. **Joins.** A node that is the source of joins opens a `JoinScope` when it runs: every
   item that descends from it carries the scope. `count_scopes` is the arithmetic: after a
   step, each scope on the item's stack (innermost first) gains (new items) - 1 live
   items, plus the join items that inner scopes fired in the same step; a scope at zero
   closes and `fire`s its joins, each with the values that reached it in branch order
   (`in_branch_order`). A fan-out that made no item fires its joins at once
   (`fires_at_once`). `settle` applies all of it to a local join state.
4. **The end.** A run's result is its first terminal output in branch order
   (`first_output`), or `NoOutputError`.
5. **Retries.** `retry_delay` decides whether a failed attempt is retried and after how
   long; `note_attempts` records on the error how many attempts were made.
6. **Deadlines.** A run with a timeout fails once its deadline passes (`deadline_passed`,
   messages `timeout_message` / `DEADLINE_PASSED`); an in-process run is cancelled.
7. **Context.** A step's context change is committed with the step when its encoding
   differs from the stored one and it does not decode equal (`context_changed`). A
   mergeable context (one with `merge`) in a backend that stores contributions is
   committed as the step's `contribution` (what it added, `floxide._merge.contribution`),
   stored under its item id without a version check (concurrent steps never conflict; a
   duplicate of the item overwrites its own, so it counts once); the run's context is its
   base merged with every contribution not yet compacted into it (`fold_context`, in any
   order: merges are semilattices), and a reader that sees `COMPACT_AFTER` of them (a
   few more, staggered per reader) folds them into the base (`compacts`). A change
   merging cannot express (a field that must agree changed) is committed whole, as for a
   context without `merge`.
8. **Run ids.** Any non-empty string of at most `MAX_RUN_ID` characters that is valid
   Unicode names a run (`check_run_id`); backends keep every such id's state apart.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from hashlib import blake2b
from typing import Any, Final, Protocol, TypeAlias, TypeVar

from floxide._errors import NoOutputError, NoRouteError, StrayJoinError
from floxide._graph import Graph, NodeSpec
from floxide._node import Abort, Hold, Next, NextAll
from floxide._running import ItemInfo

T = TypeVar("T")

__all__ = [
    "COMPACT_AFTER",
    "DEADLINE_GRACE",
    "DEADLINE_PASSED",
    "ROOT_ID",
    "Effects",
    "IdFactory",
    "JoinScope",
    "JoinState",
    "Position",
    "Retrying",
    "ScopeRef",
    "ScopeTable",
    "WorkItem",
    "advance",
    "chain_step",
    "compacts",
    "context_changed",
    "count_scopes",
    "deadline_passed",
    "derived_id",
    "fire",
    "fires_at_once",
    "first_output",
    "fold_context",
    "in_branch_order",
    "innermost_first",
    "never_same",
    "no_output_message",
    "note_attempts",
    "outcome_error",
    "retry_delay",
    "settle",
    "timeout_message",
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


def chain_step(
    spec: NodeSpec, item: WorkItem, outcome: object, new_id: IdFactory
) -> WorkItem | None:
    """The common chain step: `Next(v)` from a node with one successor and no joins around
    it makes one item at the same position with the same scopes; None for anything else.
    (The local executor inlines this test on its hot path.)"""
    if type(outcome) is Next and spec.single is not None:
        return WorkItem(new_id(item, 0), spec.single, outcome.value, item.position, item.scopes)
    return None


def outcome_error(node: str, outcome: object) -> BaseException | None:
    """The failure an outcome stands for: a raised exception, `Abort(error)`'s error, or a
    `TypeError` for a value that is no `Transition`; None for `Next`, `NextAll`, `Hold`."""
    if isinstance(outcome, Next | NextAll | Hold):
        return None
    error = outcome.error if isinstance(outcome, Abort) else outcome
    if isinstance(error, BaseException):
        return error
    return TypeError(f"node {node!r} returned {outcome!r}; expected Next, NextAll, Hold or Abort")


def advance(graph: Graph, item: WorkItem, outcome: object, new_id: IdFactory) -> Effects:
    """Turn one item's outcome (a Transition, or the exception it raised) into effects."""
    fx = Effects()
    spec = graph.specs[item.node]
    if spec.single is not None:
        chained = chain_step(spec, item, outcome, new_id)
        if chained is not None:
            fx.items.append(chained)
            return fx
    if isinstance(outcome, Next):
        values: tuple[Any, ...] = (outcome.value,)
    elif isinstance(outcome, NextAll):
        values = outcome.values
    elif isinstance(outcome, Hold):
        return fx
    else:
        error = outcome_error(item.node, outcome)
        assert error is not None
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


# ------------------------------------------------------------------------------ joins
F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


class ScopeTable(Protocol[F_co]):
    """Open join-scope counts of one run, as an applier stores them (`count_scopes`'s view).

    `F_co` is whatever a closed scope fires: `WorkItem`s in process, encoded items in a backend.
    """

    def add_open(self, scope_id: Any, delta: int) -> int:
        """Add `delta` to the count of live items carrying the scope; the new count."""

    def close(self, scope_id: Any) -> Sequence[F_co]:
        """Forget the scope (its count reached zero); the join items it fires."""


def count_scopes(table: ScopeTable[F], scopes: Iterable[Any], n_new: int) -> list[F]:
    """THE join arithmetic: apply one step to the scopes on its item's stack.

    `scopes` are the item's open scopes innermost first; `n_new` the items the step made
    (successors, and join items that fired at once). Each scope gains `n_new - 1` live
    items plus the join items fired so far by inner scopes in this step (they descend from
    the outer scopes too); a scope reaching zero closes and fires. Returns what fired.
    The Redis commit script (`backends/_redis_lua.py`, "count_scopes") is a port of this.
    """
    fired: list[F] = []
    for scope_id in scopes:
        if table.add_open(scope_id, n_new - 1 + len(fired)) == 0:
            fired.extend(table.close(scope_id))
    return fired


def fires_at_once(scope: JoinScope) -> bool:
    """A fan-out that made no item (an empty `NextAll`, or values all sent straight to its
    joins) fires its joins in the same step: no descendant is left to wait for."""
    return scope.open == 0


def in_branch_order(entries: Iterable[tuple[Position, T]]) -> list[T]:
    """The values that reached a join, in branch order (by position)."""
    return [v for _, v in sorted(entries, key=_by_position)]


def fire(scope: JoinScope, new_id: IdFactory) -> list[WorkItem]:
    """The join items a closing scope fires: one per join of its source, each with the
    values collected for it in branch order, at the source's position (the k-th of several
    joins at `position + (k,)`), carrying the source's own scopes."""
    source = WorkItem(scope.id, scope.source, None, scope.position, scope.parent)
    many = len(scope.joins) > 1
    out = []
    for k, join in enumerate(scope.joins):
        pos = (*scope.position, k) if many else scope.position
        values = in_branch_order(scope.collected[join])
        out.append(WorkItem(new_id(source, -1 - k), join, values, pos, scope.parent))
    return out


class JoinState:
    """The open join scopes of an in-process run (`scopes`, by scope id): a `ScopeTable`."""

    __slots__ = ("new_id", "scopes")

    def __init__(self, new_id: IdFactory) -> None:
        self.scopes: dict[Any, JoinScope] = {}
        self.new_id = new_id

    def add_open(self, scope_id: Any, delta: int) -> int:
        scope = self.scopes[scope_id]
        scope.open += delta
        return scope.open

    def close(self, scope_id: Any) -> list[WorkItem]:
        return fire(self.scopes.pop(scope_id), self.new_id)


def innermost_first(item: WorkItem) -> list[Any]:
    """The ids of the scopes `item` carries, innermost first (the order they are counted)."""
    return [sid for sid, _ in reversed(item.scopes)]


def settle(join_state: JoinState, item: WorkItem, fx: Effects) -> list[WorkItem]:
    """Apply `item`'s join bookkeeping to an in-process join state; the join items fired.

    Contributions are added to their scopes, a newly opened scope is registered (or fires
    at once), then `count_scopes` counts the step in every scope on the item's stack.
    """
    fired: list[WorkItem] = []
    opened = fx.opened
    for scope_id, join, pos, value in fx.contributions:
        if opened is not None and opened.id == scope_id:
            opened.collected[join].append((pos, value))
        else:
            join_state.scopes[scope_id].collected[join].append((pos, value))
    if opened is not None:
        if fires_at_once(opened):
            fired.extend(fire(opened, join_state.new_id))
        else:
            join_state.scopes[opened.id] = opened
    scopes = item.scopes
    if scopes:
        n_new = len(fx.items) + len(fired)
        innermost = (scopes[0][0],) if len(scopes) == 1 else innermost_first(item)
        fired += count_scopes(join_state, innermost, n_new)
    return fired


def _by_position(entry: tuple[Position, Any]) -> Position:
    return entry[0]


# ---------------------------------------------------------------------------- the end
def no_output_message(workflow: str, run_id: str | None = None) -> str:
    """Why a finished run has no result."""
    run = f"run {run_id} of workflow" if run_id is not None else "run of workflow"
    return f"{run} {workflow!r} finished without reaching a terminal node"


def first_output(
    workflow: str, outputs: Sequence[tuple[Position, T]], run_id: str | None = None
) -> T:
    """A run's result: its first terminal output in branch order (`outputs` sorted by
    position), or `NoOutputError` when it reached no terminal node."""
    if not outputs:
        raise NoOutputError(no_output_message(workflow, run_id))
    return outputs[0][1]


# ---------------------------------------------------------------------------- retries
class Retrying(Protocol):
    """What the retry decision reads of a `RetryPolicy`."""

    @property
    def max_attempts(self) -> int: ...

    def retries(self, error: BaseException) -> bool: ...

    def delay(self, failed_attempts: int) -> float: ...


def retry_delay(policy: Retrying | None, error: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying attempt `attempt` (1-based) that failed with `error`,
    or None when it is not retried (no policy, attempts used up, or a failure the policy
    does not retry)."""
    if policy is None or attempt >= policy.max_attempts or not policy.retries(error):
        return None
    return policy.delay(attempt)


def note_attempts(error: BaseException, attempts: int) -> None:
    """Record on a final failure how many attempts were made (when more than one)."""
    if attempts > 1:
        error.add_note(f"failed after {attempts} attempts")


# -------------------------------------------------------------------------- deadlines
DEADLINE_PASSED: Final = "run deadline passed"
"""The error a backend records when it finds a run past its deadline."""

DEADLINE_GRACE: Final = 1.0
"""Seconds past a run's deadline before a watcher (orchestrator, CLI) fails it itself:
workers, which see the deadline first, get the chance to fail it from inside the step."""


def deadline_passed(deadline: float | None, now: float, grace: float = 0.0) -> bool:
    """Whether a run with `deadline` (wall clock; None = no timeout) is over at `now`."""
    return deadline is not None and now > deadline + grace


def timeout_message(workflow: str, run_id: str | None = None, timeout: float | None = None) -> str:
    """Why a run failed with `RunTimeoutError`."""
    run = f"run {run_id} of workflow" if run_id is not None else "run of workflow"
    within = f"within {timeout} s" if timeout is not None else "within its timeout"
    return f"{run} {workflow!r} did not finish {within}"


# ---------------------------------------------------------------------------- context
def context_changed(mine: bytes | str, stored: bytes | str, same: Callable[[], bool]) -> bool:
    """Whether a step changed the run's context: its encoding differs from the stored one,
    and (`same()`, asked only then) it does not decode equal (a set may encode in another
    order). A changed context is committed with the step that changed it."""
    return mine != stored and not same()


COMPACT_AFTER: Final = 32
"""Contributions a reader folds into the stored base context once it sees that many."""


class _Merging(Protocol):
    def merge(self, other: Any, /) -> Any: ...


M = TypeVar("M", bound=_Merging)


def fold_context(base: M, contributions: Iterable[M]) -> M:
    """A run's context: its stored base merged with its contributions. The contributions
    (small) are merged together first, then into the base once."""
    acc: M | None = None
    for c in contributions:
        acc = c if acc is None else acc.merge(c)
    return base if acc is None else base.merge(acc)


def compacts(contributions: int, after: int = COMPACT_AFTER, stagger: float = 0.0) -> bool:
    """Whether a reader that saw `contributions` folds them into the base. `stagger` (in
    [0, 1), drawn per reader and base) waits for up to a quarter of `after` more, so that
    of readers running side by side one compacts, not each of them (every compaction
    writes the whole context, and every other reader decodes it)."""
    return contributions >= after + int(stagger * after / 4)


def never_same() -> bool:
    """`same` for appliers that compare encodings only."""
    return False


# ---------------------------------------------------------------------------- run ids
MAX_RUN_ID: Final = 256
"""The longest run id accepted (characters)."""


def check_run_id(run_id: object) -> str:
    """`run_id` if it can name a run (a non-empty `str` of at most `MAX_RUN_ID` characters,
    valid Unicode: no lone surrogates); otherwise `ValueError` saying why."""
    if not isinstance(run_id, str):
        raise ValueError(f"a run id must be a string, got {type(run_id).__name__}")
    if not run_id:
        raise ValueError("a run id must not be empty")
    if len(run_id) > MAX_RUN_ID:
        raise ValueError(f"a run id has at most {MAX_RUN_ID} characters, got {len(run_id)}")
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"a run id must be valid Unicode (no lone surrogates): {run_id!a}"
        raise ValueError(msg) from None
    return run_id
