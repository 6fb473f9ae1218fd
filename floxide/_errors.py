"""The exception hierarchy: every error floxide raises derives from `FloxideError`."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackendError",
    "CheckpointError",
    "FloxideError",
    "NoOutputError",
    "NodeError",
    "RunCancelled",
    "RunTimeoutError",
    "WorkflowDefinitionError",
]


class FloxideError(Exception):
    """Root of floxide's errors; catch this to handle anything the library raises."""


class WorkflowDefinitionError(FloxideError, TypeError):
    """A workflow class is malformed; `problems` lists every problem found."""

    def __init__(self, workflow: str, problems: Sequence[str]) -> None:
        self.workflow = workflow
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"workflow {workflow!r} is invalid:\n{lines}")


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


class NoOutputError(FloxideError):
    """A run finished without any branch reaching a terminal node."""


class RunCancelled(FloxideError):
    """A run was cancelled (by a user, an orchestrator or a deadline)."""


class RunTimeoutError(RunCancelled):
    """A run did not finish within its `timeout` and was cancelled."""


class CheckpointError(FloxideError):
    """A checkpoint is missing, corrupt, foreign or incompatible; nothing was changed."""


class BackendError(FloxideError):
    """A distributed backend failed (for example an unreachable server; the URL is named)."""
