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
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["StepLogger", "step_fields", "step_span"]

_trace: Any
_tracer: Any
try:  # pragma: no cover - depends on the optional extra
    _trace = importlib.import_module("opentelemetry.trace")
    _tracer = _trace.get_tracer("floxide")
except ImportError:  # pragma: no cover
    _trace = _tracer = None
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


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


def step_span(run_id: str, node: str, item_id: str, attempt: int) -> AbstractContextManager[Any]:
    """An OpenTelemetry span around one step when tracing is set up, else nothing.

    Without a configured tracer provider (the API alone installed) every span would be a
    no-op, so none is made: that costs a worker more per step than the rest of its logging.
    """
    if _trace is None:
        return _NO_SPAN
    provider = _trace.get_tracer_provider()
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return _NO_SPAN
    return _tracer.start_as_current_span(  # type: ignore[no-any-return]
        f"floxide.step {node}",
        attributes={
            "floxide.run_id": run_id,
            "floxide.node": node,
            "floxide.item_id": item_id,
            "floxide.attempt": attempt,
        },
    )
