"""LangGraph: StateGraph, sync `invoke`; `Send` fan-out into an `operator.add` reducer.

Checkpoints: InMemorySaver and SqliteSaver (langgraph-checkpoint-sqlite), default durability.
"""


import importlib.util
import operator
import sqlite3
import uuid
from typing import Annotated, Any

from common import Run, Scratch, timed

NAME = "langgraph"
DISTS = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite")
NOTE = "StateGraph invoke(); Send fan-out; InMemorySaver / SqliteSaver"


def available() -> bool:
    return importlib.util.find_spec("langgraph") is not None


def _chain_graph(n: int, checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict):
        x: int

    def inc(s: S) -> dict[str, int]:
        return {"x": s["x"] + 1}

    g = StateGraph(S)
    prev = START
    for i in range(n):
        g.add_node(f"n{i}", inc)
        g.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    g.add_edge(prev, END)
    return g.compile(checkpointer=checkpointer)


def _run_chain(app: Any, n: int) -> int:
    cfg = {"recursion_limit": n + 10, "configurable": {"thread_id": uuid.uuid4().hex}}
    return int(app.invoke({"x": 0}, cfg)["x"])


def chain(n: int, scratch: Scratch) -> Run:
    return timed(lambda: _chain_graph(n), lambda app: _run_chain(app, n))


def fanout(n: int, scratch: Scratch) -> Run:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send
    from typing_extensions import TypedDict

    class FS(TypedDict):
        n: int
        out: Annotated[list[int], operator.add]
        total: int

    def split(s: FS) -> list[Send]:
        return [Send("work", {"i": i}) for i in range(s["n"])]

    def work(s: dict[str, int]) -> dict[str, list[int]]:
        return {"out": [s["i"]]}

    def total(s: FS) -> dict[str, int]:
        return {"total": sum(s["out"])}

    def build() -> Any:
        g = StateGraph(FS)
        g.add_node("work", work)
        g.add_node("total", total)
        g.add_conditional_edges(START, split, ["work"])
        g.add_edge("work", "total")
        g.add_edge("total", END)
        return g.compile()

    cfg = {"recursion_limit": 100}
    return timed(build, lambda app: int(app.invoke({"n": n, "out": []}, cfg)["total"]))


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    from langgraph.checkpoint.memory import InMemorySaver

    return timed(lambda: _chain_graph(n, InMemorySaver()), lambda app: _run_chain(app, n))


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    from langgraph.checkpoint.sqlite import SqliteSaver

    con = sqlite3.connect(scratch.file("langgraph"), check_same_thread=False)
    try:
        saver = SqliteSaver(con)
        saver.setup()
        return timed(lambda: _chain_graph(n, saver), lambda app: _run_chain(app, n))
    finally:
        con.close()
