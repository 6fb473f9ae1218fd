"""Retry policies, RetryNode and with_timeout, on trio's virtual clock (no real sleeps)."""

from __future__ import annotations

import random
from typing import Any, assert_type

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from floxide import (
    Abort,
    BackoffStrategy,
    Counter,
    EventLog,
    Next,
    Node,
    NodeError,
    NodeTimeoutError,
    RetryError,
    RetryNode,
    RetryPolicy,
    RunCancelled,
    RunTimeoutError,
    TimeoutNode,
    Transition,
    Workflow,
    item_scope,
    with_retry,
    with_timeout,
    workflow,
)
from floxide._retry import failure_kind


@attrs.define
class Ctx:
    calls: list[float] = attrs.Factory(list)


@attrs.define
class Flaky(Node[Ctx, int, int]):
    """Fails (raising `error`, or returning Abort) `failures` times, then doubles."""

    failures: int
    error: Exception = attrs.field(factory=lambda: ValueError("flaky"))
    abort: bool = False
    calls: int = 0

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        self.calls += 1
        ctx.calls.append(trio.current_time())
        if self.calls <= self.failures:
            if self.abort:
                return Abort(self.error)
            raise self.error
        return Next(input * 2)


@attrs.frozen
class Sleepy(Node[Ctx, float, str]):
    """Sleeps `input` seconds (virtual time under the mock clock)."""

    async def process(self, ctx: Ctx, input: float) -> Transition[str]:
        await trio.sleep(input)
        return Next(f"slept {input}")


# ------------------------------------------------------------------ the policy


def test_defaults_are_the_documented_ones() -> None:
    p = RetryPolicy()
    assert (p.max_attempts, p.initial_backoff, p.max_backoff) == (3, 0.1, 10.0)
    assert p.strategy is BackoffStrategy.EXPONENTIAL
    assert p.jitter is True
    assert p.retry_on is RetryError.ALL


@pytest.mark.parametrize(
    ("strategy", "waits"),
    [
        (BackoffStrategy.CONSTANT, [1.0, 1.0, 1.0, 1.0, 1.0]),
        (BackoffStrategy.LINEAR, [1.0, 2.0, 3.0, 4.0, 5.0]),
        (BackoffStrategy.EXPONENTIAL, [1.0, 2.0, 4.0, 5.0, 5.0]),
    ],
)
def test_backoff_strategies_and_cap(strategy: BackoffStrategy, waits: list[float]) -> None:
    p = RetryPolicy(initial_backoff=1.0, max_backoff=5.0, strategy=strategy, jitter=False)
    assert [p.backoff(n) for n in range(1, 6)] == waits
    assert [p.delay(n) for n in range(1, 6)] == waits


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert RetryPolicy(max_backoff=7.0).backoff(10_000) == 7.0


@given(
    st.sampled_from(list(BackoffStrategy)),
    st.floats(0, 5),
    st.floats(0, 20),
    st.integers(1, 50),
    st.integers(0, 2**32),
)
def test_full_jitter_stays_within_zero_and_the_capped_backoff(
    strategy: BackoffStrategy, initial: float, cap: float, n: int, seed: int
) -> None:
    p = RetryPolicy(initial_backoff=initial, max_backoff=cap, strategy=strategy)
    wait = p.delay(n, random.Random(seed))
    assert 0.0 <= wait <= p.backoff(n) <= cap


def test_jitter_actually_varies() -> None:
    p = RetryPolicy(initial_backoff=1.0)
    rng = random.Random(1)
    assert len({p.delay(3, rng) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "RetryPolicy.max_attempts must be an int >= 1, got 0"),
        ({"max_attempts": 2.5}, "RetryPolicy.max_attempts must be an int >= 1, got 2.5"),
        ({"max_attempts": "3"}, "RetryPolicy.max_attempts must be an int >= 1, got '3'"),
        (
            {"initial_backoff": -1.0},
            "RetryPolicy.initial_backoff must be a number of seconds >= 0 and finite, got -1.0",
        ),
        (
            {"initial_backoff": "0.1"},
            "RetryPolicy.initial_backoff must be a number of seconds >= 0 and finite, got '0.1'",
        ),
        (
            {"max_backoff": float("nan")},
            "RetryPolicy.max_backoff must be a number of seconds >= 0 and finite, got nan",
        ),
        (
            {"max_backoff": float("inf")},
            "RetryPolicy.max_backoff must be a number of seconds >= 0 and finite, got inf",
        ),
        (
            {"strategy": "exponential"},
            "RetryPolicy.strategy must be one of BackoffStrategy.CONSTANT, "
            "BackoffStrategy.LINEAR, BackoffStrategy.EXPONENTIAL, got 'exponential'",
        ),
        ({"jitter": "no"}, "RetryPolicy.jitter must be True or False, got 'no'"),
        ({"retry_on": 3}, "RetryPolicy.retry_on must be a RetryOn flag or a predicate, got 3"),
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        RetryPolicy(**kwargs)
    assert str(info.value) == message


def test_failure_kinds() -> None:
    assert failure_kind(ValueError()) is RetryError.ERRORS
    assert failure_kind(NodeTimeoutError("n", 1.0)) is RetryError.TIMEOUTS
    assert failure_kind(trio.TooSlowError()) is RetryError.TIMEOUTS
    assert failure_kind(TimeoutError()) is RetryError.TIMEOUTS
    assert failure_kind(RunTimeoutError("late")) is RetryError.TIMEOUTS
    assert failure_kind(RunCancelled("stop")) is RetryError.CANCELLATIONS
    group = ExceptionGroup("g", [ValueError(), TimeoutError()])
    assert failure_kind(group) == RetryError.ERRORS | RetryError.TIMEOUTS


def test_which_failures_are_retried() -> None:
    timeouts = RetryPolicy(retry_on=RetryError.TIMEOUTS)
    assert timeouts.retries(NodeTimeoutError("n", 1.0))
    assert not timeouts.retries(ValueError())
    assert not timeouts.retries(RunCancelled("x"))
    cancellations = RetryPolicy(retry_on=RetryError.CANCELLATIONS)
    assert cancellations.retries(RunCancelled("x")) and not cancellations.retries(ValueError())
    both = RetryPolicy(retry_on=RetryError.TIMEOUTS | RetryError.CANCELLATIONS)
    assert both.retries(ExceptionGroup("g", [TimeoutError(), RunCancelled("x")]))
    assert not both.retries(ExceptionGroup("g", [TimeoutError(), ValueError()]))
    everything = RetryPolicy()
    assert everything.retries(ValueError()) and everything.retries(TimeoutError())
    # Never: interpreter exits and trio's own cancellation of the surrounding run.
    assert not everything.retries(KeyboardInterrupt())
    assert not everything.retries(SystemExit())
    cancelled = trio.Cancelled._create()
    assert not everything.retries(cancelled)
    assert not everything.retries(BaseExceptionGroup("g", [ValueError(), cancelled]))
    predicate = RetryPolicy(retry_on=lambda e: isinstance(e, KeyError))
    assert predicate.retries(KeyError("k")) and not predicate.retries(ValueError())


def test_should_retry_counts_attempts() -> None:
    p = RetryPolicy(max_attempts=3)
    assert p.should_retry(ValueError(), 1) and p.should_retry(ValueError(), 2)
    assert not p.should_retry(ValueError(), 3)


# ------------------------------------------------------------------ RetryNode


def test_with_retry_keeps_the_node_type() -> None:
    inner = Flaky(0)
    wrapped = with_retry(inner, RetryPolicy())
    assert_type(wrapped, RetryNode[Ctx, int, int])
    as_node: Node[Ctx, int, int] = wrapped
    assert as_node is wrapped and wrapped.inner is inner and wrapped.policy == RetryPolicy()
    assert with_retry(inner).policy == RetryPolicy()


async def test_retries_until_success_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    ctx = Ctx()
    policy = RetryPolicy(max_attempts=4, initial_backoff=1.0, jitter=False)
    node = with_retry(Flaky(3), policy)
    assert await node.process(ctx, 5) == Next(10)
    t0 = ctx.calls[0]
    assert [t - t0 for t in ctx.calls] == [0.0, 1.0, 3.0, 7.0]  # waits 1, 2, 4


async def test_jittered_waits_stay_under_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = Ctx()
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, strategy=BackoffStrategy.CONSTANT)
    await with_retry(Flaky(4), policy).process(ctx, 1)
    waits = [b - a for a, b in zip(ctx.calls, ctx.calls[1:], strict=False)]
    assert len(waits) == 4 and all(0.0 <= w <= 1.0 for w in waits)


async def test_gives_up_after_max_attempts(autojump_clock: trio.testing.MockClock) -> None:
    inner = Flaky(10)
    node = with_retry(inner, RetryPolicy(max_attempts=3, jitter=False))
    with pytest.raises(ValueError, match="flaky") as info:
        await node.process(Ctx(), 1)
    assert inner.calls == 3
    assert "failed after 3 attempts" in info.value.__notes__


async def test_abort_is_retried_and_returned_at_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await with_retry(Flaky(2, abort=True)).process(Ctx(), 2) == Next(4)
    inner = Flaky(5, abort=True)
    result = await with_retry(inner, RetryPolicy(max_attempts=2)).process(Ctx(), 2)
    assert isinstance(result, Abort) and isinstance(result.error, ValueError)
    assert inner.calls == 2


async def test_each_retry_replaces_the_failed_attempts_contribution(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @attrs.define
    class Tally:
        count: Counter = attrs.field(factory=Counter)
        log: EventLog[str] = attrs.field(factory=EventLog)

    @attrs.define
    class CountsThenFails(Node[Tally, int, int]):
        calls: int = 0

        async def process(self, ctx: Tally, input: int) -> Transition[int]:
            self.calls += 1
            ctx.count = ctx.count.add(input)
            ctx.log = ctx.log.append(f"attempt {self.calls}")
            if self.calls < 3:
                raise ValueError("not yet")
            return Next(input)

    ctx = Tally()
    with item_scope("9"):
        assert await with_retry(CountsThenFails()).process(ctx, 5) == Next(5)
    assert ctx.count.value == 5  # counted once, not three times
    assert ctx.log.values == ["attempt 3"]


async def test_failures_outside_retry_on_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inner = Flaky(1, error=KeyError("missing"))
    node = with_retry(inner, RetryPolicy(retry_on=RetryError.TIMEOUTS))
    with pytest.raises(KeyError):
        await node.process(Ctx(), 1)
    assert inner.calls == 1
    inner = Flaky(1, error=KeyError("missing"))
    node = with_retry(inner, RetryPolicy(retry_on=lambda e: isinstance(e, KeyError)))
    assert await node.process(Ctx(), 1) == Next(2)


async def test_outer_cancellation_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    node = with_retry(Sleepy(), RetryPolicy(max_attempts=5))
    with trio.move_on_after(3) as scope:
        await node.process(Ctx(), 10.0)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(3.0)


# ------------------------------------------------------------------ with_timeout


async def test_timeout_fails_a_slow_node(autojump_clock: trio.testing.MockClock) -> None:
    node = with_timeout(Sleepy(), 2.0)
    assert_type(node, TimeoutNode[Ctx, float, str])
    assert (node.seconds, type(node.inner)) == (2.0, Sleepy)
    assert await node.process(Ctx(), 1.5) == Next("slept 1.5")
    with pytest.raises(NodeTimeoutError, match=r"Sleepy did not finish within 2\.0 s"):
        await node.process(Ctx(), 5.0)
    assert isinstance(NodeTimeoutError("n", 1), TimeoutError)


async def test_inner_deadlines_belong_to_the_inner_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @attrs.frozen
    class OwnDeadline(Node[Ctx, int, str]):
        async def process(self, ctx: Ctx, input: int) -> Transition[str]:
            with trio.move_on_after(1):
                await trio.sleep(100)
            return Next("gave up on my own")

    assert await with_timeout(OwnDeadline(), 5).process(Ctx(), 0) == Next("gave up on my own")


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), "2", None])
def test_timeout_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError) as info:
        with_timeout(Sleepy(), seconds)
    expected = f"TimeoutNode.seconds must be a number of seconds > 0, got {seconds!r}"
    assert str(info.value) == expected


async def test_retry_on_timeouts_gives_each_attempt_a_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @attrs.define
    class SlowThenFast(Node[Ctx, int, int]):
        calls: int = 0

        async def process(self, ctx: Ctx, input: int) -> Transition[int]:
            self.calls += 1
            await trio.sleep(100 if self.calls < 3 else 0.5)
            return Next(input + 1)

    inner = SlowThenFast()
    policy = RetryPolicy(retry_on=RetryError.TIMEOUTS, jitter=False, initial_backoff=1.0)
    node = with_retry(with_timeout(inner, 2), policy)
    start = trio.current_time()
    assert await node.process(Ctx(), 1) == Next(2)
    assert inner.calls == 3
    assert trio.current_time() - start == pytest.approx(2 + 1 + 2 + 2 + 0.5)


# ------------------------------------------------------------------ inside workflows


@attrs.frozen
class Fallback(Node[Ctx, float, str]):
    async def process(self, ctx: Ctx, input: float) -> Transition[str]:
        return Next(f"fallback for {input}")


@workflow
class Guarded(Workflow[Ctx, float, str]):
    work: TimeoutNode[Ctx, float, str]
    rescue: Fallback

    start = "work"
    edges = {"work": [], "rescue": []}
    on_failure = {"work": ["rescue"]}


async def test_on_failure_sees_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    wf = Guarded(work=with_timeout(Sleepy(), 1.0), rescue=Fallback())
    assert await wf.run(Ctx(), 0.5) == "slept 0.5"
    assert await wf.run(Ctx(), 30.0) == "fallback for 30.0"


@workflow
class Retried(Workflow[Ctx, int, int]):
    flaky: RetryNode[Ctx, int, int]

    start = "flaky"
    edges = {"flaky": []}


async def test_retry_inside_a_workflow(autojump_clock: trio.testing.MockClock) -> None:
    assert await Retried(flaky=with_retry(Flaky(2))).run(Ctx(), 4) == 8
    wf = Retried(flaky=with_retry(Flaky(9), RetryPolicy(max_attempts=2)))
    pattern = r"node 'flaky' of workflow 'Retried'.*failed: ValueError"
    with pytest.raises(NodeError, match=pattern) as info:
        await wf.run(Ctx(), 4)
    assert isinstance(info.value.cause, ValueError)
