"""One web-server connection of ``phpsess fpm``: FastCGI requests read from the socket, run
through :func:`phpsess.runtime.sapi.handle_request` and answered.  Socket I/O; the protocol is
:mod:`phpsess.runtime.fcgi`'s, the pool (processes, signals) :mod:`phpsess.runtime.fpm`'s.
"""

from __future__ import annotations

import _socket
import socket
import sys
import traceback
from typing import Callable

from ..session.request import Request
from .fcgi import FCGI_RESPONDER, FCGI_STDOUT, FCGI_UNKNOWN_ROLE, NEED_DATA, FCGIRequest, RequestReader, records, response_records
from .sapi import DEFAULT_CONTENT_TYPE, cgi_head, handle_request

__all__ = ["serve_connection"]

_FLUSH_AT = 65536  # body bytes buffered before they are sent early


class _FlatResponse:
    """The response of one request, buffered and sent in FastCGI records."""

    __slots__ = ("sock", "rid", "parts", "size", "broken", "started")

    def __init__(self, sock: _socket.socket, rid: int) -> None:
        self.sock = sock
        self.rid = rid
        self.parts: list[bytes] = []
        self.size = 0
        self.broken = False
        self.started = False

    def send_headers(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self.write(cgi_head(status, headers))

    def write(self, data: bytes) -> None:
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


def serve_connection(
    sock: _socket.socket,
    root: str,
    on_done: Callable[[Request], None] | None = None,
    reader: RequestReader | None = None,
) -> None:
    """Serve the FastCGI requests of one web-server connection until it closes.

    flup's Connection/Request/InputStream objects cost about 25 µs per request
    (four process_input rounds, a Record object per record); this loop does the
    same protocol work with one buffer and one ``sendall`` (docs/deployment.md).

    :param root: the document root scripts must be under.
    :param on_done: called with each finished request (the pool's telemetry).
    :param reader: the protocol state, with its limits (default: unbounded).
    :raises ProtocolError: the peer does not speak FastCGI (the caller drops it).
    """
    rd = reader if reader is not None else RequestReader()
    first = sock.recv(65536)  # nginx sends a whole request at once: usually all of it
    if not first:
        return
    rd.feed(first)
    while True:
        event = rd.next_request()
        while event is NEED_DATA:
            more = sock.recv(max(65536, rd.wanted()))
            if not more:
                return
            rd.feed(more)
            event = rd.next_request()
        if not isinstance(event, FCGIRequest):
            return  # FCGI_ABORT_REQUEST: nothing is answered
        rid = event.request_id
        resp = _FlatResponse(sock, rid)
        if event.role != FCGI_RESPONDER:
            out = response_records(rid, b"", protocol_status=FCGI_UNKNOWN_ROLE)
        else:
            try:
                done = handle_request(
                    event.params, event.body, root, resp.send_headers, resp.write, process_globals=True
                )
                if done is not None and on_done is not None:
                    on_done(done)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                if not resp.started:
                    resp.send_headers(500, [DEFAULT_CONTENT_TYPE])
            out = response_records(rid, b"".join(resp.parts))
        if not resp.broken:
            sock.sendall(out)
        if not event.keep_conn:
            # The caller closes at once, without waiting for the web server to close
            # first: that wait cost every request a wake-up and kept the worker from
            # its next accept (php-fpm's single recv returns at once too, on the empty
            # stdin record it left unread).  Bytes still queued here would turn a TCP
            # close into a reset that can destroy the response in flight, so they
            # are read first, without blocking.
            try:
                while sock.recv(65536, socket.MSG_DONTWAIT):
                    pass
            except OSError:
                pass
            return
