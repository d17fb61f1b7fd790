"""The codec and the session encodings against real PHP 8.2. Runs ``php`` (two processes).

1. PHP -> phpsess: one PHP process writes a varied corpus (every scalar edge case,
   random floats by their bits, binary strings, nested and holey arrays, objects with
   private/protected properties, ``__serialize()``, ``Serializable``, enums, shared
   objects, references inside and across session keys, large sessions) with
   ``serialize()``, ``igbinary_serialize()`` (php-igbinary) and with ``session_encode()``
   under the four serialize handlers (igbinary's included), plus a tree description of
   each value.  phpsess must decode each payload to the described value and encode it
   back to the identical bytes.
2. phpsess -> PHP: values built in Python are serialized by phpsess; one PHP process
   reads them with ``unserialize()`` / ``session_decode()``, and its re-serialization
   and its description of what it decoded must match.
3. Acceptance: the bad inputs of tests/test_codec.py and tests/test_formats.py are
   refused by PHP too, and their good inputs accepted.
"""

from __future__ import annotations

import base64
import json
import math
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from phpsess.core import codec, igbinary
from phpsess.core import formats as encoding
from phpsess.core.zend import float_to_string
from phpsess.core.codec import PHPCustomObject, PHPEnum, PHPObject, PHPReference

try:
    from tests.phptools import PHP_BASE_INI, require, run_php
except ImportError:  # pragma: no cover - when tests/ is not a package on sys.path
    from phptools import PHP_BASE_INI, require, run_php  # type: ignore[no-redef]

try:
    from tests import test_codec as unit_codec
    from tests import test_formats as unit_encoding
except ImportError:  # pragma: no cover
    import test_codec as unit_codec  # type: ignore[no-redef]
    import test_formats as unit_encoding  # type: ignore[no-redef]

__all__: list[str] = []

# Classes and enums both sides agree on.  P has the three visibilities; M writes int
# keys through __serialize(); Ser is a Serializable whose data is opaque to phpsess.
PRELUDE = r"""
ob_start();  // session_start() needs headers not sent yet
error_reporting(E_ALL & ~E_DEPRECATED);
class P { public $a = 1; protected $b = 2; private $c = 3; public $n = null; }
class Q extends P { private $c = 'q'; public $list = [1, 2]; }
class M { public $k = 5; public $v = 'x';
  function __serialize(): array { return ['k' => $this->k, 3 => $this->v]; }
  function __unserialize(array $d): void { $this->k = $d['k']; $this->v = $d[3]; } }
class Ser implements Serializable { public $d = 'abc';
  function serialize() { return $this->d; } function unserialize($s) { $this->d = $s; } }
enum Suit: string { case H = 'h'; case S = 's'; }
enum U { case X; case Y; }
class Typed { public int $i; public ?string $s = null; }

function b64($s) { return base64_encode($s); }
function fmt_float($f) { $s = serialize($f); return substr($s, 2, -1); }
/* A JSON-able tree of a value, the same shape as desc() in the Python test. */
function desc($v, $depth = 0) {
  if ($depth > 60) return ['deep'];
  if ($v === null) return null;
  if (is_bool($v)) return ['b', $v ? 1 : 0];
  if (is_int($v)) return ['i', $v];
  if (is_float($v)) return ['d', fmt_float($v)];
  if (is_string($v)) return ['s', b64($v)];
  if (is_array($v)) {
    $out = [];
    foreach ($v as $k => $x) $out[] = [is_int($k) ? ['i', $k] : ['s', b64($k)], desc($x, $depth + 1)];
    return ['a', $out];
  }
  if ($v instanceof UnitEnum) return ['E', get_class($v), $v->name];
  if ($v instanceof Serializable && !($v instanceof __PHP_Incomplete_Class) && !method_exists($v, '__serialize')) return ['C', get_class($v), b64($v->serialize())];
  if (!($v instanceof __PHP_Incomplete_Class) && method_exists($v, '__serialize')) { $props = $v->__serialize(); }
  else { $props = get_mangled_object_vars($v); }
  $cls = get_class($v);
  if ($v instanceof __PHP_Incomplete_Class) { $cls = $props['__PHP_Incomplete_Class_Name']; unset($props['__PHP_Incomplete_Class_Name']); }
  $out = [];
  foreach ($props as $k => $x) $out[] = [is_int($k) ? ['i', $k] : ['s', b64($k)], desc($x, $depth + 1)];
  return ['O', $cls, $out];
}
function emit($kind, $name, $payload, $d) {
  echo json_encode(['kind' => $kind, 'name' => $name, 'payload' => b64($payload), 'desc' => $d],
                   JSON_PRESERVE_ZERO_FRACTION | JSON_PARTIAL_OUTPUT_ON_ERROR), "\n";
}
"""

GENERATE = r"""
mt_srand(20240611);
function rbytes($n) { $s = ''; for ($i = 0; $i < $n; $i++) $s .= chr(mt_rand(0, 255)); return $s; }
function rfloat() {
  switch (mt_rand(0, 3)) {
    case 0: $bits = pack('NN', mt_rand(0, 0xFFFF) << 16 | mt_rand(0, 0xFFFF), mt_rand(0, 0xFFFF) << 16 | mt_rand(0, 0xFFFF));
            return unpack('E', $bits)[1];
    case 1: return mt_rand() / mt_getrandmax() * (10 ** mt_rand(-25, 25)) * (mt_rand(0, 1) ? 1 : -1);
    case 2: return mt_rand(-100000, 100000) / 100;
    default: return (float) mt_rand(-(1 << 30), 1 << 30) * (2 ** mt_rand(-60, 60));
  }
}
function rstring() {
  $pool = ['', 'abc', 'é', 'a;b', 'x|y', '"}{', "\0", "a\0b", 'ünïcødé 🎉', 's:3:"abc";', '}}', 'r:1;', "\xff\xfe", "\xc3", '05', '-0', '12', str_repeat('z', 300)];
  switch (mt_rand(0, 3)) {
    case 0: return rbytes(mt_rand(0, 12));
    case 1: return $pool[mt_rand(0, count($pool) - 1)];
    case 2: return (string) mt_rand(-50, 500);
    default: return 'k' . mt_rand(0, 30);
  }
}
function rkey() {
  switch (mt_rand(0, 4)) {
    case 0: return mt_rand(-5, 20);
    case 1: return [PHP_INT_MAX, PHP_INT_MIN, 0][mt_rand(0, 2)];
    default: return rstring();
  }
}
function rscalar() {
  switch (mt_rand(0, 7)) {
    case 0: return null;
    case 1: return (bool) mt_rand(0, 1);
    case 2: return mt_rand(-1000, 1000);
    case 3: return [PHP_INT_MAX, PHP_INT_MIN, 0, -1, 1 << 40, 255][mt_rand(0, 5)];
    case 4: case 5: return rfloat();
    default: return rstring();
  }
}
function rvalue($depth) {
  if ($depth > 5 || mt_rand(0, 2) == 0) return rscalar();
  switch (mt_rand(0, 5)) {
    case 0: $a = []; for ($i = mt_rand(0, 6); $i > 0; $i--) $a[] = rvalue($depth + 1); return $a;
    case 1: $a = []; for ($i = mt_rand(0, 6); $i > 0; $i--) $a[rkey()] = rvalue($depth + 1); return $a;
    case 2: $a = []; for ($i = mt_rand(1, 6); $i > 0; $i--) $a[] = rvalue($depth + 1);
            unset($a[mt_rand(0, count($a) - 1)]); return $a;
    case 3: $o = new stdClass; for ($i = mt_rand(0, 4); $i > 0; $i--) $o->{'p' . rstring()} = rvalue($depth + 1); return $o;
    case 4: $o = mt_rand(0, 1) ? new P : new Q; $o->a = rvalue($depth + 1); return $o;
    default: return [Suit::H, U::Y, new M, new Ser, new Typed][mt_rand(0, 4)];
  }
}

$values = [];
// scalar edge cases
foreach ([null, true, false, 0, 1, -1, PHP_INT_MAX, PHP_INT_MIN, 0.0, -0.0, 0.1, 1.0, -1.5, 100.0, 1e15, 1e16, 9.9e16,
          1e17, 1e25, 1.5e-7, 0.0001, 1e-5, 0.1 + 0.2, 5e-324, 2.2250738585072014e-308, PHP_FLOAT_MAX, -PHP_FLOAT_MAX,
          PHP_FLOAT_EPSILON, INF, -INF, NAN, 123456789012345678.0, 1/3, -2/3, 4.35, 1e22, 1e21, 1e-4, 0.00012345,
          '', 'abc', 'é', "\0", "\xff", "a\"b", 'x;y|z}{', str_repeat('ab', 5000), 'ünïcødé 🎉'] as $v) {
  $values[] = $v;
}
for ($i = 0; $i < 400; $i++) $values[] = rfloat();
for ($i = 0; $i < 300; $i++) $values[] = rvalue(0);
// arrays of every key shape
$values[] = [];
$values[] = [1, 2, 3];
$values[] = [1 => 'a', 0 => 'b'];
$values[] = [5 => 1];
$values[] = ['05' => 1, '5' => 2, '-0' => 3, '-7' => 4, '' => 5, PHP_INT_MAX => 6, PHP_INT_MIN => 7];
$values[] = [[[[[[[[[[]]]]]]]]]];
$a = range(0, 1999); unset($a[500]); $values[] = $a;
$values[] = range(0, 2999);
// objects
$values[] = new stdClass;
$values[] = new P;
$values[] = new Q;
$values[] = new M;
$values[] = new Ser;
$values[] = new Typed;
$o = new stdClass; $o->{'0'} = 'zero'; $o->{'5'} = 5; $o->{"x\0"} = 1; $values[] = $o;
$values[] = new ArrayObject([1, 'a' => 2]);
$values[] = [Suit::H, Suit::S, U::X, Suit::H];
$o = new stdClass; $values[] = [$o, $o, [$o]];
$a = new stdClass; $b = new stdClass; $a->b = $b; $b->a = $a; $values[] = $a;          // cycle through objects
$o = new stdClass; $o->self = $o; $values[] = $o;
// references
$x = 5; $values[] = [&$x, &$x, [&$x]];
$arr = [1, 2]; $values[] = ['c' => &$arr, 'd' => &$arr];
$o = new stdClass; $values[] = [$o, &$o, $o];
$o = new stdClass; $values[] = [&$o, $o, &$o];
$r = [1]; $r[] = &$r; $values[] = $r;                                                    // recursive array
$s = new Ser; $values[] = [$s, $s];
// arrays shared without references (igbinary writes them once, then by number)
$sh = ['x' => [1, 2]]; $values[] = [$sh, $sh, 'k' => $sh, 'in' => [$sh]];
$e = [1]; unset($e[0]); $values[] = [[], $e, [], $e];                                   // PHP's one [] and another
$values[] = [array_filter([1, 2], fn($x) => false), array_filter([3], fn($x) => false)];
$ra = ['a']; $values[] = [&$ra, &$ra, $ra];
$values[] = str_repeat('é', 40000);                                                     // a 32-bit string length
$values[] = array_fill(0, 300, 'same');                                                 // 16-bit counts, string ids
foreach ($values as $i => $v) {
  emit('ser', "value $i", serialize($v), desc($v));
  emit('igb', "value $i", igbinary_serialize($v), desc($v));
}

// sessions, written by session_encode() under each handler
$sessions = [];
$sessions['scalars'] = ['a' => 1, 's' => 'x|y', 'f' => 0.1, 'n' => null, 'b' => false, 'e' => '', 'bin' => "\x00\xff"];
$sessions['spec example'] = (function () {
  $o = new stdClass; $o->p = 1; $arr = [1, 2]; $x = 5;
  return ['a' => $o, 'b' => $o, 'c' => &$arr, 'd' => &$arr, 'e' => [&$x, &$x], 'f' => &$x];
})();
$sessions['refs across keys'] = (function () {
  $v = ['deep' => ['x' => 1]]; $o = new P;
  return ['first' => &$v['deep'], 'second' => $v, 'obj' => $o, 'again' => [$o, &$v]];
})();
$sessions['odd keys'] = ['!a' => 1, "é" => 2, 'with;semi' => 3, 'with{brace' => 4, 'sp ace' => 5, "nl\n" => 6, '' => 7];
$sessions['objects'] = ['p' => new P, 'q' => new Q, 'm' => new M, 'ser' => new Ser, 'enum' => Suit::S, 't' => new Typed];
$big = []; for ($i = 0; $i < 2000; $i++) $big["key$i"] = ['n' => $i, 's' => str_repeat(chr(65 + $i % 26), $i % 50), 'f' => $i / 7];
$sessions['large'] = $big;
$sessions['huge string'] = ['blob' => rbytes(200000)];
for ($i = 0; $i < 60; $i++) {
  $s = []; for ($j = mt_rand(1, 8); $j > 0; $j--) $s['k' . mt_rand(0, 99) . rstring()] = rvalue(0);
  $sessions["random $i"] = $s;
}
ini_set('session.save_path', getenv('SESS_DIR'));
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
foreach (['php', 'php_binary', 'php_serialize', 'igbinary'] as $h) {
  ini_set('session.serialize_handler', $h);
  session_start();
  foreach ($sessions as $name => $data) {
    $_SESSION = $data;
    $enc = session_encode();
    $d = [];
    foreach ($data as $k => $v) {
      if ($h == 'php_binary' && strlen($k) > 127) continue;  // php_binary drops them
      $d[] = [is_int($k) ? ['i', $k] : ['s', b64($k)], desc($v)];
    }
    emit($h, $name, $enc === false ? '' : $enc, ['a', $d]);
  }
  $_SESSION = [];
  session_abort();
}
"""


def php(code: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run PHP code (without ``<?php``) with ``php -n`` and the base ini."""
    args = [require("php"), "-n", "-d", "extension=igbinary.so"]
    for k, v in PHP_BASE_INI.items():
        args += ["-d", f"{k}={v}"]
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "t.php"
        script.write_text("<?php\n" + PRELUDE + code)
        sess = Path(d) / "s"
        sess.mkdir()
        proc = subprocess.run(
            args + [str(script)], input=stdin, capture_output=True, timeout=120, env={"SESS_DIR": str(sess)}
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace") + proc.stdout[-2000:].decode(errors="replace")
    return proc


# --------------------------------------------------------------------------------------
# description of a decoded Python value, same shape as desc() in PHP
# --------------------------------------------------------------------------------------


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def raw(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def desc(v: Any, depth: int = 0) -> Any:
    """The tree PHP's desc() prints for the equivalent PHP value."""
    if depth > 60:
        return ["deep"]
    if type(v) is PHPReference:
        return desc(v.value, depth)
    if v is None:
        return None
    if isinstance(v, bool):
        return ["b", int(v)]
    if isinstance(v, int):
        return ["i", v]
    if isinstance(v, float):
        return ["d", float_to_string(v, -1)]
    if isinstance(v, (bytearray, memoryview)):
        v = bytes(v)
    if isinstance(v, (str, bytes)):
        return ["s", b64(raw(v))]
    if isinstance(v, (list, tuple)):
        return ["a", [[["i", i], desc(x, depth + 1)] for i, x in enumerate(v)]]
    if isinstance(v, dict):
        return ["a", [[key_desc(codec.php_array_key(k)), desc(x, depth + 1)] for k, x in v.items()]]
    if type(v) is PHPEnum:
        return ["E", v.class_name, v.case]
    if type(v) is PHPCustomObject:
        return ["C", v.class_name, b64(v.data)]
    if type(v) is PHPObject:
        # PHP's desc() lists properties through an array, so "5" shows as 5 there too
        return ["O", v.class_name, [[key_desc(codec.php_array_key(k)), desc(x, depth + 1)]
                                    for k, x in v.properties.items()]]
    raise TypeError(type(v))


def key_desc(k: Any) -> list[Any]:
    return ["i", k] if isinstance(k, int) else ["s", b64(raw(k))]


def same_desc(ours: Any, php_desc: Any) -> bool:
    """Compare trees; PHP's json_encode cannot print NAN/INF, so floats are strings."""
    return json.loads(json.dumps(ours)) == php_desc


# --------------------------------------------------------------------------------------
# 1. PHP -> phpsess
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    proc = php(GENERATE)
    records = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    assert len(records) > 900
    return records


def records(corpus: list[dict[str, Any]], kind: str) -> Iterator[tuple[str, bytes, Any]]:
    for r in corpus:
        if r["kind"] == kind:
            yield r["name"], base64.b64decode(r["payload"]), r["desc"]


@pytest.mark.parametrize(("fast", "native"), [(True, True), (True, False), (False, False)],
                         ids=["compiled-path", "fast-path", "exact-parser"])
def test_php_serialize_output_round_trips_byte_exact(corpus: list[dict[str, Any]], fast: bool, native: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "FAST_PATH", fast)
    monkeypatch.setattr(codec, "NATIVE_PATH", native)  # (interpreted, in the plain build)
    failures = []
    count = 0
    for name, payload, php_desc in records(corpus, "ser"):
        count += 1
        value = codec.loads(payload)
        again = codec.dumps(value)
        if again != payload:
            failures.append((name, payload[:200], again[:200]))
        elif php_desc is not None and not same_desc(desc(value), php_desc):
            failures.append((name, payload[:200], "decoded value differs from PHP's"))
    assert count > 750
    assert not failures, failures[:5]


def test_igbinary_serialize_output_round_trips_byte_exact(corpus: list[dict[str, Any]]) -> None:
    """What ``igbinary_serialize()`` wrote decodes to PHP's value and encodes back unchanged."""
    failures = []
    count = 0
    for name, payload, php_desc in records(corpus, "igb"):
        count += 1
        value = igbinary.loads(payload)
        again = igbinary.dumps(value)
        if again != payload:
            failures.append((name, payload[:200].hex(), again[:200].hex()))
        elif not same_desc(desc(value), php_desc):
            failures.append((name, payload[:200].hex(), "decoded value differs from PHP's"))
    assert count > 750
    assert not failures, failures[:5]


@pytest.mark.parametrize("handler", encoding.HANDLERS)
@pytest.mark.parametrize(("fast", "native"), [(True, True), (True, False), (False, False)],
                         ids=["compiled-path", "fast-path", "exact-parser"])
def test_php_session_encode_output_round_trips_byte_exact(corpus: list[dict[str, Any]], handler: str, fast: bool,
                                                          native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "FAST_PATH", fast)
    monkeypatch.setattr(codec, "NATIVE_PATH", native)  # (interpreted, in the plain build)
    failures = []
    count = 0
    for name, payload, php_desc in records(corpus, handler):
        count += 1
        data = encoding.decode(payload, handler)
        again = encoding.encode(data, handler) or b""
        if again != payload:
            failures.append((name, payload[:300], again[:300]))
            continue
        if not payload:  # PHP wrote "nothing" (a "|" in a key): there is nothing to compare
            assert handler == "php" and data == {}
            continue
        if not same_desc(desc(data), php_desc):
            failures.append((name, "decoded session differs from PHP's"))
    assert count >= 66
    assert not failures, failures[:3]


def test_cross_key_references_decode_as_shared_boxes(corpus: list[dict[str, Any]]) -> None:
    payload = next(p for n, p, _ in records(corpus, "php") if n == "spec example")
    assert payload == (
        b'a|O:8:"stdClass":1:{s:1:"p";i:1;}b|r:1;c|a:2:{i:0;i:1;i:1;i:2;}d|R:4;'
        b"e|a:2:{i:0;i:5;i:1;R:8;}f|R:8;"
    )
    data = encoding.decode(payload, "php")
    assert data["a"] is data["b"]
    assert data["c"] is data["d"] and type(data["c"]) is PHPReference
    assert data["e"][0] is data["e"][1] is data["f"]
    binary = next(p for n, p, _ in records(corpus, "php_binary") if n == "spec example")
    assert binary == payload.replace(b"a|", b"\x01a").replace(b"b|", b"\x01b").replace(b"c|", b"\x01c").replace(
        b"d|", b"\x01d").replace(b"e|", b"\x01e").replace(b"f|", b"\x01f")


# --------------------------------------------------------------------------------------
# 2. phpsess -> PHP
# --------------------------------------------------------------------------------------

READBACK = r"""
$in = fopen('php://stdin', 'r');
ini_set('session.save_path', getenv('SESS_DIR'));
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
while (($line = fgets($in)) !== false) {
  [$kind, $p] = explode(' ', trim($line));
  $payload = base64_decode($p);
  if ($kind == 'ser') {
    $v = unserialize($payload);
    $ok = $v !== false || $payload === 'b:0;';
    emit($kind, $ok ? 'ok' : 'fail', $ok ? serialize($v) : '', $ok ? desc($v) : null);
  } elseif ($kind == 'igb') {
    $v = igbinary_unserialize($payload);
    $ok = $v !== null || $payload === "\0\0\0\2\0";
    emit($kind, $ok ? 'ok' : 'fail', $ok ? igbinary_serialize($v) : '', $ok ? desc($v) : null);
  } else {
    ini_set('session.serialize_handler', $kind);
    session_start();
    $_SESSION = [];
    $ok = session_decode($payload);
    if ($ok) { $enc = session_encode(); $d = []; foreach ($_SESSION as $k => $x) $d[] = [is_int($k) ? ['i', $k] : ['s', b64($k)], desc($x)]; }
    emit($kind, $ok ? 'ok' : 'fail', $ok ? (string) $enc : '', $ok ? ['a', $d] : null);
    if (session_status() == PHP_SESSION_ACTIVE) session_abort();
  }
}
"""


def python_values() -> list[Any]:
    """Values built in Python: every mapped type, edge cases, and random trees."""
    o = PHPObject("stdClass", {"p": 1})
    box = PHPReference([1, 2])
    x = PHPReference(5)
    values: list[Any] = [
        None, True, False, 0, -1, codec.PHP_INT_MAX, codec.PHP_INT_MIN,
        0.0, -0.0, 0.1, 1.0, 1e25, 1e16, 1e17, 1.5e-7, 5e-324, float("inf"), float("-inf"), float("nan"),
        "", "hé", "🎉", "a;b|c}{", "\0", b"\xff\xfe\x00", b"plain ascii bytes", bytearray(b"\x80"),
        [], [1, 2, 3], (1, "two", 3.0), {}, {"x": True, 0: None}, {2: "b", 1: "a"}, {"5": 1, "05": 2, "-0": 3},
        {-3: "neg"}, {b"\xff": 1, "k": [[], {}]}, {True: "bool key"},
        PHPObject("stdClass", {}), PHPObject("P", {"a": 1, "\0*\0b": 2, "\0P\0c": 3, "n": None}),
        PHPObject("Undefined_Class", {"x": [1]}), PHPObject("M", {"k": 5, 3: "x"}),
        PHPCustomObject("Ser", b"opaque;data}"), PHPEnum("Suit", "H"), [PHPEnum("U", "X"), PHPEnum("U", "X")],
        [o, o, {"o": o}], [box, box], [x, x, [x]], [PHPReference(o), o],
        list(range(3000)), {f"k{i}": i / 3 for i in range(500)},
    ]
    rnd = random.Random(7)

    def scalar() -> Any:
        c = rnd.randrange(8)
        if c == 0:
            return rnd.choice([None, True, False])
        if c == 1:
            return rnd.randint(-(2**63), 2**63 - 1)
        if c == 2:
            return rnd.randint(-100, 100)
        if c == 3:
            return rnd.uniform(-1e6, 1e6) * 10.0 ** rnd.randint(-20, 20)
        if c == 4:
            return bytes(rnd.randrange(256) for _ in range(rnd.randrange(10)))
        return "".join(rnd.choice("ab;|{}\"é\0 1") for _ in range(rnd.randrange(8)))

    def tree(depth: int) -> Any:
        if depth > 4 or rnd.randrange(3) == 0:
            return scalar()
        c = rnd.randrange(4)
        if c == 0:
            return [tree(depth + 1) for _ in range(rnd.randrange(5))]
        if c == 1:
            # (no "5"-and-5 pairs: PHP has one key for both, see test_codec)
            return {rnd.choice([rnd.randint(-5, 9), "0" + str(rnd.randint(0, 9)), "k" + str(rnd.randrange(9))]):
                    tree(depth + 1) for _ in range(rnd.randrange(5))}
        if c == 2:
            return PHPObject("stdClass", {f"p{i}": tree(depth + 1) for i in range(rnd.randrange(4))})
        return PHPEnum("Suit", rnd.choice(["H", "S"]))

    values += [tree(0) for _ in range(200)]
    return values


def python_sessions() -> list[dict[Any, Any]]:
    o = PHPObject("P", {"a": 1, "\0*\0b": 2, "\0P\0c": 3, "n": None})
    box = PHPReference({"shared": True})
    return [
        {"a": 1, "s": "x|y", "f": 0.1, "bin": b"\xff"},
        {"obj": o, "same": o, "r1": box, "r2": box, "list": [box, PHPReference(3)]},
        {"é": "utf-8 key", "!x": 1, "semi;colon": [], "empty": {}},
        {f"k{i}": {"n": i, "s": "v" * (i % 20)} for i in range(300)},
    ]


def test_php_reads_what_phpsess_writes() -> None:
    lines = []
    expected = []
    for v in python_values():
        payload = codec.dumps(v)
        lines.append(f"ser {b64(payload)}")
        expected.append(("ser", payload, desc(v)))
        payload = igbinary.dumps(v)
        lines.append(f"igb {b64(payload)}")
        expected.append(("igb", payload, desc(v)))
    for sess in python_sessions():
        for handler in encoding.HANDLERS:
            payload = encoding.encode(sess, handler) or b""
            lines.append(f"{handler} {b64(payload)}")
            expected.append((handler, payload, ["a", [[key_desc(k), desc(x)] for k, x in sess.items()]]))
    proc = php(READBACK, stdin="\n".join(lines).encode() + b"\n")
    results = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    assert len(results) == len(expected), proc.stdout[-500:]
    failures = []
    for (kind, payload, our_desc), r in zip(expected, results):
        if r["name"] != "ok":
            failures.append((kind, payload[:120], "PHP refused it"))
        elif kind in IGBINARY:
            # PHP writes again what it decoded, not what it read: every empty array is
            # PHP's one shared empty array, a reference left with one holder loses its
            # marker.  Those bytes must in turn be phpsess's, unchanged.
            again = base64.b64decode(r["payload"])
            if kind == "igb" and igbinary.dumps(igbinary.loads(again)) != again:
                failures.append((kind, payload[:120], again[:120]))
            if kind == "igbinary" and encoding.encode(encoding.decode(again, kind), kind) != again:
                failures.append((kind, payload[:120], again[:120]))
            if not same_desc(our_desc, r["desc"]):
                failures.append((kind, payload[:120], "PHP decoded another value"))
        elif base64.b64decode(r["payload"]) != payload:
            failures.append((kind, payload[:120], base64.b64decode(r["payload"])[:120]))
        elif not same_desc(our_desc, r["desc"]):
            failures.append((kind, payload[:120], "PHP decoded another value"))
    assert not failures, failures[:5]


IGBINARY = ("igb", "igbinary")


# --------------------------------------------------------------------------------------
# 3. accept / refuse like PHP
# --------------------------------------------------------------------------------------

ACCEPT = r"""
$in = fopen('php://stdin', 'r');
ini_set('session.save_path', getenv('SESS_DIR'));
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
while (($line = fgets($in)) !== false) {
  [$kind, $p] = explode(' ', trim($line) . ' ');
  $payload = base64_decode($p);
  if ($kind == 'ser') {
    $v = @unserialize($payload);
    echo ($v !== false || $payload === 'b:0;') ? "ok:" . b64(serialize($v)) . "\n" : "fail\n";
  } elseif ($kind == 'igb') {
    $v = @igbinary_unserialize($payload);
    echo ($v !== null || $payload === "\0\0\0\2\0") ? "ok:" . b64(igbinary_serialize($v)) . "\n" : "fail\n";
  } else {
    ini_set('session.serialize_handler', $kind);
    session_start();
    $ok = @session_decode($payload);
    echo $ok ? "ok\n" : "fail\n";
    if (session_status() == PHP_SESSION_ACTIVE) session_abort();
  }
}
"""


def test_php_agrees_on_what_is_accepted_and_refused() -> None:
    cases: list[tuple[str, bytes, bool]] = []
    for value, wire in unit_codec.CASES + unit_codec.LOADS_ONLY:
        cases.append(("ser", wire, True))
    for wire in unit_codec.BAD:
        cases.append(("ser", wire, False))
    for wire in unit_codec.TRAILING:  # PHP 8.2 ignores what follows the value; loads() refuses it
        cases.append(("ser", wire, True))
    for handler, payload, ok in unit_encoding.ACCEPTANCE:
        cases.append((handler, payload, ok))
    stdin = "".join(f"{k} {b64(p)}\n" for k, p, _ in cases).encode()
    proc = php(ACCEPT, stdin=stdin)
    verdicts = proc.stdout.decode().split()
    assert len(verdicts) == len(cases)
    wrong = [(k, p, ok) for (k, p, ok), v in zip(cases, verdicts) if v.startswith("ok") != ok]
    assert not wrong, wrong[:10]
    # what PHP makes of the accepted non-canonical input is what phpsess makes of it
    trailing = set(unit_codec.TRAILING)
    differ = []
    for (kind, payload, ok), v in zip(cases, verdicts):
        if kind == "ser" and ok:
            ours = codec.dumps(codec.loads_prefix(payload)[0] if payload in trailing else codec.loads(payload))
            if base64.b64decode(v[3:]) != ours:
                differ.append((payload, base64.b64decode(v[3:]), ours))
    assert not differ, differ[:5]


def test_table_values_serialize_as_php_prints_them() -> None:
    """Each CASES row: PHP's serialize() of the PHP expression gives the expected bytes."""
    code = "".join(f"echo b64(serialize({expr})), \"\\n\";\n" for expr, _ in unit_codec.PHP_EXPRESSIONS)
    proc = php(code)
    got = [base64.b64decode(x) for x in proc.stdout.decode().split()]
    want = [wire for _, wire in unit_codec.PHP_EXPRESSIONS]
    assert got == want


@pytest.mark.parametrize("precision", [-1, 0, 1, 2, 3, 5, 12, 17, 25])
def test_floats_format_as_php_for_every_serialize_precision(precision: int) -> None:
    rnd = random.Random(precision)
    floats = [0.0, -0.0, 1.0, 0.1, 1e25, 1e17, 1e16, 99.5, 1.5e-7, 5e-324, math.inf, -math.inf, math.nan, 1 / 3]
    floats += [rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-30, 30) for _ in range(300)]
    import struct

    floats += [struct.unpack("<d", rnd.randbytes(8))[0] for _ in range(300)]
    code = f"ini_set('serialize_precision', '{precision}');\n$in = explode(' ', trim(stream_get_contents(STDIN)));\n"
    code += "foreach ($in as $h) { echo fmt_float(unpack('e', hex2bin($h))[1]), \"\\n\"; }\n"
    proc = php(code, stdin=" ".join(struct.pack("<d", f).hex() for f in floats).encode())
    php_out = proc.stdout.decode().split("\n")[: len(floats)]
    ours = [float_to_string(f, precision) for f in floats]
    assert ours == php_out


#: payloads where a later equal key replaces a value an r: further on names (found by
#: tests/test_codec.py's round-trip property)
COLLIDING = [
    b'a:2:{i:0;O:8:"stdClass":1:{s:0:"";a:2:{s:0:"";E:6:"Suit:H";s:0:"";O:8:"stdClass":0:{}}}i:1;r:4;}',
    b'a:3:{s:0:"";O:8:"stdClass":0:{}s:0:"";O:8:"stdClass":1:{s:1:"a";i:1;}i:0;r:2;}',
]


@pytest.mark.parametrize("payload", COLLIDING)
def test_colliding_keys_decode_as_php_does(payload: bytes) -> None:
    """serialize(unserialize(p)) in PHP is dumps(loads(p)) here, byte for byte."""
    code = (
        '<?php enum Suit: string { case H = "h"; } '
        '$v = unserialize(file_get_contents("php://stdin")); echo $v === false ? "false" : serialize($v);'
    )
    proc = run_php(code, stdin=payload)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == codec.dumps(codec.loads(payload))
