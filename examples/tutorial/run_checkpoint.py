"""The tutorial's checkpointed run: committed after every step, resumable after a crash.

Run: python -m examples.tutorial.run_checkpoint [PATH]   (tickets-checkpoints.db by default)
"""

from __future__ import annotations

import sys

import trio

from examples.tutorial.tickets import TICKETS, Ctx, Summary, triage
from floxide import Checkpoint, SqliteCheckpointStore

DEFAULT = "tickets-checkpoints.db"


async def main(path: str = DEFAULT) -> tuple[Summary, Summary, int]:
    # --8<-- [start:checkpoint]
    wf = triage()
    async with SqliteCheckpointStore(path) as store:
        summary = await wf.run_with_checkpoint(Ctx(), TICKETS, store=store, run_id="batch-1")
        # After a crash, in a new process, the same call continues from the last commit:
        again = await wf.resume(store, run_id="batch-1")  # finished: returns, runs nothing
        saved = await Checkpoint.load(wf, store, "batch-1")
        print(again == summary, saved.context.handled.value)  # True 3
        await store.delete_run("batch-1")
    # --8<-- [end:checkpoint]
    return summary, again, saved.context.handled.value


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
