"""The tutorial's code (examples/tutorial/, included in docs/tutorial.md) runs as the page says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from examples.tutorial import run_checkpoint, run_distributed, run_local, tickets
from floxide import Next
from floxide.distributed import RunStatus

ROOT = Path(__file__).resolve().parent.parent
REPLIES = [
    tickets.Reply("T-1", "paged ada: down"),
    tickets.Reply("T-2", "queued for tomorrow"),
    tickets.Reply("T-3", "e-mailed the team: data loss"),
]


async def test_local_runs(autojump_clock: trio.testing.MockClock) -> None:
    step, first, reply, summary, ctx = await run_local.main()
    ticket = tickets.Ticket("T-1", "Checkout is down")
    assert step == Next(tickets.Urgent(ticket, "down"))
    assert first == tickets.Routine(tickets.Ticket("T-2", "Typo on a page"))
    assert reply == tickets.Reply("T-1", "paged grace: down")
    assert summary == tickets.Summary(REPLIES)
    assert (ctx.handled.value, set(ctx.paged)) == (3, {"T-1"})


async def test_checkpointed_run(tmp_path: Path) -> None:
    summary, again, handled = await run_checkpoint.main(str(tmp_path / "cp.db"))
    assert summary == again == tickets.Summary(REPLIES)
    assert handled == 3


async def test_distributed_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    summary, status, ctx, errors = await run_distributed.main(url)
    assert summary == tickets.Summary(REPLIES)
    assert status is RunStatus.COMPLETED
    assert (ctx.handled.value, set(ctx.paged)) == (3, {"T-1"})
    assert errors == 2  # page tried T-3 twice; the fallback took over


def test_tickets_json_is_the_tutorial_batch() -> None:
    raw = json.loads((ROOT / "examples" / "tutorial" / "tickets.json").read_text())
    assert [tickets.Ticket(**t) for t in raw] == tickets.TICKETS


@pytest.mark.parametrize("backend_kind", ["sqlite", "redis", "postgres"], indirect=True)
def test_command_line_session(backend_url: str) -> None:
    """The tutorial's shell session, on the embedded default and on both servers."""
    env = dict(os.environ, DB=backend_url, FLOXIDE_LOG_LEVEL="ERROR")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "tutorial" / "cli.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {
        "replies": [{"ticket_id": r.ticket_id, "action": r.action} for r in REPLIES]
    }
    assert "page item" in done.stdout and "PagerError: the pager refused T-3" in done.stdout
    assert "Triage" in lines[-1] and "completed" in lines[-1]
