"""What several subcommands share: workflows, JSON arguments, backends, output."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO

import attrs

from floxide import serde
from floxide._errors import CliError
from floxide._workflow import Workflow
from floxide.backends import Backend, RunMetrics, RunRecord, RunStatus, open_backend
from floxide.backends._sqlite import SqliteBackend

__all__ = [
    "DEFAULT_BACKEND",
    "Handler",
    "add_backend",
    "add_json",
    "exact",
    "json_arg",
    "load_workflow",
    "opened",
    "print_json",
    "progress_line",
    "record",
    "when",
]

DEFAULT_BACKEND = "sqlite:///floxide.db"

Handler = Callable[[argparse.Namespace, TextIO], Awaitable[int]]
"""A subcommand: its parsed arguments and stdout; returns the exit code."""


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        metavar="URL",
        help="backend URL: sqlite:///PATH, redis://, postgresql://, memory://",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


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


def json_arg(text: str, what: str) -> Any:
    """The JSON an argument gives: inline, `@FILE` (a file's content) or `-` (stdin)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise CliError(f"{what}: cannot read {text[1:]!r}: {e.strerror}", 2) from e
        except UnicodeDecodeError as e:
            raise CliError(f"{what}: {text[1:]!r} is not UTF-8 text", 2) from e
    try:
        return json.loads(text)
    except RecursionError:
        raise CliError(f"{what} is nested too deeply", 2) from None
    except ValueError as e:
        raise CliError(f"{what} is not valid JSON: {e}", 2) from e


def exact(data: Any, tp: Any, what: str) -> Any:
    """`data` as a value of `tp`, which it must fit exactly (exit 2 with its JSON path)."""
    try:
        return serde.structure_exact(data, tp, path="$", error=ValueError, what="the value")
    except ValueError as e:
        raise CliError(f"{what} is invalid: {e}", 2) from e


@asynccontextmanager
async def opened(url: str, *, read_only: bool) -> AsyncIterator[Backend]:
    """The backend `url` names, connected; a read-only command never creates a file."""
    backend = open_backend(url)
    try:
        if read_only and isinstance(backend, SqliteBackend) and not backend.path.is_file():
            raise CliError(f"no SQLite backend at {backend.url}: {backend.path} does not exist")
        async with backend.connected():
            yield backend
    finally:
        await backend.aclose()


async def record(backend: Backend, run_id: str) -> RunRecord:
    rec = await backend.get_run(run_id)
    if rec is None:
        raise CliError(f"no run {run_id!r} in {backend.url}")
    return rec


def when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def jsonable(value: Any) -> Any:
    """attrs records (runs, errors, metrics, workers) as JSON data; bytes are left out."""
    if attrs.has(type(value)):
        return {
            k: jsonable(v)
            for k, v in attrs.asdict(value, recurse=False).items()
            if not isinstance(v, bytes)
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(jsonable(value), indent=2, ensure_ascii=False), file=out)


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
