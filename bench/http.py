"""HTTP benchmark: requests/s of a session counter page, ``phpsess fpm`` against php-fpm 8.2,
both behind the same nginx.  Runs processes: starts nginx (127.0.0.1), php-fpm and
``phpsess fpm`` (unix sockets) and wrk, writes configs and session files in temp
directories, and stops and removes everything on exit (Ctrl-C and SIGTERM included).
With ``--store redis|rediscluster|memcached`` the sessions of both pools live in that
store instead (a redis-server, a 3-master Redis Cluster or a memcached that the bench
starts on 127.0.0.1): php-fpm with phpredis / php-memcached, phpsess with its handler,
each pool under its own key prefix.

The page is ``bench/http_scripts/counter.php`` / ``counter.py`` (session_start, n += 1,
a text body).  php-fpm runs ``pm = static`` with as many children as ``phpsess fpm``
has workers, with opcache on, as Debian ships it (``--no-opcache`` to turn it off).
Both use PHP's default session settings except ``session.gc_probability = 0``
(Debian's php.ini; a gc scan of thousands of new files would measure the directory,
not the runtime) and their own ``session.save_path``.  Two tables, tmpfs first: session
files on /dev/shm (the runtimes' own cost), then on the disk (/var/tmp), where creating and
truncating files costs what the file system's state makes it cost, so that table measures
the file system as much as the runtimes (``--tmpfs`` or ``--disk`` for one).  Cases:

* ``new``: no cookie, every request creates a session (and gets a Set-Cookie);
* ``pool``: each request sends one of 1,000 pre-created session ids, drawn at random
  (a wrk Lua script);
* ``shared``: every request sends the same session id, so all of them queue on its lock.

Each case is measured on both servers interleaved: after a 1 s warm-up of each, the
servers take 1 s wrk turns in ABBA order for ``--duration`` seconds each, so that
whatever else the machine runs meanwhile weighs on both alike (this 2-CPU machine is
shared; the ``other`` column shows how much CPU went to anything else).  With
``--rounds R`` the median of R rounds is kept (the ratio: the median of the rounds'
paired ratios; a round of case (a) after which creating a file in a save path costs
more than ``FAST_CREATE_US`` ran in ext4's slow-create state, measured the file system
more than the servers, and is left out of the ratio when another round was not: the
ratio line says so and gives the all-rounds ratio too).  The table gives req/s, wrk's latency
p50/p99 (median of the turns), the CPU each part used per request (the pool's processes, nginx, wrk, the rest of the
machine; µs) and the phpsess/php-fpm ratio against issue 4's goals; then RSS and USS
per worker (psutil) after the runs.

Finding what limits phpsess:

* ``--profile``: each case once more on phpsess under py-spy (``--gil``: only the
  samples where a worker runs Python, not where it waits), in µs per request;
* ``--stages``: each case once more with timers wrapped around the main steps of a
  request inside the workers (``bench/http.py _fpm`` runs ``phpsess fpm`` with them;
  phpsess itself is not changed);
* ``--inproc N``: no servers: N requests per case through one worker's own code in
  this process (the FastCGI records nginx sends, over a socketpair), CPU µs per
  request, stable enough to compare changes (``--stages`` adds the breakdown).

``$PHPSESS_TEST_PYTHONPATH`` runs another copy of phpsess (a prototype) instead of
this checkout's, in the pool and in ``--inproc``.

    python bench/http.py [--duration 5] [--workers 4] [--connections 32] [--rounds 3] [--tmpfs | --disk]
    python bench/http.py --cases shared --profile
    python bench/http.py --inproc 5000 --stages --tmpfs
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# run as a script, bench/ is sys.path[0], and this file would shadow the standard ``http``
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# measure another copy of phpsess (a prototype): the servers' PYTHONPATH, and --inproc's
if os.environ.get("PHPSESS_TEST_PYTHONPATH"):
    sys.path.insert(0, os.environ["PHPSESS_TEST_PYTHONPATH"])

__all__ = [
    "CASES",
    "GOALS",
    "SERVERS",
    "STAGE_POINTS",
    "Latency",
    "WrkResult",
    "Measurement",
    "Stack",
    "CaseSetup",
    "parse_wrk",
    "parse_duration",
    "php_fpm_config",
    "phpsess_ini",
    "nginx_config",
    "pool_lua",
    "make_ids",
    "precreate_sessions",
    "fcgi_request_bytes",
    "aggregate_pyspy",
    "start_stack",
    "start_store",
    "Store",
    "check_pages",
    "prepare_cases",
    "run_wrk",
    "measure_slice",
    "measure_case",
    "paired_ratios",
    "profile_pyspy",
    "install_stage_timers",
    "dump_stages",
    "stage_report",
    "inproc",
    "format_table",
    "format_memory",
    "main",
]

SCRIPTS = HERE / "http_scripts"
#: case name -> what it measures
CASES: dict[str, str] = {
    "new": "(a) new session per request",
    "pool": "(b) pool of 1,000 sessions",
    "shared": "(c) one shared session",
}
#: issue 4's goals: phpsess req/s over php-fpm req/s, measured in the same run
GOALS: dict[str, float] = {"new": 1.0, "pool": 1.0, "shared": 1.5}
#: server name -> URL path of the counter page
SERVERS: dict[str, str] = {"php-fpm": "/counter.php", "phpsess": "/counter.py"}
POOL_SIZE = 1000
#: what a session holds before the first request (PHP's "php" serialize_handler)
SESSION_SEED = b"n|i:0;"
PHP_FPM = "/usr/sbin/php-fpm8.2"
STAGES_ENV = "PHPSESS_BENCH_STAGES"


# -- pure helpers ----------------------------------------------------------------------------


@dataclasses.dataclass
class Latency:
    """wrk's latency distribution (milliseconds)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


@dataclasses.dataclass
class WrkResult:
    """What one wrk run printed."""

    requests: int
    seconds: float
    rps: float
    latency: Latency
    non_2xx: int = 0
    socket_errors: int = 0


@dataclasses.dataclass
class Measurement:
    """One (case, server) run: wrk's figures and the CPU µs per request of each part."""

    case: str
    server: str
    wrk: WrkResult
    cpu_us: dict[str, float]
    busy: float  # share of the machine's CPU time that was busy (0..1)


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_duration(text: str) -> float:
    """A wrk duration (``812.00us``, ``1.23ms``, ``2.01s``) in milliseconds.

    >>> parse_duration("812.00us"), parse_duration("1.50ms"), parse_duration("2s")
    (0.812, 1.5, 2000.0)
    """
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """Parse the output of ``wrk --latency``.

    >>> out = '''Running 5s test @ http://127.0.0.1:8080/counter.py
    ...   1 threads and 32 connections
    ...   Latency Distribution
    ...      50%    4.10ms
    ...      90%    6.00ms
    ...      99%   12.34ms
    ...   20480 requests in 5.00s, 5.20MB read
    ...   Socket errors: connect 0, read 2, write 0, timeout 1
    ...   Non-2xx or 3xx responses: 7
    ... Requests/sec:   4096.00
    ... Transfer/sec:      1.04MB'''
    >>> r = parse_wrk(out)
    >>> r.requests, r.seconds, r.rps, r.latency.p50, r.latency.p99, r.non_2xx, r.socket_errors
    (20480, 5.0, 4096.0, 4.1, 12.34, 7, 3)
    """
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", text, re.M)
    r = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if not m or not r:
        raise ValueError(f"cannot read wrk's output:\n{text}")
    lat = Latency()
    for pct, value in re.findall(r"^\s*(50|90|99)%\s+(\S+)\s*$", text, re.M):
        setattr(lat, f"p{pct}", parse_duration(value))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        requests=int(m.group(1)),
        seconds=parse_duration(m.group(2)) / 1e3,
        rps=float(r.group(1)),
        latency=lat,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def php_fpm_config(
    workdir: Path, socket_path: str, workers: int, save_path: str, *, opcache: bool = True,
    ini: Mapping[str, str] | None = None,
) -> str:
    """php-fpm's config file: one ``pm = static`` pool on a unix socket, in the foreground.

    Session settings are PHP's defaults but ``save_path``, ``gc_probability = 0`` and
    ``ini`` (the store's: save_handler, key prefix).
    """
    lines = [
        "[global]",
        f"pid = {workdir}/php-fpm.pid",
        f"error_log = {workdir}/php-fpm.log",
        "daemonize = no",
        "",
        "[bench]",
        f"listen = {socket_path}",
        "listen.mode = 0660",
        "listen.backlog = 511",
        "pm = static",
        f"pm.max_children = {workers}",
        "catch_workers_output = yes",
        "clear_env = no",
        f"php_admin_value[session.save_path] = {_ini_value(save_path)}",
        "php_admin_value[session.gc_probability] = 0",
        *(f"php_admin_value[{k}] = {_ini_value(v)}" for k, v in (ini or {}).items()),
        "php_admin_value[expose_php] = 0",
        "php_admin_value[log_errors] = 1",
        "php_admin_value[display_errors] = 0",
    ]
    if opcache:
        lines += [
            "php_admin_value[opcache.enable] = 1",
            "php_admin_value[opcache.validate_timestamps] = 1",
        ]
    return "\n".join(lines) + "\n"


def _ini_value(value: str) -> str:
    """``value`` quoted for an ini file when it holds characters the ini syntax reads."""
    return f'"{value}"' if any(c in value for c in "=&?;[]{}|!~^()\"") else value


def phpsess_ini(save_path: str, ini: Mapping[str, str] | None = None) -> str:
    """The ``--ini`` file of ``phpsess fpm``: the same session settings as php-fpm's pool."""
    lines = [f"session.save_path = {_ini_value(save_path)}", "session.gc_probability = 0"]
    lines += [f"{k} = {_ini_value(v)}" for k, v in (ini or {}).items()]
    return "\n".join(lines) + "\n"


def nginx_config(
    workdir: Path, port: int, root: Path, php_socket: str, py_socket: str, *, keepalive: int = 0
) -> str:
    """One nginx on 127.0.0.1:``port``: ``*.php`` to php-fpm, ``*.py`` to phpsess fpm.

    The two locations are alike (the shipped conf/nginx.conf's FastCGI settings, no
    access log), so nginx costs both the same.  By default each request opens a new
    backend connection, as the shipped config does; ``keepalive`` > 0 keeps up to that
    many idle connections per backend (``fastcgi_keep_conn on``).
    """
    keep_conn = "            fastcgi_keep_conn on;\n" if keepalive else ""
    keep_up = f" keepalive {keepalive};" if keepalive else ""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {name}_temp_path {workdir}/tmp_{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )

    def location(ext: str, upstream: str) -> str:
        return (
            f"        location ~ [^/]\\.{ext}$ {{\n"
            f"            try_files $fastcgi_script_name =404;\n"
            f"            fastcgi_pass {upstream};\n"
            f"            include fastcgi_params;\n"
            f"            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
            f"            fastcgi_read_timeout 300s;\n"
            f"{keep_conn}"
            f"        }}\n"
        )

    return (
        f"daemon off;\nmaster_process on;\nworker_processes 1;\n{user}"
        f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    keepalive_requests 1000000;\n"
        f"{temp}"
        f"    upstream php_fpm {{ server unix:{php_socket};{keep_up} }}\n"
        f"    upstream phpsess_fpm {{ server unix:{py_socket};{keep_up} }}\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port} backlog=4096;\n"
        "        server_name localhost;\n"
        f"        root {root};\n"
        + location("php", "php_fpm")
        + location("py", "phpsess_fpm")
        + "    }\n}\n"
    )


def pool_lua(ids: Sequence[str], cookie_name: str = "PHPSESSID") -> str:
    """A wrk script that sends, per request, the cookie of one of ``ids`` drawn at random
    (each wrk thread seeded differently)."""
    table = ",\n".join(f'  "{cookie_name}={sid}"' for sid in ids)
    return (
        "local cookies = {\n" + table + "\n}\n"
        "local n = #cookies\n"
        "local counter = 0\n"
        "function setup(thread)\n"
        "  counter = counter + 1\n"
        "  thread:set('tid', counter)\n"
        "end\n"
        "function init(args)\n"
        "  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)\n"
        "end\n"
        "function request()\n"
        "  return wrk.format(nil, nil, { ['Cookie'] = cookies[math.random(n)] })\n"
        "end\n"
    )


def make_ids(count: int, token_hex: Callable[[int], str] = secrets.token_hex) -> list[str]:
    """``count`` session ids as PHP 8.2 makes them by default (32 chars of ``[0-9a-f]``).

    >>> make_ids(2, lambda n: "ab" * n)
    ['abababababababababababababababab', 'abababababababababababababababab']
    """
    return [token_hex(16) for _ in range(count)]


def precreate_sessions(save_path: str, ids: Sequence[str], data: bytes = SESSION_SEED,
                       store: "Store | None" = None, server: str = "") -> None:
    """Write ``sess_<id>`` files holding ``data`` (mode 0600, as PHP creates them), or
    the sessions into ``store`` under ``server``'s prefix."""
    if store is not None and store.name != "files":
        h = store.handler(server)
        for sid in ids:
            h.read(sid)
            h.write(sid, data)
            h.close()
        return
    for sid in ids:
        fd = os.open(os.path.join(save_path, "sess_" + sid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def aggregate_pyspy(raw: str) -> tuple[dict[str, int], dict[str, int], int]:
    """Sum py-spy's ``--format raw`` (collapsed stacks, ``frame;frame;... count``).

    :returns: (inclusive samples per frame, self samples per frame, total samples);
        a frame is ``function (file)`` without the line number, counted once per stack.

    >>> inc, own, total = aggregate_pyspy('process 1:"x";a (m.py:1);b (m.py:5) 3\\n'
    ...                                   'process 1:"x";a (m.py:1);a (m.py:2) 2\\n')
    >>> inc["a (m.py)"], own["b (m.py)"], own["a (m.py)"], total
    (5, 3, 2, 5)
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            if frame.startswith(("process ", "thread ")):
                continue
            frames.append(re.sub(r":\d+\)$", ")", frame))
        if not frames:
            continue
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
    return dict(inclusive), dict(own), total


# -- processes ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(pids: Sequence[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _memory(pids: Sequence[int]) -> list[tuple[int, int]]:
    """(RSS, USS) bytes of each process."""
    import psutil

    out = []
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:
            continue
        out.append((info.rss, info.uss))
    return out


@contextlib.contextmanager
def _php_fpm(workdir: Path, socket_path: str, workers: int, save_path: str, opcache: bool,
             store: "Store | None" = None) -> Iterator[int]:
    """php-fpm in the foreground; yields the master's pid; stops it on exit."""
    from tests.integration.nginx import stop_process, wait_for_socket
    from tests.phptools import require

    binary = require(PHP_FPM)
    conf = workdir / "php-fpm.conf"
    ini = store.ini["php-fpm"] if store is not None else None
    conf.write_text(php_fpm_config(workdir, socket_path, workers, save_path, opcache=opcache, ini=ini))
    args = [binary, "-n", "-F", "-y", str(conf)]
    if store is not None and store.name != "files":
        for ext in PHP_STORE_EXTENSIONS:
            args += ["-d", f"extension={ext}"]
    if opcache:
        args += ["-d", "zend_extension=opcache.so"]
    if os.geteuid() == 0:
        args.append("-R")
    log = open(workdir / "php-fpm.out", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_socket(socket_path, 15.0)
        except TimeoutError:
            raise RuntimeError("php-fpm did not start:\n" + (workdir / "php-fpm.out").read_text(errors="replace"))
        _wait_children(proc.pid, workers)
        yield proc.pid
    finally:
        stop_process(proc, signal.SIGTERM)
        log.close()


@contextlib.contextmanager
def _phpsess_fpm(workdir: Path, socket_path: str, workers: int, save_path: str, stages: bool,
                 store: "Store | None" = None) -> Iterator[int]:
    """``phpsess fpm`` (through this script when ``stages``); yields the master's pid."""
    from tests.integration.nginx import PYTHONPATH, stop_process, wait_for_socket

    ini = workdir / "phpsess.ini"
    ini.write_text(phpsess_ini(save_path, store.ini["phpsess"] if store is not None else None))
    fpm = ["fpm", "--listen", socket_path, "--root", str(SCRIPTS), "--workers", str(workers), "--ini", str(ini)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHONPATH, env.get("PYTHONPATH", "")) if p)
    env.pop("PHPSESS_INI", None)
    if stages:
        env[STAGES_ENV] = str(workdir / "stages")
        (workdir / "stages").mkdir(exist_ok=True)
        args = [sys.executable, str(Path(__file__).resolve()), "_fpm", *fpm]
    else:
        args = [sys.executable, "-m", "phpsess", *fpm]
    log = open(workdir / "phpsess-fpm.out", "wb")
    # cwd: not the checkout, whose phpsess/ would shadow $PHPSESS_TEST_PYTHONPATH under -m
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    try:
        try:
            wait_for_socket(socket_path, 15.0)
        except TimeoutError:
            raise RuntimeError(
                "phpsess fpm did not start:\n" + (workdir / "phpsess-fpm.out").read_text(errors="replace")
            )
        _wait_children(proc.pid, workers)
        yield proc.pid
    finally:
        stop_process(proc, signal.SIGTERM)
        log.close()


def _phpsess_dir() -> str:
    """The phpsess package ``phpsess fpm`` runs here (``$PHPSESS_TEST_PYTHONPATH`` or this checkout)."""
    from tests.integration.nginx import PYTHONPATH

    return os.path.join(PYTHONPATH, "phpsess")


def _wait_children(pid: int, workers: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_children(pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclasses.dataclass
class Stack:
    """The running servers of one bench run."""

    port: int
    pids: dict[str, int]  # "php-fpm" / "phpsess" / "nginx" -> master pid
    save_paths: dict[str, str]
    workdir: Path
    store: "Store | None" = None

    def stored(self, server: str, sid: str) -> bytes | None:
        """The stored session ``sid`` of ``server``'s pool (None: absent)."""
        if self.store is not None and self.store.name != "files":
            return self.store.peek(server, sid)
        try:
            with open(os.path.join(self.save_paths[server], "sess_" + sid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def url(self, server: str) -> str:
        """The counter page of ``server`` through nginx."""
        return f"http://127.0.0.1:{self.port}{SERVERS[server]}"

    def workers(self, server: str) -> list[int]:
        """The worker pids of ``server`` (the pool's children)."""
        return _children(self.pids[server])

    def group(self, name: str) -> list[int]:
        """A master and its children."""
        return [self.pids[name], *_children(self.pids[name])]


def create_cost_us(directory: Path, count: int = 200) -> float:
    """Wall µs to create (and then remove) one empty file in ``directory``: what a
    new session costs the file system before any runtime code runs."""
    names = [str(directory / f"probe_{os.getpid()}_{i}") for i in range(count)]
    t0 = time.perf_counter()
    for name in names:
        os.close(os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    elapsed = time.perf_counter() - t0
    for name in names:
        os.unlink(name)
    return elapsed / count * 1e6


FAST_CREATE_US = 60.0


def fast_directory(parent: Path, name: str, settle: float = 120.0) -> Path:
    """Make ``parent/name`` (mode 0700) and wait until creating a file in it costs what
    it normally does.

    Right after many files were deleted (the previous run's clean-up), ext4 skips its
    recently freed inodes and every create costs 300-1,000 µs instead of ~15 µs for
    a minute or so (measured with :func:`create_cost_us`).  Case (a) creates one file
    per request, so that state would decide the ratio.  The probe is repeated every
    5 s for up to ``settle`` seconds; the last figure is recorded in ``CREATE_COSTS``
    for the report.
    """
    d = parent / name
    d.mkdir(mode=0o700)
    deadline = time.monotonic() + settle
    cost = create_cost_us(d)
    while cost > FAST_CREATE_US and time.monotonic() < deadline:
        print(f"  file create in {d} costs {cost:.0f} µs: waiting for the file system to settle", flush=True)
        time.sleep(5)
        cost = create_cost_us(d)
    CREATE_COSTS[name] = cost
    return d


CREATE_COSTS: dict[str, float] = {}


#: --store choices
STORES = ("files", "redis", "rediscluster", "memcached")
#: what php-fpm -n loads for the stores (Debian's php-memcached needs igbinary and msgpack)
PHP_STORE_EXTENSIONS = ["igbinary.so", "msgpack.so", "memcached.so", "redis.so"]
#: each pool's key prefix in a shared store
STORE_PREFIX = {"php-fpm": "php.", "phpsess": "py."}


@dataclasses.dataclass
class Store:
    """Where both pools keep their sessions: save_path and ini per pool."""

    name: str
    save_paths: dict[str, str]  # per server
    ini: dict[str, dict[str, str]]  # per server: settings besides save_path
    handler_ini: dict[str, dict[str, str]]  # per server: what a phpsess handler needs to see its sessions

    def handler(self, server: str) -> Any:
        """An opened phpsess handler on ``server``'s sessions (to pre-create and check them)."""
        from phpsess.core.config import SessionConfig
        from phpsess.storage.base import handler_class

        ini = {k.removeprefix("session."): v for k, v in self.handler_ini[server].items()}
        h = handler_class(self.name)(SessionConfig(ini))
        h.open(self.save_paths[server], "PHPSESSID")
        return h

    def peek(self, server: str, sid: str) -> bytes | None:
        """``server``'s stored session ``sid``, read without its lock."""
        h = self.handler(server)
        if self.name == "redis":
            import redis

            port = int(self.save_paths[server].split("?")[0].rsplit(":", 1)[1])
            with redis.Redis(port=port) as r:
                value = r.get(STORE_PREFIX[server] + sid)
            return None if value is None else bytes(value)
        value = h.peek(sid)
        return None if value is None else bytes(value)


@contextlib.contextmanager
def start_store(name: str) -> Iterator[Store | None]:
    """Start the store's server(s) on 127.0.0.1 (``files``: nothing); stop them on exit.

    php-fpm's phpredis gets its lock turned on (``redis.session.locking_enabled``, off by
    default), so both pools lock each session; php-memcached locks by default and
    phpredis's cluster handler cannot.
    """
    if name == "files":
        yield None
        return
    if name == "redis":
        from tests.integration.redis_server import RedisProcess

        with RedisProcess() as r:
            lock = {"redis.session.locking_enabled": "1", "redis.session.lock_wait_time": "2000",
                    "redis.session.lock_retries": "5000"}
            yield Store(name, {s: f"{r.url}?prefix={p}" for s, p in STORE_PREFIX.items()},
                        {"php-fpm": {"session.save_handler": "redis", **lock},
                         "phpsess": {"session.save_handler": "redis"}}, {s: {} for s in STORE_PREFIX})
    elif name == "rediscluster":
        from tests.integration.redis_cluster import RedisCluster

        with RedisCluster() as c:
            yield Store(name, {s: f"{c.save_path}&prefix={p}" for s, p in STORE_PREFIX.items()},
                        {s: {"session.save_handler": "rediscluster"} for s in STORE_PREFIX},
                        {s: {} for s in STORE_PREFIX})
    elif name == "memcached":
        from tests.integration.memcached_server import MemcachedProcess

        with MemcachedProcess() as m:
            yield Store(name, {s: m.address for s in STORE_PREFIX},
                        {s: {"session.save_handler": "memcached", "memcached.sess_prefix": p + "sess."}
                         for s, p in STORE_PREFIX.items()},
                        {s: {"memcached.sess_prefix": p + "sess."} for s, p in STORE_PREFIX.items()})
    else:
        raise ValueError(f"unknown store {name!r}")


@contextlib.contextmanager
def start_stack(
    workdir: Path, save_root: Path, workers: int, *, opcache: bool, stages: bool, keepalive: int = 0,
    store: "Store | None" = None,
) -> Iterator[Stack]:
    """Start php-fpm, phpsess fpm and one nginx in front of both; stop them all on exit."""
    from tests.integration.nginx import Nginx, free_port

    if store is not None and store.name != "files":
        save_paths = dict(store.save_paths)
    else:
        save_paths = {server: str(fast_directory(save_root, server)) for server in SERVERS}
    php_sock = str(workdir / "php-fpm.sock")
    py_sock = str(workdir / "phpsess.sock")
    py_workers: set[int] = set()
    try:
        with contextlib.ExitStack() as stack:
            php_pid = stack.enter_context(_php_fpm(workdir, php_sock, workers, save_paths["php-fpm"], opcache, store))
            py_pid = stack.enter_context(_phpsess_fpm(workdir, py_sock, workers, save_paths["phpsess"], stages,
                                                      store))
            py_workers.update(_children(py_pid))
            port = free_port()
            ng = Nginx(workdir / "nginx", port=port)
            ng.config = nginx_config(ng.dir, port, SCRIPTS, php_sock, py_sock, keepalive=keepalive)
            stack.enter_context(ng)
            assert ng.proc is not None
            try:
                yield Stack(port, {"php-fpm": php_pid, "phpsess": py_pid, "nginx": ng.proc.pid}, save_paths, workdir,
                            store)
            finally:
                py_workers.update(_children(py_pid))
    finally:
        _remove_lock_registries(py_workers)


def _remove_lock_registries(pids: set[int]) -> None:
    """Delete the lock registry files (phpsess.storage.registry) our stopped workers left behind:
    a worker killed by SIGTERM does not run its atexit cleanup."""
    try:
        from phpsess.storage import registry as locks
    except ImportError:
        return
    registry_path = getattr(locks, "registry_path", None)
    if registry_path is None:
        return
    for pid in pids:
        if os.path.exists(f"/proc/{pid}"):
            continue
        path = registry_path(pid)
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


# -- measuring ---------------------------------------------------------------------------


def check_pages(stack: Stack) -> list[str]:
    """Ask both pages twice with a cookie; they must count 1, 2 and send the same headers.

    :returns: the differences found (empty: the two servers answer alike).
    :raises RuntimeError: a page does not work at all.
    """
    from tests.integration.nginx import http_get

    sid = make_ids(1)[0]
    seen: dict[str, list[tuple[str, str]]] = {}
    for server, path in SERVERS.items():
        for n in (1, 2):
            r = http_get(stack.port, path, cookie=f"PHPSESSID={sid}")
            if r.status != 200 or r.body != f"n = {n}\n".encode():
                raise RuntimeError(f"{server} {path}: {r!r}")
        seen[server] = [(k.lower(), v) for k, v in r.headers if k.lower() not in ("date", "server")]
        if stack.stored(server, sid) != b"n|i:2;":
            raise RuntimeError(f"{server}: unexpected stored session {stack.stored(server, sid)!r}")
        r = http_get(stack.port, path)
        cookie = r.header("Set-Cookie") or ""
        if not re.fullmatch(r"PHPSESSID=[0-9a-v]{32}; path=/", cookie):
            raise RuntimeError(f"{server}: unexpected Set-Cookie {cookie!r}")
    a, b = seen["php-fpm"], seen["phpsess"]
    return [] if a == b else [f"php-fpm headers {a}", f"phpsess headers {b}"]


def run_wrk(
    url: str, duration: float, connections: int, threads: int, *, cookie: str | None, lua: str | None
) -> WrkResult:
    """One wrk run against ``url``."""
    args = ["wrk", "--latency", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "30s"]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    if lua:
        args += ["-s", lua]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True)
    return parse_wrk(out.stdout)


@dataclasses.dataclass
class CaseSetup:
    """How wrk is asked to send cookies for a case."""

    cookie: dict[str, str | None]  # per server
    lua: str | None


def prepare_cases(stack: Stack, cases: Sequence[str]) -> dict[str, CaseSetup]:
    """Pre-create the sessions the cases use (same ids and data for both servers)."""
    out = {}
    for case in cases:
        if case == "new":
            out[case] = CaseSetup({s: None for s in SERVERS}, None)
        elif case == "pool":
            ids = make_ids(POOL_SIZE)
            for server in SERVERS:
                precreate_sessions(stack.save_paths[server], ids, store=stack.store, server=server)
            lua = stack.workdir / "pool.lua"
            lua.write_text(pool_lua(ids))
            out[case] = CaseSetup({s: None for s in SERVERS}, str(lua))
        elif case == "shared":
            sid = make_ids(1)[0]
            for server in SERVERS:
                precreate_sessions(stack.save_paths[server], [sid], store=stack.store, server=server)
            out[case] = CaseSetup({s: f"PHPSESSID={sid}" for s in SERVERS}, None)
        else:
            raise ValueError(f"unknown case {case!r}")
    return out


@dataclasses.dataclass
class _Slice:
    """The raw sums of one or more wrk runs against one server."""

    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per part
    used: float = 0.0  # busy CPU seconds of the whole machine
    total: float = 0.0  # CPU seconds of the whole machine (busy + idle)
    p50: list[float] = dataclasses.field(default_factory=list)
    p90: list[float] = dataclasses.field(default_factory=list)
    p99: list[float] = dataclasses.field(default_factory=list)

    def add(self, other: "_Slice") -> None:
        """Add ``other``'s sums and latency samples to this one."""
        self.requests += other.requests
        self.seconds += other.seconds
        self.errors += other.errors
        for k, v in other.cpu.items():
            self.cpu[k] = self.cpu.get(k, 0.0) + v
        self.used += other.used
        self.total += other.total
        self.p50 += other.p50
        self.p90 += other.p90
        self.p99 += other.p99

    def measurement(self, case: str, server: str) -> Measurement:
        """Per-request figures: req/s, median latencies of the slices, CPU µs per request."""
        n = max(self.requests, 1)
        cpu = {k: v * 1e6 / n for k, v in self.cpu.items()}
        # the rest of the machine's busy time: the kernel's own threads, and anything else
        # running on this machine meanwhile (a noisy neighbour shows here)
        cpu["other"] = max(0.0, self.used * 1e6 / n - sum(cpu.values()))
        med = statistics.median
        wrk = WrkResult(
            requests=self.requests,
            seconds=self.seconds,
            rps=self.requests / self.seconds if self.seconds else 0.0,
            latency=Latency(
                med(self.p50) if self.p50 else None,
                med(self.p90) if self.p90 else None,
                med(self.p99) if self.p99 else None,
            ),
            non_2xx=self.errors,
        )
        return Measurement(case, server, wrk, cpu, self.used / self.total if self.total else 0.0)


def measure_slice(
    stack: Stack, server: str, setup: CaseSetup, seconds: int, connections: int, threads: int
) -> _Slice:
    """One wrk run against ``server``, with the CPU time each part used meanwhile."""
    import psutil

    url = stack.url(server)
    groups = {"pool": stack.group(server), "nginx": stack.group("nginx")}
    before = {k: _cpu_seconds(v) for k, v in groups.items()}
    machine0 = psutil.cpu_times()
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(url, seconds, connections, threads, cookie=setup.cookie[server], lua=setup.lua)
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine1 = psutil.cpu_times()
    after = {k: _cpu_seconds(v) for k, v in groups.items()}
    cpu = {k: after[k] - before[k] for k in groups}
    cpu["wrk"] = (wrk1.ru_utime - wrk0.ru_utime) + (wrk1.ru_stime - wrk0.ru_stime)
    idle = (machine1.idle - machine0.idle) + (getattr(machine1, "iowait", 0) - getattr(machine0, "iowait", 0))
    # guest times are already counted in user time
    total = sum(getattr(machine1, f) - getattr(machine0, f) for f in machine1._fields if not f.startswith("guest"))
    lat = result.latency
    return _Slice(
        requests=result.requests,
        seconds=result.seconds,
        errors=result.non_2xx + result.socket_errors,
        cpu=cpu,
        used=total - idle,
        total=total,
        p50=[lat.p50] if lat.p50 is not None else [],
        p90=[lat.p90] if lat.p90 is not None else [],
        p99=[lat.p99] if lat.p99 is not None else [],
    )


def measure_case(
    stack: Stack,
    case: str,
    setup: CaseSetup,
    duration: int,
    connections: int,
    threads: int,
    servers: Sequence[str] = tuple(SERVERS),
) -> dict[str, Measurement]:
    """Measure ``case`` on each of ``servers`` for ``duration`` seconds, interleaved.

    After a 1 s warm-up of each, the servers take turns in 1 s wrk runs, in ABBA order
    (php-fpm, phpsess, phpsess, php-fpm, ...), so that whatever else the machine does
    meanwhile falls on both alike.  Returns the sums as per-request figures.
    """
    for server in servers:
        run_wrk(stack.url(server), 1, connections, threads, cookie=setup.cookie[server], lua=setup.lua)
    sums = {server: _Slice() for server in servers}
    order = list(servers)
    for i in range(max(1, duration)):
        for server in order if i % 2 == 0 else order[::-1]:
            sums[server].add(measure_slice(stack, server, setup, 1, connections, threads))
    return {server: sums[server].measurement(case, server) for server in servers}


# -- profiling ---------------------------------------------------------------------------


def profile_pyspy(
    stack: Stack, case: str, setup: CaseSetup, duration: float, connections: int, threads: int, rate: int, top: int
) -> str:
    """Run ``case`` on phpsess with py-spy sampling every worker; where the CPU time goes."""
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        return "py-spy is not installed (pip install py-spy)\n"
    url = stack.url("phpsess")
    cookie = setup.cookie["phpsess"]
    run_wrk(url, 1.0, connections, threads, cookie=cookie, lua=setup.lua)
    out = stack.workdir / f"pyspy-{case}.txt"
    spy = subprocess.Popen(
        [pyspy, "record", "--pid", str(stack.pids["phpsess"]), "--subprocesses", "--nonblocking", "--gil",
         "--rate", str(rate), "--duration", str(int(duration) + 2), "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # py-spy attaches
        result = run_wrk(url, duration, connections, threads, cookie=cookie, lua=setup.lua)
        _, err = spy.communicate(timeout=duration + 30)
    finally:
        if spy.poll() is None:
            spy.terminate()
            spy.wait(10)
    if not out.exists():
        return f"py-spy wrote nothing: {err.decode(errors='replace')}\n"
    inclusive, own, total = aggregate_pyspy(out.read_text(errors="replace"))
    # py-spy samples for duration + 2 s, wrk runs `duration`: scale by the samples' own span
    requests = result.rps * (int(duration) + 2 - 1.0) if result.rps else 1.0

    def us(count: int) -> float:
        return count / rate / requests * 1e6

    lines = [
        f"py-spy, case {case}: {result.rps:.0f} req/s under the profiler, "
        f"{total} samples at {rate} Hz, ~{us(total):.0f} µs of worker CPU per request",
        f"  {'incl µs':>8} {'self µs':>8}  frame",
    ]
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {us(count):8.1f} {us(own.get(frame, 0)):8.1f}  {_short(frame)}")
    lines.append(f"  top self time:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {'':8} {us(count):8.1f}  {_short(frame)}")
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    return re.sub(r"\(/[^)]*/(site-packages|lib/python3\.\d+|phpsess|bench)/", r"(\1/", frame)


# Stage timers: installed in the phpsess fpm process by ``bench/http.py _fpm ...`` when
# $PHPSESS_BENCH_STAGES names a directory; each worker writes its totals there on SIGUSR2.
#: (module, attribute path, label): inclusive wall time of each call, summed per worker
STAGE_POINTS: list[tuple[str, str, str]] = [
    ("phpsess.runtime.fpm", "FastCGIWorker.setup", "-"),  # in the worker, after its signals are set
    ("phpsess.runtime.fpm", "_Connection.run", "connection (flup Connection.run: all of a request)"),
    ("phpsess.runtime.fcgi_conn", "serve_connection", "connection (serve_connection: all of a request)"),
    ("phpsess.runtime.fpm", "_Connection.process_input", "  read one FastCGI record (x4-5 per request)"),
    ("phpsess.runtime.fcgi", "decode_params", "    decode the params record"),
    ("phpsess.runtime.fpm", "_Connection._do_begin_request", "    begin request (flup)"),
    ("phpsess.runtime.fpm", "_Connection.end_request", "    end request: sendall of the response"),
    ("phpsess.runtime.fpm", "FastCGIWorker.respond", "    pool handler (FastCGIWorker.respond)"),
    ("phpsess.runtime.script_worker", "ScriptWorker.begin", "      begin: rusage, clock"),
    ("phpsess.runtime.script_worker", "ScriptWorker.run_script", "      run_script (scoreboard, title, limits)"),
    ("phpsess.runtime.scoreboard", "WorkerSlot.request_started", "        scoreboard: request started"),
    ("phpsess.runtime.prefork", "set_title", "        process title"),
    ("phpsess.core.telemetry", "record", "        lock-wait telemetry"),
    ("phpsess.runtime.sapi", "handle_request", "        sapi.handle_request"),
    ("phpsess.runtime.sapi", "resolve_script", "        resolve_script"),
    ("phpsess.session.request", "Request.__init__", "        Request.__init__"),
    ("phpsess.core.config", "SessionConfig.copy", "          SessionConfig.copy"),
    ("phpsess.core.superglobals", "parse_query", "          parse_query"),
    ("phpsess.core.superglobals", "parse_cookies", "          parse_cookies"),
    ("phpsess.runtime.sapi", "process_state.__enter__", "        process_state enter (environ, stdin)"),
    ("phpsess.runtime.sapi", "set_request_environ", "          set_request_environ"),
    ("phpsess.runtime.sapi", "process_state.__exit__", "        process_state exit"),
    ("phpsess.storage.registry", "set_request", "          lock registry: set_request"),
    ("phpsess.runtime.sapi", "_MainModule.__enter__", "          __main__ module enter"),
    ("phpsess.runtime.sapi", "_MainModule.__exit__", "          __main__ module exit"),
    ("phpsess.runtime.sapi", "_exec", "        run the script (_exec)"),
    ("phpsess.runtime.sapi", "compile_script", "          compile_script (cache check)"),
    ("phpsess.session.session", "Session.start", "          Session.start"),
    ("phpsess.session.session", "Session._new_handler", "            new handler"),
    ("phpsess.storage.files", "FilesHandler.open", "            files open"),
    ("phpsess.storage.files", "FilesHandler.read", "            files read (open+flock+read)"),
    ("phpsess.storage.registry", "note_acquired", "              lock registry: note_acquired"),
    ("phpsess.storage.files", "FilesHandler.create_sid", "            files create_sid"),
    ("phpsess.session.session", "Session._decode", "            decode"),
    ("phpsess.session.session", "Session._send_cookie", "            Set-Cookie"),
    ("phpsess.session.session", "Session._send_cache_limiter", "            cache limiter headers"),
    ("phpsess.session.session", "Session._script_mtime", "              stat of the script (_script_mtime)"),
    ("phpsess.php", "header", "          header()"),
    ("phpsess.session.request", "OutputProxy.write", "          print() -> OutputProxy.write"),
    ("phpsess.session.request", "Request.send_headers", "            send headers (first output)"),
    ("phpsess.session.request", "Request.shutdown", "        request shutdown"),
    ("phpsess.session.session", "Session.request_shutdown", "          session shutdown"),
    ("phpsess.session.session", "Session._close", "            Session._close"),
    ("phpsess.session.session", "Session._encode_for_write", "              encode"),
    ("phpsess.storage.files", "FilesHandler.write", "              files write"),
    ("phpsess.storage.files", "FilesHandler.close", "              files close (unlock)"),
    ("phpsess.storage.registry", "note_released", "                lock registry: note_released"),
    ("phpsess.session.obuffer", "OutputBuffers.end_all", "          output buffers: end_all"),
    ("phpsess.session.request", "Request.end_response", "        Request.end_response"),
    ("phpsess.runtime.script_worker", "ScriptWorker.end", "      end: rusage, scoreboard"),
    ("phpsess.runtime.fpm", "FastCGIWorker._access_line", "      access log line"),
    ("phpsess.runtime.fcgi", "response_records", "    FastCGI response records"),
]

_CONN_LABELS = (STAGE_POINTS[1][2], STAGE_POINTS[2][2])


def install_stage_timers(out_dir: str | None = None) -> dict[str, list[float]]:
    """Wrap :data:`STAGE_POINTS` with wall-clock timers in this process.

    :param out_dir: when given (the ``phpsess fpm`` master, before it forks), each worker
        starts from zero and writes its totals to ``out_dir/<pid>.json`` on SIGUSR2.
    :returns: the live totals, ``{label: [calls, seconds]}``.
    """
    import functools
    import importlib

    totals: dict[str, list[float]] = {}
    clock = time.perf_counter

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        slot = totals.setdefault(label, [0, 0.0])

        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            t = clock()
            try:
                return fn(*a, **kw)
            finally:
                slot[1] += clock() - t
                slot[0] += 1

        return timed

    def dump(signum: int, frame: Any) -> None:
        assert out_dir is not None
        path = os.path.join(out_dir, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(totals, f)
        os.replace(path + ".tmp", path)

    for module_name, attr, label in STAGE_POINTS:
        module = importlib.import_module(module_name)
        owner: Any = module
        *parents, name = attr.split(".")
        try:
            for p in parents:
                owner = getattr(owner, p)
            fn = getattr(owner, name)
        except AttributeError:
            continue  # renamed since: skip
        if label == "-":  # the worker: reset counters after fork, dump on SIGUSR2
            if out_dir is None:
                continue

            def worker(self: Any, *args: Any, _fn: Callable[..., Any] = fn, **kwargs: Any) -> Any:
                for slot in totals.values():
                    slot[0], slot[1] = 0, 0.0
                signal.signal(signal.SIGUSR2, dump)
                return _fn(self, *args, **kwargs)

            setattr(owner, name, worker)
            continue
        if isinstance(owner, type) and isinstance(owner.__dict__.get(name), (staticmethod, classmethod)):
            continue
        setattr(owner, name, wrap(fn, label))
        # module-level functions imported by name elsewhere (fcgi imports handle_request)
        if owner is module:
            for other in ("phpsess", "phpsess.runtime.fpm", "phpsess.runtime.script_worker", "phpsess.runtime.fcgi_conn", "phpsess.runtime.fcgi", "phpsess.runtime.fcgi_conn", "phpsess.runtime.sapi", "phpsess.session.session", "phpsess.php"):
                m = sys.modules.get(other)
                if m is not None and getattr(m, name, None) is fn:
                    setattr(m, name, getattr(owner, name))
    return totals


def dump_stages(stack: Stack) -> dict[str, list[float]]:
    """Ask each phpsess worker for its stage totals (SIGUSR2); their sum per stage
    as ``{label: [calls, seconds]}``."""
    out_dir = stack.workdir / "stages"
    for f in out_dir.glob("*.json"):
        f.unlink()
    pids = stack.workers("phpsess")
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 5
    while len(list(out_dir.glob("*.json"))) < len(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    totals: dict[str, list[float]] = {}
    for f in out_dir.glob("*.json"):
        for label, (calls, secs) in json.loads(f.read_text()).items():
            slot = totals.setdefault(label, [0, 0.0])
            slot[0] += calls
            slot[1] += secs
    return totals


def stage_report(before: dict[str, list[float]], after: dict[str, list[float]], m: Measurement) -> str:
    """The stage timers' difference over one measurement, in µs per request."""
    n: float = max(m.wrk.requests, 1)
    for conn_label in _CONN_LABELS:
        if conn_label in after:
            n = (after[conn_label][0] - before.get(conn_label, [0, 0.0])[0]) or n
            break
    lines = [
        f"stages, case {m.case}: {m.wrk.rps:.0f} req/s with the timers, pool CPU {m.cpu_us['pool']:.0f} µs/req; "
        f"inclusive wall time per request in a worker:",
        f"  {'µs/req':>8} {'calls/req':>9}  stage",
    ]
    for _m, _a, label in STAGE_POINTS:
        if label not in after:
            continue
        calls = after[label][0] - before.get(label, [0, 0.0])[0]
        secs = after[label][1] - before.get(label, [0, 0.0])[1]
        if calls:
            lines.append(f"  {secs * 1e6 / n:8.1f} {calls / n:9.2f}  {label}")
    return "\n".join(lines) + "\n"


# -- in-process: one worker's request path, without nginx ----------------------------------


def fcgi_request_bytes(root: str, script: str, cookie: str | None) -> bytes:
    """The FastCGI records nginx sends for ``GET /<script>`` with the shipped config
    (``fastcgi_params`` + ``SCRIPT_FILENAME``; no keep-conn, empty stdin).  Pure.

    >>> data = fcgi_request_bytes("/srv", "counter.py", "PHPSESSID=x")
    >>> data[:8], b"HTTP_COOKIEPHPSESSID=x" in data, data[-8:]
    (b'\\x01\\x01\\x00\\x01\\x00\\x08\\x00\\x00', True, b'\\x01\\x05\\x00\\x01\\x00\\x00\\x00\\x00')
    """
    params = {
        "QUERY_STRING": "", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
        "SCRIPT_NAME": f"/{script}", "REQUEST_URI": f"/{script}", "DOCUMENT_URI": f"/{script}",
        "DOCUMENT_ROOT": root, "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "nginx/1.22.1", "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000", "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_NAME": "localhost", "REDIRECT_STATUS": "200", "SCRIPT_FILENAME": f"{root}/{script}",
        "HTTP_HOST": "127.0.0.1",
    }
    if cookie:
        params["HTTP_COOKIE"] = cookie

    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    def record(rtype: int, content: bytes) -> bytes:
        pad = -len(content) & 7
        return bytes([1, rtype, 0, 1]) + len(content).to_bytes(2, "big") + bytes([pad, 0]) + content + bytes(pad)

    pairs = b"".join(
        length(len(k)) + length(len(v)) + k.encode() + v.encode() for k, v in params.items()
    )
    return record(1, (1).to_bytes(2, "big") + bytes(6)) + record(4, pairs) + record(4, b"") + record(5, b"")


def inproc(cases: Sequence[str], count: int, save_root: Path, *, stages: bool, repeat: int = 3) -> str:
    """Serve ``count`` requests per case in this process through the pool's own FastCGI
    code (``FastCGIWorker`` with its scoreboard slot) over a socketpair, as one worker does: the
    request bytes nginx sends, the response read back.  No other process, so the figures
    are CPU time and stable.  Best of ``repeat``; the harness's own socket work (the same
    loop answering a canned response) is subtracted.  With ``stages``, then the stage
    timers' breakdown.
    """
    import socket

    import mmap

    from phpsess.core import telemetry
    from phpsess.runtime.fpm import FastCGIWorker, FpmOptions
    from phpsess.runtime.output import install_output_proxy
    from phpsess.runtime.prefork import PoolSettings, WorkerContext
    from phpsess.runtime.scoreboard import Scoreboard, WorkerSlot
    from phpsess.session.settings import from_ini_file, set_default_config

    save = fast_directory(save_root, "inproc")
    ini = save_root / "inproc.ini"
    ini.write_text(phpsess_ini(str(save)))
    set_default_config(from_ini_file(str(ini)))
    ids = make_ids(POOL_SIZE)
    precreate_sessions(str(save), ids)
    root = str(SCRIPTS.resolve())
    board = Scoreboard(1)
    board.claim(0, os.getpid(), 0)
    ctx = WorkerContext(PoolSettings(max_children=1), 0, WorkerSlot(board, 0), board,
                        mmap.mmap(-1, telemetry.SLOT_SIZE), [], os.getpid(), 0)
    worker = FastCGIWorker(ctx, FpmOptions(root=root, listen=str(save_root / "unused.sock")))
    worker.setup()
    install_output_proxy()
    rng = random.Random(4)
    requests = {
        "new": [fcgi_request_bytes(root, "counter.py", None)] * count,
        "pool": [fcgi_request_bytes(root, "counter.py", f"PHPSESSID={rng.choice(ids)}") for _ in range(count)],
        "shared": [fcgi_request_bytes(root, "counter.py", f"PHPSESSID={ids[0]}")] * count,
    }
    canned = b""

    def one(data: bytes, serve: bool) -> bytes:
        a, b = socket.socketpair()
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)  # nginx waits instead; here the worker sees EOF at once
        if serve:
            worker.handle(b)
        else:
            b.recv(65536)
            b.sendall(canned)
            b.shutdown(socket.SHUT_WR)
        b.close()
        out = a.recv(65536)
        a.close()
        return out

    def loop(reqs: list[bytes], serve: bool) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for data in reqs:
            one(data, serve)
        return (time.perf_counter() - t0) / len(reqs) * 1e6, (time.process_time() - c0) / len(reqs) * 1e6

    import phpsess

    lines = [
        f"in-process ({os.path.dirname(phpsess.__file__)}), {count} requests per case, "
        f"best of {repeat} (µs per request; CPU = wall here; file create cost in the save path "
        f"{CREATE_COSTS['inproc']:.0f} µs):"
    ]
    figures = {}
    for case in cases:
        reqs = requests[case]
        canned = one(reqs[0], True)
        if b"n = " not in canned:
            raise RuntimeError(f"in-process {case}: unexpected response {canned[:300]!r}")
        loop(reqs[: max(1, count // 10)], True)  # warm up
        base = min(loop(reqs, False) for _ in range(repeat))
        full = min(loop(reqs, True) for _ in range(repeat))
        figures[case] = full[1] - base[1]
        lines.append(
            f"  {CASES[case]:<30} worker {full[1] - base[1]:6.1f} µs CPU/req"
            f"  (loop {full[1]:.1f}, harness alone {base[1]:.1f})"
        )
    if stages:
        totals = install_stage_timers()
        for case in cases:
            for slot in totals.values():
                slot[0], slot[1] = 0, 0.0
            loop(requests[case], True)
            n = totals.get(_CONN_LABELS[0], [0, 0.0])[0] or totals.get(_CONN_LABELS[1], [0, 0.0])[0] or count
            lines.append(f"stages, {CASES[case]} (inclusive, timers add ~0.2 µs per call):")
            lines.append(f"  {'µs/req':>8} {'calls/req':>9}  stage")
            for _m, _a, label in STAGE_POINTS:
                if label in totals and totals[label][0]:
                    calls, secs = totals[label]
                    lines.append(f"  {secs * 1e6 / n:8.1f} {calls / n:9.2f}  {label}")
    return "\n".join(lines) + "\n"


# -- the report --------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1e3:.0f}us" if x < 1 else f"{x:.2f}ms")


def paired_ratios(
    runs: Mapping[tuple[str, str], Sequence[Measurement]], slow: Mapping[str, Sequence[bool]] | None = None
) -> dict[str, float]:
    """phpsess req/s over php-fpm req/s per case: the median of the rounds' ratios (each
    round measures both servers interleaved, so its ratio is a paired comparison).

    :param slow: per case, which rounds ran in ext4's slow-create state; those are left
        out when at least one round of the case was not.
    """
    out = {}
    for case in CASES:
        a, b = runs.get((case, "php-fpm"), []), runs.get((case, "phpsess"), [])
        flags = list((slow or {}).get(case, [])) + [False] * len(a)
        pairs = [(y.wrk.rps / x.wrk.rps, f) for x, y, f in zip(a, b, flags) if x.wrk.rps > 0]
        clean = [r for r, f in pairs if not f]
        if clean or pairs:
            out[case] = statistics.median(clean or [r for r, _ in pairs])
    return out


def slow_note(case: str, runs: Mapping[tuple[str, str], Sequence[Measurement]], slow: Mapping[str, Sequence[bool]]) -> str:
    """The ratio line's note when some rounds of ``case`` ran in ext4's slow-create state."""
    flags = list(slow.get(case, []))
    if not any(flags):
        return ""
    every = paired_ratios(runs)[case]
    if all(flags):
        return "; every round in ext4's slow-create state: this measures the file system"
    return f"; {sum(flags)} of {len(flags)} rounds in ext4's slow-create state left out (all rounds: {every:.2f}x)"


def format_table(
    results: Mapping[tuple[str, str], Measurement], ratios: Mapping[str, float], notes: Mapping[str, str] | None = None
) -> str:
    """The req/s table with latencies, CPU µs per request, and the ratios against the goals.

    ``other``: busy CPU time of the machine not used by the pool, nginx or wrk (kernel
    threads, and other programs: a large figure means a noisy run); ``busy``: the share
    of all CPUs that was busy.
    """
    lines = [
        f"{'case':<30} {'server':<8} {'req/s':>8} {'p50':>8} {'p99':>8} {'errors':>6}"
        f"   {'CPU µs/req: pool':>16} {'nginx':>6} {'wrk':>5} {'other':>6}  {'busy':>4}"
    ]
    for case in CASES:
        rows = [results[case, s] for s in SERVERS if (case, s) in results]
        for m in rows:
            w = m.wrk
            lines.append(
                f"{CASES[case]:<30} {m.server:<8} {w.rps:8.0f} {_ms(w.latency.p50):>8} {_ms(w.latency.p99):>8}"
                f" {w.non_2xx + w.socket_errors:6d}   {m.cpu_us['pool']:16.0f} {m.cpu_us['nginx']:6.0f}"
                f" {m.cpu_us['wrk']:5.0f} {m.cpu_us['other']:6.0f}  {m.busy * 100:3.0f}%"
            )
        if case in ratios:
            ratio = ratios[case]
            goal = GOALS[case]
            verdict = "met" if ratio >= goal else "NOT met"
            note = (notes or {}).get(case, "")
            lines.append(f"{'':<30} {'ratio':<8} {ratio:7.2f}x  (goal {goal:.1f}x: {verdict}{note})")
    return "\n".join(lines) + "\n"


def format_memory(stack: Stack) -> str:
    """RSS and USS per worker (and of the master) of each pool, MiB."""
    lines = [f"{'server':<8} {'workers':>7} {'RSS/worker':>11} {'USS/worker':>11} {'master RSS':>11} {'master USS':>11}"]
    for server in SERVERS:
        workers = _memory(stack.workers(server))
        master = _memory([stack.pids[server]])
        if not workers or not master:
            continue
        mib = 1024 * 1024
        lines.append(
            f"{server:<8} {len(workers):7d} {statistics.mean(r for r, _ in workers) / mib:9.1f}Mi"
            f" {statistics.mean(u for _, u in workers) / mib:9.1f}Mi {master[0][0] / mib:9.1f}Mi"
            f" {master[0][1] / mib:9.1f}Mi"
        )
    return "\n".join(lines) + "\n"


def _median(ms: list[Measurement]) -> Measurement:
    ms = sorted(ms, key=lambda m: m.wrk.rps)
    return ms[len(ms) // 2]


# -- main --------------------------------------------------------------------------------


def _fpm_entry(argv: list[str]) -> int:
    """``bench/http.py _fpm ARGS``: ``phpsess fpm ARGS`` with the stage timers installed."""
    from phpsess.tools import cli

    out_dir = os.environ.get(STAGES_ENV)
    if out_dir:
        install_stage_timers(out_dir)
    return int(cli.main(argv) or 0)


class _Terminated(Exception):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table, the memory figures and any profile."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_fpm"]:
        return _fpm_entry(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--duration", type=int, default=5,
        help="seconds each server is measured per case, in 1 s turns (default 5)",
    )
    p.add_argument("--workers", type=int, default=4, help="workers of each pool (default 4)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--rounds", type=int, default=1, help="measure each case R times, keep the median (default 1)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated: new,pool,shared (default all)")
    p.add_argument("--tmpfs", action="store_true",
                   help="only the tmpfs table (default: tmpfs, then the disk: /dev/shm, then /var/tmp)")
    p.add_argument("--disk", action="store_true", help="only the disk table (session files in /var/tmp)")
    p.add_argument(
        "--save-root", metavar="DIR",
        help="one table, with the session directories under DIR",
    )
    p.add_argument("--no-opcache", action="store_true", help="php-fpm without opcache")
    p.add_argument(
        "--store", choices=STORES, default="files",
        help="where both pools keep sessions: files (default), or a redis-server, a Redis Cluster "
        "or a memcached started for the run",
    )
    p.add_argument(
        "--keepalive", type=int, default=0, metavar="K",
        help="nginx keeps K idle FastCGI connections per backend (fastcgi_keep_conn; default 0: "
        "a new connection per request, as the shipped conf/nginx.conf)",
    )
    p.add_argument("--profile", action="store_true", help="then profile phpsess workers with py-spy per case")
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second (default 1000)")
    p.add_argument("--stages", action="store_true", help="then time the steps of a request inside the workers")
    p.add_argument("--top", type=int, default=30, help="frames listed per profile (default 30)")
    p.add_argument(
        "--inproc", type=int, metavar="N", default=0,
        help="instead: N requests per case through one worker's code in this process (no nginx, "
        "no php-fpm): stable CPU µs per request; with --stages, the breakdown",
    )
    p.add_argument(
        "--build", choices=("compiled", "plain"), default="compiled",
        help="which phpsess to measure: compiled (default: scripts/compile.sh builds build/compiled, "
        "the request path compiled with mypyc, as pip install builds it when it can) or plain "
        "(this checkout as plain Python); $PHPSESS_TEST_PYTHONPATH overrides both",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (configs, logs, profiles)")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            p.error(f"unknown case {c!r} (choose from {', '.join(CASES)})")

    if (args.stages or args.profile) and args.build == "compiled" and not os.environ.get("PHPSESS_TEST_PYTHONPATH"):
        p.error("--stages and --profile look at Python functions, and compiled modules have none: add --build plain")
    use_build(args.build)
    if args.inproc:
        save_root = Path(tempfile.mkdtemp(prefix="phpsess-inproc-", dir=_save_parent(args)))
        try:
            print(inproc(cases, args.inproc, save_root, stages=args.stages), end="")
        finally:
            shutil.rmtree(save_root, ignore_errors=True)
        return 0
    if shutil.which("wrk") is None:
        p.error("wrk is not installed (apt-get install -y wrk)")
    old_term = signal.signal(signal.SIGTERM, _on_term)
    # Ctrl-C stops the run and everything it started (even when started with SIGINT ignored)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    figures: dict[str, Any] = {}
    try:
        for n, (label, parent) in enumerate(_storages(args)):
            if n:
                print()
            figures[label] = measure_storage(args, cases, label, parent)
    except (KeyboardInterrupt, _Terminated):
        print("interrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **figures}, indent=2))
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


#: why the tables are apart, printed above the disk's
DISK_NOTE = (
    "Session files on the disk: creating a sess_* file per new session, and PHP's ftruncate(0) before\n"
    "each write, cost what the file system's state makes them cost (ext4 on a busy virtual disk: from\n"
    "12 µs to over 1 ms per file): this table measures the file system as much as the runtimes; the\n"
    "tmpfs table above is the runtimes' own cost."
)


def _storages(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, parent directory of the save paths) of each table, tmpfs first."""
    if args.store != "files":
        return [(args.store, "/var/tmp")]  # one table: the sessions are in the store
    if args.save_root:
        return [(str(args.save_root), str(args.save_root))]
    if args.tmpfs:
        return [("tmpfs", "/dev/shm")]
    if args.disk:
        return [("disk", "/var/tmp")]
    return [("tmpfs", "/dev/shm"), ("disk", "/var/tmp")]


def measure_storage(args: argparse.Namespace, cases: list[str], label: str, parent: str) -> dict[str, Any]:
    """Every case on both servers with the session files under ``parent``: prints the
    table, returns the figures (for ``--json``)."""
    workdir = Path(tempfile.mkdtemp(prefix="phpsess-http-"))
    save_root = Path(tempfile.mkdtemp(prefix="phpsess-http-sessions-", dir=parent))
    CREATE_COSTS.clear()
    out: dict[str, Any] = {}
    try:
        if label == "disk":
            print(DISK_NOTE)
        print(
            f"[{label}] phpsess fpm vs php-fpm {'(opcache)' if not args.no_opcache else '(no opcache)'} behind nginx: "
            f"{args.workers} workers each, wrk {args.threads} thread(s) x {args.connections} connections, "
            f"{args.duration} s per server and case (1 s turns, interleaved) x {args.rounds} round(s), "
            f"sessions in {save_root.parent if args.store == 'files' else args.store}, {os.cpu_count()} CPUs; "
            f"phpsess from {_phpsess_dir()}",
            flush=True,
        )
        with start_store(args.store) as store, start_stack(
            workdir, save_root, args.workers, opcache=not args.no_opcache, stages=args.stages,
            keepalive=args.keepalive, store=store,
        ) as stack:
            if CREATE_COSTS:
                print(
                    "file create cost in the save paths (µs): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in CREATE_COSTS.items())
                    + ("" if max(CREATE_COSTS.values()) <= FAST_CREATE_US else
                       "  WARNING: slow file system, case (a) measures it more than the servers"),
                    flush=True,
                )
            diffs = check_pages(stack)
            for d in diffs:
                print("WARNING: responses differ:", d)
            setups = prepare_cases(stack, cases)
            runs: dict[tuple[str, str], list[Measurement]] = collections.defaultdict(list)
            slow: dict[str, list[bool]] = collections.defaultdict(list)
            order = list(SERVERS)
            for rnd in range(args.rounds):
                for case in cases:
                    got = measure_case(
                        stack, case, setups[case], args.duration, args.connections, args.threads,
                        order if rnd % 2 == 0 else order[::-1],
                    )
                    for server, m in got.items():
                        runs[case, server].append(m)
                    # ext4 may have entered its slow-create state during the round (see
                    # fast_directory): then a round of (a), which creates a file per
                    # request, measured the file system ((b) and (c) create none)
                    files = stack.store is None
                    cost = max(create_cost_us(Path(d)) for d in stack.save_paths.values()) if files else 0.0
                    slow[case].append(case == "new" and cost > FAST_CREATE_US)
                    print(
                        f"  {case:<7} " + "  ".join(f"{s} {m.wrk.rps:6.0f} req/s" for s, m in got.items())
                        + (f"  (file create {cost:.0f} µs{': ext4 slow-create state' if slow[case][-1] else ''})"
                           if files else ""),
                        flush=True,
                    )
            results = {k: _median(v) for k, v in runs.items()}
            print()
            ratios = paired_ratios(runs, slow)
            print(format_table(results, ratios, {case: slow_note(case, runs, slow) for case in cases}))
            print("memory after the runs:")
            print(format_memory(stack))
            if args.profile:
                for case in cases:
                    text = profile_pyspy(
                        stack, case, setups[case], args.duration, args.connections, args.threads, args.rate, args.top
                    )
                    print(text)
                    out[f"pyspy_{case}"] = text
            if args.stages:
                for case in cases:
                    before = dump_stages(stack)
                    m = measure_case(
                        stack, case, setups[case], args.duration, args.connections, args.threads, ["phpsess"]
                    )["phpsess"]
                    text = stage_report(before, dump_stages(stack), m)
                    print(text)
                    out[f"stages_{case}"] = text
            out.update({
                "results": {f"{c}/{s}": dataclasses.asdict(m) for (c, s), m in results.items()},
                "ratios": ratios,
                "slow_create_rounds": slow,
                "runs": {f"{c}/{s}": [m.wrk.rps for m in v] for (c, s), v in runs.items()},
            })
    finally:
        shutil.rmtree(save_root, ignore_errors=True)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def use_build(build: str) -> None:
    """Measure the ``compiled`` build (compile it now into build/compiled) or the
    ``plain`` checkout; a set ``$PHPSESS_TEST_PYTHONPATH`` wins over both.  Must run
    before anything imports phpsess or tests.integration.nginx."""
    if os.environ.get("PHPSESS_TEST_PYTHONPATH") or build != "compiled":
        return
    print("compiling phpsess with mypyc (scripts/compile.sh) ...", flush=True)
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "compile.sh"), str(REPO / "build" / "compiled")],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"scripts/compile.sh failed:\n{out.stderr}{out.stdout}")
    dest = out.stdout.strip().splitlines()[-1]
    os.environ["PHPSESS_TEST_PYTHONPATH"] = dest
    sys.path.insert(0, dest)


def _save_parent(args: argparse.Namespace) -> str:
    if args.save_root:
        return str(args.save_root)
    return "/dev/shm" if args.tmpfs else "/var/tmp"


if __name__ == "__main__":
    sys.exit(main())
