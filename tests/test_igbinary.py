"""phpsess.core.igbinary: igbinary's format both ways, its identities, its refusals, its cost.

The CASES bytes are what php-igbinary 3.2 writes for the PHP expression beside each value
(re-checked against real PHP in tests/oracle/test_igbinary_oracle.py).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phpsess.core import codec, igbinary
from phpsess.core.codec import PHPCustomObject, PHPEnum, PHPObject, PHPReference
from phpsess.core.formats import decode, encode
from phpsess.errors import SessionDecodeError, SessionEncodeError

__all__ = ["CASES"]

H = "00000002"
_EMPTY: list[Any] = []

# (PHP expression, Python value, igbinary_serialize() as hex)
CASES: list[tuple[str, Any, str]] = [
    ("null", None, H + "00"),
    ("true", True, H + "05"),
    ("false", False, H + "04"),
    ("0", 0, H + "0600"),
    ("255", 255, H + "06ff"),
    ("-1", -1, H + "0701"),
    ("256", 256, H + "080100"),
    ("-65535", -65535, H + "09ffff"),
    ("65536", 65536, H + "0a00010000"),
    ("-4294967295", -4294967295, H + "0bffffffff"),
    ("4294967296", 4294967296, H + "200000000100000000"),
    ("PHP_INT_MAX", codec.PHP_INT_MAX, H + "207fffffffffffffff"),
    ("PHP_INT_MIN", codec.PHP_INT_MIN, H + "218000000000000000"),
    ("1.5", 1.5, H + "0c3ff8000000000000"),
    ("-0.0", -0.0, H + "0c8000000000000000"),
    ("INF", float("inf"), H + "0c7ff0000000000000"),
    ("''", "", H + "0d"),
    ("'abc'", "abc", H + "1103616263"),
    ("'é'", "é", H + "1102c3a9"),
    ('"\\xff\\xfe"', b"\xff\xfe", H + "1102fffe"),
    ("str_repeat('a', 256)", "a" * 256, H + "120100" + "61" * 256),
    ("[]", [], H + "1400"),
    ("[1, 2]", [1, 2], H + "140206000601060106 02".replace(" ", "")),
    ("[1 => 'a', 0 => 'b']", {1: "a", 0: "b"}, H + "1402060111016106001101 62".replace(" ", "")),
    ("['a' => 'x', 'b' => 'x', 'x' => 'a']", {"a": "x", "b": "x", "x": "a"},
     H + "140311016111017811016 20e010e010e00".replace(" ", "")),
    ("['-5' => 1, '05' => 2]", {-5: 1, "05": 2}, H + "14020705060111023035060 2".replace(" ", "")),
    ("[[], []]", [_EMPTY, _EMPTY], H + "1402060014000601 0101".replace(" ", "")),  # PHP has one []
    ("new stdClass", PHPObject("stdClass"), H + "1708737464436c6173731400"),
    ("(object)['p' => 1]", PHPObject("stdClass", {"p": 1}), H + "1708737464436c617373140111017006 01".replace(" ", "")),
    ("[new stdClass, 'stdClass']", [PHPObject("stdClass"), "stdClass"],
     H + "140206001708737464436c6173731400 06010e00".replace(" ", "")),
    ("Suit::H", PHPEnum("Suit", "H"), H + "170453756974271101 48".replace(" ", "")),
    ("new Ser", PHPCustomObject("Ser", b"abc"), H + "1703536572 1d03616263".replace(" ", "")),
]


def _shared_cases() -> list[tuple[str, Any, str]]:
    o = PHPObject("stdClass")
    arr = [1]
    box = PHPReference(5)
    abox = PHPReference([1])
    return [
        ("(function () { $o = new stdClass; return [$o, $o]; })()", [o, o],
         H + "14020600 1708737464436c6173731400 0601 2201".replace(" ", "")),
        ("(function () { $a = [1]; return [$a, $a]; })()", [arr, arr], H + "14020600140106000601 06010101".replace(" ", "")),
        ("(function () { $x = 5; return [&$x, &$x]; })()", [box, box], H + "14020600250605 0601250101".replace(" ", "")),
        ("(function () { $a = [1]; return [&$a, &$a]; })()", [abox, abox],
         H + "14020600251401060006 01 0601250101".replace(" ", "")),
    ]


CASES += _shared_cases()


@pytest.mark.parametrize(("expr", "value", "wire"), CASES, ids=[c[0][:40] for c in CASES])
def test_dumps_writes_what_php_writes(expr: str, value: Any, wire: str) -> None:
    assert igbinary.dumps(value).hex() == wire


@pytest.mark.parametrize(("expr", "value", "wire"), CASES, ids=[c[0][:40] for c in CASES])
def test_loads_reads_it_back_and_writes_the_same_bytes(expr: str, value: Any, wire: str) -> None:
    back = igbinary.loads(bytes.fromhex(wire))
    assert back == value or (value != value and back != back)
    assert igbinary.dumps(back).hex() == wire


def test_a_shared_array_decodes_to_one_object_and_stays_shared() -> None:
    back = igbinary.loads(bytes.fromhex(H + "14020600140106000601 06010101".replace(" ", "")))
    assert back[0] is back[1]
    again = igbinary.loads(igbinary.dumps([[], [], {"x": []}]))
    assert again == [[], [], {"x": []}] and again[0] is not again[1]  # distinct ones stay distinct


def test_references_decode_as_shared_boxes() -> None:
    x = PHPReference("v")
    data = {"a": x, "b": [x, 1], "c": x}
    back = decode(encode(data, "igbinary"), "igbinary")
    assert back == data
    assert back["a"] is back["b"][0] is back["c"] and type(back["a"]) is PHPReference


def test_a_box_used_once_keeps_its_marker() -> None:
    """PHP writes ``25`` for a reference with two holders, one of them outside the data."""
    assert igbinary.dumps([PHPReference(1)]).hex() == H + "14010600250601"


def test_objects_keep_identity_across_session_keys() -> None:
    o = PHPObject("P", {"a": [1, 2]})
    back = decode(encode({"x": o, "y": [o]}, "igbinary"), "igbinary")
    assert back["x"] is back["y"][0]


def test_cyclic_values_round_trip() -> None:
    o = PHPObject("stdClass")
    o.properties["self"] = o
    back = igbinary.loads(igbinary.dumps(o))
    assert back.properties["self"] is back
    box = PHPReference(None)
    box.value = [1, box]  # $r = [1]; $r[] = &$r;
    again = igbinary.loads(igbinary.dumps(box.value))
    assert again[1].value[1] is again[1]


def test_uninitialized_typed_properties_keep_their_place() -> None:
    """class Typed { public int $i; public ?string $s = null; }: igbinary writes a lone
    00 key for $i; serialize() leaves it out."""
    wire = bytes.fromhex(H + "17055479706564140200110173 00".replace(" ", ""))
    obj = igbinary.loads(wire)
    assert obj == PHPObject("Typed", {"s": None}) and obj.skipped == (0,)
    assert igbinary.dumps(obj) == wire
    assert codec.dumps(obj) == b'O:5:"Typed":1:{s:1:"s";N;}'


def test_session_encoding() -> None:
    assert encode({}, "igbinary") == bytes.fromhex(H + "1400")
    assert encode({"n": 1, 5: "int keys are written"}, "igbinary") == bytes.fromhex(
        H + "1402 11016e0601 0605 1114".replace(" ", "") + b"int keys are written".hex())
    assert decode(encode({"n": 1, 5: "x"}, "igbinary"), "igbinary") == {"n": 1}  # ... and skipped
    assert decode(b"", "igbinary") == {}
    assert decode(bytes.fromhex(H + "1401 11016e0601".replace(" ", "")) + b"trailing", "igbinary") == {"n": 1}
    assert decode(bytes.fromhex(H + "1708737464436c61737314011101700601"), "igbinary") == {"p": 1}


def test_lists_and_dicts_as_the_codec_maps_them() -> None:
    assert igbinary.loads(igbinary.dumps({0: "a", 1: "b"})) == ["a", "b"]
    assert igbinary.loads(igbinary.dumps({1: "a", 0: "b"})) == {1: "a", 0: "b"}
    assert igbinary.loads(igbinary.dumps(("t", 1))) == ["t", 1]
    assert igbinary.loads(igbinary.dumps({"5": 1, True: 2})) == {5: 1, 1: 2}


@pytest.mark.parametrize(
    "value",
    [{1.5: 1}, {None: 1}, 2**63, -(2**63) - 1, "\ud800", object(), {1, 2}, PHPReference(PHPReference(1))],
    ids=["float key", "None key", "big int", "small int", "lone surrogate", "object", "set", "nested box"],
)
def test_values_php_cannot_hold_raise_encode_errors(value: Any) -> None:
    with pytest.raises(SessionEncodeError):
        igbinary.dumps(value)


def test_a_list_that_contains_itself_is_refused() -> None:
    a: list[Any] = []
    a.append(a)
    with pytest.raises(SessionEncodeError, match="recursive"):
        igbinary.dumps(a)


BAD = [
    ("", 0), ("00000002", 0), ("0000000300", 0), (H + "11", 5), (H + "1105 6162".replace(" ", ""), 4),
    (H + "0e00", 4), (H + "0100", 4), (H + "2201", 4), (H + "1401", 4), (H + "140106", 7), (H + "28", 4),
    (H + "0c00", 4), (H + "14010c0000000000000000", 6), (H + "1703537572 28".replace(" ", ""), 9),
    (H + "170353757227 0c".replace(" ", ""), 10), (H + "17035375721d05 61".replace(" ", ""), 4),
    (H + "15ffff00", 4), (H + "13ffffffff00", 4), (H + "26ffffffffffffffff", 4),
]


@pytest.mark.parametrize(("hexdata", "offset"), BAD)
def test_malformed_input_raises_decode_errors_with_offsets(hexdata: str, offset: int) -> None:
    with pytest.raises(SessionDecodeError) as info:
        igbinary.loads(bytes.fromhex(hexdata))
    assert info.value.offset == offset


def test_loads_refuses_bytes_after_the_value_as_php_does() -> None:
    with pytest.raises(SessionDecodeError, match="more data"):
        igbinary.loads(bytes.fromhex(H + "0600") + b"x")


def test_nesting_is_bounded_and_never_recursive() -> None:
    depth = 100_000
    deep = bytes.fromhex(H) + bytes.fromhex("14010600") * depth + b"\x00"
    with pytest.raises(SessionDecodeError, match="maximum depth of 4096"):
        igbinary.loads(deep)
    value = igbinary.loads(deep, max_depth=0)
    for _ in range(depth):
        value = value[0]
    assert value is None
    nested: Any = None
    for _ in range(depth):
        nested = [nested]
    assert igbinary.dumps(nested) == deep


def test_allowed_classes_marks_objects_incomplete() -> None:
    wire = igbinary.dumps([PHPObject("A"), PHPObject("B")])
    a, b = igbinary.loads(wire, allowed_classes=["a"])
    assert not a.incomplete and b.incomplete
    assert igbinary.dumps(igbinary.loads(wire, allowed_classes=False)) == wire


# ----------------------------------------------------------------------- property tests

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(codec.PHP_INT_MIN, codec.PHP_INT_MAX),
              st.floats(allow_nan=False), st.text(max_size=10), st.binary(max_size=10)),
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=5), c, max_size=4),
        st.builds(PHPObject, st.sampled_from(["stdClass", "P"]), st.dictionaries(st.text(max_size=4), c, max_size=3)),
        st.builds(PHPReference, c.filter(lambda v: type(v) is not PHPReference)),
    ),
    max_leaves=20,
)

try:
    from tests.test_codec import canonical as codec_canonical, has_colliding_keys
except ImportError:  # pragma: no cover
    from test_codec import canonical as codec_canonical, has_colliding_keys  # type: ignore[no-redef]


def canonical(v: Any) -> Any:
    """What loads(dumps(v)) gives back for a Python value (the codec's rule, boxes too)."""
    if type(v) is PHPReference:
        return PHPReference(canonical(v.value))
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        return codec_canonical({k: canonical(x) for k, x in v.items()})
    if isinstance(v, PHPObject):
        return PHPObject(codec_canonical(v.class_name), {codec_canonical(k): canonical(x)
                                                          for k, x in v.properties.items()})
    return codec_canonical(v)


@given(values)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(value: Any) -> None:
    assume(not has_colliding_keys(value))
    wire = igbinary.dumps(value)
    back = igbinary.loads(wire)
    assert igbinary.dumps(back) == wire
    assert back == canonical(value)


@st.composite
def mutated(draw: Any) -> bytes:
    payload = bytearray(encode(draw(st.dictionaries(st.text(max_size=4), values, max_size=4)), "igbinary") or b"")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(payload)))
        b = draw(st.integers(0, 255) | st.sampled_from([0x00, 0x01, 0x0E, 0x14, 0x17, 0x22, 0x25, 0xFF]))
        op = draw(st.integers(0, 2))
        if op == 0 and i < len(payload):
            payload[i] = b
        elif op == 1:
            payload.insert(i, b)
        elif i < len(payload):
            del payload[i]
    return bytes(payload)


@given(mutated())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_decoders_raise_only_decode_errors(payload: bytes) -> None:
    for fn in (igbinary.loads, lambda p: decode(p, "igbinary")):
        try:
            fn(payload)
        except SessionDecodeError:
            pass


# ------------------------------------------------------------------------------ linear time

def _shapes() -> dict[str, Callable[[int], Any]]:
    return {
        "flat dict": lambda n: {f"k{i}": i for i in range(n)},
        "list of strings": lambda n: [f"s{i % 97}" * 3 for i in range(n)],
        "nested lists": lambda n: _nest(n),
        "objects": lambda n: [PHPObject("C", {"a": i, "b": [i]}) for i in range(n // 4)],
        "shared": lambda n: _shared(n),
        "references": lambda n: _refs(n),
        "big strings": lambda n: ["x" * (n * 4), b"\xff" * (n * 4)] * 50,
    }


def _nest(n: int) -> Any:
    v: Any = 1
    for i in range(n):
        v = [v, i]
    return v


def _shared(n: int) -> Any:
    item = {"a": [1, 2]}
    return [item] * n


def _refs(n: int) -> Any:
    boxes = [PHPReference(i) for i in range(n // 8 + 1)]
    return [boxes[i % len(boxes)] for i in range(n)]


def _best_ratio(a: Callable[[], Any], b: Callable[[], Any], repeat: int = 7) -> float:
    """best time of ``b`` / best time of ``a``, the runs alternating, so that a burst of
    load from other processes on this shared machine weighs on both alike."""
    best_a = best_b = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for fn, which in ((a, "a"), (b, "b")):
                t0 = time.perf_counter()
                fn()
                took = time.perf_counter() - t0
                if which == "a":
                    best_a = min(best_a, took)
                else:
                    best_b = min(best_b, took)
    finally:
        gc.enable()
    return best_b / max(best_a, 1e-6)


@pytest.mark.parametrize("shape", sorted(_shapes()))
def test_cost_is_linear_in_the_input(shape: str) -> None:
    """Four times the input costs at most five times the time, both directions."""
    make = _shapes()[shape]
    small, large = make(5000), make(20000)
    ws, wl = igbinary.dumps(small), igbinary.dumps(large)
    assert 3 * len(ws) <= len(wl) <= 5 * len(ws)
    for what, a, b in (("encode", lambda: igbinary.dumps(small), lambda: igbinary.dumps(large)),
                       ("decode", lambda: igbinary.loads(ws, max_depth=0), lambda: igbinary.loads(wl, max_depth=0))):
        for _attempt in range(5):  # a shared machine: a noisy measure is taken again
            ratio = _best_ratio(a, b)
            if ratio <= 5:
                break
        assert ratio <= 5, f"{shape} {what}: x4 input took x{ratio:.1f} time"
