"""Session cycle on memcached, with its lock: phpsess's memcached handler against PHP 8.2 +
php-memcached (``session.save_handler = memcached``, its default lock on).

Each side runs, in one process, N cycles of session_start + increment + session_write_close
round robin over 100 sessions, on one memcached started here (127.0.0.1). Printed for
each side:

* round trips per cycle: counted by a proxy between the client and memcached (a round
  trip is a request the client sends once it has read the previous reply: commands
  pipelined in one send count once), and TCP connections per cycle;
* memcached commands per cycle, from the server's ``stats`` deltas (``cmd_get``,
  ``cmd_set``, ``cmd_touch``, ``delete_hits`` + ``delete_misses``, ``cas_*``);
* µs per cycle (direct to memcached, without the proxy; best of ``--repeat`` runs) and
  the ratio PHP / phpsess (above 1: phpsess is faster).

PHP runs with php-memcached's defaults (a new connection per request,
``memcached.sess_persistent = 0``) and again with ``memcached.sess_persistent = 1`` (one
connection for the process, as phpsess keeps one).  phpsess runs from the copy on
``PYTHONPATH`` (the plain sources, or a build of ``scripts/compile.sh``).

    PYTHONPATH=. python3 bench/memcached_cycle.py [--cycles 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.append(ROOT)

__all__ = ["main"]

PHP_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=msgpack.so", "-d", "extension=memcached.so"]

PHP_LOOP = r"""
$ids = []; for ($i = 0; $i < %(sessions)d; $i++) { $ids[] = sprintf("mcbench%%025d", $i); }
$t = hrtime(true);
for ($i = 0; $i < %(cycles)d; $i++) {
  session_id($ids[$i %% %(sessions)d]);
  if (!session_start()) { fwrite(STDERR, "session_start failed\n"); exit(1); }
  $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
  session_write_close();
}
$dt = (hrtime(true) - $t) / 1e3;
echo $dt / %(cycles)d, "\n";
"""

PY_LOOP = r"""
import sys, time
import phpsess
for k, v in %(ini)r.items():
    phpsess.ini_set(k, v)
ids = ["mcbench%%025d" %% i for i in range(%(sessions)d)]
S = phpsess.SESSION
session_id = phpsess.session_id; session_start = phpsess.session_start; session_write_close = phpsess.session_write_close
prof = %(profile)r
if prof:
    import cProfile, pstats
    p = cProfile.Profile(); p.enable()
t = time.perf_counter()
for i in range(%(cycles)d):
    session_id(ids[i %% %(sessions)d])
    if not session_start():
        raise SystemExit("session_start failed")
    S["n"] = S.get("n", 0) + 1
    session_write_close()
dt = time.perf_counter() - t
if prof:
    p.disable(); pstats.Stats(p, stream=sys.stderr).sort_stats("tottime").print_stats(25)
from phpsess.compiled import compiled_modules
print(phpsess.__file__, len(compiled_modules()), file=sys.stderr)
print(dt * 1e6 / %(cycles)d)
"""

PHPSESS_DIR = ""  # the phpsess the children must run (main() sets it)
BUILD = "plain"

STATS = ("cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses", "cas_hits", "cas_misses",
         "cas_badval", "get_hits", "get_misses", "total_connections")


def server_stats(port: int) -> dict[str, int]:
    """memcached's ``stats`` counters of :data:`STATS`."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            buf += s.recv(65536)
    out: dict[str, int] = {}
    for line in buf.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in STATS:
            out[parts[1]] = int(parts[2])
    return out


def run_php(port: int, cycles: int, sessions: int, persistent: bool) -> float:
    """µs per cycle of PHP's loop on 127.0.0.1:port."""
    code = PHP_LOOP % {"sessions": sessions, "cycles": cycles}
    ini = {"session.save_handler": "memcached", "session.save_path": f"127.0.0.1:{port}",
           "session.gc_probability": "0", "session.use_cookies": "0", "session.cache_limiter": "",
           "session.use_strict_mode": "0", "memcached.sess_persistent": "1" if persistent else "0"}
    args = ["php", "-n", *PHP_EXTENSIONS]
    for k, v in ini.items():
        args += ["-d", f"{k}={v}"]
    out = subprocess.run([*args, "-r", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"php failed: {out.stdout}{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def run_py(port: int, cycles: int, sessions: int, profile: bool = False) -> float:
    """µs per cycle of the same loop through phpsess (the copy on PYTHONPATH)."""
    ini: dict[str, Any] = {"session.save_handler": "memcached", "session.save_path": f"127.0.0.1:{port}",
                           "session.gc_probability": 0, "session.use_cookies": 0, "session.cache_limiter": ""}
    code = PY_LOOP % {"ini": ini, "sessions": sessions, "cycles": cycles, "profile": profile}
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", ROOT)
    # -P: not the current directory first, so phpsess comes from PYTHONPATH (a compiled build)
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"phpsess failed: {out.stderr}")
    if profile:
        sys.stderr.write(out.stderr)
    where = out.stderr.strip().splitlines()[-1].split()
    if not where[0].startswith(PHPSESS_DIR) or (where[1] == "0") != (BUILD == "plain"):
        raise SystemExit(f"the phpsess child ran {where}, not {PHPSESS_DIR} [{BUILD}]")
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20000, help="timed cycles per run")
    ap.add_argument("--count-cycles", type=int, default=1000, help="cycles through the counting proxy")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (best and range printed)")
    ap.add_argument("--profile", action="store_true", help="cProfile phpsess's loop (stderr)")
    args = ap.parse_args(argv)

    from tests.integration.memcached_server import MemcachedProcess
    from tests.integration.trip_proxy import RoundTripProxy

    import phpsess
    from phpsess.compiled import compiled_modules

    global PHPSESS_DIR, BUILD
    PHPSESS_DIR = os.path.dirname(phpsess.__file__)
    BUILD = build = f"compiled ({len(compiled_modules())} modules)" if compiled_modules() else "plain"
    print(f"python {sys.version.split()[0]}, phpsess {os.path.dirname(phpsess.__file__)} [{build}], "
          f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    sides: list[tuple[str, Any]] = [
        ("php-memcached (default)", lambda port, n: run_php(port, n, args.sessions, False)),
        ("php-memcached (sess_persistent=1)", lambda port, n: run_php(port, n, args.sessions, True)),
        ("phpsess", lambda port, n: run_py(port, n, args.sessions, args.profile)),
    ]
    with MemcachedProcess() as mc:
        proxy = RoundTripProxy(mc.port)
        try:
            print(f"{'side':<36}{'trips/cycle':>12}{'conns/cycle':>12}  commands/cycle (memcached stats)")
            for name, fn in sides:
                fn(mc.port, args.sessions)  # sessions exist: every counted cycle reads one
                proxy.reset()
                before = server_stats(mc.port)
                fn(proxy.port, args.count_cycles)
                after = server_stats(mc.port)
                n = args.count_cycles
                delta = {k: (after.get(k, 0) - before.get(k, 0)) / n for k in STATS}
                cmds = (f"get {delta['cmd_get']:.2f} set {delta['cmd_set']:.2f} touch {delta['cmd_touch']:.2f} "
                        f"delete {delta['delete_hits'] + delta['delete_misses']:.2f} "
                        f"cas {delta['cas_hits'] + delta['cas_misses'] + delta['cas_badval']:.2f}")
                print(f"{name:<36}{proxy.trips / n:>12.2f}{proxy.connections / n:>12.3f}  {cmds}", flush=True)
        finally:
            proxy.close()
        times: dict[str, list[float]] = {name: [] for name, _ in sides}
        for _ in range(args.repeat):
            for name, fn in sides:
                times[name].append(fn(mc.port, args.cycles))
        print(f"µs per cycle, {args.cycles} cycles over {args.sessions} sessions, best (range) of {args.repeat}:")
        py = min(times["phpsess"])
        for name, _ in sides:
            best = min(times[name])
            ratio = "" if name == "phpsess" else f"   PHP/phpsess {best / py:.2f}x"
            print(f"  {name:<36}{best:>8.1f} ({min(times[name]):.1f}-{max(times[name]):.1f}){ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
