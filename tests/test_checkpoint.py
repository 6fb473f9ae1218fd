"""Checkpointed runs in one process: same results as `run`, resume after a simulated crash,
finished runs, failures, timeouts, and every way a checkpoint can be unusable."""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from floxide import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    Counter,
    EventLog,
    InMemoryCheckpointStore,
    Next,
    NextAll,
    Node,
    NodeError,
    NoOutputError,
    RunTimeoutError,
    SharedState,
    SqliteCheckpointStore,
    Transition,
    Workflow,
    workflow,
)
from floxide._checkpoint import ROOT_ID, item_id
from floxide._step import WorkItem
from floxide.checkpoints import Commit, RunInfo, StoredCheckpoint


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class Ctx:
    label: str = "run"
    color: Color = Color.RED
    hits: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    value: int


CALLS: list[str] = []


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        CALLS.append(f"split:{input}")
        return NextAll(range(input))


@attrs.frozen
class Check(Node[Ctx, int, "Above | Below"]):
    threshold: int = 3
    stall: int = -1  # this input never finishes (the run is stopped by its timeout)

    async def process(self, ctx: Ctx, input: int) -> Transition[Above | Below]:
        if input == self.stall:
            await trio.sleep(1000)
        CALLS.append(f"check:{input}")
        await ctx.hits.update(lambda n: n + 1)
        await trio.sleep(0)
        return Next(Above(input) if input >= self.threshold else Below(input))


@attrs.frozen
class Big(Node[Ctx, Above, str]):
    async def process(self, ctx: Ctx, input: Above) -> Transition[str]:
        assert isinstance(input, Above)
        CALLS.append(f"big:{input.value}")
        return Next(f"big {input.value}")


@attrs.frozen
class Small(Node[Ctx, Below, str]):
    async def process(self, ctx: Ctx, input: Below) -> Transition[str]:
        assert isinstance(input, Below)
        CALLS.append(f"small:{input.value}")
        return Next(f"small {input.value}")


@attrs.frozen
class Total(Node[Ctx, Sequence[str], str]):
    async def process(self, ctx: Ctx, input: Sequence[str]) -> Transition[str]:
        CALLS.append(f"total:{len(input)}")
        assert isinstance(input, list)
        return Next(f"{ctx.label}/{ctx.color.value}: " + ",".join(input))


@workflow
class Fan(Workflow[Ctx, int, str]):
    split: Split
    check: Check
    big: Big
    small: Small
    total: Total

    start = "split"
    edges = {
        "split": ["check"],
        "check": {Above: ["big"], Below: ["small"]},
        "big": ["total"],
        "small": ["total"],
        "total": [],
    }
    joins = {"total": "split"}


@workflow
class Routed(Workflow[Ctx, int, str]):
    split: Split
    check: Check
    big: Big
    small: Small

    start = "split"
    edges = {
        "split": ["check"],
        "check": {Above: ["big"], Below: ["small"]},
        "big": [],
        "small": [],
    }


def fan(stall: int = -1) -> Fan:
    return Fan(split=Split(), check=Check(stall=stall), big=Big(), small=Small(), total=Total())


def routed() -> Routed:
    return Routed(split=Split(), check=Check(), big=Big(), small=Small())


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CheckpointStore]:
    CALLS.clear()
    if request.param == "memory":
        yield InMemoryCheckpointStore()
    else:
        async with SqliteCheckpointStore(tmp_path / "runs.db") as s:
            yield s


class Crash(BaseException):
    """Stands for the process dying."""


@attrs.define
class CrashingStore:
    """Delegates to `inner`, and "dies" at its `at`-th commit or at the run's last one,
    whichever comes first (before or after writing it)."""

    inner: CheckpointStore
    at: int
    after: bool = False
    commits: list[Commit] = attrs.field(factory=list)
    error: Callable[[], BaseException] = Crash

    async def create_run(self, record: StoredCheckpoint) -> None:
        await self.inner.create_run(record)

    async def commit(self, run_id: str, commit: Commit) -> None:
        self.commits.append(commit)
        crash = len(self.commits) == self.at or (self.at > 0 and commit.status == "finished")
        if crash and not self.after:
            raise self.error()
        await self.inner.commit(run_id, commit)
        if crash:
            raise self.error()

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        return await self.inner.load_run(run_id)

    async def list_runs(self) -> list[RunInfo]:
        return await self.inner.list_runs()

    async def delete_run(self, run_id: str) -> bool:
        return await self.inner.delete_run(run_id)


# ------------------------------------------------------------------------ plain runs
async def test_same_result_as_run(store: CheckpointStore) -> None:
    expected = await fan().run(Ctx(), 6)
    ctx = Ctx()
    got = await fan().run_with_checkpoint(ctx, 6, store=store, run_id="a")
    assert got == expected == "run/red: small 0,small 1,small 2,big 3,big 4,big 5"
    assert await ctx.hits.get() == 6  # the caller's context object is the one used
    cp = await Checkpoint.load(fan(), store, "a")
    assert cp.finished and cp.items == () and dict(cp.join_state) == {}
    assert cp.outputs == (((), expected),)
    assert isinstance(cp.context, Ctx) and await cp.context.hits.get() == 6
    assert cp.context.color is Color.RED


async def test_first_output_in_branch_order_like_run(store: CheckpointStore) -> None:
    assert await routed().run_with_checkpoint(Ctx(), 5, store=store) == await routed().run(Ctx(), 5)
    [info] = await store.list_runs()
    assert info.status == "finished" and info.pending == 0 and len(info.run_id) == 32
    cp = await Checkpoint.load(routed(), store, info.run_id)
    assert [v for _, v in cp.outputs] == await routed().run_all(Ctx(), 5)


async def test_no_output(store: CheckpointStore) -> None:
    with pytest.raises(NoOutputError):
        await routed().run_with_checkpoint(Ctx(), 0, store=store, run_id="empty")
    with pytest.raises(NoOutputError):  # and the same again from the finished checkpoint
        await routed().resume(store, "empty")


async def test_concurrent_runs_share_a_store(store: CheckpointStore) -> None:
    results: dict[int, str] = {}

    async def one(n: int) -> None:
        results[n] = await fan().run_with_checkpoint(Ctx(), n, store=store, run_id=f"run-{n}")

    async with trio.open_nursery() as nursery:
        for n in range(1, 6):
            nursery.start_soon(one, n)
    for n in range(1, 6):
        assert results[n] == await fan().run(Ctx(), n)
        assert await fan().resume(store, f"run-{n}") == results[n]
    assert {r.status for r in await store.list_runs()} == {"finished"}


async def test_resume_of_a_finished_run_runs_nothing(store: CheckpointStore) -> None:
    out = await fan().run_with_checkpoint(Ctx("x"), 4, store=store, run_id="done")
    CALLS.clear()
    assert await fan().resume(store, "done") == out
    assert CALLS == []


async def test_existing_run_id_is_refused_and_kept(store: CheckpointStore) -> None:
    await fan().run_with_checkpoint(Ctx(), 2, store=store, run_id="r")
    before = await store.load_run("r")
    with pytest.raises(CheckpointError, match="already has a checkpoint"):
        await fan().run_with_checkpoint(Ctx(), 3, store=store, run_id="r")
    assert await store.load_run("r") == before


async def test_unknown_run_id(store: CheckpointStore) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint for run 'nope'"):
        await fan().resume(store, "nope")
    assert await store.list_runs() == []


async def test_delete_run(store: CheckpointStore) -> None:
    await fan().run_with_checkpoint(Ctx(), 2, store=store, run_id="gone")
    await fan().run_with_checkpoint(Ctx(), 2, store=store, run_id="kept")
    assert await store.delete_run("gone") is True
    assert await store.delete_run("gone") is False
    assert [r.run_id for r in await store.list_runs()] == ["kept"]
    with pytest.raises(CheckpointError):
        await fan().resume(store, "gone")


# ------------------------------------------------------------------------ crashes
@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("at", [1, 2, 3, 5, 8])
async def test_crash_at_a_commit_then_resume(store: CheckpointStore, at: int, after: bool) -> None:
    expected = await fan().run(Ctx(), 7)
    crashing = CrashingStore(store, at=at, after=after)
    with pytest.raises(Crash):
        await fan().run_with_checkpoint(Ctx(), 7, store=crashing, run_id="c")
    CALLS.clear()
    assert await fan().resume(store, "c") == expected
    done = await Checkpoint.load(fan(), store, "c")
    assert done.finished and done.outputs == (((), expected),)
    # resuming re-ran only what the checkpoint still had pending
    assert len(CALLS) <= 1 + 7 + 7 + 1


async def test_a_failing_store_fails_the_run_with_one_clear_error(
    store: CheckpointStore,
) -> None:
    failing = CrashingStore(store, at=3, error=lambda: OSError("disk full"))
    with pytest.raises(CheckpointError, match="failed to commit a step: OSError: disk full"):
        await fan().run_with_checkpoint(Ctx(), 30, store=failing, run_id="disk")
    assert await fan().resume(store, "disk") == await fan().run(Ctx(), 30)


async def test_commits_write_only_what_changed(store: CheckpointStore) -> None:
    """No commit after the fan-out rewrites the pending items or the collected values."""
    size = 300
    spy = CrashingStore(store, at=-1)
    await fan().run_with_checkpoint(Ctx(), size, store=spy, run_id="big")
    first, *rest = spy.commits
    assert len(first.items) == size  # the fan-out itself
    for c in rest:
        steps = max(len(c.done), 1)
        assert len(c.items) <= steps
        assert len(c.contributions) <= steps
        assert len(c.scopes) <= 1
    total = sum(len(c.items) + len(c.done) + len(c.contributions) for c in spy.commits)
    assert total <= 6 * size + 10


async def test_successor_ids_are_deterministic() -> None:
    parent = WorkItem("abc", "split", 3)
    assert item_id(parent, 0) == item_id(WorkItem("abc", "other", 9), 0)
    assert len({item_id(parent, k) for k in range(-3, 100)}) == 103
    assert ROOT_ID == "0"


async def test_resumed_run_makes_the_same_item_ids(store: CheckpointStore) -> None:
    crashing = CrashingStore(store, at=2)
    with pytest.raises(Crash):
        await fan().run_with_checkpoint(Ctx(), 5, store=crashing, run_id="ids")
    pending = {it.id for it in (await Checkpoint.load(fan(), store, "ids")).items}
    reference = InMemoryCheckpointStore()
    spy = CrashingStore(reference, at=-1)
    await fan().run_with_checkpoint(Ctx(), 5, store=spy, run_id="ids")
    made = {k for c in spy.commits for k, _ in c.items}
    assert pending <= made | {ROOT_ID}


# ------------------------------------------------------------------------ failures
@attrs.define
class Flaky(Node[Ctx, int, int]):
    broken: bool = True

    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        if self.broken and input == 2:
            raise RuntimeError("service down")
        return Next(input * 10)


@attrs.frozen
class Add(Node[Ctx, Sequence[int], int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class Sums(Workflow[Ctx, int, int]):
    split: Split
    flaky: Flaky
    add: Add

    start = "split"
    edges = {"split": ["flaky"], "flaky": ["add"], "add": []}
    joins = {"add": "split"}


async def test_failed_run_can_be_resumed_after_the_fix(store: CheckpointStore) -> None:
    flaky = Flaky()
    wf = Sums(split=Split(), flaky=flaky, add=Add())
    with pytest.raises(NodeError, match="service down"):
        await wf.run_with_checkpoint(Ctx(), 4, store=store, run_id="f")
    [info] = await store.list_runs()
    assert info.status == "failed" and info.error is not None and "service down" in info.error
    cp = await Checkpoint.load(wf, store, "f")
    assert any(it.node == "flaky" and it.input == 2 for it in cp.items)
    flaky.broken = False
    assert await wf.resume(store, "f") == 60


RESUMING = False


@attrs.frozen
class Slow(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        await trio.sleep(1000 if input == 1 and not RESUMING else 0)
        return Next(input)


@workflow
class Slowly(Workflow[Ctx, int, int]):
    split: Split
    slow: Slow
    add: Add

    start = "split"
    edges = {"split": ["slow"], "slow": ["add"], "add": []}
    joins = {"add": "split"}


async def test_timed_out_run_resumes(store: CheckpointStore) -> None:
    wf = Slowly(split=Split(), slow=Slow(), add=Add())
    with pytest.raises(RunTimeoutError):
        await wf.run_with_checkpoint(Ctx(), 3, store=store, run_id="t", timeout=0.5)
    cp = await Checkpoint.load(wf, store, "t")
    assert [it.input for it in cp.items] == [1]
    assert cp.join_state and next(iter(cp.join_state.values())).open == 1
    global RESUMING
    RESUMING = True
    try:
        assert await wf.resume(store, "t") == 3
    finally:
        RESUMING = False


async def test_value_that_cannot_be_serialized_fails_before_storing(
    store: CheckpointStore,
) -> None:
    with pytest.raises(CheckpointError, match=r"\$\.items\[0\]\.input"):
        await fan().run_with_checkpoint(Ctx(), object(), store=store)  # type: ignore[arg-type]
    assert await store.list_runs() == []


# ------------------------------------------------------------------------ unusable checkpoints
@workflow
class Other(Workflow[Ctx, int, str]):
    split: Split
    check: Check
    big: Big
    small: Small

    start = "split"
    edges = {
        "split": ["check"],
        "check": {Above: ["big"], Below: ["small"]},
        "big": [],
        "small": [],
    }


def changed_fan() -> Workflow[Ctx, int, str]:
    @workflow
    class Fan(Workflow[Ctx, int, str]):  # same name, one edge different
        split: Split
        check: Check
        big: Big
        small: Small
        total: Total

        start = "split"
        edges = {
            "split": ["check"],
            "check": {Above: ["big"], Below: ["small"]},
            "big": [],
            "small": ["total"],
            "total": [],
        }
        joins = {"total": "split"}

    return Fan(split=Split(), check=Check(), big=Big(), small=Small(), total=Total())


async def _crashed_run(store: CheckpointStore) -> StoredCheckpoint:
    """Run 'x' stopped mid-way: item check(1) pending, the join holding 3 values."""
    with pytest.raises(RunTimeoutError):
        await fan(stall=1).run_with_checkpoint(Ctx(), 4, store=store, run_id="x", timeout=0.3)
    return await store.load_run("x")


async def test_foreign_workflow(store: CheckpointStore) -> None:
    before = await _crashed_run(store)
    other = Other(split=Split(), check=Check(), big=Big(), small=Small())
    with pytest.raises(CheckpointError, match=r"belongs to workflow 'Fan'.*not to 'Other'"):
        await other.resume(store, "x")
    assert await store.load_run("x") == before


async def test_changed_graph_says_what_differs(store: CheckpointStore) -> None:
    before = await _crashed_run(store)
    with pytest.raises(CheckpointError) as info:
        await changed_fan().resume(store, "x")
    assert "changed since run 'x'" in str(info.value)
    assert "edges of 'big': was ['total'], is now []" in str(info.value)
    assert await store.load_run("x") == before


async def _tamper(store: CheckpointStore, **changes: Any) -> StoredCheckpoint:
    """Re-store run 'x' with some parts replaced (as a damaged file would have them)."""
    record = await store.load_run("x")
    await store.delete_run("x")
    bad = attrs.evolve(record, **changes)
    await store.create_run(bad)
    return await store.load_run("x")


async def test_newer_format(store: CheckpointStore) -> None:
    record = await _crashed_run(store)
    meta = json.loads(record.meta)
    meta["format"] = 99
    before = await _tamper(store, meta=json.dumps(meta).encode())
    with pytest.raises(CheckpointError, match="format 99 by a newer floxide"):
        await fan().resume(store, "x")
    assert await store.load_run("x") == before


@pytest.mark.parametrize(
    "part",
    ["meta", "context", "item", "item-type", "scope", "contribution"],
)
async def test_corrupt_payloads(store: CheckpointStore, part: str) -> None:
    record = await _crashed_run(store)
    assert record.items and record.scopes and record.contributions
    key = sorted(record.items)[0]
    if part == "meta":
        changes: dict[str, Any] = {"meta": b"\x00garbage"}
        message = "header of run 'x' is corrupt"
    elif part == "context":
        changes = {"context": b'{"label": 3, "color": "green", "hits": "x"}'}
        message = r"\$\.context\.color"
    elif part == "item":
        changes = {"items": {**record.items, key: record.items[key][:-3]}}
        message = f"work item '{key}' of run 'x' is corrupt"
    elif part == "item-type":
        data = json.loads(record.items[key])
        data["input"] = {"value": "not a number"} if data["node"] != "check" else "seven"
        changes = {"items": {**record.items, key: json.dumps(data).encode()}}
        message = rf"\$\.items\[{key}\]\.input"
    elif part == "scope":
        sid = next(iter(record.scopes))
        changes = {"scopes": {sid: b'{"source": "split"}'}}
        message = rf"required field missing @ \$\.scopes\[{sid}\]\.joins"
    else:
        sid, raw = record.contributions[0]
        data = json.loads(raw)
        data["position"] = "first"
        changes = {"contributions": [(sid, json.dumps(data).encode())]}
        message = r"\$\.contributions\[0\]"
    before = await _tamper(store, **changes)
    with pytest.raises(CheckpointError, match=message):
        await fan().resume(store, "x")
    assert await store.load_run("x") == before


async def test_two_processes_resuming_one_run(store: CheckpointStore) -> None:
    """The second writer is refused instead of interleaving its commits."""
    await _crashed_run(store)
    record = await store.load_run("x")
    await store.commit("x", Commit(seq=record.seq + 1))  # someone else committed meanwhile
    with pytest.raises(CheckpointError, match="changed by someone else"):
        await store.commit("x", Commit(seq=record.seq + 1))


# ------------------------------------------------------------------------ sqlite files
def test_sqlite_error_is_never_raw(tmp_path: Path) -> None:
    assert issubclass(CheckpointError, Exception)
    assert not issubclass(CheckpointError, sqlite3.Error)


# ------------------------------------------------------------------------ merge values
@attrs.define
class Tally:
    seen: Counter = attrs.field(factory=Counter)
    log: EventLog[int] = attrs.field(factory=EventLog)
    shared: SharedState[Counter] = attrs.field(factory=lambda: SharedState(Counter()))


@attrs.frozen
class Spread(Node[Tally, int, int]):
    async def process(self, ctx: Tally, input: int) -> Transition[int]:
        return NextAll(range(input))


@attrs.frozen
class Count(Node[Tally, int, int]):
    async def process(self, ctx: Tally, input: int) -> Transition[int]:
        ctx.seen = ctx.seen.add(1)
        ctx.log = ctx.log.append(input)
        await ctx.shared.update(lambda c: c.add(2))
        await trio.sleep(0.001 * (input % 4))  # the change is visible before the step ends
        return Next(input)


@attrs.frozen
class Gather(Node[Tally, Sequence[int], int]):
    async def process(self, ctx: Tally, input: Sequence[int]) -> Transition[int]:
        return Next(len(input))


@workflow
class Counting(Workflow[Tally, int, int]):
    spread: Spread
    count: Count
    gather: Gather

    start = "spread"
    edges = {"spread": ["count"], "count": ["gather"], "gather": []}
    joins = {"gather": "spread"}


@pytest.mark.parametrize("at", [2, 3, 4, 6])
async def test_merge_values_count_a_rerun_step_once(store: CheckpointStore, at: int) -> None:
    """A step in flight at a crash may have changed the context that another step then
    committed; on resume its contributions are dropped before it runs again."""
    wf = Counting(spread=Spread(), count=Count(), gather=Gather())
    with pytest.raises(Crash):
        await wf.run_with_checkpoint(Tally(), 12, store=CrashingStore(store, at=at), run_id="m")
    assert await wf.resume(store, "m") == 12
    ctx = (await Checkpoint.load(wf, store, "m")).context
    assert ctx.seen.value == 12
    assert sorted(ctx.log.values) == list(range(12))
    assert (await ctx.shared.get()).value == 24


# ------------------------------------------------------------- None and object types
@attrs.frozen
class Begin(Node[None, None, int]):
    async def process(self, ctx: None, input: None) -> Transition[int]:
        return NextAll([1, 2])


@attrs.frozen
class Anything(Node[None, int, object]):
    async def process(self, ctx: None, input: int) -> Transition[object]:
        return Next({"n": input} if input > 1 else [input])


@attrs.frozen
class Describe(Node[None, object, str]):
    async def process(self, ctx: None, input: object) -> Transition[str]:
        return Next(repr(input))


@workflow
class Untyped(Workflow[None, None, str]):
    begin: Begin
    anything: Anything
    describe: Describe

    start = "begin"
    edges = {"begin": ["anything"], "anything": ["describe"], "describe": []}


@pytest.mark.parametrize("at", [1, 2, 3])
async def test_none_context_and_input_and_object_values(store: CheckpointStore, at: int) -> None:
    """`Node[None, None, ...]` declares NoneType, and `object` accepts any payload: both
    are written and read back, so such a run can be checkpointed and resumed."""
    wf = Untyped(begin=Begin(), anything=Anything(), describe=Describe())
    with pytest.raises(Crash):
        await wf.run_with_checkpoint(None, None, store=CrashingStore(store, at=at), run_id="n")
    assert await wf.resume(store, "n") == "[1]"
    cp = await Checkpoint.load(wf, store, "n")
    assert cp.context is None
    assert [v for _, v in cp.outputs] == ["[1]", "{'n': 2}"]


# ------------------------------------------------------------- context changes, stale runs
@attrs.define
class Notes:
    label: str = "start"
    seen: list[str] = attrs.field(factory=list)


@attrs.frozen
class Relabel(Node[Notes, int, int]):
    """Changes the context, then (next node) checks the store already holds the change."""

    store: CheckpointStore
    label: str

    async def process(self, ctx: Notes, input: int) -> Transition[int]:
        ctx.seen.append(json.loads((await self.store.load_run("ctx")).context)["label"])
        ctx.label = self.label
        return Next(input + 1)


@workflow
class Relabelled(Workflow[Notes, int, int]):
    a: Relabel
    b: Relabel
    c: Relabel

    start = "a"
    edges = {"a": ["b"], "b": ["c"], "c": []}


async def test_a_context_change_is_committed_with_the_step_that_made_it(
    store: CheckpointStore,
) -> None:
    wf = Relabelled(a=Relabel(store, "a"), b=Relabel(store, "b"), c=Relabel(store, "b"))
    ctx = Notes()
    assert await wf.run_with_checkpoint(ctx, 0, store=store, run_id="ctx") == 3
    assert ctx.seen == ["start", "a", "b"]
    stored = (await Checkpoint.load(wf, store, "ctx")).context
    assert stored == Notes(label="b", seen=["start", "a", "b"])


@attrs.frozen
class Intrude(Node[Notes, int, int]):
    """Commits to its own run behind the executor's back, as a second writer would."""

    store: CheckpointStore

    async def process(self, ctx: Notes, input: int) -> Transition[int]:
        seq = (await self.store.load_run("stale")).seq
        await self.store.commit("stale", Commit(seq=seq + 1))
        return Next(input + 1)


@workflow
class Intruded(Workflow[Notes, int, int]):
    a: Intrude
    b: Relabel

    start = "a"
    edges = {"a": ["b"], "b": []}


async def test_a_run_committed_to_by_someone_else_stops_with_a_clear_error(
    store: CheckpointStore,
) -> None:
    wf = Intruded(a=Intrude(store), b=Relabel(store, "b"))
    with pytest.raises(CheckpointError, match="changed by someone else"):
        await wf.run_with_checkpoint(Notes(), 0, store=store, run_id="stale")
    record = await store.load_run("stale")
    assert list(record.items) == [ROOT_ID]  # the refused step left its item pending


async def test_resume_keeps_the_run_timeout(store: CheckpointStore) -> None:
    wf = Slowly(split=Split(), slow=Slow(), add=Add())
    with pytest.raises(RunTimeoutError):
        await wf.run_with_checkpoint(Ctx(), 3, store=store, run_id="k", timeout=0.3)
    assert (await Checkpoint.load(wf, store, "k")).timeout == 0.3
    # Not resumed as fixed: the stalled item stalls again, and the run's own timeout stops it.
    with trio.fail_after(30), pytest.raises(RunTimeoutError, match=r"within 0\.3 s"):
        await wf.resume(store, "k")
    with pytest.raises(RunTimeoutError, match=r"within 0\.2 s"):
        await wf.resume(store, "k", timeout=0.2)  # a timeout given to resume replaces it
    assert (await Checkpoint.load(wf, store, "k")).items


async def test_a_garbled_timeout_in_the_header_is_a_checkpoint_error(
    store: CheckpointStore,
) -> None:
    wf = Slowly(split=Split(), slow=Slow(), add=Add())
    with pytest.raises(RunTimeoutError):
        await wf.run_with_checkpoint(Ctx(), 3, store=store, run_id="g", timeout=0.3)
    record = await store.load_run("g")
    bad = json.loads(record.meta)
    bad["timeout"] = "soon"
    garbled = attrs.evolve(record, run_id="g2", meta=json.dumps(bad).encode())
    await store.create_run(garbled)
    with pytest.raises(CheckpointError, match=r"run 'g2' is corrupt \(timeout 'soon'\)"):
        await wf.resume(store, "g2")
