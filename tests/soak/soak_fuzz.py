"""Fuzz ``unserialize`` (``codec.loads``) and the three session decoders with generated and
mutated inputs, measuring time *and memory* per call.  No I/O but stdout.

Each input goes through ``codec.loads`` and ``encoding.decode`` with ``php``,
``php_binary`` and ``php_serialize``.  Inputs come from four generators, in turn:

* ``grammar``: values built from the serialize grammar with the lengths, counts,
  numbers and nesting an attacker would pick (off by one, negative, huge, leading
  ``+``/``0``, ``r:``/``R:`` pointing anywhere), wrapped in the three session formats;
* ``mutant``: valid payloads of random values (``codec.dumps``/``encoding.encode``)
  with bytes flipped, inserted, deleted, duplicated, spliced, numbers replaced;
* ``bytes``: random bytes, biased to the format's punctuation;
* ``shape``: pathological shapes (deep nesting, huge declared sizes, long runs).

A problem is: any exception other than ``SessionDecodeError``; a call whose peak of
traced allocations (``tracemalloc``, the decoded value included) exceeds ``--max-mb``
MB; a call slower than ``--max-ms`` (timed under tracing; a call over the limit is
re-timed three times with tracing off and the fastest counts, so tracing, a
garbage-collector pause or a busy machine is not blamed on the input).  Generated
inputs are at most 64 KiB; the few larger shapes (up to 700 KB) get both limits scaled
by their size in 64 KiB units, i.e. the bound is linear cost.

    python -m tests.soak.soak_fuzz --count 1000000
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from phpsess.core import codec, formats as encoding  # noqa: E402
from phpsess.core.codec import PHPCustomObject, PHPEnum, PHPObject, PHPReference  # noqa: E402
from phpsess.errors import SessionDecodeError, SessionEncodeError  # noqa: E402
from tests.soak.stack import stop_on_signals  # noqa: E402

__all__ = ["DECODERS", "inputs", "fuzz", "main"]

DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("loads", codec.loads),
    ("php", lambda b: encoding.decode(b, "php")),
    ("php_binary", lambda b: encoding.decode(b, "php_binary")),
    ("php_serialize", lambda b: encoding.decode(b, "php_serialize")),
]

_INTS = [b"0", b"1", b"-1", b"+1", b"01", b"-0", b"2", b"9", b"127", b"128", b"255", b"256", b"4096", b"4097",
         b"65535", b"2147483647", b"2147483648", b"-2147483649", b"4294967296", b"9223372036854775807",
         b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809", b"99999999999999999999",
         b"1e3", b"0x10", b" 1", b"1 ", b"", b"-", b"+", b"00000000000000000000001"]
_FLOATS = [b"0", b"-0", b"0.1", b"1.5", b"1e308", b"1e309", b"-1e400", b"1E-400", b"NAN", b"INF", b"-INF", b"nan",
           b"1.", b".5", b"+.5e-3", b"1e", b"e1", b"0x1p3", b"1_000", b"1.7976931348623157E+308", b"4.9E-324"]
_CLASSES = [b"stdClass", b"A", b"\\A", b"A\\B", b"a b", b"", b"1A", b"__PHP_Incomplete_Class", b"ArrayObject",
            b"Closure", b"Generator", b"SplObjectStorage", b"x" * 300, b"\xc3\xa9t\xc3\xa9", b"A:B"]
_STRS = [b"", b"a", b"|", b";", b'"', b"}", b"{", b"\x00", b"\x00*\x00p", b"\x00A\x00p", b"\xff\xfe",
         b"\xc3\xa9", b"\xe2\x82", b"s:1:\"a\";", b"a|b", b"x" * 200, b"\\", b"\\61", b"\\zz"]


def _num(r: random.Random, true: int) -> bytes:
    """A length or count: usually right, sometimes off by one, sometimes an attacker's pick."""
    x = r.random()
    if x < 0.75:
        return str(true).encode()
    if x < 0.9:
        return str(max(0, true + r.choice((-2, -1, 1, 2)))).encode()
    return r.choice(_INTS)


def grammar_value(r: random.Random, depth: int = 0) -> bytes:
    """One serialized value from the grammar, with hostile numbers here and there."""
    k = r.randrange(16) if depth < 6 else r.randrange(8)
    if k == 0:
        return b"N;"
    if k == 1:
        return b"b:" + r.choice([b"0", b"1", b"2", b"-1", b"", b"01"]) + b";"
    if k == 2:
        return b"i:" + r.choice(_INTS) + b";"
    if k == 3:
        return b"d:" + r.choice(_FLOATS) + b";"
    if k in (4, 5):
        s = r.choice(_STRS) if r.random() < 0.5 else bytes(r.randrange(256) for _ in range(r.randrange(12)))
        return b"s:" + _num(r, len(s)) + b':"' + s + b'";'
    if k == 6:
        s = r.choice([b"abc", b"\\61\\62", b"\\", b"\\6", b"\\zz", b"\\00"])
        return b"S:" + _num(r, len(s) - s.count(b"\\") * 2) + b':"' + s + b'";'
    if k == 7:
        return r.choice([b"r:", b"R:"]) + r.choice(_INTS[:12] + [b"1", b"2", b"3"]) + b";"
    if k == 8:
        name = r.choice(_CLASSES)
        return b"E:" + _num(r, len(name) + 2) + b':"' + name + b":" + r.choice([b"X", b"", b"a:b"]) + b'";'
    if k in (9, 10, 11):
        n = r.randrange(5)
        body = b"".join(_key(r) + grammar_value(r, depth + 1) for _ in range(n))
        return b"a:" + _num(r, n) + b":{" + body + b"}"
    if k in (12, 13):
        name = r.choice(_CLASSES)
        n = r.randrange(4)
        body = b"".join(_prop(r) + grammar_value(r, depth + 1) for _ in range(n))
        return b"O:" + _num(r, len(name)) + b':"' + name + b'":' + _num(r, n) + b":{" + body + b"}"
    if k == 14:
        name = r.choice(_CLASSES)
        data = r.choice([b"", b"x", b"a:0:{}", b"}", b"{}", b"i:1;"])
        return b"C:" + _num(r, len(name)) + b':"' + name + b'":' + _num(r, len(data)) + b":{" + data + b"}"
    return r.choice([b"", b";", b"x", b"i:1", b"s:1:\"a\"", b"a:1:{", b"O:", b"}"])


def _key(r: random.Random) -> bytes:
    if r.random() < 0.5:
        return b"i:" + r.choice(_INTS[:16]) + b";"
    s = r.choice(_STRS)
    return b"s:" + _num(r, len(s)) + b':"' + s + b'";'


def _prop(r: random.Random) -> bytes:
    s = r.choice([b"a", b"\x00*\x00b", b"\x00A\x00c", b"\x00", b"\x00*", b"", b"\x00\x00"])
    return b"s:" + _num(r, len(s)) + b':"' + s + b'";'


def grammar_session(r: random.Random) -> bytes:
    """A payload of one of the three session formats, built from grammar values."""
    fmt = r.randrange(3)
    n = r.randrange(1, 5)
    if fmt == 0:  # php: key|value...
        return b"".join(r.choice([b"k", b"", b"a|b", b"\xff", b"x" * r.randrange(300), b"k!"]) + b"|"
                        + grammar_value(r) for _ in range(n))
    if fmt == 1:  # php_binary: <len byte>key value...
        out = b""
        for _ in range(n):
            key = r.choice([b"k", b"", b"key", b"x" * 127, b"x" * 200])
            lb = len(key) if r.random() < 0.8 else r.randrange(256)
            out += bytes([min(lb, 255)]) + key + grammar_value(r)
        return out
    return grammar_value(r)


def random_value(r: random.Random, depth: int = 0) -> Any:
    """A random Python value of the mapped types (for valid payloads to mutate)."""
    if depth > 3 or r.random() < 0.4:
        return r.choice([None, True, False, r.randint(-(2 ** 63), 2 ** 63 - 1), r.randint(-5, 300), r.random() * 1e6,
                         math.inf, math.nan, -0.0, "", "é|;}", "s" * r.randrange(100), b"\xff\x00",
                         PHPEnum("Suit", "Hearts"), PHPCustomObject("Ser", b"x;}")])
    k = r.randrange(5)
    if k == 0:
        return [random_value(r, depth + 1) for _ in range(r.randrange(5))]
    if k == 1:
        return {r.choice([r.randint(-2, 9), f"k{r.randrange(9)}"]): random_value(r, depth + 1)
                for _ in range(r.randrange(5))}
    if k == 2:
        return PHPObject(r.choice(["stdClass", "User", "NS\\Cart"]),
                         {r.choice(["a", "\0*\0b", "\0User\0c"]): random_value(r, depth + 1)
                          for _ in range(r.randrange(4))})
    if k == 3:
        box = PHPReference(random_value(r, depth + 1))
        return [box, random_value(r, depth + 1), box]
    o = PHPObject("stdClass", {})
    o.properties["self"] = o  # an object that holds itself (r: back to it)
    return [o, random_value(r, depth + 1), o]


def valid_payloads(r: random.Random, n: int) -> list[bytes]:
    """Valid ``serialize()`` outputs and session payloads of all three formats."""
    out = []
    for _ in range(n):
        out.append(codec.dumps(random_value(r)))
        sess = {f"k{i}": random_value(r, 1) for i in range(r.randrange(1, 4))}
        for h in encoding.HANDLERS:
            p = encoding.encode(sess, h)
            if p:
                out.append(p)
    return out


_TOKENS = [b"N;", b"b:1;", b"i:0;", b"d:0.5;", b's:1:"a";', b"a:0:{}", b"a:1:{", b"}", b"r:1;", b"R:1;", b"R:2;",
           b'O:8:"stdClass":0:{}', b'O:8:"stdClass":1:{', b'C:3:"Ser":0:{}', b'E:6:"U:Xyzz";', b";", b":", b"|",
           b"\x01a", b"\x80", b'"', b"{", b"s:99999999:\"", b"a:99999999:{", b"i:99999999999999999999;"]


def mutate(r: random.Random, data: bytes, other: bytes) -> bytes:
    """``data`` with 1 to 4 random edits (``other`` is spliced in sometimes)."""
    b = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(9)
        i = r.randint(0, len(b))
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << r.randrange(8)
        elif op == 1 and b:
            b[min(i, len(b) - 1)] = r.randrange(256)
        elif op == 2:
            b[i:i] = r.choice(_TOKENS)
        elif op == 3 and b:
            del b[i:i + r.randint(1, 16)]
        elif op == 4:
            del b[i:]
        elif op == 5 and b:
            j = r.randint(0, len(b))
            b[i:i] = b[min(i, j):max(i, j)][:512]
        elif op == 6:
            pos = b.find(b":", i)
            if pos >= 0:
                end = pos + 1
                while end < len(b) and 48 <= b[end] <= 57:
                    end += 1
                b[pos + 1:end] = r.choice(_INTS)
        elif op == 7:
            j = r.randint(0, len(other))
            b[i:] = other[j:]
        else:
            b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
    return bytes(b[:65536])


def random_bytes(r: random.Random) -> bytes:
    """Random bytes, mostly the format's own punctuation and digits."""
    alphabet = b'aAbCdEiNOrRsS:;{}|"0123456789-+.\x00\x01\x80\xff'
    n = r.randrange(64)
    if r.random() < 0.7:
        return bytes(r.choice(alphabet) for _ in range(n))
    return bytes(r.randrange(256) for _ in range(n))


def shapes() -> list[bytes]:
    """Pathological shapes: deep nesting past the 4096 limit, huge declared sizes, long runs."""
    out = []
    for depth in (64, 4095, 4096, 4097, 20000):
        out.append(b"a:1:{i:0;" * depth + b"N;" + b"}" * depth)
        out.append(b'O:8:"stdClass":1:{s:1:"a";' * depth + b"N;" + b"}" * depth)
        out.append(b"a:1:{i:0;" * depth)
        out.append(b"k|" + b"a:1:{i:0;" * depth + b"N;" + b"}" * depth)
    for n in (b"2147483647", b"9223372036854775807", b"99999999999999999999", b"4294967295"):
        out += [b"a:" + n + b":{}", b"a:" + n + b":{i:0;N;}", b"s:" + n + b':"abc";', b'S:' + n + b':"\\61";',
                b'O:8:"stdClass":' + n + b":{}", b'C:3:"Ser":' + n + b":{x}", b"O:" + n + b':"A":0:{}',
                b"R:" + n + b";", b"r:" + n + b";", b"k|a:" + n + b":{"]
    out.append(b"a:60000:{" + b"i:0;i:0;" * 60000 + b"}")
    out.append(b"a:60000:{" + b"".join(b"i:%d;R:1;" % i for i in range(60000)) + b"}")
    out.append(b"a:30000:{" + b"".join(b"i:%d;a:0:{}" % i for i in range(30000)) + b"}")
    out.append(b"a:2:{i:0;a:1:{i:0;N;}i:1;" + b"R:2;" * 30000 + b"}")
    out.append(b"x|" * 30000)
    out.append(b"".join(b"k%d|i:1;" % i for i in range(30000)))
    out.append(b"\x7f" + b"k" * 127 + b"N;" * 1000)
    out.append(b's:100000:"' + b"x" * 100000 + b'";')
    out.append(b'S:100000:"' + b"\\61" * 100000 + b'";')
    out.append(b"i:" + b"9" * 100000 + b";")
    out.append(b"d:" + b"9" * 100000 + b";")
    out.append(b"s:" + b"0" * 100000 + b'1:"a";')
    return out


def inputs(count: int, seed: int, max_shape_bytes: int | None = None) -> Iterator[tuple[str, bytes]]:
    """``count`` (generator name, input) pairs, deterministic for a seed; shapes longer than
    ``max_shape_bytes`` are left out (None: all)."""
    r = random.Random(seed)
    special = [s for s in shapes() if max_shape_bytes is None or len(s) <= max_shape_bytes]
    pool = valid_payloads(r, 300)
    for n in range(count):
        if n < len(special):
            yield "shape", special[n]
            continue
        k = n % 4
        if k == 0:
            yield "grammar", grammar_session(r) if r.random() < 0.5 else grammar_value(r)
        elif k == 1 or k == 2:
            yield "mutant", mutate(r, r.choice(pool), r.choice(pool))
        else:
            yield "bytes", random_bytes(r)


def _timed(decode: Callable[[bytes], Any], data: bytes) -> float:
    t0 = time.perf_counter()
    try:
        decode(data)
    except SessionDecodeError:
        pass
    return time.perf_counter() - t0


def _encode_back(name: str, value: Any) -> None:
    """Encode what decoder ``name`` gave, as its counterpart would (raises SessionEncodeError)."""
    if name == "loads" or (name == "php_serialize" and not isinstance(value, dict)):
        codec.dumps(value)
    else:
        encoding.encode(value, name)


def fuzz(count: int, *, seed: int = 1, max_ms: float = 100.0, max_mb: float = 4.0,
         max_shape_bytes: int | None = None, progress: Callable[[str], None] | None = None,
         trace_memory: bool = True, reencode: bool = False) -> dict[str, Any]:
    """Run ``count`` inputs through every decoder (time and, with ``trace_memory``, traced
    memory of every call; with ``reencode``, what decodes must encode again); returns
    figures and ``problems``."""
    problems: list[dict[str, Any]] = []
    outcomes: collections.Counter[str] = collections.Counter()
    by_gen: collections.Counter[str] = collections.Counter()
    slowest: tuple[float, str, bytes] = (0.0, "", b"")
    biggest: tuple[int, str, bytes] = (0, "", b"")
    biggest_small: tuple[int, str, bytes] = (0, "", b"")
    longest = 0
    calls = 0
    traced = 0
    retimed = 0
    # tracemalloc runs throughout (starting and stopping it per call leaks in CPython);
    # a call over the time limit is re-timed with tracing off
    if trace_memory:
        tracemalloc.start(1)
    started = time.perf_counter()
    try:
        for n, (gen, data) in enumerate(inputs(count, seed, max_shape_bytes)):
            by_gen[gen] += 1
            longest = max(longest, len(data))
            scale = max(1.0, len(data) / 65536)  # bigger inputs may take proportionally longer
            for name, decode in DECODERS:
                calls += 1
                if trace_memory:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                t0 = time.perf_counter()
                try:
                    value = decode(data)
                    outcome = "ok"
                except SessionDecodeError:
                    value = None
                    outcome = "refused"
                except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                    problems.append({"decoder": name, "what": f"{type(exc).__name__}: {exc}"[:300],
                                     "input": repr(data[:300]), "size": len(data)})
                    continue
                elapsed = time.perf_counter() - t0
                if trace_memory:
                    peak = tracemalloc.get_traced_memory()[1] - base
                    traced += 1
                    if peak > max_mb * 2 ** 20 * scale:
                        problems.append({"decoder": name, "what": f"memory: peak {peak / 2 ** 20:.1f} MB",
                                         "input": repr(data[:300]), "size": len(data)})
                    if peak > biggest[0]:
                        biggest = (peak, name, data)
                    if len(data) <= 65536 and peak > biggest_small[0]:
                        biggest_small = (peak, name, data)
                if reencode and outcome == "ok":
                    try:
                        _encode_back(name, value)
                    except SessionEncodeError as exc:
                        problems.append({"decoder": name, "what": f"decoded value does not encode: {exc}"[:300],
                                         "input": repr(data[:300]), "size": len(data)})
                del value
                if elapsed * 1000 > max_ms * scale:
                    # re-time without tracing: tracing, a garbage-collector pause or a busy
                    # machine is not the input's fault
                    if trace_memory:
                        tracemalloc.stop()
                    elapsed = min(_timed(decode, data) for _ in range(3))
                    if trace_memory:
                        tracemalloc.start(1)
                    retimed += 1
                    if elapsed * 1000 > max_ms * scale:
                        problems.append({"decoder": name, "what": f"slow: {elapsed * 1000:.1f} ms",
                                         "input": repr(data[:300]), "size": len(data)})
                if elapsed > slowest[0]:
                    slowest = (elapsed, name, data)
                outcomes[f"{name} {outcome}"] += 1
            if progress is not None and n and n % 100000 == 0:
                progress(f"{n} inputs, {time.perf_counter() - started:.0f} s, {len(problems)} problems")
    finally:
        if trace_memory:
            tracemalloc.stop()
    total = time.perf_counter() - started
    return {
        "inputs": count,
        "decoder_calls": calls,
        "calls_traced_for_memory": traced,
        "calls_retimed_without_tracing": retimed,
        "seconds": round(total, 1),
        "by_generator": dict(by_gen),
        "outcomes": dict(sorted(outcomes.items())),
        "largest_input_bytes": longest,
        "slowest_call_ms_under_tracing": round(slowest[0] * 1000, 2),
        "slowest_call": f"{slowest[1]} on {len(slowest[2])} bytes: {slowest[2][:50]!r}",
        "largest_peak_mb": round(biggest[0] / 2 ** 20, 2),
        "largest_peak": f"{biggest[1]} on {len(biggest[2])} bytes: {biggest[2][:50]!r}",
        "largest_peak_mb_inputs_up_to_64k": round(biggest_small[0] / 2 ** 20, 3),
        "largest_peak_up_to_64k": f"{biggest_small[1]} on {len(biggest_small[2])} bytes: {biggest_small[2][:50]!r}",
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "limits": {"max_ms": max_ms, "max_mb": max_mb},
        "problems": problems[:50],
        "problem_count": len(problems),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the figures as JSON, exit 1 when a problem was found."""
    stop_on_signals()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-ms", type=float, default=100.0)
    ap.add_argument("--max-mb", type=float, default=4.0)
    ap.add_argument("--reencode", action="store_true", help="also check that what decodes encodes again")
    args = ap.parse_args(argv)
    report = fuzz(args.count, seed=args.seed, max_ms=args.max_ms, max_mb=args.max_mb, reencode=args.reencode,
                  progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2))
    return 1 if report["problem_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
