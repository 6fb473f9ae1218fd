"""Branching: routing tables keyed by output class and by enum member.

`check` returns `Above | Below`; the routing table sends each variant to the node that
accepts it (the mypy plugin checks every variant has a route and each target fits).
`triage` routes on an enum member instead.

Run: python -m examples.branching
"""

from __future__ import annotations

import enum

import attrs
import trio

from floxide import Next, Node, Transition, Workflow, workflow


@attrs.define
class Ctx:
    handled: list[str] = attrs.Factory(list)


@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    message: str


@attrs.frozen
class Threshold(Node[Ctx, int, Above | Below]):
    limit: int

    async def process(self, ctx: Ctx, input: int) -> Transition[Above | Below]:
        if input > self.limit:
            return Next(Above(input * 2))
        return Next(Below(f"{input} <= {self.limit}"))


@attrs.frozen
class Big(Node[Ctx, Above, str]):
    async def process(self, ctx: Ctx, input: Above) -> Transition[str]:
        ctx.handled.append("big")
        return Next(f"big: {input.value}")


@attrs.frozen
class Small(Node[Ctx, Below, str]):
    async def process(self, ctx: Ctx, input: Below) -> Transition[str]:
        ctx.handled.append("small")
        return Next(f"small: {input.message}")


@workflow
class ThresholdFlow(Workflow[Ctx, int, str]):
    check: Threshold
    big: Big
    small: Small

    start = "check"
    edges = {
        "check": {Above: ["big"], Below: ["small"]},
        "big": [],
        "small": [],
    }


class Priority(enum.Enum):
    HIGH = "high"
    LOW = "low"


@attrs.frozen
class Triage(Node[Ctx, str, Priority]):
    async def process(self, ctx: Ctx, input: str) -> Transition[Priority]:
        return Next(Priority.HIGH if "urgent" in input else Priority.LOW)


@attrs.frozen
class Page(Node[Ctx, Priority, str]):
    async def process(self, ctx: Ctx, input: Priority) -> Transition[str]:
        return Next("paged the on-call engineer")


@attrs.frozen
class Queue(Node[Ctx, Priority, str]):
    async def process(self, ctx: Ctx, input: Priority) -> Transition[str]:
        return Next("queued for tomorrow")


@workflow
class TicketFlow(Workflow[Ctx, str, str]):
    triage: Triage
    page: Page
    queue: Queue

    start = "triage"
    edges = {
        "triage": {Priority.HIGH: ["page"], Priority.LOW: ["queue"]},
        "page": [],
        "queue": [],
    }


async def main() -> dict[str, str]:
    ctx = Ctx()
    threshold = ThresholdFlow(check=Threshold(10), big=Big(), small=Small())
    tickets = TicketFlow(triage=Triage(), page=Page(), queue=Queue())
    results = {
        "5": await threshold.run(ctx, 5),
        "42": await threshold.run(ctx, 42),
        "urgent: db down": await tickets.run(ctx, "urgent: db down"),
        "typo in docs": await tickets.run(ctx, "typo in docs"),
    }
    for given, result in results.items():
        print(f"{given!r:>20} -> {result}")
    return results


if __name__ == "__main__":
    trio.run(main)
