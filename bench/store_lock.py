"""Session lock benchmark of the shared stores: lock handoff latency between two processes,
the uncontended session cycle and contended increments, for memcached, Redis Cluster and
Redis (files' flock for reference). Starts (and stops) its own memcached, redis-server and
3-master Redis Cluster on 127.0.0.1; runs child processes.

Handoff = from the moment the holder calls ``close()`` (release) to the moment the waiting
process's ``read()`` returns with the lock (CLOCK_MONOTONIC, shared by both processes):

* memcached: the waiter retries ``add`` on php-memcached's schedule
  (``memcached.sess_lock_wait_min`` = 150 ms doubling up to ``sess_lock_wait_max`` =
  150 ms by default; ``--memcached-wait-ms`` sets both, as a deployment that wants fast
  handoffs would);
* rediscluster: the release ``SPUBLISH``es on the lock's shard channel, the waiter is
  subscribed;
* redis: the release ``PUBLISH``es, the waiter is subscribed;
* files: ``flock`` on one file.

Cycle = open + read + write + close of one session, uncontended, one process.
Contended = N processes incrementing one session; the final count is checked.

    python3 bench/store_lock.py [--rounds 200] [--cycles 2000] [--procs 8 --per-proc 125]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from phpsess.core.config import SessionConfig  # noqa: E402
from phpsess.storage.base import handler_class  # noqa: E402

__all__ = ["main"]

SID = "benchlock0123456789abcdefghijklm"
COUNT_SID = "benchcount123456789abcdefghijkl"


def _handler(kind: str, target: str, ini: dict[str, Any]) -> Any:
    h = handler_class(kind)(SessionConfig({"lock_timeout": 30, **ini}))
    h.open(target, "PHPSESSID")
    return h


def _waiter(kind: str, target: str, ini: dict[str, Any], conn: Connection, rounds: int) -> None:
    """Each round: wait for 'locked', say 'waiting', block on the lock, report when we got it."""
    for _ in range(rounds):
        conn.recv()
        conn.send("waiting")
        h = _handler(kind, target, ini)
        h.read(SID)
        got = time.perf_counter()
        waited = h.lock_info.waited
        h.close()
        conn.send((got, waited))
    conn.close()


def handoff(kind: str, target: str, ini: dict[str, Any], rounds: int) -> list[float]:
    """Handoff latencies in seconds."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_waiter, args=(kind, target, ini, child, rounds))
    proc.start()
    child.close()
    out: list[float] = []
    try:
        for _ in range(rounds):
            h = _handler(kind, target, ini)
            h.read(SID)
            parent.send("locked")
            parent.recv()  # the waiter is about to block
            time.sleep(0.003)  # ... and now it does
            t0 = time.perf_counter()
            h.close()
            got, waited = parent.recv()
            if waited > 0:  # the waiter really waited
                out.append(got - t0)
    finally:
        proc.join(60)
        parent.close()
    return out


def cycle(kind: str, target: str, ini: dict[str, Any], n: int) -> list[float]:
    """Seconds per open+read+write+close."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        h = _handler(kind, target, ini)
        data = h.read(SID)
        h.write(SID, b"n|i:%d;" % (len(data) + i))
        h.close()
        times.append(time.perf_counter() - t0)
    return times


def _incrementer(kind: str, target: str, ini: dict[str, Any], n: int, start: Connection) -> None:
    start.recv()
    for _ in range(n):
        h = _handler(kind, target, ini)
        data = h.read(COUNT_SID)
        count = int(data[len(b"count|i:"):-1]) if data else 0
        h.write(COUNT_SID, b"count|i:%d;" % (count + 1))
        h.close()


def contended(kind: str, target: str, ini: dict[str, Any], procs: int, per_proc: int) -> tuple[float, bytes]:
    """Seconds for ``procs`` processes to make ``per_proc`` increments each; the final session."""
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(procs)]
    ps = [ctx.Process(target=_incrementer, args=(kind, target, ini, per_proc, b)) for _, b in pipes]
    for p in ps:
        p.start()
    time.sleep(1.5)  # let every interpreter start
    t0 = time.perf_counter()
    for a, _ in pipes:
        a.send("go")
    for p in ps:
        p.join(300)
        if p.exitcode != 0:
            raise RuntimeError(f"{kind} incrementer failed ({p.exitcode})")
    secs = time.perf_counter() - t0
    h = _handler(kind, target, ini)
    final = h.read(COUNT_SID)
    h.close()
    return secs, final


def _us(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1e6


def _line(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<40} no sample"
    return (f"  {name:<40} n={len(values):<5} p50 {_us(values, 0.5):8.1f} µs   "
            f"p99 {_us(values, 0.99):8.1f} µs   mean {statistics.fmean(values) * 1e6:8.1f} µs")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200, help="handoffs per store")
    ap.add_argument("--cycles", type=int, default=2000, help="session cycles per store")
    ap.add_argument("--procs", type=int, default=8, help="processes in the contended run")
    ap.add_argument("--per-proc", type=int, default=125, help="increments per process")
    ap.add_argument("--memcached-wait-ms", type=int, default=0,
                    help="memcached.sess_lock_wait_min and _max (default 0: php-memcached's 150 ms)")
    ap.add_argument("--stores", default="memcached,rediscluster,redis,files")
    args = ap.parse_args(argv)

    from tests.integration.memcached_server import MemcachedProcess
    from tests.integration.redis_cluster import RedisCluster
    from tests.integration.redis_server import RedisProcess

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    mc_ini: dict[str, Any] = {}
    if args.memcached_wait_ms:
        mc_ini = {"memcached.sess_lock_wait_min": args.memcached_wait_ms,
                  "memcached.sess_lock_wait_max": args.memcached_wait_ms,
                  "memcached.sess_lock_retries": 1_000_000}
    with MemcachedProcess() as mc, RedisProcess() as rs, RedisCluster() as rc, \
            tempfile.TemporaryDirectory(prefix="phpsess-bench-") as tmp:
        targets = {"memcached": (mc.address, mc_ini), "rediscluster": (rc.save_path, {}),
                   "redis": (rs.url, {}), "files": (tmp, {})}
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; memcached {mc.address}, "
              f"redis {rs.url}, cluster {rc.save_path}")
        print("lock handoff, release -> acquire in another process:")
        for kind in stores:
            target, ini = targets[kind]
            print(_line(kind, handoff(kind, target, ini, args.rounds)), flush=True)
        print("session cycle (open+read+write+close), one process, no contention:")
        for kind in stores:
            target, ini = targets[kind]
            print(_line(kind, cycle(kind, target, ini, args.cycles)), flush=True)
        total = args.procs * args.per_proc
        print(f"contended: {args.procs} processes x {args.per_proc} increments of one session:")
        for kind in stores:
            target, ini = targets[kind]
            secs, final = contended(kind, target, ini, args.procs, args.per_proc)
            print(f"  {kind:<40} {total} increments in {secs:.3f} s = {secs / total * 1e6:.0f} µs each, "
                  f"final {final!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
