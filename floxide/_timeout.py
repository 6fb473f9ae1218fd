"""Per-node deadlines: `with_timeout(node, seconds)` / `TimeoutNode`."""

from __future__ import annotations

from typing import TypeVar

import attrs
import trio

from floxide._errors import NodeTimeoutError
from floxide._node import Node, Transition
from floxide._validators import a_node, seconds

__all__ = ["TimeoutNode", "with_timeout"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen
class TimeoutNode(Node[C, I, O]):
    """`inner` with a deadline: cancelled after `seconds`, failing with `NodeTimeoutError`.

    The deadline covers one call of `inner.process`. Wrap it in `with_retry` to give every
    attempt its own deadline, or wrap a `RetryNode` to bound all attempts together.
    """

    inner: Node[C, I, O] = attrs.field(validator=a_node)
    seconds: float = attrs.field(validator=seconds(zero=False, infinite=True))

    async def process(self, ctx: C, input: I) -> Transition[O]:
        with trio.move_on_after(self.seconds) as scope:
            return await self.inner.process(ctx, input)
        # Only reached when this node's own deadline cancelled `inner` (a deadline of a
        # cancel scope inside `inner` is handled there; an outer one keeps propagating).
        assert scope.cancelled_caught
        raise NodeTimeoutError(type(self.inner).__name__, self.seconds)


def with_timeout(node: Node[C, I, O], seconds: float) -> TimeoutNode[C, I, O]:
    """`node` with a deadline of `seconds` per call; a timeout is a node failure."""
    return TimeoutNode(node, seconds)
