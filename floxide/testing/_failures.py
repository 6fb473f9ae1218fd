"""Properties of failures: the error log keeps each failed attempt's traceback and whether
the run went on (`handled`), failures a fallback took over are logged and counted with
their step, and a failed run keeps its work state so `retry_run` continues it; the
optional `node_load` counts a live run's items per node and the optional
`list_runs_page` pages the runs list.
"""

from __future__ import annotations

import time

import trio

from floxide.backends._base import (
    Backend,
    CommitResult,
    ErrorRecord,
    RunStatus,
    WorkerInfo,
)
from floxide.testing._harness import (
    LEASE,
    QUEUE,
    Property,
    ctx,
    expect,
    item,
    lease1,
    must_lease,
    new_run,
    plan,
)

__all__ = ["PROPERTIES"]

_TB = 'Traceback (most recent call last):\n  File "flow.py", line 3, in process\nOSError: x'


def _err(message: str = "OSError: x", *, handled: bool = False) -> ErrorRecord:
    return ErrorRecord("a", "1", 1, "node", message, time.time(), _TB, handled)


async def tracebacks(b: Backend) -> None:
    run = new_run(item(1), item(2))
    await b.create_run(run)
    first = await must_lease(b)
    result = await b.retry(first, 0.0, _err("retried", handled=True))
    expect(result is CommitResult.COMMITTED, f"retry returned {result}")
    second = await must_lease(b)
    await b.commit(second, plan(failure=_err("final")))
    errors = await b.errors(run.run_id)
    expect(len(errors) == 2, f"errors after a retry and a failure: {errors}")
    expect(all(e.traceback == _TB for e in errors), f"a traceback was not kept: {errors}")
    expect(
        [(e.message, e.handled) for e in errors] == [("retried", True), ("final", False)],
        f"the handled flags were stored as {[(e.message, e.handled) for e in errors]}",
    )
    other = new_run(item(1))
    await b.create_run(other)
    await b.fail_run(other.run_id, _err("from fail_run"))
    got = await b.errors(other.run_id)
    expect(
        len(got) == 1 and got[0].traceback == _TB and not got[0].handled,
        f"fail_run did not keep the traceback: {got}",
    )


async def handled_failures(b: Backend) -> None:
    run = new_run(item(1))
    await b.create_run(run)
    lease = await must_lease(b)
    step = plan(items=[item(2, "fallback")], handled=[_err("taken over", handled=True)])
    result = await b.commit(lease, step)
    expect(result is CommitResult.COMMITTED, f"a commit with a handled failure was {result}")
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status.live, f"a handled failure ended the run: {rec}")
    errors = await b.errors(run.run_id)
    expect(
        [(e.message, e.handled, e.traceback) for e in errors] == [("taken over", True, _TB)],
        f"a handled failure was logged as {errors}",
    )
    m = await b.metrics(run.run_id)
    expect(m.failed == 1 and m.done == 1, f"a handled failure was counted as {m}")


async def retry_failed_run(b: Backend) -> None:
    run = new_run(item(1), item(2), item(3))
    await b.create_run(run)
    a = await must_lease(b)
    await b.commit(a, plan(context=ctx(b"1"), items=[item(4)]))
    failing = await must_lease(b)
    in_flight = await must_lease(b)
    await b.commit(failing, plan(failure=_err()))
    rec = await b.get_run(run.run_id)
    expect(rec is not None and rec.status is RunStatus.FAILED, f"the run did not fail: {rec}")
    expect(await lease1(b) is None, "a failed run's kept items were leased")
    m = await b.metrics(run.run_id)
    expect(m.in_flight == 0 and m.queued == 0, f"a failed run shows pending work: {m}")
    late = await b.commit(in_flight, plan())
    expect(late is CommitResult.INACTIVE, f"a commit after the failure was {late}")
    deadline = time.time() + 3600
    after = await b.retry_run(run.run_id, deadline)
    expect(after.status is RunStatus.RUNNING, f"retry_run returned {after}")
    expect(after.error is None and after.finished_at is None, f"the error stayed: {after}")
    expect(after.deadline is not None and abs(after.deadline - deadline) < 1e-3,
           f"retry_run stored the deadline as {after.deadline}")  # fmt: skip
    expect(after.pending == 3, f"a retried run has {after.pending} pending items, not 3")
    got = await b.lease(QUEUE, "w2", limit=10, lease_seconds=LEASE, wait=0)
    expect(
        sorted(le.payload for le in got) == [b"p2", b"p3", b"p4"],
        f"a retried run leased {sorted(le.payload for le in got)}, not its kept items",
    )
    expect(all(le.attempt == 1 for le in got), "a retried item is not a fresh attempt")
    ctx_now = await b.context(run.run_id)
    expect(ctx_now is not None and ctx_now.data == b"1", "a retried run lost its context")
    for le in got:
        expect(
            await b.commit(le, plan()) is CommitResult.COMMITTED, "a retried item did not commit"
        )
    done = await b.get_run(run.run_id)
    expect(done is not None and done.status is RunStatus.COMPLETED, f"retried run: {done}")
    same = await b.retry_run(run.run_id, None)
    expect(same.status is RunStatus.COMPLETED, f"retry_run changed a completed run: {same}")
    try:
        await b.retry_run("nope", None)
    except KeyError:
        pass
    else:
        expect(False, "retry_run of an unknown run did not raise KeyError")


async def worker_load(b: Backend) -> None:
    now = time.time()
    info = WorkerInfo("w1", QUEUE, "h", 1, now, now, 4, graph="m.W@fp", in_flight=3)
    await b.register_worker(info)
    got = await b.workers()
    expect(got == [info], f"a worker's graph and load were stored as {got}")


async def node_load(b: Backend) -> None:
    """The optional `node_load(run_id)` (the UI's per-node queued / in flight counts)."""
    load = getattr(b, "node_load", None)
    if load is None:
        return
    run = new_run(item(1, "a"), item(2, "b"), item(3, "b"))
    await b.create_run(run)
    got = await load(run.run_id)
    expect(got == {"a": (1, 0), "b": (2, 0)}, f"node_load of a new run is {got}")
    lease = await must_lease(b)
    got = await load(run.run_id)
    expect(got == {"a": (0, 1), "b": (2, 0)}, f"node_load with item 1 leased is {got}")
    expect(await b.commit(lease, plan()) is CommitResult.COMMITTED, "the commit was not applied")
    got = await load(run.run_id)
    expect(got == {"b": (2, 0)}, f"node_load after item 1 was done is {got}")
    await b.control(run.run_id, "cancel")
    got = await load(run.run_id)
    expect(got == {}, f"node_load of a cancelled run is {got}")
    expect(await load("no-such-run") == {}, "node_load of an unknown run is not empty")


async def list_runs_page(b: Backend) -> None:
    """The optional `list_runs_page(status, offset, limit)` (the UI's paged runs list) is
    a page of `list_runs()`, filtered by status, with the filtered listing's size."""
    page = getattr(b, "list_runs_page", None)
    if page is None:
        return
    runs = []
    for _ in range(5):
        runs.append(new_run(item(1)))
        await b.create_run(runs[-1])
        await trio.sleep(0.002)  # distinct creation times
    await b.control(runs[1].run_id, "pause")
    await b.control(runs[3].run_id, "pause")
    every = [r.run_id for r in await b.list_runs()]
    mine = [r.run_id for r in runs]
    expect([i for i in every if i in mine] == mine[::-1], "list_runs is not newest first")
    got, total = await page(None, 1, 2)
    expect(
        ([r.run_id for r in got], total) == (every[1:3], len(every)),
        f"list_runs_page(None, 1, 2) gave {[r.run_id for r in got]} of {total}",
    )
    paused = [r.run_id for r in await b.list_runs() if r.status is RunStatus.PAUSED]
    got, total = await page("paused", 0, 10)
    expect(
        ([r.run_id for r in got], total) == (paused, len(paused)),
        f"list_runs_page('paused', 0, 10) gave {[r.run_id for r in got]} of {total}",
    )
    got, total = await page("paused", 1, 1)
    expect([r.run_id for r in got] == paused[1:2], "list_runs_page pages a filtered listing")
    got, total = await page(None, len(every), 5)
    expect(got == [] and total == len(every), "a page past the end is empty")


PROPERTIES = (
    Property("tracebacks", tracebacks),
    Property("handled failures", handled_failures),
    Property("retry a failed run", retry_failed_run),
    Property("worker load", worker_load),
    Property("node load", node_load),
    Property("paged run listing", list_runs_page),
)
