"""Redis session lock benchmark: lock handoff latency between two processes, and the cost
of one session cycle, redis handler vs files handler. Starts (and stops) its own
redis-server on 127.0.0.1; runs child processes.

Handoff = from the moment the holder calls ``close()`` (release) to the moment the
waiting process's ``read()`` returns with the lock, measured on CLOCK_MONOTONIC,
which both processes share.  Variants:

* ``redis, phpsess release``: the release PUBLISHes, the waiter is subscribed;
* ``redis, phpredis release``: the holder releases as phpredis does (compare-and-
  delete, no signal), so the waiter learns it from its ``lock_poll`` (5 ms) poll;
* ``flock``: two processes and ``fcntl.flock`` on one file (the files handler's lock).

Cycle = open + read + write + close of one session, uncontended, one process.
Contended = N processes incrementing one session (read, +1, write, close).

    python3 bench/redis_lock.py [--rounds 400] [--cycles 3000]
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from phpsess.core.config import SessionConfig  # noqa: E402
from phpsess.storage.redis import PHPREDIS_RELEASE_SCRIPT, RedisHandler  # noqa: E402

__all__ = ["main"]

SID = "benchlock0123456789abcdefghijklm"
COUNT_SID = "benchcount123456789abcdefghijkl"


def _handler(url: str) -> RedisHandler:
    h = RedisHandler(SessionConfig())
    h.open(url, "PHPSESSID")
    return h


# -- handoff: the waiting process ---------------------------------------------------------------


def _waiter(kind: str, target: str, conn: Connection, rounds: int) -> None:
    """Each round: wait for 'locked', say 'waiting', block on the lock, report when we got it."""
    if kind == "flock":
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(rounds):
        conn.recv()
        conn.send("waiting")
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
            got = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_UN)
            conn.send((got, 1.0))
        else:
            h = _handler(target)
            h.read(SID)
            got = time.perf_counter()
            waited = h.lock_info.waited
            h.close()
            conn.send((got, waited))
    conn.close()


def handoff(kind: str, target: str, rounds: int) -> list[float]:
    """Handoff latencies in seconds for ``kind`` in ("publish", "phpredis", "flock")."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_waiter, args=("flock" if kind == "flock" else "redis", target, child, rounds))
    proc.start()
    child.close()
    out: list[float] = []
    raw = None
    if kind == "phpredis":
        from phpsess.storage.redis import client_for
        from phpsess.core.redis_url import parse_save_path

        (server,) = parse_save_path(target)
        raw = client_for(server)
        lock_key = server.lock_key(SID)
        release = raw.register_script(PHPREDIS_RELEASE_SCRIPT)
    if kind == "flock":
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for _ in range(rounds):
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX)
            elif kind == "phpredis":
                assert raw is not None
                while not raw.set(lock_key, "otherhost|4242", nx=True, px=30000):
                    time.sleep(0.0005)
            else:
                h = _handler(target)
                h.read(SID)
            parent.send("locked")
            parent.recv()  # the waiter is about to block
            time.sleep(0.003)  # ... and now it does (subscribed, or in flock)
            t0 = time.perf_counter()
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_UN)
            elif kind == "phpredis":
                release(keys=[lock_key], args=["otherhost|4242"])
            else:
                h.close()
            got, waited = parent.recv()
            if waited > 0:  # the waiter really waited (it did not come after the release)
                out.append(got - t0)
    finally:
        proc.join(30)
        parent.close()
    return out


# -- cycle: one process, no contention --------------------------------------------------------


def cycle_redis(url: str, n: int) -> list[float]:
    """Seconds per open+read+write+close through the redis handler."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        h = _handler(url)
        data = h.read(SID)
        h.write(SID, b"n|i:%d;" % (len(data) + i))
        h.close()
        times.append(time.perf_counter() - t0)
    return times


def cycle_files(directory: str, n: int) -> tuple[str, list[float]]:
    """Seconds per cycle through the files handler (raw flock + pread/pwrite if it is absent)."""
    times = []
    try:
        from phpsess.storage.files import FilesHandler
    except ImportError:
        path = os.path.join(directory, "sess_" + SID)
        for i in range(n):
            t0 = time.perf_counter()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = os.pread(fd, 65536, 0)
            payload = b"n|i:%d;" % (len(data) + i)
            os.pwrite(fd, payload, 0)
            os.ftruncate(fd, len(payload))
            os.close(fd)
            times.append(time.perf_counter() - t0)
        return "raw flock + pread/pwrite (no FilesHandler)", times
    for i in range(n):
        t0 = time.perf_counter()
        h = FilesHandler(SessionConfig())
        h.open(directory, "PHPSESSID")
        data = h.read(SID)
        h.write(SID, b"n|i:%d;" % (len(data) + i))
        h.close()
        times.append(time.perf_counter() - t0)
    return "FilesHandler", times


# -- contended: many processes, one session ----------------------------------------------------


def _incrementer(kind: str, target: str, n: int, start: Connection) -> None:
    from phpsess.storage.base import handler_class

    start.recv()
    for _ in range(n):
        h = handler_class(kind)(SessionConfig())
        h.open(target, "PHPSESSID")
        data = h.read(COUNT_SID)
        count = int(data[len(b"count|i:"):-1]) if data else 0
        h.write(COUNT_SID, b"count|i:%d;" % (count + 1))
        h.close()


def contended(kind: str, target: str, procs: int, per_proc: int) -> float:
    """Seconds for ``procs`` processes to make ``per_proc`` increments each of one session."""
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(procs)]
    ps = [ctx.Process(target=_incrementer, args=(kind, target, per_proc, b)) for _, b in pipes]
    for p in ps:
        p.start()
    time.sleep(1.0)  # let every interpreter start
    t0 = time.perf_counter()
    for a, _ in pipes:
        a.send("go")
    for p in ps:
        p.join(120)
        if p.exitcode != 0:
            raise RuntimeError(f"{kind} incrementer failed ({p.exitcode})")
    return time.perf_counter() - t0


# -- report -------------------------------------------------------------------------------------


def _us(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1e6


def _line(name: str, values: list[float]) -> str:
    return (f"  {name:<34} n={len(values):<5} p50 {_us(values, 0.5):8.1f} µs   "
            f"p99 {_us(values, 0.99):8.1f} µs   mean {statistics.fmean(values) * 1e6:8.1f} µs")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=400, help="handoffs per variant")
    ap.add_argument("--cycles", type=int, default=3000, help="session cycles per handler")
    ap.add_argument("--procs", type=int, default=8, help="processes in the contended run")
    ap.add_argument("--per-proc", type=int, default=125, help="increments per process")
    args = ap.parse_args(argv)

    from tests.integration.redis_server import RedisProcess

    import redis

    with RedisProcess() as srv, tempfile.TemporaryDirectory(prefix="phpsess-bench-") as tmp:
        url = srv.url + "?lock_timeout=30"
        print(f"redis-server {srv.url} (also {srv.unix_url}); python {sys.version.split()[0]}, "
              f"redis-py {redis.__version__}, {os.cpu_count()} CPUs")
        print("lock handoff, release -> acquire in another process:")
        flock_path = os.path.join(tmp, "flock")
        for name, kind, target in [
            ("redis, phpsess release (PUBLISH)", "publish", url),
            ("redis, phpsess, unix socket", "publish", srv.unix_url + "?lock_timeout=30"),
            ("redis, phpredis release (poll)", "phpredis", url),
            ("flock on a local file", "flock", flock_path),
        ]:
            print(_line(name, handoff(kind, target, args.rounds)))

        print("session cycle (open+read+write+close), one process, no contention:")
        print(_line("redis handler, tcp", cycle_redis(url, args.cycles)))
        print(_line("redis handler, unix socket", cycle_redis(srv.unix_url, args.cycles)))
        files_name, files_times = cycle_files(tmp, args.cycles)
        print(_line(f"files: {files_name}", files_times))

        total = args.procs * args.per_proc
        print(f"contended: {args.procs} processes x {args.per_proc} increments of one session:")
        runs: list[tuple[str, Callable[[], float]]] = [
            ("redis handler", lambda: contended("redis", url, args.procs, args.per_proc)),
        ]
        if files_name == "FilesHandler":
            runs.append(("files handler", lambda: contended("files", tmp, args.procs, args.per_proc)))
        for name, run in runs:
            secs = run()
            print(f"  {name:<34} {total} increments in {secs:.3f} s = {secs / total * 1e6:.0f} µs each")
        final = redis.Redis(port=srv.port).get(f"PHPREDIS_SESSION:{COUNT_SID}")
        print(f"  redis final value: {final!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
