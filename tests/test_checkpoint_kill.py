"""A checkpointed run SIGKILLed mid-way resumes in a new process and finishes correctly.

The run (tests/checkpoint_helpers/killable.py) records one line per node execution in an
effects file. After the kill and the resume, the final outputs equal an uninterrupted
run's, every step ran at least once, and only the steps in flight at the kill ran twice
(at most `max_concurrency` of them, none more than twice).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from floxide import Checkpoint, SqliteCheckpointStore
from tests.checkpoint_helpers import killable

ROOT = Path(__file__).resolve().parent.parent
SIZE = 12


def _helper(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.checkpoint_helpers.killable", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _clean_outputs(size: int) -> list[str]:
    async def main() -> list[str]:
        return await killable.make().run_all(killable.Ctx("sum"), size)

    killable.EFFECTS = os.devnull
    return trio.run(main)


def _effects(path: Path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().splitlines())


def _expected_steps(size: int) -> set[str]:
    squares = [n * n for n in range(size) if n % 5]
    return {
        f"prep:{size}",
        f"split:{size}",
        *(f"work:{n}" for n in range(size)),
        *(f"odd:{n}" for n in range(size) if n % 5 == 0),
        f"tally:{len(squares)}",
        f"report:{sum(squares)}",
    }


def _check_resumed(db: Path, effects: Path, size: int, killed_rc: int) -> collections.Counter[str]:
    assert killed_rc == -signal.SIGKILL
    before = _effects(effects)
    rc, out, err = _finish(_helper("resume", str(db), str(effects)))
    assert rc == 0, err
    assert json.loads(out) == _clean_outputs(size)
    counts = _effects(effects)
    assert set(counts) == _expected_steps(size)
    twice = [step for step, n in counts.items() if n > 1]
    assert all(counts[s] == 2 for s in twice), counts
    # only steps whose effect happened before the kill (in flight) may have run again
    assert all(s in before for s in twice)
    assert len(twice) <= killable.Killable.max_concurrency, twice
    return counts


@pytest.mark.parametrize(
    "kill_at",
    [
        "prep:1",  # the very first step
        "split:1",  # the step that fans out
        "work:1",  # first item of the fan-out
        "work:7",  # mid fan-out, several items in flight
        "odd:2",  # a routed branch
        "tally:1",  # inside the join node
        "report:1",  # after the join, before the last commit
    ],
)
def test_sigkill_then_resume_in_a_new_process(tmp_path: Path, kill_at: str) -> None:
    db, effects = tmp_path / "runs.db", tmp_path / "effects"
    rc, _, err = _finish(_helper("run", str(db), str(effects), "--kill-at", kill_at))
    assert str(kill_at.split(":")[0]) in effects.read_text(), err
    _check_resumed(db, effects, SIZE, rc)


def test_killed_from_outside_at_an_arbitrary_moment(tmp_path: Path) -> None:
    """The parent kills the run once it has done some work, wherever it is (even mid-commit)."""
    size = 40
    for lines in (5, 25):
        db, effects = tmp_path / f"runs{lines}.db", tmp_path / f"effects{lines}"
        effects.touch()
        proc = _helper("run", str(db), str(effects), "--size", str(size))
        deadline = time.monotonic() + 60
        while len(effects.read_text().splitlines()) < lines and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        rc, _, err = _finish(proc)
        if rc == 0:  # finished first: a resume returns the outputs without running anything
            before = effects.read_text()
            rc2, out, err = _finish(_helper("resume", str(db), str(effects)))
            assert rc2 == 0, err
            assert json.loads(out) == _clean_outputs(size)
            assert effects.read_text() == before
        else:
            _check_resumed(db, effects, size, rc)


def test_resuming_a_finished_run_runs_nothing(tmp_path: Path) -> None:
    db, effects = tmp_path / "runs.db", tmp_path / "effects"
    rc, out, err = _finish(_helper("run", str(db), str(effects)))
    assert rc == 0, err
    first = effects.read_text()
    rc, out2, err = _finish(_helper("resume", str(db), str(effects)))
    assert rc == 0, err
    assert out2 == out
    assert effects.read_text() == first

    async def status() -> Checkpoint[killable.Ctx]:
        async with SqliteCheckpointStore(db) as store:
            return await Checkpoint.load(killable.make(), store, killable.RUN_ID)

    cp = trio.run(status)
    assert cp.finished and not cp.items and not cp.join_state
