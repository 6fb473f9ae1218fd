"""The error codes the plugin reports (usable in `# type: ignore[...]` and config)."""

from __future__ import annotations

from typing import Final

from mypy.errorcodes import ErrorCode

__all__ = ["EDGE", "GRAPH", "ROUTE"]

EDGE: Final = ErrorCode(
    "floxide-edge", "A node's output (or input) does not fit where the graph sends it", "floxide"
)
ROUTE: Final = ErrorCode(
    "floxide-route", "A routing table is not exhaustive or has a row that never matches", "floxide"
)
GRAPH: Final = ErrorCode("floxide-graph", "A workflow's structure is malformed", "floxide")
