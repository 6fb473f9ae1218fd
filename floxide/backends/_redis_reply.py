"""Reading the Redis backend's replies: run records, fields, leases, error entries, and
what an error means."""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import coredis.exceptions

from floxide._errors import UnreadableDataError
from floxide.backends._base import (
    ErrorRecord,
    Lease,
    RunContext,
    RunRecord,
    RunStatus,
    unreadable_record,
)
from floxide.backends._redis_keys import unrid as _unrid

__all__ = [
    "FIELDS",
    "base_of",
    "contributions",
    "deadline",
    "describe",
    "error_entry",
    "f",
    "field",
    "leases",
    "leaves",
    "record",
    "s",
    "shown",
    "tls_cause",
]

T = TypeVar("T")


def field(h: dict[bytes, bytes], name: bytes, parse: Callable[[bytes | None], T]) -> T:
    """Field `name` of hash `h`, read by `parse`; `UnreadableDataError` if it cannot be."""
    try:
        return parse(h.get(name))
    except (ValueError, UnicodeDecodeError):
        raise UnreadableDataError(name.decode()) from None


def s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


def f(v: bytes | str | None) -> float | None:
    text = s(v)
    return float(text) if text else None


def error_entry(e: ErrorRecord) -> str:
    """An error log entry as the scripts' `add_error` writes it."""
    return json.dumps(
        [e.node, e.item_id, e.attempt, e.kind, e.message, e.at, e.traceback or "", int(e.handled)],
        ensure_ascii=False,
    )


def deadline(v: bytes | str | None) -> float:
    d = f(v)
    return math.inf if d is None else d


def shown(v: bytes | str | None) -> str:
    """A stored text only shown or logged (a lease's node, last error, worker): garbled
    bytes read as U+FFFD; what the step runs comes from its checked payload."""
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def contributions(
    flat: Any, previous: tuple[Any, tuple[tuple[str, bytes], ...]] | None = None
) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """(item id, contribution) pairs from a script's `{item id, data, ...}` (`ValueError`
    when they are not that: a garbled key), and whether they are older than `previous`.

    `previous` is an earlier reply's (flat, pairs): a hash lists its entries in insertion
    order while small, so a reply that starts with the earlier one reuses its pairs and
    reads the entries after them only, and one the earlier reply starts with (an older
    reply, read late) is a part of its pairs."""
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("contributions")
    if previous is not None and flat:
        old, pairs = previous
        m, n = len(old), len(flat)
        if 0 < m <= n and flat[:m] == old:
            more = tuple(zip(map(shown, flat[m::2]), flat[m + 1 :: 2], strict=True))
            return pairs + more, False
        if n < m and old[:n] == flat:
            return pairs[: n // 2], True
    return tuple(zip(map(shown, flat[0::2]), flat[1::2], strict=True)), False


def leases(
    raw: list[Any],
    start: int,
    held: tuple[bytes, bytes] | None = None,
    known: list[Any] | None = None,
) -> list[Lease]:
    """The leases in a LEASE (or COMMIT) reply: 15 fields each, from `start`. A base left
    out (the script's HELD) is `held`'s (tag, base), or an earlier lease's of the reply,
    when the tag matches; else the lease carries no context (the worker reads it). Leases
    of one reply carry the same contributions (given with the first only, None after it):
    they are read once and shared (the worker then folds them once). `known` holds the
    latest contributions the run's replies gave, as [sent, pairs] (updated): the next
    reply's are read against them (see `contributions`)."""
    parsed: list[Any] = [None, ()]  # this reply's contributions: as sent, as pairs
    out = []
    for i in range(start, len(raw), 15):
        if raw[i + 10] is not None:  # a base given once stands for the later leases too
            held = (raw[i + 14], raw[i + 10])
        flat = raw[i + 13]
        if flat is not None and flat != parsed[0]:
            previous = None if known is None or known[0] is None else (known[0], known[1])
            pairs, older = contributions(flat, previous)
            parsed[0], parsed[1] = flat, pairs
            if known is not None and not older:
                known[0], known[1] = flat, pairs
        out.append(
            Lease(
                run_id=_unrid(s(raw[i])),
                item_id=s(raw[i + 1]),
                node=shown(raw[i + 2]),
                payload=raw[i + 3],
                attempt=int(raw[i + 4]),
                token=int(raw[i + 5]),
                deadline=float(raw[i + 6]),
                last_error=shown(raw[i + 7]) or None,
                expired=s(raw[i + 8]) == "1",
                worker_id=shown(raw[i + 9]),
                context=_context(raw, i, held, parsed[1]),
                run_deadline=deadline(raw[i + 12]),
            )
        )
    return out


def _context(
    raw: list[Any], i: int, held: tuple[bytes, bytes] | None, pairs: Any
) -> RunContext | None:
    data = raw[i + 10]
    if data is None:
        if held is None or held[0] != raw[i + 14]:
            return None
        data = held[1]
    return RunContext(data, int(raw[i + 11]), pairs)


def base_of(raw: list[Any], start: int) -> tuple[bytes, bytes] | None:
    """The (tag, base) the last lease of a reply gave, if it gave one (see `leases`)."""
    for i in range(len(raw) - 15, start - 1, -15):
        if raw[i + 10] is not None:
            return raw[i + 14], raw[i + 10]
    return None


def tls_cause(e: BaseException) -> str | None:
    """What a TLS failure behind a connection error said, if one is behind it."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaves(sub)]
    return [e]


def describe(url: str, what: str, e: BaseException, lost: tuple[type[BaseException], ...]) -> str:
    """What a Redis error means, for an error message (the URL shown has no password)."""
    errors = coredis.exceptions
    if isinstance(e, errors.AuthenticationRequiredError):
        return (
            f"Redis at {url} needs a password ({what}): "
            "give it in the URL, redis://USER:PASSWORD@HOST:PORT/DB"
        )
    if isinstance(e, errors.AuthenticationError):
        return f"Redis at {url} refused the user or password ({what})"
    if isinstance(e, errors.AuthorizationError):
        return f"Redis at {url} does not allow this user to {what}: {e}"
    if isinstance(e, (*lost, OSError)):
        tls = tls_cause(e)
        why = f"TLS: {tls}" if tls is not None else f"{type(e).__name__}: {e}"
        return f"Redis at {url} is unreachable ({what}): {why}"
    return f"Redis at {url} failed ({what}): {type(e).__name__}: {e}"


def record(run_id: str, h: dict[bytes, bytes]) -> RunRecord:
    """The run record in hash `h`; a record that cannot be read shows the run failed,
    naming the field (the scripts fail it for good when a worker meets it)."""
    try:
        return RunRecord(
            run_id=run_id,
            workflow=field(h, b"workflow", s),
            queue=field(h, b"queue", s),
            fingerprint=field(h, b"fingerprint", s),
            status=field(h, b"status", lambda v: RunStatus(s(v))),
            input=h.get(b"input", b""),
            created_at=field(h, b"created_at", f) or 0.0,
            updated_at=field(h, b"updated_at", f) or 0.0,
            finished_at=field(h, b"finished_at", f),
            deadline=field(h, b"deadline", f),
            error=field(h, b"error", s) or None,
            error_kind=field(h, b"error_kind", s) or None,
            pending=field(h, b"pending", lambda v: int(s(v) or 0)),
        )
    except UnreadableDataError as e:
        workflow = h.get(b"workflow", b"?").decode(errors="replace")
        return unreadable_record(run_id, e.what, workflow)


FIELDS = (
    b"workflow",
    b"queue",
    b"fingerprint",
    b"status",
    b"input",
    b"created_at",
    b"updated_at",
    b"finished_at",
    b"deadline",
    b"error",
    b"error_kind",
    b"pending",
)
