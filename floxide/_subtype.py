"""Subtyping between declared types at run time, for `floxide check` (no mypy needed).

The type rules are `floxide._rules`', applied by `floxide._typecheck`; this module is their
second way to evaluate "is A a subtype of B" (the first is mypy's, in the plugin). It judges
the types `typing` can describe: classes, unions and Optional, Literal and enum members,
generics and their origins (with each parameter's variance), tuples, Protocols (by member
names), NewType and aliases. Every answer is three-valued: `True`, `False` only when the
types certainly disagree, `None` when they cannot be judged (the rule is then skipped).
`show` writes a type the way mypy does, so both enforcers print the same message.
"""

from __future__ import annotations

import collections
import collections.abc as abc
import enum
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, ForwardRef, Literal, TypeVar, Union, get_args, get_origin

__all__ = ["Verdict", "is_subtype", "make_union", "sequence_of", "show", "variants"]

Verdict = bool | None
"""True, False (certainly not) or None (cannot tell)."""

_NONE: Any = type(None)
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}
_COVARIANT1 = (
    abc.Iterable, abc.Collection, abc.Container, abc.Reversible, abc.Iterator,
    abc.Sequence, abc.Set, abc.KeysView, abc.ValuesView, abc.Awaitable, frozenset,
)  # fmt: skip
_INVARIANT1 = (list, set, collections.deque, abc.MutableSequence, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping, collections.OrderedDict,
             collections.defaultdict)  # fmt: skip


def _norm(tp: Any) -> Any:
    """Aliases, Annotated and `None` unwrapped to what they stand for."""
    while True:
        if tp is None:
            return _NONE
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif type(tp).__name__ == "TypeAliasType":  # `type X = ...` (3.12+)
            tp = tp.__value__
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_newtype(tp: Any) -> bool:
    return isinstance(tp, typing.NewType)


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False)) and cls is not typing.Protocol


def _all(verdicts: Iterable[Verdict]) -> Verdict:
    out: Verdict = True
    for v in verdicts:
        if v is False:
            return False
        if v is None:
            out = None
    return out


def _any(verdicts: Iterable[Verdict]) -> Verdict:
    out: Verdict = False
    for v in verdicts:
        if v is True:
            return True
        if v is None:
            out = None
    return out


def _unjudgeable(tp: Any) -> bool:
    return isinstance(tp, (TypeVar, ForwardRef, str))


def is_subtype(left: Any, right: Any) -> Verdict:
    """Is every value of `left` a `right`, by the static rules mypy applies?"""
    left, right = _norm(left), _norm(right)
    if right is Any or right is object or left is Any:
        return True
    if _unjudgeable(left) or _unjudgeable(right):
        return None
    if left is right:
        return True
    if _is_union(left):
        return _all(is_subtype(a, right) for a in get_args(left))
    if get_origin(left) is Literal and len(get_args(left)) > 1:
        return _all(is_subtype(Literal[v], right) for v in get_args(left))
    if _is_union(right):
        return _any(is_subtype(left, b) for b in get_args(right))
    if get_origin(left) is Literal:
        (value,) = get_args(left)
        if get_origin(right) is Literal:
            return any(type(value) is type(v) and value == v for v in get_args(right))
        return is_subtype(_NONE if value is None else type(value), right)
    if get_origin(right) is Literal:
        return _covers_literals(left, get_args(right))
    if _is_newtype(right):
        while _is_newtype(left):
            if left is right:
                return True
            left = left.__supertype__
        return False if isinstance(get_origin(left) or left, type) else None
    if _is_newtype(left):
        return is_subtype(left.__supertype__, right)
    return _classes(left, right)


def _covers_literals(left: Any, values: tuple[Any, ...]) -> Verdict:
    """A non-literal type is a subtype of `Literal[values]` only if it has no other value."""
    if left is bool:
        return {True, False} <= {v for v in values if type(v) is bool}
    if isinstance(left, type) and issubclass(left, enum.Enum) and not issubclass(left, enum.Flag):
        return all(m in values for m in left)
    return False if isinstance(get_origin(left) or left, type) else None


def _classes(left: Any, right: Any) -> Verdict:
    lo, la = get_origin(left) or left, get_args(left)
    ro, ra = get_origin(right) or right, get_args(right)
    if not isinstance(lo, type) or not isinstance(ro, type):
        return None  # Callable, TypedDict forms, ...: not judged
    if lo in _PROMOTIONS.get(ro, ()):
        return True
    if ro in lo.__mro__:
        pass
    elif _is_protocol(ro):
        return _has_members(lo, ro)
    else:
        try:
            if not issubclass(lo, ro):
                return False
        except TypeError:
            return None
    if not ra or (ra == ((),) and ro is tuple and la == ((),)):
        return True
    if lo is tuple:
        return _tuple(la, ro, ra)
    if not la:
        return True  # a bare generic: its arguments are Any
    return _arguments(lo, la, ro, ra)


def _has_members(cls: type, proto: type) -> Verdict:
    """Structural: `cls` has every member `proto` declares (signatures are not judged)."""
    attrs = getattr(proto, "__protocol_attrs__", None)
    if attrs is None:
        get = getattr(typing, "_get_protocol_attrs", None)
        if get is None:
            return None
        attrs = get(proto)
    have = set().union(*(vars(c).keys() | getattr(c, "__annotations__", {}).keys()
                         for c in cls.__mro__))  # fmt: skip
    return True if set(attrs) <= have else False


def _tuple(la: tuple[Any, ...], ro: type, ra: tuple[Any, ...]) -> Verdict:
    """`tuple[...]` (fixed or variadic) against a tuple or a one-argument collection."""
    variadic = len(la) == 2 and la[1] is Ellipsis
    items = () if la == ((),) else la[:1] if variadic else la
    if ro is tuple:
        if len(ra) == 2 and ra[1] is Ellipsis:
            return _all(is_subtype(i, ra[0]) for i in items)
        if variadic:
            return None if not ra else False
        want = () if ra == ((),) else ra
        if len(want) != len(items):
            return False
        return _all(is_subtype(i, w) for i, w in zip(items, want, strict=True))
    if len(ra) == 1 and issubclass(ro, _COVARIANT1):
        return _all(is_subtype(i, ra[0]) for i in items)
    return None


def _arguments(lo: type, la: tuple[Any, ...], ro: type, ra: tuple[Any, ...]) -> Verdict:
    """Generic arguments, compared by each parameter's variance where it is known."""
    if lo is ro and len(la) == len(ra):
        params = getattr(ro, "__parameters__", ())
        if len(params) == len(ra) and all(isinstance(p, TypeVar) for p in params):
            return _all(_vary(a, b, _variance(p)) for a, b, p in zip(la, ra, params, strict=True))
    if len(ra) == 1 and len(la) == 1 and issubclass(lo, (*_COVARIANT1, *_INVARIANT1)):
        return _vary(la[0], ra[0], 0 if ro in _INVARIANT1 or issubclass(ro, _INVARIANT1) else 1)
    if issubclass(lo, _MAPPINGS) and len(la) == 2:
        if len(ra) == 2 and issubclass(ro, _MAPPINGS):
            mutable = ro in (dict, abc.MutableMapping) or issubclass(ro, abc.MutableMapping)
            return _all((_vary(la[0], ra[0], 0), _vary(la[1], ra[1], 0 if mutable else 1)))
        if len(ra) == 1 and ro in _COVARIANT1:
            return _vary(la[0], ra[0], 1)
    return None


def _variance(p: TypeVar) -> int | None:
    if getattr(p, "__infer_variance__", False):
        return None
    return 1 if p.__covariant__ else -1 if p.__contravariant__ else 0


def _vary(a: Any, b: Any, variance: int | None) -> Verdict:
    if variance is None:
        return None
    if variance > 0:
        return is_subtype(a, b)
    if variance < 0:
        return is_subtype(b, a)
    return _all((is_subtype(a, b), is_subtype(b, a)))


# ---------------------------------------------------------------------- building types
def variants(tp: Any) -> list[Any]:
    """The cases of an output type: union members, enum members and `True` / `False`.

    An `enum.Flag` is one case: a combination such as `R | W` is none of its members.
    """
    tp = _norm(tp)
    if _is_union(tp):
        return [v for item in get_args(tp) for v in variants(item)]
    if get_origin(tp) is Literal:
        return [Literal[v] for v in get_args(tp)]
    if tp is bool:
        return [Literal[True], Literal[False]]
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and not issubclass(tp, enum.Flag):
        members = list(tp)
        return [Literal[m] for m in members] if members else [tp]
    return [tp]


def make_union(items: list[Any]) -> Any:
    """One type for `items`, complete bool / enum literal sets folded back (as mypy does)."""
    flat: list[Any] = []
    for item in items:
        for v in variants(item) if get_origin(_norm(item)) is Literal else [_norm(item)]:
            if not any(v == f for f in flat):
                flat.append(v)
    for whole in {type(get_args(v)[0]) for v in flat if get_origin(v) is Literal}:
        if whole is bool or (issubclass(whole, enum.Enum) and not issubclass(whole, enum.Flag)):
            cases = variants(whole)
            if all(c in flat for c in cases):
                at = flat.index(cases[0])
                flat = [f for f in flat if f not in cases]
                flat.insert(at, whole)
    flat = [f for f in flat if not any(f is not g and is_subtype(f, g) is True
                                       and is_subtype(g, f) is not True for g in flat)]  # fmt: skip
    if not flat:
        return typing.NoReturn
    return flat[0] if len(flat) == 1 else Union[tuple(flat)]  # noqa: UP007


def sequence_of(item: Any) -> Any:
    """`Sequence[item]`: what a join receives."""
    return abc.Sequence[item]


# ---------------------------------------------------------------------- showing types
def show(tp: Any) -> str:
    """A type written as mypy writes it in messages (`int | None`, `Literal['a', 'b']`)."""
    tp = _norm(tp)
    if tp is Any:
        return "Any"
    if tp is _NONE:
        return "None"
    if tp is typing.NoReturn:
        return "Never"
    if isinstance(tp, TypeVar):
        return tp.__name__
    if _is_newtype(tp):
        return str(tp.__name__)
    if isinstance(tp, ForwardRef):
        return tp.__forward_arg__
    if _is_union(tp):
        return _show_union(list(get_args(tp)))
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(_literal(v) for v in args)}]"
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        if origin is tuple and args == ((),):
            return "tuple[()]"
        shown = ", ".join("..." if a is Ellipsis else show(a) for a in args)
        return f"{name}[{shown}]"
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ != "builtins" else tp.__name__
    return str(tp)


def _literal(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return repr(value)


def _show_union(items: list[Any]) -> str:
    """As mypy prints a union: several Literal members merged first (`Literal['a', 'b']`),
    a single one kept in place; `None` last."""
    literals = [get_args(i)[0] for i in items if get_origin(i) is Literal]
    if len(literals) > 1:
        items = [i for i in items if get_origin(i) is not Literal]
    parts = [show(i) for i in items if _norm(i) is not _NONE]
    if len(literals) > 1:
        parts.insert(0, f"Literal[{', '.join(_literal(v) for v in literals)}]")
    if any(_norm(i) is _NONE for i in items):
        parts.append("None")
    return " | ".join(parts)
