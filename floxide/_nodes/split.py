"""`SplitNode`: one input becomes many work items."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import attrs

from floxide._node import NextAll, Node, Transition
from floxide._validators import callable_

__all__ = ["SplitNode"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen
class SplitNode(Node[object, I, O]):
    """`Node[Any context, I, O]` that emits `NextAll(fn(input))`: one work item per value.

    The values go to every successor in order; a join on this node collects what their
    branches produce, in that order. An empty result makes no work items (a join on this
    node then runs with an empty list). The context is unused, so a `SplitNode` fits a
    workflow of any context type.
    """

    fn: Callable[[I], Iterable[O]] = attrs.field(validator=callable_)

    async def process(self, ctx: object, input: I) -> Transition[O]:
        return NextAll(self.fn(input))
