"""`floxide run MODULE:ATTR --input JSON`: start a distributed run and print its id."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from floxide import _params, serde
from floxide._cli._common import add_backend, exact, json_arg, load_workflow, opened
from floxide._errors import CliError
from floxide.distributed import Orchestrator

__all__ = ["add"]


def add(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="start a distributed run and print its id", description=__doc__
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="workflow instance or factory")
    p.add_argument(
        "--input", required=True, metavar="JSON", help="the run's input: JSON, @FILE or - (stdin)"
    )
    p.add_argument(
        "--context",
        metavar="JSON",
        help="the run's context: JSON, @FILE or - (default: the context class's defaults)",
    )
    add_backend(p)
    p.add_argument("--run-id", metavar="ID", help="the run's id (default: a random one)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="fail the run after this long")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.input == "-" and args.context == "-":
        raise CliError("--input and --context cannot both be read from stdin", 2)
    try:
        timeout = _params.timeout("--timeout", args.timeout)
    except (TypeError, ValueError) as e:
        raise CliError(str(e), 2) from e
    wf = load_workflow(args.target)
    ctx_type, in_type, _ = wf.graph.workflow_types()
    value = exact(json_arg(args.input, "--input"), in_type, "--input")
    if args.context is not None:
        ctx = exact(json_arg(args.context, "--context"), ctx_type, "--context")
    else:
        try:
            ctx = ctx_type()
        except Exception as e:
            raise CliError(
                f"--context is required: {serde.type_name(ctx_type)}() cannot be built "
                f"without arguments ({e})",
                2,
            ) from e
    async with opened(args.backend, read_only=False) as backend:
        try:
            run_id = await Orchestrator(wf, backend).start_run(
                ctx, value, run_id=args.run_id, timeout=timeout
            )
        except ValueError as e:  # an id no backend accepts
            raise CliError(str(e), 2) from e
    print(run_id, file=out)
    return 0
