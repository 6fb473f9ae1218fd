"""Order processing: validate -> pay (with a fallback) -> allocate stock (with retry) -> notify.

- `payment` failing goes to `payment_failed` (its `on_failure` fallback), which records
  the failure; the customer is still notified.
- `allocate` is wrapped in `with_retry`: a transient stock error is retried with linear
  backoff; when retries run out its fallback `stock_failed` refunds the payment.
- `validate` has no fallback: an invalid order fails the run with a `NodeError`.

The context holds the order status in a `SharedState` and the history in an `EventLog`.

Run: python -m examples.order
"""

from __future__ import annotations

import enum

import attrs
import trio

from floxide import (
    BackoffStrategy,
    EventLog,
    Next,
    Node,
    NodeError,
    RetryNode,
    RetryPolicy,
    SharedState,
    Transition,
    Workflow,
    with_retry,
    workflow,
)


class Status(enum.Enum):
    RECEIVED = "received"
    VALIDATED = "validated"
    PAID = "paid"
    PAYMENT_FAILED = "payment failed"
    ALLOCATED = "stock allocated"
    REFUNDED = "refunded (no stock)"
    NOTIFIED = "customer notified"


@attrs.define
class OrderCtx:
    status: SharedState[Status] = attrs.field(factory=lambda: SharedState(Status.RECEIVED))
    stock_attempts: SharedState[int] = attrs.field(factory=lambda: SharedState(0))
    history: EventLog[str] = attrs.field(factory=EventLog)

    async def record(self, status: Status) -> None:
        await self.status.set(status)
        self.history = self.history.append(status.value)


@attrs.frozen
class Order:
    id: str
    item: str
    quantity: int


@attrs.frozen
class Receipt:
    order_id: str
    status: Status
    history: tuple[str, ...]


@attrs.frozen
class Validate(Node[OrderCtx, Order, Order]):
    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Order]:
        if input.quantity <= 0:
            raise ValueError(f"order {input.id}: quantity must be positive")
        await ctx.record(Status.VALIDATED)
        return Next(input)


@attrs.frozen
class Pay(Node[OrderCtx, Order, Order]):
    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Order]:
        await trio.sleep(0.001)
        if input.item == "declined-card":
            raise RuntimeError("card declined")
        await ctx.record(Status.PAID)
        return Next(input)


@attrs.frozen
class PaymentFailed(Node[OrderCtx, Order, Order]):
    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Order]:
        await ctx.record(Status.PAYMENT_FAILED)
        return Next(input)


@attrs.frozen
class Allocate(Node[OrderCtx, Order, Order]):
    """Fails transiently twice for "flaky-stock", always for "sold-out"."""

    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Order]:
        async with ctx.stock_attempts.lock() as attempts:
            attempts.value += 1
            n = attempts.value
        if input.item == "sold-out" or (input.item == "flaky-stock" and n < 3):
            raise LookupError(f"no stock for {input.item} (attempt {n})")
        await ctx.record(Status.ALLOCATED)
        return Next(input)


@attrs.frozen
class StockFailed(Node[OrderCtx, Order, Order]):
    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Order]:
        await ctx.record(Status.REFUNDED)
        return Next(input)


@attrs.frozen
class Notify(Node[OrderCtx, Order, Receipt]):
    async def process(self, ctx: OrderCtx, input: Order) -> Transition[Receipt]:
        outcome = await ctx.status.get()
        await ctx.record(Status.NOTIFIED)
        return Next(Receipt(input.id, outcome, tuple(ctx.history.values)))


@workflow
class OrderFlow(Workflow[OrderCtx, Order, Receipt]):
    validate: Validate
    payment: Pay
    payment_failed: PaymentFailed
    allocate: RetryNode[OrderCtx, Order, Order]
    stock_failed: StockFailed
    notify: Notify

    start = "validate"
    edges = {
        "validate": ["payment"],
        "payment": ["allocate"],
        "payment_failed": ["notify"],
        "allocate": ["notify"],
        "stock_failed": ["notify"],
        "notify": [],
    }
    on_failure = {"payment": ["payment_failed"], "allocate": ["stock_failed"]}


STOCK_RETRY = RetryPolicy(
    max_attempts=3, initial_backoff=0.01, max_backoff=0.1, strategy=BackoffStrategy.LINEAR
)


def order_flow() -> OrderFlow:
    return OrderFlow(
        validate=Validate(),
        payment=Pay(),
        payment_failed=PaymentFailed(),
        allocate=with_retry(Allocate(), STOCK_RETRY),
        stock_failed=StockFailed(),
        notify=Notify(),
    )


async def main() -> dict[str, Status | str]:
    wf = order_flow()
    orders = [
        Order("ORD-1", "laptop", 1),
        Order("ORD-2", "declined-card", 1),
        Order("ORD-3", "flaky-stock", 2),
        Order("ORD-4", "sold-out", 1),
        Order("ORD-5", "laptop", 0),
    ]
    outcomes: dict[str, Status | str] = {}
    for order in orders:
        try:
            receipt = await wf.run(OrderCtx(), order)
            outcomes[order.id] = receipt.status
            print(f"{order.id}: {receipt.status.value:<22} {' -> '.join(receipt.history)}")
        except NodeError as err:
            outcomes[order.id] = f"failed at {err.node}"
            print(f"{order.id}: failed at {err.node}: {err.cause}")
    return outcomes


if __name__ == "__main__":
    trio.run(main)
