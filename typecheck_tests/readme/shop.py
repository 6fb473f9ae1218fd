import attrs

from floxide import Next, Node, Transition, Workflow, workflow


@attrs.define
class Ctx:
    currency: str = "EUR"


@attrs.frozen
class Order:
    total: int


@attrs.frozen
class Receipt:
    text: str


@attrs.frozen
class Price(Node[Ctx, str, Order]):
    async def process(self, ctx: Ctx, input: str) -> Transition[Order]:
        return Next(Order(len(input)))


@attrs.frozen
class Print(Node[Ctx, Receipt, str]):
    async def process(self, ctx: Ctx, input: Receipt) -> Transition[str]:
        return Next(input.text)


@workflow
class Checkout(Workflow[Ctx, str, str]):
    price: Price
    print: Print

    start = "price"
    edges = {
        "price": ["print"],   # Print wants a Receipt, Price makes an Order
        "print": [],
    }
