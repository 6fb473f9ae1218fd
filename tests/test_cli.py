"""The `floxide` command line: run, worker, runs ..., graph; clear one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from floxide.backends import RunMetrics, RunStatus
from floxide.cli import load_workflow, main, progress_line
from tests.distributed_workflows import worker_env

SPEC = "tests.distributed_workflows:fan_join"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def start_worker(url: str, spec: str = SPEC) -> subprocess.Popen[bytes]:
    env = worker_env()
    env.update(FLOXIDE_LOG_LEVEL="WARNING", FLOXIDE_LEASE_SECONDS="5")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "floxide.cli",
            "worker",
            spec,
            "--backend",
            url,
            "--concurrency",
            "2",
        ],
        env=env,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_run_worker_wait_status_errors_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = cli(capsys, "run", SPEC, "--input", "5", "--backend", url, "--run-id", "r1")
    assert (code, out.strip()) == (0, "r1")
    code, out, _ = cli(capsys, "runs", "list", "--backend", url)
    assert code == 0 and "r1" in out and "FanJoin" in out and "pending" in out
    worker = start_worker(url)
    try:
        code, out, err = cli(capsys, "runs", "wait", "r1", "--backend", url)
    finally:
        assert stop(worker) == 0  # SIGTERM: graceful, exit 0
    assert (code, out.strip()) == (0, "30")
    assert "7/7 done" in err and "completed" in err
    code, out, _ = cli(capsys, "runs", "status", "r1", "--backend", url)
    assert code == 0 and "completed" in out and "square: 5 steps" in out
    code, out, _ = cli(capsys, "runs", "errors", "r1", "--backend", url)
    assert (code, out.strip()) == (0, "r1: no errors")


def test_cancel_pause_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(capsys, "run", SPEC, "--input", "3", "--backend", url, "--run-id", "a")[0] == 0
    assert cli(capsys, "runs", "pause", "a", "--backend", url)[1].strip() == "a: paused"
    assert cli(capsys, "runs", "resume", "a", "--backend", url)[1].strip() == "a: running"
    assert cli(capsys, "runs", "cancel", "a", "--backend", url)[1].strip() == "a: cancelled"
    code, _, err = cli(capsys, "runs", "wait", "a", "--backend", url)
    assert code == 1 and "was cancelled" in err
    code, out, _ = cli(capsys, "runs", "status", "a", "--backend", url)
    assert code == 1 and "cancelled" in out


def test_context_argument_and_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    spec = "tests.distributed_workflows:NoFallback"
    args = ("--backend", url)
    code, _, err = cli(capsys, "run", spec, "--input", "1", *args)
    assert code == 1 and "calling tests.distributed_workflows:NoFallback failed" in err
    wf = "tests.cli_workflows:no_fallback"
    code, out, _ = cli(capsys, "run", wf, "--input", "-2", "--context", '{"steps": 3}', *args)
    assert code == 0
    run_id = out.strip()
    worker = start_worker(url, wf)
    try:
        code, out, err = cli(capsys, "runs", "wait", run_id, *args)
    finally:
        stop(worker)
    assert code == 1 and "negative input -2" in err and err.count("\n") >= 1
    code, out, _ = cli(capsys, "runs", "errors", run_id, *args)
    assert "inc item 0 attempt 1 [node]: ValueError: negative input -2" in out


def test_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "graph", SPEC)
    assert code == 0 and out.startswith("flowchart") and "square" in out
    code, out, _ = cli(capsys, "graph", SPEC, "--format", "dot")
    assert code == 0 and out.startswith("digraph")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["graph", "nosuch_module_x:wf"], "cannot import module 'nosuch_module_x'"),
        (["graph", "tests.distributed_workflows:missing"], "has no attribute 'missing'"),
        (["graph", "tests.distributed_workflows"], "expected MODULE:ATTR"),
        (["graph", "tests.distributed_workflows:Ctx"], "not a workflow"),
        (["run", SPEC, "--input", "{oops", "--backend", "memory://"], "--input is not valid JSON"),
        (["run", SPEC, "--input", '"x"', "--backend", "memory://"], "--input is invalid"),
        (["runs", "list", "--backend", "redis://127.0.0.1:1/0"], "redis://127.0.0.1:1/0"),
        (["runs", "status", "nope", "--backend", "memory://"], "no run 'nope'"),
        (["runs", "list", "--backend", "ftp://x"], "unknown backend URL"),
        (["worker", SPEC, "--backend", "memory://", "--concurrency", "0"], "--concurrency"),
        (["worker", SPEC, "--backend", "redis://127.0.0.1:1/0"], "redis://127.0.0.1:1/0"),
    ],
)
def test_errors_are_one_clear_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, *args)
    bad_input = "--input" in args or "--concurrency" in args
    assert code == (2 if bad_input else 1)  # API.md 13: exit 2 for bad input
    assert err.startswith("floxide: error: ") and err.count("\n") == 1
    assert message in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "runs", "wait", "--backend", "memory://")[0] == 2
    assert cli(capsys, "bogus")[0] == 2


def test_unreachable_redis_names_url_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = cli(capsys, "runs", "status", "x", "--backend", "redis://127.0.0.1:1/0")
    assert code == 1 and "Redis at redis://127.0.0.1:1/0 is unreachable" in err
    assert time.monotonic() - started < 60


def test_progress_line_and_loader() -> None:
    line = progress_line(RunMetrics(done=5, in_flight=2, queued=3, failed=1), RunStatus.RUNNING)
    assert line.startswith("[###############...............] 5/10 done, 2 in flight, 1 failed")
    assert load_workflow(SPEC).graph.name == "FanJoin"
