"""Reading `Node[Ctx, In, Out]` arguments off classes and annotations at run time.

Serialization (checkpoints, distributed runs) structures each work item's payload by the
declared input type of its node, so the graph records those types (`floxide._codec`
chooses which one each value is written as). String arguments are forward references,
resolved in the module that wrote them. A leaf: it imports nothing of floxide.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Annotated, Any, ForwardRef, TypeVar, Union, get_args, get_origin

__all__ = ["NodeTypes", "element_type", "is_node_annotation", "known", "node_types", "resolve"]

NodeTypes = tuple[Any, Any, Any]
"""(Ctx, In, Out); `typing.Any` where unknown."""

_ANY3: NodeTypes = (Any, Any, Any)


def resolve(tp: Any, module: str | None) -> Any:
    """Evaluate string / ForwardRef arguments (recursively) in `module`'s namespace."""
    if isinstance(tp, str):
        tp = ForwardRef(tp)
    if isinstance(tp, ForwardRef):
        ns = vars(sys.modules[module]) if module in sys.modules else {}
        try:
            return typing._eval_type(tp, dict(ns), None)  # type: ignore[attr-defined]
        except NameError:
            return tp
    return tp


def _substitute(tp: Any, mapping: dict[Any, Any]) -> Any:
    if isinstance(tp, TypeVar):
        return mapping.get(tp, Any)
    params = getattr(tp, "__parameters__", ())
    if params:
        try:
            return tp[tuple(mapping.get(p, Any) for p in params)]
        except TypeError:
            return tp
    return tp


def _search(cls: type, mapping: dict[Any, Any], node_cls: type) -> NodeTypes | None:
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base) or base
        args = tuple(
            _substitute(resolve(a, getattr(cls, "__module__", None)), mapping)
            for a in get_args(base)
        )
        if origin is node_cls:
            if len(args) == 3:
                return (args[0], args[1], args[2])
            return _ANY3
        if isinstance(origin, type) and issubclass(origin, node_cls):
            params = getattr(origin, "__parameters__", ())
            sub = dict(zip(params, args, strict=False)) if args else {}
            found = _search(origin, sub, node_cls)
            if found is not None:
                return found
    return None


def node_types(annotation: Any, node_cls: type, module: str | None = None) -> NodeTypes | None:
    """The (Ctx, In, Out) of a node class or parameterized node annotation, else None.

    Returns None when `annotation` is not a node type at all.
    """
    annotation = _unwrap(resolve(annotation, module))
    if get_origin(annotation) in (Union, types.UnionType):
        return _union_types([node_types(a, node_cls, module) for a in get_args(annotation)])
    origin = get_origin(annotation) or annotation
    if not isinstance(origin, type) or not issubclass(origin, node_cls):
        return None
    args = tuple(resolve(a, module) for a in get_args(annotation))
    if origin is node_cls:
        return (args[0], args[1], args[2]) if len(args) == 3 else _ANY3
    params = getattr(origin, "__parameters__", ())
    mapping = dict(zip(params, args, strict=False))
    found = _search(origin, mapping, node_cls)
    return found if found is not None else _ANY3


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_types(parts: list[NodeTypes | None]) -> NodeTypes | None:
    """A field `A | B` of node types: either may be given, so it outputs what either
    outputs; its context and input are known only when every member declares the same."""
    if not parts or any(p is None for p in parts):
        return None
    known_parts = [p for p in parts if p is not None]
    ctx, inp = known_parts[0][0], known_parts[0][1]
    same_ctx = all(p[0] == ctx for p in known_parts)
    same_inp = all(p[1] == inp for p in known_parts)
    outs = tuple(dict.fromkeys(p[2] for p in known_parts))
    out = Any if any(o is Any for o in outs) else outs[0] if len(outs) == 1 else Union[outs]  # noqa: UP007
    return (ctx if same_ctx else Any, inp if same_inp else Any, out)


def is_node_annotation(annotation: Any, node_cls: type) -> bool:
    """False when `annotation` certainly declares no Node (a node, `A | B` of nodes and
    `Annotated[Node, ...]` are nodes; what cannot be read is given the benefit)."""
    tp = _unwrap(annotation)
    if get_origin(tp) in (Union, types.UnionType):
        return all(is_node_annotation(a, node_cls) for a in get_args(tp))
    origin = get_origin(tp) or tp
    return not isinstance(origin, type) or issubclass(origin, node_cls)


def known(tp: Any) -> bool:
    """True when `tp` is a declared type (not `Any`, not an unbound type variable)."""
    return tp is not Any and not isinstance(tp, TypeVar)


def element_type(tp: Any) -> Any:
    """X of a join input `Sequence[X]` (or `tuple[X, ...]`); Any when not declared."""
    args = get_args(tp)
    origin = get_origin(tp)
    if origin is not None and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return Any
