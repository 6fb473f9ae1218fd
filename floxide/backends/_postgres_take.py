"""Leasing on PostgreSQL, inside a transaction: `take` leases ready items (`SELECT ... FOR
UPDATE SKIP LOCKED`, the runs' rows held in KEY SHARE mode, each lease carrying its run's
context and contributions) and fails the runs found past
their deadline, in two halves (`send_take`, `taken`) so a pipeline can send it with other
statements; `finish` fails a run; `notify` queues the LISTEN/NOTIFY wake-ups that go out
when the transaction commits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

from floxide._step import DEADLINE_PASSED
from floxide.backends._base import CommitResult, ErrorRecord, Lease, RunContext
from floxide.backends._postgres_conn import Conn
from floxide.backends._postgres_tables import add_errors, pairs

__all__ = [
    "FINISH",
    "OF_RUN",
    "TAKE_COLUMNS",
    "TAKE_FROM",
    "TAKE_STEPS",
    "Committed",
    "Fetched",
    "finish",
    "notify",
    "send_take",
    "take",
    "take_params",
    "taken",
]

Committed = tuple[CommitResult, list[Lease], bool]
"""What a commit returns: its result, the leases it took, whether its run ended."""

_MAX_PAYLOAD = 7000
"""Longest NOTIFY payload sent as is (PostgreSQL allows 8000 bytes); longer wakes all."""

TAKE_STEPS = """
picked AS (
    SELECT i.run_id, i.item_id, i.node, i.payload, i.attempt, i.last_error, i.expired,
           i.due, i.seq, (r.deadline IS NOT NULL AND r.deadline < %(now)s) AS late
    FROM items i JOIN runs r ON r.run_id = i.run_id
    WHERE i.queue = %(queue)s AND i.state = 'queued' AND i.due <= %(now)s
      AND r.status IN ('pending', 'running')
    ORDER BY i.due, i.seq LIMIT %(limit)s
    FOR UPDATE OF i SKIP LOCKED FOR KEY SHARE OF r
), taken AS (
    UPDATE items i SET state = 'leased', worker_id = %(worker)s, token = nextval('tokens'),
           deadline = %(until)s
    FROM picked p WHERE i.run_id = p.run_id AND i.item_id = p.item_id AND NOT p.late
    RETURNING i.run_id, i.item_id, i.token
), contributed AS (
    SELECT c.run_id, array_agg(c.key) AS keys, array_agg(c.data) AS data
    FROM contributions c WHERE c.run_id IN (SELECT run_id FROM picked) GROUP BY c.run_id
)"""
"""The parts of `take` that lease (for a statement that also does more: `_postgres_sql.batch`)."""
TAKE_COLUMNS = """p.run_id, p.item_id, p.node, p.payload, p.attempt, p.last_error, p.expired,
       t.token, r.status, r.deadline, CASE WHEN p.first THEN r.context END, r.version, p.late,
       CASE WHEN p.first THEN c.keys END, CASE WHEN p.first THEN c.data END"""
TAKE_FROM = """
FROM (SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY due, seq) = 1 AS first
      FROM picked) p JOIN runs r ON r.run_id = p.run_id
LEFT JOIN taken t ON t.run_id = p.run_id AND t.item_id = p.item_id
LEFT JOIN contributed c ON c.run_id = p.run_id"""
_TAKE = "WITH" + TAKE_STEPS + "\nSELECT " + TAKE_COLUMNS + TAKE_FROM + "\nORDER BY p.due, p.seq\n"
"""The rows leased; a run's context and contributions only on its first row (its other
rows share them: a big context is not sent once per item)."""

FINISH = (
    "UPDATE runs SET status = %(status)s, error = %(error)s, error_kind = %(kind)s,"
    " pending = 0, finished_at = %(now)s, updated_at = %(now)s, failed = failed + %(failed)s"
    " WHERE run_id = %(run)s AND status IN ('pending', 'running', 'paused') RETURNING queue"
)


def notify(conn: Conn, channel: str, keys: Sequence[str]) -> None:
    """Notify `keys` when this transaction commits (duplicates collapse)."""
    for key in dict.fromkeys(keys):
        conn.execute(
            "SELECT pg_notify(%s, %s)", (channel, key if len(key) <= _MAX_PAYLOAD else "*")
        )


def finish(conn: Conn, run_id: str, error: ErrorRecord, *, failed: int) -> bool:
    """Fail a live run with `error` (logged); False when it is finished already."""
    row = conn.execute(
        FINISH,
        {
            "status": "failed",
            "error": error.message,
            "kind": error.kind,
            "now": time.time(),
            "failed": failed,
            "run": run_id,
        },
    ).fetchone()
    if row is None:
        return False
    add_errors(conn, run_id, [error])
    return True


def take(
    conn: Conn, channel: str, queue: str, worker_id: str, limit: int, lease_seconds: float
) -> tuple[list[Lease], list[str]]:
    """Lease up to `limit` ready items; fail the runs found past their deadline."""
    now = time.time()
    cursor = send_take(conn, queue, worker_id, limit, lease_seconds, now)
    return taken(conn, channel, cursor, worker_id, lease_seconds, now)


OF_RUN = ("i.queue = %(queue)s", "i.queue = (SELECT queue FROM runs WHERE run_id = %(queue_of)s)")
"""What turns `TAKE_STEPS` into a lease on the queue of one run (`queue_of`)."""
_TAKE_OF_RUN = _TAKE.replace(*OF_RUN)
"""`_TAKE` on the queue of one run (a worker's, whose queue the caller does not know)."""


def send_take(
    conn: Conn,
    queue: str | None,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: float,
    *,
    queue_of: str = "",
) -> psycopg.Cursor[Any]:
    """Send the statement of `take` (on `queue`, or the queue of run `queue_of`)."""
    return conn.execute(
        _TAKE if queue is not None else _TAKE_OF_RUN,
        take_params(queue, worker_id, limit, lease_seconds, now, queue_of=queue_of),
    )


def take_params(
    queue: str | None,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: float,
    *,
    queue_of: str = "",
) -> dict[str, Any]:
    """The parameters of `TAKE_STEPS`."""
    return {
        "now": now,
        "queue": queue,
        "queue_of": queue_of,
        "limit": limit,
        "worker": worker_id,
        "until": now + lease_seconds,
    }


class Fetched(Protocol):
    """A cursor, or rows fetched from one already."""

    def fetchall(self) -> list[Any]: ...


def taken(
    conn: Conn,
    channel: str,
    cursor: Fetched,
    worker_id: str,
    lease_seconds: float,
    now: float,
) -> tuple[list[Lease], list[str]]:
    """The leases `send_take` took; the runs it found late are failed."""
    rows = cursor.fetchall()
    out: list[Lease] = []
    ended: list[str] = []
    pending: set[str] = set()
    contexts: dict[str, RunContext] = {}
    for r in rows:
        run_id = r[0]
        if r[12]:
            if run_id not in ended:
                err = ErrorRecord(r[2], r[1], r[4], "timeout", DEADLINE_PASSED, now)
                if finish(conn, run_id, err, failed=0):
                    ended.append(run_id)
            continue
        if r[8] == "pending":
            pending.add(run_id)
        context = contexts.get(run_id)
        if context is None:  # the run's first row
            context = contexts[run_id] = RunContext(bytes(r[10]), r[11], pairs(r[13], r[14]))
        out.append(
            Lease(
                run_id=run_id,
                item_id=r[1],
                node=r[2],
                payload=bytes(r[3]),
                attempt=r[4],
                worker_id=worker_id,
                token=r[7],
                deadline=now + lease_seconds,
                last_error=r[5],
                expired=bool(r[6]),
                context=context,
                run_deadline=math.inf if r[9] is None else r[9],
            )
        )
    if pending:
        conn.execute(
            "UPDATE runs SET status = 'running', updated_at = %s"
            " WHERE run_id = ANY(%s) AND status = 'pending'",
            (now, sorted(pending)),
        )
    if ended:
        notify(conn, channel, [f"r:{rid}" for rid in ended])
    return out, ended
