"""Workflow factories for the command-line tests."""

from __future__ import annotations

import os

from floxide import (
    CompositeNode,
    Node,
    RetryPolicy,
    Workflow,
    with_retry,
    with_timeout,
    workflow,
)
from tests.distributed_workflows import (
    Done,
    Inc,
    NoFallback,
    Plain,
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


@workflow
class Nested(Workflow[Plain, int, str]):
    """A retried, timed node before a composite workflow (for `floxide graph`)."""

    first: Node[Plain, int, int]
    inner: CompositeNode[Plain, int, str]

    start = "first"
    edges = {"first": ["inner"], "inner": []}


def nested() -> Nested:
    first = with_retry(with_timeout(Inc(), 5), RetryPolicy(max_attempts=3))
    return Nested(first=first, inner=CompositeNode(no_fallback()))
