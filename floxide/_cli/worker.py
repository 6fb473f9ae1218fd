"""`floxide worker MODULE:ATTR`: lease and run the workflow's items until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from floxide import _params
from floxide._cli._common import add_backend, load_workflow, opened
from floxide._errors import CliError
from floxide.distributed import WorkerPool

__all__ = ["add"]


def add(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="run a worker until SIGTERM / SIGINT",
        description=__doc__ + " Reads FLOXIDE_LEASE_SECONDS (default 30), "
        "FLOXIDE_GRACE_SECONDS (default 30) and FLOXIDE_LOG_LEVEL (default INFO).",
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="workflow instance or factory")
    add_backend(p)
    p.add_argument("--concurrency", type=int, default=1, metavar="N", help="items run at once")
    p.set_defaults(handler=worker, logs=True)


async def worker(args: argparse.Namespace, out: TextIO) -> int:
    try:
        concurrency = _params.count("--concurrency", args.concurrency)
        lease = _params.env_seconds("FLOXIDE_LEASE_SECONDS", 30.0)
        grace = _params.env_seconds("FLOXIDE_GRACE_SECONDS", 30.0, zero=True)
    except (TypeError, ValueError) as e:
        raise CliError(str(e), 2) from e
    wf = load_workflow(args.target)
    async with opened(args.backend, read_only=False) as backend:
        pool = WorkerPool(
            wf, backend, concurrency=concurrency, lease_seconds=lease, grace_period=grace
        )
        await pool.run()
    return 0
