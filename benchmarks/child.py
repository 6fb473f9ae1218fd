"""Measures one library in this process and prints JSON records (see common.Emitter).

    python child.py --lib NAME --workloads chain,fanout,ckpt-mem,ckpt-sqlite [--n 1000]
    python child.py --lib NAME --memory 100000
    python child.py --lib floxide --distributed sqlite|redis[-cluster][-chain]|redis-big|postgres...
    (modes: see floxide_lib.distributed)
    python child.py --lib celery|dramatiq --distributed redis|redis-chain

run.py starts one of these per library and mode, so no library shares a process (or its
threads, caches, logging and garbage) with another.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata as md
import os
import sys
import threading
import time
import traceback
import warnings
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    CHAIN,
    CKPT_SQLITE,
    Emitter,
    NotAvailable,
    Scratch,
    bytes_written,
    expected,
    measure,
    peak_rss_mb,
    rss_mb,
)

MODULES = {
    "floor": "libs.floor",
    "floxide": "libs.floxide_lib",
    "pocketflow": "libs.pocketflow_lib",
    "pydantic-graph": "libs.pydantic_graph_lib",
    "langgraph": "libs.langgraph_lib",
    "burr": "libs.burr_lib",
    "celery": "libs.celery_lib",
    "dramatiq": "libs.dramatiq_lib",
}

for var, val in {
    "BURR_TELEMETRY_ENABLED": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(var, val)
warnings.filterwarnings("ignore")


def _versions(mod: ModuleType) -> str:
    out = []
    for d in getattr(mod, "DISTS", ()):
        try:
            out.append(f"{d} {md.version(d)}")
        except md.PackageNotFoundError:
            pass
    extra = getattr(mod, "versions", None)
    if extra is not None:
        out += [f"{k} {v}" for k, v in extra().items()]
    return ", ".join(out)


def _error(e: BaseException) -> dict[str, Any]:
    """A failure record; a missing floxide module means a part not written yet."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ModuleNotFoundError) and (cause.name or "").startswith("floxide"):
            return {"na": f"{cause.name} not available yet"}
        cause = cause.__cause__ or cause.__context__
    return {
        "error": f"{type(e).__name__}: {e}"[:300],
        "tb": traceback.format_exc(limit=-4)[-1500:],
    }


def local(mod: ModuleType, emit: Emitter, workloads: list[str], n: int, reps: int,
          budget: float) -> None:
    scratch = Scratch(emit.library)
    try:
        for w in workloads:
            fn = getattr(mod, w.replace("-", "_"))
            rec: dict[str, Any] = {"workload": w}
            try:
                rec.update(measure(lambda k: fn(k, scratch), w, n, reps, budget))  # noqa: B023
                if w == CKPT_SQLITE:
                    # Bytes per step at two chain lengths: a store that rewrites the whole
                    # run state each step shows it as growth from the short to the long one.
                    for k in (n // 10, n):
                        b = bytes_written(lambda k: fn(k, scratch), scratch, k)  # noqa: B023
                        rec[f"write_b_n{k}"] = b["write_b"]
                        rec[f"growth_b_n{k}"] = b["growth_b"]
                    rec["write_b"] = rec[f"write_b_n{n}"]
                    rec["growth_b"] = rec[f"growth_b_n{n}"]
            except NotAvailable as e:
                rec["na"] = str(e) or "not available"
            except Exception as e:
                rec.update(_error(e))
            emit(**rec)
            gc.collect()
        for name, extra in getattr(mod, "EXTRAS", {}).items():
            rec = {"workload": name}
            try:
                # expected() of a chain is n: every extra returns the number of operations.
                rec.update(measure(lambda k: extra(k, scratch), CHAIN, n, reps, budget))  # noqa: B023
            except NotAvailable as e:
                rec["na"] = str(e) or "not available"
            except Exception as e:
                rec.update(_error(e))
            emit(**rec)
    finally:
        scratch.cleanup()


def memory(mod: ModuleType, emit: Emitter, n: int, limit_s: float) -> None:
    """Peak RSS of one fan-out of n branches, in a process that did nothing else.

    A run still going after limit_s seconds is reported unfinished, with the peak so far.
    """
    scratch = Scratch(emit.library + "-mem")
    rec: dict[str, Any] = {"workload": "memory", "n": n}

    def give_up() -> None:
        rec.update(unfinished_after_s=limit_s, peak_mb=peak_rss_mb())
        rec["delta_mb"] = rec["peak_mb"] - rec.get("base_mb", 0.0)
        emit(**rec)
        scratch.cleanup()
        os._exit(0)

    watchdog = threading.Timer(limit_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        # A small run first, so imports and one-off structures are in the baseline.
        mod.fanout(10, scratch)
        gc.collect()
        rec["base_mb"] = rss_mb()
        t0 = time.perf_counter()
        _b, _r, res = mod.fanout(n, scratch)
        rec["run_s"] = time.perf_counter() - t0
        if res != expected("fanout", n):
            raise AssertionError(f"wrong result at n={n}: {res!r:.200}")
        rec["peak_mb"] = peak_rss_mb()
        rec["delta_mb"] = rec["peak_mb"] - rec["base_mb"]
    except NotAvailable as e:
        rec["na"] = str(e) or "not available"
    except Exception as e:
        rec.update(_error(e))
    finally:
        watchdog.cancel()
        scratch.cleanup()
    emit(**rec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, choices=sorted(MODULES))
    ap.add_argument("--workloads", default="chain,fanout,ckpt-mem,ckpt-sqlite")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=30.0, help="soft seconds per workload")
    ap.add_argument("--memory", type=int, default=0, help="peak RSS of one fan-out of this size")
    ap.add_argument("--limit", type=float, default=90.0, help="seconds before a memory run stops")
    ap.add_argument("--distributed", default="",
                    help="sqlite | redis[-cluster] | redis[-cluster]-chain | postgres[-chain]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--big-n", type=int, default=100_000, help="branches of the redis-big run")
    a = ap.parse_args()
    emit = Emitter(a.lib)
    try:
        mod = importlib.import_module(MODULES[a.lib])
        if not mod.available():
            emit(status="missing")
            return
        emit(version=_versions(mod), note=getattr(mod, "NOTE", ""),
             python=sys.version.split()[0])
    except Exception as e:
        emit(status="import failed", **_error(e))
        return
    if a.memory:
        memory(mod, emit, a.memory, a.limit)
    elif a.distributed:
        rec: dict[str, Any] = {"workload": f"dist-{a.distributed}"}
        try:
            big = {"big_n": a.big_n} if a.distributed == "redis-big" else {}
            rec.update(mod.distributed(a.distributed, a.n, a.reps, a.workers, **big))
        except NotAvailable as e:
            rec["na"] = str(e) or "not available"
        except AttributeError:
            rec["na"] = "not available"
        except Exception as e:
            rec.update(_error(e))
        emit(**rec)
    else:
        local(mod, emit, [w for w in a.workloads.split(",") if w], a.n, a.reps, a.budget)


if __name__ == "__main__":
    main()
