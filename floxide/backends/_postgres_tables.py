"""The PostgreSQL backend's tables: their layout, its versioned migrations, shared statements.

Every table lives in the backend's own schema (`?floxide_schema=`, default `floxide`), which
each connection puts first on its `search_path`. `meta` holds the layout version: `migrate`
creates the schema and brings it up to `SCHEMA_VERSION` (one transaction, serialized across
processes by an advisory lock) and refuses a schema newer than this code understands.

Hot rows are avoided: lease tokens and queue order come from sequences, per-node latency is
appended to `steps` (a row per node for the steps committed together: how many, their
seconds in all, the longest; aggregated when read), so concurrent commits only meet on the
rows they must (their run's counters, their join scopes). A row of `collected` holds one
value (`data`) or, when `batch` is set, the values a group commit collected for one key.
Leased items have no index of their own: only the reaper looks for them (a scan, every
few seconds), while every lease would have written an entry. A step's change to a mergeable
context is a row of `contributions` (keyed by run and item id), written with no version
check.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Json

from floxide._errors import BackendError
from floxide.backends._base import (
    ErrorRecord,
    NewItem,
    RunRecord,
    RunStatus,
    missing_scope,
)
from floxide.backends._postgres_text import escape
from floxide.backends._sqlite_tables import decode_fired, encode_fired

__all__ = [
    "CONTRIBUTED",
    "ITEM_ROWS",
    "LIVE",
    "RUN_COLS",
    "RUN_TABLES",
    "SCHEMA_VERSION",
    "SLICE",
    "Scopes",
    "add_errors",
    "add_pending",
    "channel_name",
    "contributions",
    "garbled_items",
    "insert_items",
    "item_rows",
    "migrate",
    "pairs",
    "run_record",
]

SCHEMA_VERSION = 6

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE SEQUENCE tokens;
CREATE SEQUENCE seq;
CREATE TABLE runs (
    run_id text PRIMARY KEY, workflow text NOT NULL, queue text NOT NULL,
    fingerprint text NOT NULL, status text NOT NULL, input bytea NOT NULL,
    context bytea NOT NULL, version bigint NOT NULL DEFAULT 0,
    created_at float8 NOT NULL, updated_at float8 NOT NULL, finished_at float8,
    deadline float8, error text, error_kind text, pending bigint NOT NULL DEFAULT 0,
    done bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
    retried bigint NOT NULL DEFAULT 0);
CREATE INDEX runs_created ON runs (created_at DESC);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE items (
    run_id text NOT NULL, item_id text NOT NULL, queue text NOT NULL, node text NOT NULL,
    payload bytea NOT NULL, attempt integer NOT NULL, state text NOT NULL,
    due float8 NOT NULL, seq bigint NOT NULL, worker_id text,
    token bigint NOT NULL DEFAULT 0, deadline float8 NOT NULL DEFAULT 0, last_error text,
    expired boolean NOT NULL DEFAULT false, PRIMARY KEY (run_id, item_id));
CREATE INDEX items_ready ON items (queue, due, seq) WHERE state = 'queued';
CREATE INDEX items_leased ON items (deadline) WHERE state = 'leased';
CREATE TABLE scopes (
    run_id text NOT NULL, scope_id text NOT NULL, open bigint NOT NULL, fired bytea NOT NULL,
    PRIMARY KEY (run_id, scope_id));
CREATE TABLE collected (run_id text NOT NULL, key text NOT NULL, data bytea NOT NULL);
CREATE INDEX collected_key ON collected (run_id, key);
CREATE TABLE outputs (
    run_id text NOT NULL, position text NOT NULL, node text NOT NULL, value bytea NOT NULL);
CREATE INDEX outputs_run ON outputs (run_id);
CREATE TABLE errors (
    id bigserial PRIMARY KEY, run_id text NOT NULL, node text NOT NULL,
    item_id text NOT NULL, attempt integer NOT NULL, kind text NOT NULL,
    message text NOT NULL, at float8 NOT NULL);
CREATE INDEX errors_run ON errors (run_id, id);
CREATE TABLE steps (run_id text NOT NULL, node text NOT NULL, seconds float8 NOT NULL);
CREATE INDEX steps_run ON steps (run_id);
CREATE TABLE workers (
    worker_id text PRIMARY KEY, queue text NOT NULL, host text NOT NULL,
    pid integer NOT NULL, started_at float8 NOT NULL, last_seen float8 NOT NULL,
    concurrency integer NOT NULL);
""",
    2: """
ALTER TABLE errors ADD COLUMN traceback text,
    ADD COLUMN handled boolean NOT NULL DEFAULT false;
ALTER TABLE workers ADD COLUMN graph text NOT NULL DEFAULT '',
    ADD COLUMN in_flight integer NOT NULL DEFAULT 0;
""",
    3: """
CREATE INDEX items_garbled ON items (run_id) WHERE state NOT IN ('queued', 'leased', 'failed')
    OR (state = 'queued' AND due >= 'Infinity');
""",
    4: """
CREATE TABLE contributions (
    run_id text NOT NULL, key text NOT NULL, data bytea NOT NULL, PRIMARY KEY (run_id, key));
""",
    5: """
ALTER TABLE steps ADD COLUMN n bigint NOT NULL DEFAULT 1, ADD COLUMN longest float8;
ALTER TABLE collected ADD COLUMN batch bytea[];
DROP INDEX items_leased;
CREATE FUNCTION count_steps(
    p_runs text[], p_deltas bigint[], p_done bigint[], p_now float8,
    p_scope_runs text[], p_scope_ids text[], p_scope_deltas bigint[], p_scope_lows bigint[],
    p_steps bigint, p_held bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_held <> p_steps THEN
        RAISE EXCEPTION 'a lease was lost: count step by step' USING ERRCODE = 'FX001';
    END IF;
    FOR k IN 1 .. coalesce(cardinality(p_scope_ids), 0) LOOP
        UPDATE scopes SET open = open + p_scope_deltas[k]
        WHERE run_id = p_scope_runs[k] AND scope_id = p_scope_ids[k]
          AND open + p_scope_lows[k] > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a join scope closes: count step by step' USING ERRCODE = 'FX001';
        END IF;
    END LOOP;
    FOR k IN 1 .. coalesce(cardinality(p_runs), 0) LOOP
        UPDATE runs SET pending = pending + p_deltas[k], done = done + p_done[k],
               updated_at = p_now
        WHERE run_id = p_runs[k] AND status IN ('pending', 'running', 'paused')
          AND pending + p_deltas[k] > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a run ends: count step by step' USING ERRCODE = 'FX001';
        END IF;
    END LOOP;
END $$;
""",
    6: """
CREATE FUNCTION unreadable(what text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a run''s stored % is garbled', what USING ERRCODE = 'FX002';
END $$;
CREATE OR REPLACE FUNCTION count_steps(
    p_runs text[], p_deltas bigint[], p_done bigint[], p_now float8,
    p_scope_runs text[], p_scope_ids text[], p_scope_deltas bigint[], p_scope_lows bigint[],
    p_steps bigint, p_held bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_held <> p_steps THEN
        RAISE EXCEPTION 'a lease was lost: count step by step' USING ERRCODE = 'FX001';
    END IF;
    FOR k IN 1 .. coalesce(cardinality(p_scope_ids), 0) LOOP
        UPDATE scopes SET open = open + p_scope_deltas[k]
        WHERE run_id = p_scope_runs[k] AND scope_id = p_scope_ids[k]
          AND open + p_scope_lows[k] > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a join scope closes: count step by step' USING ERRCODE = 'FX001';
        END IF;
    END LOOP;
    FOR k IN 1 .. coalesce(cardinality(p_runs), 0) LOOP
        UPDATE runs SET done = done + p_done[k], updated_at = p_now,
               pending = CASE WHEN pending < p_done[k] THEN unreadable('pending')
                         ELSE pending + p_deltas[k] END
        WHERE run_id = p_runs[k] AND status IN ('pending', 'running', 'paused')
          AND pending + p_deltas[k] > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a run ends: count step by step' USING ERRCODE = 'FX001';
        END IF;
    END LOOP;
END $$;
""",
}
"""The statements that bring the layout from version N-1 to N (run with the schema first on
the search path). A new layout adds a version; a released one is never edited."""

LIVE = ("pending", "running", "paused")


def add_pending(delta: str, steps: str = "1") -> str:
    """The SET clause that adds `delta` to a run's pending count, for a commit of `steps`
    of its items: each was pending, so a count below `steps` is garbled, and the statement
    fails (`_postgres_conn.UNREADABLE`) instead of ending the run early or never."""
    return (
        f"pending = CASE WHEN pending < {steps} THEN unreadable('pending')"
        f" ELSE pending + {delta} END"
    )


RUN_COLS = (
    "run_id, workflow, queue, fingerprint, status, input, created_at, updated_at, "
    "finished_at, deadline, error, error_kind, pending"
)
RUN_TABLES = ("items", "scopes", "collected", "contributions", "outputs", "errors", "steps")


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's backends (a short, valid identifier)."""
    return "floxide_" + hashlib.sha1(schema.encode()).hexdigest()[:16]


CONTRIBUTED = (
    "LEFT JOIN LATERAL (SELECT array_agg(c.key) AS keys, array_agg(c.data) AS data"
    " FROM contributions c WHERE c.run_id = {run}) contributed ON true"
)
"""A join giving, per run row, `contributed.keys` and `contributed.data` (the arrays
`pairs` reads) of its contributions."""


def pairs(
    keys: Sequence[str] | None, data: Sequence[bytes] | None
) -> tuple[tuple[str, bytes], ...]:
    """(item id, contribution) pairs from the arrays of `CONTRIBUTED` (None: none)."""
    return tuple(zip(keys or (), (bytes(d) for d in data or ()), strict=True))


def contributions(conn: psycopg.Connection[Any], run_id: str) -> dict[str, bytes]:
    """The contributions of a run not yet folded into its stored context."""
    rows = conn.execute("SELECT key, data FROM contributions WHERE run_id = %s", (run_id,))
    return {str(k): bytes(d) for k, d in rows.fetchall()}


def migrate(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the schema or migrate it to `SCHEMA_VERSION`; refuse a newer one."""
    key = int(hashlib.sha1(b"floxide:" + schema.encode()).hexdigest()[:15], 16)
    ident = sql.Identifier(schema)
    with conn.transaction():
        exists = conn.execute(
            "SELECT to_regclass(format('%%I.meta', %s::text)) IS NOT NULL", (schema,)
        ).fetchone()
        if exists and exists[0]:
            version = _version(conn, ident)
            if version == SCHEMA_VERSION:
                return
            _refuse_newer(schema, version)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        has_schema = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        if has_schema is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        meta = conn.execute(
            "SELECT to_regclass(format('%%I.meta', %s::text)) IS NOT NULL", (schema,)
        ).fetchone()
        version = _version(conn, ident) if meta and meta[0] else 0
        _refuse_newer(schema, version)
        for v in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[v], prepare=False)  # several statements
        conn.execute(
            "INSERT INTO meta VALUES ('schema', %s) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value",
            (SCHEMA_VERSION,),
        )


def _version(conn: psycopg.Connection[Any], ident: sql.Identifier) -> int:
    row = conn.execute(
        sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema'").format(ident)
    ).fetchone()
    return int(row[0]) if row else 0


def _refuse_newer(schema: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise BackendError(
            f"PostgreSQL schema {schema!r} has layout version {version}, newer than this "
            f"floxide understands ({SCHEMA_VERSION}): upgrade floxide"
        )


def run_record(row: Sequence[Any]) -> RunRecord:
    """A run from a row of `RUN_COLS`."""
    return RunRecord(
        run_id=row[0],
        workflow=row[1],
        queue=row[2],
        fingerprint=row[3],
        status=RunStatus(row[4]),
        input=bytes(row[5]),
        created_at=row[6],
        updated_at=row[7],
        finished_at=row[8],
        deadline=row[9],
        error=row[10],
        error_kind=row[11],
        pending=row[12],
    )


class Scopes:
    """The open join scopes of one run, inside a transaction (`count_scopes` works on it)."""

    def __init__(self, conn: psycopg.Connection[Any], run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id

    def add_open(self, scope_id: str, delta: int) -> int:
        row = self.conn.execute(
            "UPDATE scopes SET open = open + %s WHERE run_id = %s AND scope_id = %s RETURNING open",
            (delta, self.run_id, scope_id),
        ).fetchone()
        if row is None:
            raise missing_scope(scope_id)
        return int(row[0])

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.conn.execute(
            "INSERT INTO scopes VALUES (%s, %s, %s, %s) ON CONFLICT (run_id, scope_id)"
            " DO UPDATE SET open = excluded.open, fired = excluded.fired",
            (self.run_id, scope_id, count, encode_fired(fired)),
        )

    def close(self, scope_id: str) -> Sequence[NewItem]:
        row = self.conn.execute(
            "DELETE FROM scopes WHERE run_id = %s AND scope_id = %s RETURNING fired",
            (self.run_id, scope_id),
        ).fetchone()
        assert row is not None
        return decode_fired(bytes(row[0]))


_GARBLED = """
SELECT DISTINCT ON (i.run_id) i.run_id, i.item_id, i.node, i.attempt,
       CASE WHEN i.state IN ('queued', 'leased', 'failed') THEN 'due' ELSE 'state' END
FROM items i JOIN runs r ON r.run_id = i.run_id
WHERE (i.state NOT IN ('queued', 'leased', 'failed')
       OR (i.state = 'queued' AND i.due >= 'Infinity'))
  AND r.status IN ('pending', 'running', 'paused')
ORDER BY i.run_id, i.item_id
"""
"""Live runs holding an item that can never be leased: a `state` none of the three, or a
queued item never due (NaN or infinity). The partial index `items_garbled` holds only such
rows, so the look costs nothing while the data is sound."""


def garbled_items(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str, int, str]]:
    """(run, item, node, attempt, column) of one never-leasable item per live run."""
    return [tuple(r) for r in conn.execute(_GARBLED).fetchall()]


def add_errors(conn: psycopg.Connection[Any], run_id: str, errors: Sequence[ErrorRecord]) -> None:
    """Append `errors` to the run's error log."""
    conn.cursor().executemany(
        "INSERT INTO errors (run_id, node, item_id, attempt, kind, message, at, traceback,"
        " handled) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (run_id, e.node, e.item_id, e.attempt, e.kind, e.message, e.at, e.traceback, e.handled)
            for e in errors
        ],
    )


SLICE = 2000
"""Items per statement of `insert_items`; a commit of more inserts them apart from its first
statement (`_postgres_sql.big`)."""
ITEM_ROWS = """(SELECT * FROM json_to_recordset(%(made)s::json) AS u(o bigint, k bigint,
      item_id text, node text, payload text, attempt int, due float8, mine boolean)
      ORDER BY o) u"""
"""The items made, from the parameter `made` (`item_rows`): `u.item_id`, `u.node`,
`decode(u.payload, 'hex')`, `u.attempt`, `u.due`, with `u.k` (a group's step) and `u.mine`
(leased at once) when given; in order."""
_INSERT_ITEMS = (
    """
INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)
SELECT %(run)s, u.item_id, %(queue)s, u.node, decode(u.payload, 'hex'), u.attempt, 'queued',
       u.due, nextval('seq')
FROM """
    + ITEM_ROWS
)


def _finite_or_text(x: float) -> float | str:
    """`x` for JSON, which has no infinity nor NaN: those as the text float8 reads."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def item_rows(
    items: Sequence[NewItem],
    now: float,
    *,
    step: int | None = None,
    mine: Sequence[bool] = (),
    rows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`items` as the rows of `ITEM_ROWS` (due after their delays from `now`; of `step`;
    `mine` those leased at once), appended to `rows`; sent as one JSON value, encoded in C
    (psycopg would dump arrays element by element, in Python): bytes in hex, text escaped
    as the connection's str dumper would (a `Json` does not pass through it)."""
    out = [] if rows is None else rows
    for n, it in enumerate(items):
        row = {
            "o": len(out),
            "item_id": escape(it.item_id),
            "node": escape(it.node),
            "payload": it.payload.hex(),
            "attempt": it.attempt,
            "due": _finite_or_text(now + it.delay),
        }
        if step is not None:
            row["k"] = step
        if mine:
            row["mine"] = mine[n]
        out.append(row)
    return out


def insert_items(
    conn: psycopg.Connection[Any], run_id: str, queue: str, items: Sequence[NewItem], now: float
) -> None:
    """Queue `items` of a run, in order (each is due after its delay): one statement per
    `SLICE` of them, so a big fan-out's parameters are never all built (and sent) at once."""
    for start in range(0, len(items), SLICE):
        part = items[start : start + SLICE]
        conn.execute(
            _INSERT_ITEMS,
            {"run": run_id, "queue": queue, "made": Json(item_rows(part, now))},
        )
