"""The statements of a PostgreSQL commit, built from the parts a plan needs.

`check` is a commit's first statement (the lease checked, what the step made written, the
run read, and for a `simple` plan its counts); `chain` applies a chain step alone in one
statement, which also leases the successors it made when the queue has no older ready
item, so in autocommit mode a chain step is one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Json

from floxide.backends._base import CommitPlan, ContextUpdate, Lease, context_write
from floxide.backends._postgres_tables import (
    CONTRIBUTED,
    ITEM_ROWS,
    SLICE,
    add_pending,
    item_rows,
)
from floxide.backends._postgres_take import OF_RUN, TAKE_COLUMNS, TAKE_FROM, TAKE_STEPS
from floxide.backends._postgres_text import escape

__all__ = [
    "COMPACT",
    "batch",
    "batch_params",
    "batchable",
    "big",
    "chain",
    "check",
    "compact_params",
    "compaction",
    "params",
    "simple",
]

_HELD = """
WITH held AS (
    DELETE FROM items WHERE run_id = %(run)s AND item_id = %(item)s AND state = 'leased'
    AND token = %(token)s AND EXISTS (SELECT 1 FROM runs WHERE run_id = %(run)s
    AND status IN ('pending', 'running', 'paused')) RETURNING run_id, queue
), step AS (
    INSERT INTO steps (run_id, node, seconds) SELECT run_id, %(node)s, %(seconds)s FROM held
)"""
_MADE = """, made AS (
    INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)
    SELECT h.run_id, u.item_id, h.queue, u.node, decode(u.payload, 'hex'), u.attempt,
           'queued', u.due, nextval('seq')
    FROM held h, """ + ITEM_ROWS + """
)"""
_KEPT = """, kept AS (
    INSERT INTO collected (run_id, key, data)
    SELECT h.run_id, c.key, c.data FROM held h,
           unnest(%(ckeys)s::text[], %(cdata)s::bytea[]) AS c(key, data)
)"""
_DROPPED = """, dropped AS (
    DELETE FROM collected WHERE run_id = %(run)s AND key = ANY(%(drop)s::text[])
    AND EXISTS (SELECT 1 FROM held)
)"""
_OUTS = """, outs AS (
    INSERT INTO outputs (run_id, position, node, value)
    SELECT h.run_id, o.position, o.node, o.value FROM held h,
           unnest(%(opos)s::text[], %(onodes)s::text[], %(ovalues)s::bytea[])
           AS o(position, node, value)
)"""
_PUT = """, put AS (
    INSERT INTO contributions (run_id, key, data) SELECT run_id, %(pkey)s, %(pdata)s FROM held
    ON CONFLICT (run_id, key) DO UPDATE SET data = excluded.data
)"""
_SCOPE = """, sc AS (
    UPDATE scopes SET open = open + %(delta)s
    WHERE run_id = %(run)s AND scope_id = %(scope)s AND EXISTS (SELECT 1 FROM held)
    RETURNING open
)"""
_COUNTED = (
    """, counted AS (
    UPDATE runs SET """
    + add_pending("%(delta)s")
    + """, done = done + 1, updated_at = %(now)s,
           status = CASE WHEN pending + %(delta)s <= 0 THEN 'completed' ELSE status END,
           finished_at = CASE WHEN pending + %(delta)s <= 0 THEN %(now)s END
    WHERE run_id = %(run)s AND status IN ('pending', 'running', 'paused')
      AND EXISTS (SELECT 1 FROM held){unclosed}
    RETURNING status
)"""
)
_RUN = """
SELECT r.status, {context}, r.version, r.queue, (SELECT count(*) FROM held), {counted},
       {open}
FROM runs r WHERE r.run_id = %(run)s
"""


def big(plan: CommitPlan) -> bool:
    """A step making more items than one statement takes (`SLICE`): its first statement
    writes none of them, `insert_items` then inserts them a slice at a time (same
    transaction), so the commit never holds all their parameters at once."""
    return len(plan.items) > SLICE


def simple(plan: CommitPlan) -> bool:
    """A step with at most one join scope, no whole context change, no handled error or
    failure, not `big`: the first statement also counts it in its scope (`add_open`) and,
    unless that closes the scope, in its run's row (nothing it needs is computed in
    between). Its contribution is stored by the first statement (no version check); a
    compaction is applied apart, once the step committed (`compaction`)."""
    return (
        plan.open_scope is None
        and len(plan.scopes) <= 1
        and plan.context is None
        and not plan.handled
        and plan.failure is None
        and not big(plan)
    )


def compaction(plan: CommitPlan) -> ContextUpdate | None:
    """The compaction of a `simple` plan, applied by `COMPACT` after its commit: it takes
    the run's row alone, for one statement, not the step's scope and run for the rest of
    its transaction (other processes' commits would wait for them)."""
    contribution = plan.contribution
    if contribution is None or contribution.compact is None or not simple(plan):
        return None
    return contribution.compact


COMPACT = """
WITH base AS (
    UPDATE runs SET context = %(context)s, version = version + 1
    WHERE run_id = %(run)s AND version = %(version)s
      AND status IN ('pending', 'running', 'paused')
    RETURNING run_id
)
DELETE FROM contributions c USING json_to_recordset(%(folded)s::json) AS f(key text, data text)
WHERE c.run_id = (SELECT run_id FROM base) AND c.key = f.key AND c.data = decode(f.data, 'hex')
"""
"""A compaction (`Contribution.compact`): the base written if still at its version (else
nothing: a concurrent compaction won), and the contributions it folded that are still
stored unchanged removed, in one statement."""


def compact_params(run_id: str, compact: ContextUpdate) -> dict[str, Any]:
    """The parameters of `COMPACT`."""
    folded = [{"key": escape(k), "data": v.hex()} for k, v in compact.folded]
    return {
        "context": compact.value,
        "run": run_id,
        "version": compact.base_version,
        "folded": Json(folded),
    }


def check(plan: CommitPlan, defer: bool) -> str:
    """A commit's first statement: if the lease is held and the run live, delete the item
    and write what the step made (metric, successors, collected values, outputs); then read
    the run, and for a `simple` plan not deferred update its counters. Only the parts the
    plan needs (each variant is prepared once)."""
    counts = simple(plan) and not defer
    scoped = counts and bool(plan.scopes)
    return "".join(
        (
            _HELD,
            _MADE if plan.items and plan.failure is None and not big(plan) else "",
            _KEPT if plan.collect else "",
            _DROPPED if plan.drop_collected else "",
            _OUTS if plan.outputs else "",
            _PUT if counts and _puts(plan) else "",
            _SCOPE if scoped else "",
            _COUNTED.format(unclosed=" AND (SELECT open FROM sc) <> 0" if scoped else "")
            if counts
            else "",
            _RUN.format(
                context="NULL::bytea" if counts else "r.context",  # a simple plan's is unused
                counted="(SELECT status FROM counted)" if counts else "NULL::text",
                open="(SELECT open FROM sc)" if scoped else "NULL::int",
            ),
        )
    )


_CHAIN = (
    """
WITH run AS (
    SELECT r.run_id FROM runs r WHERE r.run_id = %(run)s AND r.status = 'running'
    AND (r.deadline IS NULL OR r.deadline >= %(now)s)
    AND (%(take)s = 0 OR NOT EXISTS (
        SELECT 1 FROM items i JOIN runs o ON o.run_id = i.run_id
        WHERE i.queue = r.queue AND i.state = 'queued' AND i.due <= %(now)s
        AND o.status IN ('pending', 'running')))
    FOR NO KEY UPDATE OF r
), held AS (
    DELETE FROM items WHERE run_id = %(run)s AND item_id = %(item)s AND state = 'leased'
    AND token = %(token)s AND EXISTS (SELECT 1 FROM run) RETURNING run_id, queue
), step AS (
    INSERT INTO steps (run_id, node, seconds) SELECT run_id, %(node)s, %(seconds)s FROM held
), made AS (
    INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq,
                       worker_id, token, deadline)
    SELECT h.run_id, u.item_id, h.queue, u.node, decode(u.payload, 'hex'), u.attempt,
           CASE WHEN u.mine THEN 'leased' ELSE 'queued' END, u.due, nextval('seq'),
           CASE WHEN u.mine THEN %(worker)s END,
           CASE WHEN u.mine THEN nextval('tokens') ELSE 0 END,
           CASE WHEN u.mine THEN %(until)s ELSE 0 END
    FROM held h, """ + ITEM_ROWS + """
    RETURNING item_id, node, payload, attempt, token, seq, state
)"""
    + _KEPT
    + _DROPPED
    + _OUTS
    + "{put}"
    + _COUNTED.format(unclosed="")
    + """
SELECT r.status, r.context, r.version, r.queue, (SELECT count(*) FROM held),
       (SELECT status FROM counted), (SELECT count(*) FROM run), r.deadline,
       (SELECT array_agg(item_id ORDER BY seq) FROM made WHERE state = 'leased'),
       (SELECT array_agg(node ORDER BY seq) FROM made WHERE state = 'leased'),
       (SELECT array_agg(payload ORDER BY seq) FROM made WHERE state = 'leased'),
       (SELECT array_agg(attempt ORDER BY seq) FROM made WHERE state = 'leased'),
       (SELECT array_agg(token ORDER BY seq) FROM made WHERE state = 'leased'),
       (SELECT count(pg_notify(%(channel)s, CASE WHEN octet_length(%(run)s) < 7000
        THEN 'r:' || %(run)s ELSE '*' END)) FROM counted WHERE status = 'completed'),
       (SELECT count(pg_notify(%(channel)s, CASE WHEN octet_length(queue) < 7000
        THEN 'q:' || queue ELSE '*' END)) FROM held WHERE %(leaves)s),
       contributed.keys, contributed.data
FROM runs r """
    + CONTRIBUTED.format(run="r.run_id")
    + """ WHERE r.run_id = %(run)s
"""
)
"""A chain step alone (a `simple` plan without scopes): its first statement, which also
leases the successors marked `mine` (when the run is running, not past its deadline, and,
if it leases any, the queue holds no older ready item: `take` would lease those first)
and sends the wake-ups. Each value of `run` lacking, nothing is done (and the step is
applied by the transaction of `check` instead)."""


_CHAINS = (_CHAIN.replace("{put}", ""), _CHAIN.replace("{put}", _PUT))


def chain(plan: CommitPlan) -> str | None:
    """The one statement that applies `plan` alone, if it can (see `_CHAIN`)."""
    return _CHAINS[_puts(plan)] if simple(plan) and not plan.scopes else None


def _puts(plan: CommitPlan) -> bool:
    """Whether a `simple` plan stores a contribution."""
    return plan.contribution is not None and plan.contribution.data is not None


def _put(lease: Lease, plan: CommitPlan) -> tuple[str, bytes] | None:
    """The contribution a `simple` plan stores: `context_write`'s, which for a contribution
    without compaction needs neither the version nor the stored context."""
    if plan.contribution is None:
        return None
    write = context_write(plan, lease.item_id, -1, _unused, _unused)
    assert write is not None and write.base is None and not write.drop
    return write.put


def _unused(*_: object) -> bytes:
    raise AssertionError("a simple plan reads no stored context")


_BATCH_HELD = """
WITH l AS (
    SELECT * FROM json_to_recordset(%(held)s::json)
    AS l(k bigint, run_id text, item_id text, token bigint, node text, seconds float8)
), held AS (
    DELETE FROM items i USING l WHERE i.run_id = l.run_id AND i.item_id = l.item_id
    AND i.state = 'leased' AND i.token = l.token AND EXISTS (SELECT 1 FROM runs r
    WHERE r.run_id = l.run_id AND r.status IN ('pending', 'running', 'paused'))
    RETURNING l.k, i.run_id, i.queue
), step AS (
    INSERT INTO steps (run_id, node, seconds, n, longest)
    SELECT h.run_id, l.node, sum(l.seconds), count(*), max(l.seconds)
    FROM held h JOIN l ON l.k = h.k GROUP BY h.run_id, l.node
)"""
_BATCH_MADE = """, made AS (
    INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)
    SELECT h.run_id, u.item_id, h.queue, u.node, decode(u.payload, 'hex'), u.attempt,
           'queued', u.due, nextval('seq')
    FROM """ + ITEM_ROWS + """ JOIN held h ON h.k = u.k ORDER BY u.o
)"""
_BATCH_KEPT = """, kept AS (
    INSERT INTO collected (run_id, key, data, batch)
    SELECT h.run_id, c.key, '', array_agg(decode(c.data, 'hex') ORDER BY c.k) FROM held h
    JOIN json_to_recordset(%(kept)s::json) AS c(k bigint, key text, data text)
    ON c.k = h.k GROUP BY h.run_id, c.key
)"""
_BATCH_OUTS = """, outs AS (
    INSERT INTO outputs (run_id, position, node, value)
    SELECT h.run_id, o.position, o.node, o.value FROM held h
    JOIN unnest(%(ok)s::bigint[], %(opos)s::text[], %(onodes)s::text[], %(ovalues)s::bytea[])
    AS o(k, position, node, value) ON o.k = h.k
)"""
_BATCH_PUT = """, put AS (
    INSERT INTO contributions (run_id, key, data)
    SELECT h.run_id, p.key, p.data FROM held h
    JOIN unnest(%(pk)s::bigint[], %(pkeys)s::text[], %(pdata)s::bytea[]) AS p(k, key, data)
    ON p.k = h.k
    ON CONFLICT (run_id, key) DO UPDATE SET data = excluded.data
)"""
_BATCH_COUNT = """, counted AS (
    SELECT count_steps(%(c_runs)s, %(c_deltas)s, %(c_done)s, %(c_now)s, %(c_scope_runs)s,
                       %(c_scope_ids)s, %(c_scope_deltas)s, %(c_scope_lows)s, %(c_steps)s,
                       (SELECT count(*) FROM held))
)"""
"""The counts of a batch, worked out for all its steps held (refused by `count_steps`
unless all were)."""
_BATCH_RESULT = """
SELECT r.status, r.queue, h.k IS NOT NULL
FROM l LEFT JOIN held h ON h.k = l.k LEFT JOIN runs r ON r.run_id = l.run_id{counted}
ORDER BY l.k
"""


_BATCH_AND_TAKE = """
SELECT NULL::bigint, {take}, NULL::text, NULL::text, NULL::boolean, p.due, p.seq{take_from}
UNION ALL
SELECT l.k, {nulls}, r.status, r.queue, h.k IS NOT NULL, NULL, NULL
FROM l LEFT JOIN held h ON h.k = l.k LEFT JOIN runs r ON r.run_id = l.run_id CROSS JOIN counted
ORDER BY 1 NULLS FIRST, 20, 21
""".format(take=TAKE_COLUMNS, take_from=TAKE_FROM, nulls=", ".join(["NULL"] * 15))
"""`take` and a counted batch's result as one: first the rows leased (a NULL, then the 15
columns of `take`), then for each step a row of its `k` and 15 NULLs, then `_BATCH_RESULT`'s
columns. The leasing branch comes first: it locks the runs' rows before `count_steps`
updates them (a row this transaction has updated already could not be locked again: its
items would be skipped)."""


def batch(plans: list[CommitPlan], *, counted: bool = False, take: bool = False) -> str:
    """The first statements of several `batchable` steps as one, made of the parts they
    need (each variant is prepared once): for each step (in order) its run's status and
    queue, and whether its lease was held (it was then applied, but for its counts, which
    `counted` also writes: `_BATCH_COUNT`). With `take` (and `counted`), the statement
    also leases (`TAKE_STEPS` on the queue of the first step's run) and gives
    `_BATCH_AND_TAKE`'s rows: a group that made no items is one statement, in autocommit
    mode its own transaction."""
    assert counted or not take
    return "".join(
        (
            _BATCH_HELD,
            _BATCH_MADE if any(p.items for p in plans) else "",
            _BATCH_KEPT if any(p.collect for p in plans) else "",
            _BATCH_OUTS if any(p.outputs for p in plans) else "",
            _BATCH_PUT if any(_puts(p) for p in plans) else "",
            _BATCH_COUNT if counted else "",
            "," + TAKE_STEPS.replace(*OF_RUN) + _BATCH_AND_TAKE
            if take
            else _BATCH_RESULT.format(counted=" CROSS JOIN counted" if counted else ""),
        )
    )


def batchable(plan: CommitPlan) -> bool:
    """A `simple` step that drops no collected values (so the steps of a batch commute)."""
    return simple(plan) and not plan.drop_collected


def batch_params(steps: list[tuple[Lease, CommitPlan, float]]) -> dict[str, Any]:
    """The parameters of `batch` for (lease, plan, time) of each step. The steps and the
    values they collect go as JSON (`held`, `kept`), encoded in C, where psycopg dumps an
    array element by element in Python: bytes in hex, text escaped as the connection's
    str dumper would (a `Json` does not pass through it)."""
    held: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    names = "ok opos onodes ovalues pk pkeys pdata"
    args: dict[str, Any] = {key: [] for key in names.split()}
    for k, (lease, plan, now) in enumerate(steps, 1):
        held.append(
            {
                "k": k,
                "run_id": escape(lease.run_id),
                "item_id": escape(lease.item_id),
                "token": lease.token,
                "node": escape(lease.node),
                "seconds": plan.duration,
            }
        )
        item_rows(plan.items, now, step=k, rows=made)
        for key, data in plan.collect:
            kept.append({"k": k, "key": escape(key), "data": data.hex()})
        for o in plan.outputs:
            args["ok"].append(k)
            args["opos"].append(json.dumps(list(o.position)))
            args["onodes"].append(o.node)
            args["ovalues"].append(o.value)
        put = _put(lease, plan)
        if put is not None:
            args["pk"].append(k)
            args["pkeys"].append(put[0])
            args["pdata"].append(put[1])
    args["held"] = Json(held)
    args["kept"] = Json(kept)
    args["made"] = Json(made)
    return args


def params(
    lease: Lease, plan: CommitPlan, now: float, mine: Sequence[bool] = ()
) -> dict[str, Any]:
    """The parameters of `check` and `chain` (a `big` plan's items are inserted apart;
    `mine`: which of them `chain` leases at once)."""
    items = () if big(plan) else plan.items
    put = _put(lease, plan)
    return {
        "pkey": None if put is None else put[0],
        "pdata": None if put is None else put[1],
        "run": lease.run_id,
        "item": lease.item_id,
        "token": lease.token,
        "node": lease.node,
        "seconds": plan.duration,
        "made": Json(item_rows(items, now, mine=mine)),
        "ckeys": [k for k, _ in plan.collect],
        "cdata": [v for _, v in plan.collect],
        "drop": list(plan.drop_collected),
        "opos": [json.dumps(list(o.position)) for o in plan.outputs],
        "onodes": [o.node for o in plan.outputs],
        "ovalues": [o.value for o in plan.outputs],
        "delta": len(plan.items) - 1,
        "now": now,
        "scope": plan.scopes[0] if plan.scopes else "",
    }
