"""The parser, the entry point and the one-line error policy of the `floxide` command.

Exit codes: 0 success, 1 a failed command or run, 2 bad usage or bad input, 130 interrupted.
No user-caused problem prints a traceback (a closed pipe, bad `FLOXIDE_*` values, deep
JSON, a failing import): one line on stderr; `FLOXIDE_DEBUG=1` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import trio

from floxide._cli import check, graph, run, runs, ui, worker, workers
from floxide._errors import CliError, FloxideError, UnknownRunError

__all__ = ["COMMANDS", "main", "parser"]

COMMANDS: tuple[Any, ...] = (run, worker, runs, workers, graph, check, ui)
"""The subcommand modules, in the order `--help` lists them (each has `add(subparsers)`)."""

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (when it has one) after its help text."""


def parser() -> argparse.ArgumentParser:
    from floxide import __version__

    p = argparse.ArgumentParser(
        prog="floxide",
        description="Run and manage floxide workflows.",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"floxide {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def with_defaults(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", _Formatter)
        return add_parser(*args, **kwargs)

    sub.add_parser = with_defaults  # type: ignore[method-assign]
    for command in COMMANDS:
        command.add(sub)
    return p


def _debug() -> bool:
    return os.environ.get("FLOXIDE_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int, error: BaseException | None = None) -> int:
    print(f"floxide: error: {message}", file=sys.stderr)
    if error is not None and _debug():
        traceback.print_exception(error, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `floxide` console script; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        if getattr(args, "logs", False):
            _configure_logging()
        code: int = trio.run(args.handler, args, sys.stdout)
        return code
    except CliError as e:
        return _fail(str(e), e.exit_code, e)
    except UnknownRunError as e:
        return _fail(str(e).strip("'\""), 1, e)
    except FloxideError as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__, 1, e)
    except KeyboardInterrupt:
        print("floxide: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `floxide runs list | head -3`: the reader went away
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except RecursionError as e:
        return _fail("input is nested too deeply", 2, e)
    except Exception as e:  # a bug: still one line, the traceback on request
        hint = "" if _debug() else " (FLOXIDE_DEBUG=1 shows the traceback)"
        return _fail(f"internal error: {type(e).__name__}: {e}{hint}", 1, e)


def _configure_logging() -> None:
    """Worker logs on stderr, with run, node, item and attempt on every line."""
    level = os.environ.get("FLOXIDE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in _LEVELS:
        raise CliError(
            f"FLOXIDE_LOG_LEVEL must be one of {', '.join(_LEVELS)}, "
            f"got {os.environ.get('FLOXIDE_LOG_LEVEL')!r}",
            2,
        )
    root = logging.getLogger()
    root.setLevel(level)
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
