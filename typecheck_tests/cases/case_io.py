# ruff: noqa: E501
"""Workflow In/Out and Ctx (floxide-edge): start input, terminal outputs, node contexts."""

from __future__ import annotations

from floxide import Node, Workflow, workflow


class Ctx: ...


class SubCtx(Ctx): ...


class OtherCtx: ...


class Parse(Node[Ctx, str, int]): ...


class Render(Node[Ctx, int, str]): ...


class AnyCtx(Node[object, int, str]): ...


class NeedsSub(Node[SubCtx, int, str]): ...


class Other(Node[OtherCtx, int, str]): ...


class Accepts(Node[Ctx, object, bool]): ...


@workflow
class GoodIO(Workflow[SubCtx, str, str | bool]):
    parse: Parse  # a node needing Ctx accepts the workflow's SubCtx
    render: Render
    any_ctx: AnyCtx
    check: Accepts

    start = "parse"
    edges = {
        "parse": ["render", "any_ctx", "check"],
        "render": [],
        "any_ctx": [],
        "check": [],  # bool is part of the workflow's Out
    }


@workflow
class BadStart(Workflow[Ctx, bytes, int]):
    parse: Parse

    start = "parse"  # E: [floxide-edge] start node "parse" of workflow "BadStart" accepts "str", but
    edges = {"parse": []}


@workflow
class BadTerminal(Workflow[Ctx, str, str]):
    parse: Parse
    render: Render
    check: Accepts

    start = "parse"
    edges = {
        "parse": ["render", "check"],
        "render": [],
        "check": [],  # E: [floxide-edge] terminal node "check" of workflow "BadTerminal" outputs "bool"
    }


@workflow
class BadContext(Workflow[Ctx, str, str]):
    parse: Parse
    needs_sub: NeedsSub  # E: [floxide-edge] node "needs_sub" needs context "SubCtx", but workflow
    other: Other  # E: [floxide-edge] node "other" needs context "OtherCtx", but workflow "BadContext"

    start = "parse"
    edges = {"parse": ["needs_sub", "other"], "needs_sub": [], "other": []}


def widen(wf: GoodIO) -> Workflow[SubCtx, str, object]:
    return wf  # E: [return-value] Incompatible return value type


def keep(wf: GoodIO) -> Workflow[SubCtx, str, str | bool]:
    return wf  # the exact type arguments: Workflow's type variables are invariant
