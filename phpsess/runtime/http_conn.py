"""One HTTP/1.1 connection of ``phpsess serve``: a request read with h11, strictly and within
bounds, and a response written back, streamed once it outgrows a buffer.  Socket I/O; the
protocol is h11's, what a request does :mod:`phpsess.runtime.server`'s.

h11 is the parser because HTTP framing is where lenient servers go wrong (chunk sizes
such as ``-1``, ``0x3`` or ``+3``, a missing CRLF after chunk data, ``Transfer-Encoding:
chunked, gzip``, two different ``Content-Length`` headers): it refuses all of them.  On
top of it, this module bounds every request in size and in time, as nginx does in front
of php-fpm:

* the head (request line and headers) is at most ``max_head`` bytes, else 431;
* a body over ``max_body`` bytes, or sent in more than ``max_chunks`` chunks, is 413;
  bytes past ``keep_body`` are counted but not kept (PHP's ``post_max_size``);
* the first byte must come within ``idle_timeout`` seconds, the whole request within
  ``read_timeout`` (a client trickling one byte at a time is dropped all the same), and
  the response must be taken within ``write_timeout``;
* obsolete header folding and HTTP versions other than 1.0 and 1.1 are refused (400,
  505), as nginx refuses them.
"""

from __future__ import annotations

import dataclasses
import http
import socket
import _socket
import time
from typing import Sequence

import h11

from ..core.http import reason_phrase

__all__ = ["HTTPError", "HTTPLimits", "HTTPRequest", "ReadTimeout", "read_request", "ResponseWriter", "reason"]


class HTTPError(Exception):
    """A request the server answers itself with ``status``, without running a script."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or reason(status))
        self.status = status


class ReadTimeout(TimeoutError):
    """The client sent nothing, or not a whole request, in time."""


@dataclasses.dataclass
class HTTPLimits:
    """How much and how long one request may take (see the module's text)."""

    max_head: int = 64 * 1024
    max_body: int = 64 * 1024 * 1024
    keep_body: int = 64 * 1024 * 1024
    max_chunks: int = 65536
    idle_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 60.0


@dataclasses.dataclass
class HTTPRequest:
    """A request as read: the head decoded as a CGI script sees it, and the body."""

    method: str
    target: str
    version: str  # "HTTP/1.1"
    headers: list[tuple[str, str]]  # names as sent
    body: bytes
    #: the body's length as sent (more than ``len(body)`` when it was over ``keep_body``)
    body_length: int = 0


def reason(status: int) -> str:
    """The reason phrase of ``status``: PHP's table, then the standard one, else "Unknown"."""
    phrase = reason_phrase(status)
    if not phrase:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
    return phrase


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _head_of(received: bytes) -> bytes:
    """The head part of the first bytes of a request (up to its blank line)."""
    ends = [i for i in (received.find(b"\r\n\r\n"), received.find(b"\n\n")) if i >= 0]
    return received[: min(ends)] if ends else received


def _checked_request(event: h11.Request, received: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    """What h11 accepts and nginx does not: folded header lines, HTTP/2 in an HTTP/1 head."""
    if event.http_version not in (b"1.0", b"1.1"):
        raise HTTPError(505, "unsupported HTTP version")
    head = _head_of(received.lstrip(b"\r\n"))
    if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:  # (find: `in` first tries the needle as an int)
        raise HTTPError(400, "obsolete header folding")
    headers = [(_text(name), _text(value)) for name, value in event.headers.raw_items()]
    return _text(event.method).upper(), _text(event.target), "HTTP/" + event.http_version.decode(), headers


def parse_request_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Split an HTTP/1.x request head (without its blank line) into its parts, as strictly
    as a connection reads it.

    :returns: ``(method, target, version, headers)``; header names as sent, values
        stripped, bytes decoded as UTF-8 with surrogateescape (what a CGI script sees).
    :raises HTTPError: 400 for anything malformed, 505 for a version other than 1.x.
    """
    data = head + b"\r\n\r\n"
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise HTTPError(_status_of(exc, head), str(exc)) from None
    if not isinstance(event, h11.Request):
        raise HTTPError(400, "malformed request line")
    return _checked_request(event, data)


def _status_of(exc: h11.RemoteProtocolError, received: bytes) -> int:
    hint = int(getattr(exc, "error_status_hint", 400))
    if hint == 400:
        line = received.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
        if len(line) == 3 and line[2].startswith(b"HTTP/") and not line[2].startswith(b"HTTP/1."):
            return 505
    return hint


def _recv(sock: _socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ReadTimeout("no complete request in time")
    sock.settimeout(left)
    try:
        return sock.recv(65536)
    except socket.timeout:
        raise ReadTimeout("no complete request in time") from None


def read_request(sock: _socket.socket, conn: h11.Connection, limits: HTTPLimits) -> HTTPRequest | None:
    """Read one request from ``sock`` through ``conn``; None when the client closed (or
    stayed silent past ``idle_timeout``) before sending anything.

    :raises HTTPError: a malformed or oversized request (answer it with its status).
    :raises ReadTimeout: the request did not arrive whole within ``read_timeout``.
    """
    deadline = time.monotonic() + limits.idle_timeout
    received = b""
    begun = False
    request: tuple[str, str, str, list[tuple[str, str]]] | None = None
    parts: list[bytes] = []
    kept = length = chunks = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HTTPError(_status_of(exc, received), str(exc)) from None
        if event is h11.NEED_DATA:
            try:
                data = _recv(sock, deadline)
            except ReadTimeout:
                if not begun:
                    return None
                raise
            if not begun and data:
                begun = True
                deadline = time.monotonic() + limits.read_timeout
            if request is None:
                received = (received + data)[: limits.max_head + 4]
                if len(received) > limits.max_head and _head_of(received) == received:
                    raise HTTPError(431, "request header too large")
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            if len(_head_of(received.lstrip(b"\r\n"))) > limits.max_head:
                raise HTTPError(431, "request header too large")
            request = _checked_request(event, received)
            announced = next((v for n, v in event.headers if n == b"content-length"), None)
            if announced is not None and int(announced) > limits.max_body:
                raise HTTPError(413, "request body too large")
            if conn.they_are_waiting_for_100_continue:
                _send_all(sock, conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")) or b"",
                          time.monotonic() + limits.write_timeout)
        elif isinstance(event, h11.Data):
            length += len(event.data)
            chunks += 1
            if length > limits.max_body:
                raise HTTPError(413, "request body too large")
            if chunks > limits.max_chunks:
                raise HTTPError(413, "request body sent in too many chunks")
            if kept < limits.keep_body:
                piece = event.data[: limits.keep_body - kept]
                parts.append(piece)
                kept += len(piece)
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            method, target, version, headers = request
            return HTTPRequest(method, target, version, headers, b"".join(parts), length)
        elif isinstance(event, h11.ConnectionClosed):
            if request is None and not received.strip():
                return None
            raise HTTPError(400, "the client closed the connection in the middle of its request")


def _send_all(sock: _socket.socket, data: bytes, deadline: float) -> None:
    """All of ``data``, or :class:`TimeoutError` once ``deadline`` passes."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client did not take the response in time")
        sock.settimeout(left)
        sent = sock.send(view[: 1 << 20])
        view = view[sent:]


#: response headers the server sets itself
_SERVER_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "date", "server"})


class ResponseWriter:
    """A response written through h11: buffered up to ``buffer`` bytes (then sent with a
    ``Content-Length``), streamed past it (chunked for HTTP/1.1, until the close for 1.0).

    The status and headers come once (:meth:`send_headers`), before the body
    (:meth:`write`); :meth:`finish` ends the response.  A client that does not take it
    within ``write_timeout`` seconds (overall) is dropped: :attr:`broken`.
    """

    def __init__(self, sock: _socket.socket, conn: h11.Connection, *, head_only: bool, server: str,
                 date: str, write_timeout: float, buffer: int = 65536,
                 extra_headers: Sequence[tuple[str, str]] = ()) -> None:
        self.sock = sock
        self.conn = conn
        self.head_only = head_only
        self.server = server
        self.date = date
        self.deadline = time.monotonic() + write_timeout
        self.buffer = buffer
        self.extra = list(extra_headers)
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.parts: list[bytes] = []
        self.size = 0
        self.sent_head = False
        self.started = False
        self.broken = False
        self.body_bytes = 0

    def send_headers(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The response's status and headers (sent with the first body bytes past the buffer)."""
        self.started = True
        self.status = status
        self.headers = [*headers, *self.extra]

    def write(self, data: bytes) -> None:
        """Body bytes."""
        if not data:
            return
        self.body_bytes += len(data)
        if self.head_only:
            self.size += len(data)
            return
        self.parts.append(data)
        self.size += len(data)
        if self.size >= self.buffer:
            if not self.sent_head:
                self._head(None)
            self._flush()

    def finish(self) -> None:
        """End the response: head (with ``Content-Length`` when nothing was streamed), the
        rest of the body, the end of the message."""
        if not self.sent_head:
            self._head(self.size)
        if not self.head_only:
            self._flush()
        self._out(self.conn.send(h11.EndOfMessage()))

    def _head(self, length: int | None) -> None:
        self.sent_head = True
        headers: list[tuple[bytes, bytes]] = [(b"Date", self.date.encode()), (b"Server", self.server.encode())]
        for name, value in self.headers:
            if name.lower() in _SERVER_HEADERS:
                continue
            headers.append((name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape")))
        if length is not None:
            headers.append((b"Content-Length", str(length).encode()))
        headers.append((b"Connection", b"close"))
        status = self.status if 200 <= self.status <= 999 else 500
        try:
            event = h11.Response(status_code=status, headers=headers, reason=reason(status).encode())
        except h11.LocalProtocolError:
            # a header h11 refuses (a control character in it): never sent as it is
            clean = [(n, v) for n, v in headers if _valid_header(n, v)]
            event = h11.Response(status_code=status, headers=clean, reason=reason(status).encode())
        self._out(self.conn.send(event))

    def _flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts = []
            self.size = 0
            self._out(self.conn.send(h11.Data(data=data)))

    def _out(self, data: bytes | None) -> None:
        if data and not self.broken:
            try:
                _send_all(self.sock, data, self.deadline)
            except OSError:
                self.broken = True


def _valid_header(name: bytes, value: bytes) -> bool:
    try:
        h11.Response(status_code=200, headers=[(name, value)])
    except h11.LocalProtocolError:
        return False
    return True
