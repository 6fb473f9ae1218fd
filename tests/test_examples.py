"""Every example program runs and produces its documented result.

Examples sleep to simulate work; here they run on trio's virtual clock, so they are fast
and deterministic. One example also runs for real as `python -m examples.<name>`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from examples import (
    batch,
    branching,
    cancellation,
    generic_nodes,
    merge,
    nested,
    node_decorator,
    order,
    retry,
    split,
    terminal_only,
    timeout,
    timer_source,
    workflow_graph,
)
from floxide import SourceStats

ROOT = Path(__file__).resolve().parent.parent


async def test_batch(autojump_clock: trio.testing.MockClock) -> None:
    assert await batch.main() == ("5 orders, total 63.50", 5)


async def test_branching(autojump_clock: trio.testing.MockClock) -> None:
    assert await branching.main() == {
        "5": "small: 5 <= 10",
        "42": "big: 84",
        "urgent: db down": "paged the on-call engineer",
        "typo in docs": "queued for tomorrow",
    }


async def test_cancellation(autojump_clock: trio.testing.MockClock) -> None:
    assert await cancellation.main() == {"cancelled": True, "timed_out": True, "finished": True}


async def test_merge(autojump_clock: trio.testing.MockClock) -> None:
    logged = ["scored 9", "scored 10", "scored 11"]  # branch order, not completion order
    assert await merge.main() == ([81, 100, 121], 3, 121, logged, 3)


async def test_nested(autojump_clock: trio.testing.MockClock) -> None:
    result, trail, error = await nested.main()
    assert result == "result 5"
    assert trail == ["add_one(8)", "add_one(9)", "halve(10)"]
    assert "node 'inner' of workflow 'Outer'" in error
    assert "node 'halve' of workflow 'Inner'" in error and "11 is odd" in error


async def test_node_decorator(autojump_clock: trio.testing.MockClock) -> None:
    assert await node_decorator.main() == ("HELLO, WORLD!", [], ["'   '"])


async def test_order(autojump_clock: trio.testing.MockClock) -> None:
    assert await order.main() == {
        "ORD-1": order.Status.ALLOCATED,
        "ORD-2": order.Status.PAYMENT_FAILED,
        "ORD-3": order.Status.ALLOCATED,
        "ORD-4": order.Status.REFUNDED,
        "ORD-5": "failed at validate",
    }


async def test_order_history_and_retries(autojump_clock: trio.testing.MockClock) -> None:
    ctx = order.OrderCtx()
    receipt = await order.order_flow().run(ctx, order.Order("X", "flaky-stock", 1))
    assert receipt.history == ("validated", "paid", "stock allocated", "customer notified")
    assert await ctx.stock_attempts.get() == 3  # two transient failures, then success
    ctx = order.OrderCtx()
    receipt = await order.order_flow().run(ctx, order.Order("Y", "sold-out", 1))
    assert receipt.status is order.Status.REFUNDED
    assert await ctx.stock_attempts.get() == order.STOCK_RETRY.max_attempts


async def test_retry(autojump_clock: trio.testing.MockClock) -> None:
    assert await retry.main() == ("report fetched on attempt 3", 1, "TransientError")


async def test_split(autojump_clock: trio.testing.MockClock) -> None:
    outputs, finished = await split.main()
    assert outputs == ["Typed", "Workflows", "For", "Python"]  # branch order
    assert finished == ["for", "typed", "python", "workflows"]  # completion order differs


async def test_terminal_only(autojump_clock: trio.testing.MockClock) -> None:
    assert await terminal_only.main() == ("echo: hi", 1)


async def test_timeout(autojump_clock: trio.testing.MockClock) -> None:
    assert await timeout.main() == ("looked up in 0.001 s", "answered from cache", 1, True)


async def test_timer_source(autojump_clock: trio.testing.MockClock) -> None:
    stats, doubled, total = await timer_source.main()
    assert stats == SourceStats(received=10, succeeded=10, failed=0)
    assert doubled == [2 * i for i in range(10)]
    assert total == 90


async def test_workflow_graph() -> None:
    dot, mermaid, routes = await workflow_graph.main()
    assert dot.startswith('digraph "OrderFlow"')
    assert '"payment" -> "payment_failed" [style=dashed, label="on failure"]' in dot
    assert mermaid.startswith("flowchart LR")
    assert "-.->|on failure|" in mermaid
    assert '|"Above"|' in routes and '|"Below"|' in routes


async def test_generic_nodes() -> None:
    assert await generic_nodes.main() == (len("foo-123"), ["x-y", "x-y"])


SCENARIOS = {
    "batch",
    "branching",
    "cancellation",
    "generic_nodes",
    "merge",
    "nested",
    "node_decorator",
    "order",
    "retry",
    "split",
    "terminal_only",
    "timeout",
    "timer_source",
    "workflow_graph",
}


def test_every_scenario_has_a_program_and_a_test() -> None:
    programs = {p.stem for p in (ROOT / "examples").glob("*.py")}
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert SCENARIOS - programs == set()
    assert SCENARIOS - tested == set()


@pytest.mark.parametrize("name", ["order", "timer_source"])
def test_runs_as_a_program(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
