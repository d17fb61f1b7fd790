"""Storage faults under ``phpsess fpm`` behind nginx: a full disk, a read-only disk, a Redis
server killed and restarted under load.  Mounts small tmpfs file systems (root only) and
unmounts them, starts nginx, the pool and redis-server on loopback; stops everything.

* ``disk_full``: save_path on a 64 KiB tmpfs, filled up.  New sessions, sessions that
  stay within their pages, and sessions that grow past them are requested, one by one
  and then under load; then space is freed.  Figures: which requests failed and with
  what text, which session files are left and whether they decode, and whether every
  acknowledged write is still there after the space came back.
* ``read_only``: save_path on a tmpfs remounted read-only, then read-write again.
* ``redis_restart``: clients increment counters while redis-server (AOF, ``appendfsync
  always``) is killed with SIGKILL and started again on the same port, ``--restarts``
  times.  Figures: errors while it is down, seconds from restart to the first success,
  success rate after, lost acknowledged writes (none allowed).

    python -m tests.soak.soak_storage disk_full
    python -m tests.soak.soak_storage read_only
    python -m tests.soak.soak_storage redis_restart --restarts 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
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
    Ledger,
    check_counters,
    fpm_stack,
    inc_request,
    new_sid,
    pool_workers,
    read_files,
    read_redis,
    run_clients,
    stop_on_signals,
)

__all__ = ["tmpfs", "run_disk_full", "run_read_only", "run_redis_restart", "main"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``64k``) at ``path`` (created); unmount it on exit (root only)."""
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        r = subprocess.run(["umount", str(path)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Write a filler file until the file system is full; returns its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (4096, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def _get(h: Http, path: str, sid: str | None) -> tuple[int, str]:
    status, body, _ = h.get(path, cookie=f"PHPSESSID={sid}" if sid else None)
    return status, body.decode(errors="replace")


def run_disk_full(base: Path, *, load_seconds: float = 2.0, clients: int = 4, seed: int = 1,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """The full-disk scenario; returns figures and ``problems`` (see the module docstring)."""
    rng = random.Random(seed)
    report: dict[str, Any] = {}
    problems: list[str] = []
    with tmpfs(base / "full", "64k") as mnt:
        with fpm_stack(base / "stack", workers=4, save_dir=mnt) as st:
            ledger = Ledger()
            h = Http(st.port)
            sids = [new_sid(rng) for _ in range(4)]
            for sid in sids:  # ~3 KB each: one page
                if inc_request(h, ledger, sid, "pad=3000") is None:
                    problems.append(f"setup write failed: {ledger.errors}")
            before = {sid: (mnt / f"sess_{sid}").read_bytes() for sid in sids}
            filler = _fill(mnt)
            report["free_bytes_after_fill"] = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            outcomes: dict[str, Any] = {}
            # a new session: the file can be created (an inode), its data cannot be written
            status, text = _get(h, "/inc.py?pad=100", None)
            outcomes["new session"] = {"status": status, "text": text.strip()[:300]}
            # same page: still fine
            d = inc_request(h, ledger, sids[0], "pad=2900")
            outcomes["write within its page"] = "acknowledged" if d else dict(ledger.errors)
            # growing past the page: must fail, and must leave the old session intact
            status, text = _get(h, "/inc.py?pad=6000", f"{sids[1]}")
            outcomes["write growing past its page"] = {"status": status, "text": text.strip()[:300]}
            if status == 200:
                problems.append("a write that needed a new page was acknowledged on a full disk")
            grown = read_files(mnt).get(sids[1])
            outcomes["file after the failed growth"] = {
                "bytes": len(grown.raw) if grown else None,
                "decodes": bool(grown and grown.error is None),
                "still_the_old_session": bool(grown and grown.raw == before[sids[1]]),
            }
            report["single_requests"] = outcomes
            # under load, random sizes
            stop = threading.Event()
            rngs = [random.Random(seed * 100 + i) for i in range(clients)]

            def client(i: int, hh: Http) -> None:
                r = rngs[i]
                inc_request(hh, ledger, r.choice(sids), f"pad={r.choice([0, 100, 2000, 2900, 5000, 9000])}")

            threads = run_clients(clients, client, st.port, stop)
            time.sleep(load_seconds)
            stop.set()
            for t in threads:
                t.join(60)
            report["load_statuses"] = dict(ledger.statuses)
            report["errors"] = dict(ledger.errors.most_common(6))
            if any(s.startswith("5") and s != "503" for s in ledger.statuses):
                problems.append(f"server errors other than the script's 503: {dict(ledger.statuses)}")
            stored = read_files(mnt)
            report["files_left"] = len(stored)
            report["empty_files"] = sorted(s for s, v in stored.items() if not v.raw and s not in sids)
            torn = sorted(s for s, v in stored.items() if v.error is not None)
            report["undecodable_files"] = torn
            report["undecodable_sizes"] = [len(stored[s].raw) for s in torn]
            figures, bad = check_counters(stored, ledger)
            report["counters"] = figures
            report["lost_acknowledged"] = bad
            # the space comes back: everything works again, counters go on
            filler.unlink()
            after: dict[str, int | None] = {}
            retried = []
            for sid in sids:
                d = inc_request(h, ledger, sid, "pad=100")
                if d is None:  # a torn file is destroyed by the first read (see the xfail tests)
                    retried.append(sid)
                    d = inc_request(h, ledger, sid, "pad=100")
                after[sid] = d["n"] if d else None
            report["after_space_freed"] = after
            report["sessions_failing_once_after_space_freed"] = len(retried)
            if any(v is None for v in after.values()):
                problems.append(f"not every session works after space was freed: {after} {ledger.errors}")
            if len(pool_workers(st.master.pid)) != st.workers:
                problems.append("the pool lost workers")
            report["before_bytes"] = {s: len(b) for s, b in before.items()}
            h.close()
    report["problems"] = problems
    log(json.dumps(report, indent=2))
    return report


def run_read_only(base: Path, *, log: Callable[[str], None] = print, seed: int = 1) -> dict[str, Any]:
    """The read-only scenario; returns figures and ``problems``."""
    rng = random.Random(seed)
    report: dict[str, Any] = {}
    problems: list[str] = []
    with tmpfs(base / "ro", "1m") as mnt:
        with fpm_stack(base / "stack", workers=2, save_dir=mnt) as st:
            ledger = Ledger()
            h = Http(st.port)
            sids = [new_sid(rng) for _ in range(3)]
            for sid in sids:
                inc_request(h, ledger, sid, "pad=500")
            before = {p.name: p.read_bytes() for p in mnt.iterdir()}
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            try:
                outcomes = {}
                cases: list[tuple[str, str | None]] = [
                    ("existing session", sids[0]), ("new session", None), ("chosen id", new_sid(rng))]
                for label, maybe_sid in cases:
                    status, text = _get(h, "/inc.py", maybe_sid)
                    outcomes[label] = {"status": status, "text": text.strip()[:300]}
                    if status == 200:
                        problems.append(f"{label}: acknowledged on a read-only file system")
                status, text = _get(h, "/view.py", sids[1])
                outcomes["read_and_close"] = {"status": status, "text": text.strip()[:300]}
                report["requests"] = outcomes
                after = {p.name: p.read_bytes() for p in mnt.iterdir()}
                if after != before:
                    problems.append("the read-only file system changed (?)")
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
            stored = read_files(mnt)
            figures, bad = check_counters(stored, ledger)
            problems += bad
            back = {}
            for sid in sids:
                d = inc_request(h, ledger, sid)
                back[sid] = d["n"] if d else None
            report["after_remount_rw"] = back
            if back != {sid: 2 for sid in sids}:
                problems.append(f"sessions after remount rw: {back} (expected 2 each)")
            h.close()
    report["problems"] = problems
    log(json.dumps(report, indent=2))
    return report


def run_redis_restart(base: Path, *, restarts: int = 3, down: float = 1.0, up: float = 3.0, clients: int = 6,
                      workers: int = 4, sessions: int = 20, seed: int = 1,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Kill redis-server (SIGKILL) and start it again ``restarts`` times under load."""
    from tests.integration.redis_server import RedisProcess
    from tests.soak.soak_kill import PREFIX, redis_ini

    rng = random.Random(seed)
    sids = [new_sid(rng) for _ in range(sessions)]
    problems: list[str] = []
    report: dict[str, Any] = {"restarts": restarts, "down_seconds": down}
    events: list[tuple[float, str, bool]] = []  # (time, sid, ok)
    with RedisProcess(extra=("--appendonly", "yes", "--appendfsync", "always")) as srv:
        with fpm_stack(base / "stack", workers=workers, ini=redis_ini(srv.port, lock_expire=2, lock_timeout=10)) as st:
            ledger = Ledger()
            warm = Http(st.port)
            for sid in sids:
                if inc_request(warm, ledger, sid) is None:
                    raise RuntimeError(f"warm-up failed: {ledger.errors}")
            warm.close()
            stop = threading.Event()
            rngs = [random.Random(seed * 100 + i) for i in range(clients)]
            ev_lock = threading.Lock()

            def client(i: int, h: Http) -> None:
                sid = rngs[i].choice(sids)
                d = inc_request(h, ledger, sid, f"pad={rngs[i].randint(0, 500)}")
                with ev_lock:
                    events.append((time.monotonic(), sid, d is not None))

            threads = run_clients(clients, client, st.port, stop)
            windows = []
            time.sleep(up)
            for _ in range(restarts):
                t_kill = time.monotonic()
                srv.kill()
                time.sleep(down)
                srv.start()
                t_up = time.monotonic()
                time.sleep(up)
                windows.append((t_kill, t_up))
            stop.set()
            for t in threads:
                t.join(60)
            ends = [w[0] for w in windows[1:]] + [time.monotonic()]
            recover, after_rates, down_fail = [], [], []
            for (t_kill, t_up), t_end in zip(windows, ends):
                during = [ok for t, _s, ok in events if t_kill + 0.05 < t < t_up]
                down_fail.append(sum(1 for ok in during if not ok))
                firsts = [t for t, _s, ok in events if ok and t > t_up]
                recover.append(round(min(firsts) - t_up, 3) if firsts else None)
                late = [ok for t, _s, ok in events if t_up + 2.0 < t < t_end]
                after_rates.append(round(sum(late) / len(late), 4) if late else None)
            report["failed_requests_while_down"] = down_fail
            report["seconds_to_first_success_after_restart"] = recover
            report["success_rate_from_2s_after_restart"] = after_rates
            report["statuses"] = dict(ledger.statuses)
            report["errors"] = dict(ledger.errors.most_common(6))
            if any(r is None or r < 1.0 for r in after_rates):
                problems.append(f"not fully recovered 2 s after a restart: {after_rates}")
            if any(s.startswith("5") and s not in ("503",) for s in ledger.statuses):
                problems.append(f"server errors other than the script's 503: {dict(ledger.statuses)}")
            stored = read_redis(srv.port, PREFIX)
            figures, bad = check_counters(stored, ledger)
            report.update(figures)
            problems += bad
            if len(pool_workers(st.master.pid)) != workers:
                problems.append("the pool lost workers")
    report["problems"] = problems
    log(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: run one scenario, print the figures as JSON, exit 1 on a problem."""
    stop_on_signals()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=("disk_full", "read_only", "redis_restart"))
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--down", type=float, default=1.0, help="seconds redis stays down")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="phpsess-soak-storage-") as tmp:
        if args.scenario == "disk_full":
            report = run_disk_full(Path(tmp), load_seconds=10, seed=args.seed)
            bad = report["problems"] + report["lost_acknowledged"] + report["undecodable_files"]
        elif args.scenario == "read_only":
            report = run_read_only(Path(tmp), seed=args.seed)
            bad = report["problems"]
        else:
            report = run_redis_restart(Path(tmp), restarts=args.restarts, down=args.down, seed=args.seed)
            bad = report["problems"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
