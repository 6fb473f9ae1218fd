"""Error fallback: a node that fails hands its input to its `on_failure` fallback.

A weather report asks a live service for each city. `fetch` is wrapped in `with_retry`,
so a transient failure is tried again; when the attempts run out, `on_failure` sends the
city (the failing node's *input*) to `cached`, which answers from a cache. Both lead to
`render`, so the run completes either way; without a fallback the run would fail with a
`NodeError` naming the node.

The same workflow runs distributed too: the retries become delayed work items in the
backend, and `orch.errors(run_id)` lists every failed attempt with its traceback, marked
`handled` because a retry or the fallback took over.

Run: python -m examples.error_fallback [BACKEND_URL]   (memory:// by default)
"""

from __future__ import annotations

import sys

import attrs
import trio

from floxide import (
    BackoffStrategy,
    Counter,
    Mergeable,
    Next,
    Node,
    RetryNode,
    RetryPolicy,
    Transition,
    Workflow,
    with_retry,
    workflow,
)
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, WorkerPool


class ServiceDown(ConnectionError):
    """The live service did not answer."""


@attrs.define
class WeatherService:
    """A fake live service: down for some cities, flaky for others (deterministic)."""

    down: frozenset[str] = frozenset({"Oslo"})
    flaky: dict[str, int] = attrs.Factory(lambda: {"Lima": 2})  # city -> failures first
    calls: dict[str, int] = attrs.Factory(dict)
    temperatures: dict[str, float] = attrs.Factory(lambda: {"Lima": 19.0, "Oslo": 3.5})

    async def temperature(self, city: str) -> tuple[float, int]:
        """The temperature and the number of this call for `city`."""
        await trio.sleep(0.001)
        n = self.calls[city] = self.calls.get(city, 0) + 1
        if city in self.down or n <= self.flaky.get(city, 0):
            raise ServiceDown(f"weather service unreachable for {city} (call {n})")
        return self.temperatures.get(city, 20.0), n


CACHE = {"Oslo": 4.0, "Lima": 18.0}


@attrs.define
class Ctx(Mergeable):
    live: Counter = attrs.field(factory=Counter)
    cached: Counter = attrs.field(factory=Counter)


@attrs.frozen
class Reading:
    city: str
    celsius: float
    source: str


@attrs.frozen
class FetchLive(Node[Ctx, str, Reading]):
    service: WeatherService

    async def process(self, ctx: Ctx, input: str) -> Transition[Reading]:
        celsius, call = await self.service.temperature(input)
        ctx.live = ctx.live.add(1)
        return Next(Reading(input, celsius, f"live, call {call}"))


@attrs.frozen
class FromCache(Node[Ctx, str, Reading]):
    """The fallback of `fetch`: it gets the city that `fetch` failed on."""

    async def process(self, ctx: Ctx, input: str) -> Transition[Reading]:
        ctx.cached = ctx.cached.add(1)
        return Next(Reading(input, CACHE[input], "cache"))


@attrs.frozen
class Render(Node[Ctx, Reading, str]):
    async def process(self, ctx: Ctx, input: Reading) -> Transition[str]:
        return Next(f"{input.city}: {input.celsius:.1f} C ({input.source})")


@workflow
class Forecast(Workflow[Ctx, str, str]):
    fetch: RetryNode[Ctx, str, Reading]
    cached: FromCache
    render: Render

    start = "fetch"
    edges = {"fetch": ["render"], "cached": ["render"], "render": []}
    on_failure = {"fetch": ["cached"]}


RETRY = RetryPolicy(
    max_attempts=3, initial_backoff=0.01, max_backoff=0.05, strategy=BackoffStrategy.EXPONENTIAL
)


def forecast(service: WeatherService | None = None) -> Forecast:
    fetch = with_retry(FetchLive(service or WeatherService()), RETRY)
    return Forecast(fetch=fetch, cached=FromCache(), render=Render())


@attrs.frozen
class AlwaysFail(Node[Ctx, str, str]):
    async def process(self, ctx: Ctx, input: str) -> Transition[str]:
        raise RuntimeError("intentional failure")


@attrs.frozen
class Recover(Node[Ctx, str, str]):
    async def process(self, ctx: Ctx, input: str) -> Transition[str]:
        return Next(f"recovered {input}")


@workflow
class Minimal(Workflow[Ctx, str, str]):
    """The smallest fallback: `fail` has no successors, only a fallback."""

    fail: AlwaysFail
    recovery: Recover

    start = "fail"
    edges = {"fail": [], "recovery": []}
    on_failure = {"fail": ["recovery"]}


async def local() -> tuple[str, dict[str, str]]:
    """Runs in this process: the minimal workflow, then a report per city."""
    recovered = await Minimal(fail=AlwaysFail(), recovery=Recover()).run(Ctx(), "input")
    wf = forecast()
    reports = {city: await wf.run(Ctx(), city) for city in ("Lima", "Oslo", "Quito")}
    return recovered, reports


async def distributed(url: str = "memory://") -> tuple[str, list[tuple[str, int, bool]], int]:
    """Oslo on workers: (report, failed attempts as (node, attempt, handled), cache hits)."""
    wf = forecast()
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    pool = WorkerPool(wf, backend, concurrency=2, idle_wait=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        run_id = await orch.start_run(Ctx(), "Oslo")
        report = await orch.wait(run_id, timeout=60)
        errors = await orch.errors(run_id)
        ctx = await orch.context(run_id)
        pool.stop()
    await backend.aclose()
    attempts = sorted((e.node, e.attempt, e.handled) for e in errors)
    return report, attempts, ctx.cached.value


async def main(url: str = "memory://") -> None:
    recovered, reports = await local()
    print(f"minimal: {recovered}")
    for report in reports.values():
        print(report)
    report, attempts, cached = await distributed(url)
    print(f"distributed: {report}; {cached} answer from the cache")
    for node_name, attempt, handled in attempts:
        print(f"  failed attempt: {node_name} #{attempt} (handled: {handled})")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
