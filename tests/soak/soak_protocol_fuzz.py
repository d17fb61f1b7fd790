"""Seeded fuzzing of the servers' own protocols: ``phpsess fpm`` over its FastCGI socket and
``phpsess serve`` over HTTP, with malformed, truncated, oversized and silent requests, for a
bounded time.  Runs processes: the two servers, on a unix socket and a free 127.0.0.1 port,
in a temporary directory; stops them and removes it.

What is checked, afterwards and during:

* **no hang past the limits**: every fuzzed connection is answered or closed by the server
  within its configured bound (``--idle-timeout``/``--read-timeout``, plus slack);
* **no unreplaced worker death**: the pools have their full count of workers, and the
  master is the one that started;
* **bounded memory**: each worker's RSS is back within ``--rss-slack-mib`` of what it was
  when idle before the attack (after a few normal requests on each side);
* **nothing lost**: a session written before the attack reads back the same after it.

``tests/integration/test_protocol_fuzz.py`` runs a few seconds of it in the default suite;
the long run is::

    python -m tests.soak.soak_protocol_fuzz --seconds 300 --seed 7
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402

from tests.integration.nginx import fcgi_request, http_get, stop_process, wait_for, wait_for_socket  # noqa: E402
from tests.integration.serve_process import ServeProcess  # noqa: E402

__all__ = ["fuzz", "fcgi_inputs", "http_inputs", "main"]

IDLE_TIMEOUT = 1.0
READ_TIMEOUT = 3.0
#: how long past its bound a connection may stay open before it counts as a hang
SLACK = 4.0

SCRIPT = """
import phpsess
phpsess.session_start()
phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
if phpsess.POST:
    phpsess.SESSION["post"] = dict(phpsess.POST)
print(phpsess.SESSION["n"])
"""


# -- inputs -------------------------------------------------------------------------------------
def _record(rtype: int, rid: int, content: bytes, padding: int = 0) -> bytes:
    return struct.pack(">BBHHBx", 1, rtype, rid, len(content), padding) + content + b"\0" * padding


def _pair(name: bytes, value: bytes) -> bytes:
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)

    return length(len(name)) + length(len(value)) + name + value


def valid_fcgi(root: Path, rng: random.Random, body: bytes = b"") -> bytes:
    """A well-formed FastCGI request for the fuzz script."""
    params = {
        b"SCRIPT_FILENAME": str(root / "fuzz.py").encode(), b"REQUEST_METHOD": b"POST" if body else b"GET",
        b"QUERY_STRING": b"a=1", b"HTTP_COOKIE": f"PHPSESSID=fuzz{rng.randrange(10 ** 6):026d}".encode(),
        b"CONTENT_TYPE": b"application/x-www-form-urlencoded", b"CONTENT_LENGTH": str(len(body)).encode(),
    }
    blob = b"".join(_pair(k, v) for k, v in params.items())
    out = _record(1, 1, struct.pack(">HB5x", 1, 0)) + _record(4, 1, blob) + _record(4, 1, b"")
    for i in range(0, len(body), 65535):
        out += _record(5, 1, body[i:i + 65535])
    return out + _record(5, 1, b"")


def fcgi_inputs(root: Path, rng: random.Random) -> tuple[str, bytes, bool]:
    """(kind, bytes, half-close after sending) for one fuzzed FastCGI connection."""
    kind = rng.choice(["flip", "truncate", "garbage", "huge_length", "huge_param", "many_params", "bad_version",
                       "unknown_type", "http_on_fcgi", "silent", "huge_body", "valid"])
    base = valid_fcgi(root, rng, b"x=" + b"y" * rng.randrange(0, 2000))
    if kind == "flip":
        data = bytearray(base)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return kind, bytes(data), rng.random() < 0.7
    if kind == "truncate":
        return kind, base[: rng.randrange(1, len(base))], rng.random() < 0.5
    if kind == "garbage":
        return kind, rng.randbytes(rng.randrange(1, 4096)), rng.random() < 0.5
    if kind == "huge_length":  # a params record claiming 65535 bytes, then silence
        return kind, _record(1, 1, struct.pack(">HB5x", 1, 0)) + struct.pack(">BBHHBx", 1, 4, 1, 65535, 255), False
    if kind == "huge_param":  # one param claiming 2 GB
        blob = struct.pack(">II", 0x80000010, 0xFFFFFFFF) + b"SCRIPT_FILENAME0"
        return kind, _record(1, 1, struct.pack(">HB5x", 1, 0)) + _record(4, 1, blob), rng.random() < 0.5
    if kind == "many_params":  # params past the bound (1 MiB) in many records
        blob = b"".join(_pair(b"H%d" % i, b"v" * 200) for i in range(250))
        return kind, _record(1, 1, struct.pack(">HB5x", 1, 0)) + _record(4, 1, blob) * 30, True
    if kind == "bad_version":
        return kind, b"\x09" + base[1:], True
    if kind == "unknown_type":
        return kind, _record(rng.randrange(11, 256), rng.randrange(65536), rng.randbytes(20)) + base, True
    if kind == "http_on_fcgi":
        return kind, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False
    if kind == "silent":
        return kind, b"", False
    if kind == "huge_body":  # 12 MB body: past post_max_size (8M)
        return kind, valid_fcgi(root, rng, b"x=" + b"z" * (12 << 20)), True
    return kind, base, True


def http_inputs(rng: random.Random) -> tuple[str, bytes, bool]:
    """(kind, bytes, half-close after sending) for one fuzzed HTTP connection."""
    sid = f"fuzz{rng.randrange(10 ** 6):026d}"
    good = (f"POST /fuzz.py HTTP/1.1\r\nHost: x\r\nCookie: PHPSESSID={sid}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nx=abc").encode()
    kind = rng.choice(["flip", "truncate", "garbage", "bad_chunks", "two_lengths", "huge_head", "bare_lf",
                       "silent", "trickle", "huge_length", "folding", "valid"])
    if kind == "flip":
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return kind, bytes(data), rng.random() < 0.7
    if kind == "truncate":
        return kind, good[: rng.randrange(1, len(good))], rng.random() < 0.5
    if kind == "garbage":
        return kind, rng.randbytes(rng.randrange(1, 4096)), rng.random() < 0.5
    if kind == "bad_chunks":
        size = rng.choice([b"-1", b"0x3", b"0_3", b"+3", b"fffffffffffffffffff", b"3;" + b"a" * 5000, b"\xd9\xa3"])
        return kind, (b"POST /fuzz.py HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size
                      + b"\r\nabc\r\n0\r\n\r\n"), True
    if kind == "two_lengths":
        return kind, b"POST /fuzz.py HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", True
    if kind == "huge_head":
        return kind, b"GET /fuzz.py HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 << 10) + b"\r\n\r\n", True
    if kind == "bare_lf":
        return kind, good.replace(b"\r\n", b"\n"), rng.random() < 0.5
    if kind == "silent":
        return kind, b"", False
    if kind == "trickle":
        return kind, good[:10], False
    if kind == "huge_length":
        return kind, b"POST /fuzz.py HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc", False
    if kind == "folding":
        return kind, b"GET /fuzz.py HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", True
    return kind, good, True


# -- one connection -----------------------------------------------------------------------------
def attack(address: str | tuple[str, int], data: bytes, half_close: bool, bound: float) -> tuple[float, bool]:
    """Send ``data``; wait for the server to close.  Returns (seconds, closed by the server
    within ``bound`` + slack)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(bound + SLACK)
        try:
            s.connect(address)
            if data:
                s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except socket.timeout:
            return time.monotonic() - started, False
        except OSError:
            pass  # reset, broken pipe: the server dropped it
    return time.monotonic() - started, True


# -- the servers ----------------------------------------------------------------------------------
def _workers_rss(pid: int) -> dict[int, int]:
    try:
        return {c.pid: c.memory_info().rss for c in psutil.Process(pid).children()}
    except psutil.NoSuchProcess:
        return {}


def fuzz(seconds: float, seed: int, workdir: Path, *, workers: int = 4, clients: int = 8,
         rss_slack_mib: float = 8.0, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Fuzz both servers for ``seconds`` each; return the figures and the list of problems."""
    rng = random.Random(seed)
    root = workdir / "www"
    root.mkdir()
    (root / "fuzz.py").write_text(textwrap.dedent(SCRIPT).lstrip())
    sessions = workdir / "sessions"
    sessions.mkdir()
    ini = workdir / "phpsess.ini"
    ini.write_text(f"session.save_path = {sessions}\nsession.gc_probability = 0\n")
    problems: list[str] = []
    figures: dict[str, Any] = {"seed": seed, "seconds": seconds}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PHPSESS_INI", None)

    # -- phpsess fpm ------------------------------------------------------------------------
    sock = str(workdir / "fpm.sock")
    out = open(workdir / "fpm.log", "wb")
    master = subprocess.Popen(
        [sys.executable, "-m", "phpsess", "fpm", "--listen", sock, "--root", str(root), "--workers", str(workers),
         "--ini", str(ini), "--idle-timeout", str(int(IDLE_TIMEOUT)), "--read-timeout", str(int(READ_TIMEOUT)),
         "--max-execution-time", "5"],
        env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_socket(sock, 20)
        wait_for(lambda: len(_workers_rss(master.pid)) == workers, 20, "the fpm workers")
        canary = "canaryfpm0000000000000000000000a"

        def fcgi_ok(cookie_sid: str) -> bytes:
            return fcgi_request(sock, {"SCRIPT_FILENAME": str(root / "fuzz.py"), "REQUEST_METHOD": "GET",
                                       "HTTP_COOKIE": f"PHPSESSID={cookie_sid}"})[0]

        for _ in range(workers * 3):
            fcgi_ok(canary)
        before_file = (sessions / f"sess_{canary}").read_bytes()
        idle = _workers_rss(master.pid)
        figures["fpm"] = _campaign(seconds, clients, lambda: fcgi_inputs(root, rng), sock,
                                   READ_TIMEOUT, problems, "fpm")
        wait_for(lambda: len(_workers_rss(master.pid)) == workers, 30, "the fpm workers after the attack")
        if master.poll() is not None:
            problems.append("fpm: the master died")
        if (sessions / f"sess_{canary}").read_bytes() != before_file:
            problems.append("fpm: the canary session changed during the attack")
        for _ in range(workers * 3):
            fcgi_ok(canary)
        after = _workers_rss(master.pid)
        figures["fpm"]["rss_idle_mib"] = sorted(round(v / 2**20, 1) for v in idle.values())
        figures["fpm"]["rss_after_mib"] = sorted(round(v / 2**20, 1) for v in after.values())
        if max(after.values()) > max(idle.values()) + rss_slack_mib * 2**20:
            problems.append(f"fpm: worker RSS {figures['fpm']['rss_after_mib']} MiB after, "
                            f"{figures['fpm']['rss_idle_mib']} MiB idle before")
        n = int(fcgi_ok(canary).split(b"\r\n\r\n", 1)[1])
        if n != workers * 6 + 1:
            problems.append(f"fpm: the canary counter is {n}, expected {workers * 6 + 1}")
    finally:
        stop_process(master, signal.SIGTERM)
        out.close()

    # -- phpsess serve ------------------------------------------------------------------------
    srv = ServeProcess(root, workdir / "serve", workers=workers,
                       args=["--idle-timeout", str(int(IDLE_TIMEOUT)), "--read-timeout", str(int(READ_TIMEOUT)),
                             "--max-execution-time", "5"])
    (workdir / "serve").mkdir()
    srv.start()
    try:
        assert srv.proc is not None
        wait_for(lambda: len(_workers_rss(srv.proc.pid)) == workers, 20, "the serve workers")  # type: ignore[union-attr]
        canary = "canaryserve00000000000000000000a"
        for _ in range(workers * 3):
            http_get(srv.port, "/fuzz.py", cookie=f"PHPSESSID={canary}")
        idle = _workers_rss(srv.proc.pid)
        figures["serve"] = _campaign(seconds, clients, lambda: http_inputs(rng), ("127.0.0.1", srv.port),
                                     READ_TIMEOUT, problems, "serve")
        wait_for(lambda: len(_workers_rss(srv.proc.pid)) == workers, 30,  # type: ignore[union-attr]
                 "the serve workers after the attack")
        if srv.proc.poll() is not None:
            problems.append("serve: the master died")
        for _ in range(workers * 3):
            http_get(srv.port, "/fuzz.py", cookie=f"PHPSESSID={canary}")
        after = _workers_rss(srv.proc.pid)
        figures["serve"]["rss_idle_mib"] = sorted(round(v / 2**20, 1) for v in idle.values())
        figures["serve"]["rss_after_mib"] = sorted(round(v / 2**20, 1) for v in after.values())
        if max(after.values()) > max(idle.values()) + rss_slack_mib * 2**20:
            problems.append(f"serve: worker RSS {figures['serve']['rss_after_mib']} MiB after, "
                            f"{figures['serve']['rss_idle_mib']} MiB idle before")
        r = http_get(srv.port, "/fuzz.py", cookie=f"PHPSESSID={canary}")
        if int(r.body) != workers * 6 + 1:
            problems.append(f"serve: the canary counter is {r.body!r}, expected {workers * 6 + 1}")
    finally:
        srv.stop()
    figures["problems"] = problems
    return figures


def _campaign(seconds: float, clients: int, make: Callable[[], tuple[str, bytes, bool]],
              address: str | tuple[str, int], bound: float, problems: list[str], name: str) -> dict[str, Any]:
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    kinds: dict[str, int] = {}
    longest = [0.0]

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                kind, data, half = make()
            took, closed = attack(address, data, half, bound)
            with lock:
                kinds[kind] = kinds.get(kind, 0) + 1
                longest[0] = max(longest[0], took)
                if not closed:
                    problems.append(f"{name}: a {kind!r} connection was still open after {took:.1f} s")

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(client) for _ in range(clients)]:
            f.result()
    return {"connections": sum(kinds.values()), "kinds": kinds, "longest_s": round(longest[0], 2)}


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; print the figures as JSON; exit 1 on any problem."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of fuzzing per server")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="phpsess-protofuzz-"))
    try:
        figures = fuzz(args.seconds, args.seed, work, workers=args.workers, clients=args.clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
