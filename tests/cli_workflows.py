"""Workflow factories for the command-line tests."""

from __future__ import annotations

from tests.distributed_workflows import Done, Inc, NoFallback


def no_fallback() -> NoFallback:
    return NoFallback(inc=Inc(), done=Done())
