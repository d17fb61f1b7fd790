"""phpsess.runtime.fcgi's record helpers: FastCGI name-value pairs and records, without a server."""

from __future__ import annotations

import pytest

from phpsess.runtime.fcgi import _decode_params, fcgi_records


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


def pairs(*items: tuple[bytes, bytes]) -> bytes:
    """Encode name-value pairs as a web server does."""
    return b"".join(_length(len(k)) + _length(len(v)) + k + v for k, v in items)


def decode(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    _decode_params(data, out)
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
    rec = fcgi_records(6, 1, b"abc")
    assert rec == b"\x01\x06\x00\x01\x00\x03\x05\x00abc" + b"\0" * 5
    big = fcgi_records(6, 1, b"y" * 70000)
    assert big[4:6] == (65528).to_bytes(2, "big")  # the first record is full
    assert len(big) == 8 + 65528 + 8 + (70000 - 65528) + (-(70000 - 65528) & 7)
