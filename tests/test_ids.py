"""Session ids: PHP's bit packing (session.c: bin_to_readable), alphabet, and the validity checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phpsess.core.config import SessionConfig
from phpsess.core.ids import (
    ALPHABET,
    MAX_SID_LENGTH,
    bin_to_readable,
    create_id,
    has_forbidden_chars,
    is_valid_id,
    is_valid_prefix,
)


def reference_packing(data: bytes, length: int, bits: int) -> str:
    """bin_to_readable restated: character i is bits [i*b, i*b+b) of the bytes read little-endian."""
    stream = int.from_bytes(data, "little")
    return "".join(ALPHABET[(stream >> (i * bits)) & ((1 << bits) - 1)] for i in range(length))


@pytest.mark.parametrize(("data", "length", "bits", "expected"), [
    # 4 bits: low nibble first
    (b"\xab\xcd", 4, 4, "badc"),
    (b"\x00\xff", 4, 4, "00ff"),
    (b"\x01\x23\x45", 6, 4, "103254"),
    # 5 bits: 0xff 0x00 -> bits 11111111 00000000 -> 31, 7 (3 bits + 2 zero bits), 0
    (b"\xff\x00", 3, 5, "v70"),
    (b"\x21\x84", 3, 5, "111"),  # 00001 00001 00001 packed LSB first
    # 6 bits: 0xff 0xff 0xff -> four times 63 ('-')
    (b"\xff\xff\xff", 4, 6, "----"),
    (b"\x3e\x00\x00", 4, 6, ",000"),  # 62 -> ','
    (b"\x00\xf0\xff", 4, 6, "00--"),  # stream 0xfff000: bits 0..11 are zero,
    # bits 12..17 and 18..23 all ones
])
def test_bin_to_readable_known_bytes(data: bytes, length: int, bits: int, expected: str) -> None:
    assert reference_packing(data, length, bits) == expected
    assert bin_to_readable(data, length, bits) == expected


@given(st.binary(min_size=256, max_size=256), st.integers(1, 256), st.sampled_from([4, 5, 6]))
def test_bin_to_readable_is_a_little_endian_bit_stream(data: bytes, length: int, bits: int) -> None:
    assert bin_to_readable(data, length, bits) == reference_packing(data, length, bits)


def test_bin_to_readable_needs_enough_bytes() -> None:
    with pytest.raises(IndexError):
        bin_to_readable(b"\x00", 3, 6)


@pytest.mark.parametrize(("bits", "chars"), [
    (4, "0123456789abcdef"), (5, "0123456789abcdefghijklmnopqrstuv"),
    (6, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-"),
])
def test_alphabet_prefixes(bits: int, chars: str) -> None:
    assert ALPHABET[: 1 << bits] == chars


@pytest.mark.parametrize(("length", "bits"), [(32, 4), (26, 5), (22, 6), (256, 6), (256, 4)])
def test_create_id_reads_sid_length_bytes(length: int, bits: int) -> None:
    cfg = SessionConfig({"sid_length": str(length), "sid_bits_per_character": str(bits)})
    asked: list[int] = []

    def fake_random(n: int) -> bytes:
        asked.append(n)
        return bytes((i * 37 + 11) % 256 for i in range(n))

    sid = create_id(cfg, fake_random)
    assert asked == [length]
    assert len(sid) == length and set(sid) <= set(ALPHABET[: 1 << bits])
    assert sid == bin_to_readable(fake_random(length), length, bits)
    assert is_valid_id(sid)


def test_create_id_default_randomness() -> None:
    a, b = create_id(SessionConfig()), create_id(SessionConfig())
    assert a != b and len(a) == 32 and set(a) <= set("0123456789abcdef")


@pytest.mark.parametrize(("sid", "valid"), [
    ("a", True), ("abcDEF019,-", True), ("x" * MAX_SID_LENGTH, True), ("x" * 257, False), ("", False),
    ("a b", False), ("a_b", False), ("a.b", False), ("a/b", False), ("\u00e9", False), ("a\n", False),
    ("a\0b", False), ("\uff10", False),
])
def test_is_valid_id(sid: str, valid: bool) -> None:
    assert is_valid_id(sid) is valid


@pytest.mark.parametrize(("sid", "forbidden"), [
    ("abc", False), ("a_b.c", False), ("a b", True), ("a\tb", True), ("a\rb", True), ("a\nb", True),
    ("<x", True), ("x>", True), ("'", True), ('"', True), ("\\", True), ("a\0<", False), ("", False),
])
def test_has_forbidden_chars(sid: str, forbidden: bool) -> None:
    assert has_forbidden_chars(sid) is forbidden


@pytest.mark.parametrize(("prefix", "valid"), [
    ("", True), ("abc", True), ("a,b-C9", True), ("a b", False), ("a_b", False), ("x" * 256, True),
    ("x" * 257, False),
])
def test_is_valid_prefix(prefix: str, valid: bool) -> None:
    assert is_valid_prefix(prefix) is valid
