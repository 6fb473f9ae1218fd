# ruff: noqa: E501
"""Holes closed: Final names, Flag routes, Protocol keys, union and Annotated node fields."""

from __future__ import annotations

import enum
from typing import Annotated, Final, Protocol, TypeVar, runtime_checkable

from floxide import Node, Workflow, workflow


class Perm(enum.Flag):
    R = 1
    W = 2


class Access(Node[None, int, Perm]): ...


class Take(Node[None, Perm, str]): ...


class Show(Node[None, int, str]): ...


class Step(Node[None, int, int]): ...


class Done(Node[None, str, str]): ...


FETCH: Final[str] = "fetch"
DONE: Final[str] = "done"


@workflow
class GoodFinalNames(Workflow[None, int, str]):
    fetch: Show
    done: Done

    start = FETCH
    edges = {FETCH: [DONE], DONE: []}


@workflow
class BadFinalNames(Workflow[None, int, str]):
    fetch: Step
    done: Done

    start = FETCH
    edges = {FETCH: [DONE], DONE: []}  # E: [floxide-edge] edge "fetch" -> "done" of workflow "BadFinalNames": "fetch" outputs "int" but "done" accepts "str"


@workflow
class GoodFlagByClass(Workflow[None, int, str]):
    access: Access
    take: Take

    start = "access"
    edges = {"access": {Perm: ["take"]}, "take": []}


@workflow
class BadFlagByMembers(Workflow[None, int, str]):
    access: Access
    take: Take

    start = "access"
    edges = {
        "access": {Perm.R: ["take"], Perm.W: ["take"]},  # E: [floxide-route] routing table of "access" in workflow "BadFlagByMembers" is not exhaustive: unhandled "Perm"
        "take": [],
    }


@runtime_checkable
class Named(Protocol):
    name: str


class Plain(Protocol):
    name: str


class Thing:
    name = "thing"


class Emit(Node[None, int, Thing]): ...


class Use(Node[None, Named, str]): ...


@workflow
class GoodRuntimeProtocolKey(Workflow[None, int, str]):
    emit: Emit
    use: Use

    start = "emit"
    edges = {"emit": {Named: ["use"]}, "use": []}


@workflow  # a definition error at class creation too
class BadPlainProtocolKey(Workflow[None, int, str]):
    emit: Emit
    use: Use

    start = "emit"
    edges = {"emit": {Plain: ["use"]}, "use": []}  # E: [floxide-route] route key Plain of "emit" in workflow "BadPlainProtocolKey" is a Protocol that is not @runtime_checkable


@workflow
class GoodUnionAnnotatedFields(Workflow[None, int, str]):
    first: Annotated[Step, "the first step"]
    either: Show | Show

    start = "first"
    edges = {"first": ["either"], "either": []}


@workflow
class BadAnnotatedField(Workflow[None, int, str]):
    first: Annotated[Show, "shows"]
    then: Step

    start = "first"
    edges = {"first": ["then"], "then": []}  # E: [floxide-edge] edge "first" -> "then" of workflow "BadAnnotatedField": "first" outputs "str" but "then" accepts "int" # E: [floxide-edge] terminal node "then" of workflow "BadAnnotatedField" outputs "int", but the workflow output is "str"


class Stock(Node[None, str, str]): ...


@workflow
class BadTypoName(Workflow[None, int, str]):
    fetch: Show
    stock: Stock

    start = "fetch"
    edges = {
        "fetch": ["stok"],  # E: [floxide-graph] edge "fetch" -> "stok" of workflow "BadTypoName": "stok" is not a node (did you mean "stock"?)
        "stock": [],
    }


T = TypeVar("T")


def register(cls: type[T]) -> type[T]:
    return cls


@workflow
@register
class GoodStackedDecorators(Workflow[None, int, str]):
    fetch: Show
    done: Done

    start = "fetch"
    edges = {"fetch": ["done"], "done": []}


@workflow
@register
class BadStackedDecorators(Workflow[None, int, str]):
    fetch: Step
    done: Done

    start = "fetch"
    edges = {"fetch": ["done"], "done": []}  # E: [floxide-edge] edge "fetch" -> "done" of workflow "BadStackedDecorators": "fetch" outputs "int" but "done" accepts "str"


class Dog: ...


class Cat: ...


class Pets(Node[None, int, Dog | Cat]): ...


class Walk(Node[None, Dog | Cat, str]): ...


@workflow
class GoodOneRowPerClass(Workflow[None, int, str]):
    pets: Pets
    walk: Walk

    start = "pets"
    edges = {"pets": {Dog: ["walk"], Cat: ["walk"]}, "walk": []}


@workflow
class BadUnionRouteKey(Workflow[None, int, str]):
    pets: Pets
    walk: Walk

    start = "pets"
    edges = {"pets": {Dog | Cat: ["walk"]}, "walk": []}  # E: [floxide-route] route key Dog | Cat of "pets" in workflow "BadUnionRouteKey" must be a class
