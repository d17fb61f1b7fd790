"""Redis session cycle, phpsess vs PHP + phpredis, in the same run: µs per cycle and round
trips per cycle. Starts (and stops) its own redis-server and 3-master Redis Cluster (3
replicas) on 127.0.0.1; runs php and python child processes.

A cycle is what a request does with its session: ``session_id(x); session_start();
$_SESSION['n']++; session_write_close();``, in one process's loop over 100 sessions round
robin (as bench/cycle.py does for the files handler).

* ``redis``: PHP with ``save_handler = redis`` and ``redis.session.locking_enabled = 1``
  (its default connection, a new one per request, and ``?persistent=1``), against
  phpsess's redis handler, whose lock is always on;
* ``rediscluster``: PHP's ``rediscluster`` handler (phpredis takes no lock in a cluster)
  against phpsess's (lock in the session's slot, ``WAIT`` for one replica by default;
  ``wait_replicas=0`` too, as phpredis waits for none).

Round trips are counted on the wire of a second, shorter run: a request a client sends
after the previous reply came back is one trip (a pipeline is one); a new TCP
connection counts as one more.  For the single server the clients go through a counting
proxy; for the cluster (whose nodes announce their own addresses) MONITOR on every node
counts commands, which are trips for phpredis (it pipelines nothing here), and phpsess's
sends are counted in the process.

    python3 bench/redis_cycle.py [--cycles 20000] [--repeat 3] [--only redis|rediscluster]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

__all__ = ["main"]

PHP_EXT = ["-d", "extension=igbinary.so", "-d", "extension=redis.so"]

PHP_LOOP = r"""
$ids = []; for ($i = 0; $i < %(sessions)d; $i++) { $ids[] = sprintf("bench%%026d", $i); }
$t = hrtime(true);
for ($i = 0; $i < %(cycles)d; $i++) {
  session_id($ids[$i %% %(sessions)d]);
  session_start();
  $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
  session_write_close();
}
$dt = (hrtime(true) - $t) / 1e3;
session_id($ids[0]); session_start(); $n = $_SESSION['n']; session_write_close();
echo $dt / %(cycles)d, " ", $n, "\n";
"""

PY_LOOP = r"""
import sys, time
sys.path[:0] = %(path)r
import phpsess
COUNT = %(count)r
if COUNT:  # every write of a request to a server: redis-py's, and redislink's where it exists
    from redis.connection import AbstractConnection
    sends = [0]
    _send = AbstractConnection.send_packed_command
    def send_packed_command(self, command, check_health=True):
        sends[0] += 1
        return _send(self, command, check_health)
    AbstractConnection.send_packed_command = send_packed_command
    try:
        from phpsess.storage.redislink import Link
    except ImportError:
        pass
    else:
        _exchange = Link._exchange
        def exchange(self, data, count):
            sends[0] += 1
            return _exchange(self, data, count)
        Link._exchange = exchange
phpsess.ini_set("session.save_handler", %(handler)r)
phpsess.ini_set("session.save_path", %(save_path)r)
phpsess.ini_set("session.gc_probability", 0)
phpsess.ini_set("session.use_cookies", 0)
phpsess.ini_set("session.cache_limiter", "")
ids = ["bench%%026d" %% i for i in range(%(sessions)d)]
S = phpsess.SESSION
session_id = phpsess.session_id; session_start = phpsess.session_start; session_write_close = phpsess.session_write_close
# one warm-up cycle per session (connections, scripts loaded), as PHP's first cycles
for sid in ids:
    session_id(sid); session_start(); S["n"] = S.get("n", 0); session_write_close()
if COUNT:
    sends[0] = 0
t = time.perf_counter()
for i in range(%(cycles)d):
    session_id(ids[i %% %(sessions)d])
    session_start()
    S["n"] = S.get("n", 0) + 1
    session_write_close()
dt = time.perf_counter() - t
if COUNT:
    print("SENDS", sends[0])
session_id(ids[0]); session_start(); n = S["n"]; session_write_close()
print(dt * 1e6 / %(cycles)d, n)
"""


def run_php(handler: str, save_path: str, cycles: int, sessions: int) -> tuple[float, int]:
    """µs per cycle of PHP's loop, and session 0's final count."""
    code = PHP_LOOP % {"sessions": sessions, "cycles": cycles}
    out = subprocess.run(
        ["php", "-n", *PHP_EXT, "-d", f"session.save_handler={handler}",
         "-d", f'session.save_path="{save_path}"', "-d", "redis.session.locking_enabled=1",
         "-d", "session.gc_probability=0", "-d", "session.use_cookies=0", "-d", "session.cache_limiter=",
         "-r", code],
        capture_output=True, text=True,
    )
    if out.returncode or out.stderr or "Warning" in out.stdout:
        raise SystemExit(f"php failed: {out.stdout}{out.stderr}")
    us, n = out.stdout.split()
    return float(us), int(n)


def run_py(handler: str, save_path: str, cycles: int, sessions: int, path: list[str],
           count: bool = False) -> tuple[float, int, int]:
    """µs per cycle of the same loop through phpsess, session 0's count, and (``count``)
    the requests sent."""
    code = PY_LOOP % {"path": path, "handler": handler, "save_path": save_path, "sessions": sessions,
                      "cycles": cycles, "count": count}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
    if out.returncode or out.stderr:
        raise SystemExit(f"python failed: {out.stdout}{out.stderr}")
    sends = 0
    lines = out.stdout.split("\n")
    for line in lines:
        if line.startswith("SENDS "):
            sends = int(line.split()[1])
    us, n = lines[-2].split()
    return float(us), int(n), sends


class Monitor:
    """MONITOR on cluster nodes: counts the commands clients send (not a script's own, nor
    the replication stream)."""

    def __init__(self, ports: list[int]) -> None:
        # a master's replication stream reaches its replicas from the master's own port
        self.replication = [b"[0 127.0.0.1:%d]" % port for port in ports]
        self.socks = []
        self.counts = [0] * len(ports)
        for port in ports:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"MONITOR\r\n")
            self.socks.append(s)
        self._stop = False
        self.threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(len(ports))]
        for t in self.threads:
            t.start()

    def _read(self, i: int) -> None:
        buf = b""
        s = self.socks[i]
        while not self._stop:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                if (line.startswith(b"+") and b" [" in line and b" lua]" not in line and b'"MONITOR"' not in line
                        and not any(r in line for r in self.replication)):
                    self.counts[i] += 1

    def total(self) -> int:
        """Commands seen so far on every node."""
        return sum(self.counts)

    def close(self) -> None:
        """Stop monitoring."""
        self._stop = True
        for s in self.socks:
            s.close()


def _connections(ports: list[int]) -> int:
    total = 0
    for port in ports:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"INFO stats\r\n")
            buf = b""
            while b"total_connections_received:" not in buf or not buf.endswith(b"\r\n"):
                buf += s.recv(65536)
            total += int(buf.split(b"total_connections_received:")[1].split(b"\r\n")[0])
    return total


def _fmt(lo: float, hi: float) -> str:
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (each runs every variant once)")
    ap.add_argument("--count-cycles", type=int, default=500, help="cycles of the counting run")
    ap.add_argument("--only", choices=("redis", "rediscluster"), default=None)
    ap.add_argument("--build", action="append", default=[], metavar="LABEL=PATH",
                    help="a phpsess to measure, imported from PATH (os.pathsep-separated, e.g. a compiled "
                         "build before this tree); repeat to compare builds in the same rounds "
                         "(default: phpsess=this tree)")
    args = ap.parse_args(argv)
    builds: list[tuple[str, list[str]]] = []
    for spec in args.build or [f"phpsess={ROOT}"]:
        label, _, where = spec.partition("=")
        builds.append((label, where.split(os.pathsep) + [ROOT]))

    from tests.integration.redis_cluster import RedisCluster
    from tests.integration.redis_server import RedisProcess
    from tests.integration.trip_proxy import RoundTripProxy

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.cycles} cycles over {args.sessions} "
          f"sessions, {args.repeat} rounds; " + ", ".join(f"{label} from {path[0]}" for label, path in builds),
          flush=True)

    def measure(label: str, runs: dict[str, Any], trips: dict[str, str]) -> None:
        # rounds run every variant back to back, so a round's ratios share the machine's state
        results: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for name, fn in runs.items():
                results[name].append(fn(args.cycles))
        for name in runs:
            us = sorted(results[name])
            ratio = ""
            if name != "php":
                ratios = sorted(a / b for a, b in zip(results[name], results["php"]))
                ratio = f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
            print(f"  {label:<13}{name:<34}{statistics.median(us):>6.0f} µs ({_fmt(us[0], us[-1]):>9})"
                  f"{trips[name]:>9}   {ratio}", flush=True)

    def py(handler: str, save_path: str, path: list[str]) -> Any:
        def run(cycles: int) -> float:
            return run_py(handler, save_path, cycles, args.sessions, path)[0]
        return run

    def php(handler: str, save_path: str) -> Any:
        def run(cycles: int) -> float:
            return run_php(handler, save_path, cycles, args.sessions)[0]
        return run

    n = args.count_cycles
    if args.only in (None, "redis"):
        with RedisProcess() as rs:
            proxy = RoundTripProxy(rs.port)
            via = f"tcp://127.0.0.1:{proxy.port}"
            counted: dict[str, str] = {}
            runs: dict[str, Any] = {"php": php("redis", rs.url),
                                    "php ?persistent=1": php("redis", rs.url + "?persistent=1")}
            for name, save_path in (("php", via), ("php ?persistent=1", via + "?persistent=1")):
                proxy.reset()
                run_php("redis", save_path, n, args.sessions)
                counted[name] = f"{proxy.trips / (n + 1):.1f}+{proxy.connections / (n + 1):.0f}c"
            for label, path in builds:
                proxy.reset()
                run_py("redis", via + "?prefix=PHPSESS_BENCH:", n, args.sessions, path)
                total = n + args.sessions + 1  # its warm-up cycles and final read too
                counted[label] = f"{proxy.trips / total:.1f}+{proxy.connections / total:.0f}c"
                runs[label] = py("redis", rs.url + "?prefix=PHPSESS_BENCH:", path)
            print("redis (one redis-server, TCP loopback): µs per cycle median (range), round trips (+ connects)"
                  " per cycle, phpsess/PHP: median of rounds (range)")
            measure("redis", runs, counted)
    if args.only in (None, "rediscluster"):
        with RedisCluster() as rc:
            ports = [node.port for node in rc.nodes]
            sp = rc.save_path
            counted = {}
            runs = {"php": php("rediscluster", sp)}
            mon = Monitor(ports)
            c0 = _connections(ports)
            m0 = mon.total()
            run_php("rediscluster", sp, n, args.sessions)
            time.sleep(0.5)
            counted["php"] = f"{(mon.total() - m0) / (n + 1):.1f}+{(_connections(ports) - c0 - 1) / (n + 1):.0f}c"
            mon.close()
            for label, path in builds:
                for extra in ("", "&wait_replicas=0"):
                    name = label + (" wait_replicas=0" if extra else "")
                    c0 = _connections(ports)
                    _, _, sends = run_py("rediscluster", sp + extra, n, args.sessions, path, count=True)
                    conns = (_connections(ports) - c0 - 1) / (n + args.sessions + 1)
                    counted[name] = f"{sends / n:.1f}+{conns:.0f}c"
                    runs[name] = py("rediscluster", sp + extra, path)
            print("rediscluster (3 masters + 3 replicas): µs per cycle median (range), round trips (+ connects)"
                  " per cycle, phpsess/PHP: median of rounds (range)")
            measure("rediscluster", runs, counted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
