"""Nodes and the transitions they return.

A node is an attrs class generic over `Node[Ctx, In, Out]` whose `process` turns one input
into a `Transition`: `Next(value)`, `NextAll(values)`, `Hold()` or `Abort(error)`.
`@node` wraps an async function into a node instance.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Generic, TypeAlias, TypeVar, final

import attrs

__all__ = ["Abort", "Hold", "Next", "NextAll", "Node", "Transition", "node"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Ctx_contra = TypeVar("Ctx_contra", contravariant=True)
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@final
class Next(Generic[T_co]):
    """Send `value` to every successor (each successor gets its own work item)."""

    __slots__ = ("value",)
    __match_args__ = ("value",)

    def __init__(self, value: T_co) -> None:
        self.value: Final = value

    def __repr__(self) -> str:
        return f"Next({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Next) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


@final
class NextAll(Generic[T_co]):
    """Make one work item per value, each sent to every successor, in list order."""

    __slots__ = ("values",)
    __match_args__ = ("values",)

    def __init__(self, values: Iterable[T_co]) -> None:
        self.values: Final[tuple[T_co, ...]] = tuple(values)

    def __repr__(self) -> str:
        return f"NextAll({list(self.values)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NextAll) and self.values == other.values

    __hash__ = None  # type: ignore[assignment]


@final
class Hold:
    """End this branch here: no output and no failure."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Hold()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hold)

    def __hash__(self) -> int:
        return hash(Hold)


@final
class Abort:
    """The node failed (the same as raising `error`); the node's fallback, if any, runs."""

    __slots__ = ("error",)
    __match_args__ = ("error",)

    def __init__(self, error: BaseException | str) -> None:
        self.error: Final[BaseException] = (
            error if isinstance(error, BaseException) else RuntimeError(error)
        )

    def __repr__(self) -> str:
        return f"Abort({self.error!r})"


Transition: TypeAlias = Next[T] | NextAll[T] | Hold | Abort
"""What `Node.process` returns: `Next[Out] | NextAll[Out] | Hold | Abort`."""


class Node(Generic[Ctx_contra, In_contra, Out_co]):
    """A step of a workflow: `Node[Ctx, In, Out]`.

    Subclass it as an attrs class and implement `process`. Ctx and In are contravariant and
    Out covariant, so a node that accepts more, or returns less, fits anywhere it is wired.
    """

    __slots__ = ()

    @abstractmethod
    async def process(self, ctx: Ctx_contra, input: In_contra) -> Transition[Out_co]:
        """Handle one input; return where its result goes next."""
        raise NotImplementedError


@attrs.frozen(repr=False)
class FunctionNode(Node[C, I, O]):
    """A node made from an async function by `@node`."""

    fn: Callable[[C, I], Awaitable[Transition[O]]]

    async def process(self, ctx: C, input: I) -> Transition[O]:
        return await self.fn(ctx, input)

    def __repr__(self) -> str:
        return f"node({getattr(self.fn, '__qualname__', self.fn)!r})"


def _class_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "function")
    return "".join(part.capitalize() for part in re.split(r"_+", name) if part) + "Node"


def node(fn: Callable[[C, I], Awaitable[Transition[O]]]) -> Node[C, I, O]:
    """Turn `async def f(ctx, input) -> Transition[Out]` into a node instance.

    The instance belongs to a class generated for `f` (named after it), so two decorated
    functions are two node types. Annotate the workflow field as `Node[Ctx, In, Out]`.
    """
    cls = type(
        _class_name(fn),
        (FunctionNode,),
        {"__module__": getattr(fn, "__module__", __name__), "__slots__": ()},
    )
    cls.__qualname__ = cls.__name__
    instance: FunctionNode[C, I, O] = cls(fn)
    return instance
