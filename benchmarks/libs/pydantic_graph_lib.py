"""pydantic-graph 2.x: GraphBuilder steps; `.map()`-style fan-out into a reducing join.

Version 2 removed the persistence module of 1.x, so the checkpoint rows do not apply.
"""


import asyncio
import importlib.util
import itertools
from typing import Any

from common import NotAvailable, Run, Scratch, timed

NAME = "pydantic-graph"
DISTS = ("pydantic-graph",)
NOTE = "GraphBuilder steps; add_mapping_edge fan-out into join(reduce_sum); no persistence in 2.x"


def available() -> bool:
    return importlib.util.find_spec("pydantic_graph") is not None


def chain(n: int, scratch: Scratch) -> Run:
    from pydantic_graph import GraphBuilder, StepContext

    async def inc(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 1

    def build() -> Any:
        g = GraphBuilder(input_type=int, output_type=int, auto_instrument=False)
        steps = [g.step(inc, node_id=f"s{i}") for i in range(n)]
        g.add_edge(g.start_node, steps[0])
        for a, b in itertools.pairwise(steps):
            g.add_edge(a, b)
        g.add_edge(steps[-1], g.end_node)
        return g.build()

    return timed(build, lambda graph: asyncio.run(graph.run(inputs=0)))


def fanout(n: int, scratch: Scratch) -> Run:
    from pydantic_graph import GraphBuilder, StepContext, reduce_sum

    async def split(ctx: StepContext[None, None, int]) -> list[int]:
        return list(range(ctx.inputs))

    async def work(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs

    def build() -> Any:
        g = GraphBuilder(input_type=int, output_type=int, auto_instrument=False)
        s_split = g.step(split, node_id="split")
        s_work = g.step(work, node_id="work")
        total = g.join(reduce_sum, initial=0, node_id="total")
        g.add_edge(g.start_node, s_split)
        g.add_mapping_edge(s_split, s_work, downstream_join_id="total")
        g.add_edge(s_work, total)
        g.add_edge(total, g.end_node)
        return g.build()

    return timed(build, lambda graph: asyncio.run(graph.run(inputs=n)))


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    raise NotAvailable


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    raise NotAvailable
