"""phpsess.core.formats: the php, php_binary and php_serialize session formats.

Expected bytes are PHP 8.2's session_encode() output; ACCEPTANCE is re-checked against
real PHP's session_decode() in tests/oracle/test_codec_oracle.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phpsess.core import codec
from phpsess.core.codec import PHPObject, PHPReference
from phpsess.core.formats import HANDLERS, decode, encode, split_php
from phpsess.errors import SessionDecodeError, SessionEncodeError

__all__ = ["SESSIONS", "ACCEPTANCE", "SPEC_PHP"]


def spec_session() -> dict[str, Any]:
    """Reference numbering across keys: $o shared, &$arr twice, [&$x, &$x] and &$x."""
    o = PHPObject("stdClass", {"p": 1})
    arr = PHPReference([1, 2])
    x = PHPReference(5)
    return {"a": o, "b": o, "c": arr, "d": arr, "e": [x, x], "f": x}


SPEC_PHP = b'a|O:8:"stdClass":1:{s:1:"p";i:1;}b|r:1;c|a:2:{i:0;i:1;i:1;i:2;}d|R:4;e|a:2:{i:0;i:5;i:1;R:8;}f|R:8;'

# (data, handler, payload as PHP 8.2's session_encode() writes it)
SESSIONS: list[tuple[dict[Any, Any], str, bytes]] = [
    ({"a": 1, "s": "x|y", "f": 0.1}, "php", b'a|i:1;s|s:3:"x|y";f|d:0.1;'),
    ({"ok": 1, "": "empty"}, "php_binary", b'\x02oki:1;\x00s:5:"empty";'),
    ({"a": 1, "s": "x|y", "f": 0.1}, "php_serialize", b'a:3:{s:1:"a";i:1;s:1:"s";s:3:"x|y";s:1:"f";d:0.1;}'),
    ({"a": 1, 5: "x"}, "php_serialize", b'a:2:{s:1:"a";i:1;i:5;s:1:"x";}'),
    ({"!a": 1, "": 2, "é": [], "n;l\n": None}, "php", b'!a|i:1;|i:2;\xc3\xa9|a:0:{}n;l\n|N;'),
    ({"x|y": 3}, "php_binary", b"\x03x|yi:3;"),
    (spec_session(), "php", SPEC_PHP),
    (spec_session(), "php_binary", b'\x01aO:8:"stdClass":1:{s:1:"p";i:1;}\x01br:1;\x01ca:2:{i:0;i:1;i:1;i:2;}'
     b"\x01dR:4;\x01ea:2:{i:0;i:5;i:1;R:8;}\x01fR:8;"),
    (spec_session(), "php_serialize",
     b'a:6:{s:1:"a";O:8:"stdClass":1:{s:1:"p";i:1;}s:1:"b";r:2;s:1:"c";a:2:{i:0;i:1;i:1;i:2;}s:1:"d";R:5;'
     b's:1:"e";a:2:{i:0;i:5;i:1;R:9;}s:1:"f";R:9;}'),
]

# (handler, payload, PHP's session_decode() accepts it)  -- observed on PHP 8.2.36
ACCEPTANCE: list[tuple[str, bytes, bool]] = [
    ("php", b"", True),
    ("php", b"!a|i:1;", True),  # "!" means nothing in 8.2
    ("php", b"|i:2;", True),
    ("php", b"a|i:1;a|i:2;", True),
    ("php", b'a|s:3:"x|y";', True),
    ("php", b"a|i:1;b|R:1;", True),
    ("php", b"a|a:1:{i:0;i:1;}b|R:2;", True),
    ("php", b'a|O:8:"stdClass":0:{}b|r:1;', True),
    ("php", b"a|a:1:{i:0;R:1;}", True),
    ("php", b"a|i:1;a|i:2;b|R:1;", True),
    ("php", SPEC_PHP, True),
    ("php", b"a|i:1;!b|", False),
    ("php", b"!a|", False),
    ("php", b"a|i:1;b", False),  # a trailing name without "|"
    ("php", b"a|i:1;\n", False),
    ("php", b"a|i:1;xyz|", False),
    ("php", b"a|i:1;b|r:1;", False),
    ("php", b"a|i:1;b|R:2;", False),
    ("php", b"a:1:{s:1:\"a\";i:1;}", False),
    ("php", b"x", False),
    ("php", b"a|", False),
    ("php", b"a|i:1", False),
    ("php_binary", b"", True),
    ("php_binary", b"\x01ai:1;", True),
    ("php_binary", b"\x81ai:1;", True),  # the 0x80 bit is ignored
    ("php_binary", b"\x00i:1;", True),
    ("php_binary", b"\x02aai:1;\x01bR:1;", True),
    ("php_binary", b"\x01ai:1;\x05abcdei:2;", True),
    ("php_binary", b"\x00N;", True),
    ("php_binary", b"\x01a", False),
    ("php_binary", b"\x01ai:1;\x02b", False),
    ("php_binary", b"\x01ai:1;\x00", False),
    ("php_binary", b"\x00\x00", False),
    ("php_binary", b"a|i:1;", False),
    ("php_binary", b"\x7f", False),
    ("php_serialize", b"", True),
    ("php_serialize", b'a:1:{s:1:"a";i:1;}', True),
    ("php_serialize", b'a:1:{s:1:"a";i:1;}xyz', True),  # bytes after the value are ignored
    ("php_serialize", b"i:5;", True),
    ("php_serialize", b"N;", True),
    ("php_serialize", b"b:0;", True),
    ("php_serialize", b"a:2:{i:0;i:5;i:1;R:2;}", True),
    ("php_serialize", b'a:1:{s:1:"a";i:1;', False),
    ("php_serialize", b"a|i:1;", False),
    ("php_serialize", b"xyz", False),
    ("igbinary", b"", True),
    ("igbinary", b"\x00\x00\x00\x02\x14\x00", True),
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x06\x01", True),
    ("igbinary", b"\x00\x00\x00\x01\x14\x01\x11\x01a\x06\x01", True),  # format version 1
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x06\x01trailing", True),  # ignored
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x06\x05\x06\x01", True),  # int keys are skipped
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x00", True),  # an entry without a value
    ("igbinary", b"\x00\x00\x00\x02\x17\x08stdClass\x14\x01\x11\x01p\x06\x01", True),  # an object
    ("igbinary", b"\x00\x00\x00\x02\x14\x02\x11\x01a\x25\x06\x05\x11\x01b\x25\x01\x01", True),
    ("igbinary", b"\x00\x00\x00\x02\x14\x02\x11\x01a\x14\x00\x11\x01b\x01\x01", True),
    ("igbinary", b"\x00\x00\x00\x02", False),  # no value
    ("igbinary", b"\x00\x00\x00\x02\x06\x01", False),  # not an array
    ("igbinary", b"\x00\x00\x00\x02\x11\x01a", False),
    ("igbinary", b"\x00\x00\x00\x03\x14\x00", False),  # unknown version
    ("igbinary", b"a:1:{s:1:\"a\";i:1;}", False),
    ("igbinary", b"\x00\x00\x00\x02\x14\x02\x11\x01a\x06\x01", False),  # truncated
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x0e\x05", False),  # no string 5 yet
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x01\x07", False),  # no array 7 yet
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x28", False),  # unknown type
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x0c\x06\x01", False),  # a double as a key
    ("igbinary", b"\x00\x00\x00\x02\x14\x05\x11\x01a\x06\x01", False),  # 5 entries in 4 bytes
    ("igbinary", b"\x00\x00\x00\x02\x14\x01\x11\x01a\x17\x01X\x28", False),
]


@pytest.mark.parametrize(("data", "handler", "payload"), SESSIONS)
def test_encode_writes_what_php_writes(data: dict[Any, Any], handler: str, payload: bytes) -> None:
    assert encode(data, handler) == payload


@pytest.mark.parametrize(("data", "handler", "payload"), SESSIONS)
def test_decode_then_encode_is_byte_exact(data: dict[Any, Any], handler: str, payload: bytes) -> None:
    back = decode(payload, handler)
    assert back == data
    assert encode(back, handler) == payload


@pytest.mark.parametrize(("handler", "payload", "ok"), ACCEPTANCE)
def test_decode_accepts_and_refuses_like_php(handler: str, payload: bytes, ok: bool) -> None:
    if ok:
        decode(payload, handler)
    else:
        with pytest.raises(SessionDecodeError):
            decode(payload, handler)


def test_cross_key_references_are_shared() -> None:
    data = decode(SPEC_PHP, "php")
    assert data["a"] is data["b"]
    assert data["c"] is data["d"]
    assert data["e"][0] is data["e"][1] is data["f"]
    data["f"].value = 6
    assert encode(data, "php") == SPEC_PHP.replace(b"i:5;", b"i:6;")


def test_reference_to_a_value_overwritten_by_a_duplicate_key() -> None:
    # PHP: R:1 points at the first "a" value, which no longer is in $_SESSION
    data = decode(b"a|i:1;a|i:2;b|R:1;", "php")
    assert data == {"a": 2, "b": PHPReference(1)}
    assert encode(data, "php") == b"a|i:2;b|i:1;"  # what PHP writes back too
    data = decode(b"a|i:1;a|i:2;b|R:2;", "php")
    assert data["a"] is data["b"]
    assert encode(data, "php") == b"a|i:2;b|R:1;"


def test_duplicate_names_keep_the_first_position() -> None:
    assert list(decode(b"a|i:1;b|i:2;a|i:3;", "php").items()) == [("a", 3), ("b", 2)]


def test_php_decode_keeps_numeric_names_as_strings() -> None:
    # PHP keeps them as string keys after session_decode() and writes them back
    data = decode(b"12|i:1;a|i:2;-5|i:3;05|i:4;", "php")
    assert data == {"12": 1, "a": 2, "-5": 3, "05": 4}
    assert encode(data, "php") == b"12|i:1;a|i:2;-5|i:3;05|i:4;"


# ------------------------------------------------------------------ PHP's "nothing" and skips


@pytest.mark.parametrize("handler", ["php", "php_binary"])
def test_empty_session_encodes_to_nothing(handler: str) -> None:
    assert encode({}, handler) is None


def test_empty_php_serialize_session_is_an_empty_array() -> None:
    assert encode({}, "php_serialize") == b"a:0:{}"


@pytest.mark.parametrize("handler", ["php", "php_binary"])
def test_integer_keys_are_skipped_and_reported(handler: str) -> None:
    skipped: list[int] = []
    data = {"a": 1, 7: 2, 8: 3, "b": 4}
    out = encode(data, handler, on_skip=skipped.append)
    assert skipped == [7, 8]
    assert out == (b"a|i:1;b|i:4;" if handler == "php" else b"\x01ai:1;\x01bi:4;")
    assert encode({7: 1}, handler, on_skip=skipped.append) is None


def test_pipe_in_a_key_makes_php_write_nothing() -> None:
    skipped: list[int] = []
    assert encode({"a": 1, 7: 0, "x|y": 2, 8: 0}, "php", on_skip=skipped.append) is None
    assert skipped == [7]  # PHP stops at the bad key: 8 is never warned about


def test_numeric_string_keys_with_canonicalize_keys() -> None:
    skipped: list[int] = []
    data = {"12": 1, "a": 2, "05": 3}
    assert encode(data, "php") == b"12|i:1;a|i:2;05|i:3;"
    assert encode(data, "php", canonicalize_keys=True, on_skip=skipped.append) == b"a|i:2;05|i:3;"
    assert skipped == [12]
    assert encode({b"7": 1}, "php_binary", canonicalize_keys=True, on_skip=skipped.append) is None
    assert skipped == [12, 7]
    assert encode(data, "php_serialize") == b'a:3:{i:12;i:1;s:1:"a";i:2;s:2:"05";i:3;}'


def test_php_binary_drops_keys_longer_than_127_bytes() -> None:
    data = {"k" * 127: 1, "k" * 128: 2, "é" * 64: 3, "é" * 63: 4}
    out = encode(data, "php_binary")
    assert out == b"\x7f" + b"k" * 127 + b"i:1;" + b"\x7e" + "é".encode() * 63 + b"i:4;"


def test_bytes_keys_and_values() -> None:
    data = {b"\xffkey": b"\xfe", "plain": b"ascii"}
    assert encode(data, "php") == b'\xffkey|s:1:"\xfe";plain|s:5:"ascii";'
    assert decode(b'\xffkey|s:1:"\xfe";plain|s:5:"ascii";', "php") == {b"\xffkey": b"\xfe", "plain": "ascii"}
    assert encode(data, "php_binary") == b'\x04\xffkeys:1:"\xfe";\x05plains:5:"ascii";'


@pytest.mark.parametrize("key", [None, 1.5, ("a",)])
def test_unsupported_session_keys(key: Any) -> None:
    with pytest.raises(SessionEncodeError):
        encode({key: 1}, "php")


def test_values_must_be_serializable() -> None:
    with pytest.raises(SessionEncodeError):
        encode({"a": {1, 2}}, "php")


# ------------------------------------------------------------------------ php_serialize


@pytest.mark.parametrize(
    ("payload", "result"),
    [
        (b"", {}),
        (b"N;", {}),
        (b"a:0:{}", {}),
        (b"a:2:{i:0;s:1:\"x\";i:1;s:1:\"y\";}", {0: "x", 1: "y"}),  # a list-shaped array is still a dict
        (b'a:1:{s:1:"a";i:1;}xyz', {"a": 1}),
        (b"i:5;", 5),  # not an array: the caller decides (PHP makes it $_SESSION)
        (b"b:0;", False),
        (b's:1:"x";', "x"),
    ],
)
def test_php_serialize_decoding(payload: bytes, result: Any) -> None:
    assert decode(payload, "php_serialize") == result


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("handler", "payload", "offset"),
    [
        ("php", b"a|i:1;b", 6),
        ("php", b"a|i:1;b|s:5:\"x\";", 8),
        ("php_binary", b"\x01ai:1;\x05ab", 6),
        ("php_binary", b"\x01ab:3;", 2),
        ("php_serialize", b"a:1:{i:0;i:1;", 13),
    ],
)
def test_decode_errors_have_offsets(handler: str, payload: bytes, offset: int) -> None:
    with pytest.raises(SessionDecodeError) as info:
        decode(payload, handler)
    assert info.value.offset == offset


def test_unknown_handler() -> None:
    with pytest.raises(ValueError, match="serialize_handler"):
        encode({}, "wddx")
    with pytest.raises(ValueError, match="serialize_handler"):
        decode(b"", "json")
    assert HANDLERS == ("php", "php_serialize", "php_binary", "igbinary")


def test_split_php_finds_value_boundaries() -> None:
    payload = b'a|i:1;b|a:1:{s:1:"x";s:3:"a;b";}c|N;'
    parts = split_php(payload)
    assert parts == [("a", 2, 6), ("b", 8, 32), ("c", 34, 36)]
    assert [codec.loads(payload[s:e]) for _, s, e in parts] == [1, {"x": "a;b"}, None]
    assert split_php(SPEC_PHP) is None
    with pytest.raises(SessionDecodeError):
        split_php(b"a|i:1;b")


# ------------------------------------------------------------------------ property tests

names = st.one_of(st.text(max_size=10).filter(lambda s: "|" not in s), st.binary(max_size=6).filter(lambda b: b"|" not in b))
session_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(codec.PHP_INT_MIN, codec.PHP_INT_MAX),
              st.floats(allow_nan=False), st.text(max_size=10), st.binary(max_size=10)),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=5), c, max_size=4),
                        st.builds(PHPObject, st.just("stdClass"), st.dictionaries(st.text(max_size=4), c, max_size=3))),
    max_leaves=15,
)
sessions = st.dictionaries(names, session_values, max_size=6)


try:
    from tests.test_codec import canonical
except ImportError:  # pragma: no cover
    from test_codec import canonical  # type: ignore[no-redef]


@given(sessions, st.sampled_from(HANDLERS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_session_round_trip_property(data: dict[Any, Any], handler: str) -> None:
    payload = encode(data, handler)
    if handler == "igbinary":  # numeric keys are written as ints, and ints are skipped when read
        data = {k: v for k, v in data.items() if not isinstance(codec.php_array_key(k), int)}
        if not data:
            assert decode(payload or b"", handler) == {}
            return
    elif handler != "php_serialize":
        data = {k: v for k, v in data.items() if len(k.encode() if isinstance(k, str) else k) <= 127
                or handler == "php"}
    if payload is None:
        assert not data
        return
    back = decode(payload, handler)
    expected = {canonical(k) if handler not in ("php_serialize", "igbinary")
                else codec.php_array_key(canonical(k)): canonical(v) for k, v in data.items()}
    assert back == expected
    assert encode(back, handler) == encode(expected, handler)


@st.composite
def mutated_sessions(draw: Any) -> tuple[str, bytes]:
    handler = draw(st.sampled_from(HANDLERS))
    payload = bytearray(encode(draw(sessions), handler) or b"")
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(payload)))
        b = draw(st.sampled_from(b';:{}"|0123456789siadbNOrR\x00\x01\xff'))
        op = draw(st.integers(0, 2))
        if op == 0 and i < len(payload):
            payload[i] = b
        elif op == 1:
            payload.insert(i, b)
        elif i < len(payload):
            del payload[i]
    return handler, bytes(payload)


def result_of(handler: str, payload: bytes) -> Any:
    try:
        return ("ok", encode(decode(payload, handler) or {}, handler) if handler != "php_serialize"
                else codec.dumps(decode(payload, handler)))
    except SessionDecodeError as exc:
        return ("error", exc.offset)


@given(mutated_sessions())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_session_decoders_raise_only_decode_errors_and_both_paths_agree(case: tuple[str, bytes]) -> None:
    handler, payload = case
    fast = result_of(handler, payload)
    codec.FAST_PATH = False
    try:
        exact = result_of(handler, payload)
    finally:
        codec.FAST_PATH = True
    assert fast == exact
