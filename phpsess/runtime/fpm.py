"""``phpsess fpm``: a pre-forked FastCGI worker pool that runs script files per request, as
php-fpm runs ``.php`` files.  Does process management (fork, signals, waitpid) and socket
I/O; the requests of each connection are served by :mod:`phpsess.runtime.fcgi_conn`.

The records of a connection are parsed from one buffer and answered with one write
(:func:`phpsess.runtime.fcgi_conn.serve_connection`, compiled with the request path).
flup6 is not used here: its ``PreforkServer`` loops miss signals under Python 3
(PEP 475 retries ``select``/``wait``), wake every idle child on each connection and
leave the children running when the master is killed, and its per-record objects
cost about 25 µs a request (docs/deployment.md says where flup6 is the right tool:
serving a WSGI application over FastCGI).  This pool:

* the master keeps exactly ``workers`` children, replaces any that dies (``kill -9``
  included) and recycles each after ``max_requests`` requests;
* children block in ``accept()`` (the kernel wakes one), die with the master
  (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), and serve one request at a time;
* SIGTERM/SIGINT/SIGHUP: stop now (children get SIGTERM, SIGKILL after
  ``stop_timeout``); SIGQUIT: stop accepting, let running requests finish.

Each request runs in a fresh :class:`~phpsess.session.request.Request` context through
:func:`phpsess.runtime.sapi.handle_request`, with the CGI view (``os.environ``,
``sys.stdin``) set for the request and restored after it.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import logging
import mmap
import os
import random
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from types import FrameType
from typing import Any, Callable

from ..storage import registry
from ..core import telemetry
from ..session.request import Request
from .fcgi import ProtocolError
from .fcgi_conn import serve_connection
from .output import install_output_proxy
from .cgi import disarm as _disarm_cgi

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["FastCGIPool", "parse_listen", "serve_fpm"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MASTER_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1,
)


class _GracefulExit(Exception):
    pass


class FastCGIPool:
    """A pre-forked pool of ``workers`` processes serving FastCGI requests by running
    the script ``SCRIPT_FILENAME`` names (only under ``root``).

    :param root: document root; scripts outside it (real path) answer 404.
    :param bind: a unix socket path or a ``(host, port)`` tuple.
    :param workers: number of worker processes (all pre-forked).
    :param max_requests: recycle a worker after this many requests (0: never).
    :param listen_mode: permissions of a unix socket.
    :param stop_timeout: seconds children get after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        root: str,
        bind: str | tuple[str, int],
        *,
        workers: int = 4,
        max_requests: int = 0,
        listen_mode: int = 0o660,
        stop_timeout: float = 3.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.bind = bind
        self.root = os.path.realpath(root)
        self.workers = workers
        self.max_requests = max_requests
        self.listen_mode = listen_mode
        self.stop_timeout = stop_timeout
        self._stop: str | None = None
        self._children: dict[int, float] = {}  # pid -> start time
        self._busy = False
        self._quit = False
        self._sock: socket.socket | None = None
        self._master_pid = 0
        self._wake: tuple[int, int] | None = None
        #: lock-wait histograms, one slot per worker, shared with the workers (telemetry.py)
        self._stats: mmap.mmap | None = None
        self._slot = 0  # in a worker: its slot of _stats
        self._stats_words: memoryview | None = None  # in a worker: _stats as 64-bit words
        self._slots: dict[int, int] = {}  # in the master: pid -> slot
        self._report = False

    def lock_wait_summary(self) -> telemetry.WaitSummary:
        """The lock waits of every request the pool has served so far."""
        if self._stats is None:
            return telemetry.summarize([])
        return telemetry.summarize(telemetry.read_slot(self._stats, i) for i in range(self.workers))

    # -- the master --------------------------------------------------------------------
    def _setupSocket(self) -> socket.socket:
        """Bind and listen (IPv4, IPv6 or a unix socket with ``listen_mode``)."""
        addr = self.bind
        if isinstance(addr, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                os.unlink(addr)
            except FileNotFoundError:
                pass
            sock.bind(addr)
            os.chmod(addr, self.listen_mode)
        else:
            family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
        sock.listen(socket.SOMAXCONN)
        return sock

    def run(self) -> bool:
        """Bind, fork the workers and supervise them until a stop signal; returns False."""
        sock = self._setupSocket()
        self._sock = sock
        sock.setblocking(True)
        self._master_pid = os.getpid()
        self._stats = mmap.mmap(-1, telemetry.SLOT_SIZE * self.workers)  # shared with the workers
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (r, w)
        old_wakeup = signal.set_wakeup_fd(w)
        old_handlers = {s: signal.getsignal(s) for s in _MASTER_SIGNALS}
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_stop)
        signal.signal(signal.SIGQUIT, self._on_graceful)
        signal.signal(signal.SIGCHLD, self._on_child)
        signal.signal(signal.SIGUSR1, self._on_report)
        log.info("phpsess fpm: %d workers on %s, root %s", self.workers, self.bind, self.root)
        _preload_and_freeze()
        deaths: deque[float] = deque(maxlen=self.workers)
        pause_until = 0.0
        try:
            while self._stop is None:
                for _pid, started in self._reap():
                    now = time.monotonic()
                    if now - started < 1.0:
                        deaths.append(now)
                        if len(deaths) == deaths.maxlen and now - deaths[0] < 1.0:
                            log.error("workers die at start; pausing respawn for 1 s")
                            pause_until = now + 1.0
                timeout: float | None = None
                if time.monotonic() >= pause_until:
                    while len(self._children) < self.workers and self._stop is None:
                        if not self._spawn():
                            timeout = 1.0
                            break
                else:
                    timeout = max(0.0, pause_until - time.monotonic())
                try:
                    select.select([r], [], [], timeout)
                except InterruptedError:
                    pass
                try:
                    while os.read(r, 512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                if self._report:
                    self._report = False
                    log.info("phpsess fpm: %s", telemetry.format_summary(self.lock_wait_summary()))
        finally:
            self._stop_children()
            log.info("phpsess fpm: %s", telemetry.format_summary(self.lock_wait_summary()))
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            os.close(r)
            os.close(w)
            sock.close()
            if isinstance(self.bind, str):
                try:
                    os.unlink(self.bind)
                except OSError:
                    pass
            log.info("phpsess fpm: stopped")
        return False

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = "now"  # also ends a graceful stop in progress

    def _on_graceful(self, signum: int, frame: FrameType | None) -> None:
        if self._stop is None:
            self._stop = "graceful"

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd wakes the loop, which reaps

    def _on_report(self, signum: int, frame: FrameType | None) -> None:
        self._report = True  # SIGUSR1: the loop logs the lock-wait summary

    def worker_pids(self) -> list[int]:
        """The pids of the live workers (in the master)."""
        return list(self._children)

    def _reap(self) -> list[tuple[int, float]]:
        dead = []
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            started = self._children.pop(pid, None)
            self._slots.pop(pid, None)
            registry.forget_registry(pid)
            if started is not None:
                if os.WIFSIGNALED(status) and self._stop is None:
                    log.warning("worker %d killed by signal %d", pid, os.WTERMSIG(status))
                dead.append((pid, started))
        return dead

    def _stop_children(self) -> None:
        if self._stop == "graceful" and self._sock is not None:
            # stop accepting: blocked accept() calls fail, running requests finish
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._wait_children(time.monotonic() + 30.0, graceful=True)
        for pid in list(self._children):
            _kill(pid, signal.SIGTERM)
        self._wait_children(time.monotonic() + self.stop_timeout)
        for pid in list(self._children):
            _kill(pid, signal.SIGKILL)
        self._wait_children(time.monotonic() + 5.0)

    def _wait_children(self, deadline: float, graceful: bool = False) -> None:
        while self._children and time.monotonic() < deadline:
            if graceful and self._stop == "now":
                return  # SIGTERM during a graceful stop: stop now
            self._reap()
            if self._children:
                time.sleep(0.02)

    def _spawn(self) -> bool:
        # no signal handler of the master may run in the child before it installs its own
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        used = set(self._slots.values())
        self._slot = next(i for i in range(self.workers) if i not in used)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            log.error("cannot fork a worker: %s", exc)
            return False
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self._children[pid] = time.monotonic()
            self._slots[pid] = self._slot
            return True
        code = 0
        try:
            self._worker()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        return False  # not reached

    # -- a worker ----------------------------------------------------------------------
    def _worker(self) -> None:
        _set_pdeathsig(signal.SIGKILL)
        if os.getppid() != self._master_pid:
            return  # the master died while we were forking
        signal.set_wakeup_fd(-1)
        if self._wake is not None:
            os.close(self._wake[0])
            os.close(self._wake[1])
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the master's report signal
        signal.signal(signal.SIGQUIT, self._on_worker_quit)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)
        random.seed()
        install_output_proxy()
        if self._stats is not None:
            self._stats_words = telemetry.slot_words(self._stats)
        sock = self._sock
        assert sock is not None
        # socket.accept() wraps each connection in socket.socket, a Python class;
        # the C type underneath does all serve_connection needs, a few µs cheaper
        accept_fd = sock._accept  # type: ignore[attr-defined]
        family, stype, proto = sock.family, sock.type, sock.proto
        served = 0
        on_done = self._record_lock_wait
        while not self._quit:
            self._busy = False
            try:
                fd, _addr = accept_fd()
                client = _socket.socket(family, stype, proto, fd)
            except _GracefulExit:
                break
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EBADF):
                    break  # the master shut the listening socket down
                if exc.errno in (errno.ECONNABORTED, errno.EAGAIN, errno.EINTR):
                    continue
                raise
            self._busy = True
            try:
                serve_connection(client, self.root, on_done)
            except ProtocolError as exc:
                log.warning("FastCGI connection dropped: %s", exc)
            except OSError as exc:
                log.info("FastCGI connection lost: %s", exc)
            except Exception:
                log.exception("FastCGI connection failed")
            finally:
                client.close()
            served += 1
            if self.max_requests and served >= self.max_requests:
                break

    def _record_lock_wait(self, request: Request) -> None:
        """After each request: its lock wait into this worker's telemetry slot."""
        if self._stats_words is not None:
            telemetry.record_words(self._stats_words, self._slot, request.lock_wait)
        elif self._stats is not None:
            telemetry.record(self._stats, self._slot, request.lock_wait)

    def _on_worker_quit(self, signum: int, frame: FrameType | None) -> None:
        self._quit = True
        if not self._busy:
            raise _GracefulExit


def _preload_and_freeze() -> None:
    """Import what every request uses once, in the master (:func:`_preload`), and move it
    out of the garbage collector's reach (gc.freeze), so forked workers share those
    pages instead of copying them on the first collection (about 3-4 MiB less per worker)."""
    import gc

    _preload()
    gc.collect()
    gc.freeze()


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


_libc: Any = None


def _set_pdeathsig(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def parse_listen(listen: str) -> str | tuple[str, int]:
    """``--listen``: a unix socket path (contains ``/``), ``HOST:PORT``, ``[V6]:PORT`` or a port.

    >>> parse_listen("127.0.0.1:9000")
    ('127.0.0.1', 9000)
    >>> parse_listen("/run/phpsess/fpm.sock")
    '/run/phpsess/fpm.sock'
    """
    if listen.startswith("unix:"):
        return listen[5:]
    if "/" in listen:
        return listen
    if listen.isdigit():
        return ("127.0.0.1", int(listen))
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen: expected a socket path or HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def serve_fpm(
    listen: str,
    root: str,
    *,
    workers: int = 4,
    max_requests: int = 0,
    listen_mode: int = 0o660,
    on_ready: Callable[[FastCGIPool], None] | None = None,
) -> int:
    """Run the pool until a stop signal (``phpsess fpm``); returns the exit code."""
    if not os.path.isdir(root):
        log.error("--root %s is not a directory", root)
        return 2
    address = parse_listen(listen)
    if isinstance(address, str) and _listening(address):
        log.error("another process is listening on %s", address)
        return 2
    pool = FastCGIPool(
        root, address, workers=workers, max_requests=max_requests, listen_mode=listen_mode
    )
    if on_ready is not None:
        on_ready(pool)
    pool.run()
    return 0


def _listening(path: str) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def _preload() -> None:
    """Import, once in the master, what every worker needs (shared copy-on-write after fork)."""
    from .. import php  # noqa: F401
    from ..core import codec, formats, lazydata  # noqa: F401
    from ..storage.base import handler_class
    from ..session.settings import default_config

    try:
        handler_class(default_config().save_handler)
    except (KeyError, ImportError) as exc:
        log.debug("save handler not preloaded: %s", exc)
