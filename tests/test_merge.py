"""Merge values: the semilattice laws under hypothesis, and what each value is for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import pytest
import trio
import trio.testing
from cattrs.preconf.json import make_converter
from hypothesis import given
from hypothesis import strategies as st

from floxide import (
    MERGE_WITH,
    Checkpoint,
    Counter,
    Event,
    EventLog,
    Fixed,
    InMemoryCheckpointStore,
    ItemInfo,
    Max,
    Merge,
    Mergeable,
    MergeConflictError,
    Min,
    Next,
    Node,
    SetUnion,
    SharedState,
    SplitNode,
    Transition,
    Workflow,
    item_scope,
    merge_values,
    workflow,
)
from floxide._context import register_shared_state_hooks
from floxide._running import _current_item

M = TypeVar("M", bound=Merge)

# ------------------------------------------------------------------ strategies

keys = st.sampled_from(["1", "2", "3", "7/1", ""])
counters = st.builds(
    Counter,
    st.dictionaries(keys, st.integers(0, 50), max_size=4),
    st.dictionaries(keys, st.integers(0, 50), max_size=4),
)
maxes = st.builds(Max, st.integers(-5, 5))
mins = st.builds(Min, st.integers(-5, 5))
float_maxes = st.builds(Max, st.floats(allow_nan=False))
unions = st.builds(SetUnion, st.frozensets(st.integers(0, 9), max_size=6))


def _event(i: int) -> Event[str]:
    # The id determines the event, as it does for events appended by work items.
    return Event(f"e{i}", (i % 3,) * (i % 2 + 1), i // 3, f"v{i}")


logs = st.builds(
    EventLog, st.lists(st.integers(0, 11), max_size=6).map(lambda ids: [_event(i) for i in ids])
)
fixeds = st.builds(Fixed, st.none() | st.integers(0, 2))


@attrs.define
class Inner(Mergeable):
    seen: SetUnion[int] = attrs.field(factory=SetUnion)
    low: Min[int] = attrs.field(default=Min(0))


@attrs.define
class Derived(Mergeable):
    region: str
    orders: Counter = attrs.field(factory=Counter)
    peak: Max[int] = attrs.field(default=Max(0))
    log: EventLog[str] = attrs.field(factory=EventLog)
    chosen: Fixed[int] = attrs.field(factory=Fixed)
    inner: Inner = attrs.field(factory=Inner)
    shared: SharedState[Max[int]] = attrs.field(factory=lambda: SharedState(Max(0)))


deriveds = st.builds(
    Derived,
    region=st.sampled_from(["eu", "us"]),
    orders=counters,
    peak=maxes,
    log=logs,
    chosen=fixeds,
    inner=st.builds(Inner, unions, mins),
    shared=maxes.map(SharedState),
)

ALL: dict[str, st.SearchStrategy[Any]] = {
    "Counter": counters,
    "Max": maxes,
    "Max[float]": float_maxes,
    "Min": mins,
    "SetUnion": unions,
    "EventLog": logs,
    "Fixed": fixeds,
    "Derived": deriveds,
}

_CONFLICT = object()


def attempt(fn: Callable[[], Any]) -> Any:
    """The result, or a marker when the merge is undefined (values that must agree differ)."""
    try:
        return fn()
    except MergeConflictError:
        return _CONFLICT


# ------------------------------------------------------------------ the three laws


@pytest.mark.parametrize("name", list(ALL))
def test_idempotent(name: str) -> None:
    @given(ALL[name])
    def law(a: Any) -> None:
        assert a.merge(a) == a

    law()


@pytest.mark.parametrize("name", list(ALL))
def test_commutative(name: str) -> None:
    @given(ALL[name], ALL[name])
    def law(a: Any, b: Any) -> None:
        assert attempt(lambda: a.merge(b)) == attempt(lambda: b.merge(a))

    law()


@pytest.mark.parametrize("name", list(ALL))
def test_associative(name: str) -> None:
    @given(ALL[name], ALL[name], ALL[name])
    def law(a: Any, b: Any, c: Any) -> None:
        left = attempt(lambda: a.merge(b).merge(c))
        right = attempt(lambda: a.merge(b.merge(c)))
        assert left == right

    law()


@pytest.mark.parametrize("name", list(ALL))
def test_absorbs_a_duplicate_contribution(name: str) -> None:
    # A duplicated or re-run work item merges the same copy again: nothing changes.
    @given(ALL[name], ALL[name])
    def law(base: Any, contribution: Any) -> None:
        once = attempt(lambda: base.merge(contribution))
        twice = attempt(lambda: base.merge(contribution).merge(contribution))
        assert once == twice

    law()


TYPES: dict[str, Any] = {
    "Counter": Counter,
    "Max": Max[int],
    "Max[float]": Max[float],
    "Min": Min[int],
    "SetUnion": SetUnion[int],
    "EventLog": EventLog[str],
    "Fixed": Fixed[int],
    "Derived": Derived,
}


@pytest.mark.parametrize("name", list(ALL))
def test_merge_values_are_json_round_trippable(name: str) -> None:
    conv = make_converter()
    register_shared_state_hooks(conv)

    @given(ALL[name])
    def round_trip(a: Any) -> None:
        assert conv.loads(conv.dumps(a), TYPES[name]) == a

    round_trip()


@pytest.mark.parametrize("name", list(ALL))
def test_merge_values_round_trip_through_floxide_serde(name: str) -> None:
    from floxide import serde

    @given(ALL[name])
    def round_trip(a: Any) -> None:
        tp = TYPES[name]
        assert serde.converter.loads(serde.converter.dumps(a, unstructure_as=tp), tp) == a

    round_trip()


def test_builtins_satisfy_the_protocol() -> None:
    for value in (Counter(), Max(1), Min(1), SetUnion[int](), EventLog[int](), Fixed[int]()):
        assert isinstance(value, Merge)
    assert isinstance(Derived("eu"), Merge)


# ------------------------------------------------------------------ Counter


def test_counter_counts_each_item_once_however_often_merged() -> None:
    # Three work items each add 1 to the same base context; their copies are merged back,
    # one of them twice (a duplicate delivery) and one re-run: the total stays 3.
    base = Counter()
    copies = []
    for item in ("1", "2", "3"):
        with item_scope(item):
            copies.append(base.add(1))
    with item_scope("2"):
        rerun = base.add(1)
    merged = base
    for c in [*copies, copies[0], rerun]:
        merged = merged.merge(c)
    assert merged.value == 3


def test_counter_accumulates_within_an_item_and_supports_decrements() -> None:
    with item_scope("5"):
        c = Counter().add(2).add(3).add(-1)
    assert c.value == 4
    assert c.increments == {"5": 5} and c.decrements == {"5": 1}
    assert int(c) == 4
    assert Counter().add(7, key="manual").value == 7
    assert Counter().add().increments == {"": 1}  # outside any work item


def test_counter_rejects_negative_contributions() -> None:
    with pytest.raises(ValueError, match="increments"):
        Counter({"a": -1})


def test_a_new_execution_of_an_item_replaces_its_contribution() -> None:
    # A checkpoint taken while item 7 was mid-way holds its partial contribution; after a
    # crash item 7 runs again on that context: it must not count twice.
    with item_scope(7):
        snapshot = Counter().add(1)
    with item_scope(7):  # the re-run: a new execution of the same item
        rerun = snapshot.add(1).add(2)
    assert rerun.increments == {"7": 3}  # this execution's 1 + 2, not 1 + 1 + 2
    with item_scope(8):
        other = rerun.add(5)
    assert other.value == 8
    assert snapshot.value == 1  # versions never change


# ------------------------------------------------------------------ Max / Min / SetUnion


def test_max_min_and_union() -> None:
    assert Max(3).update(1).update(8).value == 8
    assert Min(3).update(1).update(8).value == 1
    assert Max("b").merge(Max("a")) == Max("b")
    s = SetUnion[str]().add("a", "b").merge(SetUnion({"b", "c"}))
    assert set(s) == {"a", "b", "c"} and "a" in s and len(s) == 3


# ------------------------------------------------------------------ EventLog


def test_event_log_order_is_causal_then_by_branch_whatever_the_merge_order() -> None:
    with item_scope("0", ()):
        base = EventLog[str]().append("start")
    branches = []
    for item, position, words in (("2", (1,), ["b1", "b2"]), ("1", (0,), ["a1", "a2", "a3"])):
        log = base
        with item_scope(item, position):
            for w in words:
                log = log.append(w)
        branches.append(log)
    forward = base.merge(branches[0]).merge(branches[1])
    backward = branches[1].merge(branches[0])
    assert forward == backward
    # Concurrent branches interleave by branch position; each keeps its own order.
    assert forward.values == ["start", "a1", "b1", "a2", "b2", "a3"]
    assert [e.id for e in forward] == ["0.0", "1.0", "2.0", "1.1", "2.1", "1.2"]
    # A join at the fan-out's position sees every branch: its events come last.
    with item_scope("3", ()):
        joined = forward.append("joined")
    assert joined.values[-1] == "joined"
    # A second fan-out after the join stays after it, though positions repeat.
    with item_scope("4", (0,)):
        again = joined.append("a-again")
    assert again.values[-2:] == ["joined", "a-again"]


def test_event_log_order_does_not_depend_on_scheduling() -> None:
    # The same branches appending in two different interleavings give the same log.
    def run(schedule: Sequence[tuple[str, tuple[int, ...], str]]) -> list[str]:
        log = EventLog[str]()
        executions: dict[str, ItemInfo] = {}  # one execution per item, resumed at each turn
        for item, position, word in schedule:
            info = executions.setdefault(item, ItemInfo(item, position))
            token = _current_item.set(info)
            log = log.append(word)
            _current_item.reset(token)
        return log.values

    one = [("1", (0,), "a1"), ("1", (0,), "a2"), ("2", (1,), "b1"), ("2", (1,), "b2")]
    other = [("2", (1,), "b1"), ("1", (0,), "a1"), ("2", (1,), "b2"), ("1", (0,), "a2")]
    assert run(one) == run(other) == ["a1", "b1", "a2", "b2"]


def test_event_log_rerun_of_an_item_reproduces_its_ids() -> None:
    base = EventLog[str]()
    with item_scope("9", (2,)):
        first = base.append("x").append("y")
    with item_scope("9", (2,)):
        again = base.append("x").append("y")
    assert first.merge(again) == first
    assert len(first.merge(again)) == 2


def test_event_log_rerun_replaces_the_items_earlier_events() -> None:
    with item_scope("5", (1,)):
        partial = EventLog[str]().append("start").append("half")
    partial = partial.append("manual", id="m")  # an explicit id belongs to no item
    with item_scope("5", (1,)):
        rerun = partial.append("start").append("done")
    assert rerun.values == ["manual", "start", "done"]
    assert [e.id for e in rerun] == ["m", "5.0", "5.1"]
    assert partial.values == ["start", "half", "manual"]


positions = st.lists(st.integers(0, 2), max_size=3).map(tuple)


@given(st.lists(st.tuples(st.integers(0, 50), positions, st.booleans()), max_size=25))
def test_event_log_versions_match_a_naive_reference(
    steps: list[tuple[int, tuple[int, ...], bool]],
) -> None:
    # Append to arbitrary earlier versions (the index moves between versions) and compare
    # every version with a log rebuilt from scratch.
    versions: list[EventLog[int]] = [EventLog[int]()]
    expected: list[list[Event[int]]] = [[]]
    for n, (pick, position, from_item) in enumerate(steps):
        k = pick % len(versions)
        base, events = versions[k], expected[k]
        related = [
            e.seq for e in events if e.position[: len(position)] == position[: len(e.position)]
        ]
        if from_item:
            with item_scope(f"i{n}", position):
                log = base.append(n)
            event_id = f"i{n}.0"
        else:
            log = base.append(n, id=f"x{n}", position=position)
            event_id = f"x{n}"
        new = Event(event_id, position, 1 + max(related, default=-1), n)
        versions.append(log)
        expected.append(sorted([*events, new], key=lambda e: (e.seq, e.position, e.id)))
    for log, events in zip(versions, expected, strict=True):
        assert list(log.events) == events
        assert log == EventLog(tuple(events))


def test_event_log_conflicts_and_duplicates() -> None:
    a = EventLog[str]().append("x", id="e")
    b = EventLog[str]().append("y", id="e")
    with pytest.raises(MergeConflictError, match="share id 'e'"):
        a.merge(b)
    with pytest.raises(ValueError, match="already has an event"):
        a.append("z", id="e")


def test_event_log_outside_a_run_gets_unique_ids() -> None:
    log = EventLog[int]().append(1).append(2)
    assert log.values == [1, 2]
    assert len({e.id for e in log}) == 2


# ------------------------------------------------------------------ Fixed


def test_fixed_must_agree() -> None:
    assert Fixed[int]().merge(Fixed(4)) == Fixed(4)
    assert Fixed(4).merge(Fixed[int]()) == Fixed(4)
    assert Fixed(4).merge(Fixed(4)).get() == 4
    with pytest.raises(MergeConflictError, match="4 != 5"):
        Fixed(4).merge(Fixed(5))
    with pytest.raises(LookupError):
        Fixed[int]().get()
    assert not Fixed[int]().is_set


# ------------------------------------------------------------------ Mergeable


def test_derived_merge_merges_every_field() -> None:
    with item_scope("1", (0,)):
        a = Derived("eu", Counter().add(2), Max(3), EventLog[str]().append("a"), Fixed(1))
        a.inner = Inner(SetUnion({1}), Min(5))
    with item_scope("2", (1,)):
        b = Derived("eu", Counter().add(5), Max(9), EventLog[str]().append("b"))
        b.inner = Inner(SetUnion({2}), Min(-1))
        b.shared = SharedState(Max(4))
    m = a.merge(b)
    assert m.orders.value == 7
    assert m.peak == Max(9)
    assert m.log.values == ["a", "b"]
    assert m.chosen == Fixed(1)
    assert m.inner == Inner(SetUnion({1, 2}), Min(-1))
    assert m.shared.peek() == Max(4)
    assert a.orders.value == 2  # inputs are untouched


def test_derived_merge_names_a_conflicting_plain_field() -> None:
    with pytest.raises(MergeConflictError, match=r"Derived\.region differs"):
        Derived("eu").merge(Derived("us"))


def test_derived_merge_rejects_another_type_and_non_attrs_classes() -> None:
    @attrs.define
    class Other(Mergeable):
        region: str

    with pytest.raises(TypeError, match="cannot merge Derived with Other"):
        Derived("eu").merge(Other("eu"))  # type: ignore[arg-type]

    class Plain(Mergeable):
        pass

    with pytest.raises(TypeError, match="not an attrs class"):
        Plain().merge(Plain())


def test_custom_field_merge_and_non_init_fields() -> None:
    @attrs.frozen
    class Tagged(Mergeable):
        tags: tuple[str, ...] = attrs.field(
            default=(), metadata={MERGE_WITH: lambda a, b: tuple(sorted(set(a) | set(b)))}
        )
        total: Counter = attrs.field(init=False, factory=Counter)

    a = Tagged(("x",))
    object.__setattr__(a, "total", Counter({"1": 2}))
    b = Tagged(("y", "x"))
    m = a.merge(b)
    assert m.tags == ("x", "y")
    assert m.total.value == 2


def test_merge_values_helper() -> None:
    assert merge_values(Max(1), Max(2)) == Max(2)
    assert merge_values("same", "same") == "same"
    with pytest.raises(MergeConflictError):
        merge_values(1, 2)


# ------------------------------------------------------------------ one process vs copies


@attrs.define
class Run(Mergeable):
    total: Counter = attrs.field(factory=Counter)
    peak: Max[int] = attrs.field(default=Max(0))
    seen: SetUnion[int] = attrs.field(factory=SetUnion)
    log: EventLog[int] = attrs.field(factory=EventLog)


def _apply(ctx: Run, ops: Sequence[int]) -> None:
    for v in ops:
        ctx.total = ctx.total.add(v)
        ctx.peak = ctx.peak.update(v)
        ctx.seen = ctx.seen.add(v % 5)
        ctx.log = ctx.log.append(v)


@given(
    st.lists(st.lists(st.integers(-3, 9), max_size=4), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_merged_copies_equal_one_shared_context(items: list[list[int]], rnd: Any) -> None:
    """What a distributed run computes (per-item copies merged in any order, duplicated,
    some items re-run) equals what one process computes on one shared context."""
    import copy

    with item_scope("root"):
        base = Run()
        _apply(base, [1])

    # One process: the items' operations interleave on one context.
    shared = copy.deepcopy(base)
    executions = {k: ItemInfo(k, (k,)) for k in range(len(items))}
    turns = [k for k, ops in enumerate(items) for _ in ops]
    rnd.shuffle(turns)
    progress = dict.fromkeys(range(len(items)), 0)
    for k in turns:
        token = _current_item.set(executions[k])
        _apply(shared, [items[k][progress[k]]])
        _current_item.reset(token)
        progress[k] += 1

    # Copies: each item runs on its own copy of the base; some run twice.
    copies = []
    for k, ops in enumerate(items):
        for _ in range(rnd.choice([1, 1, 2])):
            mine = copy.deepcopy(base)
            with item_scope(k, (k,)):
                _apply(mine, ops)
            copies.append(mine)
    copies += rnd.sample(copies, k=min(2, len(copies)))  # redelivered duplicates
    rnd.shuffle(copies)
    merged = base
    for c in copies:
        merged = merged.merge(c)

    assert merged.total.value == shared.total.value
    assert merged.peak == shared.peak
    assert merged.seen == shared.seen
    assert merged.log == shared.log


# ------------------------------------------------------------------ re-runs after a crash


@attrs.define
class Fanned(Mergeable):
    total: Counter = attrs.field(factory=Counter)
    log: EventLog[int] = attrs.field(factory=EventLog)


@attrs.frozen
class CountFirst(Node[Fanned, int, int]):
    """Writes to the context, then works a while: a crash can catch it in between."""

    async def process(self, ctx: Fanned, input: int) -> Transition[int]:
        ctx.total = ctx.total.add(1)
        ctx.log = ctx.log.append(input)
        await trio.sleep(1 + input)
        return Next(input)


def _upto(n: int) -> range:
    return range(n)


@workflow
class FanCount(Workflow[Fanned, int, int]):
    split: SplitNode[int, int]
    work: CountFirst

    start = "split"
    edges = {"split": ["work"], "work": []}


async def test_resume_counts_items_that_were_in_flight_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryCheckpointStore()
    wf = FanCount(split=SplitNode(_upto), work=CountFirst())
    with trio.move_on_after(2.5):  # the "crash": items 2, 3 and 4 are mid-way
        await wf.run_with_checkpoint(Fanned(), 5, store=store, run_id="r")
    crashed = await Checkpoint.load(wf, store, "r")
    assert not crashed.finished and len(crashed.items) == 3
    assert crashed.context.total.value == 5  # holds the in-flight items' partial effects
    assert await wf.resume(store, "r") == 0
    done = await Checkpoint.load(wf, store, "r")
    assert done.context.total.value == 5  # the three re-runs replaced, not added (8)
    assert done.context.log.values == [0, 1, 2, 3, 4]


def test_counter_takes_whole_numbers() -> None:
    with pytest.raises(TypeError, match=r"Counter.add takes a whole number, got 1\.5"):
        Counter().add(1.5)  # type: ignore[arg-type]
