"""Loopback stacks for the hardening runs: nginx + ``phpsess fpm`` (+ a redis-server), the
scripts they serve, an HTTP client that records what was acknowledged, and the checks of
what is left in storage.  Starts and stops processes; everything listens on 127.0.0.1 or
on unix sockets inside the run's directory.

Shared by the ``soak_*.py`` scripts (long runs) and by the short versions in
``tests/integration/test_faults.py`` and ``test_hostile.py``.

The acknowledgement rule: ``inc.py`` adds 1 to the session's counter ``n``, closes the
session with ``session_write_close()`` *before* printing anything, and answers 200 with
the new value only when neither ``session_start()`` nor the write reported a problem
(PHP reports a failed write as a warning and still returns 200; the script turns any
warning into a 503).  So a 200 means "this value was written", and afterwards:

* each session's acknowledged values are all different (two requests that saw the same
  value would be a lost update);
* the stored counter is at least the highest acknowledged value (a lower one is a lost
  acknowledged write);
* ``stored - acknowledged`` is the number of writes that were applied but whose
  response never arrived (killed after the write): never negative.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import http.client
import json
import os
import random
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import psutil

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: python tests/soak/soak_x.py
    sys.path.insert(0, str(REPO))

from phpsess.core import formats as encoding  # noqa: E402
from phpsess.errors import SessionDecodeError  # noqa: E402
from phpsess.storage.files import strip_crash_padding  # noqa: E402
from tests.integration.nginx import Nginx, shipped_conf, start_fpm, wait_for  # noqa: E402


class Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: unwind so that every server this run started stops."""


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT raise :class:`Stopped` in the main thread, also when the run
    was started in the background (where SIGINT is ignored) or killed with plain
    ``kill``: the ``with`` blocks then stop nginx and the pool instead of leaving them
    running."""

    def _raise(signum: int, frame: object) -> None:
        raise Stopped(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)

__all__ = [
    "REPO",
    "SCRIPTS",
    "Stack",
    "fpm_stack",
    "write_ini",
    "Http",
    "Ledger",
    "Killer",
    "StoredSession",
    "read_files",
    "read_redis",
    "redis_locks",
    "locked_files",
    "check_counters",
    "run_clients",
    "inc_request",
    "new_sid",
    "pool_workers",
    "wait_pool_full",
    "fd_count",
    "rss",
]

#: the scripts every stack serves (under its document root)
SCRIPTS: dict[str, str] = {
    # +1 on the session's counter; ?pad=N stores N bytes of padding (sessions grow and
    # shrink), ?sleep=MS holds the lock that long, ?regen=1 regenerate_id(true) first,
    # ?key=K uses counter K instead of "n"
    "inc.py": """
        import json, os, time, warnings
        import phpsess
        from phpsess import GET, SESSION

        key = GET.get("key", "n")
        n = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if phpsess.session_start():
                if GET.get("regen") == "1":
                    phpsess.session_regenerate_id(True)
                n = SESSION.get(key, 0) + 1
                SESSION[key] = n
                pad = int(GET.get("pad", "0"))
                if pad:
                    SESSION["pad"] = "x" * pad
                else:
                    SESSION.pop("pad", None)
                if GET.get("sleep"):
                    time.sleep(float(GET["sleep"]) / 1000)
                phpsess.session_write_close()
        if n is None or caught:
            phpsess.http_response_code(503)
            print("\\n".join(str(w.message) for w in caught) or "session_start() failed")
        else:
            print(json.dumps({"n": n, "sid": phpsess.session_id(), "pid": os.getpid()}))
    """,
    # read-only view of a returning session (read_and_close: shared lock, no write)
    "view.py": """
        import json, warnings
        import phpsess
        from phpsess import SESSION

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ok = phpsess.session_start({"read_and_close": True})
        if not ok or caught:
            phpsess.http_response_code(503)
            print("\\n".join(str(w.message) for w in caught) or "session_start() failed")
        else:
            print(json.dumps({"n": SESSION.get("n", 0), "sid": phpsess.session_id()}))
    """,
    # no session at all: what the site serves besides sessions
    "ping.py": """
        import os
        print(os.getpid())
    """,
    # what the request saw: session id and data (hostile input runs); ?strict=1 turns
    # session.use_strict_mode on for the request
    "whoami.py": """
        import json, os, warnings
        import phpsess
        from phpsess import GET, SESSION

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ok = phpsess.session_start({"use_strict_mode": GET.get("strict", "0")})
            if ok:
                SESSION["seen"] = True
            sid = phpsess.session_id()
            data = repr(dict(SESSION))[:500] if ok else None
            phpsess.session_write_close()
        print(json.dumps({"ok": ok, "sid": sid, "data": data, "pid": os.getpid(),
                          "warnings": [str(w.message) for w in caught]}))
    """,
}


def new_sid(rng: random.Random | None = None, length: int = 32) -> str:
    """A valid session id of ``length`` hex digits (what a browser would send back)."""
    r = rng or random.Random()
    return "".join(r.choice("0123456789abcdef") for _ in range(length))


def write_ini(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write ``session.<key> = "<value>"`` lines (php.ini syntax) to ``path``."""
    lines = [f'session.{k} = "{v}"' for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def pool_workers(master_pid: int) -> list[psutil.Process]:
    """The live (not zombie) worker processes of the pool whose master is ``master_pid``."""
    out = []
    for p in psutil.Process(master_pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_pool_full(master_pid: int, workers: int, timeout: float = 15.0) -> float:
    """Wait until the pool has ``workers`` live workers again; returns the seconds waited."""
    t0 = time.monotonic()
    wait_for(lambda: len(pool_workers(master_pid)) == workers, timeout, f"{workers} workers")
    return time.monotonic() - t0


def fd_count(pids: list[int]) -> int:
    """Open file descriptors of these processes together (those still running)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).num_fds()
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far (those still running)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all CPUs, from /proc/stat)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


@dataclass
class Stack:
    """A running nginx + ``phpsess fpm``; ``port`` is nginx's, ``save_dir`` the files handler's."""

    base: Path
    root: Path
    save_dir: Path
    socket: str
    master: Any  # subprocess.Popen[bytes]
    nginx: Nginx
    workers: int
    registry: Path

    @property
    def port(self) -> int:
        """nginx's port on 127.0.0.1."""
        return self.nginx.port

    def worker_pids(self) -> list[int]:
        """The pool's live workers now."""
        return [p.pid for p in pool_workers(self.master.pid)]

    def nginx_pids(self) -> list[int]:
        """nginx's master and workers."""
        assert self.nginx.proc is not None
        master = psutil.Process(self.nginx.proc.pid)
        return [master.pid] + [c.pid for c in master.children()]

    def fpm_log(self) -> str:
        """What the pool has logged so far (tracebacks, warnings)."""
        p = Path(self.socket).with_suffix(".log")
        return p.read_text(errors="replace") if p.exists() else ""


@contextlib.contextmanager
def fpm_stack(
    base: Path,
    *,
    workers: int = 4,
    ini: Mapping[str, Any] | None = None,
    scripts: Mapping[str, str] | None = None,
    save_dir: Path | None = None,
) -> Iterator[Stack]:
    """Start ``phpsess fpm`` (``workers`` processes) behind nginx with the shipped
    ``conf/nginx.conf``, serving :data:`SCRIPTS`; stop both on exit.

    :param ini: ``session.*`` settings (without the prefix); ``save_path`` defaults to
        ``save_dir`` (files handler), ``gc_probability`` to 0.
    :param save_dir: the files handler's directory (default ``base/sessions``, created).
    """
    base.mkdir(parents=True, exist_ok=True)
    root = base / "www"
    root.mkdir(exist_ok=True)
    for name, code in {**SCRIPTS, **(scripts or {})}.items():
        (root / name).write_text(textwrap.dedent(code).lstrip())
    sessions = save_dir or base / "sessions"
    sessions.mkdir(exist_ok=True)
    settings: dict[str, Any] = {"save_path": str(sessions), "gc_probability": 0}
    settings.update(ini or {})
    ini_path = write_ini(base / "phpsess.ini", settings)
    registry = base / "lock-registry"
    registry.mkdir(exist_ok=True)
    sock = str(base / "fpm.sock")
    env = {"PHPSESS_LOCK_REGISTRY": str(registry)}
    with start_fpm(root, sock, workers=workers, ini=str(ini_path), env=env) as master:
        with shipped_conf(base / "nginx", root=root, fpm_socket=sock) as ng:
            stack = Stack(base, root, sessions, sock, master, ng, workers, registry)
            wait_pool_full(master.pid, workers)
            yield stack


class Http:
    """One keep-alive HTTP/1.1 connection to nginx on 127.0.0.1 (re-opened after an error)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, cookie: str | None = None) -> tuple[int, bytes, list[tuple[str, str]]]:
        """GET ``path``; returns (status, body, headers).

        :raises OSError, http.client.HTTPException: the connection failed (it is closed,
            the next call opens a new one).
        """
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Cookie": cookie} if cookie else {}
        try:
            self.conn.request("GET", path, headers=headers)
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if r.will_close:
            self.close()
        return r.status, body, list(r.getheaders())

    def close(self) -> None:
        """Close the connection (if open)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Ledger:
    """What the clients saw: acknowledged counter values per session, statuses, errors."""

    acks: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, sid: str, n: int) -> None:
        """Record that a 200 said ``sid``'s counter is now ``n``."""
        with self.lock:
            self.acks[sid].append(n)
            self.statuses["200"] += 1

    def other(self, status: str, detail: str = "") -> None:
        """Record a response that acknowledged nothing (status or exception name)."""
        with self.lock:
            self.statuses[status] += 1
            if detail:
                self.errors[_short(detail)] += 1

    @property
    def total(self) -> int:
        """Every request recorded."""
        return sum(self.statuses.values())


def _short(text: str) -> str:
    """An error text without ids, pids and paths that differ per request, for counting."""
    t = re.sub(r"[0-9a-f]{16,}", "<id>", text)
    t = re.sub(r"\b\d+\b", "<n>", t)
    t = re.sub(r"/[^\s)'\"]+", "<path>", t)
    return t[:240]


class Killer(threading.Thread):
    """``kill -9`` random workers of a pool at random moments.

    Picks a random live worker that has run at least ``min_age`` seconds (younger ones
    are left alone so that the pool's crash-loop guard, which pauses respawning when
    every worker dies within a second of starting, stays out of the measurement) and
    sends it SIGKILL, then sleeps a random 0 to 2 x ``interval`` seconds.
    """

    def __init__(self, master_pid: int, kills: int, *, interval: float = 0.05, min_age: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.master_pid = master_pid
        self.kills = kills
        self.interval = interval
        self.min_age = min_age
        self.rng = random.Random(seed)
        self.killed: list[int] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        """Kill until ``kills`` workers are dead or :meth:`stop` is called."""
        while len(self.killed) < self.kills and not self.stop_flag.is_set():
            self.stop_flag.wait(self.rng.uniform(0, 2 * self.interval))
            now = time.time()
            candidates = []
            for p in pool_workers(self.master_pid):
                with contextlib.suppress(psutil.Error):
                    if now - p.create_time() >= self.min_age:
                        candidates.append(p.pid)
            if not candidates:
                continue
            pid = self.rng.choice(candidates)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append(pid)

    def stop(self) -> None:
        """Stop killing (returns at once; join() to wait)."""
        self.stop_flag.set()


@dataclass
class StoredSession:
    """One session as found in storage at the end of a run."""

    sid: str
    raw: bytes
    data: Any = None
    error: str | None = None
    image: bool = False  # the crash-safe shrink image (a write killed between pwrite and ftruncate)

    @property
    def counter(self) -> int | None:
        """The stored ``n`` (None when absent or undecodable)."""
        if isinstance(self.data, dict) and isinstance(self.data.get("n"), int):
            return int(self.data["n"])
        return None


def _decode(sid: str, raw: bytes, serialize_handler: str) -> StoredSession:
    s = StoredSession(sid, raw)
    clean = strip_crash_padding(raw, serialize_handler)
    s.image = clean != raw
    try:
        s.data = encoding.decode(clean, serialize_handler) if clean else {}
        if s.image:
            encoding.decode(raw, serialize_handler)  # the image itself must decode too (as PHP reads it)
    except SessionDecodeError as exc:
        s.error = str(exc)
    return s


def read_files(save_dir: Path, serialize_handler: str = "php") -> dict[str, StoredSession]:
    """Every ``sess_*`` file under ``save_dir`` (depth 0), decoded."""
    out = {}
    for entry in os.scandir(save_dir):
        if entry.name.startswith("sess_") and entry.is_file(follow_symlinks=False):
            sid = entry.name[5:]
            with open(entry.path, "rb") as fh:
                out[sid] = _decode(sid, fh.read(), serialize_handler)
    return out


def read_redis(
    port: int, prefix: str = "PHPREDIS_SESSION:", serialize_handler: str = "php"
) -> dict[str, StoredSession]:
    """Every session key under ``prefix`` on the redis-server at 127.0.0.1:``port``, decoded."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        out = {}
        for key in client.scan_iter(match=prefix.encode() + b"*", count=1000):
            if key.endswith(b"_LOCK"):
                continue
            raw = client.get(key)
            if not isinstance(raw, bytes):
                continue
            sid = key[len(prefix):].decode()
            out[sid] = _decode(sid, raw, serialize_handler)
        return out
    finally:
        client.close()


def redis_locks(port: int, prefix: str = "PHPREDIS_SESSION:") -> list[tuple[str, int, bool, int]]:
    """The lock keys left: (key, holder pid, holder alive, milliseconds to live)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        out = []
        host = socket.gethostname()
        for key in client.scan_iter(match=prefix.encode() + b"*_LOCK", count=1000):
            value = client.get(key)
            parts = value.decode(errors="replace").split("|") if isinstance(value, bytes) else []
            pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            alive = parts[0] == host and pid > 0 and psutil.pid_exists(pid)
            out.append((key.decode(errors="replace"), pid, alive, int(client.pttl(key))))
        return out
    finally:
        client.close()


def locked_files(save_dir: Path) -> list[str]:
    """The ``sess_*`` files someone holds a flock on now (tried with LOCK_EX|LOCK_NB)."""
    held = []
    for entry in os.scandir(save_dir):
        if not entry.name.startswith("sess_"):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(entry.name)
        finally:
            os.close(fd)
    return held


def check_counters(stored: Mapping[str, StoredSession], ledger: Ledger) -> tuple[dict[str, int], list[str]]:
    """Compare what storage holds with what was acknowledged (see the module docstring).

    :returns: (figures, problems); no problems means no acknowledged write was lost.
    """
    problems: list[str] = []
    figures = collections.Counter[str]()
    for sid, acked in ledger.acks.items():
        figures["sessions_with_acks"] += 1
        figures["acknowledged_writes"] += len(acked)
        if len(set(acked)) != len(acked):
            dup = [v for v, c in collections.Counter(acked).items() if c > 1]
            problems.append(f"{sid}: value(s) {dup[:5]} acknowledged twice (lost update)")
        s = stored.get(sid)
        if s is None:
            problems.append(f"{sid}: acknowledged up to {max(acked)} but missing from storage")
            continue
        if s.error is not None:
            problems.append(f"{sid}: stored session does not decode: {s.error}")
            continue
        n = s.counter
        if n is None or n < max(acked):
            problems.append(f"{sid}: stored n={n} < highest acknowledged {max(acked)} (lost write)")
            continue
        figures["applied_not_acknowledged"] += n - len(acked)
    for s in stored.values():
        figures["stored_sessions"] += 1
        if not s.raw:
            figures["empty_files"] += 1
        if s.image:
            figures["shrink_images_left"] += 1
        if s.error is not None:
            figures["undecodable"] += 1
            if s.sid not in ledger.acks:
                problems.append(f"{s.sid}: stored session does not decode: {s.error}")
    return dict(figures), problems


def run_clients(
    n: int, body: Callable[[int, Http], None], port: int, stop: threading.Event
) -> list[threading.Thread]:
    """Start ``n`` client threads running ``body(index, http)`` until ``stop`` is set."""
    threads = []

    def loop(i: int) -> None:
        h = Http(port)
        try:
            while not stop.is_set():
                body(i, h)
        finally:
            h.close()

    for i in range(n):
        t = threading.Thread(target=loop, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    return threads


def inc_request(h: Http, ledger: Ledger, sid: str, query: str = "") -> dict[str, Any] | None:
    """GET /inc.py for ``sid`` and record the outcome; returns the JSON of a 200."""
    try:
        status, body, _ = h.get("/inc.py" + (f"?{query}" if query else ""), cookie=f"PHPSESSID={sid}")
    except (OSError, http.client.HTTPException) as exc:
        ledger.other(type(exc).__name__, str(exc))
        return None
    if status != 200:
        text = body.decode(errors="replace")
        ledger.other(str(status), "nginx error page" if text.startswith("<html>") else text)
        return None
    d: dict[str, Any] = json.loads(body)
    ledger.ack(d["sid"], int(d["n"]))
    return d

