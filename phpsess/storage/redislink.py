"""The Redis handlers' request path: one persistent connection per server, thread and
process, that sends a batch of commands in one write and reads their replies (RESP2).
Network I/O.

redis-py connects (TCP, unix socket or TLS), authenticates and selects the database;
after that, a session request's few commands (``SET NX PX`` + ``GET``, one script) go
through :meth:`Link.call`, without redis-py's client, pool and pipeline layers, which
cost more than the round trip itself on loopback (docs/performance.md, "redis cycle").

Replies are decoded as redis-py's RESP2 parser decodes them with ``decode_responses``
off (bulk strings as bytes, integers as int, arrays as lists, nil as None), except that
a status reply stays bytes (``b"OK"``); an error reply is returned, not raised, as the
exception redis-py would raise for it (``NoScriptError``, ``MovedError``, ...), so a
batch's caller sees every command's outcome.  A broken connection, a timeout or a reply
that does not parse closes the link and raises redis-py's ``ConnectionError`` /
``TimeoutError``; the next call connects again.

Scripts are sent as ``EVALSHA`` (their text once per server, when it answers NOSCRIPT).
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import threading
from typing import Any, Callable, Sequence

from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Link", "Links", "Script"]


class Script:
    """A Lua script and its SHA1, for ``EVALSHA``."""

    __slots__ = ("text", "sha")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command that runs this script on ``keys`` with ``args`` (for :meth:`Link.call`)."""
        return (self, len(keys), *keys, *args)


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, Script):
        return value.sha.encode("ascii")
    return str(value).encode("utf-8")


def _pack(commands: Sequence[Sequence[Any]], scripts: bool) -> bytes:
    """RESP arrays of bulk strings; a :class:`Script` in first place becomes ``EVALSHA sha``
    (``EVAL text`` when ``scripts``)."""
    out: list[bytes] = []
    for cmd in commands:
        first = cmd[0]
        if type(first) is Script:
            out.append(b"*%d\r\n" % (len(cmd) + 1))
            head = first.text.encode("utf-8") if scripts else first.sha.encode("ascii")
            out.append(b"$4\r\nEVAL\r\n" if scripts else b"$7\r\nEVALSHA\r\n")
            out.append(b"$%d\r\n%s\r\n" % (len(head), head))
            rest = cmd[1:]
        else:
            out.append(b"*%d\r\n" % len(cmd))
            rest = cmd
        for value in rest:
            kind = type(value)
            if kind is str:
                data = value.encode("utf-8", "surrogateescape")
            elif kind is bytes:
                data = value
            else:
                data = _arg(value)
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Link:
    """One connection, used by one thread: :meth:`call` sends a batch and reads its replies."""

    __slots__ = ("conn", "sock", "buf", "pos", "where", "pid", "tls")

    def __init__(self, conn: Any, where: str) -> None:
        """``conn``: an unconnected redis-py ``Connection`` (it does the connect and the
        handshake); ``where``: the server's address, for messages.

        :raises redis.exceptions.RedisError: the server cannot be reached or refuses the login.
        """
        conn.connect()
        self.conn = conn
        self.sock: socket.socket | None = conn._sock
        self.buf = b""
        self.pos = 0
        self.where = where
        self.pid = os.getpid()
        self.tls = isinstance(self.sock, ssl.SSLSocket)

    def alive(self) -> bool:
        """False when the connection is closed, or the server closed it (or sent something
        nobody asked for) since its last use: a server restart must not cost a request."""
        sock = self.sock
        if sock is None or self.pid != os.getpid():
            return False
        if self.tls or self.pos < len(self.buf):
            return self.pos >= len(self.buf)
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        """Close the connection (in a forked child, only the child's copy of it)."""
        self.sock = None
        self.buf = b""
        self.pos = 0
        try:
            self.conn.disconnect()
        except Exception:  # pragma: no cover - closing a broken connection
            pass

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write, read one reply per command.

        A command whose first item is a :class:`Script` runs it (``EVALSHA``); when the
        server does not know a script, the whole batch is sent again with the scripts'
        text: a batch holding a script must be safe to repeat.
        :returns: the replies; an error reply as the redis-py exception it stands for.
        :raises redis.exceptions.ConnectionError: the connection broke (it is closed).
        :raises redis.exceptions.TimeoutError: no reply within the read timeout (closed).
        """
        replies = self._exchange(_pack(commands, False), len(commands))
        for reply in replies:
            if isinstance(reply, NoScriptError):
                return self._exchange(_pack(commands, True), len(commands))
        return replies

    def _exchange(self, data: bytes, count: int) -> list[Any]:
        sock = self.sock
        if sock is None:
            raise RedisConnectionError(f"Connection to {self.where} is closed.")
        try:
            sock.sendall(data)
            return [self._reply() for _ in range(count)]
        except socket.timeout:
            self.close()
            raise RedisTimeoutError(f"Timeout reading from {self.where}")
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"Error while talking to {self.where}: {exc}")
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RedisConnectionError(f"Connection closed by server {self.where}.")
        if self.pos >= len(self.buf):
            self.buf = chunk
        else:
            self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos:end]
                self.pos = end + 2
                return line
            self._fill()

    def _reply(self) -> Any:
        line = self._line()
        kind = line[:1]
        if kind == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            data = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return data
        if kind == b":":
            return int(line[1:])
        if kind == b"+":
            return line[1:]
        if kind == b"*":
            n = int(line[1:])
            return None if n < 0 else [self._reply() for _ in range(n)]
        if kind == b"-":
            return BaseParser.parse_error(line[1:].decode("utf-8", "replace"))  # type: ignore[no-untyped-call]
        raise InvalidResponse(f"Protocol error from {self.where}: {line[:40]!r}")


class Links:
    """The links to one server: one per thread (and per process, after a fork)."""

    def __init__(self, make: Callable[[], Any], where: str) -> None:
        """``make``: builds an unconnected redis-py ``Connection`` to the server."""
        self._make = make
        self._where = where
        self._local = threading.local()

    def get(self) -> Link:
        """This thread's link, connected (again) if it is new, broken, or the parent's.

        :raises redis.exceptions.RedisError: the server cannot be reached.
        """
        link: Link | None = getattr(self._local, "link", None)
        if link is not None:
            if link.alive():
                return link
            link.close()
        self._local.link = None
        link = self._local.link = Link(self._make(), self._where)
        return link
