"""Timeouts: a per-node deadline with `with_timeout`, and a deadline for a whole run.

A node timing out is an ordinary failure (`NodeTimeoutError`): its `on_failure` fallback
runs, and a `RetryPolicy(retry_on=RetryError.TIMEOUTS)` would retry it.

Run: python -m examples.timeout
"""

from __future__ import annotations

import attrs
import trio

from floxide import (
    Next,
    Node,
    RunTimeoutError,
    TimeoutNode,
    Transition,
    Workflow,
    with_timeout,
    workflow,
)


@attrs.define
class Ctx:
    fallbacks: int = 0


@attrs.frozen
class Lookup(Node[Ctx, float, str]):
    """A lookup that takes `input` seconds."""

    async def process(self, ctx: Ctx, input: float) -> Transition[str]:
        await trio.sleep(input)
        return Next(f"looked up in {input} s")


@attrs.frozen
class Cached(Node[Ctx, float, str]):
    """Fallback: answers from a cache when the lookup is too slow."""

    async def process(self, ctx: Ctx, input: float) -> Transition[str]:
        ctx.fallbacks += 1
        return Next("answered from cache")


@workflow
class LookupFlow(Workflow[Ctx, float, str]):
    lookup: TimeoutNode[Ctx, float, str]
    cached: Cached

    start = "lookup"
    edges = {"lookup": [], "cached": []}
    on_failure = {"lookup": ["cached"]}


@workflow
class Unguarded(Workflow[Ctx, float, str]):
    lookup: Lookup

    start = "lookup"
    edges = {"lookup": []}


async def main() -> tuple[str, str, int, bool]:
    ctx = Ctx()
    wf = LookupFlow(lookup=with_timeout(Lookup(), 0.05), cached=Cached())
    fast = await wf.run(ctx, 0.001)
    slow = await wf.run(ctx, 1.0)
    try:
        await Unguarded(lookup=Lookup()).run(Ctx(), 1.0, timeout=0.02)
        run_timed_out = False
    except RunTimeoutError:
        run_timed_out = True
    print(fast, "|", slow, "| fallbacks:", ctx.fallbacks, "| run timed out:", run_timed_out)
    return fast, slow, ctx.fallbacks, run_timed_out


if __name__ == "__main__":
    trio.run(main)
