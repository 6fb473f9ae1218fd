"""The node library: BatchNode, SplitNode, CompositeNode and Source."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, assert_type

import attrs
import pytest
import trio
import trio.testing

from floxide import (
    Abort,
    BatchItemError,
    BatchNode,
    CompositeNode,
    Counter,
    EventLog,
    Hold,
    ItemInfo,
    Next,
    NextAll,
    Node,
    NodeError,
    SharedState,
    Source,
    SourceResult,
    SourceStats,
    SplitNode,
    Transition,
    Workflow,
    current_item,
    item_scope,
    source,
    with_retry,
    with_timeout,
    workflow,
)


@attrs.define
class Ctx:
    running: int = 0
    peak: int = 0
    seen: list[int] = attrs.Factory(list)
    total: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Square(Node[Ctx, int, int]):
    """Squares its input after `input % 3` seconds; tracks how many run at once."""

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        ctx.running += 1
        ctx.peak = max(ctx.peak, ctx.running)
        try:
            await trio.sleep(input % 3)
            ctx.seen.append(input)
            if input < 0:
                raise ValueError(f"negative: {input}")
            if input == 99:
                return Abort("ninety-nine")
            if input == 7:
                return Hold()
            if input == 8:
                return NextAll([8, 8])
            return Next(input * input)
        finally:
            ctx.running -= 1


# ------------------------------------------------------------------ BatchNode


def test_batch_node_type() -> None:
    node = BatchNode(Square(), 2)
    assert_type(node, BatchNode[Ctx, int, int])
    as_node: Node[Ctx, Sequence[int], list[int]] = node
    assert as_node is node
    with pytest.raises(ValueError, match="batch_size"):
        BatchNode(Square(), 0)


async def test_batch_keeps_input_order_and_bounds_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = Ctx()
    items = [5, 1, 3, 2, 4, 0, 6]
    start = trio.current_time()
    assert await BatchNode(Square(), 3).process(ctx, items) == Next([i * i for i in items])
    assert ctx.peak == 3
    # Batches run one after another: each takes as long as its slowest item.
    assert trio.current_time() - start == pytest.approx(2 + 2 + 0)
    # Within a batch the items ran concurrently (completion order is by sleep time).
    assert ctx.seen[:3] == [3, 1, 5]


async def test_batch_flattens_next_all_and_skips_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await BatchNode(Square(), 2).process(Ctx(), [1, 7, 8, 2]) == Next([1, 8, 8, 4])
    assert await BatchNode(Square(), 2).process(Ctx(), []) == Next([])


async def test_a_failing_item_fails_the_batch_with_its_index(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = Ctx()
    with pytest.raises(BatchItemError, match="batch item 4 failed: ValueError: negative: -3"):
        await BatchNode(Square(), 3).process(ctx, [1, 2, 3, -1 + 2, -3, 5, 6])
    assert 6 not in ctx.seen  # later batches never ran
    assert 5 not in ctx.seen  # the slow sibling in the failing batch was cancelled


@attrs.frozen
class FailFast(Node[Ctx, int, int]):
    """Fails at once (no checkpoint), so every failing item of a batch fails before the
    first failure's cancellation can reach the others."""

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        if input == 99:
            return Abort("ninety-nine")
        if input < 0:
            raise ValueError(f"negative: {input}")
        return Next(input)


async def test_abort_and_several_failures() -> None:
    with pytest.raises(BatchItemError) as info:
        await BatchNode(FailFast(), 4).process(Ctx(), [0, 1, 2, 3, 4, -3, 99, 7])
    err = info.value
    assert (err.index, type(err.cause).__name__) == (5, "ValueError")
    assert [(i, str(e)) for i, e in err.others] == [(6, "ninety-nine")]
    assert err.__cause__ is err.cause


async def test_batch_elements_run_as_nested_items() -> None:
    seen: dict[int, ItemInfo | None] = {}

    @attrs.frozen
    class Where(Node[Ctx, int, int]):
        async def process(self, ctx: Ctx, input: int) -> Transition[int]:
            await trio.sleep(0)
            seen[input] = current_item()
            return Next(input)

    with item_scope("7", (1,)):
        await BatchNode(Where(), 2).process(Ctx(), [10, 11, 12])
    assert seen == {
        10: ItemInfo("7/0", (1, 0)),
        11: ItemInfo("7/1", (1, 1)),
        12: ItemInfo("7/2", (1, 2)),
    }
    await BatchNode(Where(), 2).process(Ctx(), [10])  # outside a run: no scopes invented
    assert seen[10] is None


# ------------------------------------------------------------------ SplitNode


def commas(text: str) -> list[str]:
    return text.split(",")


async def test_split_emits_next_all() -> None:
    split = SplitNode(commas)
    assert_type(split, SplitNode[str, str])
    as_node: Node[Ctx, str, str] = split  # any context fits
    assert await as_node.process(Ctx(), "a,b,c") == NextAll(["a", "b", "c"])


@attrs.frozen
class Parse(Node[Ctx, str, int]):
    async def process(self, ctx: Ctx, input: str) -> Transition[int]:
        await ctx.total.update(lambda n: n + int(input))
        return Next(int(input))


@attrs.frozen
class Sum(Node[Ctx, Sequence[int], int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class SplitJoin(Workflow[Ctx, str, int]):
    split: SplitNode[str, str]
    parse: Parse
    total: Sum

    start = "split"
    edges = {"split": ["parse"], "parse": ["total"], "total": []}
    joins = {"total": "split"}


async def test_split_then_join_in_a_workflow() -> None:
    ctx = Ctx()
    wf = SplitJoin(split=SplitNode(lambda s: s.split(",")), parse=Parse(), total=Sum())
    assert await wf.run(ctx, "1,2,3,4") == 10
    assert await ctx.total.get() == 10
    split = SplitNode[str, str](lambda s: s.split(",") if s else [])
    empty = SplitJoin(split=split, parse=Parse(), total=Sum())
    assert await empty.run(Ctx(), "") == 0  # no branches: the join runs with []


# ------------------------------------------------------------------ CompositeNode


@attrs.frozen
class AddOne(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        ctx.seen.append(input)
        if input < 0:
            raise ValueError("inner failure")
        if input == 0:
            return Hold()
        return Next(input + 1)


@workflow
class Inner(Workflow[Ctx, int, int]):
    first: AddOne
    second: AddOne

    start = "first"
    edges = {"first": ["second"], "second": []}


@workflow
class Fan(Workflow[Ctx, int, int]):
    left: AddOne
    right: Square

    start = "left"
    edges = {"left": [], "right": []}
    on_failure = {"left": ["right"]}


@workflow
class Outer(Workflow[Ctx, int, int]):
    sub: CompositeNode[Ctx, int, int]
    last: AddOne

    start = "sub"
    edges = {"sub": ["last"], "last": []}


async def test_composite_runs_the_inner_workflow_on_the_outer_context() -> None:
    ctx = Ctx()
    node = CompositeNode(Inner(first=AddOne(), second=AddOne()))
    assert_type(node, CompositeNode[Ctx, int, int])
    wf = Outer(sub=node, last=AddOne())
    assert await wf.run(ctx, 1) == 4
    assert ctx.seen == [1, 2, 3]  # inner nodes wrote to the same context object


async def test_composite_errors_keep_the_inner_node_name() -> None:
    wf = Outer(sub=CompositeNode(Inner(first=AddOne(), second=AddOne())), last=AddOne())
    with pytest.raises(NodeError) as info:
        await wf.run(Ctx(), -5)
    message = str(info.value)
    assert "node 'sub' of workflow 'Outer'" in message
    assert "node 'first' of workflow 'Inner'" in message
    assert isinstance(info.value.cause, NodeError) and info.value.cause.node == "first"


async def test_composite_without_output_holds_and_all_outputs_emits_each() -> None:
    inner = Inner(first=AddOne(), second=AddOne())
    assert await CompositeNode(inner).process(Ctx(), 0) == Hold()
    assert await CompositeNode(inner, all_outputs=True).process(Ctx(), 0) == Hold()

    @workflow
    class Two(Workflow[Ctx, int, int]):
        a: AddOne
        b: AddOne
        c: AddOne

        start = "a"
        edges = {"a": ["b", "c"], "b": [], "c": []}

    two = Two(a=AddOne(), b=AddOne(), c=AddOne())
    assert await CompositeNode(two, all_outputs=True).process(Ctx(), 1) == NextAll([3, 3])
    assert await CompositeNode(two).process(Ctx(), 1) == Next(3)


async def test_nested_item_scopes_are_qualified() -> None:
    seen: list[object] = []

    @attrs.frozen
    class Record(Node[Ctx, int, int]):
        async def process(self, ctx: Ctx, input: int) -> Transition[int]:
            seen.append(current_item())
            return Next(input)

    @workflow
    class Leaf(Workflow[Ctx, int, int]):
        rec: Record

        start = "rec"
        edges = {"rec": []}

    with item_scope("outer", (2,)):
        await CompositeNode(Leaf(rec=Record())).process(Ctx(), 1)
    # The nested run's items are qualified by the item running the composite node.
    assert seen == [ItemInfo("outer/0", (2,))]


# ------------------------------------------------------------------ Source


@attrs.frozen
class Slow(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        ctx.running += 1
        ctx.peak = max(ctx.peak, ctx.running)
        try:
            await trio.sleep(1)
        finally:
            ctx.running -= 1
        if input < 0:
            raise ValueError(f"bad input {input}")
        await ctx.total.update(lambda n: n + input)
        return Next(input * 10)


@workflow
class One(Workflow[Ctx, int, int]):
    slow: Slow

    start = "slow"
    edges = {"slow": []}


async def test_source_runs_one_workflow_per_item_with_bounded_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = Ctx()
    send, src = source(One(slow=Slow()), max_concurrent=3)
    assert_type(src, Source[Ctx, int, int])
    results_send, results_recv = trio.open_memory_channel[SourceResult[int, int]](math.inf)

    async def produce() -> None:
        async with send:
            for i in range(10):
                await send.send(i)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        stats = await src.run(ctx, results_send)
    assert stats == SourceStats(received=10, succeeded=10, failed=0)
    assert ctx.peak == 3
    assert trio.current_time() - start == pytest.approx(4)  # ceil(10 / 3) rounds of 1 s
    results = sorted([r async for r in results_recv], key=lambda r: r.index)
    assert [(r.input, r.output, r.ok) for r in results] == [(i, i * 10, True) for i in range(10)]
    assert await ctx.total.get() == 45


async def test_source_reports_failures_as_results_and_keeps_going(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, src = source(One(slow=Slow()), capacity=math.inf)
    for i in (1, -2, 3):
        send.send_nowait(i)
    send.close()
    results_send, results_recv = trio.open_memory_channel[SourceResult[int, int]](math.inf)
    stats = await src.run(Ctx(), results_send)
    assert stats == SourceStats(received=3, succeeded=2, failed=1)
    failed = [r async for r in results_recv if not r.ok]
    assert len(failed) == 1 and failed[0].input == -2
    assert isinstance(failed[0].error, NodeError) and "bad input -2" in str(failed[0].error)


async def test_source_without_results_raises_the_first_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, src = source(One(slow=Slow()), capacity=math.inf, max_concurrent=1)
    for i in (1, -2, 3, 4):
        send.send_nowait(i)
    ctx = Ctx()
    with pytest.raises(NodeError, match="bad input -2"):
        await src.run(ctx)
    assert await ctx.total.get() == 1  # 3 and 4 never ran
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait(5)  # the source closed its end


async def test_source_timeout_per_run(autojump_clock: trio.testing.MockClock) -> None:
    send, src = source(One(slow=Slow()), capacity=1, timeout=0.5)
    send.send_nowait(1)
    send.close()
    results_send, results_recv = trio.open_memory_channel[SourceResult[int, int]](1)
    assert (await src.run(Ctx(), results_send)).failed == 1
    result = await results_recv.receive()
    assert "did not finish within 0.5" in str(result.error)


async def test_source_stops_when_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    send, src = source(One(slow=Slow()))
    ctx = Ctx()
    with trio.move_on_after(10) as scope:
        await src.run(ctx)  # nobody ever sends or closes: runs until cancelled
    assert scope.cancelled_caught
    del send


def test_source_arguments_are_checked() -> None:
    wf = One(slow=Slow())
    with pytest.raises(ValueError, match=r"capacity must be a non-negative int or math\.inf"):
        source(wf, capacity=-1)
    with pytest.raises(ValueError, match=r"Source\.max_concurrent must be an int >= 1, got 0"):
        source(wf, max_concurrent=0)
    with pytest.raises(ValueError, match=r"Source\.timeout must be a number of seconds > 0"):
        source(wf, timeout=-1)
    with pytest.raises(TypeError, match=r"Source.workflow must be a Workflow, got <class .*One"
                       r"'>; pass an instance, One\(...\), not the class"):
        source(One)  # type: ignore[arg-type]


async def _fn(ctx: Ctx, input: int) -> Transition[int]:
    return Next(input)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: with_retry(Square), TypeError,
         "RetryNode.inner must be a Node, got <class 'tests.test_nodes_lib.Square'>; pass an "
         "instance, Square(...), not the class"),
        (lambda: with_retry(_fn), TypeError,
         "RetryNode.inner must be a Node, got <function _fn at 0x...>; turn an async "
         "function into a node with @node"),
        (lambda: with_retry(Square(), "3"), TypeError,
         "RetryNode.policy must be a RetryPolicy, got '3'"),
        (lambda: with_timeout(3, 1.0), TypeError, "TimeoutNode.inner must be a Node, got 3"),
        (lambda: BatchNode(None, 2), TypeError, "BatchNode.inner must be a Node, got None"),
        (lambda: BatchNode(Square(), 0), ValueError,
         "BatchNode.batch_size must be an int >= 1, got 0"),
        (lambda: BatchNode(Square(), 2.5), ValueError,
         "BatchNode.batch_size must be an int >= 1, got 2.5"),
        (lambda: SplitNode([1, 2]), TypeError, "SplitNode.fn must be callable, got [1, 2]"),
        (lambda: CompositeNode(Square()), TypeError,
         "CompositeNode.workflow must be a Workflow, got Square()"),
        (lambda: CompositeNode(One(slow=Slow()), concurrency=0), ValueError,
         "CompositeNode.concurrency must be an int >= 1, got 0"),
    ],
)
def test_library_nodes_check_their_arguments(make: Any, error: type, message: str) -> None:
    """A wrapper around the wrong thing fails when it is built, not deep inside a run."""
    with pytest.raises(error) as info:
        make()
    assert re.sub(r"0x[0-9a-f]+", "0x...", str(info.value)) == message


# ------------------------------------------------------------------ merges in a real run


@attrs.define
class Tally:
    count: Counter = attrs.field(factory=Counter)
    log: EventLog[int] = attrs.field(factory=EventLog)


@attrs.frozen
class Note(Node[Tally, int, int]):
    async def process(self, ctx: Tally, input: int) -> Transition[int]:
        await trio.sleep(10 - input)  # later branches append first
        ctx.count = ctx.count.add(1)
        ctx.log = ctx.log.append(input)
        return Next(input)


@workflow
class Notes(Workflow[Tally, int, int]):
    split: SplitNode[int, int]
    note: Note

    start = "split"
    edges = {"split": ["note"], "note": []}


async def test_merge_values_in_a_local_run(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Tally()
    wf = Notes(split=SplitNode(lambda n: range(n)), note=Note())
    assert await wf.run_all(ctx, 5) == [0, 1, 2, 3, 4]
    assert ctx.count.value == 5
    assert len(ctx.count.increments) == 5  # one contribution per work item
    assert ctx.log.values == [0, 1, 2, 3, 4]  # branch order, whatever the scheduling
    assert [e.position for e in ctx.log] == [(0,), (1,), (2,), (3,), (4,)]


# ------------------------------------------------------------------ static types

_TYPED = '''
from collections.abc import Sequence
import attrs
from floxide import (BatchNode, CompositeNode, Next, Node, RetryPolicy, SplitNode, Transition,
                     Workflow, source, with_retry, with_timeout, workflow)

@attrs.frozen
class Double(Node[int, int, int]):
    async def process(self, ctx: int, input: int) -> Transition[int]:
        return Next(input * 2)

@workflow
class W(Workflow[int, int, int]):
    d: Node[int, int, int]
    start = "d"
    edges = {"d": []}

def words(s: str) -> list[str]:
    return s.split()

reveal_type(with_retry(Double(), RetryPolicy()))
reveal_type(with_timeout(Double(), 1.0))
reveal_type(BatchNode(Double(), 2))
reveal_type(SplitNode(words))
reveal_type(CompositeNode(W(d=Double())))
reveal_type(source(W(d=Double())))
a: Node[int, int, int] = with_retry(Double(), RetryPolicy())
b: Node[int, Sequence[int], list[int]] = BatchNode(with_timeout(Double(), 1.0), 3)
c: Node[object, str, str] = SplitNode(words)
d: Node[int, str, int] = with_retry(Double())  # wrong input type: rejected
'''


def test_wrappers_keep_the_inner_node_types_under_mypy(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    snippet = tmp_path / "typed_snippet.py"
    snippet.write_text(_TYPED)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(root / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    for revealed in (
        "floxide._retry.RetryNode[builtins.int, builtins.int, builtins.int]",
        "floxide._timeout.TimeoutNode[builtins.int, builtins.int, builtins.int]",
        "floxide._nodes.batch.BatchNode[builtins.int, builtins.int, builtins.int]",
        "floxide._nodes.split.SplitNode[builtins.str, builtins.str]",
        "floxide._nodes.composite.CompositeNode[builtins.int, builtins.int, builtins.int]",
        "floxide._nodes.source.Source[builtins.int, builtins.int, builtins.int]",
    ):
        assert revealed.replace("builtins.", "") in out.replace("builtins.", ""), out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and '"with_retry" has incompatible type "Double"' in errors[0], out
