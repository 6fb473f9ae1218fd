# ruff: noqa: E501
"""joins: the join's In is Sequence[X], X covering what reaches it (floxide-edge/-graph)."""

from __future__ import annotations

from collections.abc import Sequence

from floxide import Node, SplitNode, Workflow, workflow


class Ctx: ...


class Split(Node[Ctx, str, str]): ...


class Length(Node[Ctx, str, int]): ...


class Upper(Node[Ctx, str, str]): ...


class Total(Node[Ctx, Sequence[int], int]): ...


class Collect(Node[Ctx, Sequence[int | str], int]): ...


class CollectList(Node[Ctx, list[int], int]): ...


class Words(Node[Ctx, Sequence[str], int]): ...


@workflow
class GoodJoin(Workflow[Ctx, str, int]):
    split: Split
    length: Length
    upper: Upper
    collect: Collect

    start = "split"
    edges = {
        "split": ["length", "upper"],
        "length": ["collect"],
        "upper": ["collect"],
        "collect": [],
    }
    joins = {"collect": "split"}


@workflow
class GoodSplitJoin(Workflow[Ctx, str, int]):
    split: SplitNode[str, str]
    words: Words

    start = "split"
    edges = {"split": ["words"], "words": []}
    joins = {"words": "split"}


@workflow
class BadJoinType(Workflow[Ctx, str, int]):
    split: Split
    length: Length
    upper: Upper
    total: Total

    start = "split"
    edges = {
        "split": ["length", "upper"],
        "length": ["total"],
        "upper": ["total"],
        "total": [],
    }
    joins = {"total": "split"}  # E: [floxide-edge] join "total" of workflow "BadJoinType" accepts "Sequence[int]", but receives a Sequence of "int | str"


@workflow
class BadJoinList(Workflow[Ctx, str, int]):
    split: Split
    length: Length
    total: CollectList

    start = "split"
    edges = {"split": ["length"], "length": ["total"], "total": []}
    joins = {"total": "split"}  # E: [floxide-edge] join "total" of workflow "BadJoinList" accepts "list[int]"


@workflow
class BadJoinNames(Workflow[Ctx, str, int]):
    split: Split
    length: Length
    total: Total
    other: Total

    start = "split"
    edges = {"split": ["length"], "length": ["total", "other"], "total": [], "other": []}  # E: [floxide-edge] "total" accepts "Sequence[int]", a Sequence of what "length" outputs ("int"): a joins entry is missing
    joins = {
        "totl": "split",  # E: [floxide-graph] joins of workflow "BadJoinNames" names "totl" as a join
        "total": "splt",  # E: [floxide-graph] join "total" of workflow "BadJoinNames" collects the fan-out of "splt", which is not a node
        "other": "other",  # E: [floxide-graph] join "other" of workflow "BadJoinNames" cannot collect its own fan-out
    }


@workflow
class BadJoinNotReached(Workflow[Ctx, str, int | str]):
    split: Split
    length: Length
    upper: Upper
    total: Total

    start = "split"
    edges = {"split": ["length", "upper"], "length": ["total"], "upper": [], "total": []}
    joins = {"total": "upper"}  # E: [floxide-graph] join "total" of workflow "BadJoinNotReached" collects the fan-out of "upper", but "upper" does not reach "total"


@workflow
class BadJoinsShape(Workflow[Ctx, str, int]):
    split: Split
    length: Length

    start = "split"
    edges = {"split": ["length"], "length": []}
    joins = [("length", "split")]  # E: [floxide-graph] joins of workflow "BadJoinsShape" must map each join node to the node whose fan-out it collects ({"<join>": "<source>"}), got [('length', 'split')] # E: [assignment]


@workflow
class BadJoinsEntry(Workflow[Ctx, str, int]):
    split: Split
    length: Length

    start = "split"
    edges = {"split": ["length"], "length": []}
    joins = {"length": ["split"]}  # E: [floxide-graph] joins of workflow "BadJoinsEntry" must map each join node to the node whose fan-out it collects ({"<join>": "<source>"}), got {'length': ['split']} # E: [dict-item]


@workflow
class BadJoinMissing(Workflow[Ctx, str, int]):
    split: Split
    length: Length
    total: Total

    start = "split"
    edges = {
        "split": ["length"],
        "length": ["total"],  # E: [floxide-edge] edge "length" -> "total" of workflow "BadJoinMissing": "total" accepts "Sequence[int]", a Sequence of what "length" outputs ("int"): a joins entry is missing
        "total": [],
    }
