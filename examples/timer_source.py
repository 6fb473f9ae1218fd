"""A timer-driven source: a task sends a tick every few milliseconds into a channel, and
each tick drives one run of a workflow (at most two at a time).

When the timer closes its end of the channel, the source finishes the runs still going
and returns; the results channel reports each run's output.

Run: python -m examples.timer_source
"""

from __future__ import annotations

import math

import attrs
import trio

from floxide import (
    Next,
    Node,
    SharedState,
    SourceResult,
    SourceStats,
    Transition,
    Workflow,
    source,
    workflow,
)


@attrs.define
class Ctx:
    total: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Double(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        await trio.sleep(0.005)
        return Next(input * 2)


@attrs.frozen
class Accumulate(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(await ctx.total.update(lambda n: n + input))


@workflow
class Tick(Workflow[Ctx, int, int]):
    double: Double
    accumulate: Accumulate

    start = "double"
    edges = {"double": ["accumulate"], "accumulate": []}


async def timer(send: trio.MemorySendChannel[int], ticks: int, every: float) -> None:
    async with send:  # closing the channel ends the source
        for i in range(ticks):
            await trio.sleep(every)
            await send.send(i)


async def main() -> tuple[SourceStats, list[int], int]:
    ctx = Ctx()
    send, src = source(Tick(double=Double(), accumulate=Accumulate()), max_concurrent=2)
    results_send, results_recv = trio.open_memory_channel[SourceResult[int, int]](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer, send, 10, 0.002)
        stats = await src.run(ctx, results_send)
    doubled = sorted(r.input * 2 for r in [r async for r in results_recv] if r.ok)
    total = await ctx.total.get()
    print(stats, doubled, "total", total)
    return stats, doubled, total


if __name__ == "__main__":
    trio.run(main)
