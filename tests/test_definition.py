"""Workflow definition errors: raised at class creation, naming workflow, node and edge."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import pytest

from floxide import Next, Node, Transition, Workflow, WorkflowDefinitionError, workflow


@attrs.frozen
class Inc(Node[None, int, int]):
    async def process(self, ctx: None, input: int) -> Transition[int]:
        return Next(input + 1)


@attrs.frozen
class Total(Node[None, Sequence[int], int]):
    async def process(self, ctx: None, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


class Color(enum.Enum):
    RED = 1
    BLUE = 2


def make(fields: dict[str, Any], **declared: Any) -> type[Workflow[None, int, int]]:
    """Build and decorate a workflow class from field annotations and class attributes."""
    ns: dict[str, Any] = {"__annotations__": dict(fields), "__module__": __name__}
    ns.update(declared)
    return workflow(type("Flow", (Workflow,), ns))


def problems(fields: dict[str, Any], **declared: Any) -> tuple[str, ...]:
    with pytest.raises(WorkflowDefinitionError) as info:
        make(fields, **declared)
    assert info.value.workflow == "Flow"
    assert "workflow 'Flow' is invalid" in str(info.value)
    return info.value.problems


def test_valid_workflow_builds_a_graph() -> None:
    cls = make({"a": Inc, "b": Inc}, start="a", edges={"a": ["b"], "b": []})
    graph = cls.__floxide_graph__
    assert graph.node_names == ("a", "b")
    assert graph.start == "a"
    assert graph.specs["a"].successors == ("b",)
    assert graph.is_terminal("b")


def test_unknown_start() -> None:
    assert problems({"a": Inc}, start="x", edges={"a": []}) == (
        'start = "x" is not a node of workflow "Flow"',
    )


def test_missing_start() -> None:
    assert 'workflow "Flow" must declare start = "<node name>"' in problems(
        {"a": Inc}, edges={"a": []}
    )


def test_missing_edges() -> None:
    assert problems({"a": Inc}, start="a") == (
        'workflow "Flow" must declare edges = {"<node>": [...], ...}',
        'node "a" of workflow "Flow" has no entry in edges (use "a": [] for a terminal node)',
    )


def test_no_nodes() -> None:
    assert problems({}, start="a", edges={}) == (
        'workflow "Flow" declares no nodes',
        'start = "a" is not a node of workflow "Flow"',
    )


def test_unknown_edge_target_and_source() -> None:
    found = problems({"a": Inc}, start="a", edges={"a": ["ghost"], "nobody": []})
    assert 'edge "a" -> "ghost" of workflow "Flow": "ghost" is not a node' in found
    assert 'edges of workflow "Flow" has an entry for "nobody", which is not a node' in found


def test_missing_entry() -> None:
    found = problems({"a": Inc, "b": Inc}, start="a", edges={"a": ["b"]})
    assert found == (
        'node "b" of workflow "Flow" has no entry in edges (use "b": [] for a terminal node)',
    )


def test_bad_successors_value() -> None:
    found = problems({"a": Inc}, start="a", edges={"a": 3})
    assert found == (
        'edges["a"] of workflow "Flow" must be a list of node names or a routing table '
        "{variant: [names]}, got 3",
    )


def test_bad_route_key() -> None:
    found = problems({"a": Inc, "b": Inc}, start="a", edges={"a": {1.5: ["b"]}, "b": []})
    assert found == (
        'route key 1.5 of "a" in workflow "Flow" must be a class, an enum member or a '
        "literal (str, int, bool, bytes, None)",
    )


def test_route_keys_class_enum_literal_are_accepted() -> None:
    cls = make(
        {"a": Inc, "b": Inc, "c": Inc, "d": Inc},
        start="a",
        edges={"a": {int: ["b"], Color.RED: ["c"], "x": ["d"]}, "b": [], "c": [], "d": []},
    )
    assert len(cls.__floxide_graph__.specs["a"].routes) == 3


def test_unreachable_node() -> None:
    found = problems({"a": Inc, "b": Inc}, start="a", edges={"a": [], "b": []})
    assert found == ('node "b" of workflow "Flow" is unreachable from start "a"',)


def test_fallback_counts_for_reachability() -> None:
    cls = make(
        {"a": Inc, "rescue": Inc},
        start="a",
        edges={"a": [], "rescue": []},
        on_failure={"a": ["rescue"]},
    )
    assert cls.__floxide_graph__.specs["a"].fallback == ("rescue",)


def test_unknown_fallback() -> None:
    found = problems(
        {"a": Inc}, start="a", edges={"a": []}, on_failure={"a": ["ghost"], "zed": ["a"]}
    )
    assert 'fallback "a" -> "ghost" of workflow "Flow": "ghost" is not a node' in found
    assert 'on_failure of workflow "Flow" has an entry for "zed", which is not a node' in found


def test_join_whose_source_does_not_reach_it() -> None:
    found = problems(
        {"a": Inc, "b": Inc, "total": Total},
        start="a",
        edges={"a": ["b", "total"], "b": [], "total": []},
        joins={"total": "b"},
    )
    assert found == (
        'join "total" of workflow "Flow" collects the fan-out of "b", but "b" does not reach '
        '"total"',
    )


def test_unknown_join_names() -> None:
    found = problems({"a": Inc}, start="a", edges={"a": []}, joins={"ghost": "a", "a": "nobody"})
    assert 'joins of workflow "Flow" names "ghost" as a join, which is not a node' in found
    assert (
        'join "a" of workflow "Flow" collects the fan-out of "nobody", which is not a node' in found
    )


def test_reserved_name_as_node_field() -> None:
    found = problems({"a": Inc, "edges": Inc}, start="a", edges={"a": []})
    assert found == (
        'node field "edges" of workflow "Flow" uses a reserved name '
        "(start, edges, on_failure and joins are reserved)",
    )


def test_field_that_is_not_a_node() -> None:
    found = problems({"a": Inc, "count": int}, start="a", edges={"a": [], "count": []})
    assert 'field "count" of workflow "Flow" is not a Node (annotated int)' in found


def test_all_problems_reported_at_once() -> None:
    found = problems({"a": Inc, "b": Inc, "c": Inc}, start="a", edges={"a": ["ghost"], "b": []})
    assert found == (
        'edge "a" -> "ghost" of workflow "Flow": "ghost" is not a node',
        'node "c" of workflow "Flow" has no entry in edges (use "c": [] for a terminal node)',
        'node "b" of workflow "Flow" is unreachable from start "a"',
        'node "c" of workflow "Flow" is unreachable from start "a"',
    )


def test_classvar_annotations_are_not_nodes() -> None:
    cls = make({"a": Inc, "limit": ClassVar[int]}, start="a", edges={"a": []}, limit=3)
    assert cls.__floxide_graph__.node_names == ("a",)


def test_decorating_a_non_workflow_is_an_error() -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        workflow(int)  # type: ignore[type-var]
    assert info.value.problems == ("@workflow decorates subclasses of Workflow",)


def test_bad_fallback_value() -> None:
    assert problems(
        {"a": Inc, "b": Inc}, start="a", edges={"a": [], "b": []}, on_failure={"a": "b"}
    ) == (
        'on_failure["a"] of workflow "Flow" must be a list of node names',
        'node "b" of workflow "Flow" is unreachable from start "a"',
    )


def test_join_that_collects_its_own_fan_out() -> None:
    assert problems(
        {"a": Inc, "total": Total},
        start="a",
        edges={"a": ["total"], "total": []},
        joins={"total": "total"},
    ) == ('join "total" of workflow "Flow" cannot collect its own fan-out',)


@pytest.mark.parametrize(
    ("joins", "shown"),
    [
        ([("total", "a")], "[('total', 'a')]"),
        ({"total": ["a"]}, "{'total': ['a']}"),
        ("total", "'total'"),
    ],
)
def test_joins_of_the_wrong_shape(joins: object, shown: str) -> None:
    """Never silently ignored (the join would run once per item instead of once)."""
    assert problems(
        {"a": Inc, "total": Total}, start="a", edges={"a": ["total"], "total": []}, joins=joins
    ) == (
        'joins of workflow "Flow" must map each join node to the node whose fan-out it '
        f'collects ({{"<join>": "<source>"}}), got {shown}',
    )


def test_forward_references_in_node_generics() -> None:
    from tests import forward_refs

    graph = forward_refs.Flow.__floxide_graph__
    _, in_t, out_t = graph.node_types("pick")
    assert in_t is int
    assert out_t == forward_refs.A | forward_refs.B
    assert graph.node_types("eat")[1] == forward_refs.A | forward_refs.B


def test_instance_field_must_be_a_node() -> None:
    cls = make({"a": Inc}, start="a", edges={"a": []})
    with pytest.raises(WorkflowDefinitionError, match='field "a" of workflow "Flow" is not a Node'):
        cls(a=42)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- issue 16
def test_a_protocol_route_key_must_be_runtime_checkable() -> None:
    from typing import Protocol, runtime_checkable

    class Plain(Protocol):
        name: str

    @runtime_checkable
    class Checked(Protocol):
        name: str

    make({"a": Inc, "b": Inc}, start="a", edges={"a": {Checked: ["b"], int: []}, "b": []})
    with pytest.raises(WorkflowDefinitionError) as info:
        make({"a": Inc, "b": Inc}, start="a", edges={"a": {Plain: ["b"], int: []}, "b": []})
    assert info.value.problems == (
        'route key test_a_protocol_route_key_must_be_runtime_checkable.<locals>.Plain of "a" '
        'in workflow "Flow" is a Protocol that is not @runtime_checkable: no output can be '
        "matched against it",
    )


def test_union_and_annotated_node_fields_are_nodes() -> None:
    """What the plugin accepts, the run time accepts: `A | B` of nodes, `Annotated[Node, ...]`."""
    from typing import Annotated

    flow = make(
        {"a": Annotated[Inc, "first"], "b": "Inc | Total", "c": Any},
        start="a",
        edges={"a": ["b"], "b": ["c"], "c": []},
    )
    graph = flow.__floxide_graph__
    assert graph.node_types("a")[1:] == (int, int)
    assert graph.node_types("b")[2] == (int | int)
    with pytest.raises(WorkflowDefinitionError, match="not a Node"):
        make({"a": Inc, "b": "Inc | int"}, start="a", edges={"a": ["b"], "b": []})
    with pytest.raises(WorkflowDefinitionError, match="not a Node"):
        make({"a": Annotated[int, "x"]}, start="a", edges={"a": []})
