"""`SqliteCheckpointStore`: checkpoints in one SQLite file, on the shared SQLite layer.

Each table holds one kind of row (see `floxide.checkpoints._base`), keyed by run, so a
commit writes only what its steps changed. Opening, the worker thread, busy handling and
group commit are `floxide._sqlite.SqliteFile`'s: commits of several runs made at the same
time share one transaction (each in its own savepoint, so a refused one changes nothing).
"""

from __future__ import annotations

import os
import sqlite3
import time
from types import TracebackType
from typing import Self

from floxide._errors import CheckpointError
from floxide._sqlite import SqliteFile, begin_immediate
from floxide.checkpoints._base import (
    Commit,
    RunInfo,
    StoredCheckpoint,
    missing_run,
    run_exists,
    stale_run,
)

__all__ = ["SCHEMA_VERSION", "SqliteCheckpointStore"]

SCHEMA_VERSION = 1
"""Version of the SQLite layout; a file with a newer one is refused, never changed."""

_SCHEMA_TAG = "floxide-checkpoints"

_SCHEMA = """
CREATE TABLE floxide_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE floxide_runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    seq INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE floxide_meta (run_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE floxide_contexts (run_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE floxide_items (
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, item_id)
) WITHOUT ROWID;
CREATE TABLE floxide_scopes (
    run_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, scope_id)
) WITHOUT ROWID;
CREATE TABLE floxide_contributions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX floxide_contributions_scope ON floxide_contributions (run_id, scope_id);
CREATE TABLE floxide_outputs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX floxide_outputs_run ON floxide_outputs (run_id);
"""

_TABLES = (
    "floxide_schema",
    "floxide_runs",
    "floxide_meta",
    "floxide_contexts",
    "floxide_items",
    "floxide_scopes",
    "floxide_contributions",
    "floxide_outputs",
)


class SqliteCheckpointStore:
    """A `CheckpointStore` in one SQLite file.

    The file is opened on first use (WAL mode, busy timeout). Each commit is one
    `BEGIN IMMEDIATE` transaction, shared with the commits made at the same time (group
    commit, each in its own savepoint); blocking calls run in a worker thread, one at a time
    per store. Several runs share a file, and so may several processes. A file that is not a
    floxide checkpoint store, is corrupt or was written by a newer floxide raises
    `CheckpointError` and is never modified.

    `durable=True` (the default) syncs every commit to disk (`synchronous=FULL`), so even
    a power loss loses no committed step; `durable=False` (`synchronous=NORMAL`) survives
    process crashes and is faster.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, durable: bool = True, busy_timeout: float = 10.0
    ) -> None:
        self.path = os.fspath(path)
        self.durable = durable
        self.busy_timeout = busy_timeout
        self._file = SqliteFile(
            self.path,
            error=self._error,
            prepare=self._prepare,
            synchronous="FULL" if durable else "NORMAL",
            busy_timeout=busy_timeout,
            closed=lambda: CheckpointError(f"checkpoint store {self.path!r} is closed"),
        )

    def __repr__(self) -> str:
        return f"SqliteCheckpointStore({self.path!r})"

    async def __aenter__(self) -> Self:
        await self._file.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the file (waits for the commits in progress)."""
        await self._file.aclose()

    def close(self) -> None:
        """Close the file now (blocking)."""
        self._file.close()

    # -- the file ------------------------------------------------------------------
    def _error(self, exc: BaseException, doing: str) -> CheckpointError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            why = f"is corrupt or not an SQLite database ({text})"
        else:
            why = f"failed: {type(exc).__name__}: {text}"
        return CheckpointError(f"checkpoint store {self.path!r}: {doing} {why}")

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check the file is ours (or new, and then lay it out) before writing to it."""
        tables = self._tables(conn)
        if not tables:
            begin_immediate(conn, self.busy_timeout)
            try:
                if not self._tables(conn):  # another process may have just made it
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO floxide_schema VALUES (?, ?)", (_SCHEMA_TAG, SCHEMA_VERSION)
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            tables = self._tables(conn)
        self._check_schema(conn, tables)

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> set[str]:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {str(r[0]) for r in rows}

    def _check_schema(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        foreign = CheckpointError(
            f"{self.path!r} is an SQLite database but not a floxide checkpoint store "
            f"(tables: {', '.join(sorted(tables)) or 'none'}); it was left unchanged"
        )
        if "floxide_schema" not in tables:
            raise foreign
        row = conn.execute(
            "SELECT version FROM floxide_schema WHERE name = ?", (_SCHEMA_TAG,)
        ).fetchone()
        if row is None:
            raise foreign
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise CheckpointError(
                f"checkpoint store {self.path!r} has layout version {version}, written by a "
                f"newer floxide (this one reads up to {SCHEMA_VERSION}); it was left unchanged"
            )
        missing = [t for t in _TABLES if t not in tables]
        if missing:
            raise CheckpointError(
                f"checkpoint store {self.path!r} is damaged: missing tables {missing}"
            )

    # -- the protocol ----------------------------------------------------------------
    async def create_run(self, record: StoredCheckpoint) -> None:
        def create(conn: sqlite3.Connection) -> None:
            found = conn.execute(
                "SELECT 1 FROM floxide_runs WHERE run_id = ?", (record.run_id,)
            ).fetchone()
            if found is not None:
                raise run_exists(record.run_id)
            now = time.time()
            rid = record.run_id
            conn.execute(
                "INSERT INTO floxide_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rid, record.workflow, record.status, record.error, record.seq, now, now),
            )
            conn.execute("INSERT INTO floxide_meta VALUES (?, ?)", (rid, record.meta))
            conn.execute("INSERT INTO floxide_contexts VALUES (?, ?)", (rid, record.context))
            conn.executemany(
                "INSERT INTO floxide_items VALUES (?, ?, ?)",
                [(rid, k, v) for k, v in record.items.items()],
            )
            conn.executemany(
                "INSERT INTO floxide_scopes VALUES (?, ?, ?)",
                [(rid, k, v) for k, v in record.scopes.items()],
            )
            conn.executemany(
                "INSERT INTO floxide_contributions (run_id, scope_id, data) VALUES (?, ?, ?)",
                [(rid, s, v) for s, v in record.contributions],
            )
            conn.executemany(
                "INSERT INTO floxide_outputs (run_id, data) VALUES (?, ?)",
                [(rid, v) for v in record.outputs],
            )

        await self._file.write(create, f"creating run {record.run_id!r}")

    async def commit(self, run_id: str, commit: Commit) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            # The run row first: it fences the commit (seq must be ours) in one statement.
            sets = ["seq = ?", "updated = ?"]
            args: list[object] = [commit.seq, time.time()]
            if commit.status is not None:
                sets.extend(("status = ?", "error = ?"))
                args.extend((commit.status, commit.error))
            fenced = conn.execute(
                f"UPDATE floxide_runs SET {', '.join(sets)} WHERE run_id = ? AND seq = ?",
                (*args, run_id, commit.seq - 1),
            ).rowcount
            if fenced != 1:
                row = conn.execute(
                    "SELECT seq FROM floxide_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                if row is None:
                    raise missing_run(run_id)
                raise stale_run(run_id, commit.seq - 1, int(row[0]))
            if commit.context is not None:
                conn.execute(
                    "UPDATE floxide_contexts SET data = ? WHERE run_id = ?",
                    (commit.context, run_id),
                )
            if commit.items:
                try:
                    conn.executemany(
                        "INSERT INTO floxide_items VALUES (?, ?, ?)",
                        [(run_id, k, v) for k, v in commit.items],
                    )
                except sqlite3.IntegrityError as exc:
                    raise CheckpointError(
                        f"run {run_id!r}: a new work item is already stored ({exc})"
                    ) from exc
            if commit.done:
                cur = conn.executemany(
                    "DELETE FROM floxide_items WHERE run_id = ? AND item_id = ?",
                    [(run_id, k) for k in commit.done],
                )
                if cur.rowcount != len(commit.done):
                    raise CheckpointError(f"run {run_id!r}: a consumed work item was not pending")
            if commit.scopes:
                conn.executemany(
                    "INSERT OR REPLACE INTO floxide_scopes VALUES (?, ?, ?)",
                    [(run_id, k, v) for k, v in commit.scopes],
                )
            if commit.contributions:
                conn.executemany(
                    "INSERT INTO floxide_contributions (run_id, scope_id, data) VALUES (?, ?, ?)",
                    [(run_id, s, v) for s, v in commit.contributions],
                )
            if commit.closed:
                keys = [(run_id, k) for k in commit.closed]
                conn.executemany(
                    "DELETE FROM floxide_scopes WHERE run_id = ? AND scope_id = ?", keys
                )
                conn.executemany(
                    "DELETE FROM floxide_contributions WHERE run_id = ? AND scope_id = ?",
                    keys,
                )
            if commit.outputs:
                conn.executemany(
                    "INSERT INTO floxide_outputs (run_id, data) VALUES (?, ?)",
                    [(run_id, v) for v in commit.outputs],
                )

        await self._file.write(apply, f"committing run {run_id!r}")

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        def load(conn: sqlite3.Connection) -> StoredCheckpoint:
            conn.execute("BEGIN")  # one consistent snapshot of the run
            try:
                row = conn.execute(
                    "SELECT r.workflow, m.data, c.data, r.status, r.error, r.seq "
                    "FROM floxide_runs r "
                    "LEFT JOIN floxide_meta m ON m.run_id = r.run_id "
                    "LEFT JOIN floxide_contexts c ON c.run_id = r.run_id "
                    "WHERE r.run_id = ?",
                    (run_id,),
                ).fetchone()
                if row is None:
                    raise missing_run(run_id)
                items = conn.execute(
                    "SELECT item_id, data FROM floxide_items WHERE run_id = ?", (run_id,)
                ).fetchall()
                scopes = conn.execute(
                    "SELECT scope_id, data FROM floxide_scopes WHERE run_id = ?", (run_id,)
                ).fetchall()
                contributions = conn.execute(
                    "SELECT scope_id, data FROM floxide_contributions WHERE run_id = ? ORDER BY id",
                    (run_id,),
                ).fetchall()
                outputs = conn.execute(
                    "SELECT data FROM floxide_outputs WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            if row[1] is None or row[2] is None:
                raise CheckpointError(
                    f"checkpoint store {self.path!r}: run {run_id!r} is damaged (its header "
                    f"or context is missing)"
                )
            status = str(row[3])
            if status not in ("running", "finished", "failed"):
                raise CheckpointError(
                    f"checkpoint store {self.path!r}: run {run_id!r} has unknown status {status!r}"
                )
            return StoredCheckpoint(
                run_id=run_id,
                workflow=str(row[0]),
                meta=_blob(row[1]),
                context=_blob(row[2]),
                status=status,  # type: ignore[arg-type]
                error=row[4],
                seq=int(row[5]),
                items={str(k): _blob(v) for k, v in items},
                scopes={str(k): _blob(v) for k, v in scopes},
                contributions=tuple((str(s), _blob(v)) for s, v in contributions),
                outputs=tuple(_blob(r[0]) for r in outputs),
            )

        return await self._file.read(load, f"loading run {run_id!r}")

    async def list_runs(self) -> list[RunInfo]:
        def runs(conn: sqlite3.Connection) -> list[RunInfo]:
            rows = conn.execute(
                "SELECT r.run_id, r.workflow, r.status, r.seq, r.error, r.updated, "
                "(SELECT count(*) FROM floxide_items i WHERE i.run_id = r.run_id) "
                "FROM floxide_runs r ORDER BY r.created, r.run_id"
            ).fetchall()
            return [
                RunInfo(
                    run_id=str(r[0]),
                    workflow=str(r[1]),
                    status=r[2],
                    steps=int(r[3]),
                    pending=int(r[6]),
                    error=r[4],
                    updated=float(r[5]),
                )
                for r in rows
            ]

        return await self._file.read(runs, "listing runs")

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            n = conn.execute("DELETE FROM floxide_runs WHERE run_id = ?", (run_id,)).rowcount
            for table in _TABLES[2:]:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            return n > 0

        return await self._file.write(delete, f"deleting run {run_id!r}")


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise CheckpointError(f"stored value is not bytes but {type(value).__name__}")
