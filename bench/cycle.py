"""Session cycle benchmark: session_start + modify + session_write_close, phpsess vs PHP 8.2.

Runs, in one process each, a loop over 100 sessions round robin (files
handler, same disk) and prints µs per cycle for PHP (``php -n`` CLI) and for
phpsess, with the ratio, on an ordinary disk (a directory under /var/tmp) and
on tmpfs (/dev/shm).  Also a "+200 B nested" case (a small nested array rewritten
every cycle besides the counter) and a "large session" case: a 10 KB session where
the request reads one key.  The compiled build by default (``--build plain``: this
checkout as plain Python); the first line says which ran.

    python3 bench/cycle.py [--cycles 20000] [--sessions 100] [--build plain]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PHP_LOOP = r"""
$ids = []; for ($i = 0; $i < %(sessions)d; $i++) { $ids[] = sprintf("bench%%026d", $i); }
$big = %(big)s;
if ($big) {
  foreach ($ids as $id) { session_id($id); session_start();
    $_SESSION['profile'] = ['name' => str_repeat('x', 200), 'tags' => range(1, 50)];
    $_SESSION['cart'] = []; for ($j = 0; $j < 60; $j++) $_SESSION['cart'][] = ['sku' => "SKU$j", 'qty' => $j, 'price' => $j * 1.25];
    $_SESSION['n'] = 0; session_write_close(); }
}
$t = hrtime(true);
for ($i = 0; $i < %(cycles)d; $i++) {
  session_id($ids[$i %% %(sessions)d]);
  session_start();
  $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
  if (%(nested)s) { $_SESSION['v'] = ['note' => str_repeat('x', 120), 'at' => $i, 'tags' => ['a', 'b', 'c'], 'ok' => true]; }
  session_write_close();
}
$dt = (hrtime(true) - $t) / 1e3;
echo $dt / %(cycles)d, "\n";
"""

PY_LOOP = r"""
import sys, time
sys.path.insert(0, %(root)r)
import phpsess
phpsess.ini_set("session.save_path", %(path)r)
phpsess.ini_set("session.gc_probability", 0)
phpsess.ini_set("session.use_cookies", 0)
phpsess.ini_set("session.cache_limiter", "")
ids = ["bench%%026d" %% i for i in range(%(sessions)d)]
S = phpsess.SESSION
if %(big)s:
    for sid in ids:
        phpsess.session_id(sid); phpsess.session_start()
        S["profile"] = {"name": "x" * 200, "tags": list(range(1, 51))}
        S["cart"] = [{"sku": "SKU%%d" %% j, "qty": j, "price": j * 1.25} for j in range(60)]
        S["n"] = 0
        phpsess.session_write_close()
session_id = phpsess.session_id; session_start = phpsess.session_start; session_write_close = phpsess.session_write_close
t = time.perf_counter()
for i in range(%(cycles)d):
    session_id(ids[i %% %(sessions)d])
    session_start()
    S["n"] = S.get("n", 0) + 1
    if %(nested)s:
        S["v"] = {"note": "x" * 120, "at": i, "tags": ["a", "b", "c"], "ok": True}
    session_write_close()
dt = time.perf_counter() - t
print(dt * 1e6 / %(cycles)d)
"""


def run_php(path: str, cycles: int, sessions: int, big: bool, nested: bool = False) -> float:
    """µs per cycle of PHP's own loop (``nested``: a ~200-byte nested value rewritten
    every cycle too)."""
    code = PHP_LOOP % {"sessions": sessions, "cycles": cycles, "big": "true" if big else "false",
                       "nested": "true" if nested else "false"}
    out = subprocess.run(
        ["php", "-n", "-d", f"session.save_path={path}", "-d", "session.gc_probability=0",
         "-d", "session.use_cookies=0", "-d", "session.cache_limiter=", "-r", code],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def phpsess_root(build: str) -> str:
    """Where the measured phpsess is: ``$PHPSESS_TEST_PYTHONPATH`` when set, else the
    ``compiled`` build (scripts/compile.sh builds build/compiled now) or this ``plain``
    checkout."""
    if os.environ.get("PHPSESS_TEST_PYTHONPATH"):
        return os.environ["PHPSESS_TEST_PYTHONPATH"]
    root = os.path.dirname(HERE)
    if build == "plain":
        return root
    out = subprocess.run(["bash", os.path.join(root, "scripts", "compile.sh"), os.path.join(root, "build", "compiled")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scripts/compile.sh failed:\n{out.stderr}{out.stdout}")
    return out.stdout.strip().splitlines()[-1]


def build_name(root: str) -> str:
    """``phpsess.compiled.build_name()`` of the copy under ``root``."""
    code = f"import sys; sys.path.insert(0, {root!r}); from phpsess.compiled import build_name; print(build_name())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def run_py(path: str, cycles: int, sessions: int, big: bool, root: str, nested: bool = False) -> float:
    """µs per cycle of the same loop through the phpsess under ``root``."""
    code = PY_LOOP % {"root": root, "path": path, "sessions": sessions,
                      "cycles": cycles, "big": big, "nested": nested}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the table of µs per cycle and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    ap.add_argument("--build", choices=("compiled", "plain"), default="compiled",
                    help="which phpsess: compiled (scripts/compile.sh builds build/compiled) or plain "
                    "(this checkout); $PHPSESS_TEST_PYTHONPATH overrides both")
    args = ap.parse_args()
    root = phpsess_root(args.build)
    print(f"phpsess: {build_name(root)} ({root})")
    print(f"{'where':<38}{'PHP µs':>10}{'phpsess µs':>12}{'PHP/phpsess':>13}")
    for label, base in (("disk (/var/tmp, ext4)", "/var/tmp"), ("tmpfs (/dev/shm)", "/dev/shm")):
        for big, nested in ((False, False), (False, True), (True, False)):
            php_best = py_best = float("inf")
            for _ in range(args.repeat):
                d1 = tempfile.mkdtemp(prefix="phpsess-bench-", dir=base)
                d2 = tempfile.mkdtemp(prefix="phpsess-bench-", dir=base)
                try:
                    php_best = min(php_best, run_php(d1, args.cycles, args.sessions, big, nested))
                    py_best = min(py_best, run_py(d2, args.cycles, args.sessions, big, root, nested))
                finally:
                    shutil.rmtree(d1, ignore_errors=True)
                    shutil.rmtree(d2, ignore_errors=True)
            name = label + (", 10 KB" if big else "") + (", +200 B nested" if nested else "")
            print(f"{name:<38}{php_best:>10.1f}{py_best:>12.1f}{php_best / py_best:>12.2f}x")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
