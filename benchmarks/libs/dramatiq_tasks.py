"""The Dramatiq actors of the benchmark (`dramatiq libs.dramatiq_tasks`).

Broker, results and the group barrier are the redis-server in BENCH_REDIS_URL. A fan-out
is a `group` of `work` messages with a completion callback, `total`, which reads the
group's results (its message ids are `{key}-{i}`, so the callback carries two arguments,
not the ids); a chain is a `pipeline` of `stamp`s. Each worker process announces it is
ready (libs.queues.announce_ready) once it boots.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import GroupCallbacks, Middleware
from dramatiq.rate_limits.backends import RedisBackend as BarrierBackend
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend as ResultsBackend

from libs.queues import announce_ready

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class _Ready(Middleware):
    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        announce_ready()


broker = RedisBroker(url=URL)
results = ResultsBackend(url=URL)
broker.add_middleware(Results(backend=results))
broker.add_middleware(GroupCallbacks(BarrierBackend(url=URL)))
broker.add_middleware(_Ready())
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def work(x: int) -> int:
    """One branch: passes its value on."""
    return x


def branch(key: str, i: int) -> Any:
    """The message of branch i of fan-out `key` (its id is known to the join)."""
    return work.message(i).copy(message_id=f"{key}-{i}")


@dramatiq.actor(store_results=True, max_retries=0)
def total(key: str, n: int) -> int:
    """The join (the group's completion callback): sums the n branches' results."""
    with results.client.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.lindex(results.build_message_key(branch(key, i)), 0)
        raw = pipe.execute()
    return sum(results.unwrap_result(results.encoder.decode(r)) for r in raw)


@dramatiq.actor(store_results=True, max_retries=0)
def stamp(xs: list[int]) -> list[int]:
    """A chain step that appends the wall clock (ns)."""
    return [*xs, time.time_ns()]
