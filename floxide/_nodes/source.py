"""`Source` / `source()`: a channel whose items each drive one run of a workflow."""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import attrs
import trio

from floxide._errors import FloxideError
from floxide._validators import a_workflow, positive_int, seconds
from floxide._workflow import Workflow

__all__ = ["Source", "SourceResult", "SourceStats", "source"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen
class SourceResult(Generic[I, O]):
    """How the run for one received item ended.

    `index` counts received items from 0 (results arrive in completion order; sort by
    `index` for arrival order). Exactly one of `output` (when `ok`) and `error` is set.
    """

    index: int
    input: I
    output: O | None = None
    error: FloxideError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.frozen
class SourceStats:
    """Counts for a finished `Source.run`."""

    received: int
    succeeded: int
    failed: int


@attrs.frozen
class Source(Generic[C, I, O]):
    """Drives one run of `workflow` per item received on `channel`.

    `await src.run(ctx)` receives items until every sender of the channel is closed, runs
    the workflow on each (all runs share `ctx`), with at most `max_concurrent` runs at
    once: when that many are running, it stops receiving, so a bounded channel pushes
    back on its producer. Then it waits for the runs still going and returns
    `SourceStats`. Each run may have its own `timeout` (seconds).

    With a `results` channel, every run's `SourceResult` (output or error) is sent there
    and failures do not stop the source; `results` is closed at the end. Without one, the
    first failing run cancels the others and its `FloxideError` is raised. Cancelling
    `run` cancels the runs in flight. `run` closes `channel` when it returns, so a
    producer still sending learns it (`trio.BrokenResourceError`).
    """

    workflow: Workflow[C, I, O] = attrs.field(validator=a_workflow)
    channel: trio.MemoryReceiveChannel[I]
    max_concurrent: int = attrs.field(default=16, validator=positive_int)
    timeout: float | None = attrs.field(default=None, validator=seconds(zero=False, infinite=True))

    async def run(
        self,
        ctx: C,
        results: trio.MemorySendChannel[SourceResult[I, O]] | None = None,
    ) -> SourceStats:
        limiter = trio.CapacityLimiter(self.max_concurrent)
        counts = {"received": 0, "succeeded": 0, "failed": 0}
        failure: list[FloxideError] = []

        async def one(index: int, item: I, token: object, scope: trio.CancelScope) -> None:
            try:
                try:
                    output = await self.workflow.run(ctx, item, timeout=self.timeout)
                except FloxideError as exc:
                    counts["failed"] += 1
                    if results is None:
                        if not failure:
                            failure.append(exc)
                        scope.cancel()
                        return
                    await results.send(SourceResult(index, item, error=exc))
                    return
                counts["succeeded"] += 1
                if results is not None:
                    await results.send(SourceResult(index, item, output=output))
            finally:
                limiter.release_on_behalf_of(token)

        try:
            async with self.channel, trio.open_nursery() as nursery:
                async for item in self.channel:
                    token = object()
                    await limiter.acquire_on_behalf_of(token)
                    index = counts["received"]
                    counts["received"] += 1
                    nursery.start_soon(one, index, item, token, nursery.cancel_scope)
        finally:
            if results is not None:
                await results.aclose()
        if failure:
            raise failure[0]
        return SourceStats(**counts)


def source(
    workflow: Workflow[C, I, O],
    *,
    capacity: int | float = 0,
    max_concurrent: int = 16,
    timeout: float | None = None,
) -> tuple[trio.MemorySendChannel[I], Source[C, I, O]]:
    """Open a memory channel of `capacity` (0: every `send` waits for the source; `math.inf`:
    never waits) and a `Source` reading it; returns `(send_channel, source)`.

    ```python
    send, src = source(wf, max_concurrent=4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer, send)      # sends inputs, then closes `send`
        stats = await src.run(ctx)
    ```
    """
    if not (capacity == math.inf or (isinstance(capacity, int) and capacity >= 0)):
        raise ValueError(f"capacity must be a non-negative int or math.inf, got {capacity!r}")
    send, receive = trio.open_memory_channel[I](capacity)
    return send, Source(workflow, receive, max_concurrent, timeout)
