"""The `floxide` command: start runs, run workers, follow and steer runs, draw graphs.

    floxide run     MODULE:ATTR --input JSON [--context JSON] [--backend URL] [--run-id ID]
    floxide worker  MODULE:ATTR --backend URL [--concurrency N]
    floxide runs    list|status|wait|cancel|pause|resume|errors [RUN_ID] --backend URL
    floxide graph   MODULE:ATTR [--format mermaid|dot]

`MODULE:ATTR` names a workflow instance or a zero-argument factory returning one.
`--backend` defaults to `sqlite:///floxide.db`. Workers read `FLOXIDE_LEASE_SECONDS`
(default 30) and `FLOXIDE_GRACE_SECONDS` (default 30) from the environment. Errors are one
line on stderr; the exit code is 0 on success, 1 on failure, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import trio

from floxide import serde
from floxide._codec import output_json
from floxide._errors import BackendError, CliError, FloxideError, PayloadError
from floxide._step import check_run_id, no_output_message
from floxide._workflow import Workflow
from floxide.backends import (
    Backend,
    RunMetrics,
    RunRecord,
    RunStatus,
    open_backend,
)
from floxide.distributed import Orchestrator, UnknownRunError, WorkerPool, run_error
from floxide.distributed._orchestrator import fail_overdue

__all__ = ["load_workflow", "main", "progress_line"]

DEFAULT_BACKEND = "sqlite:///floxide.db"


def load_workflow(spec: str) -> Workflow[Any, Any, Any]:
    """Import `MODULE:ATTR`: a workflow instance or a zero-argument factory of one."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (e.g. myapp.flows:pipeline), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise CliError(f"cannot import module {module_name!r}: {e}") from e
    except Exception as e:
        raise CliError(f"importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CliError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not isinstance(target, Workflow) and callable(target):
        try:
            target = target()
        except Exception as e:
            raise CliError(f"calling {spec} failed: {type(e).__name__}: {e}") from e
    if not isinstance(target, Workflow):
        raise CliError(
            f"{spec} is a {type(target).__name__}, not a workflow instance or a factory of one"
        )
    return target


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"{what} is not valid JSON: {e}") from e


def _structure(data: Any, tp: Any, what: str) -> Any:
    try:
        return serde.structure(data, tp, path=what, error=FloxideError)
    except FloxideError as e:
        raise CliError(f"{what} is invalid: {e}") from e


def progress_line(metrics: RunMetrics, status: RunStatus, width: int = 30) -> str:
    """One line of progress: a bar (done / known total), done, in flight, failed, retried."""
    total = metrics.total_known
    done = metrics.done
    frac = done / total if total else 0.0
    filled = round(frac * width)
    bar = "#" * filled + "." * (width - filled)
    return (
        f"[{bar}] {done}/{total} done, {metrics.in_flight} in flight, "
        f"{metrics.failed} failed, {metrics.retried} retried ({status})"
    )


# -- commands ---------------------------------------------------------------------------
async def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    wf = load_workflow(args.target)
    ctx_type, in_type, _ = wf.graph.workflow_types()
    value = _structure(_json(args.input, "--input"), in_type, "--input")
    if args.context is not None:
        ctx = _structure(_json(args.context, "--context"), ctx_type, "--context")
    else:
        try:
            ctx = ctx_type()
        except Exception as e:
            raise CliError(
                f"--context is required: {serde.type_name(ctx_type)}() cannot be built "
                f"without arguments ({e})"
            ) from e
    if args.run_id is not None:
        try:
            check_run_id(args.run_id)
        except ValueError as e:
            raise CliError(f"--run-id: {e}") from None
    backend = open_backend(args.backend)
    try:
        run_id = await Orchestrator(wf, backend).start_run(ctx, value, run_id=args.run_id)
    finally:
        await backend.aclose()
    print(run_id, file=out)
    return 0


async def _cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    wf = load_workflow(args.target)
    if args.concurrency < 1:
        raise CliError(f"--concurrency must be at least 1, got {args.concurrency}")
    lease = float(os.environ.get("FLOXIDE_LEASE_SECONDS", "30"))
    grace = float(os.environ.get("FLOXIDE_GRACE_SECONDS", "30"))
    backend = open_backend(args.backend)
    pool = WorkerPool(
        wf, backend, concurrency=args.concurrency, lease_seconds=lease, grace_period=grace
    )
    try:
        await pool.run()
    finally:
        await backend.aclose()
    return 0


async def _record(backend: Backend, run_id: str | None) -> RunRecord:
    if not run_id:
        raise CliError("this command needs a RUN_ID")
    rec = await backend.get_run(run_id)
    if rec is None:
        raise CliError(f"no run {run_id!r} in {backend.url}")
    return rec


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


async def _cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    backend = open_backend(args.backend)
    try:
        async with backend.connected():
            return await _runs(backend, args, out)
    finally:
        await backend.aclose()


async def _runs(backend: Backend, args: argparse.Namespace, out: TextIO) -> int:
    action = args.action
    if action == "list":
        runs = await backend.list_runs()
        if not runs:
            print(f"no runs in {backend.url}", file=out)
        for r in runs:
            print(
                f"{r.run_id}  {r.workflow:<20} {r.status!s:<10} created {_when(r.created_at)}"
                f"  pending {r.pending}",
                file=out,
            )
        return 0
    rec = await _record(backend, args.run_id)
    if action == "status":
        m = await backend.metrics(rec.run_id)
        print(f"{rec.run_id}: {rec.status} (workflow {rec.workflow})", file=out)
        print(f"  created {_when(rec.created_at)}, finished {_when(rec.finished_at)}", file=out)
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
        return 1 if rec.status in (RunStatus.FAILED, RunStatus.CANCELLED) else 0
    if action in ("cancel", "pause", "resume"):
        after = await backend.control(rec.run_id, action)
        print(f"{rec.run_id}: {after.status}", file=out)
        return 0
    if action == "errors":
        errors = await backend.errors(rec.run_id)
        if not errors:
            print(f"{rec.run_id}: no errors", file=out)
        for e in errors:
            print(
                f"{_when(e.at)}  {e.node} item {e.item_id} attempt {e.attempt} [{e.kind}]: "
                f"{e.message}",
                file=out,
            )
        return 0
    assert action == "wait"
    return await _wait(backend, rec, out)


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
            print("\r" + line, end="", file=err, flush=True)
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
    print(("\r" if live else "") + line, file=err, flush=True)
    if rec.status is not RunStatus.COMPLETED:
        raise CliError(str(run_error(rec, await backend.errors(rec.run_id))))
    outputs = await backend.outputs(rec.run_id)
    if not outputs:
        raise CliError(no_output_message(rec.workflow, rec.run_id))
    print(output_json(outputs[0].value, PayloadError), file=out)
    return 0


async def _cmd_graph(args: argparse.Namespace, out: TextIO) -> int:
    wf = load_workflow(args.target)
    print(wf.to_dot() if args.format == "dot" else wf.to_mermaid(), file=out)
    return 0


# -- entry point ------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="floxide", description="Run and manage floxide workflows.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a distributed run and print its id")
    run.add_argument("target", metavar="MODULE:ATTR")
    run.add_argument("--input", required=True, metavar="JSON")
    run.add_argument("--context", metavar="JSON")
    run.add_argument("--backend", default=DEFAULT_BACKEND, metavar="URL")
    run.add_argument("--run-id", metavar="ID")

    worker = sub.add_parser("worker", help="run a worker until SIGTERM / SIGINT")
    worker.add_argument("target", metavar="MODULE:ATTR")
    worker.add_argument("--backend", default=DEFAULT_BACKEND, metavar="URL")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N")

    runs = sub.add_parser("runs", help="list, follow and steer runs")
    runs.add_argument(
        "action", choices=("list", "status", "wait", "cancel", "pause", "resume", "errors")
    )
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID")
    runs.add_argument("--backend", default=DEFAULT_BACKEND, metavar="URL")

    graph = sub.add_parser("graph", help="print a workflow's graph")
    graph.add_argument("target", metavar="MODULE:ATTR")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    return p


_COMMANDS = {"run": _cmd_run, "worker": _cmd_worker, "runs": _cmd_runs, "graph": _cmd_graph}


def _fail(message: str) -> NoReturn:
    print(f"floxide: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `floxide` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "runs" and args.action != "list" and not args.run_id:
        _parser().error(f"runs {args.action} needs a RUN_ID")
    if args.command == "worker":
        _configure_logging()
    try:
        return trio.run(_COMMANDS[args.command], args, sys.stdout)
    except CliError as e:
        _fail(str(e))
    except UnknownRunError as e:
        _fail(str(e))
    except (BackendError, FloxideError) as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        print("floxide: interrupted", file=sys.stderr)
        return 130


def _configure_logging() -> None:
    """Worker logs on stderr, with run, node, item and attempt on every line."""
    root = logging.getLogger()
    root.setLevel(os.environ.get("FLOXIDE_LOG_LEVEL", "INFO").upper())
    logging.getLogger("coredis").setLevel(logging.WARNING)  # its retries are ours to log
    if any(getattr(h, "_floxide", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [run=%(run_id)s node=%(node)s "
            "item=%(item_id)s attempt=%(attempt)s] %(message)s"
        )
    )
    handler.addFilter(_fill_fields)
    handler._floxide = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def _fill_fields(record: logging.LogRecord) -> bool:
    """Give records from other loggers the run/node/item/attempt fields the format uses."""
    for name in ("run_id", "node", "item_id", "attempt"):
        if not hasattr(record, name):
            setattr(record, name, "-")
    return True


if __name__ == "__main__":
    sys.exit(main())
