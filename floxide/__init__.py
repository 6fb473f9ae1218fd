"""floxide: typed workflows of typed nodes, run on trio, checkpointed, or distributed."""

from floxide._checkpoint import (
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    SqliteCheckpointStore,
)
from floxide._context import Cell, SharedState
from floxide._errors import (
    BackendError,
    BatchItemError,
    CheckpointError,
    FloxideError,
    MergeConflictError,
    NodeError,
    NodeTimeoutError,
    NoOutputError,
    NoRouteError,
    RunCancelled,
    RunTimeoutError,
    StrayJoinError,
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
    Min,
    SetUnion,
    merge_values,
)
from floxide._node import Abort, Hold, Next, NextAll, Node, Transition, node
from floxide._nodes import (
    BatchNode,
    CompositeNode,
    Source,
    SourceResult,
    SourceStats,
    SplitNode,
    source,
)
from floxide._public import publish
from floxide._retry import (
    BackoffStrategy,
    RetryError,
    RetryNode,
    RetryOn,
    RetryPolicy,
    with_retry,
)
from floxide._running import ItemInfo, current_item, item_scope
from floxide._timeout import TimeoutNode, with_timeout
from floxide._workflow import Workflow, workflow

__all__ = [
    "MERGE_WITH",
    "Abort",
    "BackendError",
    "BackoffStrategy",
    "BatchItemError",
    "BatchNode",
    "Cell",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "CompositeNode",
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
    "NoRouteError",
    "Node",
    "NodeError",
    "NodeTimeoutError",
    "RetryError",
    "RetryNode",
    "RetryOn",
    "RetryPolicy",
    "RunCancelled",
    "RunTimeoutError",
    "SetUnion",
    "SharedState",
    "Source",
    "SourceResult",
    "SourceStats",
    "SplitNode",
    "SqliteCheckpointStore",
    "StrayJoinError",
    "TimeoutNode",
    "Transition",
    "Workflow",
    "WorkflowDefinitionError",
    "current_item",
    "item_scope",
    "merge_values",
    "node",
    "source",
    "with_retry",
    "with_timeout",
    "workflow",
]

__version__ = "0.1.0"

publish(__name__, globals())
del publish
