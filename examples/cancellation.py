"""Cancellation: stop a running workflow from outside, or give it a deadline.

A run is ordinary trio code: cancelling the cancel scope around `wf.run` cancels every
branch at its next checkpoint. `timeout=` does the same after a number of seconds and
raises `RunTimeoutError` (a `RunCancelled`).

Run: python -m examples.cancellation
"""

from __future__ import annotations

import attrs
import trio

from floxide import Next, Node, RunCancelled, Transition, Workflow, workflow


@attrs.define
class Ctx:
    started: int = 0
    finished: int = 0


@attrs.frozen
class SlowNode(Node[Ctx, float, str]):
    """Sleeps `input` seconds."""

    async def process(self, ctx: Ctx, input: float) -> Transition[str]:
        ctx.started += 1
        await trio.sleep(input)
        ctx.finished += 1
        return Next(f"slept {input} s")


@workflow
class CancelFlow(Workflow[Ctx, float, str]):
    slow: SlowNode

    start = "slow"
    edges = {"slow": []}


async def cancel_after(scope: trio.CancelScope, seconds: float) -> None:
    await trio.sleep(seconds)
    print("cancelling the run")
    scope.cancel()


async def main() -> dict[str, bool]:
    wf = CancelFlow(slow=SlowNode())

    # 1. Cancelled by another task.
    ctx = Ctx()
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_after, scope, 0.05)
            await wf.run(ctx, 2.0)
        nursery.cancel_scope.cancel()
    by_scope = scope.cancelled_caught and ctx.started == 1 and ctx.finished == 0

    # 2. A deadline for the whole run.
    try:
        await wf.run(Ctx(), 2.0, timeout=0.05)
        by_timeout = False
    except RunCancelled as err:
        print(f"run timed out: {err}")
        by_timeout = True

    # 3. A run that finishes in time is unaffected.
    finished = await wf.run(Ctx(), 0.01, timeout=1.0) == "slept 0.01 s"
    result = {"cancelled": by_scope, "timed_out": by_timeout, "finished": finished}
    print(result)
    return result


if __name__ == "__main__":
    trio.run(main)
