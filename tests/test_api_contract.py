"""The public API's own examples (API.md sections 1 and 2) run as written."""

from __future__ import annotations

import attrs
import trio

import floxide
from floxide import Abort, Hold, Next, NextAll, Node, Transition, Workflow, node, workflow


@attrs.define
class Ctx:
    greeting: str = "hi"


@attrs.frozen
class Double(Node[Ctx, int, int]):  # Node[Ctx, In, Out]
    factor: int = 2

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input * self.factor)


@node
async def shout(ctx: Ctx, input: str) -> Transition[str]:
    return Next(input.upper())


@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    value: int


@attrs.frozen
class Threshold(Node[Ctx, int, Above | Below]):
    limit: int

    async def process(self, ctx: Ctx, input: int) -> Transition[Above | Below]:
        return Next(Above(input) if input >= self.limit else Below(input))


@attrs.frozen
class BigNode(Node[Ctx, Above, str]):
    async def process(self, ctx: Ctx, input: Above) -> Transition[str]:
        return Next(f"{ctx.greeting}, big {input.value}")


@attrs.frozen
class SmallNode(Node[Ctx, Below, str]):
    async def process(self, ctx: Ctx, input: Below) -> Transition[str]:
        return Next(f"{ctx.greeting}, small {input.value}")


@workflow
class Pipeline(Workflow[Ctx, int, str]):  # Workflow[Ctx, In, Out]
    double: Double
    check: Threshold  # Node[Ctx, int, Above | Below]
    big: BigNode  # Node[Ctx, Above, str]
    small: SmallNode  # Node[Ctx, Below, str]

    start = "double"
    edges = {
        "double": ["check"],  # fan-out list: one or more successors
        "check": {Above: ["big"], Below: ["small"]},  # routing table on the output
        "big": [],  # [] = terminal node
        "small": [],
    }


async def test_section_2_pipeline_runs() -> None:
    wf = Pipeline(double=Double(), check=Threshold(10), big=BigNode(), small=SmallNode())
    out: str = await wf.run(Ctx(), 7)
    assert out == "hi, big 14"
    assert await wf.run(Ctx("yo"), 2) == "yo, small 4"


async def test_section_1_nodes() -> None:
    assert await Double().process(Ctx(), 4) == Next(8)
    assert await shout.process(Ctx(), "abc") == Next("ABC")
    assert isinstance(shout, Node)
    assert NextAll([1, 2]).values == (1, 2)
    assert Hold() == Hold()
    assert isinstance(Abort("no").error, RuntimeError)


def test_section_9_errors_are_importable() -> None:
    for name in (
        "FloxideError",
        "WorkflowDefinitionError",
        "NodeError",
        "NoOutputError",
        "RunCancelled",
        "CheckpointError",
        "BackendError",
    ):
        err = getattr(floxide, name)
        assert issubclass(err, floxide.FloxideError)


def test_public_surface_is_deliberate() -> None:
    assert set(floxide.__all__) <= set(dir(floxide))
    assert all(not name.startswith("_") for name in floxide.__all__)


def test_runs_under_plain_trio_run() -> None:
    wf = Pipeline(double=Double(3), check=Threshold(10), big=BigNode(), small=SmallNode())
    assert trio.run(wf.run, Ctx(), 5) == "hi, big 15"
