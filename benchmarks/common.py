"""Shared pieces of the benchmark: workload names, measuring, correctness, I/O counters.

Runs under two interpreters (the project's and the peers' virtualenv), so it uses the
standard library only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "results", "scratch")

# Workloads, in table order. "unit" is what one measured number is per.
CHAIN = "chain"
FANOUT = "fanout"
CKPT_MEM = "ckpt-mem"
CKPT_SQLITE = "ckpt-sqlite"
LOCAL_WORKLOADS = (CHAIN, FANOUT, CKPT_MEM, CKPT_SQLITE)


def expected(workload: str, n: int) -> int:
    """What a correct run returns: a chain counts its steps, a fan-out sums 0..n-1."""
    if workload == FANOUT:
        return n * (n - 1) // 2
    return n


class NotAvailable(Exception):
    """The library has no such feature (or it is not implemented yet)."""


class Emitter:
    """Writes one JSON record per line on stdout, prefixed so stray prints are ignored."""

    PREFIX = "@@"

    def __init__(self, library: str) -> None:
        self.library = library

    def __call__(self, **record: Any) -> None:
        record.setdefault("library", self.library)
        sys.stdout.write(self.PREFIX + json.dumps(record) + "\n")
        sys.stdout.flush()


def parse_records(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith(Emitter.PREFIX):
            out.append(json.loads(line[len(Emitter.PREFIX) :]))
    return out


class Scratch:
    """A private temporary folder (under benchmarks/results/scratch) for one child."""

    def __init__(self, tag: str) -> None:
        os.makedirs(SCRATCH, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=f"{tag}-", dir=SCRATCH)
        self._k = 0

    def file(self, stem: str, suffix: str = ".sqlite") -> str:
        self._k += 1
        return os.path.join(self.path, f"{stem}-{self._k}{suffix}")

    def usage(self) -> dict[str, int]:
        sizes = {}
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                p = os.path.join(root, f)
                try:
                    sizes[p] = os.path.getsize(p)
                except OSError:
                    pass
        return sizes

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_chars() -> int:
    """Bytes this process has passed to write(2) so far (all threads), from /proc."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_mb() -> float:
    """Current resident set size in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# A measured run returns (build seconds, run seconds, result).
Run = tuple[float, float, Any]


def timed(build: Callable[[], Any], run: Callable[[Any], Any]) -> Run:
    t0 = time.perf_counter()
    obj = build()
    t1 = time.perf_counter()
    res = run(obj)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, res


def measure(
    fn: Callable[[int], Run],
    workload: str,
    n: int,
    reps: int,
    budget_s: float,
    check: Callable[[Any, int], bool] | None = None,
) -> dict[str, Any]:
    """Best of `reps` runs at size n (after an untimed warm-up at a small size).

    Every run's result is checked; a wrong result raises. Repeats stop early when the
    budget is spent, and the record says how many ran.
    """
    ok = check or (lambda res, k: res == expected(workload, k))

    def one(k: int) -> tuple[float, float]:
        b, r, res = fn(k)
        if not ok(res, k):
            raise AssertionError(f"wrong result at n={k}: {res!r:.200}")
        return b, r

    one(min(10, n))  # imports, caches, lazily created things
    t_start = time.perf_counter()
    runs: list[float] = []
    builds: list[float] = []
    while len(runs) < reps:
        b, r = one(n)
        runs.append(r)
        builds.append(b)
        spent = time.perf_counter() - t_start
        if spent + (b + r) * 1.2 > budget_s:
            break
    best = min(runs)
    return {
        "n": n,
        "us": best / n * 1e6,
        "us_median": sorted(runs)[len(runs) // 2] / n * 1e6,
        "run_s": best,
        "build_s": min(builds),
        "reps": len(runs),
    }


def bytes_written(fn: Callable[[int], Run], scratch: Scratch, n: int) -> dict[str, float]:
    """Bytes one untimed run at size n writes, per step: write(2) volume and file growth."""
    before = scratch.usage()
    w0 = write_chars()
    fn(n)
    w1 = write_chars()
    after = scratch.usage()
    grown = sum(max(0, size - before.get(p, 0)) for p, size in after.items())
    return {"write_b": (w1 - w0) / n if w0 >= 0 else -1.0, "growth_b": grown / n}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


# ------------------------------------------------------------------ distributed records

CHAIN_STEPS = 100
"""Steps of the distributed chain (every library's)."""


def fanout_record(times: list[float], n: int, warmup_items: int) -> dict[str, Any]:
    """A fan-out row's record from each run's wall time: items are the split, the n
    branches and the join (n + 2), best of the runs; `warmup_items` were run before."""
    best = min(times)
    return {
        "n": n,
        "items_total": warmup_items + len(times) * (n + 2),
        "items_per_s": (n + 2) / best,
        "branches_per_s": n / best,
        "run_s": best,
        "reps": len(times),
    }


def check_stamps(out: Any, steps: int) -> list[int]:
    """A chain's result: its start clock and one increasing clock per step."""
    if not (isinstance(out, list) and len(out) == steps + 1 and out == sorted(out)):
        raise AssertionError(f"wrong result: {out!r:.200}")
    return out


def chain_record(outs: list[list[int]], walls: list[float], steps: int) -> dict[str, Any]:
    """A chain row's record: per-step latency = the gap between consecutive steps' clocks
    (ns stamps) over all runs; a run's first gap includes starting the run."""
    gaps: list[float] = []
    firsts: list[float] = []
    later: list[float] = []
    for out in outs:
        run_gaps = [(b - a) / 1e3 for a, b in itertools.pairwise(out)]
        gaps += run_gaps
        firsts.append(run_gaps[0])
        later += run_gaps[1:]
    gaps.sort()
    firsts.sort()
    later.sort()
    return {
        "n": steps,
        "p50_us": percentile(gaps, 50),
        "p99_us": percentile(gaps, 99),
        "first_step_p50_us": percentile(firsts, 50),
        "later_steps_p99_us": percentile(later, 99),
        "mean_us": min(walls) / steps * 1e6,
        "samples": len(gaps),
        "items_total": steps * (1 + len(walls)),
        "reps": len(walls),
    }


# ------------------------------------------------------------------ redis-server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(scratch: Scratch) -> Iterator[str]:
    """A throw-away redis-server on a free loopback port, without persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise NotAvailable("redis-server is not on PATH")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", scratch.path, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def redis_cluster(scratch: Scratch) -> Iterator[str]:
    """A throw-away 3-master Redis Cluster (the tests' helper); its redis+cluster:// URL."""
    sys.path.insert(0, os.path.dirname(HERE))
    try:
        from tests.redis_cluster import RedisCluster
    except ImportError as e:
        raise NotAvailable(f"the Redis Cluster test helper needs pytest ({e})") from e
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        raise NotAvailable("redis-server or redis-cli is not on PATH")
    cluster = RedisCluster(exe, cli, Path(scratch.path) / "cluster")
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


def redis_nodes(url: str) -> list[str]:
    """redis:// URLs of each server a redis:// or redis+cluster:// URL names."""
    hosts = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return [f"redis://{h}/0" for h in hosts.split(",")]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (the tests' helper: initdb in a temporary directory,
    pg_ctl on a free loopback port, fsync on); its URL."""
    sys.path.insert(0, os.path.dirname(HERE))
    try:
        from tests.postgres_server import PostgresServer, postgres_bin_dir
    except ImportError as e:
        raise NotAvailable(f"the PostgreSQL test helper needs pytest ({e})") from e
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise NotAvailable("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        server.cleanup()


def postgres_commit_us(url: str, n: int = 1000) -> float:
    """The raw-commit floor: one small INSERT + COMMIT round trip (psycopg, no framework)."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_commit (id bigint, data bytea)")
        conn.commit()
        for i in range(50):  # warm-up
            conn.execute("INSERT INTO raw_commit VALUES (%s, %s)", (i, b"x" * 64))
            conn.commit()
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO raw_commit VALUES (%s, %s)", (i, b"x" * 64))
            conn.commit()
        return (time.perf_counter() - t0) / n * 1e6


def redis_call(url: str, *args: str) -> bytes:
    """One command over a raw socket (the measuring process needs no Redis client)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while True:
            chunk = s.recv(65536)
            data += chunk
            if not chunk or (data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n")):
                break
            if data.startswith(b"$"):
                head, _, body = data.partition(b"\r\n")
                if len(body) >= int(head[1:]) + 2:
                    return body[: int(head[1:])]
        return data


def redis_command_stats(url: str, field: str = "calls") -> dict[str, float]:
    """`field` (calls, usec, usec_per_call) per Redis command since the last CONFIG
    RESETSTAT (INFO commandstats)."""
    out = {}
    for line in redis_call(url, "INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.partition(":")
            value = dict(f.split("=", 1) for f in fields.split(","))[field]
            out[name.removeprefix("cmdstat_")] = float(value)
    out.pop("info", None)
    out.pop("config|resetstat", None)
    return out


def redis_command_counts(url: str) -> dict[str, int]:
    """Calls per Redis command since the last CONFIG RESETSTAT (INFO commandstats)."""
    return {k: int(v) for k, v in redis_command_stats(url).items()}
