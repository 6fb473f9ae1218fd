"""A checkpointed workflow that can be killed (SIGKILL) at a chosen step.

    python -m tests.checkpoint_helpers.killable run    DB EFFECTS [--kill-at NODE:N] [--size N]
    python -m tests.checkpoint_helpers.killable resume DB EFFECTS

Every node execution appends one line `node:input` to EFFECTS before it returns, so the
test can count how often each step ran. `--kill-at work:5` makes the process SIGKILL itself
right after the 5th execution of `work` recorded its line (the step is then in flight:
its effect happened, its commit did not). The final outputs are printed as JSON.

The graph: prep -> split (NextAll over range(size)) -> work (each item, concurrently) ->
tally (joins split's fan-out) -> report (terminal); items whose square is divisible by 5
also go to a separate terminal `odd` branch through a route.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

import attrs
import trio

from floxide import Next, NextAll, Node, SqliteCheckpointStore, Transition, Workflow, workflow

RUN_ID = "killable-run"
EFFECTS = os.environ.get("FLOXIDE_TEST_EFFECTS", "")
KILL_AT: tuple[str, int] | None = None
_counts: dict[str, int] = {}


def record(node: str, value: object) -> None:
    """Write the side effect, then maybe die (simulating a crash mid-step)."""
    with open(EFFECTS, "a") as f:
        f.write(f"{node}:{value}\n")
    _counts[node] = _counts.get(node, 0) + 1
    if KILL_AT is not None and KILL_AT == (node, _counts[node]):
        os.kill(os.getpid(), signal.SIGKILL)


@attrs.define
class Ctx:
    label: str


@attrs.frozen
class Tagged:
    """A work result, routed by `Route`."""

    n: int
    square: int


@attrs.frozen
class Multiple:
    """A result divisible by 5."""

    n: int


@attrs.frozen
class Prep(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        record("prep", input)
        return Next(input)


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        record("split", input)
        return NextAll(range(input))


@attrs.frozen
class Work(Node[Ctx, int, "Tagged | Multiple"]):
    async def process(self, ctx: Ctx, input: int) -> Transition[Tagged | Multiple]:
        await trio.sleep(0.002 * (input % 3))
        record("work", input)
        if input % 5 == 0:
            return Next(Multiple(input))
        return Next(Tagged(input, input * input))


@attrs.frozen
class Tally(Node[Ctx, Sequence[Tagged], int]):
    async def process(self, ctx: Ctx, input: Sequence[Tagged]) -> Transition[int]:
        record("tally", len(input))
        assert all(isinstance(t, Tagged) for t in input), input
        return Next(sum(t.square for t in input))


@attrs.frozen
class Report(Node[Ctx, int, str]):
    async def process(self, ctx: Ctx, input: int) -> Transition[str]:
        record("report", input)
        return Next(f"{ctx.label}: {input}")


@attrs.frozen
class Odd(Node[Ctx, Multiple, str]):
    async def process(self, ctx: Ctx, input: Multiple) -> Transition[str]:
        assert isinstance(input, Multiple), input
        record("odd", input.n)
        return Next(f"multiple of 5: {input.n}")


@workflow
class Killable(Workflow[Ctx, int, str]):
    prep: Prep
    split: Split
    work: Work
    tally: Tally
    report: Report
    odd: Odd

    start = "prep"
    edges = {
        "prep": ["split"],
        "split": ["work"],
        "work": {Tagged: ["tally"], Multiple: ["odd"]},
        "tally": ["report"],
        "report": [],
        "odd": [],
    }
    joins = {"tally": "split"}
    max_concurrency = 4


def make() -> Killable:
    return Killable(
        prep=Prep(), split=Split(), work=Work(), tally=Tally(), report=Report(), odd=Odd()
    )


async def _outputs(store: SqliteCheckpointStore) -> list[str]:
    from floxide import Checkpoint

    cp = await Checkpoint.load(make(), store, RUN_ID)
    assert cp.finished
    return [value for _, value in cp.outputs]


async def main(argv: Sequence[str]) -> None:
    global EFFECTS, KILL_AT
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["run", "resume"])
    parser.add_argument("db")
    parser.add_argument("effects")
    parser.add_argument("--kill-at")
    parser.add_argument("--size", type=int, default=12)
    args = parser.parse_args(argv)
    EFFECTS = args.effects
    if args.kill_at:
        node, n = args.kill_at.split(":")
        KILL_AT = (node, int(n))
    wf = make()
    async with SqliteCheckpointStore(args.db) as store:
        if args.mode == "run":
            await wf.run_with_checkpoint(Ctx("sum"), args.size, store=store, run_id=RUN_ID)
        else:
            await wf.resume(store, RUN_ID)
        print(json.dumps(await _outputs(store)))


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
