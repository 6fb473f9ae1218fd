"""examples/checkpoint.py produces its documented result, in process and as a program.

On the real clock: the example's SQLite commits run in worker threads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples import checkpoint

ROOT = Path(__file__).resolve().parent.parent


async def test_checkpoint_example(tmp_path: Path) -> None:
    result = await checkpoint.main(str(tmp_path / "runs.db"))
    assert result == {
        "failed_status": "failed",
        "pending": ["d3"],
        "result": "docs: 5 documents, 460 words",
        "rerun": ["d3"],
        "again": "docs: 5 documents, 460 words",
        "runs": [("ingest-1", "finished")],
    }


def test_checkpoint_example_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.checkpoint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "resumed: docs: 5 documents, 460 words - indexed again: ['d3']" in done.stdout
