"""Retry: a flaky node succeeds on its third attempt under `with_retry`.

`RetryPolicy` decides how many attempts, how long to wait between them (constant, linear
or exponential backoff, capped, with full random jitter) and which failures to retry.
The wrapper has the inner node's type, `Node[Ctx, In, Out]`.

Run: python -m examples.retry
"""

from __future__ import annotations

import attrs
import trio

from floxide import (
    BackoffStrategy,
    Next,
    Node,
    NodeError,
    RetryError,
    RetryNode,
    RetryPolicy,
    Transition,
    Workflow,
    with_retry,
    workflow,
)


class TransientError(Exception):
    """Worth retrying."""


@attrs.define
class Ctx:
    attempts: int = 0


@attrs.frozen
class Flaky(Node[Ctx, str, str]):
    """Raises `TransientError` until its `succeed_on`-th call."""

    succeed_on: int

    async def process(self, ctx: Ctx, input: str) -> Transition[str]:
        ctx.attempts += 1
        if ctx.attempts < self.succeed_on:
            raise TransientError(f"attempt {ctx.attempts} failed")
        return Next(f"{input} fetched on attempt {ctx.attempts}")


@workflow
class Fetch(Workflow[Ctx, str, str]):
    fetch: RetryNode[Ctx, str, str]

    start = "fetch"
    edges = {"fetch": []}


POLICY = RetryPolicy(
    max_attempts=5,
    initial_backoff=0.01,
    max_backoff=0.05,
    strategy=BackoffStrategy.EXPONENTIAL,
    jitter=True,
    retry_on=lambda error: isinstance(error, TransientError),
)


async def main() -> tuple[str, int, str]:
    ctx = Ctx()
    ok = await Fetch(fetch=with_retry(Flaky(succeed_on=3), POLICY)).run(ctx, "report")
    print(ok)

    # Only timeouts are retried here, so the transient error fails the run at once.
    strict = RetryPolicy(retry_on=RetryError.TIMEOUTS)
    failed_ctx = Ctx()
    try:
        await Fetch(fetch=with_retry(Flaky(succeed_on=3), strict)).run(failed_ctx, "report")
        error = ""
    except NodeError as err:
        error = type(err.cause).__name__
        print(f"not retried: {err}")
    return ok, failed_ctx.attempts, error


if __name__ == "__main__":
    trio.run(main)
