"""Edges: every fan-out target accepts its source's output (floxide-edge)."""

from __future__ import annotations

from floxide import Node, Workflow, workflow


class Ctx: ...


class Fetch(Node[Ctx, str, bytes]): ...


class Decode(Node[Ctx, bytes, str]): ...


class Parse(Node[Ctx, str, dict[str, int]]): ...


class Count(Node[Ctx, str, int]): ...


class Log(Node[Ctx, object, None]): ...


@workflow
class GoodFanOut(Workflow[Ctx, str, None]):
    fetch: Fetch
    decode: Decode
    log: Log  # accepts anything: In is contravariant
    parse: Parse
    count: Count

    start = "fetch"
    edges = {
        "fetch": ["decode", "log"],
        "decode": ["parse", "count"],
        "log": [],
        "parse": ["log"],
        "count": ["log"],
    }


@workflow
class BadEdge(Workflow[Ctx, str, None]):
    fetch: Fetch
    parse: Parse
    log: Log

    start = "fetch"
    edges = {
        "fetch": ["parse"],  # E: [floxide-edge] "fetch" -> "parse" of workflow "BadEdge"
        "parse": ["log"],
        "log": [],
    }


@workflow
class BadFanOutTarget(Workflow[Ctx, str, None]):
    fetch: Fetch
    log: Log
    decode: Decode
    parse: Parse
    count: Count

    start = "fetch"
    edges = {
        "fetch": ["log", "decode"],
        "decode": [
            "parse",
            "count",
            "decode",  # E: [floxide-edge] "decode" outputs "str" but "decode" accepts "bytes"
        ],
        "parse": ["log"],
        "count": ["decode"],  # E: [floxide-edge] "count" outputs "int" but "decode" accepts "bytes"
        "log": [],
    }
