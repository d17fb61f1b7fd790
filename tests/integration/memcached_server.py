"""Real memcached servers for tests and benchmarks: 127.0.0.1, free ports. Starts and stops
processes.

``with MemcachedProcess() as srv: ...`` starts one and always stops it;
:func:`memcached_server` is a session-scoped pytest fixture wrapping it, and
:func:`memcached_trio` three of them (sessions spread over several servers).  A missing
``memcached`` binary fails the test loudly (tests/phptools.require).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

try:
    from tests.integration.redis_server import LocalServer
except ImportError:  # pragma: no cover
    from redis_server import LocalServer  # type: ignore[no-redef]

__all__ = [
    "MemcachedProcess",
    "memcached_server",
    "memcached_trio",
    "memcached_save_path",
    "age_memcached_session",
    "flush_memcached",
    "find_memcached",
]


def find_memcached() -> str:
    """The memcached binary; fails the test when it is not installed."""
    from tests.phptools import require

    return require("memcached")


class MemcachedProcess(LocalServer):
    """One memcached child process on 127.0.0.1 (64 MB, no UDP)."""

    def __init__(self, *, port: int | None = None, binary: str | None = None) -> None:
        super().__init__("phpsess-memcached-", port, binary)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, a memcached ``session.save_path`` entry."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "MemcachedProcess":
        """Start the server and wait until it answers ``version``."""
        binary = self.binary or find_memcached()
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64", "-t", "2", "-c", "1024"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"memcached exited at start ({self.proc.returncode}): {err}")
            if self.ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"memcached did not answer on 127.0.0.1:{self.port}")

    def ping(self) -> bool:
        """True when the server answers ``version`` right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"version\r\n")
                return s.recv(32).startswith(b"VERSION")
        except OSError:
            return False

    def command(self, line: bytes) -> bytes:
        """Send one text-protocol command and return the reply (tests look inside)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(line + b"\r\n")
            out = b""
            while not out.endswith((b"END\r\n", b"STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n", b"TOUCHED\r\n",
                                    b"OK\r\n", b"ERROR\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n")):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None."""
        reply = self.command(b"get " + key.encode())
        if reply.startswith(b"VALUE"):
            head, _, rest = reply.partition(b"\r\n")
            n = int(head.split()[3])
            return rest[:n]
        return None

    def flush(self) -> None:
        """Empty the server."""
        self.command(b"flush_all")


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedProcess]:
    """A memcached shared by the test session, stopped at its end."""
    with MemcachedProcess() as srv:
        yield srv


@pytest.fixture(scope="session")
def memcached_trio() -> Iterator[list[MemcachedProcess]]:
    """Three memcached servers shared by the test session."""
    servers = [MemcachedProcess() for _ in range(3)]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.stop()


# -- the "memcached" backend of tests/storage/conftest.py (the handler contract) -------------


def memcached_save_path(request: pytest.FixtureRequest, tmp: Path) -> str:
    """The session's :func:`memcached_server` (emptied after each test by
    :func:`flush_memcached`: the key prefix is an ini setting, not part of save_path)."""
    srv: MemcachedProcess = request.getfixturevalue("memcached_server")
    return srv.address


def flush_memcached(save_path: str) -> None:
    """Empty the server of ``save_path`` (the contract's cleanup after each test)."""
    host, _, port = save_path.partition(":")
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(b"flush_all\r\n")
        s.recv(16)


def age_memcached_session(handler: object, save_path: str, sid: str, seconds: float,
                          prefix: str = "memc.sess.key.") -> None:
    """Make ``sid``'s last write ``seconds`` older: its TTL shrinks by as much (gone at 0),
    read and set again with memcached's meta commands (``mg ... t v``)."""
    host, _, port = save_path.partition(":")
    key = (prefix + sid).encode()
    with socket.create_connection((host, int(port)), timeout=2) as s:
        f = s.makefile("rwb")
        f.write(b"mg " + key + b" t v\r\n")
        f.flush()
        head = f.readline().split()
        if head[0] != b"VA":
            return
        data = f.read(int(head[1]) + 2)[:-2]
        ttl = next(int(t[1:]) for t in head[2:] if t.startswith(b"t"))
        new = ttl - int(seconds) if ttl > 0 else 0
        if ttl > 0 and new <= 0:
            f.write(b"delete " + key + b"\r\n")
        else:
            f.write(b"set " + key + b" 0 %d %d\r\n" % (new, len(data)) + data + b"\r\n")
        f.flush()
        f.readline()
