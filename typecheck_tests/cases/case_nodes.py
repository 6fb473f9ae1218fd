# ruff: noqa: E501
"""Node kinds keep their types: @node functions, generic nodes, wrappers, composites."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

from floxide import (
    BatchNode,
    CompositeNode,
    Next,
    Node,
    RetryNode,
    TimeoutNode,
    Transition,
    Workflow,
    node,
    with_retry,
    with_timeout,
    workflow,
)

T = TypeVar("T")


@attrs.define
class Ctx:
    greeting: str = "hi"


@node
async def shout(ctx: Ctx, input: str) -> Transition[str]:
    return Next(input.upper())


@node
async def size(ctx: Ctx, input: str) -> Transition[int]:
    return Next(len(input))


@node
async def chunks(ctx: Ctx, input: int) -> Transition[list[int]]:
    return Next(list(range(input)))


@attrs.frozen
class Identity(Node[Ctx, T, T], Generic[T]):
    async def process(self, ctx: Ctx, input: T) -> Transition[T]:
        return Next(input)


@attrs.frozen
class Double(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input * 2)


@workflow
class Inner(Workflow[Ctx, int, int]):
    double: Double

    start = "double"
    edges = {"double": []}


@workflow
class GoodKinds(Workflow[Ctx, str, int | list[int]]):
    shout: Node[Ctx, str, str]
    keep: Identity[str]
    retried: RetryNode[Ctx, str, int]
    timed: TimeoutNode[Ctx, int, int]
    inner: CompositeNode[Ctx, int, int]
    wrap: Identity[int]
    chunks: Node[Ctx, int, list[int]]
    batch: BatchNode[Ctx, int, int]
    last: Identity[list[int]]

    start = "shout"
    edges = {
        "shout": ["keep"],
        "keep": ["retried"],
        "retried": ["timed"],
        "timed": ["inner"],
        "inner": ["wrap"],
        "wrap": ["chunks"],
        "chunks": ["batch"],
        "batch": ["last"],
        "last": [],
    }
    on_failure = {"retried": ["shout"], "timed": ["wrap"]}


GOOD = GoodKinds(
    shout=shout,
    keep=Identity(),
    retried=with_retry(size),
    timed=with_timeout(Double(), 1.0),
    inner=CompositeNode(Inner(double=Double())),
    wrap=Identity(),
    chunks=chunks,
    batch=BatchNode(Double(), 10),
    last=Identity(),
)


@workflow
class BadKinds(Workflow[Ctx, str, str]):
    shout: Node[Ctx, str, str]
    count: Node[Ctx, str, int]
    keep: Identity[str]
    retried: RetryNode[Ctx, int, int]
    batch: BatchNode[Ctx, str, str]

    start = "shout"
    edges = {
        "shout": ["count", "keep"],
        "count": ["keep", "retried", "batch"],  # E: [floxide-edge] edge "count" -> "keep" of workflow "BadKinds": "count" outputs "int" but "keep" accepts "str" # E: [floxide-edge] edge "count" -> "batch" of workflow "BadKinds": "count" outputs "int" but "batch" accepts "Sequence[str]"
        "keep": [],
        "retried": [],  # E: [floxide-edge] terminal node "retried" of workflow "BadKinds" outputs "int"
        "batch": [],  # E: [floxide-edge] terminal node "batch" of workflow "BadKinds" outputs "list[str]"
    }
    on_failure = {"retried": ["batch"]}  # E: [floxide-edge] fallback "retried" -> "batch" of workflow "BadKinds": the fallback receives "retried"'s input "int" but accepts "Sequence[str]"


def build_bad() -> BadKinds:
    return BadKinds(
        shout=shout,
        count=size,
        keep=Identity(),
        retried=with_retry(size),  # E: [arg-type]
        batch=BatchNode(shout, 4),
    )

