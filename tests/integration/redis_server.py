"""A real redis-server for tests and benchmarks: 127.0.0.1, a free port, a temp dir, no
persistence. Starts and stops processes.

``with RedisProcess() as srv: ...`` starts one and always stops it;
:func:`redis_server` is a session-scoped pytest fixture wrapping it (import it
into a test module or conftest to use it).  A missing ``redis-server`` fails
the test loudly (tests/phptools.require).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence, TypeVar
from urllib.parse import quote

import pytest

__all__ = [
    "LocalServer",
    "RedisProcess",
    "free_port",
    "redis_server",
    "find_redis_server",
    "redis_save_path",
    "age_redis_session",
]


_S = TypeVar("_S", bound="LocalServer")


def find_redis_server() -> str:
    """The redis-server binary; fails the test when it is not installed."""
    from tests.phptools import require

    return require("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A server child process on 127.0.0.1 (a free port unless given) with a temp directory
    of its own: the life cycle the test servers share; each defines :meth:`start`.
    ``kill()`` is a crash (SIGKILL; ``start()`` brings it back on the same port),
    ``stop()`` SIGTERM then SIGKILL after 5 s, and removes the directory."""

    def __init__(self, dir_prefix: str, port: int | None, binary: str | None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix=dir_prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "LocalServer":
        """Start the server and wait until it answers."""
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the server (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisProcess(LocalServer):
    """One redis-server child process on 127.0.0.1 (and a unix socket in its temp dir).

    :param extra: more ``--option value`` arguments, e.g. ``("--notify-keyspace-events", "Kgx")``.
    :param binary: the redis-server path (default: found on PATH, else the test fails).
    """

    def __init__(self, *, port: int | None = None, extra: Sequence[str] = (), binary: str | None = None) -> None:
        super().__init__("phpsess-redis-", port, binary)
        self.extra = list(extra)
        self.unix_socket = os.path.join(self.dir, "redis.sock")

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT``, for ``session.save_path``."""
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        """``unix://<dir>/redis.sock``, for ``session.save_path``."""
        return f"unix://{self.unix_socket}"

    def start(self, timeout: float = 10.0) -> "RedisProcess":
        """Start the server and wait until it answers PING."""
        binary = self.binary or find_redis_server()
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", self.unix_socket,
            "--unixsocketperm", "700",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", os.path.join(self.dir, "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start ({self.proc.returncode}): {err}{self.log()}")
            if self.ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{self.port}: {self.log()}")

    def ping(self) -> bool:
        """True when the server answers PING right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        """The server's log file so far."""
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A redis-server shared by the test session, stopped at its end."""
    with RedisProcess() as srv:
        yield srv


# -- the "redis" backend of tests/storage/conftest.py (the handler contract) ----------------


def redis_save_path(request: pytest.FixtureRequest, tmp: Path) -> str:
    """A save_path on the session's :func:`redis_server` with a prefix unique to the test."""
    srv: RedisProcess = request.getfixturevalue("redis_server")
    return f"{srv.url}?prefix=" + quote(f"{tmp.name}:", safe="")


def age_redis_session(handler: object, save_path: str, sid: str, seconds: float) -> None:
    """Make ``sid``'s last write ``seconds`` older: its TTL shrinks by as much (gone at 0)."""
    from phpsess.storage.redis import client_for
    from phpsess.core.redis_url import parse_save_path, pick_server

    server = pick_server(parse_save_path(save_path), sid)
    client = client_for(server)
    key = server.session_key(sid)
    left = int(client.pttl(key))
    if left <= 0:
        return
    new = left - int(seconds * 1000)
    if new <= 0:
        client.delete(key)
    else:
        client.pexpire(key, new)
