"""The SQLite backend's file: its tables, and the row statements several operations share.

`prepare` applies `SCHEMA` (idempotently) on every opening, after refusing a file holding
tables floxide did not create (left byte-for-byte intact), and migrates older layouts
(version 1 lacked the errors' traceback and handled flag and the workers' graph and load).
Runs, their work items (queued, leased with a fencing token, or kept by a failed run), open
join scopes (`Scopes`, the scope-table interface that `count_scopes` works over), collected
join values, outputs, errors, per-node metrics and registered workers each have a table;
`floxide_meta` holds the layout version and the file-wide counters (lease tokens, queue
order).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from floxide._errors import BackendError, UnreadableDataError
from floxide.backends._base import (
    ErrorRecord,
    NewItem,
    RunRecord,
    RunStatus,
    missing_scope,
    unreadable_record,
)

__all__ = [
    "RUN_COLS",
    "RUN_TABLES",
    "SCHEMA",
    "Scopes",
    "add_error",
    "decode_fired",
    "encode_fired",
    "garbled_items",
    "insert_items",
    "next_value",
    "prepare",
    "run_record",
    "set_run",
    "unreadable_column",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS floxide_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, queue TEXT NOT NULL,
    fingerprint TEXT NOT NULL, status TEXT NOT NULL, input BLOB NOT NULL,
    context BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL, deadline REAL,
    error TEXT, error_kind TEXT, pending INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL, item_id TEXT NOT NULL, queue TEXT NOT NULL, node TEXT NOT NULL,
    payload BLOB NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL, due REAL NOT NULL,
    seq INTEGER NOT NULL, worker_id TEXT, token INTEGER NOT NULL DEFAULT 0,
    deadline REAL NOT NULL DEFAULT 0, last_error TEXT, expired INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, item_id));
CREATE INDEX IF NOT EXISTS items_ready ON items (queue, state, due, seq);
CREATE INDEX IF NOT EXISTS items_leased ON items (state, deadline);
CREATE TABLE IF NOT EXISTS scopes (
    run_id TEXT NOT NULL, scope_id TEXT NOT NULL, open INTEGER NOT NULL, fired BLOB NOT NULL,
    PRIMARY KEY (run_id, scope_id));
CREATE TABLE IF NOT EXISTS collected (
    run_id TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS collected_key ON collected (run_id, key);
CREATE TABLE IF NOT EXISTS contributions (
    run_id TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS outputs (
    run_id TEXT NOT NULL, position TEXT NOT NULL, node TEXT NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outputs_run ON outputs (run_id);
CREATE TABLE IF NOT EXISTS errors (
    run_id TEXT NOT NULL, node TEXT NOT NULL, item_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, at REAL NOT NULL, traceback TEXT,
    handled INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS errors_run ON errors (run_id);
CREATE TABLE IF NOT EXISTS node_metrics (
    run_id TEXT NOT NULL, node TEXT NOT NULL, count INTEGER NOT NULL,
    total REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (run_id, node));
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, queue TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at REAL NOT NULL, last_seen REAL NOT NULL, concurrency INTEGER NOT NULL,
    graph TEXT NOT NULL DEFAULT '', in_flight INTEGER NOT NULL DEFAULT 0);
INSERT OR IGNORE INTO floxide_meta VALUES ('schema', 2), ('token', 0), ('seq', 0);
"""

SCHEMA_VERSION = 2
_TABLES = frozenset(
    {
        "floxide_meta",
        "runs",
        "items",
        "scopes",
        "collected",
        "contributions",
        "outputs",
        "errors",
        "node_metrics",
        "workers",
    }
)
_MIGRATIONS = {
    1: (
        "ALTER TABLE errors ADD COLUMN traceback TEXT",
        "ALTER TABLE errors ADD COLUMN handled INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE workers ADD COLUMN graph TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE workers ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0",
    ),
}


def prepare(conn: sqlite3.Connection, url: str) -> None:
    """Accept the file (refusing a foreign one before writing anything), create the tables
    of a new one and migrate an older layout."""
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if names and ("floxide_meta" not in names or not names <= _TABLES):
        foreign = ", ".join(sorted(names - _TABLES)) or "no floxide_meta"
        raise BackendError(
            f"SQLite backend {url}: the file holds tables floxide's backend did not create "
            f"({foreign}); use a file of its own"
        )
    conn.executescript(SCHEMA)
    version = int(conn.execute("SELECT value FROM floxide_meta WHERE key = 'schema'").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise BackendError(
            f"SQLite backend {url}: layout version {version} is newer than this floxide's "
            f"({SCHEMA_VERSION}); upgrade floxide"
        )
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for v in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[v]:
                    conn.execute(statement)
            conn.execute(
                "UPDATE floxide_meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


RUN_COLS = (
    "run_id, workflow, queue, fingerprint, status, input, created_at, updated_at, "
    "finished_at, deadline, error, error_kind, pending"
)
RUN_TABLES = ("items", "scopes", "collected", "contributions", "outputs", "errors", "node_metrics")


def run_record(row: sqlite3.Row) -> RunRecord:
    """The run in `row`; a row that cannot be read shows the run failed, naming the column."""
    run_id = row["run_id"]
    try:
        return RunRecord(
            run_id=run_id,
            workflow=_text(row, "workflow"),
            queue=_text(row, "queue"),
            fingerprint=_text(row, "fingerprint"),
            status=RunStatus(_text(row, "status")),
            input=bytes(row["input"]),
            created_at=_number(row, "created_at"),
            updated_at=_number(row, "updated_at"),
            finished_at=_number(row, "finished_at", optional=True),
            deadline=_number(row, "deadline", optional=True),
            error=row["error"] if isinstance(row["error"], str | None) else str(row["error"]),
            error_kind=row["error_kind"] if isinstance(row["error_kind"], str | None) else None,
            pending=int(_number(row, "pending")),
        )
    except UnreadableDataError as e:
        return unreadable_record(run_id, e.what, str(row["workflow"]))
    except (ValueError, TypeError):
        return unreadable_record(run_id, "status", str(row["workflow"]))


def _text(row: sqlite3.Row, col: str) -> str:
    v = row[col]
    if not isinstance(v, str):
        raise UnreadableDataError(col)
    return v


def _number(row: sqlite3.Row, col: str, *, optional: bool = False) -> Any:
    v = row[col]
    if (v is None and optional) or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise UnreadableDataError(col)


def unreadable_column(
    row: sqlite3.Row, checks: Sequence[tuple[str, type | tuple[type, ...]]]
) -> str | None:
    """The first column of `row` whose value is not of its type in `checks` (None if all are)."""
    for col, kind in checks:
        if not isinstance(row[col], kind):
            return col
    return None


_LIVE = "('pending', 'running', 'paused')"
_GARBLED_STATE = (
    "SELECT i.run_id FROM items i JOIN runs r ON r.run_id = i.run_id"
    " WHERE (i.state < 'failed' OR (i.state > 'failed' AND i.state < 'leased')"
    " OR (i.state > 'leased' AND i.state < 'queued') OR i.state > 'queued')"
    f" AND r.status IN {_LIVE}"
)
"""Live runs holding an item whose state is none of the three: four range lookups on the
`items_leased` index, so the cost grows with the garbled rows, not with the queue."""
_GARBLED_DUE = (
    "SELECT i.run_id FROM items i JOIN runs r ON r.run_id = i.run_id"
    f" WHERE i.queue IN (SELECT DISTINCT queue FROM runs WHERE status IN {_LIVE})"
    " AND i.state = 'queued' AND i.due > ? AND r.status IN {_LIVE}"
).replace("{_LIVE}", _LIVE)
"""Live runs holding a queued item whose due is not a number (SQLite sorts text and blobs
after every number, infinity included): one range lookup on `items_ready` per live queue."""


def garbled_items(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Live runs with an item that can never be leased (its `state` or `due` is garbled),
    each with the column: the reaper fails them, so they do not wait forever."""
    found: dict[str, str] = {}
    for r in conn.execute(_GARBLED_STATE):
        found.setdefault(r[0], "state")
    for r in conn.execute(_GARBLED_DUE, (math.inf,)):
        found.setdefault(r[0], "due")
    return list(found.items())


def encode_fired(fired: Sequence[NewItem]) -> bytes:
    """The items a join scope fires, as stored with the scope (JSON)."""
    return json.dumps([[f.item_id, f.node, f.payload.decode()] for f in fired]).encode()


def decode_fired(raw: bytes) -> list[NewItem]:
    return [NewItem(i, n, p.encode()) for i, n, p in json.loads(raw)]


class Scopes:
    """The open join scopes of one run, inside a transaction."""

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id

    def add_open(self, scope_id: str, delta: int) -> int:
        row = self.conn.execute(
            "UPDATE scopes SET open = open + ? WHERE run_id = ? AND scope_id = ? RETURNING open",
            (delta, self.run_id, scope_id),
        ).fetchone()
        if row is None:
            raise missing_scope(scope_id)
        return int(row[0])

    def open(self, scope_id: str, count: int, fired: Sequence[NewItem]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO scopes VALUES (?, ?, ?, ?)",
            (self.run_id, scope_id, count, encode_fired(fired)),
        )

    def close(self, scope_id: str) -> Sequence[NewItem]:
        row = self.conn.execute(
            "DELETE FROM scopes WHERE run_id = ? AND scope_id = ? RETURNING fired",
            (self.run_id, scope_id),
        ).fetchone()
        return decode_fired(bytes(row[0]))


def next_value(conn: sqlite3.Connection, key: str, n: int = 1) -> int:
    """Take `n` consecutive values of the file-wide counter `key` (`token`, `seq`); the first."""
    row = conn.execute(
        "UPDATE floxide_meta SET value = value + ? WHERE key = ? RETURNING value", (n, key)
    ).fetchone()
    return int(row[0]) - n + 1


def set_run(
    conn: sqlite3.Connection,
    run_id: str,
    now: float,
    *,
    add_one: Sequence[str] = (),
    **cols: object,
) -> None:
    """Set columns of a run (and add one to each counter in `add_one`): one UPDATE.

    A finished status also stamps `finished_at` and drops the run's work state (items,
    scopes, collected values), except for a failed run, whose work state is kept for
    `retry_run`; its outputs, errors and metrics stay until the reaper.
    """
    status = cols.get("status")
    if isinstance(status, RunStatus) and status.finished:
        cols["finished_at"] = now
    if status is RunStatus.FAILED:  # kept out of every queue (and of `next_due`)
        conn.execute(
            "UPDATE items SET state = 'failed', worker_id = NULL WHERE run_id = ?", (run_id,)
        )
    elif isinstance(status, RunStatus) and status.finished:
        conn.execute("DELETE FROM items WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM scopes WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM collected WHERE run_id = ?", (run_id,))
    cols["updated_at"] = now
    sets = ", ".join([*(f"{k} = ?" for k in cols), *(f"{k} = {k} + 1" for k in add_one)])
    values = [str(v) if isinstance(v, RunStatus) else v for v in cols.values()]
    conn.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*values, run_id))


def add_error(conn: sqlite3.Connection, run_id: str, e: ErrorRecord) -> None:
    """Append `e` to the run's error log."""
    conn.execute(
        "INSERT INTO errors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, e.node, e.item_id, e.attempt, e.kind, e.message, e.at, e.traceback, e.handled),
    )


def insert_items(
    conn: sqlite3.Connection, run_id: str, queue: str, items: Sequence[NewItem], now: float
) -> None:
    """Queue `items` of a run, in order (each is due after its delay). The rows are made
    as they are inserted, never all at once (a big fan-out's are as big as its items)."""
    if not items:
        return
    seq = next_value(conn, "seq", len(items))
    rows = (
        (
            run_id,
            it.item_id,
            queue,
            it.node,
            it.payload,
            it.attempt,
            "queued",
            now + it.delay,
            seq + k,
        )
        for k, it in enumerate(items)
    )
    conn.executemany(
        "INSERT INTO items (run_id, item_id, queue, node, payload, attempt, state, due, seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
