"""The in-process trio executor: semantics of run, run_all, routes, joins and failures."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Literal

import attrs
import pytest
import trio
import trio.testing

from floxide import (
    Abort,
    FloxideError,
    Hold,
    Next,
    NextAll,
    Node,
    NodeError,
    NoOutputError,
    RunCancelled,
    RunTimeoutError,
    Transition,
    Workflow,
    node,
    workflow,
)


@attrs.define
class Counter:
    value: int = 0
    log: list[str] = attrs.Factory(list)


@attrs.frozen
class Add(Node[Counter, int, int]):
    n: int

    async def process(self, ctx: Counter, input: int) -> Transition[int]:
        ctx.value += self.n
        await trio.sleep(0)
        return Next(input + self.n)


# ------------------------------------------------------------------ the seed example
@workflow
class Seed(Workflow[Counter, int, int]):
    first: Add
    left: Add
    right: Add

    start = "first"
    edges = {"first": ["left", "right"], "left": [], "right": []}


async def test_seed_example_counter_21_and_both_outputs() -> None:
    ctx = Counter()
    wf = Seed(first=Add(1), left=Add(10), right=Add(10))
    assert await wf.run_all(ctx, 0) == [11, 11]
    assert ctx.value == 21


async def test_run_returns_first_output_in_branch_order_and_runs_everything() -> None:
    ctx = Counter()
    wf = Seed(first=Add(1), left=Add(10), right=Add(100))
    assert await wf.run(ctx, 0) == 11
    assert ctx.value == 111  # the right branch ran too: nothing is dropped


# ------------------------------------------------------------------ routing
@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    value: int


@attrs.frozen
class Threshold(Node[Counter, int, Above | Below]):
    limit: int

    async def process(self, ctx: Counter, input: int) -> Transition[Above | Below]:
        return Next(Above(input) if input > self.limit else Below(input))


@node
async def big(ctx: Counter, x: Above) -> Transition[str]:
    return Next(f"big {x.value}")


@node
async def small(ctx: Counter, x: Below) -> Transition[str]:
    return Next(f"small {x.value}")


@workflow
class Pipeline(Workflow[Counter, int, str]):
    double: Add
    check: Threshold
    big: Node[Counter, Above, str]
    small: Node[Counter, Below, str]

    start = "double"
    edges = {
        "double": ["check"],
        "check": {Above: ["big"], Below: ["small"]},
        "big": [],
        "small": [],
    }


async def test_class_routes() -> None:
    wf = Pipeline(double=Add(5), check=Threshold(10), big=big, small=small)
    assert await wf.run(Counter(), 7) == "big 12"
    assert await wf.run(Counter(), 1) == "small 6"


class Kind(enum.Enum):
    A = "a"
    B = "b"


@node
async def classify(ctx: Counter, x: int) -> Transition[Kind]:
    return Next(Kind.A if x % 2 else Kind.B)


@node
async def name_of(ctx: Counter, k: Kind) -> Transition[str]:
    return Next(k.name)


@node
async def literal_of(ctx: Counter, x: int) -> Transition[Literal["odd", "even"]]:
    return Next("odd" if x % 2 else "even")


@node
async def echo(ctx: Counter, s: str) -> Transition[str]:
    return Next(s)


@workflow
class EnumRoutes(Workflow[Counter, int, str]):
    classify: Node[Counter, int, Kind]
    on_a: Node[Counter, Kind, str]
    on_b: Node[Counter, Kind, str]

    start = "classify"
    edges = {"classify": {Kind.A: ["on_a"], Kind.B: ["on_b"]}, "on_a": [], "on_b": []}


@workflow
class LiteralRoutes(Workflow[Counter, int, str]):
    parity: Node[Counter, int, Literal["odd", "even"]]
    shout: Node[Counter, str, str]

    start = "parity"
    edges = {"parity": {"odd": ["shout"], "even": []}, "shout": []}


async def test_enum_and_literal_routes() -> None:
    wf = EnumRoutes(classify=classify, on_a=name_of, on_b=name_of)
    assert await wf.run(Counter(), 3) == "A"
    assert await wf.run(Counter(), 4) == "B"
    lit = LiteralRoutes(parity=literal_of, shout=echo)
    assert await lit.run(Counter(), 3) == "odd"
    assert await lit.run(Counter(), 4) == "even"  # a route to [] is terminal


@node
async def weird(ctx: Counter, x: int) -> Transition[Kind]:
    return Next("not a kind")  # type: ignore[arg-type]


async def test_unmatched_route_fails_with_a_node_error() -> None:
    wf = EnumRoutes(classify=weird, on_a=name_of, on_b=name_of)
    with pytest.raises(NodeError, match="matches no route") as info:
        await wf.run(Counter(), 3)
    assert info.value.node == "classify"


# ------------------------------------------------------------------ Hold, Abort, fallbacks
@node
async def hold_odd(ctx: Counter, x: int) -> Transition[int]:
    return Hold() if x % 2 else Next(x)


@node
async def fan(ctx: Counter, n: int) -> Transition[int]:
    return NextAll(range(n))


@workflow
class HoldFlow(Workflow[Counter, int, int]):
    fan: Node[Counter, int, int]
    keep: Node[Counter, int, int]

    start = "fan"
    edges = {"fan": ["keep"], "keep": []}


async def test_hold_ends_a_branch_without_output() -> None:
    wf = HoldFlow(fan=fan, keep=hold_odd)
    assert await wf.run_all(Counter(), 6) == [0, 2, 4]


async def test_no_output_error() -> None:
    wf = HoldFlow(fan=fan, keep=hold_odd)
    with pytest.raises(NoOutputError):
        await wf.run(Counter(), 0)


@node
async def pay(ctx: Counter, amount: int) -> Transition[str]:
    if amount > 100:
        return Abort(ValueError("card declined"))
    return Next(f"paid {amount}")


@node
async def refund(ctx: Counter, amount: int) -> Transition[str]:
    return Next(f"refunded {amount}")


@node
async def explode(ctx: Counter, amount: int) -> Transition[str]:
    raise KeyError("boom")


@workflow
class Payment(Workflow[Counter, int, str]):
    pay: Node[Counter, int, str]
    refund: Node[Counter, int, str]

    start = "pay"
    edges = {"pay": [], "refund": []}
    on_failure = {"pay": ["refund"]}


async def test_abort_goes_to_fallback_with_the_failing_input() -> None:
    wf = Payment(pay=pay, refund=refund)
    assert await wf.run(Counter(), 50) == "paid 50"
    assert await wf.run(Counter(), 500) == "refunded 500"


async def test_raising_goes_to_fallback_too() -> None:
    wf = Payment(pay=explode, refund=refund)
    assert await wf.run(Counter(), 1) == "refunded 1"


async def test_failure_without_fallback_is_a_node_error_not_a_group() -> None:
    wf = Payment(pay=pay, refund=explode)
    with pytest.raises(NodeError) as info:
        await wf.run(Counter(), 500)
    err = info.value
    assert isinstance(err, FloxideError)
    assert err.node == "refund"
    assert isinstance(err.cause, KeyError)
    assert err.item_id is not None
    assert "node 'refund' of workflow 'Payment'" in str(err)
    assert "KeyError" in str(err)


@attrs.frozen
class SlowAdd(Node[Counter, int, int]):
    delay: float

    async def process(self, ctx: Counter, input: int) -> Transition[int]:
        await trio.sleep(self.delay)
        ctx.log.append(f"done {input}")
        return Next(input)


@node
async def fail_fast(ctx: Counter, x: int) -> Transition[int]:
    await trio.sleep(0.01)
    raise RuntimeError(f"bad {x}")


@workflow
class Siblings(Workflow[Counter, int, int]):
    fan: Node[Counter, int, int]
    slow: SlowAdd
    bad: Node[Counter, int, int]

    start = "fan"
    edges = {"fan": ["slow", "bad"], "slow": [], "bad": []}


async def test_a_failure_cancels_sibling_branches(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Counter()
    wf = Siblings(fan=fan, slow=SlowAdd(1000.0), bad=fail_fast)
    with pytest.raises(NodeError, match="bad"):
        await wf.run(ctx, 3)
    assert ctx.log == []  # no slow branch finished: they were cancelled


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_timeout_cancels_the_run(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Counter()
    wf = Siblings(fan=fan, slow=SlowAdd(1000.0), bad=SlowAdd(1000.0))
    with pytest.raises(RunTimeoutError) as info:
        await wf.run(ctx, 2, timeout=5)
    assert isinstance(info.value, RunCancelled)
    assert ctx.log == []


@node
async def spin(ctx: Counter, x: int) -> Transition[int]:
    return Next(x + 1)


@workflow
class Loop(Workflow[Counter, int, int]):
    spin: Node[Counter, int, int]
    start = "spin"
    edges = {"spin": ["spin"]}


async def test_timeout_interrupts_a_busy_loop() -> None:
    with pytest.raises(RunTimeoutError):
        await Loop(spin=spin).run(Counter(), 0, timeout=0.05)


# ------------------------------------------------------------------ concurrency
@attrs.define
class Gauge:
    now: int = 0
    peak: int = 0


@attrs.frozen
class Measure(Node[Gauge, int, int]):
    async def process(self, ctx: Gauge, input: int) -> Transition[int]:
        ctx.now += 1
        ctx.peak = max(ctx.peak, ctx.now)
        await trio.sleep(1)
        ctx.now -= 1
        return Next(input)


@node
async def gauge_fan(ctx: Gauge, n: int) -> Transition[int]:
    return NextAll(range(n))


@workflow
class Wide(Workflow[Gauge, int, int]):
    fan: Node[Gauge, int, int]
    work: Measure

    start = "fan"
    edges = {"fan": ["work"], "work": []}


async def test_branches_run_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Gauge()
    start = trio.current_time()
    assert await Wide(fan=gauge_fan, work=Measure()).run_all(ctx, 50) == list(range(50))
    assert ctx.peak == 50
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_concurrency_bound_is_respected(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Gauge()
    wf = Wide(fan=gauge_fan, work=Measure())
    assert await wf.run_all(ctx, 20, concurrency=4) == list(range(20))
    assert ctx.peak == 4
    with pytest.raises(ValueError, match="concurrency"):
        await wf.run_all(ctx, 1, concurrency=0)


class TaskCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


@workflow
class Chain(Workflow[Counter, int, int]):
    a: Add
    b: Add
    c: Add
    d: Add

    start = "a"
    edges = {"a": ["b"], "b": ["c"], "c": ["d"], "d": ["a"]}


@node
async def count_down(ctx: Counter, x: int) -> Transition[int]:
    await trio.sleep(0)
    return Next(x - 1)


@node
async def stop_at_zero(ctx: Counter, x: int) -> Transition[Literal["done"] | int]:
    return Next("done" if x <= 0 else x)


@workflow
class Countdown(Workflow[Counter, int, Literal["done"] | int]):
    dec: Node[Counter, int, int]
    test: Node[Counter, int, Literal["done"] | int]

    start = "dec"
    edges = {"dec": ["test"], "test": {"done": [], int: ["dec"]}}


async def test_single_successor_chain_spawns_no_task_per_step() -> None:
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        assert await Countdown(dec=count_down, test=stop_at_zero).run(Counter(), 500) == "done"
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert counter.spawned <= 3  # 1000 steps, a constant number of tasks


# ------------------------------------------------------------------ joins
@node
async def split3(ctx: Counter, x: int) -> Transition[int]:
    return NextAll([x * 10 + i for i in range(3)])


@attrs.frozen
class Jitter(Node[Counter, int, int]):
    async def process(self, ctx: Counter, input: int) -> Transition[int]:
        await trio.sleep((7 - input % 7) / 1000)  # later branches finish first
        return Next(input)


@node
async def collect(ctx: Counter, xs: Sequence[int]) -> Transition[list[int]]:
    ctx.log.append(f"join {list(xs)}")
    return Next(list(xs))


@node
async def flatten(ctx: Counter, xs: Sequence[list[int]]) -> Transition[list[int]]:
    ctx.log.append("outer")
    return Next([v for x in xs for v in x])


@workflow
class Nested(Workflow[Counter, int, list[int]]):
    outer: Node[Counter, int, int]
    inner: Node[Counter, int, int]
    work: Jitter
    inner_join: Node[Counter, Sequence[int], list[int]]
    outer_join: Node[Counter, Sequence[list[int]], list[int]]

    start = "outer"
    edges = {
        "outer": ["inner"],
        "inner": ["work"],
        "work": ["inner_join"],
        "inner_join": ["outer_join"],
        "outer_join": [],
    }
    joins = {"inner_join": "inner", "outer_join": "outer"}


async def test_nested_joins_fire_once_per_fan_out_in_branch_order() -> None:
    ctx = Counter()
    wf = Nested(outer=split3, inner=split3, work=Jitter(), inner_join=collect, outer_join=flatten)
    out = await wf.run_all(ctx, 0)
    assert out == [[0, 1, 2, 10, 11, 12, 20, 21, 22]]
    assert sorted(ctx.log) == sorted(
        ["join [0, 1, 2]", "join [10, 11, 12]", "join [20, 21, 22]", "outer"]
    )
    assert ctx.log[-1] == "outer"  # after every descendant finished


@node
async def maybe_hold(ctx: Counter, x: int) -> Transition[int]:
    return Hold() if x % 2 else Next(x)


@workflow
class JoinWithHolds(Workflow[Counter, int, list[int]]):
    fan: Node[Counter, int, int]
    filt: Node[Counter, int, int]
    total: Node[Counter, Sequence[int], list[int]]

    start = "fan"
    edges = {"fan": ["filt"], "filt": ["total"], "total": []}
    joins = {"total": "fan"}


async def test_join_after_holds_and_empty_fan_outs() -> None:
    wf = JoinWithHolds(fan=fan, filt=maybe_hold, total=collect)
    assert await wf.run(Counter(), 7) == [0, 2, 4, 6]
    assert await wf.run(Counter(), 0) == []  # an empty fan-out still fires its join once


@workflow
class StrayJoin(Workflow[Counter, int, list[int]]):
    first: Node[Counter, int, int]
    fan: Node[Counter, int, int]
    total: Node[Counter, Sequence[int], list[int]]

    start = "first"
    edges = {"first": {0: ["total"], int: ["fan"]}, "fan": ["total"], "total": []}
    joins = {"total": "fan"}


async def test_item_reaching_a_join_outside_its_fan_out_fails_clearly() -> None:
    wf = StrayJoin(first=spin, fan=fan, total=collect)
    assert await wf.run(Counter(), 2) == [0, 1, 2]
    with pytest.raises(NodeError, match="outside any fan-out of 'fan'"):
        await wf.run(Counter(), -1)


async def test_next_all_positions_order_outputs() -> None:
    @attrs.frozen
    class Reverse(Node[None, int, int]):
        async def process(self, ctx: None, input: int) -> Transition[int]:
            await trio.sleep((10 - input) / 1000)
            return Next(input)

    @node
    async def many(ctx: None, n: int) -> Transition[int]:
        return NextAll(range(n))

    @workflow
    class Ordered(Workflow[None, int, int]):
        many: Node[None, int, int]
        rev: Reverse
        start = "many"
        edges = {"many": ["rev"], "rev": []}

    assert await Ordered(many=many, rev=Reverse()).run_all(None, 10) == list(range(10))


async def test_graph_export() -> None:
    wf = Pipeline(double=Add(5), check=Threshold(10), big=big, small=small)
    dot = wf.to_dot()
    assert dot.startswith('digraph "Pipeline" {')
    assert '"check" -> "big" [label="Above"];' in dot
    mermaid = wf.to_mermaid()
    assert mermaid.startswith("flowchart LR")
    assert '-->|"Below"|' in mermaid
    pay_dot = Payment(pay=pay, refund=refund).to_dot()
    assert '"pay" -> "refund" [style=dashed, label="on failure"];' in pay_dot
