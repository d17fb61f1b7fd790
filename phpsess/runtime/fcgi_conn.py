"""One web-server connection of ``phpsess fpm``: FastCGI requests read from the socket,
answered by a responder, sent back.  Socket I/O; the protocol is
:mod:`phpsess.runtime.fcgi`'s, what a request does :mod:`phpsess.runtime.fpm`'s.

Reading is bounded in time as well as in size: a connection that sends nothing (or
not FastCGI) for ``idle_timeout`` seconds before a request starts is dropped, and a
request must arrive whole within ``read_timeout`` seconds, so a silent client never
pins a worker.
"""

from __future__ import annotations

import _socket
import select
import socket
import sys
import time
import traceback
from typing import Callable, Final

from ..compiled import mypyc_attr
from .fcgi import FCGI_RESPONDER, FCGI_STDOUT, FCGI_UNKNOWN_ROLE, NEED_DATA, FCGIRequest, RequestReader, records, response_records
from .sapi import DEFAULT_CONTENT_TYPE, cgi_head

__all__ = ["serve_connection", "Responder", "FlatResponse", "ReadTimeout"]

_FLUSH_AT: Final = 65536  # body bytes buffered before they are sent early

# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_monotonic: Final = time.monotonic
_DONTWAIT: Final = socket.MSG_DONTWAIT


@mypyc_attr(native_class=False)  # mypyc cannot compile a subclass of a builtin exception
class ReadTimeout(TimeoutError):
    """The client sent nothing (or not a whole request) in time; the connection is dropped."""


class FlatResponse:
    """The response of one request, buffered and sent in FastCGI records."""

    __slots__ = ("sock", "rid", "parts", "size", "broken", "started", "status", "headers")

    def __init__(self, sock: _socket.socket, rid: int) -> None:
        self.sock = sock
        self.rid = rid
        self.parts: list[bytes] = []
        self.size = 0
        self.broken = False
        self.started = False
        self.status = 200
        self.headers: list[tuple[str, str]] = []

    def send_headers(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The CGI head (``Status:`` and the header lines) as the first stdout bytes."""
        self.started = True
        self.status = status
        self.headers = headers
        self.write(cgi_head(status, headers))

    def write(self, data: bytes) -> None:
        """Body bytes; sent in records once 64 KiB are buffered."""
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _FLUSH_AT:
            data = b"".join(self.parts)
            self.parts = []
            self.size = 0
            if not self.broken:
                try:
                    self.sock.sendall(records(FCGI_STDOUT, self.rid, data))
                except OSError:
                    self.broken = True


#: what answers a request: (request, response) -> None; it calls response.send_headers
#: once, then response.write
Responder = Callable[[FCGIRequest, FlatResponse], None]


def _recv(sock: _socket.socket, size: int, deadline: float) -> bytes:
    """Up to ``size`` bytes, waiting until ``deadline`` at most.  The socket stays blocking:
    a receive that would block returns at once (nginx has usually sent the whole request
    by the time it is accepted), then ``poll`` waits with the time left -- no timeout set
    and reset on the socket, which cost two system calls per request."""
    while True:
        try:
            return sock.recv(size, _DONTWAIT)
        except BlockingIOError:
            pass
        left = deadline - _monotonic()
        if left <= 0:
            break
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        if not poller.poll(left * 1000.0 + 1.0):
            break
    raise ReadTimeout("no complete request in time")


def _bound(seconds: float) -> float:
    return seconds if seconds > 0 else 1e9  # (0: no bound)


def serve_connection(
    sock: _socket.socket,
    respond: Responder,
    reader: RequestReader | None = None,
    *,
    idle_timeout: float = 0.0,
    read_timeout: float = 0.0,
    stop: list[bool] | None = None,
) -> None:
    """Serve the FastCGI requests of one web-server connection until it closes.

    flup's Connection/Request/InputStream objects cost about 25 µs per request
    (four process_input rounds, a Record object per record); this loop does the
    same protocol work with one buffer and one ``sendall`` (docs/deployment.md).

    :param respond: answers each request (:class:`FlatResponse`).
    :param reader: the protocol state, with its limits (default: unbounded).
    :param idle_timeout: seconds to wait for the first bytes of a request (0: no bound).
    :param read_timeout: seconds for a whole request to arrive once begun (0: no bound).
    :param stop: ``[True]`` once the worker must stop: a kept-alive connection is closed
        after the request in hand.
    :raises ProtocolError: the peer does not speak FastCGI (the caller drops it).
    :raises ReadTimeout: the peer was silent past a bound (the caller drops it).
    """
    rd = reader if reader is not None else RequestReader()
    timed = idle_timeout > 0 or read_timeout > 0
    while True:
        event = rd.next_request() if rd.buffered() else NEED_DATA
        if event is NEED_DATA:
            if timed:
                # the first bytes within idle_timeout, then the whole request within read_timeout
                begun = rd.buffered() > 0
                deadline = _monotonic() + _bound(read_timeout if begun else idle_timeout)
                while event is NEED_DATA:
                    more = _recv(sock, max(65536, rd.wanted()), deadline)
                    if not more:
                        return
                    if not begun:
                        begun = True
                        deadline = _monotonic() + _bound(read_timeout)
                    rd.feed(more)
                    event = rd.next_request()
            else:
                while event is NEED_DATA:
                    # nginx sends a whole request at once: usually one recv reads all of it
                    more = sock.recv(max(65536, rd.wanted()))
                    if not more:
                        return
                    rd.feed(more)
                    event = rd.next_request()
        if not isinstance(event, FCGIRequest):
            return  # FCGI_ABORT_REQUEST: nothing is answered
        rid = event.request_id
        resp = FlatResponse(sock, rid)
        if event.role != FCGI_RESPONDER:
            out = response_records(rid, b"", protocol_status=FCGI_UNKNOWN_ROLE)
        else:
            try:
                respond(event, resp)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                if not resp.started:
                    resp.send_headers(500, [DEFAULT_CONTENT_TYPE])
            out = response_records(rid, b"".join(resp.parts))
        if not resp.broken:
            sock.sendall(out)
        if not event.keep_conn or (stop is not None and stop[0]):
            # The caller closes at once, without waiting for the web server to close
            # first: that wait cost every request a wake-up and kept the worker from
            # its next accept (php-fpm's single recv returns at once too, on the empty
            # stdin record it left unread).  Bytes still queued here would turn a TCP
            # close into a reset that can destroy the response in flight, so they
            # are read first, without blocking.
            try:
                while sock.recv(65536, _DONTWAIT):
                    pass
            except OSError:
                pass
            return
