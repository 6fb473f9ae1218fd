"""Every exception floxide raises, in one place; all derive from `FloxideError`.

```text
FloxideError                      root: catch it to handle anything the library raises
├── WorkflowDefinitionError       a workflow class is malformed (also a TypeError)
├── NodeError                     a node failed and no fallback took the failure
├── BatchItemError                an item of a BatchNode's input failed
├── NodeTimeoutError              a with_timeout deadline passed (also a TimeoutError)
├── NoRouteError                  an output matches no route (also a LookupError)
├── StrayJoinError                an item reached a join outside its fan-out (also a RuntimeError)
├── MergeConflictError            two copies that must agree differ (also a ValueError)
├── NoOutputError                 a run reached no terminal node
├── RunCancelled                  a run was cancelled
│   └── RunTimeoutError           ... because it outlived its timeout
├── CheckpointError               a checkpoint is missing, corrupt, foreign or incompatible
├── BackendError                  a distributed backend failed
│   └── PayloadError              a stored value does not decode as its declared type
├── LeaseExpiredError             a work item's lease expired once too often
├── RemoteError                   a worker's failure, known by its description only
├── UnknownRunError               no such run in the backend (also a KeyError)
└── CliError                      a command-line problem, reported as one line
```

The extra builtin bases keep `except TimeoutError`, `except LookupError` and the like
working. Node failures reach callers as `NodeError`, with the node's own exception (which
may be any of these, or anything else) as its `cause`. The module imports nothing of
floxide, so every layer can raise these.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackendError",
    "BatchItemError",
    "CheckpointError",
    "CliError",
    "FloxideError",
    "LeaseExpiredError",
    "MergeConflictError",
    "NoOutputError",
    "NoRouteError",
    "NodeError",
    "NodeTimeoutError",
    "PayloadError",
    "RemoteError",
    "RunCancelled",
    "RunTimeoutError",
    "StrayJoinError",
    "UnknownRunError",
    "WorkflowDefinitionError",
]


class FloxideError(Exception):
    """Root of floxide's errors; catch this to handle anything the library raises."""


# --------------------------------------------------------------------------- definitions


class WorkflowDefinitionError(FloxideError, TypeError):
    """A workflow class is malformed; `problems` lists every problem found."""

    def __init__(self, workflow: str, problems: Sequence[str]) -> None:
        self.workflow = workflow
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"workflow {workflow!r} is invalid:\n{lines}")


# --------------------------------------------------------------------------- steps


class NodeError(FloxideError):
    """A node failed and no fallback took the failure.

    Carries where it happened (`node`, `run_id`, `item_id`, `attempt`) and the `cause`
    (also chained as `__cause__`). Failures of sibling branches that happened in the same
    run are kept in `others`.
    """

    def __init__(
        self,
        node: str,
        cause: BaseException,
        *,
        run_id: str | None = None,
        item_id: object = None,
        attempt: int = 1,
        workflow: str | None = None,
    ) -> None:
        self.node = node
        self.cause = cause
        self.run_id = run_id
        self.item_id = item_id
        self.attempt = attempt
        self.workflow = workflow
        self.others: list[BaseException] = []
        where = f"node {node!r}"
        if workflow is not None:
            where += f" of workflow {workflow!r}"
        if run_id is not None:
            where += f" (run {run_id}"
            where += f", item {item_id}" if item_id is not None else ""
            where += f", attempt {attempt})"
        elif item_id is not None:
            where += f" (item {item_id}, attempt {attempt})"
        super().__init__(f"{where} failed: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


class BatchItemError(FloxideError):
    """An item of a `BatchNode`'s input failed; `index` is its position in the input.

    When several items of one batch fail, `index`/`cause` are the first (lowest index) and
    the others are in `others` as `(index, error)` pairs.
    """

    def __init__(self, index: int, cause: BaseException) -> None:
        self.index = index
        self.cause = cause
        self.others: list[tuple[int, BaseException]] = []
        super().__init__(f"batch item {index} failed: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


class NodeTimeoutError(FloxideError, TimeoutError):
    """A node wrapped by `with_timeout` did not finish within its deadline.

    It is an ordinary node failure: `RetryPolicy(retry_on=RetryOn.TIMEOUTS)` retries it
    and the node's `on_failure` fallback receives the input.
    """

    def __init__(self, node: str, seconds: float) -> None:
        self.node = node
        self.seconds = seconds
        super().__init__(f"{node} did not finish within {seconds} s")


class NoRouteError(FloxideError, LookupError):
    """A routed node produced a value that matches no row of its routing table."""


class StrayJoinError(FloxideError, RuntimeError):
    """An item reached a join node outside any fan-out of the join's source."""


class MergeConflictError(FloxideError, ValueError):
    """Two copies of a value that must agree (a `Fixed`, an event id, a plain field) differ."""


# --------------------------------------------------------------------------- runs


class NoOutputError(FloxideError):
    """A run finished without any branch reaching a terminal node."""


class RunCancelled(FloxideError):
    """A run was cancelled (by a user, an orchestrator or a deadline)."""


class RunTimeoutError(RunCancelled):
    """A run did not finish within its `timeout` and was cancelled."""


# --------------------------------------------------------------------------- storage


class CheckpointError(FloxideError):
    """A checkpoint is missing, corrupt, foreign or incompatible; nothing was changed."""


class BackendError(FloxideError):
    """A distributed backend failed (for example an unreachable server; the URL is named)."""


class PayloadError(BackendError):
    """A stored value cannot be read back as its declared type (a foreign or changed payload)."""


# --------------------------------------------------------------------------- distributed


class LeaseExpiredError(FloxideError):
    """A work item's lease expired more often than its node may be retried."""


class RemoteError(FloxideError):
    """A failure that happened in a worker, known here by its description only."""


class UnknownRunError(FloxideError, KeyError):
    """No run with this id exists in the backend (never started, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


# --------------------------------------------------------------------------- command line


class CliError(FloxideError):
    """A problem the `floxide` command reports as one line, with exit code 1 (a failed
    command or run) or 2 (`exit_code=2`: bad usage or bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
