"""The pure core: `floxide._step`, the rulebook every applier calls.

Each rule is tested here on its own, without an executor, a store or a backend; the last
test feeds random commit sequences through the rulebook's join arithmetic and through its
Lua port in the Redis commit script, on a real redis-server, and compares them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from floxide import (
    Abort,
    Hold,
    Next,
    NextAll,
    Node,
    NoOutputError,
    RetryError,
    RetryPolicy,
    Transition,
    Workflow,
    workflow,
)
from floxide._step import (
    DEADLINE_GRACE,
    JoinScope,
    JoinState,
    NoRouteError,
    StrayJoinError,
    WorkItem,
    advance,
    chain_step,
    context_changed,
    count_scopes,
    deadline_passed,
    derived_id,
    fire,
    fires_at_once,
    first_output,
    in_branch_order,
    innermost_first,
    never_same,
    note_attempts,
    outcome_error,
    retry_delay,
    settle,
    timeout_message,
)
from floxide.backends._redis_lua import COUNT_SCOPES
from tests.redis_server import RedisServer


@attrs.define
class Ctx:
    pass


@attrs.frozen
class Split(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return NextAll(list(range(input)))


@attrs.frozen
class Inc(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Sum(Node[Ctx, "Sequence[int]", int]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@attrs.frozen
class Parity(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input)


@workflow
class FanJoin(Workflow[Ctx, int, int]):
    split: Split
    inc: Inc
    total: Sum

    start = "split"
    edges = {"split": ["inc"], "inc": ["total"], "total": []}
    joins = {"total": "split"}


@workflow
class Chain(Workflow[Ctx, int, int]):
    a: Inc
    b: Inc

    start = "a"
    edges = {"a": ["b"], "b": []}


@workflow
class Routed(Workflow[Ctx, int, int]):
    p: Parity
    even: Inc
    odd: Inc
    fix: Inc

    start = "p"
    edges = {"p": {0: ["even"], 1: ["odd"]}, "even": [], "odd": [], "fix": []}
    on_failure = {"p": ["fix"]}


def ids() -> Any:
    counter = iter(range(1, 10_000))
    return lambda parent, k: next(counter)


# -------------------------------------------------------------------------- one step
def test_chain_step_keeps_position_and_scopes() -> None:
    graph = Chain.__floxide_graph__
    item = WorkItem("x", "a", 1, (2, 0), (("s", "src"),))
    nxt = chain_step(graph.specs["a"], item, Next(5), lambda p, k: f"{p.id}/{k}")
    assert nxt is not None
    assert (nxt.id, nxt.node, nxt.input, nxt.position, nxt.scopes) == (
        "x/0",
        "b",
        5,
        (2, 0),
        (("s", "src"),),
    )
    assert chain_step(graph.specs["a"], item, NextAll([1]), ids()) is None
    assert chain_step(graph.specs["b"], item, Next(1), ids()) is None  # terminal


def test_outcome_error_reads_abort_exceptions_and_junk() -> None:
    boom = ValueError("x")
    assert outcome_error("n", Abort(boom)) is boom
    assert outcome_error("n", boom) is boom
    assert outcome_error("n", Next(1)) is None
    assert outcome_error("n", NextAll([])) is None
    assert outcome_error("n", Hold()) is None
    junk = outcome_error("n", 42)
    assert isinstance(junk, TypeError) and "'n' returned 42" in str(junk)


def test_advance_positions_of_a_fan_out() -> None:
    graph = FanJoin.__floxide_graph__
    fx = advance(graph, WorkItem("r", "split", 3, (7,)), NextAll([0, 1, 2]), ids())
    assert [i.position for i in fx.items] == [(7, 0), (7, 1), (7, 2)]
    assert fx.opened is not None and fx.opened.open == 3
    assert all(i.scopes == (("r", "split"),) for i in fx.items)


def test_advance_routes_and_falls_back_on_no_route() -> None:
    graph = Routed.__floxide_graph__
    fx = advance(graph, WorkItem(1, "p", 0), Next(1), ids())
    assert [i.node for i in fx.items] == ["odd"]
    fx = advance(graph, WorkItem(1, "p", 9), Next(9), ids())
    assert [i.node for i in fx.items] == ["fix"] and fx.items[0].input == 9
    assert fx.failure is None


def test_advance_failure_without_fallback() -> None:
    graph = Chain.__floxide_graph__
    fx = advance(graph, WorkItem(1, "a", 0), Abort(KeyError("k")), ids())
    assert isinstance(fx.failure, KeyError) and not fx.items


def test_no_route_and_stray_join_are_floxide_errors_and_lookup_runtime_errors() -> None:
    assert issubclass(NoRouteError, LookupError)
    assert issubclass(StrayJoinError, RuntimeError)


def test_derived_ids_are_stable() -> None:
    parent = WorkItem("abc", "a", None)
    assert derived_id(parent, 0) == derived_id(WorkItem("abc", "b", 1), 0)
    assert derived_id(parent, 0) != derived_id(parent, 1)


# ------------------------------------------------------------------------------ joins
def test_join_values_arrive_in_branch_order() -> None:
    assert in_branch_order([((2,), "c"), ((0,), "a"), ((1, 5), "b")]) == ["a", "b", "c"]


def test_fire_makes_one_item_per_join_at_the_source_position() -> None:
    scope = JoinScope(
        "s", "split", ("j1", "j2"), (4,), (), 0, {"j1": [((1,), 1), ((0,), 0)], "j2": []}
    )
    fired = fire(scope, lambda p, k: (p.id, k))
    assert [(f.id, f.node, f.input, f.position) for f in fired] == [
        (("s", -1), "j1", [0, 1], (4, 0)),
        (("s", -2), "j2", [], (4, 1)),
    ]


def test_empty_fan_out_fires_its_joins_at_once() -> None:
    graph = FanJoin.__floxide_graph__
    state = JoinState(ids())
    root = WorkItem("r", "split", 0)
    fx = advance(graph, root, NextAll([]), state.new_id)
    assert fx.opened is not None and fires_at_once(fx.opened)
    fired = settle(state, root, fx)
    assert [(f.node, f.input) for f in fired] == [("total", [])]
    assert not state.scopes


def test_settle_counts_innermost_first_and_fires_once() -> None:
    graph = FanJoin.__floxide_graph__
    state = JoinState(ids())
    root = WorkItem("r", "split", 2)
    fx = advance(graph, root, NextAll([10, 20]), state.new_id)
    assert settle(state, root, fx) == []
    assert state.scopes["r"].open == 2
    fired: list[WorkItem] = []
    for child in reversed(fx.items):  # finish out of order: the join still sees branch order
        cfx = advance(graph, child, Next(child.input + 1), state.new_id)
        fired += settle(state, child, cfx)
    assert [(f.node, f.input) for f in fired] == [("total", [11, 21])]
    assert not state.scopes


def test_innermost_first() -> None:
    item = WorkItem(1, "n", None, (), (("outer", "a"), ("inner", "b")))
    assert innermost_first(item) == ["inner", "outer"]


class DictTable:
    """A plain scope table: counts and the names each scope fires."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.fired: dict[str, list[str]] = {}

    def add_open(self, scope_id: str, delta: int) -> int:
        self.counts[scope_id] += delta
        return self.counts[scope_id]

    def close(self, scope_id: str) -> list[str]:
        del self.counts[scope_id]
        return self.fired.pop(scope_id)


def test_count_scopes_counts_fired_joins_in_outer_scopes() -> None:
    table = DictTable()
    table.counts.update(inner=1, outer=1)
    table.fired.update(inner=["j-inner"], outer=["j-outer"])
    # The last item of the inner scope finishes with no successor: the inner join fires
    # and lives in the outer scope, which therefore stays open.
    assert count_scopes(table, ["inner", "outer"], 0) == ["j-inner"]
    assert table.counts == {"outer": 1}
    assert count_scopes(table, ["outer"], 0) == ["j-outer"]
    assert table.counts == {}


# ---------------------------------------------------------------------------- the end
def test_first_output_and_no_output() -> None:
    assert first_output("wf", [((0,), "a"), ((1,), "b")]) == "a"
    with pytest.raises(NoOutputError, match="run r1 of workflow 'wf' finished without"):
        first_output("wf", [], "r1")


# ---------------------------------------------------------------------------- retries
def test_retry_delay_follows_the_policy() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5, jitter=False)
    assert retry_delay(policy, ValueError(), 1) == 0.5
    assert retry_delay(policy, ValueError(), 2) == 1.0
    assert retry_delay(policy, ValueError(), 3) is None  # attempts used up
    assert retry_delay(None, ValueError(), 1) is None
    only_timeouts = RetryPolicy(retry_on=RetryError.TIMEOUTS)
    assert retry_delay(only_timeouts, ValueError(), 1) is None
    assert retry_delay(only_timeouts, TimeoutError(), 1) is not None
    assert policy.should_retry(ValueError(), 2) and not policy.should_retry(ValueError(), 3)


def test_note_attempts() -> None:
    once, thrice = ValueError(), ValueError()
    note_attempts(once, 1)
    note_attempts(thrice, 3)
    assert not getattr(once, "__notes__", None)
    assert thrice.__notes__ == ["failed after 3 attempts"]


# -------------------------------------------------------------------------- deadlines
def test_deadline_rule() -> None:
    assert not deadline_passed(None, 1e12)
    assert not deadline_passed(100.0, 100.0)
    assert deadline_passed(100.0, 100.5)
    assert not deadline_passed(100.0, 100.5, DEADLINE_GRACE)
    assert timeout_message("wf", "r", 2.0) == "run r of workflow 'wf' did not finish within 2.0 s"
    assert timeout_message("wf") == "run of workflow 'wf' did not finish within its timeout"


# ---------------------------------------------------------------------------- context
def test_context_changed() -> None:
    assert not context_changed(b"a", b"a", never_same)
    assert context_changed(b"a", b"b", never_same)
    assert not context_changed(b"a", b"b", lambda: True)  # encodes differently, equal


# ------------------------------------------------- the Lua port of the join arithmetic
_HARNESS = (
    COUNT_SCOPES
    + r"""
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local out = {}
for _, f in ipairs(count_scopes(KEYS[1], KEYS[2], ids, tonumber(ARGV[1]))) do
  out[#out + 1] = f[1]
end
return out
"""
)


@st.composite
def commit_sequences(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Random commits over nested scopes: opens, then steps on the scopes still open."""
    ops: list[tuple[str, Any]] = []
    open_scopes: list[str] = []
    for n in range(draw(st.integers(1, 25))):
        if not open_scopes or draw(st.booleans()):
            sid = f"s{n}"
            fired = [f"{sid}/j{k}" for k in range(draw(st.integers(1, 3)))]
            ops.append(("open", (sid, draw(st.integers(1, 4)), fired)))
            open_scopes.append(sid)
        else:
            depth = draw(st.integers(1, len(open_scopes)))
            stack = list(reversed(open_scopes[-depth:]))  # innermost first
            ops.append(("step", (stack, draw(st.integers(0, 3)))))
    return ops


def _model(ops: list[tuple[str, Any]]) -> list[Any]:
    table = DictTable()
    trace: list[Any] = []
    for kind, arg in ops:
        if kind == "open":
            sid, count, fired = arg
            table.counts[sid] = count
            table.fired[sid] = fired
        else:
            stack, n_new = arg
            live = [s for s in stack if s in table.counts]
            trace.append((count_scopes(table, live, n_new), dict(table.counts)))
    return trace


async def test_lua_count_scopes_is_a_port_of_the_rulebook(redis_server: RedisServer) -> None:
    import coredis

    client = coredis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    results: list[tuple[list[tuple[str, Any]], list[Any], list[Any]]] = []

    @given(commit_sequences())
    def collect(ops: list[tuple[str, Any]]) -> None:
        results.append((ops, _model(ops), []))

    collect()
    async with client:
        for ops, _expected, got in results:
            tag = uuid.uuid4().hex
            scopes, fired_key = f"t:{tag}:scopes", f"t:{tag}:fired"
            for kind, arg in ops:
                if kind == "open":
                    sid, count, fired = arg
                    await client.hset(scopes, {sid: str(count)})
                    await client.hset(fired_key, {sid: json.dumps([[f] for f in fired])})
                else:
                    stack, n_new = arg
                    live = [s for s in stack if await client.hexists(scopes, s)]
                    out = await client.eval(_HARNESS, [scopes, fired_key], [n_new, *live])
                    counts = {k: int(v) for k, v in (await client.hgetall(scopes)).items()}
                    got.append((list(out), counts))
    assert len(results) > 10
    for ops, expected, got in results:
        assert got == expected, ops
    await trio.lowlevel.checkpoint()
