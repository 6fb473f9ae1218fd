"""Split: one input becomes one work item per value (`SplitNode` emits `NextAll`).

Without a join, every branch reaches the terminal node on its own; `run_all` returns all
outputs in branch order (the order of the split), however the branches were scheduled.

Run: python -m examples.split
"""

from __future__ import annotations

import attrs
import trio

from floxide import Next, Node, SplitNode, Transition, Workflow, workflow


@attrs.define
class Ctx:
    processed: list[str] = attrs.Factory(list)


@attrs.frozen
class Capitalize(Node[Ctx, str, str]):
    async def process(self, ctx: Ctx, input: str) -> Transition[str]:
        await trio.sleep(0.001 * len(input))  # longer words finish later
        ctx.processed.append(input)
        return Next(input.capitalize())


def words(sentence: str) -> list[str]:
    return sentence.split()


@workflow
class Words(Workflow[Ctx, str, str]):
    split: SplitNode[str, str]
    capitalize: Capitalize

    start = "split"
    edges = {"split": ["capitalize"], "capitalize": []}


async def main() -> tuple[list[str], list[str]]:
    ctx = Ctx()
    wf = Words(split=SplitNode(words), capitalize=Capitalize())
    outputs = await wf.run_all(ctx, "typed workflows for python")
    print(outputs, "finished in order", ctx.processed)
    return outputs, ctx.processed


if __name__ == "__main__":
    trio.run(main)
