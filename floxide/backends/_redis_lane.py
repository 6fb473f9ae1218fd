"""The Redis backend's fast lane: the hot commands on one plain connection.

A script call through coredis costs several times the round trip itself (request objects,
a writer and a reader task per connection, a RESP3 parser in Python); a step of a chain is
one such call, so that overhead was most of a step. A lane is one trio stream (TCP, or
`trio.SSLStream` for `rediss://`) that speaks just enough RESP2: it packs one command
(EVALSHA, or a blocking wait on a lane of waits), sends it and parses the reply in the
calling task, no other task involved. A NOSCRIPT reply loads the script and asks again.

It is deliberately narrow; anything unusual goes back to coredis (`Unavailable`, raised
before a byte of the call was sent): a lane busy with another call (coredis multiplexes
concurrent ones), a server it cannot reach or log in to (coredis then reports the error,
worded as every other error), an argument of another type. Once the call was sent, a lost
connection is `coredis.exceptions.ConnectionError` (the backend's retry rule applies, as
for coredis), and an error reply the coredis exception its prefix names (MOVED and ASK
included: the cluster session follows them). A cancelled call closes the stream (its reply
would be unread); the next call opens a new one, as after a restarted server. The password
is sent in AUTH and kept nowhere else (no repr shows it).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import coredis.exceptions
import trio
from coredis.parser import Parser

__all__ = ["Lane", "Reader", "Unavailable", "pack"]


class Unavailable(Exception):
    """The lane cannot take this call; nothing of it was sent (use coredis instead)."""


_INCOMPLETE = object()
"""`Reader.reply()` when the buffer does not hold a whole reply yet."""
_READ = 65536


def pack(args: Sequence[Any]) -> bytes:
    """A RESP command of `args` (bytes, str, int or float, encoded as coredis does)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, int):
            b = b"%d" % a
        elif isinstance(a, float):
            b = b"%.15g" % a
        else:
            raise Unavailable(f"argument of type {type(a).__name__}")
        out += (b"$%d\r\n" % len(b), b, b"\r\n")
    return b"".join(out)


def _error(text: str) -> coredis.exceptions.RedisError:
    """The coredis exception of an error reply (coredis' own table of prefixes)."""
    code, _, rest = text.partition(" ")
    cls = Parser.EXCEPTION_CLASSES.get(code)
    if cls is None:
        return coredis.exceptions.ResponseError(text)
    if isinstance(cls, dict):
        for start, exc in cls.items():
            if rest.lower().startswith(start):
                return exc(rest)
        return coredis.exceptions.ResponseError(rest)
    return cls(rest)


def _unauthenticated(reply: Any) -> bool:
    """Whether `reply` says the connection must log in first (the call did not run)."""
    if isinstance(reply, coredis.exceptions.AuthenticationRequiredError):
        return True
    return isinstance(reply, coredis.exceptions.ResponseError) and str(reply).startswith(
        "Protocol error: unauthenticated"
    )


class Reader:
    """A RESP2 reply parsed as it arrives: `feed` the bytes received, `reply` gives it
    once whole (resuming where it stopped, so a big reply is parsed once). Replies as
    coredis gives them with `decode=False`: bytes, int, None, lists; an error reply is
    a `RedisError` value (the caller raises it)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        """Where the next element starts (everything before it is parsed)."""
        self.stack: list[list[Any]] = []
        """The arrays begun: [wanted, items...]."""

    def feed(self, data: bytes | bytearray) -> None:
        self.buf += data

    def reply(self) -> Any:
        """The whole reply, or `_INCOMPLETE` if more bytes are needed."""
        buf, stack = self.buf, self.stack
        pos = self.pos
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                self.pos = pos
                return _INCOMPLETE
            kind = buf[pos]
            value: Any
            if kind == 36:  # $ bulk string
                n = int(buf[pos + 1 : end])
                if n < 0:
                    value, pos = None, end + 2
                else:
                    if len(buf) < end + 4 + n:
                        self.pos = pos
                        return _INCOMPLETE
                    value, pos = bytes(buf[end + 2 : end + 2 + n]), end + 4 + n
            elif kind == 42:  # * array
                n = int(buf[pos + 1 : end])
                pos = end + 2
                if n > 0:
                    stack.append([n])
                    continue
                value = [] if n == 0 else None
            elif kind == 58:  # : integer
                value, pos = int(buf[pos + 1 : end]), end + 2
            elif kind == 43:  # + simple string
                value, pos = bytes(buf[pos + 1 : end]), end + 2
            elif kind == 45:  # - error
                value, pos = _error(buf[pos + 1 : end].decode(errors="replace")), end + 2
            else:
                raise coredis.exceptions.ProtocolError(f"unexpected reply type {chr(kind)!r}")
            while stack:
                top = stack[-1]
                top.append(value)
                if len(top) <= top[0]:
                    break
                stack.pop()
                value = top[1:]
            else:  # what follows is the next reply's (pipelined commands)
                self.buf, self.pos = buf[pos:], 0
                return value


class Lane:
    """One connection for script calls; opened on first use, again after a loss."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int,
        *,
        username: str | None,
        password: str | None,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
    ) -> None:
        self._where = (host, port)
        self._db = db
        self._username = username
        self._password = password
        self._ssl = ssl_context
        self._timeout = connect_timeout
        self._stream: trio.abc.Stream | None = None
        self._busy = False
        self._refused = False
        """Set when the server refused the login: coredis reports it (and the lane rests)."""

    def __repr__(self) -> str:
        return f"Lane({self._where[0]}:{self._where[1]}/{self._db})"

    async def evalsha(
        self,
        sha: bytes | str,
        keys: Sequence[Any],
        argv: Sequence[Any],
        script: bytes | str | None = None,
    ) -> Any:
        """EVALSHA of `sha` on `keys` and `argv`; its reply (see the module's doc). A server
        without the script (new or flushed) is given `script` (SCRIPT LOAD) and asked again;
        without `script`, that is `Unavailable`."""
        command = [b"EVALSHA", sha, len(keys), *keys, *argv]
        try:
            return await self.call(command)
        except coredis.exceptions.NoScriptError:
            if script is None:
                raise Unavailable("no script") from None
        await self.call([b"SCRIPT", b"LOAD", script])
        return await self.call(command)

    async def call(self, args: Sequence[Any]) -> Any:
        """One command (a blocking one too: the lane is busy until it answers); its reply."""
        if self._busy or self._refused:
            raise Unavailable("busy")
        data = pack(args)
        self._busy = True
        try:
            stream = self._stream
            if stream is None:
                stream = self._stream = await self._open()
            try:
                await stream.send_all(data)
                reader = Reader()
                reply = await self._receive(stream, reader)
                if reader.buf:
                    raise coredis.exceptions.ProtocolError("unexpected data after a reply")
            except BaseException as e:
                self._close()
                if isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
                    raise coredis.exceptions.ConnectionError("connection lost") from None
                raise
        finally:
            self._busy = False
        if _unauthenticated(reply):  # not run: coredis' login says why
            self._refused = True
            self._close()
            raise Unavailable("not logged in")
        if isinstance(reply, coredis.exceptions.RedisError):
            raise reply
        return reply

    @staticmethod
    async def _receive(stream: trio.abc.Stream, reader: Reader) -> Any:
        """The next reply on `stream` (bytes of later ones stay in `reader`)."""
        while True:
            value = reader.reply() if reader.buf else _INCOMPLETE
            if value is not _INCOMPLETE:
                return value
            chunk = await stream.receive_some(_READ)
            if not chunk:
                raise trio.BrokenResourceError("closed by the server")
            reader.feed(chunk)

    async def _open(self) -> trio.abc.Stream:
        """A connected, logged-in stream; `Unavailable` if there is none to be had."""
        host, port = self._where
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self._timeout):
                stream = await trio.open_tcp_stream(host, port)
                if self._ssl is not None:
                    tls = trio.SSLStream(stream, self._ssl, server_hostname=host)
                    stream = tls
                    await tls.do_handshake()
                hello: list[bytes] = []
                if self._password is not None:
                    who = [self._username] if self._username else []
                    hello.append(pack([b"AUTH", *who, self._password]))
                if self._db:
                    hello.append(pack([b"SELECT", self._db]))
                if hello:
                    await stream.send_all(b"".join(hello))
                    reader = Reader()
                    for _ in hello:
                        reply = await self._receive(stream, reader)
                        if isinstance(reply, coredis.exceptions.RedisError):
                            self._refused = True
                            raise Unavailable("refused")
            return stream
        except BaseException as e:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if isinstance(e, (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError)):
                raise Unavailable("cannot connect") from None
            if isinstance(e, coredis.exceptions.RedisError):
                raise Unavailable("cannot log in") from None
            raise

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()

    def close(self) -> None:
        self._close()
