"""Fixtures shared by the save handler tests: a registry of backends the contract runs
over, and "peers" -- other requests on the same storage, in another process.

To run the contract over a new handler, add a :class:`Backend` to :data:`BACKENDS`
(from a conftest or plugin imported before collection, or here)::

    BACKENDS["redis"] = Backend("redis", save_path=lambda request, tmp: ..., age=...)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import select
import signal
import struct
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from phpsess.core.config import SessionConfig
from phpsess.storage.base import SaveHandler, handler_class

__all__ = ["Backend", "BACKENDS", "Ctx", "Peer", "SID", "SID2"]

#: two valid ids of the default shape (32 hex characters)
SID = "0123456789abcdef0123456789abcdef"
SID2 = "fedcba9876543210fedcba9876543210"


def _age_file(handler: SaveHandler, save_path: str, sid: str, seconds: float) -> None:
    path = handler.path(sid)  # type: ignore[attr-defined]
    st = os.stat(path)
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def _age_memory(handler: SaveHandler, save_path: str, sid: str, seconds: float) -> None:
    store = handler.store  # type: ignore[attr-defined]
    data, mtime = store.data[(save_path, sid)]
    store.data[(save_path, sid)] = (data, mtime - seconds)


@dataclasses.dataclass
class Backend:
    """How to run the handler contract against one storage."""

    name: str  # the session.save_handler name (phpsess.core.config.SAVE_HANDLERS)
    #: the session.save_path for one test: (pytest request, tmp_path) -> str
    save_path: Callable[[pytest.FixtureRequest, Path], str]
    #: make sid's last write look ``seconds`` older: (handler, save_path, sid, seconds)
    age: Callable[[SaveHandler, str, str, float], None]
    #: storage shared between processes (else peers are threads of this process)
    multiprocess: bool = True
    #: read(shared=True) really shares (two readers at once)
    shared_locks: bool = False
    #: gc deletes expired entries itself (redis: keys expire by TTL and gc returns 0)
    gc_deletes: bool = True
    #: called after each test (e.g. to empty a store)
    cleanup: Callable[[str], None] | None = None


def _memory_cleanup(save_path: str) -> None:
    from phpsess.storage.memory import STORE

    with STORE.mutex:
        for key in [k for k in STORE.data if k[0] == save_path]:
            del STORE.data[key]


BACKENDS: dict[str, Backend] = {
    "files": Backend(
        "files",
        save_path=lambda request, tmp: str(tmp),
        age=_age_file,
        multiprocess=True,
        shared_locks=True,
    ),
    "memory": Backend(
        "memory",
        save_path=lambda request, tmp: f"memory:{tmp}",
        age=_age_memory,
        multiprocess=False,
        cleanup=_memory_cleanup,
    ),
}

# redis: a real redis-server, started once per test session (tests/integration/redis_server.py)
from tests.integration.redis_server import age_redis_session, redis_save_path, redis_server  # noqa: E402,F401

BACKENDS["redis"] = Backend("redis", save_path=redis_save_path, age=age_redis_session, gc_deletes=False)

# memcached: a real memcached, started once per test session, emptied after each test
from tests.integration.memcached_server import (  # noqa: E402,F401
    age_memcached_session,
    flush_memcached,
    memcached_save_path,
    memcached_server,
)

BACKENDS["memcached"] = Backend(
    "memcached", save_path=memcached_save_path, age=age_memcached_session, gc_deletes=False, cleanup=flush_memcached
)

# rediscluster: a real Redis Cluster (3 masters, 3 replicas), started once per test session
from tests.integration.redis_cluster import age_cluster_session, cluster_save_path, redis_cluster  # noqa: E402,F401

BACKENDS["rediscluster"] = Backend("rediscluster", save_path=cluster_save_path, age=age_cluster_session,
                                   gc_deletes=False)


class Ctx:
    """One test's storage: make handlers on it, start peers on it."""

    def __init__(self, backend: Backend, save_path: str) -> None:
        self.backend = backend
        self.save_path = save_path
        self.handlers: list[SaveHandler] = []
        self.peers: list[Peer] = []

    def make(self, **settings: Any) -> SaveHandler:
        """A new handler instance (a new "request"), opened on this storage."""
        handler = handler_class(self.backend.name)(SessionConfig(settings))
        handler.open(self.save_path, "PHPSESSID")
        self.handlers.append(handler)
        return handler

    def age(self, handler: SaveHandler, sid: str, seconds: float) -> None:
        """Make ``sid`` look as if last written ``seconds`` ago."""
        self.backend.age(handler, self.save_path, sid, seconds)

    def peer(self, fn: Callable[["Channel"], Any]) -> "Peer":
        """Start ``fn(channel)`` as another request: a process, or a thread if process-local."""
        p = Peer(fn, process=self.backend.multiprocess)
        self.peers.append(p)
        p.start()
        return p

    def close(self) -> None:
        for p in self.peers:
            p.stop()
        for h in self.handlers:
            h.close()
        if self.backend.cleanup is not None:
            self.backend.cleanup(self.save_path)


# -- peers: other requests, in other processes -------------------------------------------


class Channel:
    """Pickled messages both ways between a test and its peer (pipes or queues)."""

    def __init__(self, rfd: int = -1, wfd: int = -1) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.inbox: queue.Queue[Any] | None = None
        self.outbox: queue.Queue[Any] | None = None

    def send(self, obj: Any) -> None:
        """Send one message."""
        if self.outbox is not None:
            self.outbox.put(obj)
            return
        data = pickle.dumps(obj)
        os.write(self.wfd, struct.pack("!I", len(data)) + data)

    def recv(self, timeout: float = 10.0) -> Any:
        """The next message; TimeoutError after ``timeout`` seconds."""
        if self.inbox is not None:
            try:
                return self.inbox.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("no message from peer") from None
        head = self._read(4, timeout)
        (n,) = struct.unpack("!I", head)
        return pickle.loads(self._read(n, timeout))

    def poll(self, timeout: float = 0.0) -> bool:
        """True when a message is waiting."""
        if self.inbox is not None:
            deadline = time.monotonic() + timeout
            while self.inbox.empty() and time.monotonic() < deadline:
                time.sleep(0.001)
            return not self.inbox.empty()
        return bool(select.select([self.rfd], [], [], timeout)[0])

    def _read(self, n: int, timeout: float) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise TimeoutError("no message from peer")
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise EOFError("peer exited")
            buf += chunk
        return buf


def _close_inherited_fds(keep: set[int]) -> None:
    # a forked child shares the parent's open file descriptions -- and their flocks:
    # close them all, or the parent's close() would not release its lock
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Peer:
    """Another request: ``fn(channel)`` in a forked process without the parent's
    descriptors (or in a thread, for process-local storage).

    Whatever ``fn`` returns is sent as ``("return", value)``; an exception as
    ``("raise", type name, str(exc), attributes)``.
    """

    def __init__(self, fn: Callable[[Channel], Any], *, process: bool) -> None:
        self.fn = fn
        self.process = process
        self.pid = 0
        self.thread: threading.Thread | None = None
        self.chan = Channel()  # the test's end

    def start(self) -> None:
        """Fork (or start the thread)."""
        if not self.process:
            mine, theirs = Channel(), Channel()
            mine.inbox, mine.outbox = queue.Queue(), queue.Queue()
            theirs.inbox, theirs.outbox = mine.outbox, mine.inbox
            self.chan = mine
            self.thread = threading.Thread(target=self._run, args=(theirs,), daemon=True)
            self.thread.start()
            return
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                _close_inherited_fds({to_child_r, to_parent_w})
                self._run(Channel(to_child_r, to_parent_w))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(to_child_r)
        os.close(to_parent_w)
        self.pid = pid
        self.chan = Channel(to_parent_r, to_child_w)

    def _run(self, chan: Channel) -> None:
        try:
            result = self.fn(chan)
        except BaseException as exc:  # reported to the test, which decides
            attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (int, float, str))}
            chan.send(("raise", type(exc).__name__, str(exc), attrs, traceback.format_exc()))
            return
        chan.send(("return", result))

    def send(self, obj: Any) -> None:
        """Send a message to the peer."""
        self.chan.send(obj)

    def recv(self, timeout: float = 10.0) -> Any:
        """The next message from the peer."""
        return self.chan.recv(timeout)

    def result(self, timeout: float = 10.0) -> Any:
        """``fn``'s return value (progress messages skipped).

        :raises AssertionError: ``fn`` raised; the message has its traceback.
        """
        while True:
            msg = self.recv(timeout)
            if msg[0] == "return":
                return msg[1]
            if msg[0] == "raise":
                raise AssertionError(f"peer raised {msg[1]}: {msg[2]}\n{msg[4]}")

    def outcome(self, timeout: float = 10.0) -> tuple[Any, ...]:
        """The final message: ``("return", value)`` or ``("raise", name, text, attrs, tb)``."""
        while True:
            msg = self.recv(timeout)
            if msg[0] in ("return", "raise"):
                return tuple(msg)

    def stop(self) -> None:
        """Make sure the peer is gone (kill a process that is still there)."""
        if self.thread is not None:
            self.thread.join(5)
            return
        if self.pid:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0
        for fd in (self.chan.rfd, self.chan.wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.chan.rfd = self.chan.wfd = -1


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(params=sorted(BACKENDS))
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ctx]:
    """One backend of :data:`BACKENDS` with fresh storage for this test."""
    backend = BACKENDS[request.param]
    c = Ctx(backend, backend.save_path(request, tmp_path))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def handler(ctx: Ctx) -> SaveHandler:
    """An opened handler of the backend under test, with PHP's default settings."""
    return ctx.make()


@pytest.fixture
def files_ctx(tmp_path: Path) -> Iterator[Ctx]:
    """The files backend alone, on ``tmp_path``."""
    c = Ctx(BACKENDS["files"], str(tmp_path))
    try:
        yield c
    finally:
        c.close()

