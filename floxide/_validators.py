"""attrs validators for the node library: bad arguments fail at construction, clearly.

A wrapper built around the wrong thing (a node class instead of an instance, a plain
function, a string of seconds) would otherwise only fail deep inside a run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs

from floxide import _params
from floxide._node import Node
from floxide._workflow import Workflow

__all__ = ["a_node", "a_workflow", "callable_", "positive_int", "seconds"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _where(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _require(
    kind: type, instance: object, attribute: attrs.Attribute[Any], value: object, hint: str = ""
) -> None:
    if isinstance(value, kind):
        return
    if isinstance(value, type) and issubclass(value, kind):
        hint = f"; pass an instance, {value.__name__}(...), not the class"
    raise TypeError(f"{_where(instance, attribute)} must be a {kind.__name__}, got {value!r}{hint}")


def a_node(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A `Node` instance (not its class, not a bare async function)."""
    hint = ""
    if inspect.iscoroutinefunction(value):
        hint = "; turn an async function into a node with @node"
    _require(Node, instance, attribute, value, hint)


def a_workflow(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A `Workflow` instance (not its class)."""
    _require(Workflow, instance, attribute, value)


def callable_(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        raise TypeError(f"{_where(instance, attribute)} must be callable, got {value!r}")


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An int of at least 1 (None passes when the field's default is None)."""
    if value is None and attribute.default is None:
        return
    try:
        _params.count(_where(instance, attribute), value)
    except TypeError as e:
        raise ValueError(str(e)) from None


def seconds(*, zero: bool, infinite: bool) -> Validator:
    """A number of seconds: > 0 (or >= 0 with `zero`), finite unless `infinite`.

    None passes when the field's default is None (no deadline).
    """

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and attribute.default is None:
            return
        try:
            _params.seconds(_where(instance, attribute), value, zero=zero, infinite=infinite)
        except TypeError as e:
            raise ValueError(str(e)) from None

    return check
