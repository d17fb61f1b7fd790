"""The codec's compiled path (phpsess/core/fastcodec.py) against the Python codec.

In the compiled build the module runs compiled; in the plain build these tests run it
interpreted (codec.NATIVE_PATH forced on), so the same logic is checked both ways: it
decodes what the exact parser decodes (or gives up, and the Python codec decides), and
writes what the Python encoder writes, byte for byte.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phpsess.core import codec, fastcodec, formats
from phpsess.core.codec import PHPCustomObject, PHPEnum, PHPObject, PHPReference, RefContext
from phpsess.core.phparray import PHPArray
from phpsess.core.zend import float_to_string
from phpsess.errors import SessionDecodeError, SessionEncodeError

try:
    from tests.test_codec import exact_loads, mutated, nested, outcome, values
    from tests.test_formats import mutated_sessions, sessions
except ImportError:  # pragma: no cover
    from test_codec import exact_loads, mutated, nested, outcome, values  # type: ignore[no-redef]
    from test_formats import mutated_sessions, sessions  # type: ignore[no-redef]


@contextmanager
def native(on: bool = True) -> Iterator[None]:
    """codec.NATIVE_PATH set to ``on`` (and FAST_PATH on) for the block."""
    saved = codec.NATIVE_PATH, codec.FAST_PATH
    codec.NATIVE_PATH, codec.FAST_PATH = on, True
    try:
        yield
    finally:
        codec.NATIVE_PATH, codec.FAST_PATH = saved


def native_loads(data: bytes) -> Any:
    """fastcodec's value for ``data``, or "gave up"."""
    text = data.decode("latin-1")
    got = fastcodec.decode_value(text + ";", len(text), codec.MAX_DEPTH)
    if got is None or got[1] != len(text):
        return "gave up"
    return got[0]


def python_dumps(value: Any, precision: int = -1) -> bytes:
    out: list[str] = []
    codec.dump_pairs(out, iter((("", value),)), RefContext(), precision)
    return "".join(out).encode("utf-8", "surrogateescape")


def native_dumps(value: Any, precision: int = -1) -> bytes | None:
    text = fastcodec.dump_pairs([("", value)], precision)
    return None if text is None else text.encode("utf-8", "surrogateescape")


# A session like bench/codec.py's (user, cart, history), as PHP writes it
def shop_session() -> dict[str, Any]:
    return {
        "user": {"id": 48213, "name": "Zoë Martín", "roles": ["customer", "beta"],
                 "prefs": {"lang": "fr_FR", "newsletter": True, "theme": None}, "last_login": 1718031234.25},
        "csrf": "a" * 32,
        "cart": [{"sku": f"SKU-{i:05d}", "name": f"Article n°{i}", "price": (i * 7919 % 99899 + 100) / 100,
                  "qty": i % 5 + 1, "opts": {"size": "SML"[i % 3], "gift": i % 7 == 0}} for i in range(60)],
        "history": [[f"/products/{i * 37}?ref=home", 1718030000 + i * 37] for i in range(25)],
        "flash": [],
        "visits": 17,
        "bin": b"\xff\xfe",
        "keys": {"5": "five", "-3": "minus three", "05": "kept", "": "empty", 999999999999999999: "18 digits"},
    }


def test_the_compiled_path_runs_in_the_compiled_build() -> None:
    if os.environ.get("PHPSESS_EXPECT_COMPILED") == "1":
        assert codec.NATIVE_PATH
        assert not fastcodec.__file__.endswith(".py")


def test_a_typical_session_goes_through_the_compiled_path_and_round_trips() -> None:
    data = shop_session()
    with native(False):
        payload = formats.encode(data, "php")
        assert payload is not None
        expected = formats.decode(payload, "php")
    text = payload.decode("latin-1")
    got = fastcodec.decode_php(text + ";", len(text), codec.MAX_DEPTH)
    assert got is not None  # it did not give up
    assert got == expected
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]
    assert fastcodec.dump_pairs([(k + "|", v) for k, v in got.items()], -1) is not None
    with native(False):
        serialized = formats.encode(expected, "php_serialize")
    with native():
        assert formats.decode(payload, "php") == expected
        assert formats.encode(expected, "php") == payload
        assert formats.encode(codec.to_php_arrays(dict(expected), keep_top=True), "php") == payload
        assert formats.encode(expected, "php_serialize") == serialized
        assert formats.decode(serialized, "php_serialize") == expected
        assert codec.loads(codec.dumps(expected)) == expected


@given(mutated())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_path_and_exact_parser_agree(data: bytes) -> None:
    got = native_loads(data)
    exact = outcome(exact_loads, data)
    if got != "gave up":
        assert exact[0] == "ok"
        assert python_dumps(got) == python_dumps(exact[1])
        assert got == exact[1]
    with native():
        through = outcome(codec.loads, data)
    assert through[0] == exact[0]
    if exact[0] == "ok":
        assert python_dumps(through[1]) == python_dumps(exact[1])
    else:
        assert through == exact


@given(mutated_sessions())
@example(("igbinary", b"\x00\x00\x00\x02\x14\x04\r\x17\x08stdClass\x14\x00\x06\x00\x14\x00\x11\x01\x00\x14\x02\r\x00"
                      b"\x06\x00\x14\x02\x06\x00\x00\x06\x01\n\x00\x01\x00\x00\r\x14\x04\x06\x01\x00\x11\x0200\x00\r\x0c"
                      b"\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x14\x01\x06\x14\x01\x06\x00\x00"))  # decodes to an array holding itself
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_session_decoders_agree_with_the_exact_parser_through_the_compiled_path(case: tuple[str, bytes]) -> None:
    handler, payload = case

    def result() -> Any:
        try:
            decoded = formats.decode(payload, handler)
            if handler == "php_serialize":
                return "ok", codec.dumps(decoded)
            return "ok", formats.encode(decoded or {}, handler)
        except SessionDecodeError as exc:
            return "error", exc.offset
        except SessionEncodeError as exc:
            # a mutated payload may decode to what no serializer writes back (an array
            # holding itself, from a reference igbinary allows): both paths must say so
            return "encode error", str(exc)

    with native():
        got = result()
    codec.FAST_PATH = False
    try:
        exact = result()
    finally:
        codec.FAST_PATH = True
    assert got == exact


@given(values, st.sampled_from([-1, 17, 5]))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_encoder_writes_what_the_python_encoder_writes(v: Any, precision: int) -> None:
    try:
        expected: bytes | None = python_dumps(v, precision)
    except SessionEncodeError:
        expected = None
    got = native_dumps(v, precision)
    if got is not None:  # (None: it gave up, the Python encoder writes it)
        assert got == expected
    with native():
        try:
            assert codec.dumps(v, precision=precision) == expected
        except SessionEncodeError:
            assert expected is None


@given(sessions)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_session_encoder_writes_what_the_python_encoder_writes(data: dict[Any, Any]) -> None:
    for handler in ("php", "php_binary", "php_serialize"):
        with native(False):
            expected = formats.encode(data, handler)
        with native():
            assert formats.encode(data, handler) == expected


@given(st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))
@settings(max_examples=500)
def test_floats_decode_exactly_as_float_does(body: str) -> None:
    got = native_loads(f"d:{body};".encode())
    expected = float(body)
    assert got != "gave up"
    assert math.copysign(1.0, got) == math.copysign(1.0, expected)
    assert got == expected or (math.isinf(got) and got == expected)


@given(st.floats(allow_nan=False))
@settings(max_examples=300)
def test_floats_php_writes_decode_to_themselves(f: float) -> None:
    text = float_to_string(f, -1)
    got = native_loads(f"d:{text};".encode())
    if got == "gave up":
        assert text in ("INF", "-INF")
        return
    assert got == f and math.copysign(1.0, got) == math.copysign(1.0, f)
    assert native_dumps(got) == f"d:{text};".encode()


def test_what_the_compiled_path_leaves_to_the_python_codec() -> None:
    for wire in (b'O:8:"stdClass":0:{}', b"a:2:{i:0;i:1;i:1;R:2;}", b'E:6:"Suit:H";', b'S:1:"\\41";',
                 b"i:+1;", b"i:1234567890123456789;", b"d:.5;", b"d:NAN;", b"d:INF;", b"b:2;", b"x",
                 b"i:1", b's:3:"ab";', nested(fastcodec.DEPTH + 1)):
        assert native_loads(wire) == "gave up", wire
        got, exact = outcome(codec.loads, wire), outcome(exact_loads, wire)
        assert got[0] == exact[0]
        # (the deep one is compared as bytes: == of 1,025 nested lists passes Python's recursion limit)
        assert python_dumps(got[1]) == python_dumps(exact[1]) if got[0] == "ok" else got == exact
    for value in (PHPObject("C", {}), PHPReference(1), PHPEnum("S", "H"), PHPCustomObject("C", b""), (1, 2),
                  "\ud800", 2**63, {True: 1}, {1.0: 1}, bytearray(b"x")):
        assert native_dumps([value]) is None, value
    deep: list[Any] = []
    cur = deep
    for _ in range(fastcodec.DEPTH + 1):
        cur.append([])
        cur = cur[0]
    assert native_dumps(deep) is None
    with native():
        assert codec.dumps(deep) == python_dumps(deep)
        assert python_dumps(codec.loads(nested(200))) == python_dumps(exact_loads(nested(200)))
        assert python_dumps(codec.loads(nested(2000))) == python_dumps(exact_loads(nested(2000)))
        with pytest.raises(SessionEncodeError):
            codec.dumps(["\ud800"])
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        with pytest.raises(SessionEncodeError):
            codec.dumps(cyclic)


def test_strings_from_the_table_are_the_right_ones() -> None:
    # many short strings, most of them sharing a slot of the table with others
    words = [f"k{i}" for i in range(5000)] + ["", "a", "b", "ab", "ba", "é", "\x00"]
    wire = codec.dumps({w: w[::-1] for w in words} | {"list": words})
    for _ in range(2):
        got = native_loads(wire)
        assert got == exact_loads(wire)
    assert len(fastcodec._INTERN) == fastcodec._INTERN_MASK + 1  # a fixed-size table


def test_non_utf8_and_mixed_strings() -> None:
    wire = b'a:4:{i:0;s:2:"\xc3\xa9";i:1;s:1:"\xff";i:2;s:3:"a\xffb";i:3;s:2:"ab";}'
    assert native_loads(wire) == ["é", b"\xff", b"a\xffb", "ab"] == exact_loads(wire)
    assert native_dumps(["é", b"\xff", b"a\xffb", "ab"]) == wire


def test_arrays_keep_the_exact_parsers_shapes() -> None:
    for wire in (b"a:2:{i:1;i:1;i:0;i:0;}", b"a:2:{i:0;i:1;i:0;i:2;}", b'a:2:{s:1:"0";N;s:1:"1";N;}',
                 b"a:1:{i:00;N;}", b"a:1:{i:-0;N;}", b'a:2:{i:0;N;s:1:"x";N;}', b'a:1:{s:2:"05";N;}',
                 b'a:1:{s:20:"99999999999999999999";N;}', b'a:1:{s:19:"9223372036854775807";N;}',
                 b'a:1:{s:20:"-9223372036854775808";N;}', b'a:1:{s:20:"-9223372036854775809";N;}',
                 b"a:0:{}", b"a:1:{i:0;a:0:{}}"):
        assert native_loads(wire) != "gave up", wire
        assert native_loads(wire) == exact_loads(wire), wire
        assert python_dumps(native_loads(wire)) == python_dumps(exact_loads(wire))


def test_php_arrays_are_written_like_their_tables() -> None:
    a = PHPArray({"x": 1, 5: [1, 2], "y": PHPArray(["p", "q"])})
    assert native_dumps(a) == python_dumps(a) == b'a:3:{s:1:"x";i:1;i:5;a:2:{i:0;i:1;i:1;i:2;}s:1:"y";a:2:{i:0;s:1:"p";i:1;s:1:"q";}}'


def test_the_encoder_caches_are_bounded_and_emptied_with_the_others() -> None:
    many = fastcodec._FLOATS_MAX + 100
    for _ in range(2):
        fastcodec.dump_pairs([("", [i / 7 for i in range(1, many)] + [f"v{i}" for i in range(many)]
                                + [{f"k{i}": i} for i in range(many)])], -1)
        assert len(fastcodec._FLOATS) <= fastcodec._FLOATS_MAX
        assert len(fastcodec._STR_PIECES) <= fastcodec._FLOATS_MAX
        assert len(fastcodec._KEY_PIECES) <= fastcodec._FLOATS_MAX
    fastcodec.dump_pairs([("", {"x" * 65: "y" * 65, "5": "5"})], -1)
    assert "x" * 65 not in fastcodec._KEY_PIECES and "y" * 65 not in fastcodec._STR_PIECES  # long ones are not kept
    assert fastcodec._KEY_PIECES["5"] == "i:5;" and fastcodec._STR_PIECES["5"] == 's:1:"5";'
    assert native_dumps({"5": "5", "é": "é"}) == 'a:2:{i:5;s:1:"5";s:2:"é";s:2:"é";}'.encode()
    assert native_dumps({"5": "5", "é": "é"}) == python_dumps({"5": "5", "é": "é"})
    fastcodec.dump_pairs([("", 0.5)], -1)
    assert 0.0 not in fastcodec._FLOATS
    codec.clear_caches()
    assert not fastcodec._FLOATS and not fastcodec._STR_PIECES and not fastcodec._KEY_PIECES
    assert fastcodec._INTERN == [""] * len(fastcodec._INTERN)
    # -0.0 and 0.0 are equal keys with different pieces: never cached
    assert native_dumps([0.0, -0.0, 0.0, -0.0]) == b"a:4:{i:0;d:0;i:1;d:-0;i:2;d:0;i:3;d:-0;}"


def shape(v: Any) -> Any:
    """``v`` with each PHPArray as ("PHPArray", next free key, its entries): what == of
    PHPArray leaves out."""
    if type(v) is PHPArray:
        return ("PHPArray", v.next_index, [(k, shape(x)) for k, x in v.items()])
    if type(v) is dict:
        return ("dict", [(k, shape(x)) for k, x in v.items()])
    if type(v) is list:
        return ("list", [shape(x) for x in v])
    return (type(v).__name__, v)


@given(mutated_sessions())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_php_arrays_decode_as_to_php_arrays_makes_them(case: tuple[str, bytes]) -> None:
    handler, payload = case
    try:
        with native(False):
            expected = shape(codec.to_php_arrays(formats.decode(payload, handler), keep_top=True))
    except SessionDecodeError as exc:
        with native(), pytest.raises(SessionDecodeError) as got:
            formats.decode(payload, handler, php_arrays=True)
        assert got.value.offset == exc.offset
        return
    with native():
        assert shape(formats.decode(payload, handler, php_arrays=True)) == expected
    with native(False):
        assert shape(formats.decode(payload, handler, php_arrays=True)) == expected


def test_php_arrays_of_a_typical_session() -> None:
    with native(False):
        payload = formats.encode(shop_session(), "php")
        assert payload is not None
        expected = codec.to_php_arrays(formats.decode(payload, "php"), keep_top=True)
    text = payload.decode("latin-1")
    got = fastcodec.decode_php(text + ";", len(text), codec.MAX_DEPTH, True)
    assert got is not None and type(got) is dict
    assert shape(got) == shape(expected)
    for wire in (b"x|a:2:{i:0;i:1;i:0;i:2;}", b"x|a:2:{i:1;i:1;i:0;i:0;}", b'x|a:1:{s:1:"a";N;}', b"x|a:0:{}",
                 b"x|a:1:{i:5;a:1:{i:0;N;}}", b"x|a:2:{i:-3;N;i:0;N;}"):
        with native(False):
            expected = codec.to_php_arrays(formats.decode(wire, "php"), keep_top=True)
        with native():
            got = formats.decode(wire, "php", php_arrays=True)
        assert shape(got) == shape(expected), wire
        got["x"].append("new")
        expected["x"].append("new")
        assert shape(got) == shape(expected), wire


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.decimals(min_value=-10**15, max_value=10**15, places=4, allow_nan=False).map(float),
                 st.integers(-10**16, 10**16).map(lambda i: i / 100),
                 st.integers(1, 10**15).map(lambda i: i / 10**15)))
@settings(max_examples=1000)
def test_decimal_floats_are_written_as_repr_writes_them(f: float) -> None:
    got = fastcodec._decimal(f)
    if got:
        assert got == float_to_string(f, -1)
        assert float(got) == f
    assert native_dumps(f) == python_dumps(f)


def test_decimal_floats_at_the_edges() -> None:
    for f in (0.1, 0.5, 1.0, 17.0, 506.67, -506.67, 1e-4, 0.00012, 1e15 - 1, 999999999999999.9, 123456789012345.6,
              0.1 + 0.2, 1 / 3, 2.5e-5, 1e15, 1e16, 5e-324, 1.7976931348623157e308, 0.30000000000000004):
        got = fastcodec._decimal(f)
        if got:
            assert got == float_to_string(f, -1), f
        assert native_dumps(f) == python_dumps(f), f
    assert fastcodec._decimal(506.67) == "506.67"
    assert fastcodec._decimal(-0.05) == "-0.05"
    assert fastcodec._decimal(17.0) == "17"
    assert fastcodec._decimal(0.1 + 0.2) == ""  # 17 digits: repr's
