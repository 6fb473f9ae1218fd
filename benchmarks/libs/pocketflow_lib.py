"""PocketFlow: `Node >> Node` flows; fan-out with AsyncParallelBatchFlow. No persistence."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from typing import Any

from common import NotAvailable, Run, Scratch, timed

NAME = "pocketflow"
DISTS = ("pocketflow",)
NOTE = "sync Flow of Node>>Node; AsyncParallelBatchFlow fan-out, sum in post"


def available() -> bool:
    return importlib.util.find_spec("pocketflow") is not None


def chain(n: int, scratch: Scratch) -> Run:
    from pocketflow import Flow, Node

    class Inc(Node):  # type: ignore[misc]
        def prep(self, shared: dict[str, int]) -> int:
            return shared["x"]

        def exec(self, x: int) -> int:
            return x + 1

        def post(self, shared: dict[str, int], prep_res: int, exec_res: int) -> None:
            shared["x"] = exec_res

    def build() -> Any:
        steps = [Inc() for _ in range(n)]
        for a, b in itertools.pairwise(steps):
            a >> b
        return Flow(start=steps[0])

    def run(flow: Any) -> int:
        shared = {"x": 0}
        flow.run(shared)
        return shared["x"]

    return timed(build, run)


def fanout(n: int, scratch: Scratch) -> Run:
    from pocketflow import AsyncNode, AsyncParallelBatchFlow

    class Work(AsyncNode):  # type: ignore[misc]
        async def prep_async(self, shared: dict[str, Any]) -> int:
            return int(self.params["i"])

        async def exec_async(self, i: int) -> int:
            return i

        async def post_async(self, shared: dict[str, Any], prep_res: int, exec_res: int) -> None:
            shared["out"].append(exec_res)

    class Fan(AsyncParallelBatchFlow):  # type: ignore[misc]
        async def prep_async(self, shared: dict[str, Any]) -> list[dict[str, int]]:
            return [{"i": i} for i in range(shared["n"])]

        async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
            shared["total"] = sum(shared["out"])

    def run(flow: Any) -> int:
        shared: dict[str, Any] = {"n": n, "out": []}
        asyncio.run(flow.run_async(shared))
        return int(shared["total"])

    return timed(lambda: Fan(start=Work()), run)


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    raise NotAvailable


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    raise NotAvailable
