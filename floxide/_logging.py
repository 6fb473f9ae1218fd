"""Logging for runs: stdlib `logging` records that carry run id, node, item id and attempt.

Records of floxide's distributed workers and orchestrator go to the `floxide.*` loggers with
`run_id`, `node`, `item_id` and `attempt` attributes (use them in a format string, e.g.
``%(run_id)s %(node)s``); contexts and inputs are never logged at INFO. When the optional
OpenTelemetry API is installed (`floxide[otel]`), each executed step is also a span named
``floxide.step <node>`` with the same attributes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["StepLogger", "step_fields", "step_span"]

_tracer: Any
try:  # pragma: no cover - depends on the optional extra
    _tracer = importlib.import_module("opentelemetry.trace").get_tracer("floxide")
except ImportError:  # pragma: no cover
    _tracer = None


def step_fields(
    run_id: str, node: str = "-", item_id: str = "-", attempt: int = 0
) -> dict[str, Any]:
    """The `extra` mapping of a record about one step."""
    return {"run_id": run_id, "node": node, "item_id": item_id, "attempt": attempt}


class StepLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry the step's run id, node, item id and attempt."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


@contextlib.contextmanager
def step_span(run_id: str, node: str, item_id: str, attempt: int) -> Iterator[None]:
    """An OpenTelemetry span around one step when the API is installed, else nothing."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(  # pragma: no cover - optional
        f"floxide.step {node}",
        attributes={
            "floxide.run_id": run_id,
            "floxide.node": node,
            "floxide.item_id": item_id,
            "floxide.attempt": attempt,
        },
    ):
        yield
