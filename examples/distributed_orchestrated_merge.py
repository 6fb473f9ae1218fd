"""Distributed orchestrated merge: branches on several workers merge one shared context.

An `Orchestrator` starts a run whose `split` fans out ten values; three worker pools
lease the branches from a shared backend, and each branch records its value in the run's
context. Every step runs on its own copy of the context and its commit merges that copy
into the stored one, so the context class is `Mergeable` with merge values:

- `received: SetUnion[int]` (every value seen), `merged: Counter` (how many branches),
  `largest: Max[int]` and `log: EventLog[str]` (an audit trail in branch order);
- `expected: Fixed[int]`, set once at the start, which every copy must agree on.

Some branches fail on their first attempt and are retried durably (a delayed work item
any worker may take): the merge values key each contribution by work item, so a retried
branch still counts once. `gather` is a join of `split`: it runs once, after every
branch, with the values in branch order; `check` compares them with the context.

Run: python -m examples.distributed_orchestrated_merge [BACKEND_URL]
     (memory:// by default; sqlite:///runs.db runs the same on SQLite)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import attrs
import trio

from floxide import (
    Counter,
    EventLog,
    Fixed,
    Max,
    Mergeable,
    Next,
    Node,
    RetryNode,
    RetryPolicy,
    SetUnion,
    SplitNode,
    Transition,
    Workflow,
    with_retry,
    workflow,
)
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, RunStatus, WorkerPool

BRANCHES = 10


@attrs.define
class MergeCtx(Mergeable):
    expected: Fixed[int] = attrs.field(factory=Fixed)
    received: SetUnion[int] = attrs.field(factory=SetUnion)
    merged: Counter = attrs.field(factory=Counter)
    largest: Max[int] = attrs.field(default=Max(0))
    log: EventLog[str] = attrs.field(factory=EventLog)


@attrs.frozen
class Summary:
    values: list[int]
    branches: int
    largest: int


@attrs.define
class Flakiness:
    """Fails the first call for each multiple of `every` (deterministic, per process)."""

    every: int = 30
    seen: set[int] = attrs.Factory(set)

    def check(self, value: int) -> None:
        if value % self.every == 0 and value not in self.seen:
            self.seen.add(value)
            raise ConnectionError(f"lost the connection while receiving {value}")


@attrs.frozen
class Receive(Node[MergeCtx, int, int]):
    """One branch: records its value in the shared context."""

    flakiness: Flakiness

    async def process(self, ctx: MergeCtx, input: int) -> Transition[int]:
        await trio.sleep(0.01 * (input % 3))  # branches finish out of order
        self.flakiness.check(input)
        ctx.received = ctx.received.add(input)
        ctx.merged = ctx.merged.add(1)
        ctx.largest = ctx.largest.update(input)
        ctx.log = ctx.log.append(f"received {input}")
        return Next(input)


@attrs.frozen
class Gather(Node[MergeCtx, Sequence[int], list[int]]):
    async def process(self, ctx: MergeCtx, input: Sequence[int]) -> Transition[list[int]]:
        if len(input) != ctx.expected.get():
            raise ValueError(f"expected {ctx.expected.get()} values, got {len(input)}")
        return Next(list(input))


@attrs.frozen
class Check(Node[MergeCtx, list[int], Summary]):
    """The context, merged from every branch's copy, agrees with the joined values."""

    async def process(self, ctx: MergeCtx, input: list[int]) -> Transition[Summary]:
        if set(input) != set(ctx.received) or ctx.merged.value != len(input):
            raise ValueError(f"context {sorted(ctx.received)} does not match {input}")
        return Next(Summary(sorted(input), ctx.merged.value, ctx.largest.value))


@workflow
class MergeWorkflow(Workflow[MergeCtx, int, Summary]):
    split: SplitNode[int, int]
    receive: RetryNode[MergeCtx, int, int]
    gather: Gather
    check: Check

    start = "split"
    edges = {"split": ["receive"], "receive": ["gather"], "gather": ["check"], "check": []}
    joins = {"gather": "split"}


def multiples(n: int) -> list[int]:
    return [x * n for x in range(BRANCHES)]


def merge_workflow() -> MergeWorkflow:
    receive = with_retry(Receive(Flakiness()), RetryPolicy(max_attempts=3, initial_backoff=0.01))
    return MergeWorkflow(
        split=SplitNode(multiples), receive=receive, gather=Gather(), check=Check()
    )


@attrs.frozen
class Outcome:
    status: RunStatus
    summary: Summary
    context: MergeCtx
    retried: int
    steps_per_worker: list[int]


async def main(url: str = "memory://", n: int = 10) -> Outcome:
    wf = merge_workflow()
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    pools = [WorkerPool(wf, backend, concurrency=2, idle_wait=0.05) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        for pool in pools:
            await nursery.start(pool.run)
        run_id = await orch.start_run(MergeCtx(expected=Fixed(BRANCHES)), n)
        summary = await orch.wait(run_id, timeout=60)
        status = await orch.status(run_id)
        ctx = await orch.context(run_id)
        metrics = await orch.metrics(run_id)
        for pool in pools:
            pool.stop()
    await backend.aclose()
    return Outcome(status, summary, ctx, metrics.retried, [p.steps for p in pools])


if __name__ == "__main__":
    out = trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
    print(f"run {out.status.value}: {out.summary.values}")
    ctx = out.context
    print(f"context: {ctx.merged.value} branches merged, largest {ctx.largest.value}")
    print(f"log ({len(ctx.log.values)} events): {ctx.log.values}")
    print(f"{out.retried} attempts retried; steps per worker: {out.steps_per_worker}")
