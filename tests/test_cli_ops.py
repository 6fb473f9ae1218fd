"""The command line against real worker processes: tracebacks, retrying failed runs,
workers, wrong-state errors, exact input, read-only commands, one-line errors (issue 11).

Every command runs as a subprocess (`python -m floxide.cli`), on SQLite and Redis.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.distributed_workflows import worker_env

FALLBACK = "tests.cli_workflows:with_fallback"
FAILS_ONCE = "tests.cli_workflows:fails_once"
FLAKY = "tests.cli_workflows:flaky"
NO_FALLBACK = "tests.cli_workflows:no_fallback"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    server = request.getfixturevalue("redis_server")
    return f"redis://127.0.0.1:{server.port}/0?prefix=ops{time.time_ns()}"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = worker_env()
    env.pop("FLOXIDE_DEBUG", None)
    env.update({"FLOXIDE_TEST_DIR": str(tmp_path), "FLOXIDE_LEASE_SECONDS": "5", **extra})
    return env


def floxide(
    tmp_path: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floxide.cli", *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(spec: str, backend: str) -> subprocess.Popen[str]:
        log = open(tmp_path / f"worker{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "floxide.cli", "worker", spec, "--backend", backend],
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_worker(tmp_path: Path, backend: str, n: int = 1) -> list[dict[str, object]]:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        r = floxide(tmp_path, "workers", "--backend", backend, "--json")
        if r.returncode == 0:
            found: list[dict[str, object]] = json.loads(r.stdout)
            if len(found) >= n:
                return found
        time.sleep(0.2)
    raise AssertionError("no worker registered")


def test_tracebacks_handled_failures_and_log_levels(
    tmp_path: Path, url: str, worker: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    run = floxide(tmp_path, "run", FALLBACK, "--input", "-3", "--backend", url)
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    w = worker(FALLBACK, url)
    waited = floxide(tmp_path, "runs", "wait", run_id, "--backend", url)
    assert (waited.returncode, waited.stdout.strip()) == (0, '"rescued -3"')
    errors = floxide(tmp_path, "runs", "errors", run_id, "--backend", url)
    assert "inc item 0 attempt 1 [node, handled]: ValueError: negative input -3" in errors.stdout
    assert "Traceback (most recent call last)" in errors.stdout
    assert "in process" in errors.stdout  # the node's own frame
    data = json.loads(
        floxide(tmp_path, "runs", "errors", run_id, "--backend", url, "--json").stdout
    )
    assert data[0]["handled"] is True and "ValueError" in data[0]["traceback"]
    status = floxide(tmp_path, "runs", "status", run_id, "--backend", url, "--json")
    assert json.loads(status.stdout)["metrics"]["failed"] == 1
    w.send_signal(signal.SIGTERM)
    w.wait(30)
    log = (tmp_path / "worker0.log").read_text()
    assert " ERROR floxide.worker " in log and "Traceback" in log and "fallback" in log


def test_retried_attempts_are_recorded_at_warning(
    tmp_path: Path, url: str, worker: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    run_id = floxide(tmp_path, "run", FLAKY, "--input", "4", "--backend", url).stdout.strip()
    w = worker(FLAKY, url)
    waited = floxide(tmp_path, "runs", "wait", run_id, "--backend", url)
    assert waited.stdout.strip() == '"done 40"', waited.stderr
    errors = json.loads(
        floxide(tmp_path, "runs", "errors", run_id, "--backend", url, "--json").stdout
    )
    assert [(e["attempt"], e["handled"]) for e in errors] == [(1, True)]
    assert "ConnectionError: flaky call 1 for 4" in errors[0]["traceback"]
    w.send_signal(signal.SIGTERM)
    w.wait(30)
    assert " WARNING floxide.worker " in (tmp_path / "worker0.log").read_text()


def test_retry_a_failed_run_and_wrong_states(
    tmp_path: Path, url: str, worker: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    args = ("--backend", url)
    run_id = floxide(tmp_path, "run", FAILS_ONCE, "--input", "2", *args).stdout.strip()
    worker(FAILS_ONCE, url)
    failed = floxide(tmp_path, "runs", "wait", run_id, *args)
    assert failed.returncode == 1 and "flaky call 1 for 2" in failed.stderr
    for action in ("resume", "pause", "cancel"):
        r = floxide(tmp_path, "runs", action, run_id, *args)
        assert r.returncode == 1 and f"cannot {action} run {run_id}" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert "runs retry" in floxide(tmp_path, "runs", "resume", run_id, *args).stderr
    retried = floxide(tmp_path, "runs", "retry", run_id, *args)
    assert retried.returncode == 0, retried.stderr
    # the live worker may finish the run before the command reads it back
    assert retried.stdout.strip() in (f"{run_id}: running", f"{run_id}: completed")
    done = floxide(tmp_path, "runs", "wait", run_id, *args)
    assert (done.returncode, done.stdout.strip()) == (0, '"done 20"'), done.stderr
    again = floxide(tmp_path, "runs", "retry", run_id, *args)
    assert again.returncode == 1 and "it completed" in again.stderr
    cancel = floxide(tmp_path, "runs", "cancel", run_id, *args)
    assert cancel.returncode == 1 and "only a live run can be cancelled" in cancel.stderr
    missing = floxide(tmp_path, "runs", "retry", "nope", *args)
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr


def test_workers_and_unserved_runs(
    tmp_path: Path, url: str, worker: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    args = ("--backend", url)
    run_id = floxide(tmp_path, "run", NO_FALLBACK, "--input", "1", *args).stdout.strip()
    none = floxide(tmp_path, "workers", *args)
    assert none.returncode == 0 and "no live workers" in none.stdout
    lonely = floxide(tmp_path, "runs", "status", run_id, *args)
    assert "no live worker serves run" in lonely.stderr and "no worker is live" in lonely.stderr
    worker(FALLBACK, url)
    (info,) = _wait_for_worker(tmp_path, url)
    assert "WithFallback@" in str(info["graph"]) and info["in_flight"] == 0
    text = floxide(tmp_path, "workers", *args).stdout
    assert "WithFallback@" in text and "0/1 busy" in text
    status = floxide(tmp_path, "runs", "status", run_id, *args)
    assert status.returncode == 0 and "pending" in status.stdout
    assert "no live worker serves run" in status.stderr and "WithFallback@" in status.stderr


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("1.5", "$: expected an integer, got 1.5"),
        ("true", "$: expected a number, got True"),
        ('"5"', "expected a number, got '5'"),
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ],
)
def test_exact_input(tmp_path: Path, given: str, path: str) -> None:
    db = tmp_path / "in.db"
    r = floxide(tmp_path, "run", FALLBACK, "--input", given, "--backend", f"sqlite:///{db}")
    assert r.returncode == 2 and path in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not db.exists()  # nothing stored


def test_context_unknown_keys_and_input_files(tmp_path: Path) -> None:
    backend = ("--backend", "memory://")
    r = floxide(tmp_path, "run", FALLBACK, "--input", "1", "--context", '{"stepz": 1}', *backend)
    assert r.returncode == 2 and "--context" in r.stderr and "unknown key 'stepz'" in r.stderr
    (tmp_path / "in.json").write_text("7")
    assert floxide(tmp_path, "run", FALLBACK, "--input", "@in.json", *backend).returncode == 0
    assert floxide(tmp_path, "run", FALLBACK, "--input", "-", *backend, stdin="7").returncode == 0
    missing = floxide(tmp_path, "run", FALLBACK, "--input", "@nope.json", *backend)
    assert missing.returncode == 2 and "cannot read 'nope.json'" in missing.stderr


def test_read_only_commands_never_create_or_change_files(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    for args in (("runs", "list"), ("runs", "status", "x"), ("workers",), ("runs", "errors", "x")):
        r = floxide(tmp_path, *args, "--backend", f"sqlite:///{db}")
        assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
        assert not db.exists()
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    for args in (("runs", "list"), ("run", FALLBACK, "--input", "1")):
        r = floxide(tmp_path, *args, "--backend", f"sqlite:///{foreign}")
        assert r.returncode == 1 and "tables floxide's backend did not create" in r.stderr
    assert foreign.read_bytes() == before
    assert not Path(f"{foreign}-wal").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLOXIDE_LEASE_SECONDS": "abc"}, "FLOXIDE_LEASE_SECONDS"),
        ({"FLOXIDE_LEASE_SECONDS": "nan"}, "FLOXIDE_LEASE_SECONDS"),
        ({"FLOXIDE_LEASE_SECONDS": "-5"}, "FLOXIDE_LEASE_SECONDS"),
        ({"FLOXIDE_GRACE_SECONDS": "inf"}, "FLOXIDE_GRACE_SECONDS"),
        ({"FLOXIDE_LOG_LEVEL": "LOUD"}, "FLOXIDE_LOG_LEVEL"),
    ],
)
def test_bad_environment_is_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    r = floxide(tmp_path, "worker", FALLBACK, "--backend", "memory://", **env)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_basics(tmp_path: Path) -> None:
    from floxide import __version__

    v = floxide(tmp_path, "--version")
    assert (v.returncode, v.stdout.strip()) == (0, f"floxide {__version__}")
    helped = floxide(tmp_path, "run", "--help").stdout
    assert "(default: sqlite:///floxide.db)" in helped and "@FILE" in helped
    assert floxide(tmp_path, "runs", "list", "extra", "--backend", "memory://").returncode == 2
    usage = floxide(tmp_path, "runs", "status", "--backend", "memory://")
    assert usage.returncode == 2 and "floxide runs status" in usage.stderr
    failing = floxide(tmp_path, "graph", "broken_mod:wf")
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('boom')\n")
    failing = floxide(tmp_path, "graph", "broken_mod:wf")
    assert failing.returncode == 1 and failing.stderr.count("\n") == 1 and "boom" in failing.stderr
    debug = floxide(tmp_path, "graph", "broken_mod:wf", FLOXIDE_DEBUG="1")
    assert "Traceback" in debug.stderr and "broken_mod.py" in debug.stderr


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'many.db'}"
    for i in range(40):
        floxide(tmp_path, "run", FALLBACK, "--input", str(i), "--backend", db, "--run-id", f"r{i}")
    proc = subprocess.Popen(
        f"{sys.executable} -m floxide.cli runs list --backend {db} | head -1",
        shell=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_graph_draws_types_wrappers_and_composites(tmp_path: Path) -> None:
    spec = "tests.cli_workflows:nested"
    drawn = floxide(tmp_path, "graph", spec)
    assert drawn.returncode == 0, drawn.stderr
    text = drawn.stdout
    assert "first: Inc [retry x3, timeout 5s]<br/>int -> int" in text
    assert 'subgraph n2["inner: CompositeNode<br/>int -> str"]' in text
    assert "inc: Inc<br/>int -> int" in text and "done: Done<br/>int -> str" in text
    dot = floxide(tmp_path, "graph", spec, "--format", "dot").stdout
    assert dot.startswith('digraph "Nested"') and "subgraph cluster_n2" in dot
