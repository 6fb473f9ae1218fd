"""Workflow factories for the command-line tests."""

from __future__ import annotations

import os

from tests.distributed_workflows import (
    Done,
    Inc,
    NoFallback,
    Rescue,
    Retrying,
    WithFallback,
    retrying,
)


def no_fallback() -> NoFallback:
    return NoFallback(inc=Inc(), done=Done())


def with_fallback() -> WithFallback:
    """`inc` fails on a negative input and its fallback `rescue` takes over."""
    return WithFallback(inc=Inc(), done=Done(), rescue=Rescue())


def fails_once() -> Retrying:
    """Fails the first call per input, without retries (a run to `runs retry`); the calls are
    counted in the directory `FLOXIDE_TEST_DIR`."""
    return retrying(failures=1, attempts=1, dir=os.environ["FLOXIDE_TEST_DIR"])


def flaky() -> Retrying:
    """Fails the first call per input, then succeeds on the retry (counted in a directory)."""
    return retrying(failures=1, attempts=3, dir=os.environ["FLOXIDE_TEST_DIR"])
