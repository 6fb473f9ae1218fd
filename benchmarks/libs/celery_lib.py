"""Celery: a chord (the branches, then a join summing them) for the fan-out and a chain of
stamping tasks, through a Redis broker and result backend, with its worker processes."""

from __future__ import annotations

import importlib.util
from typing import Any

from libs.queues import Queue, measure, python

NAME = "celery"
DISTS = ("celery", "kombu", "redis")
NOTE = ("Redis broker + result backend; chord (fan-out + join), chain; "
        "worker processes with the threads pool, 16 threads each")
TIMEOUT_S = 240


def available() -> bool:
    return importlib.util.find_spec("celery") is not None


class _Celery(Queue):
    def __init__(self, url: str) -> None:
        from libs import celery_tasks

        self.tasks = celery_tasks

    def worker_command(self, mode: str) -> list[str]:
        return [python(), "-m", "celery", "-A", "libs.celery_tasks", "worker",
                "--pool", "threads", "--concurrency", "16", "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def fanout(self, n: int) -> int:
        from celery import chord

        t = self.tasks
        res = chord(t.work.s(i) for i in range(n))(t.total.s())
        return int(res.get(timeout=TIMEOUT_S))

    def chain(self, start: list[int], steps: int) -> list[int]:
        from celery import chain

        t = self.tasks
        res = chain(t.stamp.s(start), *(t.stamp.s() for _ in range(steps - 1))).apply_async()
        return list(res.get(timeout=TIMEOUT_S))


def distributed(mode: str, n: int, reps: int, workers: int) -> dict[str, Any]:
    return measure(_Celery, NAME, mode, n, reps, workers)
