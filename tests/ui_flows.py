"""Workflows the UI tests run (in-process and in `floxide worker` processes).

`Basket`: split a number into items; `check` routes each by parity (odd ones go
through a composite `polish` workflow); `price` fails for multiples of 7 (its fallback
`rescue` takes over) and sleeps `FLOXIDE_UI_TEST_DELAY` seconds per item (a slow run whose
counts change while a page is open); `total` joins them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import trio

from floxide import (
    CompositeNode,
    Next,
    NextAll,
    Node,
    RetryPolicy,
    Transition,
    Workflow,
    with_retry,
    workflow,
)
from tests.distributed_workflows import Done, Inc, NoFallback


@attrs.define
class Ctx:
    label: str = "basket"


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Check(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input)


@attrs.frozen
class Price(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        delay = float(os.environ.get("FLOXIDE_UI_TEST_DELAY", "0") or 0)
        if delay:
            await trio.sleep(delay)
        if input % 7 == 6:
            suffix = os.environ.get("FLOXIDE_UI_TEST_SUFFIX", " <script>alert(1)</script>")
            raise ValueError(f"no price for item {input}{suffix}")
        return Next(input * 10)


@attrs.frozen
class Rescue(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(0)


@attrs.frozen
class AddOne(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Total(Node[Ctx, Sequence[int], int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class Polish(Workflow[Ctx, int, int]):
    first: AddOne
    second: AddOne

    start = "first"
    edges = {"first": ["second"], "second": []}


@workflow
class Basket(Workflow[Ctx, int, int]):
    split: Split
    check: Check
    polish: CompositeNode[Ctx, int, int]
    price: Node[Ctx, int, int]
    rescue: Rescue
    total: Total

    start = "split"
    edges = {
        "split": ["check"],
        "check": ["polish"],
        "polish": ["price"],
        "price": ["total"],
        "rescue": ["total"],
        "total": [],
    }
    on_failure = {"price": ["rescue"]}
    joins = {"total": "split"}


def basket() -> Basket:
    return Basket(
        split=Split(),
        check=Check(),
        polish=CompositeNode(Polish(first=AddOne(), second=AddOne())),
        price=with_retry(Price(), RetryPolicy(max_attempts=2, initial_backoff=0.0)),
        rescue=Rescue(),
        total=Total(),
    )


pipeline = basket()
"""A module-level instance: the UI finds the composite's inner workflow through it."""


def no_fallback() -> NoFallback:
    """A workflow whose run fails for a negative input (no fallback)."""
    return NoFallback(inc=Inc(), done=Done())
