"""A distributed worker process for the benchmark: `dworker.py URL SPEC [--concurrency N]`.

Builds workflow SPEC from flows.py (the same classes as the measuring process), prints
"ready" and serves it from backend URL until SIGTERM; then prints "peak_rss_mb N", its peak
resident set size (ru_maxrss), for the big-run row.
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("spec")
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()

    import flows
    import trio

    from floxide.backends import open_backend
    from floxide.distributed import WorkerPool

    wf = flows.by_name(a.spec)

    async def serve() -> None:
        backend = open_backend(a.url)
        if inspect.isawaitable(backend):
            backend = await backend
        pool = WorkerPool(wf, backend, concurrency=a.concurrency)
        print("ready", flush=True)
        await pool.run()

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"peak_rss_mb {peak:.1f}", flush=True)


if __name__ == "__main__":
    main()
