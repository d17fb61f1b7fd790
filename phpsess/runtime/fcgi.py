"""The FastCGI protocol side of ``phpsess fpm``: the requests of one web-server
connection, read from the socket, run through :func:`phpsess.runtime.sapi.handle_request`
and answered in FastCGI records.  Socket I/O only; the pool (processes, signals)
is :mod:`phpsess.runtime.fpm`.  The record constants are flup's.
"""

from __future__ import annotations

import _socket
import socket
import struct
import sys
import traceback
from typing import TYPE_CHECKING

from flup.server.fcgi_base import (
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_END_REQUEST,
    FCGI_KEEP_CONN,
    FCGI_PARAMS,
    FCGI_REQUEST_COMPLETE,
    FCGI_RESPONDER,
    FCGI_STDIN,
    FCGI_STDOUT,
    FCGI_UNKNOWN_ROLE,
)

from ..core import telemetry
from .sapi import DEFAULT_CONTENT_TYPE, cgi_head, handle_request

if TYPE_CHECKING:
    from .fpm import FastCGIPool

__all__ = ["fcgi_records", "serve_connection"]

_HEADER = struct.Struct("!BBHHBx")
_END_BODY = struct.Struct("!LB3x")
_MAX_CONTENT = 65528  # largest multiple of 8 that fits a record's 16-bit length
_FLUSH_AT = 65536  # body bytes buffered before they are sent early


def fcgi_records(rtype: int, request_id: int, data: bytes) -> bytes:
    """Encode ``data`` as FastCGI records of type ``rtype`` (no end-of-stream record)."""
    out = []
    view = memoryview(data)
    for i in range(0, len(data), _MAX_CONTENT):
        chunk = view[i : i + _MAX_CONTENT]
        pad = -len(chunk) & 7
        out.append(_HEADER.pack(1, rtype, request_id, len(chunk), pad))
        out.append(bytes(chunk))
        if pad:
            out.append(b"\0" * pad)
    return b"".join(out)


def _decode_params(data: bytes, into: dict[str, str]) -> None:
    """FastCGI name-value pairs into ``into``, decoded as ``os.environ`` is under CGI
    (UTF-8 with surrogateescape, so the original bytes survive).

    :raises ValueError: a length or a name or value runs past the end of ``data``.
    """
    # one latin-1 decode makes string offsets equal byte offsets; only non-ASCII
    # values need the UTF-8 treatment
    text = data.decode("latin-1")
    pos = 0
    n = len(data)
    try:
        if data.isascii():
            # No byte has its high bit set, so every length is in its one-byte form
            # and no text needs UTF-8 decoding: nginx's usual params, in a tight loop.
            while pos < n:
                start = pos + 2 + data[pos]
                end = start + data[pos + 1]
                into[text[pos + 2 : start]] = text[start:end]
                pos = end
        else:
            while pos < n:
                nlen, pos = _param_length(data, pos)
                vlen, pos = _param_length(data, pos)
                name = text[pos : pos + nlen]
                pos += nlen
                value = text[pos : pos + vlen]
                pos += vlen
                if not name.isascii():
                    name = name.encode("latin-1").decode("utf-8", "surrogateescape")
                if not value.isascii():
                    value = value.encode("latin-1").decode("utf-8", "surrogateescape")
                into[name] = value
    except IndexError:
        pos = n + 1  # a length byte past the end
    if pos != n:
        raise ValueError("malformed FastCGI params: a name or value runs past the end of the record")


def _param_length(data: bytes, pos: int) -> tuple[int, int]:
    """A FastCGI name or value length at ``pos`` (one byte, or four with the high bit
    set) and the offset after it.  :raises IndexError: past the end."""
    n = data[pos]
    if n & 0x80:
        if pos + 4 > len(data):
            raise IndexError(pos)
        return int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF, pos + 4
    return n, pos + 1


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
                    self.sock.sendall(fcgi_records(FCGI_STDOUT, self.rid, data))
                except OSError:
                    self.broken = True


_BEGIN = struct.Struct("!HB5x")


def serve_connection(pool: "FastCGIPool", sock: _socket.socket) -> None:
    """Serve the FastCGI requests of one web-server connection, parsing the records
    straight from one receive buffer (nginx sends a whole request at once).

    flup's Connection/Request/InputStream objects cost about 25 µs per request
    (four process_input rounds, a Record object per record); this loop does the
    same protocol work with one buffer and one sendall (docs/deployment.md).
    FCGI_GET_VALUES and FCGI_DATA records are ignored (nginx sends neither).
    """
    buf = b""
    pos = 0
    while True:
        rid = -1
        keep = False
        role = 0
        raw_params: list[bytes] = []
        body: list[bytes] = []
        while True:  # records until the end of stdin
            if len(buf) - pos < 8:
                more = sock.recv(65536)
                if not more:
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            _v, rtype, req_id, clen, plen = _HEADER.unpack_from(buf, pos)
            end = pos + 8 + clen + plen
            if len(buf) < end:
                more = sock.recv(max(65536, end - len(buf)))
                if not more:
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            start = pos + 8
            pos = end
            if rtype == FCGI_PARAMS:
                if clen:
                    raw_params.append(buf[start : start + clen])
            elif rtype == FCGI_STDIN:
                if clen:
                    body.append(buf[start : start + clen])
                else:
                    break
            elif rtype == FCGI_BEGIN_REQUEST:
                role, flags = _BEGIN.unpack_from(buf, start)
                keep = bool(flags & FCGI_KEEP_CONN)
                rid = req_id
            elif rtype == FCGI_ABORT_REQUEST:
                return
            # FCGI_GET_VALUES, FCGI_DATA...: ignored (nginx sends neither)
        resp = _FlatResponse(sock, rid)
        if role != FCGI_RESPONDER:
            end_body = _END_BODY.pack(0, FCGI_UNKNOWN_ROLE)
        else:
            params: dict[str, str] = {}
            _decode_params(raw_params[0] if len(raw_params) == 1 else b"".join(raw_params), params)
            try:
                done = handle_request(
                    params, b"".join(body), pool.root, resp.send_headers, resp.write, process_globals=True
                )
                if done is not None:
                    if pool._stats_words is not None:
                        telemetry.record_words(pool._stats_words, pool._slot, done.lock_wait)
                    elif pool._stats is not None:
                        telemetry.record(pool._stats, pool._slot, done.lock_wait)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                if not resp.started:
                    resp.send_headers(500, [DEFAULT_CONTENT_TYPE])
            end_body = _END_BODY.pack(0, FCGI_REQUEST_COMPLETE)
        data = b"".join(resp.parts)
        out = fcgi_records(FCGI_STDOUT, rid, data) if data else b""
        out += _HEADER.pack(1, FCGI_STDOUT, rid, 0, 0) + _HEADER.pack(1, FCGI_END_REQUEST, rid, 8, 0) + end_body
        if not resp.broken:
            sock.sendall(out)
        if not keep:
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
