"""floxide workflows of the benchmark, built programmatically (a 1000-field class by hand
would be unreadable). Imported by the measuring process and by distributed workers alike,
so both build the very same classes.
"""

from __future__ import annotations

import functools
import itertools
import time
import types
from collections.abc import Sequence
from typing import Any

import attrs

from floxide import Counter, Mergeable, Next, NextAll, Node, Transition, Workflow, workflow


@attrs.define
class BenchCtx:
    """An empty context: the workloads measure the engine, not user state."""


@attrs.frozen
class Inc(Node[BenchCtx, int, int]):
    """One chain step: input + 1."""

    async def process(self, ctx: BenchCtx, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Split(Node[BenchCtx, int, int]):
    """Fan-out: one work item per value in range(input)."""

    async def process(self, ctx: BenchCtx, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Work(Node[BenchCtx, int, int]):
    """One branch: passes its value on."""

    async def process(self, ctx: BenchCtx, input: int) -> Transition[int]:
        return Next(input)


@attrs.frozen
class Total(Node[BenchCtx, Sequence[int], int]):
    """The join: sums what every branch produced."""

    async def process(self, ctx: BenchCtx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@attrs.frozen
class Stamp(Node[BenchCtx, list[int], list[int]]):
    """A chain step that appends the wall clock (ns), to measure each step's latency."""

    async def process(self, ctx: BenchCtx, input: list[int]) -> Transition[list[int]]:
        return Next([*input, time.time_ns()])


def _chain_class(name: str, node_type: type[Node[Any, Any, Any]], n: int,
                 io: type) -> type[Workflow[BenchCtx, Any, Any]]:
    names = [f"n{i}" for i in range(n)]
    body: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__annotations__": dict.fromkeys(names, node_type),
        "start": names[0],
        "edges": {a: [b] for a, b in itertools.pairwise(names)} | {names[-1]: []},
    }
    base = Workflow[BenchCtx, io, io]  # type: ignore[valid-type]
    cls = types.new_class(name, (base,), exec_body=lambda ns: ns.update(body))
    return workflow(cls)


@functools.cache
def chain_class(n: int) -> type[Workflow[BenchCtx, int, int]]:
    """`Chain{n}`: n `Inc` nodes n0 -> n1 -> ... -> n{n-1}."""
    cls = _chain_class(f"Chain{n}", Inc, n, int)
    globals()[cls.__name__] = cls  # importable by name, like a hand-written class
    return cls


def chain(n: int) -> Workflow[BenchCtx, int, int]:
    cls = chain_class(n)
    inc = Inc()
    return cls(**{f"n{i}": inc for i in range(n)})


@functools.cache
def stamp_chain_class(n: int) -> type[Workflow[BenchCtx, list[int], list[int]]]:
    cls = _chain_class(f"StampChain{n}", Stamp, n, list[int])  # type: ignore[arg-type]
    globals()[cls.__name__] = cls
    return cls


def stamp_chain(n: int) -> Workflow[BenchCtx, list[int], list[int]]:
    cls = stamp_chain_class(n)
    stamp = Stamp()
    return cls(**{f"n{i}": stamp for i in range(n)})


@workflow
class FanOut(Workflow[BenchCtx, int, int]):
    """split -(NextAll(range(n)))-> w (one item per branch) -> total (join of split)."""

    split: Split
    w: Work
    total: Total

    start = "split"
    edges = {"split": ["w"], "w": ["total"], "total": []}
    joins = {"total": "split"}


def fanout() -> FanOut:
    return FanOut(split=Split(), w=Work(), total=Total())


@attrs.define
class CountCtx(Mergeable):
    """A mergeable context whose `Counter` every branch of the Counter fan-out adds 1 to."""

    seen: Counter = attrs.field(factory=Counter)


@attrs.frozen
class CountSplit(Node[CountCtx, int, int]):
    async def process(self, ctx: CountCtx, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class CountWork(Node[CountCtx, int, int]):
    """One branch: counts itself in the context, passes its value on."""

    async def process(self, ctx: CountCtx, input: int) -> Transition[int]:
        ctx.seen = ctx.seen.add(1)
        return Next(input)


@attrs.frozen
class CountTotal(Node[CountCtx, Sequence[int], int]):
    async def process(self, ctx: CountCtx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class CounterFanOut(Workflow[CountCtx, int, int]):
    """`FanOut` whose every branch also adds 1 to the context's `Counter`."""

    split: CountSplit
    w: CountWork
    total: CountTotal

    start = "split"
    edges = {"split": ["w"], "w": ["total"], "total": []}
    joins = {"total": "split"}


def counter_fanout() -> CounterFanOut:
    return CounterFanOut(split=CountSplit(), w=CountWork(), total=CountTotal())


def by_name(name: str) -> Workflow[Any, Any, Any]:
    """A workflow instance from a spec such as `fanout`, `counter`, `chain:1000`, `stamp:100`."""
    kind, _, size = name.partition(":")
    if kind == "fanout":
        return fanout()
    if kind == "counter":
        return counter_fanout()
    if kind == "chain":
        return chain(int(size))
    if kind == "stamp":
        return stamp_chain(int(size))
    raise ValueError(f"unknown workflow {name!r}")
