"""`floxide graph MODULE:ATTR`: print a workflow's graph (Mermaid or Graphviz dot), each
node with its In -> Out and wrappers, composite workflows as subgraphs."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from floxide._cli._common import load_workflow
from floxide._cli._drawing import dot, mermaid

__all__ = ["add"]


def add(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "graph", help="print a workflow's graph", description=__doc__
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="workflow instance or factory")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="output format")
    p.set_defaults(handler=graph)


async def graph(args: argparse.Namespace, out: TextIO) -> int:
    wf = load_workflow(args.target)
    print(dot(wf) if args.format == "dot" else mermaid(wf), end="", file=out)
    return 0
