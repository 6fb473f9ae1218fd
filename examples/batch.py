"""Batch processing: a `BatchNode` prices a list of orders three at a time.

Items of one batch run concurrently; batches run one after another; the output keeps the
input order. A failing item would fail the whole node, naming the item's index.

Run: python -m examples.batch
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from floxide import BatchNode, Next, Node, SharedState, Transition, Workflow, workflow


@attrs.define
class Ctx:
    priced: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Order:
    id: str
    quantity: int
    unit_price: float


@attrs.frozen
class PriceOrder(Node[Ctx, Order, float]):
    """Prices one order (pretends to call a pricing service)."""

    discount: float = 0.1

    async def process(self, ctx: Ctx, input: Order) -> Transition[float]:
        await trio.sleep(0.01)
        await ctx.priced.update(lambda n: n + 1)
        total = input.quantity * input.unit_price
        if input.quantity >= 10:
            total *= 1 - self.discount
        return Next(round(total, 2))


@attrs.frozen
class Summarize(Node[Ctx, Sequence[float], str]):
    async def process(self, ctx: Ctx, input: Sequence[float]) -> Transition[str]:
        return Next(f"{len(input)} orders, total {sum(input):.2f}")


@workflow
class PriceAll(Workflow[Ctx, Sequence[Order], str]):
    price: BatchNode[Ctx, Order, float]
    summarize: Summarize

    start = "price"
    edges = {"price": ["summarize"], "summarize": []}


ORDERS = [
    Order("a", 1, 10.0),
    Order("b", 10, 2.5),
    Order("c", 3, 4.0),
    Order("d", 20, 1.0),
    Order("e", 2, 0.5),
]


async def main() -> tuple[str, int]:
    ctx = Ctx()
    wf = PriceAll(price=BatchNode(PriceOrder(), batch_size=3), summarize=Summarize())
    summary = await wf.run(ctx, ORDERS)
    priced = await ctx.priced.get()
    print(summary, f"({priced} priced)")
    return summary, priced


if __name__ == "__main__":
    trio.run(main)
