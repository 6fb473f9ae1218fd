"""`floxide runs ACTION`: list, follow and steer runs.

Read-only actions (list, status, wait, errors) never create or change a backend file.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from floxide import _params
from floxide._cli._common import (
    add_backend,
    add_json,
    opened,
    print_json,
    progress_line,
    record,
    when,
)
from floxide._codec import output_json
from floxide._errors import CliError, PayloadError
from floxide._step import no_output_message
from floxide.backends import Backend, RunRecord, RunStatus
from floxide.distributed import run_error
from floxide.distributed._orchestrator import fail_overdue, retry_run

__all__ = ["add"]

_ACTIONS = {
    "list": "list runs, newest first",
    "status": "a run's status, counts and per-node latency",
    "wait": "wait for a run to finish and print its result",
    "errors": "every failed attempt of a run, with tracebacks",
    "cancel": "cancel a live run",
    "pause": "pause a pending or running run",
    "resume": "resume a paused run",
    "retry": "continue a failed run from the items that failed",
}


def add(sub: Any) -> None:
    runs: argparse.ArgumentParser = sub.add_parser(
        "runs", help="list, follow and steer runs", description=__doc__
    )
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in _ACTIONS.items():
        p = actions.add_parser(
            name,
            help=text,
            description=text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if name != "list":
            p.add_argument("run_id", metavar="RUN_ID", help="the run's id")
        add_backend(p)
        if name in ("list", "status", "errors"):
            add_json(p)
        if name == "retry":
            p.add_argument(
                "--timeout",
                type=float,
                metavar="SECONDS",
                help="a new deadline, from now (default: keep the run's unless it passed)",
            )
        p.set_defaults(handler=runs_command)


async def runs_command(args: argparse.Namespace, out: TextIO) -> int:
    read_only = args.action in ("list", "status", "wait", "errors")
    async with opened(args.backend, read_only=read_only) as backend:
        if args.action == "list":
            return await _list(backend, args, out)
        rec = await record(backend, args.run_id)
        if args.action == "status":
            return await _status(backend, rec, args, out)
        if args.action == "errors":
            return await _errors(backend, rec, args, out)
        if args.action == "wait":
            return await _wait(backend, rec, out)
        if args.action == "retry":
            return await _retry(backend, rec, args, out)
        return await _control(backend, rec, args.action, out)


async def _list(backend: Backend, args: argparse.Namespace, out: TextIO) -> int:
    runs = await backend.list_runs()
    if args.json:
        print_json(runs, out)
        return 0
    if not runs:
        print(f"no runs in {backend.url}", file=out)
    for r in runs:
        print(
            f"{r.run_id}  {r.workflow:<20} {r.status!s:<10} created {when(r.created_at)}"
            f"  pending {r.pending}",
            file=out,
        )
    return 0


async def _status(backend: Backend, rec: RunRecord, args: argparse.Namespace, out: TextIO) -> int:
    m = await backend.metrics(rec.run_id)
    code = 1 if rec.status in (RunStatus.FAILED, RunStatus.CANCELLED) else 0
    served = True
    graphs: list[str] = []
    if rec.status.live:
        live = await backend.workers()
        graphs = sorted({w.graph or w.queue for w in live})
        served = any(w.queue == rec.queue for w in live)
    if not served:
        serving = f"live workers serve {', '.join(graphs)}" if graphs else "no worker is live"
        print(
            f"floxide: warning: no live worker serves run {rec.run_id}'s graph "
            f"{rec.queue} ({serving})",
            file=sys.stderr,
        )
    if args.json:
        print_json({"run": rec, "metrics": m, "served": served}, out)
        return code
    print(f"{rec.run_id}: {rec.status} (workflow {rec.workflow})", file=out)
    print(f"  created {when(rec.created_at)}, finished {when(rec.finished_at)}", file=out)
    print(
        f"  items: {m.done} done, {m.in_flight} in flight, {m.queued} queued, "
        f"{m.failed} failed, {m.retried} retried",
        file=out,
    )
    for node, nm in sorted(m.per_node.items()):
        print(
            f"  {node}: {nm.count} steps, mean {nm.mean_seconds * 1000:.2f} ms, "
            f"max {nm.max_seconds * 1000:.2f} ms",
            file=out,
        )
    if rec.error:
        print(f"  error: {rec.error}", file=out)
    return code


async def _errors(backend: Backend, rec: RunRecord, args: argparse.Namespace, out: TextIO) -> int:
    errors = await backend.errors(rec.run_id)
    if args.json:
        print_json(errors, out)
        return 0
    if not errors:
        print(f"{rec.run_id}: no errors", file=out)
    for e in errors:
        flag = ", handled" if e.handled else ""
        print(
            f"{when(e.at)}  {e.node} item {e.item_id} attempt {e.attempt} [{e.kind}{flag}]: "
            f"{e.message}",
            file=out,
        )
        if e.traceback:
            for line in e.traceback.splitlines():
                print(f"    {line}", file=out)
    return 0


_WANTS = {
    "cancel": (RunStatus.CANCELLED, "it is {status}: only a live run can be cancelled"),
    "pause": (RunStatus.PAUSED, "it is {status}: only a pending or running run can be paused"),
    "resume": (RunStatus.RUNNING, "it is {status}: only a paused run can be resumed"),
}


async def _control(backend: Backend, rec: RunRecord, action: str, out: TextIO) -> int:
    wanted, why = _WANTS[action]
    allowed = {
        "cancel": rec.status.live,
        "pause": rec.status in (RunStatus.PENDING, RunStatus.RUNNING),
        "resume": rec.status is RunStatus.PAUSED,
    }[action]
    if allowed:
        after = await backend.control(rec.run_id, action)
        if after.status is wanted:
            print(f"{rec.run_id}: {after.status}", file=out)
            return 0
        rec = after
    hint = " (use `floxide runs retry`)" if rec.status is RunStatus.FAILED else ""
    raise CliError(f"cannot {action} run {rec.run_id}: {why.format(status=rec.status)}{hint}")


async def _retry(backend: Backend, rec: RunRecord, args: argparse.Namespace, out: TextIO) -> int:
    try:
        timeout = _params.timeout("--timeout", args.timeout)
    except (TypeError, ValueError) as e:
        raise CliError(str(e), 2) from e
    after = await retry_run(backend, rec.run_id, timeout)
    print(f"{rec.run_id}: {after.status}", file=out)
    return 0


async def _wait(backend: Backend, rec: RunRecord, out: TextIO) -> int:
    err = sys.stderr
    live = err.isatty()
    last = ""
    last_print = 0.0
    while not rec.status.finished:
        await fail_overdue(backend, rec)
        line = progress_line(await backend.metrics(rec.run_id), rec.status)
        now = time.monotonic()
        if live:
            print("\r\x1b[K" + line, end="", file=err, flush=True)
        elif line != last and now - last_print > 1.0:
            print(line, file=err, flush=True)
            last_print = now
        last = line
        await backend.wait_run(rec.run_id, 0.25)
        got = await backend.get_run(rec.run_id)
        if got is None:
            raise CliError(f"run {rec.run_id!r} disappeared from {backend.url}")
        rec = got
    line = progress_line(await backend.metrics(rec.run_id), rec.status)
    print(("\r\x1b[K" if live else "") + line, file=err, flush=True)
    if rec.status is not RunStatus.COMPLETED:
        raise CliError(str(run_error(rec, await backend.errors(rec.run_id))))
    outputs = await backend.outputs(rec.run_id)
    if not outputs:
        raise CliError(no_output_message(rec.workflow, rec.run_id))
    print(output_json(outputs[0].value, PayloadError), file=out)
    return 0
