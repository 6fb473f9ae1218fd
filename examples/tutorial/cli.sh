#!/usr/bin/env bash
# The tutorial's command-line session, run from the repository's root (the tests run it).
set -euo pipefail
DB=${DB:-sqlite:///tickets.db}
# --8<-- [start:session]
RUN=$(floxide run examples.tutorial.tickets:triage \
        --input @examples/tutorial/tickets.json --backend "$DB")
floxide worker examples.tutorial.tickets:triage --backend "$DB" --concurrency 4 &
WORKER=$!
floxide runs wait "$RUN" --backend "$DB"     # live progress on stderr, the output as JSON
floxide runs errors "$RUN" --backend "$DB"   # page's two failed attempts on T-3, handled
floxide runs list --backend "$DB"
kill -TERM "$WORKER" && wait "$WORKER"       # a graceful stop: exit 0
# --8<-- [end:session]
