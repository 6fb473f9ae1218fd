"""`make bench`: floxide side by side with its peers, each library in its own process.

    .venv/bin/python benchmarks/run.py [--only floxide,burr] [--skip-memory]
        [--skip-distributed | --distributed-only] [--n 1000] [--reps 3] [--update-readme]

floxide and the floors run in the project's virtualenv; the peers (PocketFlow,
pydantic-graph, LangGraph, Burr, and the task queues Celery and Dramatiq on the Redis rows)
in benchmarks/.venv-peers, created here from requirements-peers.txt when missing, so they
never enter the project's dependencies. Prints one table (a row per workload, a column per
library, the fastest peer and the ratio floxide / fastest peer) and writes everything to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import CKPT_MEM, CKPT_SQLITE, parse_records  # noqa: E402

PEERS_VENV = os.path.join(HERE, ".venv-peers")
PEERS_PY = os.path.join(PEERS_VENV, "bin", "python")
PEERS_REQ = os.path.join(HERE, "requirements-peers.txt")
RESULTS = os.path.join(HERE, "results")
README = os.path.join(HERE, "README.md")

PEERS = ("pocketflow", "pydantic-graph", "langgraph", "burr")
# Distributed peers: task queues measured on the Redis rows only (same fan-out and chain).
DIST_PEERS = ("celery", "dramatiq")
DIST_PEER_MODES = ("redis", "redis-chain")
OURS = ("floor", "floxide")
CELERY_REDIS_US = 6000.0  # recorded: Celery with a Redis broker, per chain step, same machine class

# Hard limits per child process (seconds); the whole run stays well under 15 minutes.
LOCAL_TIMEOUT = 240
MEMORY_LIMIT = 90
MEMORY_TIMEOUT = 150
DIST_TIMEOUT = 300


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ environment


def ensure_peers_venv() -> str | None:
    """Create / update benchmarks/.venv-peers; None when it is usable, else why not."""
    with open(PEERS_REQ) as f:
        wanted = f.read()
    stamp = os.path.join(PEERS_VENV, ".requirements")
    try:
        with open(stamp) as f:
            if f.read() == wanted and os.path.exists(PEERS_PY):
                return None
    except OSError:
        pass
    log(f"setting up the peers' virtualenv {os.path.relpath(PEERS_VENV)} (one-off, ~1-2 min)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", PEERS_VENV] if not os.path.exists(PEERS_PY) else None,
        [PEERS_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", PEERS_REQ],
    ]
    for cmd in steps:
        if cmd is None:
            continue
        try:
            cp = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{' '.join(cmd[:3])}: {e}"
        if cp.returncode != 0:
            tail = [ln for ln in cp.stderr.splitlines() if not ln.startswith("WARNING")][-3:]
            return f"{' '.join(cmd[:4])} failed: {' '.join(tail)[:300]}"
    with open(stamp, "w") as f:
        f.write(wanted)
    return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    redis = "not installed"
    exe = shutil.which("redis-server")
    if exe:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        redis = next((w.split("=")[1] for w in out.split() if w.startswith("v=")), "?")
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": redis,
    }


# ------------------------------------------------------------------ children


def run_child(python: str, library: str, args: list[str], timeout: float) -> list[dict[str, Any]]:
    cmd = [python, os.path.join(HERE, "child.py"), "--lib", library, *args]
    t0 = time.perf_counter()
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
        out, err, why = cp.stdout, cp.stderr, ""
        if cp.returncode != 0:
            why = f"exit {cp.returncode}: {(err.strip().splitlines() or ['?'])[-1][:200]}"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        why = f"timeout after {timeout:.0f} s"
    recs = parse_records(out)
    for r in recs:
        r.setdefault("library", library)
    if why:
        recs.append({"library": library, "child_error": why, "args": args})
    log(f"  {library} {' '.join(args)}: {time.perf_counter() - t0:.1f} s"
        + (f"  [{why}]" if why else ""))
    return recs


def collect(a: argparse.Namespace, peers_problem: str | None) -> list[dict[str, Any]]:
    only = set(a.only.split(",")) if a.only else None

    def wanted(lib: str) -> bool:
        return only is None or lib in only

    recs: list[dict[str, Any]] = []
    base = ["--n", str(a.n), "--reps", str(a.reps)]
    libs: list[tuple[str, str]] = [(lib, sys.executable) for lib in OURS]
    libs += [(lib, PEERS_PY) for lib in PEERS]
    for lib, py in libs:
        if not wanted(lib) or (a.distributed_only and lib != "floor"):
            continue
        if py == PEERS_PY and peers_problem:
            recs.append({"library": lib, "status": "missing", "why": peers_problem})
            continue
        # --distributed-only: of the floors, only the extras (the Redis round trips)
        extra = ["--workloads", ""] if a.distributed_only else []
        recs += run_child(py, lib, [*base, *extra], LOCAL_TIMEOUT)
    if not a.skip_distributed and wanted("floxide"):
        modes = ["sqlite", "sqlite-counter", "redis", "redis-counter", "redis-chain",
                 "redis-cluster", "redis-cluster-chain", "postgres", "postgres-counter",
                 "postgres-chain"]
        if a.big_n:
            modes.append("redis-big")
        for mode in modes:
            extra = ["--big-n", str(a.big_n)] if mode == "redis-big" else []
            recs += run_child(sys.executable, "floxide",
                              [*base, "--distributed", mode, *extra], DIST_TIMEOUT)
    if not a.skip_distributed:
        for lib in DIST_PEERS:
            if not wanted(lib):
                continue
            if peers_problem:
                recs.append({"library": lib, "status": "missing", "why": peers_problem})
                continue
            for mode in DIST_PEER_MODES:
                recs += run_child(PEERS_PY, lib, [*base, "--distributed", mode], DIST_TIMEOUT)
    if not a.skip_memory and not a.distributed_only:
        # One fresh process per library (peak RSS only grows); two at a time on 2 cores,
        # the slow peers first. Each stops itself after MEMORY_LIMIT s with its peak so far.
        jobs = [(lib, py) for lib, py in reversed(libs)
                if lib != "floor" and wanted(lib) and not (py == PEERS_PY and peers_problem)]
        args = ["--memory", str(a.memory_n), "--limit", str(MEMORY_LIMIT)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for got in pool.map(lambda job: run_child(job[1], job[0], args, MEMORY_TIMEOUT),
                                jobs):
                recs += got
    return recs


# ------------------------------------------------------------------ table


def index(recs: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                              dict[str, dict[str, Any]]]:
    by: dict[tuple[str, str], dict[str, Any]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for r in recs:
        if "workload" in r:
            by[(r["library"], r["workload"])] = r
        else:
            meta.setdefault(r["library"], {}).update(r)
    return by, meta


def num(v: float) -> str:
    if v != v:  # NaN
        return "?"
    if v >= 1e5:
        return f"{v / 1e3:.0f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def size(v: float) -> str:
    return f"{v / 1024:.1f}K" if v >= 1024 else f"{v:.0f}"


# A row: (label, unit, workload, value getter, lower is better, target(floxide, floor) -> str)
Getter = Callable[[dict[str, Any]], float | None]


def _get(key: str) -> Getter:
    return lambda r: r.get(key)


def _pair(key: str) -> Callable[[dict[str, Any], int], str | None]:
    def show(r: dict[str, Any], n: int) -> str | None:
        small, big = r.get(f"{key}_n{n // 10}"), r.get(f"{key}_n{n}")
        if small is None or big is None:
            return None
        return f"{size(small)} -> {size(big)}"

    return show


def build_table(recs: list[dict[str, Any]], n: int, memory_n: int) -> dict[str, Any]:
    by, meta = index(recs)
    libs = ["floxide", *PEERS, *DIST_PEERS]
    floor_sqlite = by.get(("floor", CKPT_SQLITE), {}).get("us")

    def cell(lib: str, workload: str, get: Getter, fmt: Callable[[float], str] = num
             ) -> tuple[str, float | None]:
        if lib in DIST_PEERS and not workload.startswith("dist-"):
            return "-", None  # a task queue runs the distributed rows only
        m = meta.get(lib, {})
        if m.get("status"):
            return m["status"], None
        r = by.get((lib, workload))
        if r is None:
            child = next((x for x in recs if x.get("library") == lib and "child_error" in x), None)
            return ("ERR" if child else "-"), None
        if r.get("na"):
            return "not available", None
        if r.get("error"):
            return "ERR", None
        if r.get("unfinished_after_s"):
            return f"> {fmt(r['peak_mb'])} (unfinished in {r['unfinished_after_s']:.0f} s)", None
        v = get(r)
        if v is None:
            return "-", None
        return fmt(v), v

    rows: list[dict[str, Any]] = []

    def add(label: str, unit: str, workload: str, get: Getter, lower: bool,
            floor: float | None, target: tuple[str, float | None] | None,
            ref: tuple[str, float] | None = None, fmt: Callable[[float], str] = num,
            ahead: bool = False) -> None:
        cells: dict[str, str] = {}
        values: dict[str, float] = {}
        for lib in libs:
            text, v = cell(lib, workload, get, fmt)
            cells[lib] = text
            if v is not None:
                values[lib] = v
        peer_vals = {k: v for k, v in values.items() if k != "floxide"}
        best: tuple[str, float] | None = None
        if peer_vals:
            pick = min if lower else max
            name = pick(peer_vals, key=lambda k: peer_vals[k])
            best = (name, peer_vals[name])
        elif ref is not None:
            best = ref
        ours = values.get("floxide")
        ratio = ours / best[1] if (ours is not None and best and best[1]) else None
        beats = None if ratio is None else (ratio < 1 if lower else ratio > 1)
        met = None
        if target is not None and target[1] is not None and ours is not None:
            met = ours < target[1] if lower else ours >= target[1]
        if ahead:  # the target is to beat every measured peer
            target = ("ahead of every peer", None)
            met = beats if peer_vals else None
        rows.append({
            "workload": label, "unit": unit, "cells": cells, "values": values,
            "best_peer": best[0] if best else None, "best": best[1] if best else None,
            "ratio": ratio, "beats_best_peer": beats,
            "floor": floor, "target": target[0] if target else "", "target_met": met,
        })

    def floor_of(workload: str) -> float | None:
        return by.get(("floor", workload), {}).get("us")

    add(f"chain, {n} nodes", "us/step", "chain", _get("us"), True, floor_of("chain"),
        ("< 1.5", 1.5))
    add(f"fan-out + join, {n} branches", "us/branch", "fanout", _get("us"), True,
        floor_of("fanout"), ("< 5", 5.0))
    add(f"chain checkpointed to memory, {n}", "us/step", CKPT_MEM, _get("us"), True, None,
        ("< 15", 15.0))
    two_x = 2 * floor_sqlite if floor_sqlite else None
    add(f"chain checkpointed to SQLite, {n}", "us/step", CKPT_SQLITE, _get("us"), True,
        floor_sqlite, (f"<= 2x raw commit ({num(two_x)})" if two_x else "<= 2x raw commit",
                       two_x * 1.0000001 if two_x else None))
    for key, label in (("write_b", "bytes written"), ("growth_b", "file growth")):
        pair = _pair(key)
        cells = {}
        for lib in libs:
            r = by.get((lib, CKPT_SQLITE))
            text = cell(lib, CKPT_SQLITE, _get(key))[0]
            if r is not None and text not in ("not available", "ERR", "-"):
                text = pair(r, n) or text
            cells[lib] = text
        fx = by.get(("floxide", CKPT_SQLITE), {})
        small, big = fx.get(f"{key}_n{n // 10}"), fx.get(f"{key}_n{n}")
        flat = None if small is None or big is None else big <= 1.5 * small + 64
        rows.append({
            "workload": f"SQLite checkpoint {label}, n={n // 10} -> {n}", "unit": "B/step",
            "cells": cells, "values": {}, "best_peer": None, "best": None, "ratio": None,
            "beats_best_peer": None, "floor": None,
            "target": "flat in n (not growing with run size)", "target_met": flat,
        })
    add(f"distributed fan-out {n}, SQLite, 2 workers", "items/s", "dist-sqlite",
        _get("items_per_s"), False, None, None)
    add(f"distributed fan-out {n}, Redis, 2 workers", "items/s", "dist-redis",
        _get("items_per_s"), False, None, None, ahead=True)
    for kind, name in (("sqlite", "SQLite"), ("redis", "Redis"),  # contention-free merges
                       ("postgres", "PostgreSQL")):
        plain = by.get(("floxide", f"dist-{kind}"), {}).get("items_per_s")
        add(f"distributed Counter fan-out {n}, {name}, 2 workers", "items/s",
            f"dist-{kind}-counter", _get("items_per_s"), False, None,
            (f">= 70% of the plain fan-out ({num(0.7 * plain)})" if plain else ">= 70% of plain",
             0.7 * plain if plain else None))
    big = by.get(("floxide", "dist-redis-big"), {})
    big_n = big.get("big_n", 100_000)
    small = big.get("small_items_per_s")
    add(f"distributed fan-out {big_n}, Redis, 2 workers", "items/s", "dist-redis-big",
        _get("big_items_per_s"), False, None,
        (f">= 75% of {n} on the same server ({num(0.75 * small)})" if small
         else f">= 75% of {n}", 0.75 * small if small else None))
    add(f"worker peak RSS, fan-out {big_n}, Redis", "MB", "dist-redis-big",
        _get("peak_rss_mb"), True, None, ("< 150", 150.0))
    sqlite_rate = by.get(("floxide", "dist-sqlite"), {}).get("items_per_s")
    add(f"distributed fan-out {n}, PostgreSQL, 2 workers", "items/s", "dist-postgres",
        _get("items_per_s"), False, None,
        (f"> SQLite ({num(sqlite_rate)})" if sqlite_rate else "> SQLite",
         sqlite_rate * 1.0000001 if sqlite_rate else None))
    pg_commit = by.get(("floxide", "dist-postgres-chain"), {}).get("raw_commit_us")
    three_x = 3 * pg_commit if pg_commit else None
    for q in ("p50", "p99"):
        add(f"PostgreSQL chain, 100 steps: {q}", "us/step", "dist-postgres-chain",
            _get(f"{q}_us"), True, pg_commit,
            (f"<= 3x raw commit ({num(three_x)})" if three_x else "<= 3x raw commit",
             three_x * 1.0000001 if three_x else None) if q == "p50" else None)
    celery = ("celery+redis (recorded)", CELERY_REDIS_US)
    ten_x = CELERY_REDIS_US / 10
    rtt = floor_of("redis-rtt-socket")
    add("Redis chain, 100 steps: p50", "us/step", "dist-redis-chain", _get("p50_us"), True,
        rtt, (f"<= {ten_x:.0f} (10x Celery)", ten_x * 1.0000001), celery)
    add("Redis chain, 100 steps: p99", "us/step", "dist-redis-chain", _get("p99_us"), True,
        rtt, None, celery, ahead=True)
    add(f"distributed fan-out {n}, Redis Cluster (3 masters), 2 workers", "items/s",
        "dist-redis-cluster", _get("items_per_s"), False, None, None)
    for q in ("p50", "p99"):
        add(f"Redis Cluster chain, 100 steps: {q}", "us/step", "dist-redis-cluster-chain",
            _get(f"{q}_us"), True, rtt, None)
    add(f"peak RSS, fan-out of {memory_n} branches", "MB", "memory", _get("peak_mb"), True,
        None, ("< 200", 200.0))
    return {"libs": libs, "rows": rows, "meta": meta, "by": by}


def render(table: dict[str, Any], recs: list[dict[str, Any]], mach: dict[str, Any],
           n: int, reps: int) -> str:
    libs: list[str] = table["libs"]
    hdr = ["workload", "unit", *libs, "fastest peer", "floxide/fastest", "floor", "target"]
    lines: list[list[str]] = []
    for row in table["rows"]:
        best = "-"
        if row["best_peer"]:
            best = f"{row['best_peer']} {num(row['best'])}"
        ratio = "-"
        if row["ratio"] is not None:
            ratio = f"{row['ratio']:.2f}" + (" (better)" if row["beats_best_peer"] else " (worse)")
        target = row["target"]
        if row["target_met"] is not None:
            target += "  MET" if row["target_met"] else "  MISSED"
        floor = num(row["floor"]) if row["floor"] is not None else "-"
        lines.append([row["workload"], row["unit"], *[row["cells"][lb] for lb in libs],
                      best, ratio, floor, target])
    widths = [max(len(r[i]) for r in [hdr, *lines]) for i in range(len(hdr))]

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |"

    out = [fmt(hdr), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(r) for r in lines]
    out.append("")
    out.append(
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB; "
        f"{mach['os']}; Python {mach['python']}, SQLite {mach['sqlite']}, "
        f"redis-server {mach['redis_server']}."
    )
    out.append(
        f"n = {n}, best of {reps} after a warm-up; build/compile time excluded; every result "
        "checked (a chain returns n, a fan-out returns the sum of its branches)."
    )
    out.append(
        "floxide/fastest < 1 is better for us, MB and bytes; > 1 is better for items/s. "
        "floor = trio loop (chain), bare trio nursery (fan-out), raw sqlite3 INSERT+COMMIT "
        "in WAL, synchronous=FULL (SQLite), one PING round trip on a raw trio socket (Redis), "
        "one INSERT + COMMIT on the server (PostgreSQL)."
    )
    by = table["by"]
    normal = by.get(("floor", "raw-commit-normal"), {}).get("us")
    if normal is not None:
        fx_normal = by.get(("floxide", "ckpt-sqlite-normal"), {}).get("us")
        out.append(f"Raw WAL commit with synchronous=NORMAL: {num(normal)} us"
                   + (f"; floxide's SQLite checkpoint with durable=False (NORMAL): "
                      f"{num(fx_normal)} us/step." if fx_normal is not None else "."))
    sock = by.get(("floor", "redis-rtt-socket"), {}).get("us")
    cored = by.get(("floor", "redis-rtt-coredis"), {}).get("us")
    if sock is not None and cored is not None:
        out.append(f"One Redis PING round trip from trio: raw socket {num(sock)} us, "
                   f"coredis client {num(cored)} us.")
    pg = by.get(("floxide", "dist-postgres-chain"), {})
    if "raw_commit_us" in pg:
        out.append(
            f"PostgreSQL floor: one INSERT + COMMIT round trip (psycopg, fsync on) "
            f"{num(pg['raw_commit_us'])} us, on the same throw-away server as the PostgreSQL "
            f"rows; PostgreSQL chain: mean {num(pg['mean_us'])} us/step over the whole run."
        )
    d = by.get(("floxide", "dist-redis-chain"), {})
    if "mean_us" in d:
        out.append(
            f"Redis chain: mean {num(d['mean_us'])} us/step over the whole run; p50/p99 are "
            f"gaps between consecutive steps' clocks ({d['samples']} samples)."
        )
    if "first_step_p50_us" in d:
        out.append(
            f"Redis chain: a run's first gap (start_run on the orchestrator's held "
            f"connection, `backend.connected()`, as a service keeps it; a worker woken; the "
            f"first lease) median {num(d['first_step_p50_us'])} us; p99 of the other gaps "
            f"{num(d['later_steps_p99_us'])} us."
        )
    if "server_script_us" in d:
        out.append(
            f"Redis chain: the server's own time per script call (INFO commandstats) "
            f"{num(d['server_script_us'])} us, part of every step's round trip."
        )
    for w in ("dist-redis", "dist-redis-chain", "dist-redis-cluster", "dist-redis-cluster-chain"):
        d = by.get(("floxide", w), {})
        if "redis_commands_per_item" in d:
            scripts = d["redis_commands"].get("evalsha", 0) / d["items_total"]
            out.append(
                f"{w}: {d['redis_commands_per_item']:.1f} Redis commands per work item "
                f"(counted by the server, commands inside scripts included), "
                f"{scripts:.1f} script calls (EVALSHA) per item."
            )
    out += peer_notes(table)
    for lib in ["floor", *libs]:
        m = table["meta"].get(lib, {})
        if m.get("version"):
            out.append(f"  {lib}: {m['version']} -- {m.get('note', '')}")
        elif m.get("status"):
            out.append(f"  {lib}: {m['status']} {m.get('why', '')}".rstrip())
    for r in recs:
        if r.get("error"):
            out.append(f"  ERR {r['library']}/{r.get('workload')}: {r['error']}")
        if r.get("child_error"):
            out.append(f"  ERR {r['library']} {' '.join(r.get('args', []))}: {r['child_error']}")
    return "\n".join(out)


def peer_notes(table: dict[str, Any]) -> list[str]:
    """The distributed rows' floxide / best peer, and the peers' Redis commands per item."""
    out = []
    for row in table["rows"]:
        if row["ratio"] is None or not row["best_peer"] or "recorded" in row["best_peer"]:
            continue
        if not row["workload"].startswith(("distributed", "Redis chain")):
            continue
        ours = row["values"]["floxide"]
        better = "floxide ahead" if row["beats_best_peer"] else "floxide BEHIND"
        out.append(
            f"floxide / best peer, {row['workload']}: {num(ours)} / {num(row['best'])} "
            f"{row['unit']} ({row['best_peer']}) = {row['ratio']:.2f}, {better}."
        )
    by = table["by"]
    for lib in DIST_PEERS:
        per = [f"{w}: {by[(lib, w)]['redis_commands_per_item']:.1f}"
               for w in ("dist-redis", "dist-redis-chain")
               if "redis_commands_per_item" in by.get((lib, w), {})]
        if per:
            out.append(f"{lib}: Redis commands per work item (server count), {', '.join(per)}.")
    big = by.get(("floxide", "dist-redis-big"), {})
    if "big_over_small" in big:
        peaks = ", ".join(f"{p:.0f}" for p in big["worker_peak_rss_mb"])
        out.append(
            f"dist-redis-big: {big['big_n']} branches in {big['big_run_s']:.1f} s after "
            f"{big['reps']} runs of {big['n']} on the same server: "
            f"{big['big_over_small']:.0%} of their rate; each worker's peak RSS {peaks} MB."
        )
    return out


def update_readme(text: str) -> None:
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    with open(README) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        log("README.md has no bench markers; not updated")
        return
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # The notes under the table become a list, so Markdown keeps them on separate lines.
    text = "\n".join(
        ln if ln.startswith("|") or not ln.strip() else f"- {ln.strip()}"
        for ln in text.splitlines()
    )
    with open(README, "w") as f:
        f.write(f"{head}{begin}\nLast run: {stamp}.\n\n{text}\n{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma list of libraries (default: all)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--memory-n", type=int, default=100_000)
    ap.add_argument("--big-n", type=int, default=100_000,
                    help="branches of the big Redis fan-out (0: skip that row)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-distributed", action="store_true")
    ap.add_argument("--distributed-only", action="store_true",
                    help="only the distributed rows and the floors' round trips (no memory)")
    ap.add_argument("--no-peers-setup", action="store_true",
                    help="do not create/update the peers' virtualenv")
    ap.add_argument("--update-readme", action="store_true",
                    help="write the table into benchmarks/README.md")
    a = ap.parse_args()
    t0 = time.perf_counter()
    peers_problem: str | None = None
    if a.no_peers_setup:
        peers_problem = None if os.path.exists(PEERS_PY) else "no benchmarks/.venv-peers"
    else:
        peers_problem = ensure_peers_venv()
    if peers_problem:
        log(f"peers' virtualenv: {peers_problem}")
        if os.path.exists(PEERS_PY):
            # Whatever did install still runs; each child reports a peer it cannot import.
            peers_problem = None
    mach = machine()
    log(f"benchmarking on {mach['cpu']}, {mach['cores']} cores")
    recs = collect(a, peers_problem)
    table = build_table(recs, a.n, a.memory_n)
    text = render(table, recs, mach, a.n, a.reps)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "when": stamp, "machine": mach, "n": a.n, "reps": a.reps, "memory_n": a.memory_n,
        "big_n": a.big_n, "wall_s": time.perf_counter() - t0, "rows": table["rows"],
        "records": recs,
    }
    for name in (f"bench-{stamp}.json", "latest.json"):
        with open(os.path.join(RESULTS, name), "w") as f:
            json.dump(doc, f, indent=1)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(text + "\n")
    if a.update_readme:
        update_readme(text)
    log(f"results: {os.path.relpath(os.path.join(RESULTS, 'latest.json'))} "
        f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
