"""`floxide._subtype`: the run-time subtyping `floxide check` judges types with."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, NewType, Optional, Protocol, TypeVar

import pytest

from floxide._subtype import is_subtype, make_union, show, variants


class Animal: ...


class Dog(Animal): ...


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Perm(enum.Flag):
    R = 1
    W = 2


class Named(Protocol):
    name: str


class HasName:
    name = "x"


UserId = NewType("UserId", int)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Box(Generic[T]): ...


class Out(Generic[T_co]): ...


Alias = list[int]


@pytest.mark.parametrize(
    ("left", "right", "verdict"),
    [
        (Dog, Animal, True),
        (Animal, Dog, False),
        (int, float, True),  # promotion, as mypy
        (float, int, False),
        (bool, int, True),
        (None, Optional[int], True),  # noqa: UP045
        (int | None, int, False),
        (Dog | Animal, Animal, True),
        (Literal["a"], str, True),
        (str, Literal["a"], False),
        (Literal["a"], Literal["a", "b"], True),
        (Literal[True], Literal[1], False),
        (bool, Literal[True, False], True),
        (Color, Literal[Color.RED, Color.BLUE], True),
        (Color, Literal[Color.RED], False),
        (Literal[Color.RED], Color, True),
        (list[int], Sequence[float], True),
        (list[int], list[float], False),
        (Sequence[int], list[int], False),
        (dict[str, int], Mapping[str, float], True),
        (dict[str, int], dict[str, float], False),
        (tuple[int, int], Sequence[int], True),
        (tuple[int, str], tuple[int, ...], False),
        (tuple[int, ...], tuple[int, int], False),
        (Box[int], Box[float], False),
        (Out[int], Out[float], True),
        (HasName, Named, True),
        (int, Named, False),
        (UserId, int, True),
        (int, UserId, False),
        (Alias, Sequence[int], True),
        (Any, int, True),
        (int, Any, True),
        (list, list[int], True),
        (T, int, None),  # a type variable: not judged
        ("Unresolved", int, None),
    ],
)
def test_is_subtype(left: Any, right: Any, verdict: bool | None) -> None:
    assert is_subtype(left, right) is verdict


def test_variants_expand_enums_and_bool_but_not_flags() -> None:
    assert variants(Color | None) == [Literal[Color.RED], Literal[Color.BLUE], type(None)]
    assert variants(bool) == [Literal[True], Literal[False]]
    assert variants(Perm) == [Perm]


def test_make_union_folds_complete_literal_sets() -> None:
    assert make_union([Literal[Color.RED], Literal[Color.BLUE]]) is Color
    assert make_union([Literal[True], Literal[False]]) is bool
    assert make_union([Dog, Animal]) is Animal


@pytest.mark.parametrize(
    ("tp", "shown"),
    [
        (int | None, "int | None"),
        (Literal["a", "b"] | int, "Literal['a', 'b'] | int"),
        (int | Literal["skip"], "int | Literal['skip']"),
        (Sequence[int], "Sequence[int]"),
        (tuple[int, ...], "tuple[int, ...]"),
        (Literal[Color.RED], "Literal[Color.RED]"),
        (UserId, "UserId"),
        (Iterable[Dog], "Iterable[Dog]"),
    ],
)
def test_show_writes_types_as_mypy_does(tp: Any, shown: str) -> None:
    assert show(tp) == shown
