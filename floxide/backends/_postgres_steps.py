"""Applying one step on PostgreSQL, inside a transaction (leasing is `_postgres_take`).

`commit`'s first statement checks the lease and writes what the step made (`_postgres_sql`);
the join scopes are counted by the rulebook over `Scopes`, and the run's row is updated
last. Alone (autocommit mode), a chain step is one statement (`_postgres_sql.chain`); in a
group of commits, a `simple` step is left to `_postgres_group.Step.settle`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from floxide.backends import _postgres_sql as sql
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
    ContextWrite,
    Lease,
    NewItem,
    RunContext,
    RunStatus,
    ScopeTable,
    context_write,
    count_scopes,
    missing_scope,
)
from floxide.backends._postgres_conn import STEP_BY_STEP, AfterCommit, Conn, Deferred, Rollback
from floxide.backends._postgres_group import Step, settle_in_one
from floxide.backends._postgres_tables import (
    Scopes,
    add_errors,
    add_pending,
    contributions,
    insert_items,
    pairs,
)
from floxide.backends._postgres_take import FINISH, Committed, finish, notify, take

__all__ = ["FINISH", "Committed", "commit", "deferred", "finish", "notify", "take"]


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
    `simple` step is left to `Step.settle` (applied with its group's others).
    On a connection in autocommit mode (a commit alone), a chain step is one statement,
    another batchable step a group of one (`_alone`), any other step one transaction."""
    if conn.autocommit:
        statement = sql.chain(plan)
        done = None if statement is None else _chain(conn, statement, lease, plan, limit,
                                                     lease_seconds, channel)  # fmt: skip
        if done is None and statement is None and sql.batchable(plan):
            done = _alone(conn, Step(channel, lease, plan, time.time(), limit, lease_seconds))
        if done is not None:
            return done
        with conn.transaction():
            return _commit(conn, channel, lease, plan, limit, lease_seconds, defer=False)
    return _commit(conn, channel, lease, plan, limit, lease_seconds, defer=defer)


def deferred(
    channel: str, lease: Lease, plan: CommitPlan, limit: int, lease_seconds: float
) -> Step | None:
    """What `commit` returns for a batchable step when deferring (no statement made), or
    None: for its group to be settled without calling `commit` (`Step.settle_alone`)."""
    if not sql.batchable(plan):
        return None
    return Step(channel, lease, plan, time.time(), limit, lease_seconds)


def _alone(conn: Conn, step: Step) -> Committed | None:
    """A batchable step settled as a group of one: in one statement if it made no items
    (`settle_in_one`), else in one pipeline; None when it must be applied the careful way
    instead (its scope closes, its run ends, its lease was lost: nothing was applied)."""
    try:
        value: list[object] | AfterCommit | None = settle_in_one(conn, [step])
        if value is None:
            with conn.pipeline(), conn.transaction():
                value = Step.settle(conn, [step], True)
        if isinstance(value, AfterCommit):
            value = value.read(conn)
    except Rollback:
        return None
    except psycopg.Error as e:
        if e.sqlstate == STEP_BY_STEP:
            return None
        raise
    assert isinstance(value, list)
    (done,) = value
    assert isinstance(done, tuple)
    return done


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
        return Step(channel, lease, plan, now, limit, lease_seconds)
    cursor = conn.execute(sql.check(plan, False), sql.params(lease, plan, now))
    row = cursor.fetchone()
    refused = _refused(row)
    if refused is not None:
        raise Rollback(refused, clean=True)
    assert row is not None
    if sql.big(plan) and plan.failure is None:  # not written by the first statement
        insert_items(conn, run_id, row[3], items, now)
    scopes: ScopeTable = Scopes(conn, run_id)
    if sql.simple(plan) and plan.scopes and row[6] is None:
        raise missing_scope(plan.scopes[0])
    if sql.simple(plan) and plan.scopes and row[6] == 0:  # the scope closed: fire its joins
        scopes = _Counted(Scopes(conn, run_id), plan.scopes[0], 0)
    elif sql.simple(plan):
        if row[5] is None:  # the run ended meanwhile (its row was updated first)
            raise Rollback((CommitResult.INACTIVE, [], False))
        return _after(
            conn,
            channel,
            lease,
            queue=row[3],
            items=items,
            ended=row[5] == "completed",
            limit=limit,
            lease_seconds=lease_seconds,
        )
    stored, version, queue = bytes(row[1] or b""), int(row[2]), row[3]
    # if the merge raises, nothing is applied (rolled back); a simple plan's contribution
    # was stored by the first statement
    write = (
        None
        if sql.simple(plan)
        else context_write(plan, lease.item_id, version, lambda: stored, _Stored(conn, run_id).get)
    )
    if plan.handled:
        add_errors(conn, run_id, plan.handled)
    if plan.failure is not None:
        if write is not None:
            _write_context(conn, lease, plan, write, version)
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
    status = _count(conn, lease, plan, write, version, len(items) - 1, now)
    return _after(
        conn,
        channel,
        lease,
        queue=queue,
        items=items,
        ended=status == "completed",
        limit=limit,
        lease_seconds=lease_seconds,
    )


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
    args = sql.params(lease, plan, now, mine)
    args.update(
        take=sum(mine),
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
    context = RunContext(bytes(row[1]), row[2], pairs(row[15], row[16]))
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
    write: ContextWrite | None,
    version: int,
    delta: int,
    now: float,
) -> str:
    """Update the run's row last (counters, context, completion); its new status. A base
    written over a version changed meanwhile is decided again on the locked row."""
    sets = (
        f"{add_pending('%(delta)s')}, done = done + 1, updated_at = %(now)s,"
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
    if write is None or write.base is None:
        row = conn.execute(f"UPDATE runs SET {sets} WHERE {live} RETURNING status", args).fetchone()
    else:
        args.update(context=write.base, version=version)
        row = conn.execute(
            f"UPDATE runs SET {sets}, context = %(context)s, version = version + 1"
            f" WHERE {live} AND version = %(version)s RETURNING status",
            args,
        ).fetchone()
        if row is None:  # another commit changed the base since: decide on the locked row
            write = _fresh_write(conn, lease, plan)
            base = ", context = %(context)s, version = version + 1" if write.base else ""
            args["context"] = write.base
            row = conn.execute(
                f"UPDATE runs SET {sets}{base} WHERE {live} RETURNING status", args
            ).fetchone()
    if row is None:
        raise Rollback((CommitResult.INACTIVE, [], False))
    _contribute(conn, lease.run_id, plan, write)
    return str(row[0])


class _Stored:
    """The contributions of one run, read at the first lookup (a whole write's or a
    compaction's, to drop those it folded)."""

    def __init__(self, conn: Conn, run_id: str) -> None:
        self.conn, self.run_id = conn, run_id
        self.found: dict[str, bytes] | None = None

    def get(self, key: str) -> bytes | None:
        if self.found is None:
            self.found = contributions(self.conn, self.run_id)
        return self.found.get(key)


def _locked_context(conn: Conn, run_id: str) -> tuple[bytes, int]:
    row = conn.execute(
        "SELECT context, version, status FROM runs WHERE run_id = %s FOR NO KEY UPDATE",
        (run_id,),
    ).fetchone()
    if row is None or RunStatus(row[2]).finished:
        raise Rollback((CommitResult.INACTIVE, [], False))
    return bytes(row[0]), int(row[1])


def _fresh_write(conn: Conn, lease: Lease, plan: CommitPlan) -> ContextWrite:
    """The plan's context write decided again on the run's row, locked (`context_write`)."""
    base, version = _locked_context(conn, lease.run_id)
    write = context_write(
        plan, lease.item_id, version, lambda: base, _Stored(conn, lease.run_id).get
    )
    assert write is not None
    return write


def _contribute(conn: Conn, run_id: str, plan: CommitPlan, write: ContextWrite | None) -> None:
    """Remove the contributions `write` folded (if still stored unchanged), then store its
    own (no version check: item ids never meet)."""
    if write is None:
        return
    if write.drop:
        folded = dict(
            plan.context.folded
            if plan.context is not None
            else plan.contribution.compact.folded
            if plan.contribution is not None and plan.contribution.compact is not None
            else ()
        )
        keys = list(write.drop)
        conn.execute(
            "DELETE FROM contributions c USING unnest(%s::text[], %s::bytea[]) AS f(key, data)"
            " WHERE c.run_id = %s AND c.key = f.key AND c.data = f.data",
            (keys, [folded[k] for k in keys], run_id),
        )
    if write.put is not None:
        conn.execute(
            "INSERT INTO contributions VALUES (%s, %s, %s) ON CONFLICT (run_id, key)"
            " DO UPDATE SET data = excluded.data",
            (run_id, *write.put),
        )


def _write_context(
    conn: Conn, lease: Lease, plan: CommitPlan, write: ContextWrite, version: int
) -> None:
    """A failing step's context change, applied before its run fails."""
    if write.base is not None:
        fresh = _locked_context(conn, lease.run_id)
        if fresh[1] != version:
            write = _fresh_write(conn, lease, plan)
        if write.base is not None:
            conn.execute(
                "UPDATE runs SET context = %s, version = version + 1 WHERE run_id = %s",
                (write.base, lease.run_id),
            )
    _contribute(conn, lease.run_id, plan, write)
