"""floxide: typed workflows of typed nodes, run on trio, checkpointed, or distributed."""

from floxide._checkpoint import (
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    SqliteCheckpointStore,
)
from floxide._context import Cell, ItemInfo, SharedState, current_item, item_scope
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
from floxide._merge import (
    MERGE_WITH,
    Counter,
    Event,
    EventLog,
    Fixed,
    Max,
    Merge,
    Mergeable,
    MergeConflictError,
    Min,
    SetUnion,
    merge_values,
)
from floxide._node import Abort, Hold, Next, NextAll, Node, Transition, node
from floxide._workflow import Workflow, workflow

__all__ = [
    "MERGE_WITH",
    "Abort",
    "BackendError",
    "Cell",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "Counter",
    "Event",
    "EventLog",
    "Fixed",
    "FloxideError",
    "Hold",
    "InMemoryCheckpointStore",
    "ItemInfo",
    "Max",
    "Merge",
    "MergeConflictError",
    "Mergeable",
    "Min",
    "Next",
    "NextAll",
    "NoOutputError",
    "Node",
    "NodeError",
    "RunCancelled",
    "RunTimeoutError",
    "SetUnion",
    "SharedState",
    "SqliteCheckpointStore",
    "Transition",
    "Workflow",
    "WorkflowDefinitionError",
    "current_item",
    "item_scope",
    "merge_values",
    "node",
    "workflow",
]

__version__ = "0.1.0"
