"""floxide's mypy plugin: enable with `plugins = ["floxide_mypy"]` in your mypy config."""

from __future__ import annotations

from mypy.plugin import Plugin


class FloxidePlugin(Plugin):
    """Checks `@workflow` classes at type-check time."""


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return FloxidePlugin
