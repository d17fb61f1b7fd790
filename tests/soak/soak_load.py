"""A mixed workload through nginx + ``phpsess fpm`` for ``--minutes``, with the figures that
show it holds: no error, bounded worker memory, no file-descriptor leak, steady
throughput.  Starts nginx and the pool on loopback in a temporary directory (files
handler); stops them.

Each client thread owns a few sessions and picks, per request:

* 20 %  a new session (no cookie; the new id joins the client's sessions);
* 45 %  a returning session, +1 (``inc.py``, 0-2000 bytes of padding): the answer must
  be exactly the client's last value + 1;
* 10 %  a returning session, read only (``view.py``, ``read_and_close``): exactly the
  last value;
* 20 %  the one hot session every client shares, +1 on its own key (lock contention);
  afterwards its counter must equal the number of 200s it gave;
* 5 %   a login: ``session_regenerate_id(true)`` then +1; the client moves to the new id.

Clients drop a session after ``--idle`` seconds without using it, and gc runs with
probability 1/100 per request with ``gc_maxlifetime`` = 2 x idle, so session files are
deleted all along without ever deleting one still in use.  A monitor samples, every
``--sample`` seconds, each worker's RSS, the open descriptors of nginx, the master and
the workers, the number of session files, the requests done, the latency percentiles of
the requests answered since the last sample, and CPU times.

By default the clients send as fast as they are answered (the machine's capacity);
``--rate R`` paces them to R requests/s together, so that a pool that keeps up serves
exactly R and a slowdown shows as lost throughput and rising latency.

    python -m tests.soak.soak_load --minutes 30 --rate 1000
    python -m tests.soak.soak_load --minutes 30            # flat out
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.soak.stack import Http, cpu_seconds, fd_count, fpm_stack, machine_busy_seconds, new_sid, read_files, rss, stop_on_signals  # noqa: E402

__all__ = ["run_load", "main"]

MIB = 2 ** 20


class _Client:
    """One browser-like client: its sessions, their expected counters, its tallies."""

    def __init__(self, port: int, seed: int, hot: str, idle: float, stats: "_Stats") -> None:
        self.h = Http(port)
        self.r = random.Random(seed)
        self.hot = hot
        self.idle = idle
        self.stats = stats
        self.mine: dict[str, tuple[int, float]] = {}  # sid -> (n, last used)

    def step(self) -> None:
        now = time.monotonic()
        for sid in [s for s, (_n, t) in self.mine.items() if now - t > self.idle]:
            del self.mine[sid]
        x = self.r.random()
        if x < 0.20 or not self.mine:
            self._inc(None, "new")
        elif x < 0.65:
            self._inc(self.r.choice(list(self.mine)), "returning", f"pad={self.r.randint(0, 2000)}")
        elif x < 0.75:
            self._view(self.r.choice(list(self.mine)))
        elif x < 0.95:
            self._hot()
        else:
            self._inc(self.r.choice(list(self.mine)), "login", "regen=1")

    def _get(self, path: str, sid: str | None, kind: str) -> dict[str, Any] | None:
        t = time.perf_counter()
        try:
            status, body, _ = self.h.get(path, cookie=f"PHPSESSID={sid}" if sid else None)
            self.stats.latencies.append(time.perf_counter() - t)
        except (OSError, http.client.HTTPException) as exc:
            self.stats.error(kind, f"{type(exc).__name__}: {exc}")
            return None
        if status != 200:
            self.stats.error(kind, f"{status}: {body[:200]!r}")
            return None
        self.stats.done(kind)
        result: dict[str, Any] = json.loads(body)
        return result

    def _inc(self, sid: str | None, kind: str, query: str = "") -> None:
        d = self._get("/inc.py" + (f"?{query}" if query else ""), sid, kind)
        if d is None:
            return
        expected = 1 if sid is None else self.mine[sid][0] + 1
        if d["n"] != expected:
            self.stats.error(kind, f"counter {d['n']}, expected {expected}")
        if sid is not None and kind == "login":
            del self.mine[sid]
            if d["sid"] == sid:
                self.stats.error(kind, "regenerate_id kept the old id")
        self.mine[d["sid"]] = (d["n"], time.monotonic())

    def _view(self, sid: str) -> None:
        d = self._get("/view.py", sid, "view")
        if d is not None and d["n"] != self.mine[sid][0]:
            self.stats.error("view", f"read {d['n']}, expected {self.mine[sid][0]}")

    def _hot(self) -> None:
        d = self._get("/inc.py?key=hot", self.hot, "hot")
        if d is not None:
            self.stats.hot_acks.append(d["n"])


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.total = 0
        self.hot_acks: list[int] = []
        #: seconds per answered request since the last sample (the monitor takes the list)
        self.latencies: list[float] = []

    def done(self, kind: str) -> None:
        with self.lock:
            self.count[kind] += 1
            self.total += 1

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[f"{kind}: {what}"[:200]] += 1
            self.total += 1


def run_load(
    base: Path,
    *,
    seconds: float,
    workers: int = 4,
    clients: int = 8,
    idle: float = 10.0,
    sample: float = 5.0,
    window: float = 60.0,
    warmup: float = 0.0,
    rate: float = 0.0,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the workload for ``seconds``; returns the figures and ``problems``.

    :param rate: requests per second offered by all clients together, each client
        keeping its own schedule (a late client catches up, so a pool that keeps up
        serves exactly the rate, and one that falls behind shows it as lost
        throughput and rising latency); 0: every client as fast as it can, which
        measures the machine's capacity (and so its speed, which drifts on a shared
        machine) as much as the pool.

    :param window: throughput is compared between the first and the last window of this
        many seconds (a minute for real runs).
    :param warmup: the first window starts this many seconds into the run.  Files live
        ``2 x idle`` seconds, so gc's first wave deletes everything the first seconds
        created at once, and ext4 then makes every create slow for a while (it skips
        recently freed inodes): the workload itself is not steady before that.
    """
    ini = {"gc_probability": 1, "gc_divisor": 100, "gc_maxlifetime": int(idle * 2), "lock_timeout": 30}
    problems: list[str] = []
    with fpm_stack(base, workers=workers, ini=ini) as st:
        stats = _Stats()
        hot = new_sid(random.Random(seed))
        warm = Http(st.port)
        warm.get("/inc.py?key=hot", cookie=f"PHPSESSID={hot}")
        for _ in range(workers * 4):  # every worker compiles its scripts before the first sample
            warm.get("/view.py")
        warm.close()
        time.sleep(0.3)
        workers_pids = st.worker_pids()
        nginx_pids = st.nginx_pids()
        watched = nginx_pids + [st.master.pid] + workers_pids
        fds_idle_start = fd_count(watched)
        rss_start = {pid: rss(pid) for pid in workers_pids}
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        pool = [_Client(st.port, seed * 1000 + i, hot, idle, stats) for i in range(clients)]

        def loop(c: _Client) -> None:
            interval = clients / rate if rate > 0 else 0.0
            due = time.monotonic() + random.random() * interval
            while not stop.is_set():
                if interval:
                    ahead = due - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    due += interval
                c.step()
            c.h.close()

        threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in pool]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        next_sample = t0 + sample
        while time.monotonic() - t0 < seconds:
            time.sleep(max(0.0, min(next_sample, t0 + seconds) - time.monotonic()))
            now = time.monotonic()
            if now >= next_sample:
                next_sample += sample
                lat, stats.latencies = stats.latencies, []
                lat.sort()
                samples.append({
                    "latency_ms": {  # of the requests answered since the last sample
                        q: round(lat[min(len(lat) - 1, int(len(lat) * f))] * 1000, 2) if lat else None
                        for q, f in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
                    },
                    "t": round(now - t0, 1),
                    "requests": stats.total,
                    "rss_mib": [round(rss(p) / MIB, 1) for p in workers_pids],
                    "fds": fd_count(watched),
                    "session_files": sum(1 for _ in os.scandir(st.save_dir)),
                    "load1": round(os.getloadavg()[0], 2),
                    # CPU seconds so far: the pool (master + workers), nginx, this client
                    # process, the whole machine; per window they tell whether a change of
                    # throughput came from the servers' cost per request or from elsewhere
                    "cpu_pool_s": round(cpu_seconds([st.master.pid] + workers_pids), 3),
                    "cpu_nginx_s": round(cpu_seconds(nginx_pids), 3),
                    "cpu_client_s": round(sum(os.times()[:2]), 3),
                    "cpu_machine_s": round(machine_busy_seconds(), 3),
                })
        stop.set()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        fds_idle_end = fd_count(watched)
        rss_end = {pid: rss(pid) for pid in workers_pids}
        alive = st.worker_pids()
        if sorted(alive) != sorted(workers_pids):
            problems.append(f"workers changed during the run: {workers_pids} -> {alive}")
        stored = read_files(st.save_dir)
        hot_n = stored[hot].data.get("hot") if hot in stored and isinstance(stored[hot].data, dict) else None
        if hot_n != len(stats.hot_acks) + 1 or len(set(stats.hot_acks)) != len(stats.hot_acks):
            problems.append(f"hot session: stored {hot_n}, {len(stats.hot_acks)} acknowledged (+1 warm-up)")
        undecodable = [s for s, v in stored.items() if v.error]
        if undecodable:
            problems.append(f"{len(undecodable)} undecodable session files")
        if stats.errors:
            problems.append(f"{sum(stats.errors.values())} errors: {stats.errors.most_common(5)}")
        if fds_idle_end != fds_idle_start:
            problems.append(f"open descriptors at idle: {fds_idle_start} before, {fds_idle_end} after")
        # throughput: first vs last window
        def rate_between(a: float, b: float) -> float:
            pts: list[tuple[float, int]] = [(0.0, 0)] + [(s["t"], s["requests"]) for s in samples]
            lo = min(pts, key=lambda p: abs(p[0] - a))
            hi = min(pts, key=lambda p: abs(p[0] - b))
            return (hi[1] - lo[1]) / max(1e-9, hi[0] - lo[0])

        w = min(window, elapsed / 2)
        start = min(warmup, max(0.0, elapsed - 2 * w))
        raw_first = rate_between(0, w)
        first, last = rate_between(start, start + w), rate_between(elapsed - w, elapsed)
        change = (last - first) / first if first else 0.0
        per_window = [round(rate_between(a, min(a + w, elapsed)), 1) for a in _frange(0.0, elapsed - w / 2, w)]

        def cpu_per_request(field: str, a: float, b: float) -> float:
            # µs of ``field`` CPU per request between the samples nearest to a and b
            if not samples:
                return 0.0
            lo = min(samples, key=lambda x: abs(x["t"] - a))
            hi = min(samples, key=lambda x: abs(x["t"] - b))
            n = hi["requests"] - lo["requests"]
            return round((hi[field] - lo[field]) / n * 1e6, 1) if n > 0 else 0.0

        cpu_windows = {
            f: [cpu_per_request(f, a, min(a + w, elapsed)) for a in _frange(0.0, elapsed - w / 2, w)]
            for f in ("cpu_pool_s", "cpu_nginx_s", "cpu_client_s", "cpu_machine_s")
        }
        cpu_first = {f: cpu_per_request(f, start, start + w) for f in cpu_windows}
        cpu_last = {f: cpu_per_request(f, elapsed - w, elapsed) for f in cpu_windows}
        growth = {pid: (rss_end[pid] - rss_start[pid]) / MIB for pid in workers_pids}
        after_first_window = next((s for s in samples if s["t"] >= w), samples[0] if samples else None)
        growth_after_warmup = (
            [round(e / MIB - a, 2) for e, a in zip(rss_end.values(), after_first_window["rss_mib"])]
            if after_first_window else []
        )
        def latency_of(a: float, b: float) -> dict[str, float | None]:
            # the worst p50/p99/max of the samples within [a, b]
            got = [x["latency_ms"] for x in samples if a < x["t"] <= b + 0.01]
            return {q: max((g[q] for g in got if g[q] is not None), default=None) for q in ("p50", "p99", "max")}

        report = {
            "seconds": round(elapsed, 1),
            "workers": workers,
            "clients": clients,
            "offered_rate_rps": rate or None,
            "requests": stats.total,
            "by_kind": dict(stats.count),
            "errors": sum(stats.errors.values()),
            "throughput_very_first_window_rps": round(raw_first, 1),
            "warmup_seconds": round(start, 1),
            "throughput_first_window_rps": round(first, 1),
            "throughput_last_window_rps": round(last, 1),
            "throughput_change": round(change, 4),
            "window_seconds": round(w, 1),
            "throughput_per_window_rps": per_window,
            # worst sample's latency percentiles in the first and the last window
            "latency_ms_first_window": latency_of(start, start + w),
            "latency_ms_last_window": latency_of(elapsed - w, elapsed),
            "latency_ms_p99_per_window": [
                latency_of(a, min(a + w, elapsed))["p99"] for a in _frange(0.0, elapsed - w / 2, w)
            ],
            # CPU µs per request, first and last window: pool, nginx, client, machine
            "cpu_us_per_request_first_window": {k[4:-2]: v for k, v in cpu_first.items()},
            "cpu_us_per_request_last_window": {k[4:-2]: v for k, v in cpu_last.items()},
            "cpu_us_per_request_per_window": {k[4:-2]: v for k, v in cpu_windows.items()},
            "worker_rss_start_mib": [round(v / MIB, 1) for v in rss_start.values()],
            "worker_rss_end_mib": [round(v / MIB, 1) for v in rss_end.values()],
            "worker_rss_growth_mib": [round(v, 2) for v in growth.values()],
            "worker_rss_growth_after_first_window_mib": growth_after_warmup,
            "fds_idle_start": fds_idle_start,
            "fds_idle_end": fds_idle_end,
            "fds_max_sampled": max((s["fds"] for s in samples), default=0),
            "session_files_max": max((s["session_files"] for s in samples), default=0),
            "session_files_end": len(stored),
            "hot_session_increments": len(stats.hot_acks),
            "load1_max": max((s["load1"] for s in samples), default=0),
            "samples": samples,
        }
    report["problems"] = problems
    log(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return report


def _frange(a: float, b: float, step: float) -> list[float]:
    out = []
    while a < b:
        out.append(a)
        a += step
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the figures (JSON), exit 1 when a check failed."""
    stop_on_signals()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds before a client forgets a session")
    ap.add_argument("--max-rss-growth", type=float, default=10.0,
                    help="MiB a worker may grow after the first minute (default 10)")
    ap.add_argument("--max-throughput-change", type=float, default=0.10)
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds before the first throughput minute (default 60: gc's first wave)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="requests/s offered by all clients together (default 0: as fast as they can)")
    ap.add_argument("--samples-out", help="write every sample (JSON) to this file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="phpsess-soak-load-") as tmp:
        report = run_load(Path(tmp), seconds=args.minutes * 60, workers=args.workers, clients=args.clients,
                          idle=args.idle, warmup=args.warmup, rate=args.rate, seed=args.seed)
    if args.samples_out:
        Path(args.samples_out).write_text(json.dumps(report["samples"], indent=1))
    bad = list(report["problems"])
    if any(g > args.max_rss_growth for g in report["worker_rss_growth_after_first_window_mib"]):
        bad.append(f"worker memory grew more than {args.max_rss_growth} MiB")
    if abs(report["throughput_change"]) > args.max_throughput_change:
        bad.append(f"throughput changed by {report['throughput_change']:.1%}")
    for b in bad:
        print("FAILED:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
