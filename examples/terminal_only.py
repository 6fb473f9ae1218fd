"""The smallest workflow: a single node that is both start and terminal.

Run: python -m examples.terminal_only
"""

from __future__ import annotations

import attrs
import trio

from floxide import Next, Node, Transition, Workflow, workflow


@attrs.define
class Ctx:
    calls: int = 0


@attrs.frozen
class Echo(Node[Ctx, str, str]):
    prefix: str = "echo: "

    async def process(self, ctx: Ctx, input: str) -> Transition[str]:
        ctx.calls += 1
        return Next(self.prefix + input)


@workflow
class EchoFlow(Workflow[Ctx, str, str]):
    echo: Echo

    start = "echo"
    edges = {"echo": []}


async def main() -> tuple[str, int]:
    ctx = Ctx()
    out = await EchoFlow(echo=Echo()).run(ctx, "hi")
    print(out)
    return out, ctx.calls


if __name__ == "__main__":
    trio.run(main)
