"""Generic nodes: node classes with their own type parameters, specialized per workflow.

`Tag[T]` works for any input type; `Length` and `Repeat[T]` too. The workflow's fields fix
the parameters (`Tag[int]`), and mypy (with floxide's plugin) checks that every edge fits
after specialization.

Run: python -m examples.generic_nodes
"""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs
import trio

from floxide import Next, Node, Transition, Workflow, workflow

T = TypeVar("T")


@attrs.frozen
class Tag(Node[object, T, str], Generic[T]):
    """Formats any value with a label; the context is unused, so any context fits."""

    label: str

    async def process(self, ctx: object, input: T) -> Transition[str]:
        return Next(f"{self.label}-{input}")


@attrs.frozen
class Length(Node[object, str, int]):
    async def process(self, ctx: object, input: str) -> Transition[int]:
        return Next(len(input))


@attrs.frozen
class Repeat(Node[object, T, list[T]], Generic[T]):
    times: int

    async def process(self, ctx: object, input: T) -> Transition[list[T]]:
        return Next([input] * self.times)


@workflow
class TagLength(Workflow[None, int, int]):
    tag: Tag[int]
    length: Length

    start = "tag"
    edges = {"tag": ["length"], "length": []}


@workflow
class RepeatTag(Workflow[None, str, list[str]]):
    tag: Tag[str]
    repeat: Repeat[str]

    start = "tag"
    edges = {"tag": ["repeat"], "repeat": []}


async def main() -> tuple[int, list[str]]:
    n = await TagLength(tag=Tag(label="foo"), length=Length()).run(None, 123)
    repeated = await RepeatTag(tag=Tag(label="x"), repeat=Repeat(times=2)).run(None, "y")
    print(n, repeated)
    return n, repeated


if __name__ == "__main__":
    trio.run(main)
