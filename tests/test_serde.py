"""floxide.serde: values come back as their declared types; bad payloads name their path."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs
import pytest

from floxide import CheckpointError, FloxideError, Next, Node, SharedState, Transition, Workflow
from floxide import workflow as make_workflow
from floxide.serde import TYPE_TAG, converter, dumps, loads, structure, unstructure


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    value: int
    note: str = ""


@attrs.frozen
class Order:
    id: str
    level: Level
    items: list[Below]
    extra: Above | Below | None = None


@attrs.define
class Ctx:
    name: str
    hits: SharedState[int] = attrs.field(factory=lambda: SharedState(0))
    levels: dict[str, Level] = attrs.field(factory=dict)


def round_trip(value: Any, tp: Any) -> Any:
    return structure(loads(dumps(unstructure(value, tp))), tp)


@pytest.mark.parametrize(
    ("value", "tp"),
    [
        (Below(3, "x"), Below),
        (Below(3), Above | Below),
        (Above(3), Above | Below),
        (None, Above | Below | None),
        (Level.HIGH, Level),
        (Level.LOW, Level | int),
        (7, Level | int),
        ("a", Literal["a", "b"]),
        ([Above(1), Below(2)], Sequence[Above | Below]),
        ((1, 2), tuple[int, ...]),
        ({"a": Level.LOW}, dict[str, Level]),
        (Order("o1", Level.HIGH, [Below(1)], Above(9)), Order),
        (1.5, float),
        (b"\x00raw", bytes | Above | str),
        ("text", bytes | Above | str),
        (None, type(None)),  # `Node[None, None, X]`: typing turns None into NoneType
        ({"any": [1, "json"]}, object),
    ],
)
def test_values_come_back_as_their_declared_types(value: Any, tp: Any) -> None:
    back = round_trip(value, tp)
    assert back == value
    assert type(back) is type(value) or isinstance(value, list)


def test_union_members_are_tagged() -> None:
    assert unstructure(Below(1), Above | Below) == {
        TYPE_TAG: "Below",
        "value": {"value": 1, "note": ""},
    }
    assert unstructure(5, Above | int) == 5  # primitives stay bare


def test_sequence_is_a_list_like_the_executor_passes() -> None:
    assert structure([1, 2], Sequence[int]) == [1, 2]
    assert isinstance(structure([1, 2], Sequence[int]), list)


async def test_shared_state_is_its_value() -> None:
    ctx = Ctx("c", SharedState(4), {"x": Level.HIGH})
    data = unstructure(ctx, Ctx)
    assert data == {"name": "c", "hits": 4, "levels": {"x": 2}}
    back = structure(data, Ctx)
    assert isinstance(back.hits, SharedState) and await back.hits.get() == 4
    assert back.levels == {"x": Level.HIGH}


@pytest.mark.parametrize(
    ("data", "tp", "where"),
    [
        ({"value": "x"}, Above, r"expected int @ \$\.input\.value"),
        ({}, Above, r"required field missing @ \$\.input\.value"),
        ([{"value": 1}, {"value": "no"}], list[Above], r"@ \$\.input\[1\]\.value"),
        ({TYPE_TAG: "Sideways", "value": {}}, Above | Below, r"unknown \$type 'Sideways'"),
        ({TYPE_TAG: "Below", "value": {"value": []}}, Above | Below, r"@ \$\.input\.value"),
        (3, Level, r"3 is not a Level \(one of 1, 2\)\) @ \$\.input"),
        (
            {"id": "o", "level": 1, "items": [{"value": 1}, {"nope": 2}]},
            Order,
            r"required field missing @ \$\.input\.items\[1\]\.value",
        ),
        ("x", Level | int, r"expected one of"),
        (0, type(None), r"expected null, got int\) @ \$\.input"),
    ],
)
def test_payload_that_does_not_fit_names_the_path(data: Any, tp: Any, where: str) -> None:
    with pytest.raises(CheckpointError, match=where):
        structure(data, tp, path="$.input")


def test_other_error_types_for_other_callers() -> None:
    class WireError(FloxideError):
        pass

    with pytest.raises(WireError):
        structure("x", int, path="$", error=WireError)
    with pytest.raises(WireError):
        loads(b"{", error=WireError)


def test_unserializable_and_corrupt() -> None:
    with pytest.raises(CheckpointError, match=r"\$\.context"):
        dumps(unstructure(object(), Any), path="$.context")
    with pytest.raises(CheckpointError, match="the header is corrupt"):
        loads(b"\x00\xff{", what="the header")
    with pytest.raises(CheckpointError, match=r"cannot serialize str value at \$\.x as Above"):
        unstructure("text", Above, path="$.x")


def test_circular_or_too_deep_data_names_the_path() -> None:
    loop: list[Any] = []
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for data in (loop, deep):
        with pytest.raises(CheckpointError, match=r"cannot serialize the value at \$\.x"):
            dumps(data, path="$.x")


def test_dumps_is_compact_json() -> None:
    data = {"a": [1, 2.5, None, True], "é": "\u2028\"x\"", "n": {"k": []}}
    assert dumps(data) == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def test_user_hooks() -> None:
    @attrs.frozen
    class Money:
        amount: Decimal

    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda s, _: Decimal(s))
    assert unstructure(Money(Decimal("1.10")), Money) == {"amount": "1.10"}
    assert round_trip(Money(Decimal("1.10")), Money) == Money(Decimal("1.10"))


# ------------------------------------------------------------------------ declared types
@attrs.frozen
class Route(Node[Ctx, int, "Above | Below"]):
    async def process(self, ctx: Ctx, input: int) -> Transition[Above | Below]:
        return Next(Above(input) if input > 0 else Below(input))


@attrs.frozen
class Take(Node[Ctx, "Above | Below", str]):
    async def process(self, ctx: Ctx, input: Above | Below) -> Transition[str]:
        return Next(str(input.value))


@make_workflow
class Typed(Workflow[Ctx, int, str]):
    route: Route
    take: Take
    start = "route"
    edges = {"route": {Above: ["take"], Below: ["take"]}, "take": []}


def test_node_types_resolve_forward_references() -> None:
    graph = Typed(route=Route(), take=Take()).graph
    ctx, in_, out = graph.node_types("route")
    assert (ctx, in_, out) == (Ctx, int, Above | Below)
    assert round_trip(Below(1, "n"), out) == Below(1, "n")
    assert graph.node_types("take")[1] == Above | Below


def test_values_declared_object_are_written_as_their_class_and_read_as_data() -> None:
    """`object` accepts anything: written by the value's run-time class (as with `Any`),
    read back as the JSON data it was written as."""
    assert unstructure(Below(1, "n"), object) == {"value": 1, "note": "n"}
    assert unstructure([Level.HIGH], object) == [2]
    assert structure({"value": 1}, object) == {"value": 1}
    with pytest.raises(CheckpointError, match=r"cannot serialize the value at \$\.x"):
        dumps(unstructure(object(), object), path="$.x")
