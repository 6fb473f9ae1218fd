"""The Celery app of the benchmark: the tasks its workers run (`celery -A libs.celery_tasks`).

Broker and result backend are the redis-server in BENCH_REDIS_URL. JSON messages; each
worker announces it is ready (libs.queues.announce_ready) once it consumes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from libs.queues import announce_ready

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task
def work(x: int) -> int:
    """One branch: passes its value on."""
    return x


@app.task
def total(xs: list[int]) -> int:
    """The join (the chord's body): sums what every branch produced."""
    return sum(xs)


@app.task
def stamp(xs: list[int]) -> list[int]:
    """A chain step that appends the wall clock (ns)."""
    return [*xs, time.time_ns()]


@worker_ready.connect
def _ready(**_: Any) -> None:
    announce_ready()
