"""The tutorial's distributed run: an orchestrator and two worker pools share a backend.

Run: python -m examples.tutorial.run_distributed [BACKEND_URL]
     (sqlite:///tickets.db by default; any backend URL works)
"""

from __future__ import annotations

import sys

import trio

from examples.tutorial.tickets import TICKETS, Ctx, Summary, triage
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, RunStatus, WorkerPool

DEFAULT = "sqlite:///tickets.db"


async def main(url: str = DEFAULT) -> tuple[Summary, RunStatus, Ctx, int]:
    # --8<-- [start:distributed]
    wf = triage()
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    async with trio.open_nursery() as nursery:
        pools = [WorkerPool(wf, backend, concurrency=4, idle_wait=0.05) for _ in range(2)]
        for pool in pools:  # normally: `floxide worker` processes, on any machines
            await nursery.start(pool.run)
        run_id = await orch.start_run(Ctx(), TICKETS)
        summary = await orch.wait(run_id, timeout=60)  # the same Summary as wf.run
        status = await orch.status(run_id)  # RunStatus.COMPLETED
        ctx = await orch.context(run_id)  # the branches' copies, merged
        errors = await orch.errors(run_id)  # page's failed attempts on T-3, handled
        for pool in pools:
            pool.stop()
    await backend.aclose()
    print(status.value, ctx.handled.value, [(e.node, e.attempt, e.handled) for e in errors])
    # completed 3 [('page', 1, True), ('page', 2, True)]
    # --8<-- [end:distributed]
    return summary, status, ctx, len(errors)


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
