"""The `make demo` program: a distributed run on SQLite with two worker processes.

A basket of items is split into one work item per item (fan-out); each is priced by a
flaky price service that fails now and then and is retried with backoff (durable retries:
the retry is a delayed work item in the database, so any worker may pick it up); a join
adds the prices up. Two `floxide worker` processes share the work through one SQLite file
while this program shows live progress, then prints the result, the context every branch
contributed to, and the retries. Workers and files are cleaned up at the end.

    python -m examples.demo

To watch the run in a browser, keep its database and slow it down, and start `floxide ui`
on it from a second terminal once the demo has started:

    FLOXIDE_DEMO_DB=demo.db FLOXIDE_DEMO_DELAY=2 make demo
    floxide ui --backend sqlite:///demo.db        # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from floxide import (
    Counter,
    Mergeable,
    Next,
    NextAll,
    Node,
    RetryPolicy,
    SetUnion,
    Transition,
    Workflow,
    with_retry,
    workflow,
)
from floxide.backends import open_backend
from floxide.distributed import Orchestrator, RunStatus

BASKET = [
    "apples", "bread", "cheese", "dates", "eggs", "flour", "grapes", "honey",
    "ice cream", "jam", "kale", "lemons", "milk", "noodles", "olives", "pears",
    "quinoa", "rice", "salt", "tea", "udon", "vinegar", "walnuts", "yoghurt",
]  # fmt: skip


class PriceServiceDown(ConnectionError):
    """The (pretend) price service failed; worth retrying."""


@attrs.define
class Shop(Mergeable):
    """The run's context: merged across workers, each item counted once."""

    priced: Counter = attrs.field(factory=Counter)
    workers: SetUnion[int] = attrs.field(factory=SetUnion)


@attrs.frozen
class SplitBasket(Node[Shop, list[str], str]):
    async def process(self, ctx: Shop, input: list[str]) -> Transition[str]:
        return NextAll(input)


@attrs.frozen
class FetchPrice(Node[Shop, str, int]):
    """Prices one item in cents; every fourth item's first call fails."""

    state_dir: str

    async def process(self, ctx: Shop, input: str) -> Transition[int]:
        await trio.sleep(float(os.environ.get("FLOXIDE_DEMO_DELAY") or 0.3))  # a slow call
        calls = Path(self.state_dir) / f"calls-{zlib.crc32(input.encode())}"
        n = int(calls.read_text()) if calls.exists() else 0
        calls.write_text(str(n + 1))
        if n == 0 and zlib.crc32(input.encode()) % 4 == 0:
            raise PriceServiceDown(f"price service timed out for {input!r}")
        ctx.priced = ctx.priced.add(1)
        ctx.workers = ctx.workers.add(os.getpid())
        return Next(100 + zlib.crc32(input.encode()) % 400)


@attrs.frozen
class Total(Node[Shop, Sequence[int], int]):
    async def process(self, ctx: Shop, input: Sequence[int]) -> Transition[int]:
        return Next(sum(input))


@workflow
class PriceBasket(Workflow[Shop, list[str], int]):
    split: SplitBasket
    price: Node[Shop, str, int]
    total: Total

    start = "split"
    edges = {"split": ["price"], "price": ["total"], "total": []}
    joins = {"total": "split"}


def make_workflow() -> PriceBasket:
    """The factory the worker processes load (`examples.demo:make_workflow`)."""
    state_dir = os.environ.get("FLOXIDE_DEMO_DIR", tempfile.gettempdir())
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.2, max_backoff=1.0)
    return PriceBasket(
        split=SplitBasket(), price=with_retry(FetchPrice(state_dir), policy), total=Total()
    )


def start_workers(url: str, env: dict[str, str], n: int = 2) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "floxide.cli", "worker", "examples.demo:make_workflow"]
    return [
        subprocess.Popen([*cmd, "--backend", url, "--concurrency", "4"], env=env) for _ in range(n)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()  # SIGTERM: graceful stop
    for w in workers:
        try:
            w.wait(15)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


async def follow(url: str) -> None:
    wf = make_workflow()
    backend = open_backend(url)
    orch = Orchestrator(wf, backend)
    run_id = await orch.start_run(Shop(), BASKET)
    print(f"started run {run_id}: pricing {len(BASKET)} items with 2 worker processes")
    live = sys.stdout.isatty()
    last = ""
    started = time.monotonic()
    while True:
        status = await orch.status(run_id)
        m = await orch.metrics(run_id)
        # the run's size is known up front: one split, one pricing per item, one total
        # (a retried pricing is still one step: its failed attempts count as retried)
        total = max(m.total_known, len(BASKET) + 2)
        bar = "#" * round(30 * m.done / total)
        line = (
            f"[{bar:<30}] {m.done:>2}/{total} steps done (split, {len(BASKET)} prices, "
            f"total), {m.in_flight} in flight, "
            f"{m.retried} retried  ({status}, {time.monotonic() - started:4.1f}s)"
        )
        if live:
            print("\r" + line, end="", flush=True)
        elif line.split("(")[0] != last:
            print(line, flush=True)
        last = line.split("(")[0]
        if status.finished:
            break
        await trio.sleep(0.2)
    if live:
        print()
    if status is not RunStatus.COMPLETED:
        raise SystemExit(f"run ended {status}: {(await orch.info(run_id)).error}")
    total_cents = await orch.wait(run_id)
    ctx = await orch.context(run_id)
    print(f"basket total: {total_cents / 100:.2f} EUR")
    print(
        f"context: {ctx.priced.value} items priced (each counted once), "
        f"by {len(ctx.workers)} worker processes"
    )
    for e in await orch.errors(run_id):
        print(f"  retried: {e.node} attempt {e.attempt}: {e.message}")
    await backend.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="floxide-demo-") as tmp:
        kept = os.environ.get("FLOXIDE_DEMO_DB")
        url = f"sqlite:///{Path(kept).resolve() if kept else Path(tmp) / 'demo.db'}"
        print(f"watch it: floxide ui --backend {url}  (FLOXIDE_DEMO_DB=PATH keeps the file)")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env.update(
            FLOXIDE_DEMO_DIR=tmp,
            FLOXIDE_LOG_LEVEL="WARNING",
            FLOXIDE_LEASE_SECONDS="5",
            FLOXIDE_GRACE_SECONDS="5",
        )
        os.environ["FLOXIDE_DEMO_DIR"] = tmp
        workers = start_workers(url, env)
        try:
            trio.run(follow, url)
        finally:
            stop_workers(workers)
        print(f"workers stopped (exit codes {[w.returncode for w in workers]}); files removed")


if __name__ == "__main__":
    # Run the copy imported as `examples.demo`, the module name the workers load, so the
    # workflow (and its queue) is the same on both sides, not `__main__.PriceBasket`.
    from examples.demo import main as demo_main

    demo_main()
