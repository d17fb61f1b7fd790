"""The FastCGI protocol, sans I/O: bytes in, requests out; responses in, bytes out. No I/O.

What ``phpsess fpm`` speaks with nginx (FastCGI 1.0, the responder role).  A
:class:`RequestReader` is fed what the web server sent and hands back each request
once its ``FCGI_STDIN`` stream has ended (:meth:`RequestReader.next_request`);
:func:`response_records` turns a response into the records that answer it.  The
socket loop is :mod:`phpsess.runtime.fcgi_conn`'s.

Limits are the reader's, so a client cannot make a worker buffer without end: params
past ``max_params`` bytes make the request a protocol error (the connection is dropped);
a body past ``max_body`` bytes (PHP's ``post_max_size``) is read and thrown away, and
the request goes on without it (:attr:`FCGIRequest.body_dropped`), as PHP does.
"""

from __future__ import annotations

import struct
from typing import Final, Union

__all__ = [
    "FCGI_BEGIN_REQUEST",
    "FCGI_ABORT_REQUEST",
    "FCGI_END_REQUEST",
    "FCGI_PARAMS",
    "FCGI_STDIN",
    "FCGI_STDOUT",
    "FCGI_STDERR",
    "FCGI_DATA",
    "FCGI_GET_VALUES",
    "FCGI_RESPONDER",
    "FCGI_KEEP_CONN",
    "FCGI_REQUEST_COMPLETE",
    "FCGI_UNKNOWN_ROLE",
    "ProtocolError",
    "FCGIRequest",
    "Aborted",
    "NEED_DATA",
    "RequestReader",
    "records",
    "response_records",
    "decode_params",
]

# record types, roles, flags and protocol statuses (FastCGI 1.0 specification, section 8)
FCGI_BEGIN_REQUEST: Final = 1
FCGI_ABORT_REQUEST: Final = 2
FCGI_END_REQUEST: Final = 3
FCGI_PARAMS: Final = 4
FCGI_STDIN: Final = 5
FCGI_STDOUT: Final = 6
FCGI_STDERR: Final = 7
FCGI_DATA: Final = 8
FCGI_GET_VALUES: Final = 9
FCGI_RESPONDER: Final = 1
FCGI_KEEP_CONN: Final = 1
FCGI_REQUEST_COMPLETE: Final = 0
FCGI_UNKNOWN_ROLE: Final = 3

_HEADER: Final = struct.Struct("!BBHHBx")
_BEGIN: Final = struct.Struct("!HB5x")
_END_BODY: Final = struct.Struct("!LB3x")
_MAX_CONTENT: Final = 65528  # largest multiple of 8 that fits a record's 16-bit length


class ProtocolError(ValueError):
    """Bytes that are not FastCGI the way a web server sends it (the connection is dropped)."""


class FCGIRequest:
    """One request, complete: its id, role, whether the connection stays open, params, body."""

    __slots__ = ("request_id", "role", "keep_conn", "params", "body", "body_length", "body_dropped")

    def __init__(
        self, request_id: int, role: int, keep_conn: bool, params: dict[str, str], body: bytes,
        body_length: int = -1, body_dropped: bool = False,
    ) -> None:
        self.request_id = request_id
        self.role = role
        self.keep_conn = keep_conn
        self.params = params
        self.body = body
        #: the body's size as sent (also when it was dropped)
        self.body_length = len(body) if body_length < 0 else body_length
        #: the body was over the reader's max_body: read, not kept
        self.body_dropped = body_dropped


class Aborted:
    """The web server aborted the request being read (``FCGI_ABORT_REQUEST``)."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: :meth:`RequestReader.next_request`'s answer while a request is still incomplete
NEED_DATA: Final = _NeedData()

Event = Union[FCGIRequest, Aborted, _NeedData]


class RequestReader:
    """FastCGI records in (:meth:`feed`), whole requests out (:meth:`next_request`).

    nginx sends a request's records at once, usually in one read; they are parsed
    straight from one buffer.  ``FCGI_GET_VALUES`` and ``FCGI_DATA`` records are
    ignored (nginx sends neither).

    :param max_params: bound on the bytes of one request's params (0: none); past it,
        :class:`ProtocolError`.
    :param max_body: bound on the bytes of one request's body that are kept (0: none);
        past it the body is dropped (:attr:`FCGIRequest.body_dropped`).
    """

    __slots__ = ("_buf", "_pos", "_rid", "_keep", "_role", "_params", "_body", "_params_size",
                 "_body_size", "max_params", "max_body", "too_large")

    def __init__(self, *, max_params: int = 0, max_body: int = 0) -> None:
        self._buf = b""
        self._pos = 0
        self.max_params = max_params
        self.max_body = max_body
        #: which bound the last refused request passed ("params" or "body"), else ""
        self.too_large = ""
        # the request being read (set again by _start() after each one)
        self._rid = -1
        self._keep = False
        self._role = 0
        self._params: list[bytes] = []
        self._body: list[bytes] = []
        self._params_size = 0
        self._body_size = 0

    def _start(self) -> None:
        self._rid = -1
        self._keep = False
        self._role = 0
        self._params = []
        self._body = []
        self._params_size = 0
        self._body_size = 0

    def feed(self, data: bytes) -> None:
        """Add bytes received from the web server."""
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf = self._buf + data if self._buf else data

    def wanted(self) -> int:
        """How many more bytes complete the record being read (at least 1)."""
        left = len(self._buf) - self._pos
        if left < 8:
            return 8 - left
        _v, _t, _r, clen, plen = _HEADER.unpack_from(self._buf, self._pos)
        return max(1, 8 + int(clen) + int(plen) - left)

    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        return len(self._buf) - self._pos

    def next_request(self) -> Event:
        """The next complete request, :class:`Aborted`, or :data:`NEED_DATA`.

        :raises ProtocolError: a record of another protocol version, a request over a
            bound (:attr:`too_large` says which), or params that do not decode.
        """
        buf = self._buf
        pos = self._pos
        n = len(buf)
        while True:
            if n - pos < 8:
                self._pos = pos
                return NEED_DATA
            header = _HEADER.unpack_from(buf, pos)
            version: int = header[0]
            rtype: int = header[1]
            req_id: int = header[2]
            clen: int = header[3]
            plen: int = header[4]
            if version != 1:
                raise ProtocolError(f"not a FastCGI record (version byte {version})")
            end = pos + 8 + clen + plen
            if n < end:
                self._pos = pos
                return NEED_DATA
            start = pos + 8
            pos = end
            if rtype == FCGI_PARAMS:
                if clen:
                    self._params_size += clen
                    if self.max_params and self._params_size > self.max_params:
                        self.too_large = "params"
                        raise ProtocolError(f"request params over {self.max_params} bytes")
                    self._params.append(buf[start : start + clen])
            elif rtype == FCGI_STDIN:
                if clen:
                    self._body_size += clen
                    if self.max_body and self._body_size > self.max_body:
                        self.too_large = "body"
                        self._body = []  # over post_max_size: counted, not kept
                    else:
                        self._body.append(buf[start : start + clen])
                else:
                    self._pos = pos
                    return self._finish()
            elif rtype == FCGI_BEGIN_REQUEST:
                if clen < 8:
                    raise ProtocolError("FCGI_BEGIN_REQUEST record too short")
                begin = _BEGIN.unpack_from(buf, start)
                role: int = begin[0]
                flags: int = begin[1]
                self._role = role
                self._keep = bool(flags & FCGI_KEEP_CONN)
                self._rid = req_id
            elif rtype == FCGI_ABORT_REQUEST:
                self._pos = pos
                rid = self._rid
                self._start()
                return Aborted(rid)
            # FCGI_GET_VALUES, FCGI_DATA...: ignored

    def _finish(self) -> FCGIRequest:
        params: dict[str, str] = {}
        raw = self._params
        decode_params(raw[0] if len(raw) == 1 else b"".join(raw), params)
        body = self._body
        dropped = bool(self.max_body) and self._body_size > self.max_body
        req = FCGIRequest(
            self._rid, self._role, self._keep, params, body[0] if len(body) == 1 else b"".join(body),
            self._body_size, dropped,
        )
        self._start()
        return req


def records(rtype: int, request_id: int, data: bytes) -> bytes:
    """``data`` as FastCGI records of type ``rtype`` (no end-of-stream record)."""
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


def response_records(request_id: int, stdout: bytes, *, protocol_status: int = FCGI_REQUEST_COMPLETE) -> bytes:
    """The end of a response: ``stdout`` (may be empty), the end of the stdout stream and
    ``FCGI_END_REQUEST`` with ``protocol_status``."""
    out = records(FCGI_STDOUT, request_id, stdout) if stdout else b""
    return (
        out
        + _HEADER.pack(1, FCGI_STDOUT, request_id, 0, 0)
        + _HEADER.pack(1, FCGI_END_REQUEST, request_id, 8, 0)
        + _END_BODY.pack(0, protocol_status)
    )


def decode_params(data: bytes, into: dict[str, str]) -> None:
    """FastCGI name-value pairs into ``into``, decoded as ``os.environ`` is under CGI
    (UTF-8 with surrogateescape, so the original bytes survive).

    :raises ProtocolError: a length or a name or value runs past the end of ``data``.
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
        raise ProtocolError("malformed FastCGI params: a name or value runs past the end of the record")


def _param_length(data: bytes, pos: int) -> tuple[int, int]:
    """A FastCGI name or value length at ``pos`` (one byte, or four with the high bit
    set) and the offset after it.  :raises IndexError: past the end."""
    n = data[pos]
    if n & 0x80:
        if pos + 4 > len(data):
            raise IndexError(pos)
        return int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF, pos + 4
    return n, pos + 1
