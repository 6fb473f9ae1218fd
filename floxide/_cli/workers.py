"""`floxide workers`: the live workers, the graph each serves and its load."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from floxide._cli._common import add_backend, add_json, opened, print_json

__all__ = ["add"]


def add(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "workers", help="list live workers", description=__doc__
    )
    add_backend(p)
    add_json(p)
    p.set_defaults(handler=workers)


async def workers(args: argparse.Namespace, out: TextIO) -> int:
    async with opened(args.backend, read_only=True) as backend:
        found = await backend.workers()
        url = backend.url
    if args.json:
        print_json(found, out)
        return 0
    if not found:
        print(f"no live workers in {url}", file=out)
    now = time.time()
    for w in found:
        print(
            f"{w.worker_id}  {w.graph or w.queue}  {w.host} pid {w.pid}  "
            f"{w.in_flight}/{w.concurrency} busy  seen {now - w.last_seen:.0f}s ago",
            file=out,
        )
    return 0
