"""Workflows shared by the distributed tests and the worker processes they start."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from floxide import (
    Counter,
    Mergeable,
    Next,
    NextAll,
    Node,
    RetryPolicy,
    SetUnion,
    Transition,
    Workflow,
    current_item,
    with_retry,
    workflow,
)


@attrs.define
class Ctx(Mergeable):
    """A mergeable context: a per-item counter and the set of values seen."""

    squared: Counter = attrs.field(factory=Counter)
    seen: SetUnion[int] = attrs.field(factory=SetUnion)


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Square(Node[Ctx, int, int]):
    """Squares its input; sleeps `delay` seconds (or the marker file's time) first."""

    delay: float = 0.0
    marker: str = ""

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        if self.marker:
            # announce that a step is running (fault tests kill the worker then)
            item = current_item()
            Path(self.marker).write_text(item.id if item else "?")
        if self.delay:
            await trio.sleep(self.delay)
        ctx.squared = ctx.squared.add(1)
        ctx.seen = ctx.seen.add(input)
        return Next(input * input)


@attrs.frozen
class Total(Node[Ctx, Sequence[int], int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class FanJoin(Workflow[Ctx, int, int]):
    """split(n) -> square each of 0..n-1 -> total: sum of squares."""

    split: Split
    square: Square
    total: Total

    start = "split"
    edges = {"split": ["square"], "square": ["total"], "total": []}
    joins = {"total": "split"}


def fan_join(delay: float = 0.0, marker: str = "") -> FanJoin:
    return FanJoin(split=Split(), square=Square(delay, marker), total=Total())


@attrs.define
class Plain:
    """A context without merge."""

    steps: int = 0


@attrs.frozen
class Inc(Node[Plain, int, int]):
    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        if input < 0:
            raise ValueError(f"negative input {input}")
        return Next(input + 1)


@attrs.frozen
class Loop(Node[Plain, int, int]):
    """Counts up to `until` by feeding itself (a long chain of steps)."""

    until: int = 100

    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Done(Node[Plain, int, str]):
    async def process(self, ctx: Plain, input: int) -> Transition[str]:
        return Next(f"done {input}")


@attrs.frozen
class Rescue(Node[Plain, int, str]):
    async def process(self, ctx: Plain, input: int) -> Transition[str]:
        return Next(f"rescued {input}")


@workflow
class WithFallback(Workflow[Plain, int, str]):
    inc: Inc
    done: Done
    rescue: Rescue

    start = "inc"
    edges = {"inc": ["done"], "done": [], "rescue": []}
    on_failure = {"inc": ["rescue"]}


@workflow
class NoFallback(Workflow[Plain, int, str]):
    inc: Inc
    done: Done

    start = "inc"
    edges = {"inc": ["done"], "done": []}


_calls: dict[str, int] = {}


@attrs.frozen
class Flaky(Node[Plain, int, int]):
    """Fails the first `failures` calls per input (counted in a file when `dir` is set)."""

    failures: int = 2
    dir: str = ""

    async def process(self, ctx: Plain, input: int) -> Transition[int]:
        key = f"flaky-{input}"
        if self.dir:
            path = Path(self.dir) / key
            n = int(path.read_text()) if path.exists() else 0
            path.write_text(str(n + 1))
        else:
            n = _calls.get(key, 0)
            _calls[key] = n + 1
        if n < self.failures:
            raise ConnectionError(f"flaky call {n + 1} for {input}")
        return Next(input * 10)


@workflow
class Retrying(Workflow[Plain, int, str]):
    flaky: Node[Plain, int, int]
    done: Done

    start = "flaky"
    edges = {"flaky": ["done"], "done": []}


def retrying(failures: int = 2, attempts: int = 3, dir: str = "") -> Retrying:
    policy = RetryPolicy(max_attempts=attempts, initial_backoff=0.01, max_backoff=0.05)
    return Retrying(flaky=with_retry(Flaky(failures, dir), policy), done=Done())


def worker_env() -> dict[str, str]:
    """Environment for worker subprocesses (the repository on the import path)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def fault_fan_join() -> FanJoin:
    """`fan_join` configured from the environment (for worker processes in fault tests)."""
    return fan_join(
        float(os.environ.get("FLOXIDE_TEST_DELAY", "0")),
        os.environ.get("FLOXIDE_TEST_MARKER", ""),
    )
