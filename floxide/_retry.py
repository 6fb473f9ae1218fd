"""Retrying failed nodes: `RetryPolicy`, `BackoffStrategy`, `RetryOn`, `with_retry`.

`with_retry(node, policy)` wraps a node in a `RetryNode` with the same `Node[Ctx, In, Out]`
type. In one process the wrapper retries in place, sleeping between attempts. Distributed
workers unwrap it (`inner`, `policy`) and schedule durable, delayed retries instead, using
the same `policy.should_retry` and `policy.delay`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

import attrs
import trio

from floxide._errors import RunCancelled, RunTimeoutError
from floxide._node import Abort, Node, Transition
from floxide._running import exit_item, renew_item
from floxide._step import note_attempts, retry_delay
from floxide._validators import a_node, positive_int, seconds

__all__ = [
    "BackoffStrategy",
    "RetryError",
    "RetryNode",
    "RetryOn",
    "RetryPolicy",
    "RetryPredicate",
    "failure_kind",
    "with_retry",
]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class BackoffStrategy(enum.Enum):
    """How the wait before a retry grows with the number of failed attempts `n` (1, 2, ...)."""

    CONSTANT = "constant"
    """`initial_backoff` every time."""
    LINEAR = "linear"
    """`initial_backoff * n`."""
    EXPONENTIAL = "exponential"
    """`initial_backoff * 2 ** (n - 1)`."""


class RetryOn(enum.Flag):
    """Which failures a `RetryPolicy` retries; combine with `|`.

    - `ERRORS`: ordinary exceptions (raised, or returned as `Abort(error)`).
    - `TIMEOUTS`: deadlines: `NodeTimeoutError` (from `with_timeout`), `TimeoutError`,
      `trio.TooSlowError`, and `RunTimeoutError` from a nested workflow.
    - `CANCELLATIONS`: a `RunCancelled` reported by the node (for example a nested workflow
      that was cancelled). trio's own `Cancelled`, which means the surrounding run is being
      cancelled, always propagates and is never retried.
    - `ALL`: all of the above.

    For anything finer, pass a predicate `retry_on=lambda error: ...` instead.
    `RetryError` is this class under its former name, kept as an alias.
    """

    ERRORS = enum.auto()
    TIMEOUTS = enum.auto()
    CANCELLATIONS = enum.auto()
    ALL = ERRORS | TIMEOUTS | CANCELLATIONS


RetryError = RetryOn
"""The former name of `RetryOn`, kept as an alias (it chooses failures, it is not one)."""

RetryPredicate: TypeAlias = Callable[[BaseException], bool]
"""`retry_on` as a function: given the failure, return True to retry it."""


def failure_kind(error: BaseException) -> RetryOn:
    """Classify a failure; an exception group is the union of its members' kinds."""
    if isinstance(error, BaseExceptionGroup):
        kind = RetryOn(0)
        for sub in error.exceptions:
            kind |= failure_kind(sub)
        return kind
    if isinstance(error, TimeoutError | trio.TooSlowError | RunTimeoutError):
        return RetryOn.TIMEOUTS
    if isinstance(error, RunCancelled):
        return RetryOn.CANCELLATIONS
    return RetryOn.ERRORS


def _all_exceptions(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_all_exceptions(sub) for sub in error.exceptions)
    return isinstance(error, Exception)


def _strategy(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, BackoffStrategy):
        names = ", ".join(f"BackoffStrategy.{s.name}" for s in BackoffStrategy)
        raise TypeError(f"RetryPolicy.strategy must be one of {names}, got {value!r}")


def _flag(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"RetryPolicy.{attribute.name} must be True or False, got {value!r}")


def _policy(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, RetryPolicy):
        raise TypeError(f"RetryNode.policy must be a RetryPolicy, got {value!r}")


def _retry_on(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not (isinstance(value, RetryOn) or callable(value)):
        raise TypeError(
            f"RetryPolicy.retry_on must be a RetryOn flag or a predicate, got {value!r}"
        )


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry a failing node.

    `max_attempts` counts the first try (3 = one try and up to two retries). The wait
    before retry `n` follows `strategy` from `initial_backoff`, capped at `max_backoff`
    seconds; with `jitter`, the wait is drawn uniformly from `[0, that]` ("full jitter"),
    which spreads out retries of many items failing together. `retry_on` picks the
    failures to retry: `RetryOn` flags or a predicate.
    """

    max_attempts: int = attrs.field(default=3, validator=positive_int)
    initial_backoff: float = attrs.field(
        default=0.1, validator=seconds(zero=True, infinite=False)
    )
    max_backoff: float = attrs.field(default=10.0, validator=seconds(zero=True, infinite=False))
    strategy: BackoffStrategy = attrs.field(
        default=BackoffStrategy.EXPONENTIAL, validator=_strategy
    )
    jitter: bool = attrs.field(default=True, validator=_flag)
    retry_on: RetryOn | RetryPredicate = attrs.field(default=RetryOn.ALL, validator=_retry_on)

    def backoff(self, failed_attempts: int) -> float:
        """The wait, without jitter, after `failed_attempts` failures (1 or more)."""
        n = max(1, failed_attempts)
        if self.strategy is BackoffStrategy.CONSTANT:
            wait = self.initial_backoff
        elif self.strategy is BackoffStrategy.LINEAR:
            wait = self.initial_backoff * n
        else:
            # Cap the exponent first so a large attempt count cannot overflow.
            wait = self.initial_backoff * 2.0 ** min(n - 1, 64)
        return min(wait, self.max_backoff)

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """The wait before the next attempt: `backoff`, drawn from `[0, backoff]` with jitter."""
        wait = self.backoff(failed_attempts)
        if not self.jitter:
            return wait
        return (rng or random).uniform(0.0, wait)

    def retries(self, error: BaseException) -> bool:
        """Whether `error` is a kind of failure this policy retries (ignoring attempts)."""
        if not _all_exceptions(error):
            return False  # KeyboardInterrupt, SystemExit, trio.Cancelled: never retried
        if isinstance(self.retry_on, RetryOn):
            kind = failure_kind(error)
            return bool(kind) and (kind & self.retry_on) == kind
        return bool(self.retry_on(error))

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether attempt number `attempt` (1-based) that failed with `error` gets another
        (the rule is `floxide._step.retry_delay`'s)."""
        return retry_delay(_Undelayed(self), error, attempt) is not None


@attrs.frozen
class RetryNode(Node[C, I, O]):
    """`inner`, retried according to `policy` when it fails (raises or returns `Abort`).

    When attempts run out, or the failure is not one the policy retries, the last failure
    is reported as the node's failure (re-raised, or its `Abort` returned), noting how many
    attempts were made.
    """

    inner: Node[C, I, O] = attrs.field(validator=a_node)
    policy: RetryPolicy = attrs.field(factory=RetryPolicy, validator=_policy)

    async def process(self, ctx: C, input: I) -> Transition[O]:
        attempt = 1
        while True:
            # Each retry is a new execution of the work item, so merge values replace the
            # failed attempt's contribution instead of adding to it.
            token = renew_item() if attempt > 1 else None
            try:
                result = await self.inner.process(ctx, input)
            except Exception as exc:
                delay = retry_delay(self.policy, exc, attempt)
                if delay is None:
                    note_attempts(exc, attempt)
                    raise
            else:
                if not isinstance(result, Abort):
                    return result
                delay = retry_delay(self.policy, result.error, attempt)
                if delay is None:
                    note_attempts(result.error, attempt)
                    return result
            finally:
                if token is not None:
                    exit_item(token)
            await trio.sleep(delay)
            attempt += 1


@attrs.frozen
class _Undelayed:
    """A policy's retry rule without drawing a delay (for `should_retry`)."""

    policy: RetryPolicy

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    def retries(self, error: BaseException) -> bool:
        return self.policy.retries(error)

    def delay(self, failed_attempts: int) -> float:
        return 0.0


def with_retry(node: Node[C, I, O], policy: RetryPolicy | None = None) -> RetryNode[C, I, O]:
    """`node`, retried by `policy` (default `RetryPolicy()`); same `Node[Ctx, In, Out]` type."""
    return RetryNode(node, policy if policy is not None else RetryPolicy())
