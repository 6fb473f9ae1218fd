"""floxide's mypy plugin: enable with `plugins = ["floxide_mypy"]` in your mypy config.

It checks every `@workflow` class at type-check time and reports, with the error codes
`floxide-edge` (types that do not fit), `floxide-route` (routing tables) and
`floxide-graph` (structure), the same rules the runtime validates when the class is
created, in the same words (`floxide._rules`): the structural rules are the runtime's own
(`floxide._structure`), the type rules are the plugin's (`_check`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from mypy.plugin import FunctionContext, Plugin, ReportConfigContext
from mypy.types import Type

from floxide import _structure
from floxide._rules import RULES
from floxide_mypy._check import WORKFLOW_DECORATOR, check_workflow
from floxide_mypy._codes import EDGE, GRAPH, ROUTE

__all__ = ["EDGE", "GRAPH", "ROUTE", "FloxidePlugin", "plugin"]


def _fingerprint() -> str:
    """Changes with the plugin's code, the structural rules and their wording, so stale
    results are dropped."""
    digest = hashlib.blake2b(repr(sorted(RULES.items())).encode(), digest_size=8)
    sources = [*sorted(Path(__file__).parent.glob("*.py")), Path(_structure.__file__)]
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()


_FINGERPRINT = _fingerprint()


class FloxidePlugin(Plugin):
    """Checks `@workflow` classes through the decorator's function hook.

    The hook runs when mypy type-checks the decoration, after the class body, when every
    type is final. (A class-decorator hook would run during semantic analysis, and
    registering one for a `dataclass_transform` decorator would turn off mypy's own
    handling of the decorator.)
    """

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        return check_workflow if fullname == WORKFLOW_DECORATOR else None

    def report_config_data(self, ctx: ReportConfigContext) -> str:
        """Cached results are reused only with the same plugin version and wording."""
        return _FINGERPRINT


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return FloxidePlugin
