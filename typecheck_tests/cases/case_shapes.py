# ruff: noqa: E501
"""Other shapes: inheritance, union and Any fields, generic workflows, wrong literals."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from shapes_base import Imported, ImportedFallbacks, Step

from floxide import Node, Workflow, workflow

T = TypeVar("T")


class Id(Node[None, T, T], Generic[T]): ...


class Show(Node[None, int, str]): ...


class Parse(Node[None, str, int]): ...


@workflow
class GoodGeneric(Workflow[None, T, T], Generic[T]):
    same: Id[T]

    start = "same"
    edges = {"same": []}


@workflow
class GoodGenericRouted(Workflow[None, T, str | int], Generic[T]):
    same: Id[T]
    show: Show
    parse: Parse

    start = "same"
    edges = {"same": {int: ["show"], str: ["parse"]}, "show": [], "parse": []}


@workflow
class GoodBase(Workflow[None, int, int]):
    step: Step

    start = "step"
    edges = {"step": []}


@workflow
class BadChild(GoodBase):  # E: [floxide-graph] node "show" of workflow "BadChild" has no entry in edges
    show: Show  # E: [floxide-graph] node "show" of workflow "BadChild" is unreachable


@workflow
class NoteImportedChild(Imported):  # N: mypy cannot check start of workflow "NoteImportedChild" (inherited from "Imported" of another module) # N: mypy cannot check edges of workflow "NoteImportedChild"
    pass


@workflow
class NoteImportedFallbacks(ImportedFallbacks):  # N: mypy cannot check on_failure of workflow "NoteImportedFallbacks" (inherited from "ImportedFallbacks" of another module)
    start = "step"  # "rescue" is reached through the inherited on_failure: not unreachable
    edges = {"step": [], "rescue": []}


@workflow
class GoodUnionAndAny(Workflow[None, int, int]):
    either: Id[int] | Step  # In int, Out int
    unknown: Any  # unchecked  # N: node "unknown" of workflow "GoodUnionAndAny" is typed "Any": edges around it are not type-checked

    start = "either"
    edges = {"either": ["unknown"], "unknown": []}


@workflow
class BadUnionField(Workflow[None, int, int]):
    either: Show | Step

    start = "either"
    edges = {"either": []}  # E: [floxide-edge] terminal node "either" of workflow "BadUnionField" outputs "str | int"


@workflow
class BadLiterals(Workflow[None, int, int]):
    step: Step

    start = 1  # E: [floxide-graph] must declare start = "<node name>" # E: [assignment]
    edges = {
        "step": ["step", 2],  # E: [floxide-graph] edges["step"] of workflow "BadLiterals" must be a list of node names or a routing table {variant: [names]}, got ['step', 2] # E: [list-item]
        3: [],  # E: [floxide-graph] edges of workflow "BadLiterals" has an entry for "3", which is not a node # E: [dict-item]
    }
    on_failure = ["step"]  # E: [floxide-graph] on_failure["*"] of workflow "BadLiterals" must be a list of node names # E: [assignment]


@workflow
class BadClassKeys(Workflow[None, int, int]):
    step: Step
    show: Show

    start = "step"
    edges = {
        "step": {
            int: ["step"],
            list[int]: ["show"],  # E: [floxide-route] route key list[int] of "step" in workflow "BadClassKeys" must be a class
            type(None): ["show"],  # E: [floxide-route] route NoneType of "step" in workflow "BadClassKeys" can never match
        },
        "show": [],  # E: [floxide-edge] terminal node "show" of workflow "BadClassKeys" outputs "str"
    }
