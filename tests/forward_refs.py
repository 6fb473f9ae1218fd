"""Nodes whose generic arguments are forward references to classes defined later."""

from __future__ import annotations

import attrs

from floxide import Next, Node, Transition, Workflow, workflow


@attrs.frozen
class Pick(Node[None, int, "A | B"]):
    async def process(self, ctx: None, input: int) -> Transition[A | B]:
        return Next(A() if input > 0 else B())


@attrs.frozen
class Eat(Node[None, "A | B", str]):
    async def process(self, ctx: None, input: A | B) -> Transition[str]:
        return Next(type(input).__name__)


class A: ...


class B: ...


@workflow
class Flow(Workflow[None, int, str]):
    pick: Pick
    eat: Eat

    start = "pick"
    edges = {"pick": ["eat"], "eat": []}
