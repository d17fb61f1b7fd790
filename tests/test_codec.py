"""phpsess.core.codec: PHP serialize()/unserialize() of one value, byte for byte as PHP 8.2.

Every expected byte string below is what PHP 8.2 prints; tests/oracle/test_codec_oracle.py
re-checks the tables against real PHP (PHP_EXPRESSIONS, CASES, LOADS_ONLY, BAD).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phpsess.core import codec
from phpsess.core.zend import float_to_string
from phpsess.core.codec import (
    PHP_INT_MAX,
    PHP_INT_MIN,
    PHPCustomObject,
    PHPEnum,
    PHPObject,
    PHPReference,
    RefContext,
    dumps,
    loads,
    loads_prefix,
    php_array_key,
)
from phpsess.errors import SessionDecodeError, SessionEncodeError

__all__ = ["PHP_EXPRESSIONS", "CASES", "LOADS_ONLY", "BAD", "TRAILING", "canonical"]

P = PHPObject("P", {"a": 1, "\0*\0b": 2, "\0P\0c": 3, "n": None})

# (PHP expression, serialize() output); the oracle test evaluates the expressions
# (classes P, M, Ser and enums Suit, U are defined there as their names suggest).
PHP_EXPRESSIONS: list[tuple[str, bytes]] = [
    ("null", b"N;"),
    ("true", b"b:1;"),
    ("false", b"b:0;"),
    ("0", b"i:0;"),
    ("-1", b"i:-1;"),
    ("PHP_INT_MAX", b"i:9223372036854775807;"),
    ("PHP_INT_MIN", b"i:-9223372036854775808;"),
    ("0.0", b"d:0;"),
    ("-0.0", b"d:-0;"),
    ("0.1", b"d:0.1;"),
    ("1.0", b"d:1;"),
    ("-1.5", b"d:-1.5;"),
    ("100.0", b"d:100;"),
    ("0.0001", b"d:0.0001;"),
    ("1e-5", b"d:1.0E-5;"),
    ("1e15", b"d:1000000000000000;"),
    ("1e16", b"d:10000000000000000;"),
    ("9.9e16", b"d:99000000000000000;"),
    ("1e17", b"d:1.0E+17;"),
    ("1e25", b"d:1.0E+25;"),
    ("1.5e-7", b"d:1.5E-7;"),
    ("0.1 + 0.2", b"d:0.30000000000000004;"),
    ("5e-324", b"d:5.0E-324;"),
    ("PHP_FLOAT_MAX", b"d:1.7976931348623157E+308;"),
    ("INF", b"d:INF;"),
    ("-INF", b"d:-INF;"),
    ("NAN", b"d:NAN;"),
    ('""', b's:0:"";'),
    ('"h\\u{e9}"', b's:3:"h\xc3\xa9";'),
    ('"\\xff\\xfe"', b's:2:"\xff\xfe";'),
    ('"a\\0b"', b's:3:"a\x00b";'),
    ("'a\";b|c}'", b's:7:"a";b|c}";'),
    ("[]", b"a:0:{}"),
    ("[1, 2]", b"a:2:{i:0;i:1;i:1;i:2;}"),
    ('["x" => true, 0 => null]', b'a:2:{s:1:"x";b:1;i:0;N;}'),
    ('[1 => "a", 0 => "b"]', b'a:2:{i:1;s:1:"a";i:0;s:1:"b";}'),
    ('["5" => 1, "05" => 2, "-0" => 3, -7 => 4]', b'a:4:{i:5;i:1;s:2:"05";i:2;s:2:"-0";i:3;i:-7;i:4;}'),
    ("[[[]]]", b"a:1:{i:0;a:1:{i:0;a:0:{}}}"),
    ("new stdClass", b'O:8:"stdClass":0:{}'),
    ('(object)["a" => 1]', b'O:8:"stdClass":1:{s:1:"a";i:1;}'),
    ("new P", b'O:1:"P":4:{s:1:"a";i:1;s:4:"\x00*\x00b";i:2;s:4:"\x00P\x00c";i:3;s:1:"n";N;}'),
    ("new M", b'O:1:"M":2:{s:1:"k";i:5;i:3;s:1:"x";}'),
    ("new Ser", b'C:3:"Ser":3:{abc}'),
    ("Suit::H", b'E:6:"Suit:H";'),
    ("[U::X, U::X]", b'a:2:{i:0;E:3:"U:X";i:1;r:2;}'),
    ("(function () { $o = (object)['p' => 1]; return [$o, $o]; })()",
     b'a:2:{i:0;O:8:"stdClass":1:{s:1:"p";i:1;}i:1;r:2;}'),
    ("(function () { $x = 5; return [&$x, &$x]; })()", b"a:2:{i:0;i:5;i:1;R:2;}"),
    ("[$o1 = new stdClass, &$o1, $o1]",
     b'a:3:{i:0;O:8:"stdClass":0:{}i:1;R:2;i:2;r:2;}'),
    ("(function () { $o = new stdClass; $o->self = $o; return $o; })()",
     b'O:8:"stdClass":1:{s:4:"self";r:1;}'),
]

_shared = PHPObject("stdClass", {"p": 1})
_box = PHPReference(5)
_obj = PHPObject("stdClass", {})
_objbox = PHPReference(_obj)
_self = PHPObject("stdClass", {})
_self.properties["self"] = _self

# (Python value, bytes): loads(bytes) == value and dumps(value) == bytes
CASES: list[tuple[Any, bytes]] = [
    (None, b"N;"),
    (True, b"b:1;"),
    (False, b"b:0;"),
    (0, b"i:0;"),
    (-1, b"i:-1;"),
    (PHP_INT_MAX, b"i:9223372036854775807;"),
    (PHP_INT_MIN, b"i:-9223372036854775808;"),
    (0.0, b"d:0;"),
    (-0.0, b"d:-0;"),
    (0.1, b"d:0.1;"),
    (1.0, b"d:1;"),
    (-1.5, b"d:-1.5;"),
    (100.0, b"d:100;"),
    (0.0001, b"d:0.0001;"),
    (1e-5, b"d:1.0E-5;"),
    (1e15, b"d:1000000000000000;"),
    (1e16, b"d:10000000000000000;"),
    (9.9e16, b"d:99000000000000000;"),
    (1e17, b"d:1.0E+17;"),
    (1e25, b"d:1.0E+25;"),
    (1.5e-7, b"d:1.5E-7;"),
    (0.1 + 0.2, b"d:0.30000000000000004;"),
    (5e-324, b"d:5.0E-324;"),
    (sys.float_info.max, b"d:1.7976931348623157E+308;"),
    (math.inf, b"d:INF;"),
    (-math.inf, b"d:-INF;"),
    ("", b's:0:"";'),
    ("hé", b's:3:"h\xc3\xa9";'),  # lengths count bytes
    ("🎉", b's:4:"\xf0\x9f\x8e\x89";'),
    (b"\xff\xfe", b's:2:"\xff\xfe";'),  # not UTF-8: stays bytes
    (b"\xc3", b's:1:"\xc3";'),  # truncated UTF-8
    ("a\0b", b's:3:"a\x00b";'),
    ('a";b|c}', b's:7:"a";b|c}";'),
    ([], b"a:0:{}"),
    ([1, 2], b"a:2:{i:0;i:1;i:1;i:2;}"),
    ({"x": True, 0: None}, b'a:2:{s:1:"x";b:1;i:0;N;}'),
    ({1: "a", 0: "b"}, b'a:2:{i:1;s:1:"a";i:0;s:1:"b";}'),
    ({5: 1, "05": 2, "-0": 3, -7: 4}, b'a:4:{i:5;i:1;s:2:"05";i:2;s:2:"-0";i:3;i:-7;i:4;}'),
    ({0: "a", 2: "c"}, b'a:2:{i:0;s:1:"a";i:2;s:1:"c";}'),  # a hole: not a list
    ({b"\xff": 1}, b'a:1:{s:1:"\xff";i:1;}'),
    ([[[]]], b"a:1:{i:0;a:1:{i:0;a:0:{}}}"),
    ([[], [1], {"a": []}], b'a:3:{i:0;a:0:{}i:1;a:1:{i:0;i:1;}i:2;a:1:{s:1:"a";a:0:{}}}'),
    (PHPObject("stdClass", {}), b'O:8:"stdClass":0:{}'),
    (PHPObject("stdClass", {"a": 1}), b'O:8:"stdClass":1:{s:1:"a";i:1;}'),
    (P, b'O:1:"P":4:{s:1:"a";i:1;s:4:"\x00*\x00b";i:2;s:4:"\x00P\x00c";i:3;s:1:"n";N;}'),
    (PHPObject("M", {"k": 5, 3: "x"}), b'O:1:"M":2:{s:1:"k";i:5;i:3;s:1:"x";}'),
    (PHPObject("stdClass", {"0": 1, "5": 2}), b'O:8:"stdClass":2:{s:1:"0";i:1;s:1:"5";i:2;}'),
    (PHPObject("NS\\Cls", {}), b'O:6:"NS\\Cls":0:{}'),
    (PHPCustomObject("Ser", b"abc"), b'C:3:"Ser":3:{abc}'),
    (PHPCustomObject("Ser", b"a;}{\xff"), b'C:3:"Ser":5:{a;}{\xff}'),
    (PHPEnum("Suit", "H"), b'E:6:"Suit:H";'),
    ([PHPEnum("U", "X"), PHPEnum("U", "X")], b'a:2:{i:0;E:3:"U:X";i:1;r:2;}'),
    ([_shared, _shared], b'a:2:{i:0;O:8:"stdClass":1:{s:1:"p";i:1;}i:1;r:2;}'),
    ([_box, _box], b"a:2:{i:0;i:5;i:1;R:2;}"),
    ([_objbox, _objbox, _obj], b'a:3:{i:0;O:8:"stdClass":0:{}i:1;R:2;i:2;r:2;}'),
    (_self, b'O:8:"stdClass":1:{s:4:"self";r:1;}'),
]

# Accepted by PHP's unserialize() but never written by it: (value, bytes)
LOADS_ONLY: list[tuple[Any, bytes]] = [
    (5, b"i:+5;"),
    (5, b"i:05;"),
    (0, b"i:-0;"),
    (PHP_INT_MAX, b"i:99999999999999999999;"),  # PHP clamps (with a warning)
    (PHP_INT_MIN, b"i:-99999999999999999999;"),
    (1.0, b"d:1;"),
    (0.5, b"d:.5;"),
    (5.0, b"d:5.;"),
    (100000.0, b"d:1e5;"),
    (100000.0, b"d:1E+5;"),
    (1.5, b"d:+1.5;"),
    (-0.005, b"d:-.5e-2;"),
    (math.inf, b"d:1e400;"),
    ("abc", b's:3:"abc";'),
    ("abc", b'S:3:"\\61bc";'),
    ("jbc", b'S:3:"\\6Abc";'),
    ({5: 1}, b'a:1:{s:1:"5";i:1;}'),  # numeric string keys become ints
    ({PHP_INT_MAX: 1}, b'a:1:{s:19:"9223372036854775807";i:1;}'),
    ({"9223372036854775808": 1}, b'a:1:{s:19:"9223372036854775808";i:1;}'),
    ({PHP_INT_MIN: 1}, b'a:1:{s:20:"-9223372036854775808";i:1;}'),
    ([2], b"a:2:{i:0;i:1;i:0;i:2;}"),  # duplicate key: last wins
    ([2, 3], b"a:3:{i:0;i:1;i:1;i:3;i:0;i:2;}"),
    ({7: 7}, b"a:1:{i:007;i:7;}"),
    ([7], b"a:1:{i:00;i:7;}"),
    ([1], b'a:1:{s:1:"0";i:1;}'),  # "0" is key 0: a list
    (PHPObject("stdClass", {"a": 2}), b'O:8:"stdClass":2:{s:1:"a";i:1;s:1:"a";i:2;}'),
    (PHPObject("B\\ar", {}), b'O:4:"B\\ar":0:{}'),
    (PHPObject("1ar", {}), b'O:3:"1ar":0:{}'),
    (PHPObject("a\\", {}), b'O:2:"a\\":0:{}'),
    (PHPObject(b"B\x80r", {}), b'O:3:"B\x80r":0:{}'),
    (PHPObject("stdClass", {"\0": 1}), b'O:8:"stdClass":1:{s:1:"\x00";i:1;}'),
    (PHPCustomObject("Ser", b""), b'C:3:"Ser":0:{}'),
    (PHPEnum("U", "Y"), b'E:3:"U:Y";'),
    ([PHPReference(1), PHPReference(1)], b"a:2:{i:0;i:1;i:1;R:2;}"),
]

# Refused by PHP's unserialize() (returns false): SessionDecodeError here
BAD: list[bytes] = [
    b"",
    b"x",
    b" i:1;",
    b"N",
    b"n;",
    b"b:2;",
    b"b:01;",
    b"b:+1;",
    b"b:1",
    b"b:;",
    b"i:;",
    b"i:-;",
    b"i:1",
    b"i:1.5;",
    b"i: 1;",
    b"i:1_0;",
    b"i:0x1;",
    b"d:;",
    b"d:.;",
    b"d:1e;",
    b"d:1e5.5;",
    b"d:0x10;",
    b"d:1_0;",
    b"d: 1;",
    b"d:--1;",
    b"d:nan;",
    b"d:inf;",
    b"d:+INF;",
    b"d:Infinity;",
    b's:3:"ab";',
    b's:3:"abcd";',
    b's:3:"abc"',
    b's:3:"abc";'[:-2],
    b's:+3:"abc";',
    b's:-1:"";',
    b's: 3:"abc";',
    b"s:3:abc;",
    b's:999999999999:"abc";',
    b"s:99999999999999999999999999999999999999999999:\"\";",
    b"s:" + b"9" * 5000 + b':"";',
    b'S:3:"a\\6gc";',
    b'S:2:"a\\62c";',
    b'S:3:"abcd";',
    b"a:1:{i:0;i:1}",
    b"a:2:{i:0;i:1;}",
    b"a:1:{i:0;i:1;i:1;i:2;}",
    b'a:1:{s:1:"a";}',
    b"a:1:{d:1;i:1;}",
    b"a:1:{N;i:1;}",
    b"a:1:{b:1;i:1;}",
    b"a:+0:{}",
    b"a:-0:{}",
    b"a:0:{",
    b"a:1:{i:0;i:1;",
    b"a:1:[i:0;i:1;]",
    b"a:999999999:{i:0;i:1;}",
    b"O:0:\"\":0:{}",
    b'O:4:"Ba r":0:{}',
    b'O:4:"\\Bar":0:{}',
    b'O:3:"B-r":0:{}',
    b'O:3:"\x7fAr":0:{}',
    b'O:3:"\x00Ar":0:{}',
    b'O:+3:"Foo":0:{}',
    b'O:3:"Bar":1:{N;i:1;}',
    b'O:3:"Bar":1:{s:1:"a";}',
    b'O:9:"Bar":0:{}',
    b'O:3:"Bar":0:{',
    b'O:3:"Bar"0:{}',
    b'C:3:"Ser":2:{abc}',
    b'C:3:"Ser":9:{abc}',
    b'C:3:"Ser":3:{abc',
    b'E:2:":X";',
    b'E:4:"Suit";',
    b'E:5:"Suit:";',
    b'E:6:"Suit:H"',
    b"r:1;",
    b"R:1;",
    b"r:0;",
    b"a:1:{i:0;r:1;}",  # r: to an array
    b"a:1:{i:0;r:2;}",  # r: to itself
    b"a:2:{i:0;i:1;i:1;r:2;}",  # r: to an int
    b"a:2:{i:0;i:1;i:1;R:3;}",
    b"a:2:{i:0;i:1;i:1;R:0;}",
    b"a:2:{i:0;i:1;i:0;R:2;}",  # R: to the slot being written
    b"a:1:{i:0;R:x;}",
]

# PHP 8.2's unserialize() ignores bytes after the value; loads() refuses them (a
# documented difference: PHP 8.3 warns about them).  loads_prefix() reads the value.
TRAILING: list[bytes] = [b"i:1;xyz", b"N;N;", b"a:0:{}}", b"a:1:{i:0;i:1;};", b'O:8:"stdClass":0:{}x']


@pytest.mark.parametrize(("value", "wire"), CASES)
def test_dumps_writes_what_php_writes(value: Any, wire: bytes) -> None:
    assert dumps(value) == wire


@pytest.mark.parametrize(("value", "wire"), CASES + LOADS_ONLY)
def test_loads_reads_what_php_reads(value: Any, wire: bytes) -> None:
    assert loads(wire) == value


@pytest.mark.parametrize(("value", "wire"), CASES)
def test_loads_then_dumps_gives_the_same_bytes(value: Any, wire: bytes) -> None:
    assert dumps(loads(wire)) == wire


def test_nan_round_trips() -> None:
    assert dumps(math.nan) == b"d:NAN;"
    assert math.isnan(loads(b"d:NAN;"))


@pytest.mark.parametrize("wire", BAD + TRAILING)
def test_bad_input_raises_session_decode_error(wire: bytes) -> None:
    with pytest.raises(SessionDecodeError) as info:
        loads(wire)
    assert 0 <= info.value.offset <= len(wire)


@pytest.mark.parametrize(
    ("wire", "offset"),
    [
        (b"i:1;xyz", 4),
        (b"a:1:{i:0;s:3:\"ab\";}", 9),
        (b"a:1:{s:1:\"k\";b:2;}", 13),
        (b"a:2:{i:0;i:1;}", 13),
        (b's:999999999999:"abc";', 0),
        (b"", 0),
    ],
)
def test_decode_error_says_where(wire: bytes, offset: int) -> None:
    with pytest.raises(SessionDecodeError) as info:
        loads(wire)
    assert info.value.offset == offset
    assert f"at offset {offset}" in str(info.value)


# -------------------------------------------------------------------- Python -> PHP mapping


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ((1, 2), b"a:2:{i:0;i:1;i:1;i:2;}"),  # tuple like list
        ({}, b"a:0:{}"),
        ({"5": 1, "-3": 2, "05": 3, "-0": 4, "+1": 5, " 1": 6}, b'a:6:{i:5;i:1;i:-3;i:2;s:2:"05";i:3;s:2:"-0";i:4;'
                                                                b's:2:"+1";i:5;s:2:" 1";i:6;}'),
        ({"9223372036854775808": 1}, b'a:1:{s:19:"9223372036854775808";i:1;}'),
        ({True: 1}, b"a:1:{i:1;i:1;}"),
        ({2.0: 1}, b"a:1:{i:2;i:1;}"),
        (b"ascii", b's:5:"ascii";'),
        (bytearray(b"\x00\x01"), b's:2:"\x00\x01";'),
        (memoryview(b"mv"), b's:2:"mv";'),
        (PHPReference(1), b"i:1;"),  # a reference held once is its value
        ([PHPReference([1]), 2], b"a:2:{i:0;a:1:{i:0;i:1;}i:1;i:2;}"),
        (PHPObject(b"B\xffr", {b"\xff": 1}), b'O:3:"B\xffr":1:{s:1:"\xff";i:1;}'),
    ],
)
def test_python_types_serialize_as_php_expects(value: Any, wire: bytes) -> None:
    assert dumps(value) == wire


def test_python_subclasses_serialize_like_their_base() -> None:
    import collections
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Text(str):
        pass

    assert dumps(Color.RED) == b"i:1;"
    assert dumps(Text("ab")) == b's:2:"ab";'
    assert dumps(collections.OrderedDict([("a", 1)])) == b'a:1:{s:1:"a";i:1;}'
    assert dumps(collections.defaultdict(int, {"a": 1})) == b'a:1:{s:1:"a";i:1;}'
    assert dumps(type("L", (list,), {})([1])) == b"a:1:{i:0;i:1;}"


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        object(),
        lambda: 1,
        1 + 2j,
        PHP_INT_MAX + 1,
        PHP_INT_MIN - 1,
        [2**64],
        {"k": {None: 1}},
        {(1, 2): 1},
        {1.5: "x"},
        "\udc80",
        {"\ud800": 1},
        PHPObject("X", {None: 1}),
        PHPObject(5, {}),  # type: ignore[arg-type]
        PHPReference(PHPReference(1)),
    ],
)
def test_unsupported_values_raise_session_encode_error(value: Any) -> None:
    with pytest.raises(SessionEncodeError):
        dumps(value)


def test_recursive_python_list_raises_instead_of_looping() -> None:
    a: list[Any] = []
    a.append(a)
    with pytest.raises(SessionEncodeError, match="recursive"):
        dumps(a)
    d: dict[str, Any] = {}
    d["x"] = [{"y": d}]
    with pytest.raises(SessionEncodeError, match="recursive"):
        dumps(d)


def test_a_recursive_structure_through_a_reference_is_fine() -> None:
    box = PHPReference(None)
    box.value = [1, box]
    wire = dumps([box])
    assert wire == b"a:1:{i:0;a:2:{i:0;i:1;i:1;R:2;}}"
    back = loads(wire)
    assert back[0].value[1] is back[0]


def test_keys_php_sees_as_one_are_both_written_and_the_last_wins() -> None:
    # "5" and 5 (or "a" and b"a") are two Python keys but one PHP key: both are
    # written, and PHP (like loads()) keeps the last value at the first position.
    wire = dumps({5: "int", "x": 1, "5": "str"})
    assert wire == b'a:3:{i:5;s:3:"int";s:1:"x";i:1;i:5;s:3:"str";}'
    assert loads(wire) == {5: "str", "x": 1}


def test_the_same_list_twice_is_written_twice_like_php_arrays() -> None:
    shared = [1]
    assert dumps([shared, shared]) == b"a:2:{i:0;a:1:{i:0;i:1;}i:1;a:1:{i:0;i:1;}}"


# ------------------------------------------------------------------------- objects and refs


def test_shared_object_decodes_to_one_object() -> None:
    v = loads(b'a:3:{i:0;O:8:"stdClass":0:{}i:1;r:2;i:2;a:1:{i:0;r:2;}}')
    assert v[0] is v[1] is v[2][0]


def test_php_reference_decodes_to_one_shared_box() -> None:
    v = loads(b"a:3:{i:0;i:1;i:1;R:2;i:2;a:1:{i:0;R:2;}}")
    assert type(v[0]) is PHPReference and v[0] is v[1] is v[2][0]
    v[0].value = 7
    assert dumps(v) == b"a:3:{i:0;i:7;i:1;R:2;i:2;a:1:{i:0;R:2;}}"


def test_reference_to_an_enclosing_array_round_trips() -> None:
    # PHP writes this for $r = [1]; $r[] = &$r;
    wire = b"a:2:{i:0;i:1;i:1;a:2:{i:0;i:1;i:1;R:3;}}"
    v = loads(wire)
    assert type(v[1]) is PHPReference and v[1].value[1] is v[1]
    assert dumps(v) == wire


def test_self_referencing_object() -> None:
    o = loads(b'O:8:"stdClass":1:{s:4:"self";r:1;}')
    assert o.properties["self"] is o


def test_reference_to_object_and_object_share_a_number() -> None:
    v = loads(b'a:3:{i:0;O:8:"stdClass":0:{}i:1;R:2;i:2;r:2;}')
    assert type(v[0]) is PHPReference and v[0] is v[1] and v[0].value is v[2]


def test_references_survive_a_list_becoming_a_dict() -> None:
    # starts like a list (i:0), then key 5: the decoder switches to a dict mid-way
    wire = b"a:3:{i:0;a:1:{i:0;i:1;}i:5;i:2;i:6;R:3;}"
    v = loads(wire)
    assert v == {0: [PHPReference(1)], 5: 2, 6: PHPReference(1)}
    assert v[0][0] is v[6]
    assert dumps(v) == wire


def test_allowed_classes_marks_incomplete_objects() -> None:
    wire = b'a:3:{i:0;O:8:"stdClass":0:{}i:1;O:3:"Foo":1:{s:1:"a";i:1;}i:2;C:3:"Ser":1:{x}}'
    assert [o.incomplete for o in loads(wire)] == [False, False, False]
    assert [o.incomplete for o in loads(wire, allowed_classes=False)] == [True, True, True]
    assert [o.incomplete for o in loads(wire, allowed_classes=["STDCLASS", "ser"])] == [False, True, False]
    assert dumps(loads(wire, allowed_classes=False)) == wire  # written back under the real name
    assert loads(b'E:3:"U:X";', allowed_classes=False) == PHPEnum("U", "X")  # enums are not objects here


def test_allowed_classes_must_be_names() -> None:
    with pytest.raises(TypeError):
        loads(b"N;", allowed_classes="stdClass")  # type: ignore[arg-type]


def test_enum_of_any_class_decodes() -> None:
    # phpsess cannot know which enums exist: PHP fails on an unknown enum, phpsess keeps it
    assert loads(b'E:6:"NS\\U:X";') == PHPEnum("NS\\U", "X")
    assert dumps(PHPEnum("NS\\U", "X")) == b'E:6:"NS\\U:X";'


def test_enum_is_hashable_and_immutable() -> None:
    e = PHPEnum("Suit", "H")
    assert {e: 1}[PHPEnum("Suit", "H")] == 1
    with pytest.raises(AttributeError):
        e.case = "S"  # type: ignore[misc]


def test_value_types_repr_and_equality() -> None:
    assert repr(PHPObject("A", {"x": 1}, incomplete=True)) == "PHPObject('A', {'x': 1}, incomplete=True)"
    assert PHPObject("A", {}) != PHPObject("B", {})
    assert PHPObject("A", {}) != {"A": {}}
    assert PHPReference(1) == PHPReference(1) and PHPReference(1) != 1
    assert PHPCustomObject("C", b"x") == PHPCustomObject("C", b"x") != PHPCustomObject("C", b"y")
    assert "PHPEnum('U', 'X')" == repr(PHPEnum("U", "X"))


# -------------------------------------------------------------------------------- strings


def test_invalid_utf8_string_survives_a_round_trip() -> None:
    for raw in (b"\xff", b"a\xc3(b", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", bytes(range(256))):
        wire = b"s:%d:\"%s\";" % (len(raw), raw)
        assert loads(wire) == raw
        assert dumps(loads(wire)) == wire


def test_str_input_is_utf8_encoded() -> None:
    assert loads('s:2:"é";') == "é"


def test_loads_prefix_leaves_what_follows() -> None:
    assert loads_prefix(b"i:1;i:2;") == (1, 4)
    assert loads_prefix(b"i:1;i:2;", 4) == (2, 8)
    assert loads_prefix(b'xx|s:1:"a";rest', 3) == ("a", 11)
    with pytest.raises(SessionDecodeError):
        loads_prefix(b"i:1;", 4)


def test_loads_prefix_shares_reference_numbering_through_a_context() -> None:
    ctx = RefContext()
    data = b'O:8:"stdClass":0:{}r:1;'
    first, end = loads_prefix(data, 0, ctx=ctx)
    second, _ = loads_prefix(data, end, ctx=ctx)
    assert first is second


# ---------------------------------------------------------------------------------- depth


def nested(n: int, empty: bytes = b"N;") -> bytes:
    return b"a:1:{i:0;" * n + empty + b"}" * n


def test_php_max_depth_4096_is_enforced() -> None:
    assert loads(nested(4096)) is not None
    with pytest.raises(SessionDecodeError, match="maximum depth"):
        loads(nested(4097))
    assert loads(nested(4096, b"a:0:{}")) is not None  # an empty array is not a level
    with pytest.raises(SessionDecodeError, match="maximum depth"):
        loads(nested(4096, b'O:8:"stdClass":0:{}'))  # an empty object is


@pytest.mark.parametrize("depth", [5000, 100000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    with pytest.raises(SessionDecodeError):
        loads(nested(depth))
    with pytest.raises(SessionDecodeError):
        loads(b'O:8:"stdClass":1:{s:1:"a";' * depth + b"N;" + b"}" * depth)


def test_no_depth_limit_still_needs_no_recursion() -> None:
    v = loads(nested(100000), max_depth=0)
    assert dumps(v) == nested(100000)


# --------------------------------------------------------------------------------- floats


@pytest.mark.parametrize(
    ("value", "precision", "text"),
    [
        (0.1, 17, "0.10000000000000001"),
        (1.0, 17, "1"),
        (1e25, 17, "1.0000000000000001E+25"),
        (123456.0, 2, "1.2E+5"),
        (99.5, 2, "1.0E+2"),
        (0.0, 0, "0.0E+0"),
        (-0.0, 0, "-0.0E+0"),
        (math.inf, 1, "I"),  # zend_gcvt truncates INF/NAN to the precision
        (-math.inf, 2, "-I"),
        (math.nan, 3, "NAN"),
        (math.inf, 0, ""),
        (1e17, 25, "100000000000000000"),
    ],
)
def test_format_float_with_serialize_precision(value: float, precision: int, text: str) -> None:
    assert float_to_string(value, precision) == text
    assert dumps(value, precision=precision) == f"d:{text};".encode()


@given(st.floats(allow_nan=False))
@settings(max_examples=300)
def test_float_round_trip_is_exact(f: float) -> None:
    back = loads(dumps(f))
    assert back == f and math.copysign(1, back) == math.copysign(1, f)


# ------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("key", "stored"),
    [("5", 5), ("-5", -5), ("0", 0), ("05", "05"), ("-0", "-0"), ("+5", "+5"), ("5 ", "5 "), ("", ""),
     ("9223372036854775807", PHP_INT_MAX), ("9223372036854775808", "9223372036854775808"),
     ("-9223372036854775808", PHP_INT_MIN), (b"7", 7), (3, 3), ("٣", "٣")],
)
def test_php_array_key_canonicalises_like_php(key: Any, stored: Any) -> None:
    assert php_array_key(key) == stored


def test_is_valid_class_name() -> None:
    assert codec.is_valid_class_name("NS\\Foo_1")
    assert codec.is_valid_class_name(b"\x80x")
    assert not codec.is_valid_class_name("\\Foo")
    assert not codec.is_valid_class_name("Fo-o")


# ----------------------------------------------------------------------- property tests

keys = st.one_of(st.integers(PHP_INT_MIN, PHP_INT_MAX), st.text(max_size=8), st.binary(max_size=4))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(PHP_INT_MIN, PHP_INT_MAX),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.binary(max_size=12),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
        st.builds(PHPObject, st.sampled_from(["stdClass", "P", "NS\\C"]), st.dictionaries(st.text(max_size=5), children, max_size=4)),
        st.builds(PHPEnum, st.sampled_from(["Suit", "U"]), st.sampled_from(["H", "S"])),
        st.builds(PHPCustomObject, st.just("Ser"), st.binary(max_size=8)),
    ),
    max_leaves=30,
)


def canonical(v: Any) -> Any:
    """What loads(dumps(v)) gives back for a Python value."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        out: dict[Any, Any] = {}
        for k, x in v.items():
            k = php_array_key(canonical(k))
            out[k] = canonical(x)  # a later equal key wins (and keeps the first position)
        if list(out) == list(range(len(out))):
            return list(out.values())
        return out
    if isinstance(v, PHPObject):
        return PHPObject(canonical(v.class_name), {canonical(k): canonical(x) for k, x in v.properties.items()})
    return v


def has_colliding_keys(v: Any) -> bool:
    """True when some dict in ``v`` has two keys PHP sees as one ("5" and 5, "" and b"")."""
    if isinstance(v, dict):
        if len({php_array_key(canonical(k)) for k in v}) < len(v):
            return True
        return any(has_colliding_keys(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(has_colliding_keys(x) for x in v)
    if isinstance(v, PHPObject):
        return any(has_colliding_keys(x) for x in v.properties.values())
    return False


def test_a_reference_to_a_value_overwritten_by_an_equal_key_is_refused_as_php_refuses_it() -> None:
    # PHP 8.2: unserialize('a:3:{s:0:"";E:6:"Suit:H";s:0:"";N;i:0;r:2;}') is false (the
    # value r:2 names was replaced by the second "" key); found by the property below
    with pytest.raises(SessionDecodeError, match="^r: to a value that is not an object"):
        loads(b'a:3:{s:0:"";E:6:"Suit:H";s:0:"";N;i:0;r:2;}')


@given(values)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(v: Any) -> None:
    wire = dumps(v)
    if has_colliding_keys(v):
        # a later equal key replaces a value that an r:/R: further on may name: PHP then
        # refuses the data (the value named is no object any more) or lets r: name the
        # object that replaced it (tests/oracle: test_colliding_keys_decode_as_php_does);
        # either way what was decoded encodes and decodes to itself
        try:
            back = loads(wire)
        except SessionDecodeError:
            return
        assert loads(dumps(back)) == back
        return
    back = loads(wire)
    assert back == canonical(v)
    assert dumps(back) == dumps(canonical(v))  # == wire unless two keys collide ("5" and 5)


def exact_loads(data: bytes) -> Any:
    """loads() through the exact parser only."""
    ctx = RefContext()
    text = ctx.text_of(data)
    if not ctx.size:
        raise SessionDecodeError("empty data", 0)
    cell: list[Any] = []
    end = codec._parse(text, 0, ctx, cell)
    if end != ctx.size:
        raise SessionDecodeError("unexpected data after the value", end)
    return cell[0]


def outcome(f: Any, data: bytes) -> Any:
    try:
        return ("ok", f(data))
    except SessionDecodeError as exc:
        return ("error", exc.offset)


@st.composite
def mutated(draw: Any) -> bytes:
    """A valid payload with a few bytes changed, inserted or removed."""
    wire = bytearray(dumps(draw(values)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(wire)))
        op = draw(st.integers(0, 2))
        b = draw(st.sampled_from(b';:{}"0123456789siadbNOCErR|\x00\xff'))
        if op == 0 and i < len(wire):
            wire[i] = b
        elif op == 1:
            wire.insert(i, b)
        elif i < len(wire):
            del wire[i]
    return bytes(wire)


@given(st.one_of(mutated(), st.binary(max_size=40)))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_loads_raises_only_session_decode_error(data: bytes) -> None:
    try:
        loads(data)
    except SessionDecodeError:
        pass


@given(mutated())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fast_path_and_exact_parser_agree(data: bytes) -> None:
    fast = outcome(loads, data)
    exact = outcome(exact_loads, data)
    if fast[0] == "ok" and exact[0] == "ok":
        assert dumps(fast[1]) == dumps(exact[1])
    else:
        assert fast == exact


@pytest.mark.parametrize(("value", "wire"), CASES + LOADS_ONLY)
def test_exact_parser_alone_reads_the_tables(value: Any, wire: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "FAST_PATH", False)
    assert loads(wire) == value


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "NATIVE_PATH", False)  # the caches of the Python paths
    monkeypatch.setattr(codec, "_CACHE_LIMIT", 50)
    loads(dumps([f"v{i}" for i in range(200)]))
    RefContext()  # a new decode empties caches that grew past the limit
    assert codec._VALUES == codec._SEED
    assert loads(dumps(["x" * 200])) == ["x" * 200]  # long tokens are not cached
    assert 's:200:"' + "x" * 200 + '"' not in codec._VALUES


def test_encoder_value_caches_keep_equal_values_of_other_types_apart() -> None:
    codec.clear_caches()
    # 1, 1.0 and True are equal dict keys; 0.0 and -0.0 too; each keeps its own form
    # whatever order the caches were filled in.
    for _ in range(2):
        assert dumps([1, 1.0, True, -0.0, 0.0, "1", 2.5]) == (
            b'a:7:{i:0;i:1;i:1;d:1;i:2;b:1;i:3;d:-0;i:4;d:0;i:5;s:1:"1";i:6;d:2.5;}'
        )
        assert dumps([True, 1.0, 1, 0.0, -0.0]) == b"a:5:{i:0;b:1;i:1;d:1;i:2;i:1;i:3;d:0;i:4;d:-0;}"
    # a float cached in the default precision is not reused for another precision
    assert dumps(0.1) == b"d:0.1;"
    assert dumps(0.1, precision=17) == b"d:0.10000000000000001;"
    assert dumps(0.1) == b"d:0.1;"


def test_encoder_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "NATIVE_PATH", False)  # the caches of the Python encoder
    codec.clear_caches()
    monkeypatch.setattr(codec, "_CACHE_LIMIT", 50)
    dumps([f"v{i}" for i in range(200)] + list(range(200)) + [i / 7 for i in range(1, 200)])
    # no cache took more than the limit, and the encode emptied them as it ended
    assert not codec._STR_PIECES and not codec._INT_PIECES and not codec._FLOAT_PIECES
    dumps([f"v{i}" for i in range(20)])
    assert len(codec._STR_PIECES) == 20  # within the limit, they stay
    assert dumps(["x" * 200]) == b'a:1:{i:0;s:200:"' + b"x" * 200 + b'";}'
    assert "x" * 200 not in codec._STR_PIECES  # long strings are not cached
    with pytest.raises(SessionEncodeError):
        dumps(["\ud800"])
    with pytest.raises(SessionEncodeError):
        dumps([2**63])
