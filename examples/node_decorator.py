"""The `@node` decorator: plain async functions as nodes.

Each decorated function becomes a node instance of its own generated class; annotate the
workflow fields as `Node[Ctx, In, Out]`.

Run: python -m examples.node_decorator
"""

from __future__ import annotations

import attrs
import trio

from floxide import Hold, Next, Node, Transition, Workflow, node, workflow


@attrs.define
class Ctx:
    greeting: str = "hello"
    dropped: list[str] = attrs.Factory(list)


@node
async def clean(ctx: Ctx, input: str) -> Transition[str]:
    text = input.strip()
    if not text:
        ctx.dropped.append(repr(input))
        return Hold()  # nothing to greet: this branch ends quietly
    return Next(text)


@node
async def greet(ctx: Ctx, input: str) -> Transition[str]:
    return Next(f"{ctx.greeting}, {input}")


@node
async def shout(ctx: Ctx, input: str) -> Transition[str]:
    return Next(input.upper() + "!")


@workflow
class Greeter(Workflow[Ctx, str, str]):
    clean: Node[Ctx, str, str]
    greet: Node[Ctx, str, str]
    shout: Node[Ctx, str, str]

    start = "clean"
    edges = {"clean": ["greet"], "greet": ["shout"], "shout": []}


async def main() -> tuple[str, list[str], list[str]]:
    ctx = Ctx()
    wf = Greeter(clean=clean, greet=greet, shout=shout)
    loud = await wf.run(ctx, "  world ")
    nothing = await wf.run_all(ctx, "   ")
    print(loud, nothing, ctx.dropped, type(clean).__name__)
    return loud, nothing, ctx.dropped


if __name__ == "__main__":
    trio.run(main)
