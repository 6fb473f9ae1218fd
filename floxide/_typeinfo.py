"""Reading `Node[Ctx, In, Out]` arguments off classes and annotations at run time.

Serialization (checkpoints, distributed runs) structures each work item's payload by the
declared input type of its node, so the graph records those types. String arguments are
forward references, resolved in the module that wrote them.
"""

from __future__ import annotations

import sys
import typing
from typing import TYPE_CHECKING, Any, ClassVar, ForwardRef, Self, TypeVar, get_args, get_origin

if TYPE_CHECKING:
    from floxide._graph import Graph
    from floxide._workflow import Workflow

__all__ = ["DeclaredTypes", "NodeTypes", "element_type", "known", "node_types", "resolve"]

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
    annotation = resolve(annotation, module)
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


class DeclaredTypes:
    """The types one workflow class's values are (de)serialized as.

    A work item's input is written as its node's `In`; an output or join contribution as
    its producer's `Out` (or, when that is not declared, the join's element type or the
    workflow's `Out`); the context as the workflow's `Ctx`. Built once per workflow class
    and subclass (`of`), shared by checkpoints and distributed runs.
    """

    _instances: ClassVar[dict[tuple[type, type], Any]] = {}

    def __init__(self, wf: Workflow[Any, Any, Any]) -> None:
        from floxide._workflow import Workflow

        graph: Graph = wf.graph
        self.graph = graph
        declared = node_types(type(wf), Workflow) or _ANY3
        self.ctx_type: Any = declared[0]
        self.in_type: Any = declared[1]
        self.out_type: Any = declared[2]
        self.node_in: dict[str, Any] = {}
        self.node_out: dict[str, Any] = {}
        for n in graph.node_names:
            _, in_t, out_t = graph.node_types(n)
            self.node_in[n] = in_t
            self.node_out[n] = out_t
        self.join_element = {j: element_type(self.node_in[j]) for j in graph.joins}

    @classmethod
    def of(cls, wf: Workflow[Any, Any, Any]) -> Self:
        """The instance for `wf`'s class, built on first use."""
        key = (cls, type(wf))
        found: Self | None = DeclaredTypes._instances.get(key)
        if found is None:
            found = DeclaredTypes._instances[key] = cls(wf)
        return found

    def value_type(self, producer: str, join: str | None = None) -> Any:
        """The type an output of `producer` (or its contribution to `join`) is written as."""
        tp = self.node_out.get(producer, Any)
        if known(tp):
            return tp
        return self.join_element.get(join, Any) if join is not None else self.out_type
