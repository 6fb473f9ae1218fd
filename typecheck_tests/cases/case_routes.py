# ruff: noqa: E501
"""Routing tables keyed by class, enum member or literal (floxide-route, floxide-edge)."""

from __future__ import annotations

import enum
from typing import Any, Final, Literal

from floxide import Node, Workflow, workflow


class Ctx: ...


class Above:
    value: int


class Below:
    message: str


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Threshold(Node[Ctx, int, Above | Below]): ...


class Big(Node[Ctx, Above, str]): ...


class Small(Node[Ctx, Below, str]): ...


class Paint(Node[Ctx, int, Color]): ...


class Warm(Node[Ctx, Literal[Color.RED], str]): ...


class Cool(Node[Ctx, Literal[Color.GREEN, Color.BLUE], str]): ...


class Verdict(Node[Ctx, int, Literal["ok", "retry", "skip"]]): ...


class OnlyOk(Node[Ctx, Literal["ok"], str]): ...


class Text(Node[Ctx, str, str]): ...


class Flag(Node[Ctx, int, bool]): ...


class Maybe(Node[Ctx, int, int | None]): ...


class IntIn(Node[Ctx, int, str]): ...


class NoneIn(Node[Ctx, None, str]): ...


class Untyped(Node[Ctx, int, Any]): ...


@workflow
class GoodClassRoutes(Workflow[Ctx, int, str]):
    check: Threshold
    big: Big
    small: Small

    start = "check"
    edges = {"check": {Above: ["big"], Below: ["small"]}, "big": [], "small": []}


@workflow
class GoodEnumRoutes(Workflow[Ctx, int, str]):
    paint: Paint
    warm: Warm
    cool: Cool

    start = "paint"
    edges = {
        "paint": {Color.RED: ["warm"], Color.GREEN: ["cool"], Color.BLUE: ["cool"]},
        "warm": [],
        "cool": [],
    }


OK: Final = "ok"


@workflow
class GoodLiteralRoutes(Workflow[Ctx, int, str | Literal["retry", "skip"]]):
    verdict: Verdict
    ok: OnlyOk
    text: Text

    start = "verdict"
    edges = {
        "verdict": {OK: ["ok"], "retry": ["text"], "skip": []},  # [] ends: "skip" is an output
        "ok": [],
        "text": [],
    }


@workflow
class GoodBoolNoneRoutes(Workflow[Ctx, int, str]):
    flag: Flag
    maybe: Maybe
    num: IntIn
    nothing: NoneIn

    start = "flag"
    edges = {
        "flag": {True: ["maybe"], False: ["num"]},
        "maybe": {None: ["nothing"], int: ["num"]},
        "num": [],
        "nothing": [],
    }


@workflow
class GoodAnyOutput(Workflow[Ctx, int, str]):
    guess: Untyped  # N: node "guess" of workflow "GoodAnyOutput" is typed "Node[Ctx, int, Any]": edges around it are not type-checked
    num: IntIn

    start = "guess"
    edges = {"guess": {int: ["num"]}, "num": []}  # Any output: routes are not checked


@workflow
class BadVariantTarget(Workflow[Ctx, int, str]):
    check: Threshold
    big: Big  # E: [floxide-graph] node "big" of workflow "BadVariantTarget" is unreachable
    small: Small

    start = "check"
    edges = {
        "check": {
            Above: ["small"],  # E: [floxide-edge] route Above of "check" -> "small"
            Below: ["small"],
        },
        "big": [],
        "small": [],
    }


@workflow
class BadNotExhaustive(Workflow[Ctx, int, str]):
    check: Threshold
    big: Big
    paint: Paint
    warm: Warm

    start = "check"
    edges = {
        "check": {Above: ["big"]},  # E: [floxide-route] "check" in workflow "BadNotExhaustive"
        "big": ["paint"],  # E: [floxide-edge] "big" outputs "str" but "paint" accepts "int"
        "paint": {Color.RED: ["warm"]},  # E: [floxide-route] "Literal[Color.GREEN]", "Literal[C
        "warm": [],
    }


@workflow
class BadNeverMatches(Workflow[Ctx, int, str]):
    check: Threshold
    verdict: Verdict
    big: Big
    small: Small
    ok: OnlyOk

    start = "check"
    edges = {
        "check": {
            Above: ["big"],
            Below: ["small"],
            Color: ["big"],  # E: [floxide-route] route Color of "check" in workflow "BadNeverMatches"
        },
        "big": ["verdict"],  # E: [floxide-edge]
        "small": [],
        "verdict": {  # E: [floxide-route] not exhaustive: unhandled "Literal['retry']", "Lit
            "ok": ["ok"],
            "retyr": [],  # E: [floxide-route] route 'retyr' of "verdict" in workflow "BadNeverMat
        },
        "ok": [],
    }


class Animal: ...


class Dog(Animal): ...


class Pets(Node[Ctx, int, Animal]): ...


class Any_(Node[Ctx, Animal, str]): ...


class DogOnly(Node[Ctx, Dog, str]): ...


@workflow
class GoodSubclassRow(Workflow[Ctx, int, str]):
    pets: Pets
    dog: DogOnly
    other: Any_

    start = "pets"
    edges = {"pets": {Dog: ["dog"], Animal: ["other"]}, "dog": [], "other": []}


@workflow
class BadShadowedRow(Workflow[Ctx, int, str]):
    pets: Pets
    dog: DogOnly
    other: Any_

    start = "pets"
    edges = {
        "pets": {
            Animal: ["other"],
            Dog: ["dog"],  # E: [floxide-route] route Dog of "pets" in workflow "BadShadowedRow"
        },
        "dog": [],
        "other": [],
    }


@workflow
class BadRouteKey(Workflow[Ctx, int, str]):
    check: Threshold
    big: Big
    small: Small

    start = "check"
    edges = {
        "check": {
            Above: ["big"],
            Below: ["small"],
            1.5: ["small"],  # E: [floxide-route] route key 1.5 of "check" in workflow "BadRouteKey"
        },
        "big": [],
        "small": [],
    }


class OkNum(Node[Ctx, Literal["ok"], int]): ...


@workflow
class BadRoutedTerminal(Workflow[Ctx, int, int | Literal["skip"]]):
    verdict: Verdict
    ok: OkNum

    start = "verdict"
    edges = {
        "verdict": {
            "ok": ["ok"],
            "retry": [],  # E: [floxide-edge] "verdict" of workflow "BadRoutedTerminal" outputs
            "skip": [],  # a terminal for "skip", which the workflow's Out accepts
        },
        "ok": [],
    }
