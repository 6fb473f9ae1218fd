"""The `floxide` command: start runs, run workers, follow and steer runs, draw graphs.

    floxide --version
    floxide run     MODULE:ATTR --input JSON|@FILE|- [--context JSON|@FILE|-] [--backend URL]
                    [--run-id ID] [--timeout SECONDS]
    floxide worker  MODULE:ATTR --backend URL [--concurrency N]
    floxide runs    list|status|wait|cancel|pause|resume|retry|errors [RUN_ID] --backend URL
                    [--json]
    floxide workers --backend URL [--json]
    floxide graph   MODULE:ATTR [--format mermaid|dot]

`MODULE:ATTR` names a workflow instance or a zero-argument factory returning one.
`--backend` defaults to `sqlite:///floxide.db`. Workers read `FLOXIDE_LEASE_SECONDS`
(default 30), `FLOXIDE_GRACE_SECONDS` (default 30) and `FLOXIDE_LOG_LEVEL` (default INFO).
Errors are one line on stderr (`FLOXIDE_DEBUG=1` adds the traceback); the exit code is 0
on success, 1 for a failed command or run, 2 for bad usage or bad input. The subcommands
live in `floxide._cli`, one module each.
"""

from __future__ import annotations

import sys

from floxide._cli._common import load_workflow, progress_line
from floxide._cli._main import main
from floxide._public import publish

__all__ = ["load_workflow", "main", "progress_line"]

publish(__name__, globals())
del publish


if __name__ == "__main__":
    sys.exit(main())
