"""Split and join: fan out over values, process each branch, collect them in one list.

`split` emits three values; each becomes a work item for `score`; `collect` is declared
as a join of `split`, so it runs once, after every branch has finished, with their outputs
in branch order. The context uses merge values (`Counter`, `Max`, `EventLog`), which is
what lets checkpointed and distributed runs merge per-item copies of it safely: the
second half shows that merging a duplicated item's copy changes nothing.

Run: python -m examples.merge
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import attrs
import trio

from floxide import (
    Counter,
    EventLog,
    Max,
    Mergeable,
    Next,
    Node,
    SplitNode,
    Transition,
    Workflow,
    item_scope,
    workflow,
)


@attrs.define
class Ctx(Mergeable):
    scored: Counter = attrs.field(factory=Counter)
    best: Max[int] = attrs.field(default=Max(0))
    log: EventLog[str] = attrs.field(factory=EventLog)


@attrs.frozen
class Score(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        await trio.sleep(0.001 * (3 - input % 3))  # branches finish out of order
        score = input * input
        ctx.scored = ctx.scored.add(1)
        ctx.best = ctx.best.update(score)
        ctx.log = ctx.log.append(f"scored {input}")
        return Next(score)


@attrs.frozen
class Collect(Node[Ctx, Sequence[int], list[int]]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[list[int]]:
        return Next(list(input))


def neighbours(n: int) -> list[int]:
    return [n - 1, n, n + 1]


@workflow
class SplitJoin(Workflow[Ctx, int, list[int]]):
    split: SplitNode[int, int]
    score: Score
    collect: Collect

    start = "split"
    edges = {"split": ["score"], "score": ["collect"], "collect": []}
    joins = {"collect": "split"}


async def merged_copies() -> int:
    """What a distributed run does: one context copy per item, merged back."""
    base = Ctx()
    copies = []
    for item_id, value in enumerate([9, 10, 11]):
        mine = copy.deepcopy(base)
        with item_scope(item_id, (item_id,)):
            await Score().process(mine, value)
        copies.append(mine)
    merged = base
    for c in [*copies, copies[1]]:  # copies[1] arrives twice (a redelivered item)
        merged = merged.merge(c)
    return merged.scored.value


async def main() -> tuple[list[int], int, int, list[str], int]:
    ctx = Ctx()
    wf = SplitJoin(split=SplitNode(neighbours), score=Score(), collect=Collect())
    joined = await wf.run(ctx, 10)
    counted = await merged_copies()
    print(f"joined {joined}; scored {ctx.scored.value}; best {ctx.best.value}")
    print(f"log, in branch order: {ctx.log.values}")
    print(f"merging copies (one duplicated) counts {counted}")
    return joined, ctx.scored.value, ctx.best.value, ctx.log.values, counted


if __name__ == "__main__":
    trio.run(main)
