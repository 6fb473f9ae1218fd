"""How long `floxide ui` takes to answer for big runs (SQLite backend, real server).

    .venv/bin/python benchmarks/ui_timing.py [--items 10000] [--runs 10000] [--repeat 7]

Makes, in a temporary directory: one run of ITEMS items of the UI tests' `Basket`
workflow (fan-out, a composite, retries and a fallback for every seventh item, a join),
run to completion, and RUNS small pending runs; then starts `floxide ui` on it and times
(median of REPEAT requests each) the run page, its JSON, the live poll's summary JSON
and the first page of the runs list.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floxide.backends import NewItem, NewRun, open_backend  # noqa: E402
from floxide.distributed import Orchestrator, WorkerPool  # noqa: E402
from tests.ui_flows import Ctx, pipeline  # noqa: E402
from tests.ui_server import ui_server  # noqa: E402


async def _make(url: str, items: int, runs: int) -> float:
    backend = open_backend(url)
    async with backend.connected():
        orch = Orchestrator(pipeline, backend)
        run_id = await orch.start_run(Ctx(), items, run_id="big")
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(WorkerPool(pipeline, backend, concurrency=16).run)
            await orch.wait(run_id, timeout=3600)
            nursery.cancel_scope.cancel()
        took = time.perf_counter() - t0
        for i in range(runs):  # pending runs for the list (stored directly: fast)
            await backend.create_run(
                NewRun(
                    f"small-{i:05d}",
                    "Basket",
                    "q",
                    "fp",
                    b"1",
                    b"{}",
                    [NewItem("0", "split", b"{}")],
                )
            )
    await backend.aclose()
    return took


def _median_ms(client: httpx.Client, url: str, repeat: int) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'big.db'}"
        took = trio.run(_make, url, args.items, args.runs)
        print(f"run of {args.items} items done in {took:.1f} s; {args.runs} more runs stored")
        os.environ.pop("FLOXIDE_DEBUG", None)
        with ui_server("--backend", url) as ui, httpx.Client(timeout=120) as client:
            for what, path in (
                (f"/runs/RUN_ID ({args.items} items)", "/runs/big"),
                (f"/api/runs/RUN_ID ({args.items} items)", "/api/runs/big"),
                ("/api/runs/RUN_ID?summary=1 (the live poll)", "/api/runs/big?summary=1"),
                (f"/ (first page of {args.runs + 1} runs)", "/"),
                (f"/api/runs (first page of {args.runs + 1})", "/api/runs"),
                ("/?page=100 (a later page)", "/?page=100"),
            ):
                ms, size = _median_ms(client, ui.url + path, args.repeat)
                print(f"{what:<48} {ms:8.1f} ms  ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
