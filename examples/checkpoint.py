"""Checkpoints: a run that fails half-way resumes where it stopped, with its context.

An indexing workflow fans out over documents and joins the results. The search service is
down for one document, so the first run fails; everything else it did is committed to an
SQLite file, step by step (a failure cancels the steps still in flight; they are simply
pending in the checkpoint). Once the service is back, `resume` finishes the run: only the
failed document is indexed again, and the context (a counter) continues from its stored
value. Resuming a finished run returns its result without running anything.

A crash (kill -9, power loss, a deploy) is handled the same way: run `resume` with the
run id in the new process.

Run: python -m examples.checkpoint
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import attrs
import trio

from floxide import (
    Checkpoint,
    Next,
    NextAll,
    Node,
    NodeError,
    SharedState,
    SqliteCheckpointStore,
    Transition,
    Workflow,
    workflow,
)


@attrs.define
class Ctx:
    index_name: str
    indexed: SharedState[int] = attrs.field(factory=lambda: SharedState(0))


@attrs.frozen
class Doc:
    id: str
    words: int


@attrs.frozen
class Batch:
    docs: list[Doc]


@attrs.frozen
class Fetch(Node[Ctx, Batch, Doc]):
    """One work item per document."""

    async def process(self, ctx: Ctx, input: Batch) -> Transition[Doc]:
        return NextAll(input.docs)


@attrs.define
class Index(Node[Ctx, Doc, int]):
    """Sends a document to the search service (down for the documents in `outage`)."""

    outage: set[str] = attrs.field(factory=set)
    calls: list[str] = attrs.field(factory=list)

    async def process(self, ctx: Ctx, input: Doc) -> Transition[int]:
        self.calls.append(input.id)
        if input.id in self.outage:
            await trio.sleep(0.5)  # the request times out after a while
            raise ConnectionError(f"search service unavailable for {input.id}")
        await trio.sleep(0.01)
        await ctx.indexed.update(lambda n: n + 1)
        return Next(input.words)


@attrs.frozen
class Report(Node[Ctx, Sequence[int], str]):
    async def process(self, ctx: Ctx, input: Sequence[int]) -> Transition[str]:
        count = await ctx.indexed.get()
        return Next(f"{ctx.index_name}: {count} documents, {sum(input)} words")


@workflow
class Ingest(Workflow[Ctx, Batch, str]):
    fetch: Fetch
    index: Index
    report: Report

    start = "fetch"
    edges = {"fetch": ["index"], "index": ["report"], "report": []}
    joins = {"report": "fetch"}


BATCH = Batch([Doc("d1", 120), Doc("d2", 80), Doc("d3", 200), Doc("d4", 50), Doc("d5", 10)])


async def main(path: str | None = None) -> dict[str, object]:
    path = path or os.path.join(tempfile.mkdtemp(), "runs.db")
    index = Index(outage={"d3"})
    wf = Ingest(fetch=Fetch(), index=index, report=Report())
    async with SqliteCheckpointStore(path) as store:
        try:
            await wf.run_with_checkpoint(Ctx("docs"), BATCH, store=store, run_id="ingest-1")
        except NodeError as err:
            print("first run failed:", err)
        stopped = await Checkpoint.load(wf, store, "ingest-1")
        pending = sorted(item.input.id for item in stopped.items)
        print(f"checkpoint: status {stopped.status}, pending {pending}")

        index.outage.clear()  # the service is back
        index.calls.clear()
        result = await wf.resume(store, "ingest-1")
        print("resumed:", result, "- indexed again:", index.calls)
        rerun = list(index.calls)

        again = await wf.resume(store, "ingest-1")  # finished: nothing runs
        print("resumed a finished run:", again, "- indexed again:", index.calls[len(rerun) :])
        runs = [(r.run_id, r.status) for r in await store.list_runs()]
    return {
        "failed_status": stopped.status,
        "pending": pending,
        "result": result,
        "rerun": rerun,
        "again": again,
        "runs": runs,
    }


if __name__ == "__main__":
    trio.run(main)
