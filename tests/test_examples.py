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
    distributed_orchestrated_merge,
    error_fallback,
    generic_nodes,
    llm_article,
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
from floxide.distributed import RunStatus

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


async def test_error_fallback(autojump_clock: trio.testing.MockClock) -> None:
    recovered, reports = await error_fallback.local()
    assert recovered == "recovered input"
    assert reports == {
        "Lima": "Lima: 19.0 C (live, call 3)",  # two transient failures, then the retry works
        "Oslo": "Oslo: 4.0 C (cache)",  # every attempt failed: the fallback answered
        "Quito": "Quito: 20.0 C (live, call 1)",
    }


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
async def test_error_fallback_distributed(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'runs.db'}"
    report, attempts, cached = await error_fallback.distributed(url)
    assert report == "Oslo: 4.0 C (cache)"
    assert attempts == [("fetch", 1, True), ("fetch", 2, True), ("fetch", 3, True)]
    assert cached == 1


async def test_llm_article(autojump_clock: trio.testing.MockClock) -> None:
    article, calls, at_once, took = await llm_article.main("typed workflows")
    assert article == llm_article.Article(
        "Typed Workflows",
        "Why typed workflows: edited.\nHow typed workflows: edited.\n"
        "What next for typed workflows: edited.",
    )
    assert calls == 6  # outline, three sections, edit, title
    assert at_once == 3  # the sections are written concurrently
    assert took == pytest.approx(4 * llm_article.FakeModel().latency)  # four rounds, not six


async def test_llm_article_model_is_deterministic(autojump_clock: trio.testing.MockClock) -> None:
    first, second = llm_article.FakeModel(latency=0), llm_article.FakeModel(latency=0)
    one = await llm_article.article_writer(first).run(llm_article.Ctx(), "trio")
    two = await llm_article.article_writer(second).run(llm_article.Ctx(), "trio")
    assert one == two and first.prompts[0] == "Outline: trio"
    assert sorted(first.prompts) == sorted(second.prompts)


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
async def test_distributed_orchestrated_merge(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'runs.db'}"
    out = await distributed_orchestrated_merge.main(url, 10)
    values = [10 * x for x in range(10)]
    assert out.status is RunStatus.COMPLETED
    assert out.summary == distributed_orchestrated_merge.Summary(values, 10, 90)
    ctx = out.context
    assert set(ctx.received) == set(values) and ctx.expected.get() == 10
    assert ctx.merged.value == 10  # four branches ran twice, each counted once
    assert ctx.largest.value == 90
    assert ctx.log.values == [f"received {v}" for v in values]  # branch order
    assert out.retried == 4  # 0, 30, 60 and 90 failed their first attempt
    assert sum(out.steps_per_worker) >= 1 + 10 + 1 + 1  # split, branches, gather, check


SCENARIOS = {
    "batch",
    "branching",
    "cancellation",
    "distributed_orchestrated_merge",
    "error_fallback",
    "generic_nodes",
    "llm_article",
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


@pytest.mark.parametrize(
    "name",
    [
        "order",
        "timer_source",
        "error_fallback",
        "distributed_orchestrated_merge",
        "llm_article",
        "demo",  # what `make demo` runs: two worker processes on SQLite
    ],
)
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
