"""Burr: ApplicationBuilder actions and transitions; MapStates fan-out (thread pool).

Checkpoints: InMemoryPersister and SQLitePersister, saved after every action.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

from common import Run, Scratch, timed

NAME = "burr"
DISTS = ("burr",)
NOTE = "ApplicationBuilder; MapStates fan-out (thread pool); InMemoryPersister / SQLitePersister"


def available() -> bool:
    return importlib.util.find_spec("burr") is not None


def _build(n: int, persister: Any = None) -> Any:
    from burr.core import ApplicationBuilder, State, action

    @action(reads=["x"], writes=["x"])
    def inc(state: State) -> State:
        return state.update(x=state["x"] + 1)

    b = (
        ApplicationBuilder()
        .with_actions(**{f"a{i}": inc for i in range(n)})
        .with_transitions(*[(f"a{i}", f"a{i + 1}") for i in range(n - 1)])
        .with_state(x=0)
        .with_entrypoint("a0")
    )
    if persister is not None:
        b = b.with_state_persister(persister).with_identifiers(app_id=uuid.uuid4().hex)
    return b.build()


def _run(app: Any, n: int) -> int:
    _, _, state = app.run(halt_after=[f"a{n - 1}"])
    return int(state["x"])


def chain(n: int, scratch: Scratch) -> Run:
    return timed(lambda: _build(n), lambda app: _run(app, n))


def fanout(n: int, scratch: Scratch) -> Run:
    from burr.core import ApplicationBuilder, State, action
    from burr.core.parallelism import MapStates

    @action(reads=["i"], writes=["r"])
    def work(state: State) -> State:
        return state.update(r=state["i"])

    class Fan(MapStates):  # type: ignore[misc]
        def states(self, state: State, context: Any, inputs: Any) -> Iterator[State]:
            for i in range(state["n"]):
                yield state.update(i=i)

        def action(self, state: State, inputs: Any) -> Any:
            return work

        def reduce(self, state: State, states: Any) -> State:
            return state.update(total=sum(s["r"] for s in states))

        @property
        def reads(self) -> list[str]:
            return ["n"]

        @property
        def writes(self) -> list[str]:
            return ["total"]

    def build() -> Any:
        return (
            ApplicationBuilder()
            .with_actions(fan=Fan())
            .with_transitions()
            .with_state(n=n)
            .with_entrypoint("fan")
            .build()
        )

    def run(app: Any) -> int:
        _, _, state = app.run(halt_after=["fan"])
        return int(state["total"])

    return timed(build, run)


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    from burr.core.persistence import InMemoryPersister

    return timed(lambda: _build(n, InMemoryPersister()), lambda app: _run(app, n))


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    from burr.core.persistence import SQLitePersister

    p = SQLitePersister.from_values(db_path=scratch.file("burr"))
    p.initialize()
    try:
        return timed(lambda: _build(n, p), lambda app: _run(app, n))
    finally:
        p.cleanup()
