"""`WorkerPool`: a worker process's pool of `Worker` slots, stopped by SIGTERM / SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio

from floxide._logging import step_fields
from floxide.distributed._worker import Worker, logger

__all__ = ["WorkerPool"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@contextmanager
def _single() -> Iterator[None]:
    """Raise a lone exception out of a nursery's group as itself (a clear error)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise


class WorkerPool(Worker[C, I, O]):
    """A worker process's pool: `concurrency` items at once, stopped by SIGTERM / SIGINT.

    `await WorkerPool(wf, backend, concurrency=4).run()` works until stopped; the first
    SIGTERM or SIGINT stops it gracefully (see `Worker.stop`), and `run` returns normally.
    """

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if threading.current_thread() is not threading.main_thread():
            await super().run(task_status=task_status)  # signals need the main thread
            return
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as receiver, _single():
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for signum in receiver:
                        logger.info(
                            "received %s: stopping gracefully",
                            signal.Signals(signum).name,
                            extra=step_fields("-"),
                        )
                        self.stop()

                nursery.start_soon(watch)
                await super().run(task_status=task_status)
                nursery.cancel_scope.cancel()
