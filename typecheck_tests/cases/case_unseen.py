# ruff: noqa: E501
"""Values mypy cannot see are reported as notes, never guessed; Final constants are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from floxide import Node, Workflow, workflow


class Ctx: ...


class A(Node[Ctx, int, str]): ...


class B(Node[Ctx, str, str]): ...


START: Final = "a"
TARGETS: Final = ["b"]
EDGES: Mapping[str, Sequence[str]] = {"a": ["b"], "b": []}


def successors() -> list[str]:
    return ["b"]


@workflow
class GoodFinalNames(Workflow[Ctx, int, str]):
    a: A
    b: B

    start = START
    edges = {START: ["b"], "b": []}


@workflow
class NoteEdgesNotLiteral(Workflow[Ctx, int, str]):
    a: A
    b: B

    start = "a"
    edges = EDGES  # N: mypy cannot check edges of workflow "NoteEdgesNotLiteral" (not a literal); it is validated when the class is created


@workflow
class NoteEntryNotLiteral(Workflow[Ctx, int, str]):
    a: A
    b: B

    start = "a"
    edges = {
        "a": successors(),  # N: mypy cannot check edges["a"] of workflow "NoteEntryNotLiteral"
        "b": [],
    }


@workflow
class BadStillChecked(Workflow[Ctx, int, str]):
    a: A
    b: B

    start = "a"
    edges = {
        "a": TARGETS,  # N: mypy cannot check edges["a"]
        "b": ["a"],  # E: [floxide-edge] edge "b" -> "a" of workflow "BadStillChecked"
    }
