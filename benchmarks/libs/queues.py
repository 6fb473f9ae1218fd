"""What the task-queue peers (Celery, Dramatiq) share: a throw-away redis-server, their
worker processes, and the fan-out and chain measured exactly as floxide's (common.py).

An adapter gives `Queue`: the command of one worker process and two calls, `fanout(n)`
(submit n branches and their join, return the join's value) and `chain(start, steps)`
(submit `steps` stamping tasks in a chain, return the last one's list).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from common import (
    CHAIN_STEPS,
    NotAvailable,
    Scratch,
    chain_record,
    check_stamps,
    fanout_record,
    redis_call,
    redis_command_counts,
    redis_server,
)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL_VAR = "BENCH_REDIS_URL"


class Queue:
    """One task-queue library: its worker command and how to submit the two workloads."""

    def worker_command(self, mode: str) -> list[str]:
        raise NotImplementedError

    def fanout(self, n: int) -> int:
        raise NotImplementedError

    def chain(self, start: list[int], steps: int) -> list[int]:
        raise NotImplementedError


READY_VAR = "BENCH_READY_DIR"
START_S = 60


def announce_ready() -> None:
    """Called by a worker process once it consumes: a file named by its pid (a worker's
    stdout may be redirected by its library, so the file, not a printed line)."""
    folder = os.environ.get(READY_VAR)
    if folder:
        with open(os.path.join(folder, str(os.getpid())), "w"):
            pass


@contextlib.contextmanager
def _workers(cmd: list[str], count: int, url: str, scratch: Scratch) -> Iterator[None]:
    """`count` worker processes of `cmd`, started once each announced it is ready; their
    output goes to files (a full pipe would block a chatty worker)."""
    ready = os.path.join(scratch.path, "ready")
    os.makedirs(ready)
    env = {**os.environ, URL_VAR: url, READY_VAR: ready, "PYTHONPATH": HERE}
    logs = [scratch.file("worker", ".log") for _ in range(count)]
    procs = []
    for log in logs:
        with open(log, "w") as out:
            procs.append(subprocess.Popen(cmd, cwd=HERE, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.monotonic() + START_S
        while len(os.listdir(ready)) < count:
            dead = next((log for p, log in zip(procs, logs, strict=True)
                         if p.poll() is not None), None)
            if dead is not None or time.monotonic() > deadline:
                with open(dead or logs[0]) as f:
                    err = f.read()
                raise RuntimeError(f"worker did not start: {err.strip()[-600:]}")
            time.sleep(0.05)
        yield
    finally:
        for p in procs:  # the whole session: a worker's own child processes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.communicate()


def measure(make: Callable[[str], Queue], library: str, mode: str, n: int, reps: int,
            workers: int) -> dict[str, Any]:
    """`redis`: the n-branch fan-out + join, items/s; `redis-chain`: the chain's latency."""
    if mode not in ("redis", "redis-chain"):
        raise NotAvailable(f"{library} runs on Redis only")
    scratch = Scratch(f"{library}-dist")
    try:
        with redis_server(scratch) as url:
            os.environ[URL_VAR] = url  # the tasks' module reads it when first imported
            q = make(url)
            with _workers(q.worker_command(mode), workers, url, scratch):
                redis_call(url, "CONFIG", "RESETSTAT")
                rec = _chain(q, reps) if mode == "redis-chain" else _fanout(q, n, reps)
                calls = redis_command_counts(url)
            rec["redis_commands"] = calls
            rec["redis_commands_per_item"] = sum(calls.values()) / rec["items_total"]
            rec.update(workers=workers, backend="redis")
            return rec
    finally:
        scratch.cleanup()


def _fanout(q: Queue, n: int, reps: int) -> dict[str, Any]:
    if q.fanout(10) != 45:  # warm-up: connections and imports in the workers
        raise AssertionError("wrong result at n=10")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = q.fanout(n)
        times.append(time.perf_counter() - t0)
        if out != n * (n - 1) // 2:
            raise AssertionError(f"wrong result at n={n}: {out!r:.200}")
    return fanout_record(times, n, 12)


def _chain(q: Queue, reps: int) -> dict[str, Any]:
    q.chain([time.time_ns()], CHAIN_STEPS)  # warm-up
    outs: list[list[int]] = []
    walls: list[float] = []
    for _ in range(max(reps, 5)):
        t0 = time.perf_counter()
        out = q.chain([time.time_ns()], CHAIN_STEPS)
        walls.append(time.perf_counter() - t0)
        outs.append(check_stamps(out, CHAIN_STEPS))
    return chain_record(outs, walls, CHAIN_STEPS)


def python() -> str:
    """The interpreter that runs this adapter (the peers' virtualenv)."""
    return sys.executable
