"""`floxide check MODULE [MODULE ...]`: the plugin's type rules at run time, without mypy."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from floxide._typecheck import add_check_command, run_check

__all__ = ["add"]


def add(sub: Any) -> None:
    add_check_command(sub)
    sub.choices["check"].set_defaults(handler=check)


async def check(args: argparse.Namespace, out: TextIO) -> int:
    return run_check(args, out, sys.stderr)
