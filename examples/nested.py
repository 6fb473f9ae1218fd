"""Nested workflows: a whole workflow used as one node of another (`CompositeNode`).

The inner workflow runs on the outer run's context; a failure inside it is reported with
the inner node's name.

Run: python -m examples.nested
"""

from __future__ import annotations

import attrs
import trio

from floxide import CompositeNode, Next, Node, NodeError, Transition, Workflow, workflow


@attrs.define
class Ctx:
    trail: list[str] = attrs.Factory(list)


@attrs.frozen
class AddOne(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        ctx.trail.append(f"add_one({input})")
        return Next(input + 1)


@attrs.frozen
class Halve(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        if input % 2:
            raise ValueError(f"{input} is odd")
        ctx.trail.append(f"halve({input})")
        return Next(input // 2)


@attrs.frozen
class Format(Node[Ctx, int, str]):
    async def process(self, ctx: Ctx, input: int) -> Transition[str]:
        return Next(f"result {input}")


@workflow
class Inner(Workflow[Ctx, int, int]):
    add: AddOne
    halve: Halve

    start = "add"
    edges = {"add": ["halve"], "halve": []}


@workflow
class Outer(Workflow[Ctx, int, str]):
    first: AddOne
    inner: CompositeNode[Ctx, int, int]
    format: Format

    start = "first"
    edges = {"first": ["inner"], "inner": ["format"], "format": []}


async def main() -> tuple[str, list[str], str]:
    ctx = Ctx()
    wf = Outer(
        first=AddOne(),
        inner=CompositeNode(Inner(add=AddOne(), halve=Halve())),
        format=Format(),
    )
    result = await wf.run(ctx, 8)  # 8 -> 9 -> (inner: 10 -> 5) -> "result 5"
    print(result, ctx.trail)
    try:
        await wf.run(Ctx(), 9)  # 9 -> 10 -> (inner: 11 -> odd!)
        error = ""
    except NodeError as err:
        error = str(err)
        print(f"failed: {error}")
    return result, ctx.trail, error


if __name__ == "__main__":
    trio.run(main)
