"""Dramatiq: a group with a completion callback (the join) for the fan-out and a pipeline
of stamping actors for the chain, with Redis as broker, result and barrier backend."""

from __future__ import annotations

import importlib.util
import time
import uuid
from typing import Any

from libs.queues import Queue, measure, python

NAME = "dramatiq"
DISTS = ("dramatiq", "redis")
NOTE = ("Redis broker + results + group barrier; group with a completion callback "
        "(fan-out + join), pipeline (chain); worker processes of 16 threads each")
TIMEOUT_S = 240


def _result(message: Any) -> Any:
    """The message's result, blocking in 1 s waits (one long blocking read can outlast the
    Redis client's socket timeout)."""
    from dramatiq.results import ResultTimeout

    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return message.get_result(block=True, timeout=1000)
        except ResultTimeout:
            if time.monotonic() > deadline:
                raise


def available() -> bool:
    return importlib.util.find_spec("dramatiq") is not None


class _Dramatiq(Queue):
    def __init__(self, url: str) -> None:
        from libs import dramatiq_tasks

        self.tasks = dramatiq_tasks

    def worker_command(self, mode: str) -> list[str]:
        return [python(), "-m", "dramatiq", "libs.dramatiq_tasks",
                "--processes", "1", "--threads", "16"]

    def fanout(self, n: int) -> int:
        import dramatiq

        t = self.tasks
        key = uuid.uuid4().hex
        join = t.total.message(key, n)
        g = dramatiq.group(t.branch(key, i) for i in range(n))
        g.add_completion_callback(join)
        g.run()
        return int(_result(join))

    def chain(self, start: list[int], steps: int) -> list[int]:
        import dramatiq

        t = self.tasks
        p = dramatiq.pipeline(
            [t.stamp.message(start), *(t.stamp.message() for _ in range(steps - 1))]
        )
        p.run()
        return list(_result(p.messages[-1]))


def distributed(mode: str, n: int, reps: int, workers: int) -> dict[str, Any]:
    return measure(_Dramatiq, NAME, mode, n, reps, workers)
