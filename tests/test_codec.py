"""floxide._codec: the one layout of every stored value, its round trips and its errors."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from floxide import CheckpointError, Next, Node, Transition, Workflow, workflow
from floxide._codec import Codec, DeclaredTypes, output_json
from floxide._step import JoinScope, WorkItem
from floxide.distributed._codec import PayloadError, payload_codec


@attrs.define
class Ctx:
    label: str = "run"
    hits: int = 0


@attrs.frozen
class Point:
    x: float
    y: float


@attrs.frozen
class Spread(Node[Ctx, int, int]):
    async def process(self, ctx: Ctx, input: int) -> Transition[int]:
        return Next(input)


@attrs.frozen
class Measure(Node[Ctx, int, Point]):
    async def process(self, ctx: Ctx, input: int) -> Transition[Point]:
        return Next(Point(input, -input))


@attrs.frozen
class Gather(Node[Ctx, Sequence[Point], str]):
    async def process(self, ctx: Ctx, input: Sequence[Point]) -> Transition[str]:
        return Next(",".join(f"{p.x}" for p in input))


@attrs.frozen
class Untyped(Node[Ctx, Any, Any]):
    async def process(self, ctx: Ctx, input: Any) -> Transition[Any]:
        return Next(input)


@workflow
class Shapes(Workflow[Ctx, int, str]):
    spread: Spread
    measure: Measure
    gather: Gather
    loose: Untyped

    start = "spread"
    edges = {"spread": ["measure", "loose"], "measure": ["gather"], "gather": [], "loose": []}
    joins = {"gather": "spread"}


def shapes() -> Shapes:
    return Shapes(spread=Spread(), measure=Measure(), gather=Gather(), loose=Untyped())


@pytest.fixture(params=["checkpoint", "payload"])
def codec(request: pytest.FixtureRequest) -> Codec:
    graph = shapes().graph
    return Codec(graph) if request.param == "checkpoint" else payload_codec(graph)


# ---------------------------------------------------------------- declared types
def test_declared_types_come_from_the_graph() -> None:
    graph = shapes().graph
    assert graph.workflow_types() == (Ctx, int, str)
    types = DeclaredTypes.of(graph)
    assert types is DeclaredTypes.of(graph)
    assert (types.ctx_type, types.in_type, types.out_type) == (Ctx, int, str)
    assert types.node_in["measure"] is int and types.node_out["measure"] is Point
    assert types.value_type("measure", "gather") is Point
    # an undeclared producer writes a contribution as the join's element, an output as Out
    assert types.value_type("loose", "gather") is Point
    assert types.value_type("loose") is str


@attrs.frozen
class Count(Node["Late", int, int]):
    async def process(self, ctx: Late, input: int) -> Transition[int]:
        return Next(input)


@workflow
class LateContext(Workflow["Late", int, int]):
    count: Count

    start = "count"
    edges = {"count": []}


@attrs.define
class Late:
    n: int = 0


def test_workflow_types_are_read_on_first_use() -> None:
    """A forward reference in `Workflow[...]` may name a class defined after the workflow."""
    graph = LateContext(count=Count()).graph
    assert graph.workflow_types() == (Late, int, int)
    assert Codec(graph).decode_context(b'{"n":2}') == Late(2)


# ---------------------------------------------------------------- round trips
def test_item_round_trip(codec: Codec) -> None:
    item = WorkItem("k1", "measure", 7, (2, 0), (("s1", "spread"),), 3)
    raw = codec.encode_item(item)
    assert json.loads(raw) == {
        "node": "measure",
        "input": 7,
        "position": [2, 0],
        "scopes": [["s1", "spread"]],
        "attempt": 3,
    }
    assert codec.decode_item("k1", raw, "r") == item


def test_first_item_has_the_same_layout(codec: Codec) -> None:
    raw = codec.encode_item(WorkItem("0", "spread", 5))
    assert raw == b'{"node":"spread","input":5,"position":[],"scopes":[],"attempt":1}'
    assert codec.decode_item("0", raw) == WorkItem("0", "spread", 5)


def test_leased_item_takes_the_backends_attempt_and_may_collect(codec: Codec) -> None:
    item = WorkItem("j", "gather", None, (1,), ())
    raw = codec.encode_item(item, collect="s1|gather")
    assert json.loads(raw)["collect"] == "s1|gather" and "input" not in json.loads(raw)
    payload = codec.decode_leased_item("j", raw, "r", attempt=4)
    assert payload.collect == "s1|gather"
    assert payload.item == WorkItem("j", "gather", None, (1,), (), 4)
    # a checkpoint item always carries its input
    with pytest.raises(codec.error, match=r"required field missing @ \$\.items\[j\]\.input"):
        codec.decode_item("j", raw, "r")


def test_context_round_trip(codec: Codec) -> None:
    ctx = Ctx("blue", 3)
    raw = codec.encode_context(ctx)
    assert raw == codec.context_text(ctx).encode() == b'{"label":"blue","hits":3}'
    assert codec.decode_context(raw, "r") == ctx


def test_input_is_written_as_the_workflows_in(codec: Codec) -> None:
    assert codec.encode_input(12) == b"12"
    with pytest.raises(codec.error, match=r"cannot serialize .* at \$\.input"):
        codec.encode_input(object())


def test_contribution_round_trip(codec: Codec) -> None:
    raw = codec.encode_contribution("measure", "gather", (3,), Point(1.5, -2))
    assert json.loads(raw) == {
        "join": "gather",
        "node": "measure",
        "position": [3],
        "value": {"x": 1.5, "y": -2},
    }
    assert codec.decode_contribution(raw, "$.c") == ("gather", "measure", (3,), Point(1.5, -2))


def test_collection_comes_back_in_branch_order(codec: Codec) -> None:
    raws = [
        codec.encode_contribution("measure", "gather", (k,), Point(k, 0)) for k in (2, 0, 1)
    ]
    assert codec.decode_collection("gather", raws, "r") == [Point(0, 0), Point(1, 0), Point(2, 0)]
    other = codec.encode_contribution("measure", "elsewhere", (0,), Point(0, 0))
    with pytest.raises(codec.error, match=r"join 'gather' @ \$\.joins\[gather\]\[0\]\.join"):
        codec.decode_collection("gather", [other], "r")


def test_output_round_trip(codec: Codec) -> None:
    raw = codec.encode_output("gather", (0, 1), "1.0,2.0")
    assert json.loads(raw) == {"node": "gather", "position": [0, 1], "value": "1.0,2.0"}
    assert codec.decode_output(raw, "$.outputs[0]", "r") == ((0, 1), "1.0,2.0")
    assert output_json(raw) == '"1.0,2.0"'


def test_scope_round_trip(codec: Codec) -> None:
    scope = JoinScope("s1", "spread", ("gather",), (1,), (("s0", "spread"),), 4)
    raw = codec.encode_scope(scope)
    assert json.loads(raw) == {
        "source": "spread",
        "joins": ["gather"],
        "position": [1],
        "parent": [["s0", "spread"]],
        "open": 4,
    }
    assert codec.decode_scope("s1", raw, "r") == scope


def test_nan_and_infinity_come_back(codec: Codec) -> None:
    values = Point(math.nan, math.inf)
    raw = codec.encode_contribution("measure", "gather", (0,), values)
    assert b'"value":{"x":NaN,"y":Infinity}' in raw
    _, _, _, back = codec.decode_contribution(raw, "$.c")
    assert math.isnan(back.x) and back.y == math.inf
    out = codec.decode_output(codec.encode_output("measure", (), Point(-math.inf, 0)), "$.o")
    assert out == ((), Point(-math.inf, 0))


# ---------------------------------------------------------------- errors
def test_each_side_raises_its_own_error() -> None:
    graph = shapes().graph
    assert Codec(graph).error is CheckpointError
    assert payload_codec(graph).error is PayloadError


def test_garbled_field_is_named_by_path(codec: Codec) -> None:
    raw = codec.encode_item(WorkItem("k", "measure", 1, (0,)))
    data = json.loads(raw)
    data["input"] = "seven"
    with pytest.raises(codec.error, match=r"does not fit int.*\$\.items\[k\]\.input"):
        codec.decode_item("k", json.dumps(data).encode(), "r")
    data["input"], data["position"] = 1, ["first"]
    with pytest.raises(codec.error, match=r"branch position .* @ \$\.items\[k\]\.position"):
        codec.decode_item("k", json.dumps(data).encode(), "r")
    raw = codec.encode_contribution("measure", "gather", (0,), Point(1, 2))
    bad = raw.replace(b'"x":1', b'"x":"one"')
    with pytest.raises(codec.error, match=r"\$\.contributions\[0\]\.value\.x"):
        codec.decode_contribution(bad, "$.contributions[0]", "r")
    with pytest.raises(codec.error, match=r"required field missing @ \$\.outputs\[2\]\.value"):
        codec.decode_output(b'{"node":"gather","position":[]}', "$.outputs[2]", "r")
    with pytest.raises(codec.error, match=r"expected a positive integer @ \$\.scopes\[s\]\.open"):
        codec.decode_scope(
            "s", b'{"source":"spread","joins":["gather"],"position":[],"parent":[],"open":0}', "r"
        )
    with pytest.raises(codec.error, match=r"\$\.context\.hits"):
        codec.decode_context(b'{"label":"x","hits":"many"}', "r")


def test_corrupt_bytes_and_unknown_nodes_name_the_run(codec: Codec) -> None:
    with pytest.raises(codec.error, match="work item 'k' of run 'r' is corrupt"):
        codec.decode_item("k", b"{", "r")
    raw = b'{"node":"gone","input":1,"position":[],"scopes":[],"attempt":1}'
    with pytest.raises(codec.error, match="work item 'k' of run 'r' names unknown node 'gone'"):
        codec.decode_item("k", raw, "r")


def test_values_that_cannot_be_written_are_named_by_path(codec: Codec) -> None:
    with pytest.raises(codec.error, match=r"cannot serialize list value at \$\.items\[k\]\.input"):
        codec.encode_item(WorkItem("k", "gather", [3]))
    with pytest.raises(codec.error, match=r"at \$\.outputs\[loose\]\.value"):
        codec.encode_output("loose", (), object())
    with pytest.raises(codec.error, match=r"at \$\.joins\[gather\]\.value"):
        codec.encode_contribution("measure", "gather", (0,), 3)
    with pytest.raises(codec.error, match=r"at \$\.context"):
        codec.encode_context(object())
