"""Where checkpoints live: one contract (`CheckpointStore`), two implementations.

`InMemoryCheckpointStore` keeps a run's bytes in dictionaries (tests, single process).
`SqliteCheckpointStore` keeps them in one SQLite file (WAL, group commit, blocking calls in a
worker thread: `floxide._sqlite`, shared with the SQLite backend); several runs, and several
processes, share a file.
"""

from __future__ import annotations

from floxide._public import publish
from floxide.checkpoints._base import (
    CheckpointStatus,
    CheckpointStore,
    Commit,
    RunInfo,
    StoredCheckpoint,
)
from floxide.checkpoints._memory import InMemoryCheckpointStore
from floxide.checkpoints._sqlite import SqliteCheckpointStore

__all__ = [
    "CheckpointStatus",
    "CheckpointStore",
    "Commit",
    "InMemoryCheckpointStore",
    "RunInfo",
    "SqliteCheckpointStore",
    "StoredCheckpoint",
]


publish(__name__, globals())
del publish
