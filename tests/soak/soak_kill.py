"""``kill -9`` random ``phpsess fpm`` workers under load through nginx, then check that nothing
acknowledged was lost.  Starts nginx, the pool (and a redis-server for ``--handler redis``)
on loopback, in a temporary directory; stops them all at the end.

Clients increment per-session counters (``inc.py``, sessions that grow and shrink
between 0 and ``--pad`` bytes of padding) while a killer thread SIGKILLs random
workers at random moments.  Afterwards:

* every stored session decodes (no empty or torn file; shrink images left by a
  writer killed between its ``pwrite`` and its ``ftruncate`` are counted and must
  decode as well);
* no acknowledged write is lost and no value was acknowledged twice
  (``stack.check_counters``);
* no lock is left: files: every ``sess_*`` file can be locked with ``LOCK_NB``;
  redis: lock keys whose holder is dead expire within ``lock_expire``;
* the pool is back to ``--workers`` processes and serves every session again.

    python -m tests.soak.soak_kill --handler files --kills 1000
    python -m tests.soak.soak_kill --handler redis --kills 1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.soak.stack import (  # noqa: E402
    Http,
    Killer,
    Ledger,
    check_counters,
    fpm_stack,
    inc_request,
    locked_files,
    new_sid,
    read_files,
    read_redis,
    redis_locks,
    run_clients,
    wait_pool_full,
    stop_on_signals,
)

__all__ = ["run_kill", "main"]

PREFIX = "SOAK:"


@contextlib.contextmanager
def _redis(handler: str, extra: tuple[str, ...] = ()) -> Iterator[Any]:
    if handler != "redis":
        yield None
        return
    from tests.integration.redis_server import RedisProcess

    with RedisProcess(extra=extra) as srv:
        yield srv


def redis_ini(port: int, *, lock_expire: int = 2, lock_timeout: int = 20) -> dict[str, Any]:
    """``session.*`` settings for the redis handler on 127.0.0.1:``port`` (prefix :data:`PREFIX`)."""
    return {
        "save_handler": "redis",
        "save_path": f"tcp://127.0.0.1:{port}?prefix={PREFIX}&timeout=2&read_timeout=10"
                     f"&lock_expire={lock_expire}&lock_timeout={lock_timeout}",
    }


def run_kill(
    base: Path,
    *,
    handler: str = "files",
    kills: int = 1000,
    workers: int = 8,
    clients: int = 8,
    sessions: int = 40,
    pad: int = 3000,
    interval: float = 0.05,
    min_age: float = 1.0,
    hold_ms: float = 0.0,
    lock_expire: int = 2,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the kill test; returns the figures and ``problems`` (empty when everything held).

    :param hold_ms: each request holds its session a random 0 to ``hold_ms`` ms before
        writing, so that more kills land while a lock is held.
    """
    rng = random.Random(seed)
    sids = [new_sid(rng) for _ in range(sessions)]
    problems: list[str] = []
    report: dict[str, Any] = {"handler": handler, "workers": workers, "clients": clients, "sessions": sessions,
                              "pad_max": pad, "hold_ms_max": hold_ms}
    with _redis(handler) as srv:
        ini = redis_ini(srv.port, lock_expire=lock_expire) if srv is not None else {"lock_timeout": 30}
        with fpm_stack(base, workers=workers, ini=ini) as st:
            ledger = Ledger()
            warm = Http(st.port)
            for sid in sids:  # every session exists (and was acknowledged) before the first kill
                if inc_request(warm, ledger, sid) is None:
                    raise RuntimeError(f"warm-up request failed: {ledger.errors}")
            warm.close()
            stop = threading.Event()
            rngs = [random.Random(seed * 1000 + i) for i in range(clients)]

            def client(i: int, h: Http) -> None:
                r = rngs[i]
                hold = f"&sleep={r.uniform(0, hold_ms):.2f}" if hold_ms else ""
                inc_request(h, ledger, r.choice(sids), f"pad={r.randint(0, pad)}{hold}")

            started = time.monotonic()
            threads = run_clients(clients, client, st.port, stop)
            killer = Killer(st.master.pid, kills, interval=interval, min_age=min_age, seed=seed)
            killer.start()
            killer.join()
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join(120)
            elapsed = time.monotonic() - started
            report["kills"] = len(killer.killed)
            report["seconds"] = round(elapsed, 1)
            report["requests"] = ledger.total
            report["statuses"] = dict(ledger.statuses)
            report["errors"] = dict(ledger.errors.most_common(8))
            try:
                report["pool_refill_seconds"] = round(wait_pool_full(st.master.pid, workers), 2)
            except TimeoutError as exc:
                problems.append(f"pool not back to {workers} workers: {exc}")
            if st.master.poll() is not None:
                problems.append("the fpm master died")
            # locks: nobody may hold one now (files), or only until lock_expire (redis)
            if srv is None:
                held = locked_files(st.save_dir)
                report["locked_files_after"] = len(held)
                if held:
                    problems.append(f"{len(held)} session files still locked after the run: {held[:5]}")
                stored = read_files(st.save_dir)
            else:
                left = redis_locks(srv.port, PREFIX)
                report["redis_locks_left_by_dead_workers"] = sum(1 for _k, _p, alive, _t in left if not alive)
                if any(ttl > lock_expire * 1000 or ttl < 0 for _k, _p, _a, ttl in left):
                    problems.append(f"a lock key without a bounded expiry: {left}")
                time.sleep(lock_expire + 0.5)
                left = redis_locks(srv.port, PREFIX)
                if left:
                    problems.append(f"lock keys still present {lock_expire + 0.5} s later: {left[:5]}")
                stored = read_redis(srv.port, PREFIX)
            figures, bad = check_counters(stored, ledger)
            report.update(figures)
            problems += bad
            if figures.get("empty_files"):
                problems.append(f"{figures['empty_files']} empty session(s) left")
            # every session is served again, and its counter goes on from where it was
            after = Http(st.port)
            for sid in sids:
                before = stored[sid].counter if sid in stored else None
                d = inc_request(after, ledger, sid)
                if d is None:
                    problems.append(f"{sid}: not served after the run: {ledger.errors.most_common(1)}")
                elif before is not None and d["n"] != before + 1:
                    problems.append(f"{sid}: counter {before} then {d['n']} after the run")
            after.close()
            registries = list(st.registry.iterdir())
            report["lock_registry_files"] = len(registries)
            if len(registries) > workers + 1:
                problems.append(f"{len(registries)} lock registry files left for {workers} workers")
            log_text = st.fpm_log()
            report["fpm_tracebacks"] = log_text.count("Traceback")
    report["problems"] = problems
    log(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the figures as JSON, exit 1 when a problem was found."""
    stop_on_signals()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--handler", choices=("files", "redis"), default="files")
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--pad", type=int, default=3000, help="largest padding per session, bytes (default 3000)")
    ap.add_argument("--interval", type=float, default=0.05, help="mean seconds between kills (default 0.05)")
    ap.add_argument("--min-age", type=float, default=1.0, help="only kill workers at least this old (s)")
    ap.add_argument("--hold-ms", type=float, default=0.0, help="hold each session 0 to this many ms")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="phpsess-soak-kill-") as tmp:
        report = run_kill(Path(tmp), handler=args.handler, kills=args.kills, workers=args.workers,
                          clients=args.clients, sessions=args.sessions, pad=args.pad, interval=args.interval,
                          min_age=args.min_age, hold_ms=args.hold_ms, seed=args.seed)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
