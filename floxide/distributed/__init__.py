"""Distributed runs: an `Orchestrator` starts and follows runs, `WorkerPool`s run them.

```python
backend = open_backend("redis://127.0.0.1:6379/0")   # or "sqlite:///runs.db", "memory://"
orch = Orchestrator(wf, backend)
run_id = await orch.start_run(Ctx(), 7)
await WorkerPool(wf, backend, concurrency=4).run()    # in any number of processes
out = await orch.wait(run_id)
```
"""

from __future__ import annotations

from floxide._errors import LeaseExpiredError, RemoteError, UnknownRunError
from floxide._public import publish
from floxide.backends._base import (
    ErrorRecord,
    NodeMetrics,
    RunMetrics,
    RunRecord,
    RunStatus,
    WorkerInfo,
)
from floxide.distributed._orchestrator import Orchestrator, run_error
from floxide.distributed._pool import WorkerPool
from floxide.distributed._worker import Worker, queue_name

__all__ = [
    "ErrorRecord",
    "LeaseExpiredError",
    "NodeMetrics",
    "Orchestrator",
    "RemoteError",
    "RunMetrics",
    "RunRecord",
    "RunStatus",
    "UnknownRunError",
    "Worker",
    "WorkerInfo",
    "WorkerPool",
    "queue_name",
    "run_error",
]

publish(__name__, globals())
del publish
