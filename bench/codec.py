"""Decode and re-encode a realistic ~11 KB ``php``-encoded session: phpsess vs
phpserialize 1.3 vs PHP 8.2's own session_decode()/session_encode().  Runs ``php``.

The session (a user profile, a 60-item cart, a 25-entry history, a CSRF token, ...)
is written by PHP itself, so all three decode the same bytes.  Times are the best of
several repeats, in microseconds per operation, taken in interleaved rounds (every row
once per round) so that a drift of the machine's speed weighs on all rows alike.
phpsess is measured twice: "cold" empties its token caches (decoder and encoder)
before every operation (the first request of a worker), "warm" keeps them (a worker
that decodes and encodes the same users' sessions again).  Those two rows decode to
plain lists and dicts (``session.php_arrays = 0``); the "PHPArrays" row is what a
request does by default (``session.php_arrays = 1``): arrays decoded as PHPArray
(``formats.decode(..., php_arrays=True)``), and those encoded.  Run it with the
compiled build (``scripts/compile.sh``; ``PYTHONPATH=build/compiled``) for the
figures of a pool worker: the line "build:" says which one ran.

    python bench/codec.py            # table
    python bench/codec.py --profile  # plus where phpsess spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phpsess.core import codec, formats as encoding  # noqa: E402

__all__ = ["main", "make_session"]

PHP_SESSION = r"""
mt_srand(42);
$s = [];
$s['user'] = ['id' => 48213, 'name' => 'Zoë Martín', 'email' => 'zoe.martin@example.com', 'roles' => ['customer', 'beta'],
  'prefs' => ['lang' => 'fr_FR', 'currency' => 'EUR', 'newsletter' => true, 'theme' => null],
  'last_login' => 1718031234.25, 'verified' => true];
$s['csrf'] = md5('csrf') . '';
$cart = [];
for ($i = 0; $i < 60; $i++) {
  $cart[] = ['sku' => sprintf('SKU-%05d', mt_rand(0, 99999)), 'name' => 'Article n°' . $i, 'price' => mt_rand(100, 99999) / 100,
             'qty' => mt_rand(1, 5), 'opts' => ['size' => ['S', 'M', 'L'][$i % 3], 'gift' => ($i % 7 == 0)]];
}
$s['cart'] = $cart;
$h = [];
for ($i = 0; $i < 25; $i++) { $h[] = ['/products/' . mt_rand(1, 5000) . '?ref=home', 1718030000 + $i * 37]; }
$s['history'] = $h;
$s['flash'] = [];
$s['visits'] = 17;
ini_set('session.save_path', getenv('SESS_DIR')); ini_set('session.use_cookies', '0'); ini_set('session.cache_limiter', '');
session_start();
$_SESSION = $s;
echo session_encode();
session_abort();
"""

PHP_TIMING = r"""
$data = stream_get_contents(STDIN);
ini_set('session.save_path', getenv('SESS_DIR')); ini_set('session.use_cookies', '0'); ini_set('session.cache_limiter', '');
session_start();
$n = (int) getenv('LOOPS');
$best = [INF, INF, INF];
for ($r = 0; $r < 5; $r++) {
  $t = hrtime(true); for ($i = 0; $i < $n; $i++) { session_decode($data); } $best[0] = min($best[0], (hrtime(true) - $t) / $n / 1000);
  $t = hrtime(true); for ($i = 0; $i < $n; $i++) { $x = session_encode(); } $best[1] = min($best[1], (hrtime(true) - $t) / $n / 1000);
  $t = hrtime(true); for ($i = 0; $i < $n; $i++) { session_decode($data); $x = session_encode(); } $best[2] = min($best[2], (hrtime(true) - $t) / $n / 1000);
}
echo json_encode(['decode' => $best[0], 'encode' => $best[1], 'both' => $best[2], 'same' => $x === $data]);
session_abort();
"""


def run_php(code: str, stdin: bytes = b"", **env: str) -> bytes:
    """Run PHP code with ``php -n`` (and a temporary session.save_path); return stdout."""
    php = shutil.which("php")
    if php is None:
        raise SystemExit("php (8.2) is needed for this benchmark")
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run(
            [php, "-n", "-d", "serialize_precision=-1", "-r", code],
            input=stdin, capture_output=True, check=True, env={**os.environ, "SESS_DIR": d, **env},
        )
    return proc.stdout


def make_session() -> bytes:
    """The benchmark payload, as PHP 8.2's session_encode() writes it."""
    return run_php(PHP_SESSION)


# ---------------------------------------------------------------- phpserialize 1.3


def phpserialize_decode(data: bytes) -> dict[bytes, Any]:
    """The ``php`` session format on top of phpserialize.load() (it has no session support)."""
    import phpserialize

    fp = io.BytesIO(data)
    out: dict[bytes, Any] = {}
    while True:
        bar = data.find(b"|", fp.tell())
        if bar < 0:
            return out
        name = data[fp.tell() : bar]
        fp.seek(bar + 1)
        out[name] = phpserialize.load(fp, decode_strings=False)


def phpserialize_encode(session: dict[bytes, Any]) -> bytes:
    """The ``php`` session format on top of phpserialize.dumps()."""
    import phpserialize

    return b"".join(k + b"|" + phpserialize.dumps(v) for k, v in session.items())


# ---------------------------------------------------------------- measuring


def best_us(fn: Callable[[], Any], seconds: float = 1.0) -> float:
    """Best time of one call, in µs, over repeats lasting about ``seconds``."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    number = max(1, int(0.05 / once))
    repeat = max(5, int(seconds / (once * number)))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the table (and optionally a profile)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions for phpsess")
    ap.add_argument("--seconds", type=float, default=1.5, help="time per measurement (over all rounds)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = ap.parse_args(argv)

    data = make_session()
    session = encoding.decode(data, "php")
    assert encoding.encode(session, "php") == data, "phpsess round trip is not byte-exact"

    def cold_decode() -> Any:
        codec.clear_caches()
        return encoding.decode(data, "php")

    def cold_both() -> Any:
        codec.clear_caches()
        return encoding.encode(encoding.decode(data, "php"), "php")

    # Each row's three measurements, run in interleaved rounds (every row once per
    # round, the best kept): this shared machine's speed drifts over minutes, and the
    # ratios compare rows, so each row must see the same machine.
    def warm_decode() -> Any:
        return encoding.decode(data, "php")

    def warm_both() -> Any:
        return encoding.encode(encoding.decode(data, "php"), "php")

    def cold_encode() -> Any:
        codec.clear_caches()
        return encoding.encode(session, "php")

    arrays = encoding.decode(data, "php", php_arrays=True)
    assert encoding.encode(arrays, "php") == data, "phpsess round trip (PHPArrays) is not byte-exact"

    def arrays_both() -> Any:
        return encoding.encode(encoding.decode(data, "php", php_arrays=True), "php")

    plan: dict[str, tuple[Callable[[], Any], ...]] = {
        "phpsess (cold caches)": (cold_decode, cold_encode, cold_both),
        "phpsess (warm caches)": (warm_decode, lambda: encoding.encode(session, "php"), warm_both),
        "phpsess (PHPArrays, warm)": (
            lambda: encoding.decode(data, "php", php_arrays=True),
            lambda: encoding.encode(arrays, "php"),
            arrays_both,
        ),
    }
    try:
        ps_session = phpserialize_decode(data)
        assert phpserialize_encode(ps_session) == data
        plan["phpserialize 1.3"] = (
            lambda: phpserialize_decode(data),
            lambda: phpserialize_encode(ps_session),
            lambda: phpserialize_encode(phpserialize_decode(data)),
        )
    except ImportError:
        print("phpserialize is not installed (pip install phpserialize==1.3): row skipped")
    best: dict[str, list[float]] = {name: [float("inf")] * len(fns) for name, fns in plan.items()}
    for _ in range(args.rounds):
        for name, fns in plan.items():
            if name.startswith("phpsess (") and "cold" not in name:
                warm_both()  # the cold row emptied the caches
            for i, fn in enumerate(fns):
                best[name][i] = min(best[name][i], best_us(fn, args.seconds / args.rounds))
    rows: dict[str, tuple[float, float, float]] = {name: (got[0], got[1], got[2]) for name, got in best.items()}
    import json

    php = json.loads(run_php(PHP_TIMING, stdin=data, LOOPS="20000"))
    assert php["same"], "PHP's own round trip differs?"
    rows["PHP 8.2 (C)"] = (php["decode"], php["encode"], php["both"])

    from phpsess.compiled import build_name

    print(f"payload: {len(data)} bytes, {data.count(b';')} tokens ending in ';' "
          f"(python {sys.version.split()[0]}, {sys.platform})")
    print(f"build: {build_name()}, codec's compiled path {'on' if codec.NATIVE_PATH else 'off'}")
    print(f"{'':28}{'decode':>10}{'encode':>10}{'dec+enc':>10}   µs per operation")
    for name, (d, e, b) in rows.items():
        print(f"{name:28}{d:10.1f}{e:10.1f}{b:10.1f}")
    ref = rows.get("phpserialize 1.3")
    php_row = rows["PHP 8.2 (C)"]
    for name in ("phpsess (cold caches)", "phpsess (warm caches)", "phpsess (PHPArrays, warm)"):
        d, e, b = rows[name]
        parts = []
        if ref:
            parts.append(f"{ref[2] / b:.1f}x faster than phpserialize")
        parts.append(f"{b / php_row[2]:.1f}x slower than PHP's C")
        print(f"{name}: decode+encode {', '.join(parts)}")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(300):
            codec.clear_caches()
            encoding.encode(encoding.decode(data, "php"), "php")
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
