"""floxide: typed workflows of typed nodes, run on trio, checkpointed, or distributed."""

from floxide._errors import (
    BackendError,
    CheckpointError,
    FloxideError,
    NodeError,
    NoOutputError,
    RunCancelled,
    RunTimeoutError,
    WorkflowDefinitionError,
)
from floxide._node import Abort, Hold, Next, NextAll, Node, Transition, node
from floxide._workflow import Workflow, workflow

__all__ = [
    "Abort",
    "BackendError",
    "CheckpointError",
    "FloxideError",
    "Hold",
    "Next",
    "NextAll",
    "NoOutputError",
    "Node",
    "NodeError",
    "RunCancelled",
    "RunTimeoutError",
    "Transition",
    "Workflow",
    "WorkflowDefinitionError",
    "node",
    "workflow",
]

__version__ = "0.1.0"
