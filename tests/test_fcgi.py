"""phpsess.runtime.fcgi (the protocol, sans I/O): FastCGI name-value pairs and records, without a server."""

from __future__ import annotations

import pytest

from phpsess.runtime.fcgi import decode_params, records


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


def pairs(*items: tuple[bytes, bytes]) -> bytes:
    """Encode name-value pairs as a web server does."""
    return b"".join(_length(len(k)) + _length(len(v)) + k + v for k, v in items)


def decode(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    decode_params(data, out)
    return out


def test_ascii_params() -> None:
    data = pairs((b"REQUEST_METHOD", b"GET"), (b"QUERY_STRING", b""), (b"HTTP_HOST", b"127.0.0.1:8080"))
    assert decode(data) == {"REQUEST_METHOD": "GET", "QUERY_STRING": "", "HTTP_HOST": "127.0.0.1:8080"}
    assert decode(b"") == {}


def test_long_names_and_values_use_four_byte_lengths() -> None:
    value = b"x" * 300
    data = pairs((b"HTTP_COOKIE", value), (b"N" * 200, b"v"))
    assert decode(data) == {"HTTP_COOKIE": "x" * 300, "N" * 200: "v"}


def test_non_ascii_is_utf8_and_invalid_bytes_survive_as_surrogates() -> None:
    data = pairs((b"QUERY_STRING", "é=ü".encode()), (b"HTTP_X", b"\xff\xfe"))
    got = decode(data)
    assert got["QUERY_STRING"] == "é=ü"
    assert got["HTTP_X"].encode("utf-8", "surrogateescape") == b"\xff\xfe"


@pytest.mark.parametrize(
    "data",
    [
        pairs((b"A", b"bc"))[:-1],  # the value is cut short
        b"\x05",  # a length without the other one
        pairs((b"A", b"b")) + b"\x01\x05Ab",  # the second pair is cut short
        pairs((b"A", "é".encode()))[:-1],  # the same, on the non-ASCII path
        b"\x80\x00\x01",  # a four-byte length cut short
    ],
)
def test_truncated_params_are_an_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed FastCGI params"):
        decode(data)


def test_records_split_long_data_and_pad_to_eight_bytes() -> None:
    rec = records(6, 1, b"abc")
    assert rec == b"\x01\x06\x00\x01\x00\x03\x05\x00abc" + b"\0" * 5
    big = records(6, 1, b"y" * 70000)
    assert big[4:6] == (65528).to_bytes(2, "big")  # the first record is full
    assert len(big) == 8 + 65528 + 8 + (70000 - 65528) + (-(70000 - 65528) & 7)


# -- RequestReader: records in, requests out ---------------------------------------------------
import struct  # noqa: E402

from phpsess.runtime.fcgi import (  # noqa: E402
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_KEEP_CONN,
    FCGI_PARAMS,
    FCGI_RESPONDER,
    FCGI_STDIN,
    NEED_DATA,
    Aborted,
    FCGIRequest,
    ProtocolError,
    RequestReader,
    response_records,
)


def request_bytes(rid: int = 1, params: bytes = b"", body: bytes = b"", keep: bool = False) -> bytes:
    begin = struct.pack("!HB5x", FCGI_RESPONDER, FCGI_KEEP_CONN if keep else 0)
    out = records(FCGI_BEGIN_REQUEST, rid, begin)
    out += records(FCGI_PARAMS, rid, params) + records(FCGI_PARAMS, rid, b"")[:0]
    out += struct.pack("!BBHHBx", 1, FCGI_PARAMS, rid, 0, 0)
    out += records(FCGI_STDIN, rid, body) + struct.pack("!BBHHBx", 1, FCGI_STDIN, rid, 0, 0)
    return out


def test_reader_gives_a_request_fed_byte_by_byte() -> None:
    data = request_bytes(7, pairs((b"A", b"1"), (b"B", b"two")), b"x=1", keep=True)
    rd = RequestReader()
    events = []
    for i in range(len(data)):
        rd.feed(data[i : i + 1])
        ev = rd.next_request()
        if ev is not NEED_DATA:
            events.append(ev)
    [req] = events
    assert isinstance(req, FCGIRequest)
    assert (req.request_id, req.role, req.keep_conn, req.params, req.body) == (
        7, FCGI_RESPONDER, True, {"A": "1", "B": "two"}, b"x=1")
    assert rd.next_request() is NEED_DATA and rd.buffered() == 0


def test_reader_gives_two_requests_of_one_read_in_order() -> None:
    rd = RequestReader()
    rd.feed(request_bytes(1, body=b"a", keep=True) + request_bytes(2, body=b"b"))
    first, second = rd.next_request(), rd.next_request()
    assert isinstance(first, FCGIRequest) and isinstance(second, FCGIRequest)
    assert (first.request_id, first.body, second.request_id, second.body) == (1, b"a", 2, b"b")


def test_reader_reports_an_abort() -> None:
    rd = RequestReader()
    rd.feed(records(FCGI_BEGIN_REQUEST, 3, struct.pack("!HB5x", 1, 0)) + struct.pack("!BBHHBx", 1, FCGI_ABORT_REQUEST, 3, 0, 0))
    ev = rd.next_request()
    assert isinstance(ev, Aborted) and ev.request_id == 3


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 8])
def test_reader_refuses_what_is_not_fastcgi(junk: bytes) -> None:
    rd = RequestReader()
    rd.feed(junk)
    with pytest.raises(ProtocolError, match="not a FastCGI record"):
        rd.next_request()


def test_reader_bounds_params_and_drops_a_body_over_its_bound() -> None:
    rd = RequestReader(max_params=10)
    rd.feed(request_bytes(params=pairs((b"NAME", b"x" * 20))))
    with pytest.raises(ProtocolError, match="params over 10 bytes"):
        rd.next_request()
    assert rd.too_large == "params"
    rd = RequestReader(max_body=4)
    rd.feed(request_bytes(body=b"12345") + request_bytes(rid=2, body=b"1234"))
    over, within = rd.next_request(), rd.next_request()
    assert isinstance(over, FCGIRequest) and isinstance(within, FCGIRequest)
    assert (over.body, over.body_length, over.body_dropped) == (b"", 5, True)  # as post_max_size
    assert (within.body, within.body_length, within.body_dropped) == (b"1234", 4, False)
    assert rd.too_large == "body"


def test_response_records_end_the_request() -> None:
    out = response_records(5, b"Status: 200 OK\r\n\r\nhi")
    assert out.endswith(struct.pack("!BBHHBx", 1, 3, 5, 8, 0) + struct.pack("!LB3x", 0, 0))
    assert struct.pack("!BBHHBx", 1, 6, 5, 0, 0) in out
