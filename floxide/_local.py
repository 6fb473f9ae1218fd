"""The in-process executor: runs a workflow's work items concurrently on trio.

Ready items wait in one deque. A worker task pops an item, runs its node, applies the
step's effects and pops the next, so a single-successor chain stays in one task with no
spawn per step. Whenever a worker takes an item while others are still waiting, it makes
sure one more worker is about to start (up to the run's concurrency bound); that worker
only gets to run when the current one actually waits on I/O, so CPU-only fan-outs cost
no task spawns while I/O-bound branches overlap. All workers live in one nursery.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

import trio

from floxide import _params
from floxide._errors import FloxideError, NodeError, RunTimeoutError
from floxide._graph import Graph
from floxide._node import Next, Node
from floxide._running import CURRENT_ITEM, current_item, item_entry
from floxide._step import (
    Effects,
    JoinState,
    Position,
    WorkItem,
    advance,
    settle,
    timeout_message,
)

__all__ = ["LocalRun", "StepHook"]

StepHook = Callable[[WorkItem, Effects, list[WorkItem]], Awaitable[None]]
"""Called after each step's join state is settled, before its successors are queued
(checkpointed runs commit here, so no successor runs before the step is committed)."""

_YIELD_EVERY = 64  # steps between scheduler checkpoints of a worker that never blocks


class LocalRun:
    """The state of one in-process run."""

    __slots__ = (
        "_active",
        "_counter",
        "_helper_pending",
        "_limit",
        "_nursery",
        "ctx",
        "failure",
        "graph",
        "join_state",
        "new_id",
        "nodes",
        "on_step",
        "outputs",
        "ready",
        "run_id",
        "workflow_name",
    )

    def __init__(
        self,
        graph: Graph,
        nodes: Mapping[str, Node[Any, Any, Any]],
        ctx: Any,
        *,
        concurrency: int,
        run_id: str | None = None,
        new_id: Callable[[WorkItem, int], Hashable] | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        _params.count("concurrency", concurrency)
        self.graph = graph
        self.nodes = nodes
        self.ctx = ctx
        self.run_id = run_id
        self.workflow_name = graph.name
        self.ready: deque[WorkItem] = deque()
        self.outputs: list[tuple[Position, Any]] = []
        self.failure: NodeError | None = None
        self.on_step = on_step
        self._counter = itertools.count(1)
        self.new_id = new_id if new_id is not None else self._next_id
        self.join_state = JoinState(self.new_id)
        self._limit = concurrency
        self._active = 0
        self._helper_pending = False
        self._nursery: trio.Nursery | None = None

    def _next_id(self, parent: WorkItem, k: int) -> int:
        return next(self._counter)

    async def execute(self, timeout: float | None = None) -> list[tuple[Position, Any]]:
        """Run until no work is left; return terminal outputs sorted by branch position."""
        deadline = trio.current_time() + timeout if timeout is not None else float("inf")
        with trio.CancelScope(deadline=deadline) as scope:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.ready:
                        self._active += 1
                        nursery.start_soon(self._worker, False)
            except BaseExceptionGroup as group:
                raise _collapse(group) from None
            finally:
                self._nursery = None
        if self.failure is not None:
            raise self.failure
        if scope.cancelled_caught:
            raise RunTimeoutError(
                f"{timeout_message(self.graph.name, None, timeout)} and was cancelled "
                f"({len(self.ready)} items still waiting)"
            )
        self.outputs.sort(key=_position)
        return self.outputs

    async def _worker(self, helper: bool) -> None:
        if helper:
            self._helper_pending = False
        ready = self.ready
        nodes = self.nodes
        graph = self.graph
        specs = graph.specs
        ctx = self.ctx
        new_id = self.new_id
        counter = self._counter if new_id == self._next_id else None
        on_step = self.on_step
        join_state = self.join_state
        # The task's enclosing item (a workflow run by a node) is the same for every step.
        qualify = item_entry(current_item())
        set_item = CURRENT_ITEM.set
        reset_item = CURRENT_ITEM.reset
        steps = 0
        try:
            while ready:
                item = ready.popleft()
                if ready and not self._helper_pending and self._active < self._limit:
                    self._spawn()
                name = item.node
                token = set_item(item if qualify is None else qualify(item))
                try:
                    outcome: object = await nodes[name].process(ctx, item.input)
                except Exception as exc:
                    outcome = exc
                finally:
                    reset_item(token)
                single = specs[name].single
                if single is not None and type(outcome) is Next and on_step is None:
                    # `_step.chain_step`, inlined: the hot path of every chain.
                    ready.append(
                        WorkItem(
                            next(counter) if counter is not None else new_id(item, 0),
                            single,
                            outcome.value,
                            item.position,
                            item.scopes,
                        )
                    )
                else:
                    fx = advance(graph, item, outcome, new_id)
                    if fx.failure is not None:
                        self._fail(item, fx.failure)
                        return
                    if fx.outputs:
                        self.outputs.extend(fx.outputs)
                    if item.scopes or fx.opened is not None:
                        fired = settle(join_state, item, fx)
                    else:
                        fired = _NONE
                    if on_step is not None:
                        # Checkpointed runs: successors become runnable once the step is
                        # committed.
                        await on_step(item, fx, fired)
                    if fired:
                        ready.extend(fired)
                    ready.extend(fx.items)
                steps += 1
                if steps == _YIELD_EVERY:
                    steps = 0
                    await trio.lowlevel.checkpoint()
        finally:
            self._active -= 1

    def _spawn(self) -> None:
        assert self._nursery is not None
        self._helper_pending = True
        self._active += 1
        self._nursery.start_soon(self._worker, True)

    def _fail(self, item: WorkItem, error: BaseException) -> None:
        err = NodeError(
            item.node,
            error,
            run_id=self.run_id,
            item_id=item.id,
            attempt=item.attempt,
            workflow=self.graph.name,
        )
        if self.failure is None:
            self.failure = err
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
        else:
            self.failure.others.append(err)


_NONE: list[WorkItem] = []


def _position(entry: tuple[Position, Any]) -> Position:
    return entry[0]


def _collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """One exception for the caller instead of a raw ExceptionGroup."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, Exception):  # KeyboardInterrupt, SystemExit, ...
            return leaf
    if len(leaves) == 1 and isinstance(leaves[0], FloxideError):
        return leaves[0]
    err = FloxideError(f"internal error in the executor: {leaves[0]!r}")
    err.__cause__ = group
    return err
