"""Fuzz the decoders: generated and mutated payloads through ``codec.loads`` and the
three session decoders.  Runs in this process only (no I/O but stdout).

Every input goes through ``loads()``, ``decode(..., "php")``, ``decode(...,
"php_binary")`` and ``decode(..., "php_serialize")``.  Reported: any exception other
than ``SessionDecodeError`` (a crash: ``RecursionError``, ``MemoryError``, ...), any
call slower than ``--max-ms``, a decoded value that cannot be encoded back, and the
slowest call.  Exit status 1 when something was reported.

    python bench/fuzz_codec.py                 # 100,000 inputs
    python bench/fuzz_codec.py --count 20000 --seed 3
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phpsess import codec, encoding  # noqa: E402
from phpsess.codec import PHPCustomObject, PHPEnum, PHPObject, PHPReference  # noqa: E402
from phpsess.errors import SessionDecodeError, SessionEncodeError  # noqa: E402

__all__ = ["main"]

DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("loads", codec.loads),
    ("php", lambda b: encoding.decode(b, "php")),
    ("php_binary", lambda b: encoding.decode(b, "php_binary")),
    ("php_serialize", lambda b: encoding.decode(b, "php_serialize")),
]

TOKENS = [
    b"N;", b"b:1;", b"b:0;", b"i:0;", b"i:-1;", b"i:99999999999999999999;", b"d:0.5;", b"d:NAN;", b"d:-INF;",
    b'd:1e400;', b's:0:"";', b's:3:"a;b";', b's:1:"|";', b'S:3:"\\61bc";', b"a:0:{}", b"a:1:{", b"a:2:{", b"}",
    b'O:8:"stdClass":0:{}', b'O:8:"stdClass":1:{', b'C:3:"Ser":3:{a}}', b'E:3:"U:X";', b"r:1;", b"R:1;", b"r:2;",
    b"R:2;", b"R:0;", b"i:", b"s:", b"a:", b";", b":", b"{", b'"', b"|", b"\x01a", b"\x80", b"\xff",
    b"s:999999999999:\"", b"a:99999999:{", b"i:0;i:0;",
]


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    """A random Python value of every mapped type, with shared objects and references."""
    if depth > 4 or rnd.random() < 0.35:
        return rnd.choice([
            None, True, False, rnd.randint(-(2**63), 2**63 - 1), rnd.randint(-9, 99), rnd.random() * 10.0 ** rnd.randint(-30, 30),
            float("inf"), float("nan"), -0.0, "", "é;|}{", "a" * rnd.randint(0, 300), bytes(rnd.randrange(256) for _ in range(rnd.randrange(8))),
            PHPEnum("U", rnd.choice("XY")), PHPCustomObject("Ser", b"x;}" * rnd.randrange(3)),
        ])
    kind = rnd.randrange(5)
    if kind == 0:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(6))]
    if kind == 1:
        return {rnd.choice([rnd.randint(-3, 9), "k" + str(rnd.randrange(20)), str(rnd.randrange(5))]): random_value(rnd, depth + 1)
                for _ in range(rnd.randrange(6))}
    if kind == 2:
        return PHPObject(rnd.choice(["stdClass", "P", "NS\\Q"]),
                         {rnd.choice(["a", "\0*\0b", "\0P\0c", 3]): random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))})
    if kind == 3:
        shared = random_value(rnd, depth + 1)
        box = PHPReference(shared)
        return [box, random_value(rnd, depth + 1), box]
    o = PHPObject("stdClass", {})
    o.properties["self"] = o
    return [o, random_value(rnd, depth + 1), o]


def seeds(rnd: random.Random, n: int) -> list[bytes]:
    """Valid payloads of every format, to mutate."""
    out: list[bytes] = []
    for _ in range(n):
        v = random_value(rnd)
        out.append(codec.dumps(v))
        sess = {f"k{i}": random_value(rnd, 2) for i in range(rnd.randrange(1, 4))}
        for handler in encoding.HANDLERS:
            payload = encoding.encode(sess, handler)
            if payload:
                out.append(payload)
    return out


def deep_inputs() -> list[bytes]:
    """Pathological shapes: deep nesting, long runs, huge declared lengths."""
    out = []
    for depth in (4096, 4097, 5000, 100000):
        out.append(b"a:1:{i:0;" * depth + b"N;" + b"}" * depth)
        out.append(b'O:8:"stdClass":1:{s:1:"a";' * depth + b"N;" + b"}" * depth)
        out.append(b"a:1:{i:0;" * depth)
    out.append(b"a:1:{i:0;a:0:{}" + b"}" * 100000 + b"x" * 100000)
    out.append(b"a:100000:{" + b"i:0;i:0;" * 100000 + b"}")
    out.append(b'S:99999999:"' + b"\\61" * 100000 + b'";')
    out.append(b"s:" + b"9" * 100000 + b':"";')
    out.append(b"x|" * 50000)
    out.append(b"a:1:{s:3:\"" + b";" * 200000 + b"\";i:1;}")
    out.append(b"R:1;" * 100000)
    return out


def mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(8)
        i = rnd.randint(0, len(b))
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = rnd.choice(TOKENS)
        elif op == 2 and b:
            del b[i : i + rnd.randint(1, 8)]
        elif op == 3:
            b = b[:i]  # truncate
        elif op == 4 and b:
            j = rnd.randint(0, len(b))
            b[i:i] = b[min(i, j) : max(i, j)][:200]  # duplicate a segment
        elif op == 5:
            digits = str(rnd.choice([0, 1, 2, 9, 10, 127, 128, 4096, 2**31, 2**63, 10**20])).encode()
            pos = b.find(b":", i)
            if pos >= 0:
                end = pos + 1
                while end < len(b) and chr(b[end]).isdigit():
                    end += 1
                b[pos + 1 : end] = digits
        elif op == 6:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 6)))
        else:
            b[i:i] = b"".join(rnd.choice(TOKENS) for _ in range(rnd.randint(1, 6)))
    return bytes(b)


def timed(decode: Callable[[bytes], Any], data: bytes) -> float:
    """Seconds one decode takes (its outcome ignored)."""
    t0 = time.perf_counter()
    try:
        decode(data)
    except SessionDecodeError:
        pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; print a report; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100000, help="number of inputs (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-ms", type=float, default=100.0, help="report calls slower than this")
    args = ap.parse_args(argv)

    rnd = random.Random(args.seed)
    pool = seeds(rnd, 400)
    special = deep_inputs()
    problems: list[tuple[str, str, bytes]] = []
    outcomes: Counter[str] = Counter()
    slowest = (0.0, "", b"")
    calls = 0
    started = time.perf_counter()
    for n in range(args.count):
        if n < len(special):
            data = special[n]
        else:
            r = rnd.random()
            if r < 0.75:
                data = mutate(rnd, rnd.choice(pool))
            elif r < 0.85:
                data = rnd.choice(pool)
            elif r < 0.95:
                data = b"".join(rnd.choice(TOKENS) for _ in range(rnd.randint(1, 12)))
            else:
                data = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40)))
        for name, decode in DECODERS:
            calls += 1
            t0 = time.perf_counter()
            try:
                value = decode(data)
                ok = True
            except SessionDecodeError:
                ok = False
            except BaseException as exc:  # noqa: BLE001 - the point is to catch anything
                if isinstance(exc, KeyboardInterrupt):
                    raise
                problems.append((name, f"{type(exc).__name__}: {exc}"[:300], data))
                traceback.print_exc(limit=3)
                continue
            elapsed = time.perf_counter() - t0
            if elapsed * 1000 > args.max_ms:
                # re-time it: a garbage-collector pause or a busy machine is not the input's fault
                elapsed = min(timed(decode, data) for _ in range(3))
                if elapsed * 1000 > args.max_ms:
                    problems.append((name, f"slow: {elapsed * 1000:.1f} ms", data))
            if elapsed > slowest[0]:
                slowest = (elapsed, name, data)
            outcomes[f"{name} {'ok' if ok else 'refused'}"] += 1
            if ok:
                try:  # what decodes must encode again
                    if name == "loads" or (name == "php_serialize" and not isinstance(value, dict)):
                        codec.dumps(value)
                    else:
                        encoding.encode(value, name if name != "loads" else "php")
                except SessionEncodeError as exc:
                    problems.append((name, f"decoded value does not encode: {exc}", data))
    total = time.perf_counter() - started

    print(f"inputs: {args.count}   decoder calls: {calls}   time: {total:.1f} s "
          f"({calls / total:,.0f} calls/s)")
    for key in sorted(outcomes):
        print(f"  {key:24} {outcomes[key]:8}")
    print(f"slowest call (re-timed when over --max-ms): {slowest[0] * 1000:.2f} ms ({slowest[1]}, input of {len(slowest[2])} bytes: "
          f"{slowest[2][:60]!r}...)")
    if problems:
        print(f"PROBLEMS: {len(problems)}")
        for name, what, data in problems[:20]:
            print(f"  {name}: {what}\n    input ({len(data)} bytes): {data[:200]!r}")
        return 1
    print("no problems: every input was decoded or refused with SessionDecodeError")
    return 0


if __name__ == "__main__":
    sys.exit(main())
