"""`CompositeNode`: a workflow used as one node of another."""

from __future__ import annotations

from typing import TypeVar

import attrs

from floxide._errors import NoOutputError
from floxide._node import Hold, Next, NextAll, Node, Transition
from floxide._validators import a_workflow, positive_int
from floxide._workflow import Workflow

__all__ = ["CompositeNode"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen
class CompositeNode(Node[C, I, O]):
    """A `Workflow[Ctx, In, Out]` used as a `Node[Ctx, In, Out]` of an enclosing workflow.

    Each call runs `workflow` to completion on the enclosing run's context (the same
    object) and emits its first output in branch order (`Next`), or, with
    `all_outputs=True`, every output (`NextAll`). A nested run with no output ends the
    branch (`Hold`). A failure inside is re-raised as is: a `NodeError` naming the inner
    node and workflow, which the enclosing run reports under this node's name.
    `concurrency` bounds the nested run's concurrent items (default: the nested
    workflow's `max_concurrency`).
    """

    workflow: Workflow[C, I, O] = attrs.field(validator=a_workflow)
    all_outputs: bool = False
    concurrency: int | None = attrs.field(default=None, validator=positive_int)

    async def process(self, ctx: C, input: I) -> Transition[O]:
        if self.all_outputs:
            outputs = await self.workflow.run_all(ctx, input, concurrency=self.concurrency)
            return NextAll(outputs) if outputs else Hold()
        try:
            return Next(await self.workflow.run(ctx, input, concurrency=self.concurrency))
        except NoOutputError:
            return Hold()
