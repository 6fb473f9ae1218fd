"""`floxide ui`: a web view of runs, their graphs, errors, outputs and workers.

Serves http://127.0.0.1:8000/ by default (`--host` to listen elsewhere; `--port 0` picks a
free port). Reads a backend (`--backend URL`) or a checkpoint store (`--checkpoints PATH`)
and never creates or changes a database file; the only writes are the run page's pause,
resume, cancel and retry buttons, which `--read-only` removes. Needs `floxide[ui]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from floxide._cli._common import DEFAULT_BACKEND, opened
from floxide._errors import BackendError, CheckpointError, CliError
from floxide.backends import open_backend

__all__ = ["add"]


def add(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ui", help="serve a web view of runs and workers", description=__doc__
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--backend",
        metavar="URL",
        help=f"backend URL: sqlite:///PATH, redis://HOST:PORT/DB, ... (default {DEFAULT_BACKEND})",
    )
    where.add_argument(
        "--checkpoints", metavar="PATH", help="an SQLite checkpoint store instead of a backend"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (0: any free one)")
    p.add_argument("--read-only", action="store_true", help="no pause/resume/cancel/retry buttons")
    p.set_defaults(handler=ui)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def _serving() -> Any:
    try:
        from floxide._ui import _serve
    except ImportError as e:
        raise CliError(
            f"floxide ui needs the ui extra: pip install 'floxide[ui]' ({e.name} is missing)", 2
        ) from e
    return _serve


async def ui(args: argparse.Namespace, out: TextIO) -> int:
    serving = _serving()
    if args.checkpoints is not None:
        from floxide._ui._checkpoints import CheckpointSource
        from floxide.checkpoints import SqliteCheckpointStore

        path = Path(args.checkpoints)
        if not path.is_file():
            raise CliError(f"no checkpoint store at {path}: the file does not exist", 2)
        try:
            async with SqliteCheckpointStore(path) as store:
                await store.list_runs()  # a file that is not a store fails here, not per page
                await serving.serve(CheckpointSource(store, str(path)), args.host, args.port, out)
        except CheckpointError as e:  # not a checkpoint store: the user's mistake
            raise CliError(str(e).splitlines()[0], 2) from e
        return 0
    from floxide._ui._data import BackendSource

    url = args.backend or DEFAULT_BACKEND
    try:
        probe = open_backend(url)  # a bad URL is the user's mistake: exit 2
    except BackendError as e:
        raise CliError(str(e), 2) from e
    await probe.aclose()
    try:
        async with opened(url, read_only=True) as backend:
            source = BackendSource(backend, read_only=args.read_only)
            await serving.serve(source, args.host, args.port, out)
    except CliError as e:
        e.exit_code = 2
        raise
    return 0
