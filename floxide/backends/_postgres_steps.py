"""The PostgreSQL backend's statements that take work and apply steps, inside a transaction.

`take` leases ready items (`SELECT ... FOR UPDATE SKIP LOCKED`, the runs' rows held in KEY
SHARE mode) and fails the runs found past their deadline; `commit` applies one step: its
first statement checks the lease and writes what the step made, the join scopes are
counted by the rulebook over `Scopes`, and the run's row is updated last. `notify` queues
the LISTEN/NOTIFY wake-ups that go out when the transaction commits.

Alone, a chain step is one statement in autocommit mode (`_postgres_sql.chain`). In a group
of commits (`Pool.run_grouped`), each step's first statement is pipelined and its counts
left to `_Step.settle`, which locks each run's scopes and row once, counts every step with
the rulebook in memory (`_GroupScopes`) and writes the counts back, and leases the slots
the steps free in the same transaction: commits of other workers wait for those rows only
from the group's end to its COMMIT, and a freed slot costs no lease transaction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from floxide._errors import BackendError
from floxide._step import DEADLINE_PASSED
from floxide.backends import _postgres_sql as sql
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
    ErrorRecord,
    Lease,
    NewItem,
    RunContext,
    RunStatus,
    ScopeTable,
    count_scopes,
)
from floxide.backends._postgres_conn import Conn, Deferred, Rollback
from floxide.backends._postgres_tables import Scopes, add_errors, insert_items

__all__ = ["FINISH", "Committed", "commit", "finish", "notify", "take"]

_MAX_PAYLOAD = 7000
"""Longest NOTIFY payload sent as is (PostgreSQL allows 8000 bytes); longer wakes all."""

_TAKE = """
WITH picked AS (
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
)
SELECT p.run_id, p.item_id, p.node, p.payload, p.attempt, p.last_error, p.expired, t.token,
       r.status, r.deadline, r.context, r.version, p.late
FROM picked p JOIN runs r ON r.run_id = p.run_id
LEFT JOIN taken t ON t.run_id = p.run_id AND t.item_id = p.item_id
ORDER BY p.due, p.seq
"""

class _Counted:
    """`Scopes` with one `add_open` already applied by the first statement (its result):
    the rulebook's `count_scopes` goes on from there (the scope closed)."""

    def __init__(self, scopes: Scopes, scope_id: str, count: int) -> None:
        self.scopes, self.scope_id, self.count = scopes, scope_id, count

    def add_open(self, scope_id: str, delta: int) -> int:
        if scope_id == self.scope_id:
            return self.count
        return self.scopes.add_open(scope_id, delta)

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.scopes.open(scope_id, count, fired)

    def close(self, scope_id: str) -> Sequence[NewItem]:
        return self.scopes.close(scope_id)


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
    rows = conn.execute(
        _TAKE,
        {
            "now": now,
            "queue": queue,
            "limit": limit,
            "worker": worker_id,
            "until": now + lease_seconds,
        },
    ).fetchall()
    out: list[Lease] = []
    ended: list[str] = []
    pending: set[str] = set()
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
                context=RunContext(bytes(r[10]), r[11]),
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


Committed = tuple[CommitResult, list[Lease], bool]


def commit(
    conn: Conn,
    channel: str,
    lease: Lease,
    plan: CommitPlan,
    limit: int,
    lease_seconds: float,
    defer: bool = False,
) -> Committed | Deferred:
    """Apply one step: (result, the leases taken, whether the run ended). When `defer`, a
    `simple` step leaves its scope's and run's counts to `_Step.settle` (its group's end).
    On a connection in autocommit mode (a commit alone), a chain step is one statement,
    any other step one transaction."""
    if conn.autocommit:
        statement = sql.chain(plan)
        done = None if statement is None else _chain(conn, statement, lease, plan, limit,
                                                     lease_seconds, channel)  # fmt: skip
        if done is not None:
            return done
        with conn.transaction():
            return _commit(conn, channel, lease, plan, limit, lease_seconds, defer=False)
    return _commit(conn, channel, lease, plan, limit, lease_seconds, defer=defer)


def _commit(
    conn: Conn,
    channel: str,
    lease: Lease,
    plan: CommitPlan,
    limit: int,
    lease_seconds: float,
    *,
    defer: bool,
) -> Committed | Deferred:
    run_id = lease.run_id
    now = time.time()
    items = plan.items
    if defer and sql.batchable(plan):  # applied with its group's others by `settle`
        return _Step(channel, lease, plan, now, limit, lease_seconds)
    cursor = conn.execute(sql.check(plan, False), sql.params(lease, plan, now))
    row = cursor.fetchone()
    refused = _refused(row)
    if refused is not None:
        raise Rollback(refused, clean=True)
    assert row is not None
    scopes: ScopeTable = Scopes(conn, run_id)
    if sql.simple(plan) and plan.scopes and row[6] is None:
        raise BackendError(f"join scope {plan.scopes[0]!r} of run {run_id!r} is missing")
    if sql.simple(plan) and plan.scopes and row[6] == 0:  # the scope closed: fire its joins
        scopes = _Counted(Scopes(conn, run_id), plan.scopes[0], 0)
    elif sql.simple(plan):
        if row[5] is None:  # the run ended meanwhile (its row was updated first)
            raise Rollback((CommitResult.INACTIVE, [], False))
        return _after(conn, channel, lease, queue=row[3], items=items, ended=row[5] ==
                      "completed", limit=limit, lease_seconds=lease_seconds)
    stored, version, queue = bytes(row[1]), int(row[2]), row[3]
    update = plan.context
    context = None
    if update is not None:  # if the merge raises, nothing is applied (rolled back)
        stale = version != update.base_version and update.merge is not None
        context = update.merge(stored) if update.merge and stale else update.value
    if plan.handled:
        add_errors(conn, run_id, plan.handled)
    if plan.failure is not None:
        if context is not None:
            _write_context(conn, lease, plan, context, version)
        if not finish(conn, run_id, plan.failure, failed=1 + len(plan.handled)):
            raise Rollback((CommitResult.INACTIVE, [], False))
        conn.execute(  # kept, with the run's work state, for `retry_run`
            "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due,"
            " seq) VALUES (%s, %s, %s, %s, %s, %s, 'failed', %s, nextval('seq'))",
            (run_id, lease.item_id, queue, lease.node, lease.payload, lease.attempt, now),
        )
        notify(conn, channel, [f"r:{run_id}"])
        return CommitResult.COMMITTED, [], False
    fired = count_scopes(plan, scopes)
    insert_items(conn, run_id, queue, fired, now)
    items = [*items, *fired]
    status = _count(conn, lease, plan, context, version, len(items) - 1, now)
    return _after(conn, channel, lease, queue=queue, items=items, ended=status == "completed",
                  limit=limit, lease_seconds=lease_seconds)


def _chain(
    conn: Conn,
    statement: str,
    lease: Lease,
    plan: CommitPlan,
    limit: int,
    lease_seconds: float,
    channel: str,
) -> Committed | None:
    """A chain step in one statement (`sql.chain`), leasing the first `limit` successors
    ready at once; None when that statement did nothing for want of its conditions."""
    now = time.time()
    mine: list[bool] = []
    for it in plan.items:
        mine.append(len([m for m in mine if m]) < limit and it.delay <= 0)
    args = sql.params(lease, plan, now)
    args.update(
        take=sum(mine),
        mine=mine,
        worker=lease.worker_id,
        until=now + lease_seconds,
        channel=channel,
        leaves=len(mine) > sum(mine),
    )
    row = conn.execute(statement, args).fetchone()
    if row is None or RunStatus(row[0]).finished:
        return CommitResult.INACTIVE, [], False
    if not row[6]:
        return None
    if not row[4]:
        return CommitResult.LOST, [], False
    context = RunContext(bytes(row[1]), row[2])
    run_deadline = math.inf if row[7] is None else row[7]
    leases = [
        Lease(
            run_id=lease.run_id,
            item_id=item_id,
            node=node,
            payload=bytes(payload),
            attempt=attempt,
            worker_id=lease.worker_id,
            token=token,
            deadline=now + lease_seconds,
            context=context,
            run_deadline=run_deadline,
        )
        for item_id, node, payload, attempt, token in zip(
            row[8] or [], row[9] or [], row[10] or [], row[11] or [], row[12] or [], strict=True
        )
    ]
    return CommitResult.COMMITTED, leases, row[5] == "completed"


def _refused(row: Any) -> Committed | None:
    """What a commit whose first statement read `row` returns when it changed nothing:
    its run is finished, or its lease is lost."""
    if row is None or RunStatus(row[0]).finished:
        return CommitResult.INACTIVE, [], False
    if not row[4]:
        return CommitResult.LOST, [], False
    return None


def _after(
    conn: Conn,
    channel: str,
    lease: Lease,
    *,
    queue: str,
    items: Sequence[NewItem],
    ended: bool,
    limit: int,
    lease_seconds: float,
) -> tuple[CommitResult, list[Lease], bool]:
    """A committed step's end: lease the next items in the same transaction, and queue the
    wake-ups (the run's end; the queue, for items this worker did not take)."""
    run_id = lease.run_id
    made = sum(it.delay <= 0 for it in items)
    got: list[Lease] = []
    if min(limit, made) > 0:
        got, _ = take(conn, channel, queue, lease.worker_id, limit, lease_seconds)
    keys = [f"r:{run_id}"] if ended else []
    if items and len(got) < len(items):
        keys.append(f"q:{queue}")
    notify(conn, channel, keys)
    return CommitResult.COMMITTED, got, ended


def _count(
    conn: Conn,
    lease: Lease,
    plan: CommitPlan,
    context: bytes | None,
    version: int,
    delta: int,
    now: float,
) -> str:
    """Update the run's row last (counters, context, completion); its new status."""
    sets = (
        "pending = pending + %(delta)s, done = done + 1, updated_at = %(now)s,"
        " failed = failed + %(handled)s,"
        " status = CASE WHEN pending + %(delta)s <= 0 THEN 'completed' ELSE status END,"
        " finished_at = CASE WHEN pending + %(delta)s <= 0 THEN %(now)s END"
    )
    args: dict[str, Any] = {
        "delta": delta,
        "now": now,
        "run": lease.run_id,
        "handled": len(plan.handled),
    }
    live = "run_id = %(run)s AND status IN ('pending', 'running', 'paused')"
    if context is None:
        row = conn.execute(
            f"UPDATE runs SET {sets} WHERE {live} RETURNING status", args
        ).fetchone()
    else:
        args.update(context=context, version=version)
        row = conn.execute(
            f"UPDATE runs SET {sets}, context = %(context)s, version = version + 1"
            f" WHERE {live} AND version = %(version)s RETURNING status",
            args,
        ).fetchone()
        if row is None:  # another commit changed the context since: merge into it
            fresh = _locked_context(conn, lease.run_id)
            args["context"] = _merged(plan, fresh, context)
            args["version"] = fresh[1]
            row = conn.execute(
                f"UPDATE runs SET {sets}, context = %(context)s, version = version + 1"
                f" WHERE {live} RETURNING status",
                args,
            ).fetchone()
    if row is None:
        raise Rollback((CommitResult.INACTIVE, [], False))
    return str(row[0])


def _locked_context(conn: Conn, run_id: str) -> tuple[bytes, int]:
    row = conn.execute(
        "SELECT context, version, status FROM runs WHERE run_id = %s FOR NO KEY UPDATE",
        (run_id,),
    ).fetchone()
    if row is None or RunStatus(row[2]).finished:
        raise Rollback((CommitResult.INACTIVE, [], False))
    return bytes(row[0]), int(row[1])


def _merged(plan: CommitPlan, fresh: tuple[bytes, int], context: bytes) -> bytes:
    update = plan.context
    assert update is not None
    if update.merge is not None and fresh[1] != update.base_version:
        return update.merge(fresh[0])
    return context


def _write_context(
    conn: Conn, lease: Lease, plan: CommitPlan, context: bytes, version: int
) -> None:
    fresh = _locked_context(conn, lease.run_id)
    value = context if fresh[1] == version else _merged(plan, fresh, context)
    conn.execute(
        "UPDATE runs SET context = %s, version = version + 1 WHERE run_id = %s",
        (value, lease.run_id),
    )


class _Step(Deferred):
    """A `_simple` step applied but for its counts: its scope's and its run's, which
    `settle` updates for every such step of a group together (`count_scopes` still counts
    each step, over `_GroupScopes`)."""

    def __init__(
        self,
        channel: str,
        lease: Lease,
        plan: CommitPlan,
        now: float,
        limit: int,
        lease_seconds: float,
    ) -> None:
        self.channel, self.lease, self.plan = channel, lease, plan
        self.now, self.limit, self.lease_seconds = now, limit, lease_seconds
        self.queue = ""
        self.fired: list[NewItem] = []

    @staticmethod
    def settle(conn: Conn, calls: list[Deferred]) -> list[object]:
        calls_ = [st for st in calls if isinstance(st, _Step)]
        args = sql.batch_params([(st.lease, st.plan, st.now) for st in calls_])
        rows = conn.execute(sql.BATCH, args).fetchall()
        refused: dict[int, Committed] = {}
        steps: list[_Step] = []
        for st, (status, queue, held) in zip(calls_, rows, strict=True):
            if status is None or RunStatus(status).finished:
                refused[id(st)] = (CommitResult.INACTIVE, [], False)
            elif not held:
                refused[id(st)] = (CommitResult.LOST, [], False)
            else:
                st.queue = queue
                steps.append(st)
        by_run: dict[str, list[_Step]] = {}
        for st in steps:
            by_run.setdefault(st.lease.run_id, []).append(st)
        got = _take_for(conn, steps)  # before any shared row is locked
        ended: set[int] = set()
        for run_id in sorted(by_run):  # one order of row locks for every group
            group = by_run[run_id]
            scopes = _GroupScopes(conn, run_id, sorted({s for st in group for s in st.plan.scopes}))
            for st in group:
                st.fired = count_scopes(st.plan, scopes)
                insert_items(conn, run_id, st.queue, st.fired, st.now)
            delta = sum(len(st.plan.items) + len(st.fired) - 1 for st in group)
            last = group[-1]
            ids = sorted(scopes.changed)
            row = conn.execute(
                "WITH sc AS (UPDATE scopes s SET open = c.open"
                " FROM unnest(%(ids)s::text[], %(opens)s::bigint[]) AS c(scope_id, open)"
                " WHERE s.run_id = %(run)s AND s.scope_id = c.scope_id)"
                " UPDATE runs SET pending = pending + %(delta)s, done = done + %(n)s,"
                " updated_at = %(now)s,"
                " status = CASE WHEN pending + %(delta)s <= 0 THEN 'completed' ELSE status END,"
                " finished_at = CASE WHEN pending + %(delta)s <= 0 THEN %(now)s END"
                " WHERE run_id = %(run)s AND status IN ('pending', 'running', 'paused')"
                " RETURNING status",
                {
                    "delta": delta,
                    "n": len(group),
                    "now": last.now,
                    "run": run_id,
                    "ids": ids,
                    "opens": [scopes.counts[i] for i in ids],
                },
            ).fetchone()
            if row is None:  # the run ended meanwhile: each step alone (savepoints)
                raise Rollback(None)
            if row[0] == "completed":
                ended.add(id(last))
                notify(conn, last.channel, [f"r:{run_id}"])
        for st in steps:  # waiting workers wake for the items the group left
            if st.plan.items or st.fired:
                notify(conn, st.channel, [f"q:{st.queue}"])
        done = {id(st): (CommitResult.COMMITTED, got[id(st)], id(st) in ended) for st in steps}
        return [refused.get(id(st)) or done[id(st)] for st in calls_]


def _take_for(conn: Conn, steps: list[_Step]) -> dict[int, list[Lease]]:
    """The leases for the slots a group's steps free: one `take` per queue, whether or
    not the steps made items (a lease in this transaction costs no COMMIT of its own),
    handed out in order."""
    got: dict[int, list[Lease]] = {}
    by_queue: dict[tuple[str, str, float], list[_Step]] = {}
    for st in steps:
        by_queue.setdefault((st.queue, st.lease.worker_id, st.lease_seconds), []).append(st)
    for (queue, worker, seconds), group in by_queue.items():
        want = sum(st.limit for st in group)
        taken = take(conn, group[0].channel, queue, worker, want, seconds)[0] if want else []
        for st in group:
            got[id(st)], taken = taken[: st.limit], taken[st.limit :]
    return got


class _GroupScopes:
    """The join scopes of one run's steps in a group, locked and read once, counted in
    memory by the rulebook step after step (`counts`, the `changed` ones to write back)."""

    def __init__(self, conn: Conn, run_id: str, scope_ids: list[str]) -> None:
        self.scopes = Scopes(conn, run_id)
        self.conn, self.run_id = conn, run_id
        self.counts: dict[str, int] = {}
        if scope_ids:
            rows = conn.execute(
                "SELECT scope_id, open FROM scopes WHERE run_id = %s AND scope_id = ANY(%s)"
                " ORDER BY scope_id FOR NO KEY UPDATE",
                (run_id, scope_ids),
            ).fetchall()
            self.counts = {r[0]: int(r[1]) for r in rows}
        self.changed: set[str] = set()

    def add_open(self, scope_id: str, delta: int) -> int:
        if scope_id not in self.counts:
            raise BackendError(f"join scope {scope_id!r} of run {self.run_id!r} is missing")
        self.counts[scope_id] += delta
        self.changed.add(scope_id)
        return self.counts[scope_id]

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.scopes.open(scope_id, count, fired)

    def close(self, scope_id: str) -> Sequence[NewItem]:
        del self.counts[scope_id]
        self.changed.discard(scope_id)
        return self.scopes.close(scope_id)
