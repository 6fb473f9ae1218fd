# ruff: noqa: E501
"""Structure rules (floxide-graph): names, entries, reachability, reserved fields."""

from __future__ import annotations

from floxide import Node, Workflow, workflow


class Ctx: ...


class A(Node[Ctx, int, int]): ...


class B(Node[Ctx, int, int]): ...


@workflow
class GoodStructure(Workflow[Ctx, int, int]):
    a: A
    b: B
    c: B

    start = "a"
    edges = {"a": ["b", "c"], "b": ["c"], "c": []}


@workflow
class BadNoNodes(Workflow[Ctx, int, int]):  # E: [floxide-graph] declares no nodes
    start = "a"  # E: [floxide-graph] start = "a" is not a node of workflow "BadNoNodes"
    edges = {}


@workflow
class BadNotANode(Workflow[Ctx, int, int]):
    a: A
    limit: int  # E: [floxide-graph] field "limit" of workflow "BadNotANode" is not a Node (annota

    start = "a"
    edges = {"a": ["limit"], "limit": []}


@workflow
class BadNoStart(Workflow[Ctx, int, int]):  # E: [floxide-graph] must declare start = "<node name>"
    a: A

    edges = {"a": []}


@workflow
class BadNoEdges(Workflow[Ctx, int, int]):  # E: [floxide-graph] must declare edges = {"<node>": # E: [floxide-graph] node "a" of workflow "BadNoEdges" has no entry in edges
    a: A

    start = "a"


@workflow
class BadReserved(Workflow[Ctx, int, int]):
    a: A
    joins: B  # E: [floxide-graph] node field "joins" of workflow "BadReserved" uses a reserved # E: [misc] # E: [assignment]

    start = "a"
    edges = {"a": []}


@workflow
class BadNames(Workflow[Ctx, int, int]):
    a: A
    b: B

    start = "a"
    edges = {
        "a": ["b", "c"],  # E: [floxide-graph] edge "a" -> "c" of workflow "BadNames": "c" is not
        "b": [],
        "z": [],  # E: [floxide-graph] edges of workflow "BadNames" has an entry for "z", which is
    }


@workflow
class BadMissingEntry(Workflow[Ctx, int, int]):
    a: A
    b: B
    c: B

    start = "a"
    edges = {  # E: [floxide-graph] node "c" of workflow "BadMissingEntry" has no entry in edges
        "a": ["b", "c"],
        "b": [],
    }


@workflow
class BadSuccessors(Workflow[Ctx, int, int]):
    a: A
    b: B

    start = "b"
    edges = {
        "a": "b",  # E: [floxide-graph] edges["a"] of workflow "BadSuccessors" must be a list of
        "b": ["a"],
    }


@workflow
class BadUnreachable(Workflow[Ctx, int, int]):
    a: A
    b: B
    island: B  # E: [floxide-graph] node "island" of workflow "BadUnreachable" is unreachable

    start = "a"
    edges = {"a": ["b"], "b": [], "island": ["b"]}


@workflow
class GoodLoop(Workflow[Ctx, int, int]):
    a: A
    b: B

    start = "a"
    edges = {"a": ["b"], "b": ["a"]}
