"""Incremental mode: a workflow is re-checked when a type it was checked against changes.

mypy re-checks a module when a module it depends on changes its interface, and the daemon
(dmypy) by fine-grained triggers; a node class's base may live in a module the workflow
never imports, so the plugin records those dependencies itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from mypy.checker import TypeChecker
from mypy.indirection import TypeIndirectionVisitor
from mypy.plugin import CheckerPluginInterface
from mypy.server.trigger import make_trigger
from mypy.types import (
    CallableType,
    Instance,
    LiteralType,
    TupleType,
    Type,
    TypeAliasType,
    TypedDictType,
    TypeType,
    TypeVarType,
    UnionType,
    get_proper_type,
)

__all__ = ["record_dependencies"]


def record_dependencies(api: CheckerPluginInterface, used_types: list[Type]) -> None:
    """Make the module being checked depend on every module (and, for the daemon, every
    class and alias) that defines one of `used_types`."""
    if not isinstance(api, TypeChecker):
        return
    modules = TypeIndirectionVisitor().find_modules(used_types)
    api.module_refs.update(m for m in modules if m)
    # The daemon (dmypy) re-checks by fine-grained triggers instead: one per class (and
    # its bases) and alias in the checked types, all pointing at this module's target.
    target = api.tscope.current_target()
    deps = api.tree.plugin_deps
    for name in _class_names(used_types):
        deps.setdefault(make_trigger(name), set()).add(target)


def _class_names(types: Iterable[Type]) -> set[str]:
    """The full names of every class (with its bases) and alias that some types mention."""
    names: set[str] = set()
    stack = list(types)
    while stack:
        t = stack.pop()
        if isinstance(t, TypeAliasType):
            if t.alias is not None and t.alias.fullname not in names:
                names.add(t.alias.fullname)
                stack.append(get_proper_type(t))
            continue
        p = get_proper_type(t)
        if isinstance(p, Instance):
            stack.extend(p.args)
            if p.type.fullname in names:
                continue
            for cls in p.type.mro:
                names.add(cls.fullname)
                stack.extend(cls.bases)
        elif isinstance(p, LiteralType):
            stack.append(p.fallback)
        elif isinstance(p, (UnionType, TupleType)):
            stack.extend(p.items)
        elif isinstance(p, TypeType):
            stack.append(p.item)
        elif isinstance(p, CallableType):
            stack.extend((*p.arg_types, p.ret_type))
        elif isinstance(p, TypedDictType):
            stack.extend(p.items.values())
        elif isinstance(p, TypeVarType):
            stack.append(p.upper_bound)
    return names
