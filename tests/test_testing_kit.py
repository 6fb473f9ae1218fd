"""The conformance kit passes a correct backend and names what a broken one gets wrong.

Each broken backend is the memory backend with one behaviour taken away.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest
import trio

from floxide import BackendError
from floxide.backends import Backend, CommitPlan, CommitResult, Lease, MemoryBackend
from floxide.backends._base import NewRun, RunRecord
from floxide.testing import check_backend


class DeafHeartbeats(MemoryBackend):
    """Answers heartbeats truthfully but never extends a lease."""

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        return [self._lease_ok(le)[1] is not None for le in leases]


class IdleReaper(MemoryBackend):
    """Never takes an expired lease back (nor purges anything)."""

    async def reap(self) -> int:
        return 0


class CommitsTwice(MemoryBackend):
    """Applies a repeated commit of the same lease a second time."""

    def __init__(self) -> None:
        super().__init__()
        self._applied: dict[int, object] = {}

    async def commit(self, lease: Lease, plan: CommitPlan) -> CommitResult:
        run, held = self._lease_ok(lease)
        result = await super().commit(lease, plan)
        if result is CommitResult.COMMITTED:
            self._applied[lease.token] = held
        elif lease.token in self._applied and run is not None:
            value = plan.context.value if plan.context is not None else None
            self._apply(run, self._applied[lease.token], plan, value)  # type: ignore[arg-type]
            return CommitResult.COMMITTED
        return result


class CaseBlindIds(MemoryBackend):
    """Takes run ids that differ only in case for the same run (as a case-insensitive
    collation would)."""

    async def create_run(self, run: NewRun) -> None:
        if any(rid.lower() == run.run_id.lower() for rid in self._s.runs):
            raise BackendError(f"run {run.run_id!r} already exists")
        await super().create_run(run)


class LeaksOnCancel(MemoryBackend):
    """Turns a cancellation of `get_run` into its driver's own error."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        try:
            await trio.sleep(0)  # a checkpoint, as a network round trip has
        except trio.Cancelled:
            raise RuntimeError("connection closed") from None
        return await super().get_run(run_id)


class ShowsPassword(MemoryBackend):
    """Shows the password of the URL it was opened with."""

    def __init__(self) -> None:
        super().__init__(url="memory://user:s3cret@host")


async def test_a_correct_backend_passes() -> None:
    await check_backend(MemoryBackend)


@pytest.mark.parametrize(
    ("broken", "property_name"),
    [
        (DeafHeartbeats, "heartbeats"),
        (IdleReaper, "reaping"),
        (CommitsTwice, "at-most-once"),
        (CaseBlindIds, "isolation"),
        (LeaksOnCancel, "cancellation"),
        (ShowsPassword, "connections"),
    ],
)
async def test_a_broken_backend_fails_naming_the_property(
    broken: Callable[[], Backend], property_name: str
) -> None:
    with pytest.raises(AssertionError) as failed:
        await check_backend(broken)
    lines = str(failed.value).splitlines()
    assert any(line.startswith(f"{property_name}: ") for line in lines), lines


async def test_a_backend_that_raises_fails_naming_the_property() -> None:
    class NoWorkers(MemoryBackend):
        async def workers(self) -> list[object]:  # type: ignore[override]
            raise RuntimeError("not implemented")

    with pytest.raises(AssertionError, match="workers: raised RuntimeError: not implemented"):
        await check_backend(NoWorkers)


class NeverWaits(MemoryBackend):
    """Ignores `wait`: an idle worker would spin instead of being woken."""

    async def lease(
        self, queue: str, worker_id: str, *, limit: int, lease_seconds: float, wait: float
    ) -> list[Lease]:
        return await super().lease(
            queue, worker_id, limit=limit, lease_seconds=lease_seconds, wait=0
        )


async def test_a_backend_that_ignores_wait_fails() -> None:
    with pytest.raises(AssertionError) as failed:
        await check_backend(NeverWaits)
    assert "leases: a waiting lease did not get the item of a new run" in str(failed.value)


def test_the_kit_runs_under_plain_trio_without_pytest() -> None:
    code = (
        "import sys, trio\n"
        "from floxide.backends import MemoryBackend\n"
        "from floxide.testing import check_backend\n"
        "trio.run(check_backend, MemoryBackend)\n"
        "sys.exit('pytest' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
