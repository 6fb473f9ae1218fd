"""Property: a checkpointed run that crashes at any commit and is resumed produces exactly
the outputs of a clean run, re-running no more steps than were in flight.

Random graphs (fan-outs, routes, holds, failures with fallbacks, nested joins) come from
the executor's property tests; a crash is simulated by a store that "dies" at a chosen
commit, before or after writing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

import tests.test_properties as props
from floxide import (
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    NodeError,
    NoOutputError,
    SqliteCheckpointStore,
)
from tests.test_checkpoint import Crash, CrashingStore
from tests.test_properties import FAIL, Spec, build, graphs, reference


class Counting:
    """Counts calls of the node behaviour while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = props.behave

    def __enter__(self) -> Counting:
        def behave(kind: str, param: int, x: Any) -> Any:
            self.calls += 1
            return self._real(kind, param, x)

        props.behave = behave
        return self

    def __exit__(self, *exc: object) -> None:
        props.behave = self._real


def check_crash_and_resume(
    spec: Spec,
    x: int,
    seed: int,
    crash_at: int,
    after: bool,
    concurrency: int,
    new_store: Callable[[], CheckpointStore],
) -> None:
    expected = reference(spec, x)
    wf = build(spec, seed)
    type(wf).max_concurrency = concurrency
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def clean() -> None:
        try:
            await wf.run_all(None, x)
        except NodeError:
            pass

    async def crash_and_resume() -> list[Any] | str:
        store = new_store()
        try:
            await wf.run_with_checkpoint(
                None, x, store=CrashingStore(store, at=crash_at, after=after), run_id="p"
            )
        except (Crash, NodeError):
            pass
        try:
            await wf.resume(store, "p")
        except NodeError:
            return FAIL
        except NoOutputError:
            pass
        cp = await Checkpoint.load(wf, store, "p")
        assert cp.finished and not cp.items and not cp.join_state
        return [value for _, value in cp.outputs]

    with Counting() as once:
        trio.run(clean, clock=clock)
    with Counting() as crashed:
        got = trio.run(crash_and_resume, clock=clock)
    event(f"failed: {expected == FAIL}, re-ran: {min(crashed.calls - once.calls, 3)}")
    assert got == expected
    if expected != FAIL:
        # every step ran once, and only steps in flight at the crash ran again
        assert once.calls <= crashed.calls <= once.calls + concurrency


@given(
    spec=graphs(),
    x=st.integers(0, 96),
    seed=st.integers(0, 2**16),
    crash_at=st.integers(1, 15),
    after=st.booleans(),
    concurrency=st.sampled_from([1, 2, 1000]),
)
def test_crash_anywhere_then_resume_equals_a_clean_run(
    spec: Spec, x: int, seed: int, crash_at: int, after: bool, concurrency: int
) -> None:
    check_crash_and_resume(spec, x, seed, crash_at, after, concurrency, InMemoryCheckpointStore)


@settings(max_examples=max(5, settings().max_examples // 4))
@given(
    spec=graphs(),
    x=st.integers(0, 96),
    seed=st.integers(0, 2**16),
    crash_at=st.integers(1, 15),
    after=st.booleans(),
    concurrency=st.sampled_from([1, 1000]),
)
def test_same_with_sqlite(
    tmp_path_factory: pytest.TempPathFactory,
    spec: Spec,
    x: int,
    seed: int,
    crash_at: int,
    after: bool,
    concurrency: int,
) -> None:
    path = tmp_path_factory.mktemp("runs") / "runs.db"
    check_crash_and_resume(
        spec,
        x,
        seed,
        crash_at,
        after,
        concurrency,
        lambda: SqliteCheckpointStore(path, durable=False),
    )
