"""floxide: the workflows of flows.py, run in process, checkpointed, and distributed.

Features that are not importable yet report "not available" instead of failing, and are
picked up as soon as they exist (every floxide import of an optional part is inside a try).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from common import (
    CHAIN_STEPS,
    NotAvailable,
    Run,
    Scratch,
    chain_record,
    check_stamps,
    fanout_record,
    postgres_commit_us,
    postgres_server,
    redis_call,
    redis_cluster,
    redis_command_counts,
    redis_command_stats,
    redis_nodes,
    redis_server,
    timed,
)

NAME = "floxide"
DISTS = ("floxide", "trio", "attrs", "cattrs")
NOTE = "@workflow class; wf.run / run_with_checkpoint; Orchestrator + WorkerPool processes"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def available() -> bool:
    return importlib.util.find_spec("floxide") is not None


def _trio_run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    import trio

    return trio.run(fn, *args)


def chain(n: int, scratch: Scratch) -> Run:
    import flows

    return timed(lambda: flows.chain(n), lambda wf: _trio_run(wf.run, flows.BenchCtx(), 0))


def fanout(n: int, scratch: Scratch) -> Run:
    import flows

    return timed(flows.fanout, lambda wf: _trio_run(wf.run, flows.BenchCtx(), n))


def _checkpoint_store(kind: str) -> Any:
    """The store class, or NotAvailable while floxide has no checkpoints yet."""
    try:
        import floxide

        return getattr(floxide, kind)
    except (ImportError, AttributeError) as e:
        raise NotAvailable(f"floxide.{kind} not available yet") from e


async def _close(obj: Any) -> None:
    for name in ("aclose", "close"):
        fn = getattr(obj, name, None)
        if fn is not None:
            res = fn()
            if inspect.isawaitable(res):
                await res
            return


def _checkpointed(n: int, make_store: Callable[[], Any]) -> Run:
    import flows

    async def go(wf: Any) -> int:
        store = make_store()
        try:
            return int(
                await wf.run_with_checkpoint(
                    flows.BenchCtx(), 0, store=store, run_id=f"bench-{uuid.uuid4().hex[:12]}"
                )
            )
        finally:
            await _close(store)

    def run(wf: Any) -> int:
        try:
            return int(_trio_run(go, wf))
        except ModuleNotFoundError as e:
            if (e.name or "").startswith("floxide"):
                raise NotAvailable(f"{e.name} not available yet") from e
            raise

    return timed(lambda: flows.chain(n), run)


def ckpt_mem(n: int, scratch: Scratch) -> Run:
    store_cls = _checkpoint_store("InMemoryCheckpointStore")
    return _checkpointed(n, store_cls)


def ckpt_sqlite(n: int, scratch: Scratch) -> Run:
    store_cls = _checkpoint_store("SqliteCheckpointStore")
    return _checkpointed(n, lambda: store_cls(scratch.file("floxide")))


def ckpt_sqlite_normal(n: int, scratch: Scratch) -> Run:
    """The SQLite checkpoint with `durable=False` (synchronous=NORMAL)."""
    store_cls = _checkpoint_store("SqliteCheckpointStore")
    if "durable" not in inspect.signature(store_cls).parameters:
        raise NotAvailable("SqliteCheckpointStore has no durable= option")
    return _checkpointed(n, lambda: store_cls(scratch.file("floxide"), durable=False))


# Extra measurements (name -> fn(n, scratch)), reported in the notes under the table.
EXTRAS = {"ckpt-sqlite-normal": ckpt_sqlite_normal}


# ------------------------------------------------------------------ distributed


@contextlib.contextmanager
def _workers(url: str, spec: str, count: int, concurrency: int, cwd: str,
             peaks: list[float] | None = None) -> Iterator[None]:
    """`count` worker processes (dworker.py) serving workflow `spec` from backend `url`;
    once they stopped, each one's peak RSS (MB) is appended to `peaks`."""
    cmd = [sys.executable, os.path.join(HERE, "dworker.py"), url, spec,
           "--concurrency", str(concurrency)]
    procs = [
        subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        for p in procs:  # each prints "ready" once its pool is about to run
            line = p.stdout.readline() if p.stdout else ""
            if "ready" not in line:
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"worker did not start: {line.strip()} {err.strip()[-600:]}")
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            if peaks is not None:
                peaks += [float(ln.split()[1]) for ln in out.splitlines()
                          if ln.startswith("peak_rss_mb ")]


def distributed(mode: str, n: int, reps: int, workers: int,
                big_n: int = 100_000) -> dict[str, Any]:
    """`sqlite` / `redis` / `redis-cluster` / `postgres`: n-branch fan-out, items/s
    (`sqlite-counter` / `redis-counter` / `postgres-counter`: the same fan-out, every
    branch adding 1 to a `Counter` of a `Mergeable` context, checked exact); `redis-chain` /
    `redis-cluster-chain` / `postgres-chain`: 100-step chain latency (with PostgreSQL's
    raw-commit floor); `redis-big`: the n-branch rate, then one big_n-branch fan-out on the
    same server, with each worker's peak RSS."""
    try:
        from floxide.backends import open_backend
        from floxide.distributed import Orchestrator
    except ImportError as e:
        raise NotAvailable(f"floxide.distributed not available yet ({e})") from e
    if mode.startswith("redis") and importlib.util.find_spec("coredis") is None:
        raise NotAvailable("coredis is not installed (floxide[redis])")
    if mode.startswith("postgres") and importlib.util.find_spec("psycopg") is None:
        raise NotAvailable("psycopg is not installed (floxide[postgres])")

    import flows
    import trio

    scratch = Scratch("floxide-dist")
    old_cwd = os.getcwd()
    os.chdir(scratch.path)  # sqlite:///dist.db is relative: same file for every process
    try:
        with contextlib.ExitStack() as stack:
            counter = mode.endswith("-counter")
            mode = mode.removesuffix("-counter")
            if mode == "sqlite":
                url = "sqlite:///dist.db"
            elif mode in ("redis", "redis-chain", "redis-big"):
                url = stack.enter_context(redis_server(scratch))
            elif mode in ("redis-cluster", "redis-cluster-chain"):
                url = stack.enter_context(redis_cluster(scratch))
            elif mode in ("postgres", "postgres-chain"):
                url = stack.enter_context(postgres_server())
            else:
                raise ValueError(f"unknown distributed mode {mode!r}")
            chain_steps = CHAIN_STEPS
            chained = mode.endswith("-chain")
            spec = f"stamp:{chain_steps}" if chained else "counter" if counter else "fanout"
            concurrency = 1 if chained else 16
            wf = flows.by_name(spec)

            peaks: list[float] = []

            async def one(orch: Any, arg: Any, limit: float = 300) -> tuple[float, Any]:
                t0 = time.perf_counter()
                ctx = flows.CountCtx() if counter else flows.BenchCtx()
                run_id = await orch.start_run(ctx, arg)
                with trio.fail_after(limit):
                    out = await orch.wait(run_id)
                took = time.perf_counter() - t0
                if counter and isinstance(arg, int):  # exact, checked outside the timing
                    seen = (await orch.context(run_id)).seen.value
                    if seen != arg:
                        raise AssertionError(f"Counter fan-out of {arg} counted {seen}")
                return took, out

            async def go() -> dict[str, Any]:
                backend = open_backend(url)
                if inspect.isawaitable(backend):
                    backend = await backend
                try:
                    orch = Orchestrator(wf, backend)
                    with _workers(url, spec, workers, concurrency, scratch.path, peaks):
                        if chained and url.startswith("redis"):
                            # as an orchestrator service does, it keeps its connection:
                            # starting a run is then one round trip
                            async with backend.connected():
                                return await _chain_latency(one, orch, chain_steps, reps)
                        if chained:
                            return await _chain_latency(one, orch, chain_steps, reps)
                        rec = await _fanout_rate(one, orch, n, reps)
                        if mode == "redis-big":
                            rec.update(await _big_fanout(one, orch, big_n, rec))
                        return rec
                finally:
                    await _close(backend)

            if url.startswith("redis"):
                for node in redis_nodes(url):
                    redis_call(node, "CONFIG", "RESETSTAT")
            floor = postgres_commit_us(url) if url.startswith("postgres") else None
            rec: dict[str, Any] = trio.run(go)
            if floor is not None:
                rec["raw_commit_us"] = floor
            if mode == "redis-big":
                rec["worker_peak_rss_mb"] = peaks
                rec["peak_rss_mb"] = max(peaks, default=float("nan"))
            if url.startswith("redis"):
                calls: dict[str, int] = {}
                for node in redis_nodes(url):  # a cluster's: summed over its nodes
                    for name, count in redis_command_counts(node).items():
                        calls[name] = calls.get(name, 0) + count
                rec["redis_commands"] = calls
                if mode.endswith("-chain"):  # the server's own time per script call
                    usec = sum(redis_command_stats(node, "usec").get("evalsha", 0.0)
                               for node in redis_nodes(url))
                    rec["server_script_us"] = usec / max(calls.get("evalsha", 0), 1)
                rec["redis_commands_per_item"] = sum(calls.values()) / rec["items_total"]
            rec.update(workers=workers, concurrency=concurrency, backend=url.split(":")[0])
            return rec
    finally:
        os.chdir(old_cwd)
        scratch.cleanup()


async def _fanout_rate(one: Any, orch: Any, n: int, reps: int) -> dict[str, Any]:
    _, out = await one(orch, 10)  # warm-up: connections, scripts, imports in the workers
    if out != 45:
        raise AssertionError(f"wrong result at n=10: {out!r}")
    times = []
    for _ in range(reps):
        dt, out = await one(orch, n)
        if out != n * (n - 1) // 2:
            raise AssertionError(f"wrong result at n={n}: {out!r}")
        times.append(dt)
    return fanout_record(times, n, 12)


BIG_LIMIT_S = 240


async def _big_fanout(one: Any, orch: Any, big_n: int, small: dict[str, Any]) -> dict[str, Any]:
    """One big_n-branch fan-out after the small ones (a server that served other runs)."""
    dt, out = await one(orch, big_n, BIG_LIMIT_S)
    if out != big_n * (big_n - 1) // 2:
        raise AssertionError(f"wrong result at n={big_n}: {out!r:.200}")
    rate = (big_n + 2) / dt
    return {
        "big_n": big_n,
        "big_run_s": dt,
        "big_items_per_s": rate,
        "small_items_per_s": small["items_per_s"],
        "big_over_small": rate / small["items_per_s"],
        "items_total": small["items_total"] + big_n + 2,
    }


async def _chain_latency(one: Any, orch: Any, steps: int, reps: int) -> dict[str, Any]:
    """Per-step latency = time between two consecutive nodes' clocks, over all runs."""
    await one(orch, [time.time_ns()])  # warm-up
    outs: list[list[int]] = []
    walls: list[float] = []
    for _ in range(max(reps, 5)):
        dt, out = await one(orch, [time.time_ns()])
        outs.append(check_stamps(out, steps))
        walls.append(dt)
    return chain_record(outs, walls, steps)
