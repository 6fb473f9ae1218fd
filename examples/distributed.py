"""Distributed: an orchestrator starts a run; workers sharing a backend do the steps.

The same workflow runs unchanged in one process (`wf.run`) or across workers: here two
worker pools (in this process, for the example; normally `floxide worker` processes on
any number of machines) lease the steps from a backend. The context merges across
workers: `Counter` keeps each work item's contribution under its id, so a re-run step
never counts twice.

Run: python -m examples.distributed [BACKEND_URL]   (memory:// by default; try
sqlite:///runs.db, or redis://127.0.0.1:6379/0 with a local Redis)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import attrs
import trio

from floxide import Counter, Mergeable, Next, NextAll, Node, Transition, Workflow, workflow
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, WorkerPool

DOCUMENTS = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "floxide runs workflows",
    "on trio across many workers",
]


@attrs.define
class Stats(Mergeable):
    words: Counter = attrs.field(factory=Counter)


@attrs.frozen
class Fan(Node[Stats, list[str], str]):
    async def process(self, ctx: Stats, input: list[str]) -> Transition[str]:
        return NextAll(input)


@attrs.frozen
class CountWords(Node[Stats, str, int]):
    async def process(self, ctx: Stats, input: str) -> Transition[int]:
        await trio.sleep(0.01)  # some real work
        n = len(input.split())
        ctx.words = ctx.words.add(n)
        return Next(n)


@attrs.frozen
class Report(Node[Stats, Sequence[int], str]):
    async def process(self, ctx: Stats, input: Sequence[int]) -> Transition[str]:
        return Next(f"{len(input)} documents, {sum(input)} words")


@workflow
class WordCount(Workflow[Stats, list[str], str]):
    fan: Fan
    count: CountWords
    report: Report

    start = "fan"
    edges = {"fan": ["count"], "count": ["report"], "report": []}
    joins = {"report": "fan"}


async def main(url: str = "memory://") -> tuple[str, int, str, int]:
    """Returns (distributed result, words in the merged context, local result, steps)."""
    wf = WordCount(fan=Fan(), count=CountWords(), report=Report())
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    pools = [WorkerPool(wf, backend, concurrency=2, idle_wait=0.1) for _ in range(2)]
    async with trio.open_nursery() as nursery:
        for pool in pools:
            await nursery.start(pool.run)
        run_id = await orch.start_run(Stats(), DOCUMENTS)
        result = await orch.wait(run_id, timeout=60)
        ctx = await orch.context(run_id)
        for pool in pools:
            pool.stop()
    await backend.aclose()
    local = await wf.run(Stats(), DOCUMENTS)
    return result, ctx.words.value, local, sum(p.steps for p in pools)


if __name__ == "__main__":
    result, words, local, steps = trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
    print(f"distributed: {result} (context counted {words} words, {steps} steps)")
    print(f"local:       {local}")
