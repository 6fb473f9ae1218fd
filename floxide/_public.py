"""Public names report their public home: `floxide.Node`, not `floxide._node.Node`.

Each public package calls `publish(__name__, globals())` after its imports. Every class and
function named in its `__all__` that is defined in a private module below floxide (one
with a `_` component, such as `floxide._node` or `floxide.backends._base`) gets the
package as its `__module__`, and so do the methods and nested classes it defines. Tracebacks
(`floxide.NodeError: ...`), reprs, `help()` and documentation tools then show the name users
import. `__name__` and `__qualname__` are kept, so an alias (`RetryError = RetryOn`) still
reports the class's own name. A name already published by a package imported earlier keeps
that package.

Python resolves a class's string annotations (`from __future__ import annotations`) in the
module its `__module__` names: `typing.get_type_hints`, `attrs.resolve_types` and cattrs all
do. So before a class's `__module__` changes, its own annotations are evaluated in the module
that wrote them, and stored evaluated; an annotation that cannot be evaluated yet (a name
imported only for type checking) stays a string.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["publish"]


def _is_private(module: str) -> bool:
    return module.startswith("floxide.") and any(p.startswith("_") for p in module.split("."))


def publish(package: str, namespace: Mapping[str, Any]) -> None:
    """Make every class and function in `namespace["__all__"]` report `package` as its module."""
    for name in namespace["__all__"]:
        _publish(namespace[name], package)


def _publish(obj: object, package: str) -> None:
    if not isinstance(obj, type | types.FunctionType):
        return
    home = obj.__module__
    if not _is_private(home):
        return
    if isinstance(obj, type):
        _evaluate_annotations(obj, home)
        obj.__module__ = package
        for member in vars(obj).values():
            if getattr(member, "__module__", None) == home:
                _publish(member, package)
    else:
        obj.__module__ = package


def _evaluate_annotations(cls: type, home: str) -> None:
    own = inspect.get_annotations(cls)
    if not any(isinstance(v, str) for v in own.values()):
        return
    module_ns, class_ns = vars(sys.modules[home]), dict(vars(cls))
    for key, value in own.items():
        if isinstance(value, str):
            try:  # as inspect.get_annotations(cls, eval_str=True) does, one at a time
                own[key] = eval(value, module_ns, class_ns)
            except Exception:
                pass  # a name imported only for type checking: left as a string
    cls.__annotations__ = own
