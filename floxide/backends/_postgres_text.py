"""Text as PostgreSQL stores it: any Python string, NUL included, and back unchanged.

PostgreSQL's `text` cannot hold the NUL character, but a run id (API.md 11), a node's error
message or a traceback may contain one. Every string floxide sends is escaped reversibly
(`%` as `%25`, NUL as `%00`) by a dumper registered on each connection, and every `text`
value read back is unescaped by the matching loader, so equality in SQL and the values
callers see are both exact. Strings without `%` or NUL (nearly all) pass unchanged.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.types.string import StrDumper, TextLoader

__all__ = ["escape", "register", "unescape"]

_ESCAPED = re.compile(r"%(25|00)")


def escape(text: str) -> str:
    """`text` without NUL characters, reversibly (see `unescape`)."""
    if "%" not in text and "\x00" not in text:
        return text
    return text.replace("%", "%25").replace("\x00", "%00")


def unescape(text: str) -> str:
    """The string `escape` was given."""
    if "%" not in text:
        return text
    return _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else "\x00", text)


class _Dumper(StrDumper):
    def dump(self, obj: str) -> bytes | bytearray | memoryview | None:
        return super().dump(escape(obj))


class _Loader(TextLoader):
    def load(self, data: bytes | bytearray | memoryview) -> str:
        text = super().load(data)
        return unescape(text) if isinstance(text, str) else unescape(bytes(text).decode())


def register(conn: psycopg.Connection[object]) -> None:
    """Make `conn` send and read every string through `escape` / `unescape`."""
    conn.adapters.register_dumper(str, _Dumper)
    for name in ("text", "varchar", "bpchar", "name"):
        conn.adapters.register_loader(name, _Loader)
