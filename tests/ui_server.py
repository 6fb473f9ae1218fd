"""Starting `floxide ui` and `floxide worker` processes for the UI tests, and making runs."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from floxide.backends import open_backend
from floxide.distributed import Orchestrator, WorkerPool
from tests.distributed_workflows import worker_env
from tests.ui_flows import Ctx, pipeline

ROOT = Path(__file__).resolve().parent.parent


def env(**extra: str) -> dict[str, str]:
    e = worker_env()
    e.pop("FLOXIDE_DEBUG", None)
    e.update(extra)
    return e


class Ui:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url.rstrip("/")


@contextmanager
def ui_server(*args: str, cwd: Path = ROOT, **extra: str) -> Iterator[Ui]:
    """`floxide ui ARGS --port 0`, until the block ends; its URL read from its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "floxide.cli", "ui", *args, "--port", "0"],
        env=env(**extra),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    try:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            raise AssertionError("floxide ui printed no address") from None
        url = line.split(" at ", 1)[1].split("/ ", 1)[0]
        yield Ui(proc, url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def worker(
    backend: str, tmp: Path, spec: str = "tests.ui_flows:pipeline", **extra: str
) -> Iterator[subprocess.Popen[str]]:
    log = open(tmp / f"worker-{time.time_ns()}.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "floxide.cli",
            "worker",
            spec,
            "--backend",
            backend,
            "--concurrency",
            "2",
        ],
        env=env(FLOXIDE_LEASE_SECONDS="5", **extra),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def start_run(url: str, n: int, run_id: str, workflow: Any = None, ctx: Any = None) -> str:
    """Store a run (nothing runs it)."""

    async def go() -> str:
        backend = open_backend(url)
        try:
            orch = Orchestrator(workflow or pipeline, backend)
            return await orch.start_run(ctx if ctx is not None else Ctx(), n, run_id=run_id)
        finally:
            await backend.aclose()

    return trio.run(go)


def finish_runs(url: str, workflow: Any = None, ctx_runs: int = 1) -> None:
    """Run every stored run of `workflow` to its end in this process."""

    async def go() -> None:
        backend = open_backend(url)
        try:
            async with backend.connected():
                with trio.move_on_after(30):
                    pool = WorkerPool(workflow or pipeline, backend, concurrency=4)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(pool.run)
                        while True:
                            runs = await backend.list_runs()
                            if all(r.status.finished for r in runs if r.queue == pool_queue()):
                                break
                            await trio.sleep(0.05)
                        nursery.cancel_scope.cancel()
        finally:
            await backend.aclose()

    def pool_queue() -> str:
        from floxide.distributed._worker import queue_name

        return queue_name(workflow or pipeline)

    trio.run(go)


def status_of(url: str, run_id: str) -> str:
    async def go() -> str:
        backend = open_backend(url)
        try:
            rec = await backend.get_run(run_id)
            assert rec is not None
            return rec.status.value
        finally:
            await backend.aclose()

    return trio.run(go)


def chromium_path() -> str | None:
    """Debian's chromium, or None (tests then skip, or fail with FLOXIDE_REQUIRE_CHROMIUM=1)."""
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.access(path, os.X_OK):
            return path
    return None


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
