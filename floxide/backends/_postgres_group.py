"""Group commit on PostgreSQL: the `simple` steps a worker process commits together.

`Pool.run_grouped` runs the commits queued meanwhile in one transaction; a `simple` step
that drops no collected values returns a `Step` instead of applying itself, and
`Step.settle` applies all of them in one pipeline:

- Steps that made no items (the branches of a fan-out into a join), freeing the slots of
  one worker: one statement, in autocommit mode its own transaction (`settle_in_one`,
  `Step.settle_alone`): what they wrote, every scope's and run's count once by the server
  function `count_steps`, and the leases for the slots they free
  (`_postgres_sql.batch(..., counted=True, take=True)`). Otherwise (several workers' steps
  in one group), one round trip with the COMMIT: the leases, then that statement without
  them; the results are read once the COMMIT returned (`AfterCommit`).
- Others: two. BEGIN, their writes in one statement, the leases; then the counts by
  `count_steps`, sent with the COMMIT.

Either way the rows every commit of a run meets (its scopes, its run) are locked only
from the end of the transaction to its COMMIT, so another process's group waits for them
no longer than that, and a freed slot costs no lease transaction of its own.

`count_steps` refuses (SQLSTATE `STEP_BY_STEP`) a group in which a scope would close or
a run end: the rulebook must see those counts. Such a group runs again settled the
locked way (`_settle_locked`): the scopes and then the runs' rows locked in the first
round trip (one order for every transaction: scopes first, by run and id), each step
counted by the rulebook over the counts read (`_GroupScopes`, in memory), the joins that
fire queued. Leases taken for steps that turn out refused (lost, or their run finished)
are given back in the same transaction (after the COMMIT, in one of their own, for a
group of one round trip).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from floxide.backends import _postgres_sql as sql
from floxide.backends._base import (
    CommitPlan,
    CommitResult,
    Lease,
    NewItem,
    RunStatus,
    count_scopes,
    missing_scope,
)
from floxide.backends._postgres_conn import AfterCommit, Conn, Deferred, Rollback
from floxide.backends._postgres_tables import LIVE, Scopes, add_pending, insert_items
from floxide.backends._postgres_take import Committed, notify, send_take, take_params, taken

__all__ = ["Step", "settle_in_one"]

_LOCK_SCOPES = (
    "SELECT s.run_id, s.scope_id, s.open FROM scopes s"
    " JOIN unnest(%s::text[], %s::text[]) AS k(run_id, scope_id)"
    " ON s.run_id = k.run_id AND s.scope_id = k.scope_id"
    " ORDER BY s.run_id, s.scope_id FOR NO KEY UPDATE OF s"
)
_LOCK_RUNS = (
    "SELECT run_id, pending FROM runs WHERE run_id = ANY(%s) AND status IN (%s, %s, %s)"
    " ORDER BY run_id FOR NO KEY UPDATE"
)
_COUNT = (
    "WITH sc AS (UPDATE scopes s SET open = c.open"
    " FROM unnest(%(ids)s::text[], %(opens)s::bigint[]) AS c(scope_id, open)"
    " WHERE s.run_id = %(run)s AND s.scope_id = c.scope_id)"
    " UPDATE runs SET " + add_pending("%(delta)s", "%(n)s") + ", done = done + %(n)s,"
    " updated_at = %(now)s,"
    " status = CASE WHEN pending + %(delta)s <= 0 THEN 'completed' ELSE status END,"
    " finished_at = CASE WHEN pending + %(delta)s <= 0 THEN %(now)s END"
    " WHERE run_id = %(run)s AND status IN ('pending', 'running', 'paused')"
)
_GIVE_BACK = (
    "UPDATE items i SET state = 'queued', worker_id = NULL"
    " FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS l(run_id, item_id, token)"
    " WHERE i.run_id = l.run_id AND i.item_id = l.item_id AND i.token = l.token"
    " AND i.state = 'leased'"
)


class Step(Deferred):
    """A `simple` step left to its group's end (`settle`)."""

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
    def settle(conn: Conn, calls: list[Deferred], checked: bool) -> list[object] | AfterCommit:
        steps = [st for st in calls if isinstance(st, Step)]
        return _settle_checked(conn, steps) if checked else _settle_locked(conn, steps)

    @staticmethod
    def settle_alone(conn: Conn, calls: list[Deferred]) -> list[object] | None:
        steps = [st for st in calls if isinstance(st, Step)]
        return settle_in_one(conn, steps) if len(steps) == len(calls) else None


def _settle_checked(conn: Conn, steps: list[Step]) -> list[object] | AfterCommit:
    """`Step.settle` when no scope closes and no run ends (as `count_steps` checks)."""
    if not any(st.plan.items for st in steps):
        return _settle_at_once(conn, steps)
    # first round trip: the steps' own writes and the leases for their slots
    own = sql.batch_params([(st.lease, st.plan, st.now) for st in steps])
    batch = conn.execute(sql.batch([st.plan for st in steps]), own)
    takes = _send_takes(conn, steps)
    results, applied = _outcomes(steps, batch.fetchall())
    got = _hand_out(conn, steps, takes, {id(st) for st in applied})
    # second round trip, with the COMMIT: every scope's and run's count written once
    # by `count_steps`, which locks their rows only now; should a scope close or a run
    # end, it raises `STEP_BY_STEP` and the group is settled again the locked way
    if applied:
        conn.execute(_COUNT_STEPS, (*_count_args(applied), len(applied)))  # all held
    for st in applied:
        results[id(st)] = (CommitResult.COMMITTED, got[id(st)], False)
    made = {st.queue: st.channel for st in applied if st.plan.items}
    for queue, channel in made.items():  # waiting workers wake for the items left
        notify(conn, channel, [f"q:{queue}"])
    return [results[id(st)] for st in steps]


def _settle_at_once(conn: Conn, steps: list[Step]) -> AfterCommit:
    """`Step.settle` for steps that made no items, in one round trip with the COMMIT: the
    leases for their slots, then their writes and counts in one statement (which locks
    the shared rows: last); read once the COMMIT returned."""
    takes = _send_takes(conn, steps)
    batch = conn.execute(sql.batch([st.plan for st in steps], counted=True), _counted(steps))

    def read(conn: Conn) -> list[object]:
        fetched = [(g, None if c is None else _Rows(c.fetchall()), w) for g, c, w in takes]
        return _settled(conn, steps, batch.fetchall(), fetched)

    return AfterCommit(read)


def settle_in_one(conn: Conn, steps: list[Step]) -> list[object] | None:
    """`Step.settle` as one statement, on a connection in autocommit mode (so its own
    transaction: no BEGIN, no COMMIT, no pipeline), for steps that made no items and free
    the slots of one worker: their writes, their counts and the leases for their slots
    (`_postgres_sql.batch(..., take=True)`). None for other steps (settle them in a
    transaction). Raises `STEP_BY_STEP` as `count_steps` does, nothing applied."""
    workers = {(st.lease.worker_id, st.lease_seconds) for st in steps}
    if len(workers) > 1 or any(st.plan.items for st in steps):
        return None
    first = steps[0]
    want = sum(st.limit for st in steps)
    now = time.time()  # after every step's
    params = _counted(steps)
    if want:
        params.update(
            take_params(
                None,
                first.lease.worker_id,
                want,
                first.lease_seconds,
                now,
                queue_of=first.lease.run_id,
            )
        )
    rows = conn.execute(
        sql.batch([st.plan for st in steps], counted=True, take=bool(want)), params
    ).fetchall()
    if not want:
        return _settled(conn, steps, rows, [])
    leased = _Rows([r[1:16] for r in rows if r[0] is None])
    own = [r[16:19] for r in rows if r[0] is not None]
    return _settled(conn, steps, own, [(steps, leased, now)])


def _counted(steps: list[Step]) -> dict[str, Any]:
    """The parameters of a counted `batch` of `steps`."""
    own = [(st.lease, st.plan, st.now) for st in steps]
    names = "runs deltas done now scope_runs scope_ids scope_deltas scope_lows steps".split()
    counts = dict(zip(("c_" + n for n in names), _count_args(steps), strict=True))
    return {**sql.batch_params(own), **counts}


def _settled(
    conn: Conn,
    steps: list[Step],
    rows: list[Any],
    fetched: Sequence[tuple[list[Step], _Rows | None, float]],
) -> list[object]:
    """The results of steps settled and committed (`rows`: the batch's), with the leases
    `fetched` handed out; what that writes (a late or pending run, a refused step's
    share) in a transaction of its own."""
    results, applied = _outcomes(steps, rows)
    chosen = {id(st) for st in applied}
    if _writes(fetched, chosen):
        with conn.transaction():
            got = _hand_out(conn, steps, fetched, chosen, committed=True)
    else:
        got = _hand_out(conn, steps, fetched, chosen, committed=True)
    for st in applied:
        results[id(st)] = (CommitResult.COMMITTED, got[id(st)], False)
    return [results[id(st)] for st in steps]


class _Rows:
    """Rows fetched already, read again as a cursor's (by `taken`)."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchall(self) -> list[Any]:
        return self.rows


def _writes(takes: Sequence[tuple[list[Step], Any, float]], applied: set[int]) -> bool:
    """Whether handing out the leases of `takes` writes: a run found late (failed) or
    pending (now running), leases left over (given back)."""
    for group, rows, _ in takes:
        if rows is None:
            continue
        if any(r[12] or r[8] == "pending" for r in rows.rows):
            return True
        if len(rows.rows) > sum(st.limit for st in group if id(st) in applied):
            return True
    return False


def _outcomes(steps: list[Step], rows: list[Any]) -> tuple[dict[int, Committed], list[Step]]:
    """The results of the refused steps of a batch (by `id`), and the applied steps."""
    results: dict[int, Committed] = {}
    applied: list[Step] = []
    for st, (status, queue, held) in zip(steps, rows, strict=True):
        if status is None or RunStatus(status).finished:
            results[id(st)] = (CommitResult.INACTIVE, [], False)
        elif not held:
            results[id(st)] = (CommitResult.LOST, [], False)
        else:
            st.queue = queue
            applied.append(st)
    return results, applied


def _settle_locked(conn: Conn, steps: list[Step]) -> list[object]:
    """`Step.settle` with the shared rows locked in the first round trip and the steps
    counted over the counts read: scopes close, runs end."""
    run_ids = sorted({st.lease.run_id for st in steps})
    pairs = sorted({(st.lease.run_id, s) for st in steps for s in st.plan.scopes})
    # first round trip: the steps' own writes, the leases for their slots, then (held
    # from here to the COMMIT only) the locks of the rows they share
    own = sql.batch_params([(st.lease, st.plan, st.now) for st in steps])
    batch = conn.execute(sql.batch([st.plan for st in steps]), own)
    takes = _send_takes(conn, steps)
    locked_scopes = (
        conn.execute(_LOCK_SCOPES, ([r for r, _ in pairs], [s for _, s in pairs]))
        if pairs
        else None
    )
    locked_runs = conn.execute(_LOCK_RUNS, (run_ids, *LIVE))
    counts: dict[str, dict[str, int]] = {}
    for run_id, scope_id, count in locked_scopes.fetchall() if locked_scopes else []:
        counts.setdefault(run_id, {})[scope_id] = int(count)
    pending = {run_id: int(p) for run_id, p in locked_runs.fetchall()}
    results: dict[int, Committed] = {}
    applied: list[Step] = []
    for st, (status, queue, held) in zip(steps, batch.fetchall(), strict=True):
        if status is None or RunStatus(status).finished:
            results[id(st)] = (CommitResult.INACTIVE, [], False)
        elif not held:
            results[id(st)] = (CommitResult.LOST, [], False)
        elif st.lease.run_id not in pending:  # its run ended meanwhile: call by call
            raise Rollback(None)
        else:
            st.queue = queue
            applied.append(st)
    got = _hand_out(conn, steps, takes, {id(st) for st in applied})
    # second round trip: the counts, each written once; COMMIT (when the caller ends)
    by_run: dict[str, list[Step]] = {}
    for st in applied:
        by_run.setdefault(st.lease.run_id, []).append(st)
    for run_id, group in sorted(by_run.items()):
        scopes = _GroupScopes(conn, run_id, counts.get(run_id, {}))
        for st in group:
            st.fired = count_scopes(st.plan, scopes)
            insert_items(conn, run_id, st.queue, st.fired, st.now)
        delta = sum(len(st.plan.items) + len(st.fired) - 1 for st in group)
        ids = sorted(scopes.changed)
        last = group[-1]
        conn.execute(
            _COUNT,
            {
                "delta": delta,
                "n": len(group),
                "now": last.now,
                "run": run_id,
                "ids": ids,
                "opens": [scopes.counts[i] for i in ids],
            },
        )
        ended = pending[run_id] + delta <= 0  # as the statement decides, its row locked
        if ended:
            notify(conn, last.channel, [f"r:{run_id}"])
        for st in group:
            results[id(st)] = (CommitResult.COMMITTED, got[id(st)], ended and st is last)
    made = {st.queue: st.channel for st in applied if st.plan.items or st.fired}
    for queue, channel in made.items():  # waiting workers wake for the items left
        notify(conn, channel, [f"q:{queue}"])
    return [results[id(st)] for st in steps]


_COUNT_STEPS = "SELECT count_steps(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _count_args(steps: list[Step]) -> tuple[Any, ...]:
    """The arguments of `count_steps` for `steps` counted as if all were held (all but
    the last, how many were held): each run's and scope's sum, the scopes' lowest
    running sums (the rulebook counting over `_Tally`), and how many steps."""
    by_run: dict[str, list[Step]] = {}
    for st in steps:
        by_run.setdefault(st.lease.run_id, []).append(st)
    runs: list[str] = []
    deltas: list[int] = []
    done: list[int] = []
    tally = _Tally()
    for run_id, group in sorted(by_run.items()):
        tally.run_id = run_id
        for st in group:
            fired = count_scopes(st.plan, tally)
            assert not fired  # `_Tally` closes no scope
        runs.append(run_id)
        deltas.append(sum(len(st.plan.items) - 1 for st in group))
        done.append(len(group))
    scopes = sorted(tally.deltas)
    return (
        runs,
        deltas,
        done,
        max(st.now for st in steps),
        [r for r, _ in scopes],
        [s for _, s in scopes],
        [tally.deltas[k] for k in scopes],
        [tally.lows[k] for k in scopes],
        len(steps),
    )


class _Tally:
    """A `ScopeTable` that sums what the steps of a group add to each scope (and the
    lowest running sum: a scope whose count would reach zero in between closes), for
    `count_steps` to apply; as far as the rulebook sees, no scope closes."""

    def __init__(self) -> None:
        self.run_id = ""
        self.deltas: dict[tuple[str, str], int] = {}
        self.lows: dict[tuple[str, str], int] = {}

    def add_open(self, scope_id: str, delta: int) -> int:
        key = (self.run_id, scope_id)
        total = self.deltas[key] = self.deltas.get(key, 0) + delta
        self.lows[key] = min(self.lows.get(key, total), total)
        return 1  # not zero: `count_steps` checks the real count stays above it

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        raise AssertionError("a batched step opens no scope")

    def close(self, scope_id: str) -> Sequence[NewItem]:
        raise AssertionError("`_Tally` closes no scope")


def _send_takes(
    conn: Conn, steps: list[Step]
) -> list[tuple[list[Step], psycopg.Cursor[Any] | None, float]]:
    """One `take` per worker for the slots its steps free (a worker serves one queue:
    that of its first step's run)."""
    by_worker: dict[tuple[str, float], list[Step]] = {}
    for st in steps:
        by_worker.setdefault((st.lease.worker_id, st.lease_seconds), []).append(st)
    out = []
    now = time.time()  # after every step's: the items they made are due
    for (worker, seconds), group in by_worker.items():
        want = sum(st.limit for st in group)
        cursor = None
        if want:
            cursor = send_take(
                conn, None, worker, want, seconds, now, queue_of=group[0].lease.run_id
            )
        out.append((group, cursor, now))
    return out


def _hand_out(
    conn: Conn,
    steps: list[Step],
    takes: Sequence[tuple[list[Step], Any, float]],
    applied: set[int],
    *,
    committed: bool = False,
) -> dict[int, list[Lease]]:
    """The leases taken, in order, to the applied steps (up to each one's `limit`); those
    left over (a refused step's share) given back. A step's run found late is failed: the
    group runs again call by call, unless `committed` already (then the run fails after
    its steps)."""
    got: dict[int, list[Lease]] = {id(st): [] for st in steps}
    extra: list[Lease] = []
    for group, cursor, when in takes:
        if cursor is None:
            continue
        first = group[0]
        leases, late = taken(conn, first.channel, cursor, first.lease.worker_id,
                             first.lease_seconds, when)  # fmt: skip
        if not committed and any(st.lease.run_id in late for st in steps):
            raise Rollback(None)  # a step's run failed meanwhile
        for st in group:
            if id(st) in applied:
                got[id(st)], leases = leases[: st.limit], leases[st.limit :]
        extra += leases
    if extra:
        conn.execute(
            _GIVE_BACK,
            ([le.run_id for le in extra], [le.item_id for le in extra], [le.token for le in extra]),
        )
        notify(conn, steps[0].channel, ["*"])  # their queues are not known here: wake all
    return got


class _GroupScopes:
    """The join scopes of one run's steps in a group, locked and read (`counts`), counted
    in memory by the rulebook step after step (the `changed` ones are written back)."""

    def __init__(self, conn: Conn, run_id: str, counts: dict[str, int]) -> None:
        self.scopes = Scopes(conn, run_id)
        self.run_id = run_id
        self.counts = counts
        self.changed: set[str] = set()

    def add_open(self, scope_id: str, delta: int) -> int:
        if scope_id not in self.counts:
            raise missing_scope(scope_id)
        self.counts[scope_id] += delta
        self.changed.add(scope_id)
        return self.counts[scope_id]

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.scopes.open(scope_id, count, fired)

    def close(self, scope_id: str) -> Sequence[NewItem]:
        del self.counts[scope_id]
        self.changed.discard(scope_id)
        return self.scopes.close(scope_id)
