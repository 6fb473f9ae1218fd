"""Where checkpoints live: the `CheckpointStore` protocol and its two implementations.

A store keeps serialized bytes only, one record per run: a header (`meta`), the context,
the pending work items, the open join scopes, the values collected by those scopes and the
terminal outputs so far. Each of those is its own row, so a step's commit writes what the
step changed (the item it consumed, the items it made, the scopes it touched, the new
context) and never rewrites the rest of the run.

`InMemoryCheckpointStore` keeps the bytes in dictionaries (tests, single process).
`SqliteCheckpointStore` keeps them in one SQLite file (WAL, one transaction per commit,
blocking calls in a worker thread); several runs, and several processes, share a file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, Protocol, Self, TypeVar, runtime_checkable

import attrs
import trio

from floxide._errors import CheckpointError

__all__ = [
    "CheckpointStatus",
    "CheckpointStore",
    "Commit",
    "InMemoryCheckpointStore",
    "RunInfo",
    "SqliteCheckpointStore",
    "StoredCheckpoint",
]

T = TypeVar("T")

CheckpointStatus = Literal["running", "finished", "failed"]

SCHEMA_VERSION = 1
"""Version of the SQLite layout; a file with a newer one is refused, never changed."""

_SCHEMA_TAG = "floxide-checkpoints"


@attrs.frozen
class RunInfo:
    """A run as listed by `CheckpointStore.list_runs`."""

    run_id: str
    workflow: str
    status: CheckpointStatus
    steps: int
    """Commits so far (each covers one or more steps)."""
    pending: int
    """Work items still waiting."""
    error: str | None = None
    updated: float = 0.0
    """Unix time of the last commit."""


@attrs.frozen
class StoredCheckpoint:
    """Everything a store holds for one run, as bytes (see `floxide._checkpoint`)."""

    run_id: str
    workflow: str
    meta: bytes
    context: bytes
    status: CheckpointStatus = "running"
    error: str | None = None
    seq: int = 0
    items: Mapping[str, bytes] = attrs.field(factory=dict)
    scopes: Mapping[str, bytes] = attrs.field(factory=dict)
    contributions: Sequence[tuple[str, bytes]] = ()
    """(scope id, value) in commit order."""
    outputs: Sequence[bytes] = ()
    """In commit order."""


@attrs.frozen
class Commit:
    """What one commit changes; applied atomically, in this order of fields.

    New items are inserted before consumed ones are deleted, scope upserts come before
    scope deletions, and contributions to a deleted scope go with it, so several steps can
    be concatenated into one commit.
    """

    seq: int
    """The run's commit number after this commit; the store refuses any other than +1."""
    items: Sequence[tuple[str, bytes]] = ()
    done: Sequence[str] = ()
    context: bytes | None = None
    scopes: Sequence[tuple[str, bytes]] = ()
    contributions: Sequence[tuple[str, bytes]] = ()
    closed: Sequence[str] = ()
    outputs: Sequence[bytes] = ()
    status: CheckpointStatus | None = None
    error: str | None = None


@runtime_checkable
class CheckpointStore(Protocol):
    """Durable home of checkpointed runs. Every method is atomic; errors are
    `CheckpointError` and leave the store unchanged."""

    async def create_run(self, record: StoredCheckpoint) -> None:
        """Store a new run; a run with the same id already stored is an error."""
        ...

    async def commit(self, run_id: str, commit: Commit) -> None:
        """Apply `commit` to the run in one transaction (see `Commit`)."""
        ...

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        """Everything stored for `run_id`; an unknown id is an error."""
        ...

    async def list_runs(self) -> list[RunInfo]:
        """Every stored run, oldest first."""
        ...

    async def delete_run(self, run_id: str) -> bool:
        """Forget `run_id`; False when there was no such run."""
        ...


def _missing(run_id: str) -> CheckpointError:
    return CheckpointError(f"no checkpoint for run {run_id!r} in this store")


def _exists(run_id: str) -> CheckpointError:
    return CheckpointError(
        f"run {run_id!r} already has a checkpoint in this store; resume it with "
        f"`resume(store, {run_id!r})` or delete it first (it was left unchanged)"
    )


def _stale(run_id: str, expected: int, found: int) -> CheckpointError:
    return CheckpointError(
        f"run {run_id!r} was changed by someone else (commit {found} stored, this run "
        f"expected {expected}); is it being resumed twice? Nothing was written"
    )


# --------------------------------------------------------------------------- memory
@attrs.define
class _MemRun:
    workflow: str
    meta: bytes
    context: bytes
    status: CheckpointStatus
    error: str | None
    seq: int
    items: dict[str, bytes]
    scopes: dict[str, bytes]
    contributions: dict[str, list[bytes]]
    outputs: list[bytes]
    created: float
    updated: float


class InMemoryCheckpointStore:
    """A `CheckpointStore` in this process's memory, holding serialized bytes only.

    Nothing stored is a live object, so loading a run rebuilds everything from bytes,
    exactly as from a file. Useful in tests and for runs that should survive cancellation
    but not the process.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _MemRun] = {}

    async def create_run(self, record: StoredCheckpoint) -> None:
        await trio.lowlevel.checkpoint()
        if record.run_id in self._runs:
            raise _exists(record.run_id)
        now = time.time()
        contributions: dict[str, list[bytes]] = {}
        for scope_id, data in record.contributions:
            contributions.setdefault(scope_id, []).append(bytes(data))
        self._runs[record.run_id] = _MemRun(
            workflow=record.workflow,
            meta=bytes(record.meta),
            context=bytes(record.context),
            status=record.status,
            error=record.error,
            seq=record.seq,
            items={k: bytes(v) for k, v in record.items.items()},
            scopes={k: bytes(v) for k, v in record.scopes.items()},
            contributions=contributions,
            outputs=[bytes(v) for v in record.outputs],
            created=now,
            updated=now,
        )

    async def commit(self, run_id: str, commit: Commit) -> None:
        await trio.lowlevel.checkpoint()
        self._apply(
            run_id,
            commit.seq,
            commit.items,
            commit.done,
            commit.context,
            commit.scopes,
            commit.contributions,
            commit.closed,
            commit.outputs,
            commit.status,
            commit.error,
        )

    def _apply(
        self,
        run_id: str,
        seq: int,
        new: Sequence[tuple[str, bytes]],
        done: Sequence[str],
        context: bytes | None,
        scopes: Sequence[tuple[str, bytes]],
        contributions: Sequence[tuple[str, bytes]],
        closed: Sequence[str],
        outputs: Sequence[bytes],
        status: CheckpointStatus | None = None,
        error: str | None = None,
    ) -> None:
        """`commit` with the fields of a `Commit`, without the trio checkpoint: applying
        it never waits, so it is atomic. Checkpointed runs call it directly, with no
        `Commit` object and no task switch per step.
        """
        run = self._runs.get(run_id)
        if run is None:
            raise _missing(run_id)
        if seq != run.seq + 1:
            raise _stale(run_id, seq - 1, run.seq)
        # Check everything first, then apply: a refused commit changes nothing. Both cost
        # what the commit holds, not what the run holds.
        items = run.items
        added = dict(new) if len(new) != 1 else {new[0][0]: new[0][1]}
        if len(added) != len(new):
            raise CheckpointError(f"run {run_id!r}: a new work item is already stored")
        for k in added:
            if k in items:
                raise CheckpointError(f"run {run_id!r}: a new work item is already stored")
        if len(done) > 1 and len(set(done)) != len(done):
            raise CheckpointError(f"run {run_id!r}: a consumed work item was not pending")
        for k in done:
            if k not in items and k not in added:
                raise CheckpointError(f"run {run_id!r}: a consumed work item was not pending")
        for k, data in added.items():
            items[k] = data if type(data) is bytes else bytes(data)
        for k in done:
            del items[k]
        if scopes:
            run.scopes.update((k, bytes(v)) for k, v in scopes)
        for scope_id, data in contributions:
            run.contributions.setdefault(scope_id, []).append(bytes(data))
        for scope_id in closed:
            run.scopes.pop(scope_id, None)
            run.contributions.pop(scope_id, None)
        if outputs:
            run.outputs.extend(bytes(o) for o in outputs)
        if context is not None:
            run.context = bytes(context)
        if status is not None:
            run.status = status
            run.error = error
        run.seq = seq
        run.updated = time.time()

    async def load_run(self, run_id: str) -> StoredCheckpoint:
        await trio.lowlevel.checkpoint()
        run = self._runs.get(run_id)
        if run is None:
            raise _missing(run_id)
        return StoredCheckpoint(
            run_id=run_id,
            workflow=run.workflow,
            meta=run.meta,
            context=run.context,
            status=run.status,
            error=run.error,
            seq=run.seq,
            items=dict(run.items),
            scopes=dict(run.scopes),
            contributions=tuple((k, v) for k, vs in run.contributions.items() for v in vs),
            outputs=tuple(run.outputs),
        )

    async def list_runs(self) -> list[RunInfo]:
        await trio.lowlevel.checkpoint()
        return [
            RunInfo(rid, r.workflow, r.status, r.seq, len(r.items), r.error, r.updated)
            for rid, r in sorted(self._runs.items(), key=lambda kv: kv[1].created)
        ]

    async def delete_run(self, run_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._runs.pop(run_id, None) is not None


# --------------------------------------------------------------------------- sqlite
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
    `BEGIN IMMEDIATE` transaction; blocking calls run in a worker thread, one at a time per
    store (a `trio.CapacityLimiter`). Several runs share a file, and so may several
    processes. A file that is not a floxide checkpoint store, is corrupt or was written by
    a newer floxide raises `CheckpointError` and is never modified.

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
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteCheckpointStore({self.path!r})"

    async def __aenter__(self) -> Self:
        await self._call(lambda conn: None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the file (waits for a commit in progress)."""
        await trio.to_thread.run_sync(self.close, limiter=self._limiter)

    def close(self) -> None:
        """Close the file now (blocking)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- plumbing ------------------------------------------------------------------
    def _error(self, exc: BaseException, doing: str) -> CheckpointError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            why = f"is corrupt or not an SQLite database ({text})"
        else:
            why = f"failed: {type(exc).__name__}: {text}"
        return CheckpointError(f"checkpoint store {self.path!r}: {doing} {why}")

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise CheckpointError(f"checkpoint store {self.path!r} is closed")
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check the file is ours (or empty) before writing anything to it."""
        try:
            tables = self._tables(conn)
            if not tables:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not self._tables(conn):  # another process may have just made it
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(
                            "INSERT INTO floxide_schema VALUES (?, ?)",
                            (_SCHEMA_TAG, SCHEMA_VERSION),
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                tables = self._tables(conn)
            self._check_schema(conn, tables)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        except CheckpointError:
            raise
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc

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

    def _sync(self, fn: Callable[[sqlite3.Connection], T], doing: str) -> T:
        with self._lock:
            conn = self._open()
            try:
                return fn(conn)
            except CheckpointError:
                raise
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    async def _call(self, fn: Callable[[sqlite3.Connection], T], doing: str = "opening") -> T:
        return await trio.to_thread.run_sync(self._sync, fn, doing, limiter=self._limiter)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- the protocol ----------------------------------------------------------------
    async def create_run(self, record: StoredCheckpoint) -> None:
        def create(conn: sqlite3.Connection) -> None:
            def body() -> None:
                found = conn.execute(
                    "SELECT 1 FROM floxide_runs WHERE run_id = ?", (record.run_id,)
                ).fetchone()
                if found is not None:
                    raise _exists(record.run_id)
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

            self._transaction(conn, body)

        await self._call(create, f"creating run {record.run_id!r}")

    async def commit(self, run_id: str, commit: Commit) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            def body() -> None:
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
                        raise _missing(run_id)
                    raise _stale(run_id, commit.seq - 1, int(row[0]))
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
                        raise CheckpointError(
                            f"run {run_id!r}: a consumed work item was not pending"
                        )
                if commit.scopes:
                    conn.executemany(
                        "INSERT OR REPLACE INTO floxide_scopes VALUES (?, ?, ?)",
                        [(run_id, k, v) for k, v in commit.scopes],
                    )
                if commit.contributions:
                    conn.executemany(
                        "INSERT INTO floxide_contributions (run_id, scope_id, data) "
                        "VALUES (?, ?, ?)",
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

            self._transaction(conn, body)

        await self._call(apply, f"committing run {run_id!r}")

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
                    raise _missing(run_id)
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

        return await self._call(load, f"loading run {run_id!r}")

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

        return await self._call(runs, "listing runs")

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            def body() -> bool:
                n = conn.execute("DELETE FROM floxide_runs WHERE run_id = ?", (run_id,)).rowcount
                for table in _TABLES[2:]:
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                return n > 0

            return self._transaction(conn, body)

        return await self._call(delete, f"deleting run {run_id!r}")


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise CheckpointError(f"stored value is not bytes but {type(value).__name__}")
