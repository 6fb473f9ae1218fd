"""Profile one floxide workload: where does a step's time go?

    .venv/bin/python benchmarks/hotspots.py chain|fanout|ckpt-mem|ckpt-sqlite [--seconds 10]
        [--cprofile] [--top 15]

Without --cprofile it just runs the workload in a loop for --seconds, for a sampling
profiler to attach to or wrap, e.g.

    .venv/bin/python benchmarks/hotspots.py chain --seconds 12 &
    sleep 2; py-spy record -r 1000 --format raw -o chain.txt --duration 8 --pid $!
    .venv/bin/python benchmarks/hotspots.py --self-time chain.txt      # top functions by self time

With --cprofile it runs under the standard library's cProfile and prints the functions
with the most self time (cProfile's overhead inflates small functions; prefer sampling).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import itertools
import os
import pstats
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Scratch


def _runner(workload: str, n: int, scratch: Scratch) -> Callable[[], object]:
    """Build the workflow once; return a callable doing one run (so builds stay out)."""
    import flows
    import trio

    ctx = flows.BenchCtx()
    if workload == "fanout":
        wf = flows.fanout()
        return lambda: trio.run(wf.run, ctx, n)
    wf = flows.chain(n)
    if workload == "chain":
        return lambda: trio.run(wf.run, ctx, 0)
    import floxide

    if workload == "ckpt-mem":
        make: Callable[[], object] = floxide.InMemoryCheckpointStore
    elif workload == "ckpt-sqlite":
        make = lambda: floxide.SqliteCheckpointStore(scratch.file("profile"))  # noqa: E731
    elif workload == "ckpt-sqlite-normal":
        make = lambda: floxide.SqliteCheckpointStore(  # noqa: E731
            scratch.file("profile"), durable=False
        )
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    ids = itertools.count()

    async def one() -> object:
        return await wf.run_with_checkpoint(ctx, 0, store=make(), run_id=f"p{next(ids)}")

    return lambda: trio.run(one)


def loop(workload: str, n: int, seconds: float) -> tuple[int, float]:
    scratch = Scratch("profile")
    try:
        run = _runner(workload, n, scratch)
        run()  # warm-up
        runs = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            run()
            runs += 1
        return runs, time.perf_counter() - t0
    finally:
        scratch.cleanup()


def _function(frame: str) -> str:
    """`advance (floxide/_step.py:152)` -> `advance (floxide/_step.py)`."""
    head, sep, where = frame.rpartition(" (")
    if not sep:
        return frame
    return f"{head} ({where.rsplit(':', 1)[0].rstrip(')')})"


def self_time(raw_path: str, top: int, by_line: bool = False) -> None:
    """Top functions (or lines) by self time from py-spy's `--format raw` output."""
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            k = int(count)
            total += k
            frame = stack.split(";")[-1]
            leaf[frame if by_line else _function(frame)] += k
    print(f"{total} samples")
    for frame, k in leaf.most_common(top):
        print(f"{100 * k / total:6.1f}%  {frame}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?", default="chain")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--self-time", metavar="RAW", help="summarize a py-spy raw profile")
    ap.add_argument("--by-line", action="store_true", help="with --self-time: per source line")
    a = ap.parse_args()
    if a.self_time:
        self_time(a.self_time, a.top, a.by_line)
        return
    if a.cprofile:
        prof = cProfile.Profile()
        prof.enable()
        runs, _ = loop(a.workload, a.n, a.seconds)
        prof.disable()
        print(f"{runs} runs of {a.workload} n={a.n}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)
    else:
        runs, dt = loop(a.workload, a.n, a.seconds)
        print(f"{runs} runs of {a.workload} n={a.n}: {dt / runs / a.n * 1e6:.2f} us/unit")


if __name__ == "__main__":
    main()
