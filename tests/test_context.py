"""SharedState: lock-guarded updates, serialization as its value, copies; item scopes."""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest
import trio
from cattrs import ClassValidationError
from cattrs.preconf.json import make_converter

from floxide import (
    Counter,
    ItemInfo,
    Max,
    MergeConflictError,
    Next,
    Node,
    SharedState,
    SplitNode,
    Transition,
    Workflow,
    current_item,
    item_scope,
    workflow,
)
from floxide._context import register_shared_state_hooks
from floxide._running import enter_item, exit_item


async def test_get_set_update() -> None:
    s = SharedState(1)
    assert await s.get() == 1
    await s.set(5)
    assert await s.get() == 5
    assert await s.update(lambda n: n * 3) == 15
    assert s.peek() == 15


async def test_concurrent_updates_never_lose_an_increment() -> None:
    s = SharedState(0)

    async def bump() -> None:
        for _ in range(5):
            await s.update(lambda n: n + 1)
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(bump)
    assert await s.get() == 1000


async def test_lock_holds_across_awaits() -> None:
    s = SharedState(0)

    async def bump() -> None:
        async with s.lock() as cell:
            seen = cell.value
            await trio.sleep(0)  # other branches run here, but cannot touch the value
            cell.value = seen + 1

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(bump)
    assert await s.get() == 200


async def test_without_the_lock_the_same_pattern_loses_increments() -> None:
    # The control for the test above: read / await / write on a bare value loses updates.
    box = [0]

    async def bump() -> None:
        seen = box[0]
        await trio.sleep(0)
        box[0] = seen + 1

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(bump)
    assert box[0] < 200


async def test_cell_is_dead_after_the_lock_is_released() -> None:
    s = SharedState("a")
    async with s.lock() as cell:
        cell.value += "b"
    assert await s.get() == "ab"
    with pytest.raises(RuntimeError, match="after its lock was released"):
        _ = cell.value
    with pytest.raises(RuntimeError):
        cell.value = "c"
    assert s.peek() == "ab"


async def test_lock_is_released_when_the_block_raises() -> None:
    s = SharedState(1)
    with pytest.raises(ValueError):
        async with s.lock() as cell:
            cell.value = 2
            raise ValueError("boom")
    assert await s.get() == 2  # writes made before the error stay; the lock is free again


@attrs.define
class Ctx:
    hits: SharedState[int] = attrs.field(factory=lambda: SharedState(0))
    peak: SharedState[Max[int]] = attrs.field(factory=lambda: SharedState(Max(0)))
    names: SharedState[list[str]] = attrs.field(factory=lambda: SharedState([]))


def test_serializes_as_its_value() -> None:
    conv = make_converter()
    register_shared_state_hooks(conv)
    ctx = Ctx(SharedState(3), SharedState(Max(7)), SharedState(["a", "b"]))
    data = conv.unstructure(ctx)
    assert data == {"hits": 3, "peak": {"value": 7}, "names": ["a", "b"]}
    back = conv.loads(conv.dumps(ctx), Ctx)
    assert back == ctx
    assert isinstance(back.hits, SharedState) and back.hits.peek() == 3
    assert back.peak.peek() == Max(7)


def test_structure_checks_the_value_type() -> None:
    conv = make_converter()
    register_shared_state_hooks(conv)
    with pytest.raises(ClassValidationError) as info:
        conv.structure({"hits": "not a number", "peak": {"value": 1}, "names": []}, Ctx)
    assert any(isinstance(e, ValueError) for e in info.value.exceptions)


def test_bare_shared_state_round_trips() -> None:
    conv = make_converter()
    register_shared_state_hooks(conv)
    assert conv.unstructure(SharedState({"a": 1})) == {"a": 1}
    assert conv.structure({"a": 1}, SharedState).peek() == {"a": 1}


async def test_copies_get_their_own_lock() -> None:
    s = SharedState([1, 2])
    for clone in (copy.copy(s), copy.deepcopy(s), pickle.loads(pickle.dumps(s))):
        assert clone == s and clone is not s
        async with s.lock():
            # The original is locked; the clone is not.
            await clone.set([3])
        assert await clone.get() == [3]
    deep = copy.deepcopy(s)
    deep.peek().append(9)
    assert s.peek() == [1, 2]


def test_merge_merges_values_or_requires_equality() -> None:
    a = SharedState(Max(3))
    assert a.merge(SharedState(Max(9))).peek() == Max(9)
    assert SharedState(5).merge(SharedState(5)).peek() == 5
    with pytest.raises(MergeConflictError, match="differ"):
        SharedState(5).merge(SharedState(6))
    with item_scope("1"):
        c1 = Counter().add(2)
    with item_scope("2"):
        c2 = Counter().add(3)
    assert SharedState(c1).merge(SharedState(c2)).peek().value == 5


def test_equality_and_repr() -> None:
    assert SharedState(1) == SharedState(1)
    assert SharedState(1) != SharedState(2)
    assert SharedState(1) != 1
    assert repr(SharedState([1])) == "SharedState([1])"
    with pytest.raises(TypeError):
        hash(SharedState(1))


async def test_item_scope_is_per_task_and_nests() -> None:
    assert current_item() is None
    seen: dict[str, object] = {}

    async def child(name: str, item_id: int, position: tuple[int, ...]) -> None:
        with item_scope(item_id, position):
            await trio.sleep(0)
            seen[name] = current_item()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, "a", 1, (0,))
        nursery.start_soon(child, "b", 2, (1,))
    assert {k: (v.id, v.position) for k, v in seen.items()} == {  # type: ignore[attr-defined]
        "a": ("1", (0,)),
        "b": ("2", (1,)),
    }
    with item_scope("outer", (3,)) as outer:
        with item_scope(7, (0, 1)) as inner:
            assert current_item() == inner
            assert (inner.id, inner.position) == ("outer/7", (3, 0, 1))
        assert current_item() == outer
    assert current_item() is None


def test_enter_and_exit_item_nest_like_item_scope() -> None:
    outer = enter_item(3, (1,))
    inner = enter_item("x", (0,))
    info = current_item()
    assert info is not None and (info.id, info.position) == ("3/x", (1, 0))
    exit_item(inner)
    assert current_item() == ItemInfo("3", (1,))
    exit_item(outer)
    assert current_item() is None


@attrs.define
class Hits:
    hits: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Bump(Node[Hits, int, int]):
    async def process(self, ctx: Hits, input: int) -> Transition[int]:
        async with ctx.hits.lock() as cell:
            seen = cell.value
            await trio.sleep(0)
            cell.value = seen + 1
        await ctx.hits.update(lambda n: n + 1)
        return Next(input)


def fan(n: int) -> range:
    return range(n)


@workflow
class ManyBranches(Workflow[Hits, int, int]):
    split: SplitNode[int, int]
    bump: Bump

    start = "split"
    edges = {"split": ["bump"], "bump": []}


async def test_many_workflow_branches_never_lose_an_increment() -> None:
    ctx = Hits()
    wf = ManyBranches(split=SplitNode(fan), bump=Bump())
    outputs = await wf.run_all(ctx, 300, concurrency=64)
    assert len(outputs) == 300
    assert await ctx.hits.get() == 600


@attrs.frozen
class _Observe(Node[None, int, int]):
    """Records what `current_item()` gives inside a run, twice per execution."""

    seen: list[tuple[ItemInfo | None, ItemInfo | None]] = attrs.field(factory=list, eq=False)

    async def process(self, ctx: None, input: int) -> Transition[int]:
        first = current_item()
        await trio.sleep(0)
        self.seen.append((first, current_item()))
        return Next(input + 1)


@workflow
class _TwoSteps(Workflow[None, int, int]):
    a: _Observe
    b: _Observe

    start = "a"
    edges = {"a": ["b"], "b": []}


async def test_current_item_inside_a_run_is_one_info_per_execution() -> None:
    """The executor sets the work item itself; `current_item()` makes its `ItemInfo` once
    per execution (so `first_touch` state is kept across calls) and qualifies it inside an
    enclosing item."""
    wf = _TwoSteps(a=_Observe(), b=_Observe())
    assert await wf.run(None, 1) == 3
    (a_first, a_again), = wf.a.seen
    (b_first, b_again), = wf.b.seen
    assert a_first is a_again and b_first is b_again
    assert a_first is not None and b_first is not None
    assert type(a_first) is ItemInfo and a_first.id != b_first.id
    assert a_first.position == b_first.position == ()
    assert current_item() is None

    wf = _TwoSteps(a=_Observe(), b=_Observe())
    with item_scope("outer", (4,)):
        assert await wf.run(None, 1) == 3
    (nested, _), = wf.a.seen
    assert nested is not None and nested.id.startswith("outer/") and nested.position == (4,)
