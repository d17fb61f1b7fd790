"""One supervisor for phpsess's pre-forked pools: ``phpsess fpm`` and ``phpsess serve``.
Does process management: fork, signals, waitpid, setuid, exec (reload).

The shape is gunicorn's arbiter, with php-fpm's controls: one master process holds the
listening sockets and a :class:`~phpsess.runtime.scoreboard.Scoreboard`, forks the
workers and keeps the pool as its process manager says; a :class:`Worker` (FastCGI or
HTTP) serves the connections one at a time, so that a script waiting for a session lock
really blocks its worker, as a PHP request blocks its php-fpm child.

The process manager (``pm``), as php-fpm's:

* ``static``: ``max_children`` workers, always;
* ``dynamic``: ``start_servers`` at start, then between ``min_spare_servers`` and
  ``max_spare_servers`` idle ones, never more than ``max_children`` in all;
* ``ondemand``: none until a connection waits, ``max_children`` at most; a worker idle
  longer than ``process_idle_timeout`` stops.

What keeps a pool alive:

* a worker that dies is replaced at once (its crash is logged with the script and URI
  it was serving); only workers that die before they are ready -- a broken
  configuration, a module that does not import -- make the master back off, and then
  it still keeps trying, so one bad script never starves the pool;
* ``max_requests``: a worker is recycled after that many requests; ``max_memory``:
  after a request that took its peak memory past the bound;
* ``request_slowlog_timeout``: a request running longer gets its Python stack written to
  the slow log (the worker writes it on SIGUSR1; the master only asks);
* ``request_terminate_timeout``: a request running longer has its worker killed
  (SIGTERM: the kernel releases its flocks) and replaced, and the event is logged;
* workers die with the master (``PR_SET_PDEATHSIG``) and drop to ``user``/``group``
  when the master runs as root.

Signals of the master, as php-fpm's: SIGQUIT graceful stop (running requests finish);
SIGTERM, SIGINT fast stop; SIGUSR1 reopen log files (and log the lock-wait summary);
SIGUSR2 graceful reload: the master checks the new configuration and code, then
re-executes itself keeping its listening sockets; the new master starts new workers
while the old ones finish their requests, so no request is refused or cut.  SIGHUP is a
reload too.  Any other catchable signal is logged, never a silent death.
"""

from __future__ import annotations

import abc
import ctypes
import dataclasses
import errno
import grp
import logging
import mmap
import os
import pwd
import resource
import select
import signal
import socket
import _socket
import sys
import time
import traceback
from types import FrameType
from typing import Callable, Sequence

from ..core import telemetry
from ..storage import registry
from .metering import set_title
from .scoreboard import Scoreboard, SlotView, WorkerSlot, WorkerState

__all__ = [
    "PoolSettings",
    "Worker",
    "WorkerContext",
    "Arbiter",
    "inherited_listeners",
    "LISTEN_FDS_ENV",
    "set_title",
]

log = logging.getLogger("phpsess.pool")

#: the listening sockets a reloading master hands to its next self: "3,4"
LISTEN_FDS_ENV = "PHPSESS_LISTEN_FDS"
#: the workers of the master before a reload, which the next one lets finish: "pid,pid"
OLD_WORKERS_ENV = "PHPSESS_OLD_WORKERS"

_PR_SET_PDEATHSIG = 1
_MASTER_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGCHLD,
)
#: signals that would end the master silently if left at their default action
_LOGGED_SIGNALS = (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGPWR, signal.SIGTRAP)


@dataclasses.dataclass
class PoolSettings:
    """The process manager's settings (php-fpm's pool directives of the same names)."""

    name: str = "www"
    pm: str = "static"
    max_children: int = 5
    start_servers: int = 2
    min_spare_servers: int = 1
    max_spare_servers: int = 3
    process_idle_timeout: float = 10.0
    max_requests: int = 0
    request_terminate_timeout: float = 0.0
    request_slowlog_timeout: float = 0.0
    #: recycle a worker after a request that took its peak memory (RSS) past this many bytes
    max_memory: int = 0
    user: str | None = None
    group: str | None = None
    #: seconds workers get after SIGTERM before SIGKILL (fast stop)
    stop_timeout: float = 3.0
    #: seconds running requests get to finish at a graceful stop or reload
    graceful_timeout: float = 30.0

    def initial_workers(self) -> int:
        """How many workers the pool starts with."""
        if self.pm == "static":
            return self.max_children
        if self.pm == "dynamic":
            return min(self.start_servers, self.max_children)
        return 0


@dataclasses.dataclass
class WorkerContext:
    """What a worker gets from the master: its slot, the pool, the shared buffers."""

    settings: PoolSettings
    slot_index: int
    slot: WorkerSlot
    board: Scoreboard
    stats: mmap.mmap
    listeners: list[socket.socket]
    master_pid: int
    generation: int
    #: ``[True]`` once the worker was asked to stop (SIGQUIT): finish the request in hand,
    #: take no other (a kept-alive FastCGI connection is closed after it)
    quitting: list[bool] = dataclasses.field(default_factory=lambda: [False])


class Worker(abc.ABC):
    """What one kind of pool does with a connection (FastCGI, HTTP).

    The master forks a process per worker and calls :meth:`setup` in it, then
    :meth:`handle` for each connection it accepts; :meth:`wants_exit` is asked between
    connections (e.g. the memory bound).
    """

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def setup(self) -> None:
        """In the new worker process, before the first connection."""

    @abc.abstractmethod
    def handle(self, conn: _socket.socket) -> None:
        """Serve the requests of one accepted connection (it is closed afterwards)."""

    def wants_exit(self) -> bool:
        """True to stop after the current connection (the pool replaces the worker)."""
        return False

    def idle(self) -> None:
        """The worker is about to wait for a connection (not called while connections
        are waiting: a busy worker goes from one to the next)."""


def inherited_listeners() -> list[socket.socket] | None:
    """The listening sockets handed over by a reloading master (``$PHPSESS_LISTEN_FDS``),
    or None when this process was started afresh."""
    value = os.environ.pop(LISTEN_FDS_ENV, "")
    if not value:
        return None
    out = []
    for part in value.split(","):
        fd = int(part)
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        out.append(sock)
    return out


def _old_workers() -> list[int]:
    value = os.environ.pop(OLD_WORKERS_ENV, "")
    return [int(p) for p in value.split(",") if p.strip().isdigit()]


def _set_pdeathsig(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"on signal {sig} ({name})"
    return f"with code {os.waitstatus_to_exitcode(status)}"


@dataclasses.dataclass
class _Child:
    pid: int
    slot: int
    started: float
    generation: int
    ready: bool = False
    uid: int | None = None


class Arbiter:
    """The master of one pool.

    :param listeners: listening sockets, already bound (inherited on reload).
    :param worker_factory: makes the :class:`Worker` in each new worker process.
    :param settings: the process manager's settings.
    :param title: the master's process title.
    :param reexec: the command line that starts this master again (reload); None: no reload.
    :param check: runs before a reload; returns an error text to refuse it, else None.
    :param preload: imports what every worker uses, once, before forking.
    :param reopen_logs: reopens the log files (SIGUSR1); the workers are then replaced
        one by one as they finish their requests, so that they write to the new files.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        worker_factory: Callable[[WorkerContext], Worker],
        settings: PoolSettings,
        *,
        title: str = "phpsess: master process",
        reexec: list[str] | None = None,
        check: Callable[[], str | None] | None = None,
        preload: Callable[[], None] | None = None,
        reopen_logs: Callable[[], None] | None = None,
    ) -> None:
        if settings.max_children < 1:
            raise ValueError("pm.max_children must be at least 1")
        self.listeners = list(listeners)
        self.worker_factory = worker_factory
        self.settings = settings
        self.title = title
        self.reexec = reexec
        self.check = check
        self.preload = preload
        self.reopen_logs = reopen_logs
        self.board = Scoreboard(settings.max_children)
        self.stats = mmap.mmap(-1, telemetry.SLOT_SIZE * settings.max_children)
        self.children: dict[int, _Child] = {}
        self.old_children: set[int] = set()
        self.master_pid = os.getpid()
        self.generation = 0
        self._stop: str | None = None  # "now", "graceful" or "reload"
        self._signals: list[int] = []
        self._wake: tuple[int, int] | None = None
        self._backoff = 0.0
        self._respawn_at = 0.0
        self._slow_sent: set[tuple[int, float]] = set()
        self._terminated: set[int] = set()
        self._idle_since: dict[int, float] = {}
        self._uid: int | None = None
        self._gid: int | None = None
        self._stats_dead = [0, 0, 0, [0] * telemetry.BUCKETS]

    # -- the master ------------------------------------------------------------------------
    def run(self) -> int:
        """Fork the workers and keep the pool until a stop or a reload; returns the exit code.

        A reload does not return: the process re-executes itself (:attr:`reexec`).
        """
        self.master_pid = os.getpid()
        self._resolve_user()
        set_title(self.title)
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (r, w)
        old_wakeup = signal.set_wakeup_fd(w)
        previous = {s: signal.getsignal(s) for s in (*_MASTER_SIGNALS, *_LOGGED_SIGNALS)}
        for s in _MASTER_SIGNALS:
            signal.signal(s, self._on_signal)
        for s in _LOGGED_SIGNALS:
            signal.signal(s, self._on_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.old_children = set(_old_workers())
        if self.preload is not None:
            self.preload()
        import gc

        gc.collect()
        gc.freeze()  # what the master imported stays shared with the workers
        log.info(
            "[pool %s] %s: %d worker(s) to start (max %d), %s", self.settings.name,
            self.settings.pm, self.settings.initial_workers(), self.settings.max_children,
            ", ".join(_describe_listener(s) for s in self.listeners),
        )
        try:
            for _ in range(self.settings.initial_workers()):
                self._spawn()
            for pid in self.old_children:
                _kill(pid, signal.SIGQUIT)  # the previous master's: finish, then exit
            while self._stop is None:
                timeout = self._tick()
                readable: list[int | socket.socket] = [r]
                want_conn = self._wants_ondemand_spawn()
                if want_conn:
                    readable.extend(self.listeners)
                try:
                    ready, _, _ = select.select(readable, [], [], timeout)
                except InterruptedError:
                    ready = []
                if r in ready:
                    try:
                        while os.read(r, 512):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                self._handle_signals()
                if want_conn and any(s is not r for s in ready) and self._stop is None:
                    self._spawn()
                if self._stop == "reload":
                    self._reload()  # does not return, unless the reload was refused
                    self._stop = None
        finally:
            if os.getpid() == self.master_pid:
                self._stop_children()
                self._log_summary()
                signal.set_wakeup_fd(old_wakeup)
                for s, h in previous.items():
                    signal.signal(s, h)
                os.close(r)
                os.close(w)
                self._wake = None
        log.info("[pool %s] stopped", self.settings.name)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                log.info("[pool %s] %s received: stopping now", self.settings.name, signal.Signals(signum).name)
                self._stop = "now"
            elif signum == signal.SIGQUIT:
                if self._stop is None:
                    log.info("[pool %s] SIGQUIT received: stopping gracefully", self.settings.name)
                    self._stop = "graceful"
            elif signum in (signal.SIGUSR2, signal.SIGHUP):
                if self._stop is None:
                    log.info("[pool %s] %s received: reloading", self.settings.name, signal.Signals(signum).name)
                    self._stop = "reload" if self.reexec is not None else None
                    if self.reexec is None:
                        log.warning("[pool %s] this pool cannot reload; ignored", self.settings.name)
            elif signum == signal.SIGUSR1:
                log.info("[pool %s] SIGUSR1 received: reopening the log files", self.settings.name)
                if self.reopen_logs is not None:
                    self.reopen_logs()
                    # the workers write to the files they were born with: replace them
                    # gently (each finishes its request), as php-fpm does
                    for pid in list(self.children):
                        _kill(pid, signal.SIGQUIT)
                self._log_summary()
            else:
                log.warning("[pool %s] signal %d (%s) received and ignored", self.settings.name, signum,
                            signal.Signals(signum).name)
        self._reap()

    # -- the process manager --------------------------------------------------------------------
    def _tick(self) -> float:
        """Reap, keep the pool's size, check the requests' durations; seconds until next."""
        self._reap()
        now = time.monotonic()
        views = dict(self.board.views())
        idle = [c for c in self.children.values() if views.get(c.slot) and views[c.slot].state == WorkerState.IDLE]
        active = sum(1 for v in views.values() if v.state in (WorkerState.READING, WorkerState.RUNNING, WorkerState.FINISHING))
        self.board.update_header(max_active=active)
        for child in self.children.values():
            v = views.get(child.slot)
            if v is not None and not child.ready and v.state != WorkerState.STARTING:
                child.ready = True
                self._backoff = 0.0
        self._check_requests(views, now)
        s = self.settings
        total = len(self.children)
        if now >= self._respawn_at:
            if s.pm == "static":
                while len(self.children) < s.max_children and self._spawn():
                    pass
            elif s.pm == "dynamic":
                want = max(0, s.min_spare_servers - len(idle))
                for _ in range(min(want, s.max_children - total)):
                    self._spawn()
                if want and total >= s.max_children:
                    self.board.update_header(children_reached=1)
                if len(idle) > s.max_spare_servers:
                    self._retire(idle[0])
        if s.pm == "ondemand":
            for child in idle:
                since = self._idle_since.setdefault(child.pid, now)
                if now - since >= s.process_idle_timeout:
                    self._retire(child)
            for pid in [p for p in self._idle_since if p not in {c.pid for c in idle}]:
                del self._idle_since[pid]
        return max(0.05, min(0.25, self._respawn_at - now if self._respawn_at > now else 0.25))

    def _wants_ondemand_spawn(self) -> bool:
        if self.settings.pm != "ondemand" or self._stop is not None:
            return False
        if len(self.children) >= self.settings.max_children:
            return False
        if any(not c.ready for c in self.children.values()):
            return False  # one is starting: let it take the connection first
        return not any(v.state == WorkerState.IDLE for _s, v in self.board.views())

    def _retire(self, child: _Child) -> None:
        """Stop an idle worker gently (SIGQUIT: it is in accept, it leaves at once)."""
        _kill(child.pid, signal.SIGQUIT)

    def _check_requests(self, views: dict[int, SlotView], now: float) -> None:
        s = self.settings
        for child in list(self.children.values()):
            v = views.get(child.slot)
            if v is None or v.state not in (WorkerState.RUNNING, WorkerState.FINISHING):
                continue
            running = v.running_for(now)
            key = (child.pid, v.request_start_mono)
            if s.request_slowlog_timeout and running >= s.request_slowlog_timeout and key not in self._slow_sent:
                self._slow_sent.add(key)
                self.board.update_header(slow=1)
                _kill(child.pid, signal.SIGUSR1)  # the worker writes its stack to the slow log
            if s.request_terminate_timeout and running >= s.request_terminate_timeout and child.pid not in self._terminated:
                self._terminated.add(child.pid)
                log.warning(
                    "[pool %s] child %d, script '%s' (request: \"%s %s\") execution timed out (%.6f sec), terminating",
                    s.name, child.pid, v.script, v.method, v.uri, running,
                )
                _kill(child.pid, signal.SIGTERM)
        if len(self._slow_sent) > 4 * s.max_children:
            live = {(c.pid, views[c.slot].request_start_mono) for c in self.children.values() if c.slot in views}
            self._slow_sent &= live

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.old_children.discard(pid)
            child = self.children.pop(pid, None)
            self._terminated.discard(pid)
            self._idle_since.pop(pid, None)
            if child is None:
                continue  # a worker of the master before a reload
            last = self.board.release(child.slot)
            self._fold_stats(child.slot)
            self.board.update_header(accepted=last.accepted, requests=last.requests)
            registry.forget_registry(pid, uid=child.uid)
            lived = time.monotonic() - child.started
            if self._stop is not None:
                continue
            if os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0:
                what = ""
                if last.state in (WorkerState.READING, WorkerState.RUNNING, WorkerState.FINISHING):
                    what = f", while serving script '{last.script}' (request: \"{last.method} {last.uri}\")"
                log.warning("[pool %s] child %d exited %s after %.6f seconds from start%s",
                            self.settings.name, pid, _describe_status(status), lived, what)
            else:
                log.info("[pool %s] child %d exited %s after %.6f seconds from start",
                         self.settings.name, pid, _describe_status(status), lived)
            # ready: it got past its start (the master's tick may not have seen it yet, when
            # it served and died between two ticks: a crash in a script, not a start failure)
            if not child.ready and last.state == WorkerState.STARTING and not last.accepted:
                # died before it could serve: a start failure; back off, but keep trying
                self._backoff = min(5.0, max(0.1, self._backoff * 2))
                self._respawn_at = time.monotonic() + self._backoff
                log.error("[pool %s] child %d died before it was ready; next start in %.1f s",
                          self.settings.name, pid, self._backoff)

    def _free_slot(self) -> int | None:
        used = {c.slot for c in self.children.values()}
        for i in range(self.settings.max_children):
            if i not in used:
                return i
        return None

    def _spawn(self) -> bool:
        slot = self._free_slot()
        if slot is None:
            self.board.update_header(children_reached=1)
            return False
        sys.stdout.flush()
        sys.stderr.flush()
        # the slot is the new worker's from its first instruction: set it up before forking
        self.board.claim(slot, -1, self.generation)
        self._clear_stats(slot)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self.board.release(slot)
            log.error("[pool %s] cannot fork a worker: %s", self.settings.name, exc)
            self._respawn_at = time.monotonic() + 1.0
            return False
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self.children[pid] = _Child(pid, slot, time.monotonic(), self.generation, uid=self._uid)
            log.debug("[pool %s] child %d started", self.settings.name, pid)
            return True
        code = 0
        try:
            self._worker_main(slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: B036 - a worker must never return into the master's code
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        return False  # not reached

    def _clear_stats(self, slot: int) -> None:
        at = slot * telemetry.SLOT_SIZE
        self.stats[at : at + telemetry.SLOT_SIZE] = b"\0" * telemetry.SLOT_SIZE

    def _fold_stats(self, slot: int) -> None:
        """Keep an exiting worker's lock-wait histogram in the pool's totals."""
        count, total, peak, buckets = telemetry.read_slot(self.stats, slot)
        dead = self._stats_dead
        dead[0] += count  # type: ignore[operator]
        dead[1] += total  # type: ignore[operator]
        dead[2] = max(dead[2], peak)  # type: ignore[call-overload]
        dead[3] = [a + b for a, b in zip(dead[3], buckets)]  # type: ignore[call-overload]
        self._clear_stats(slot)

    def lock_wait_summary(self) -> telemetry.WaitSummary:
        """The lock waits of every request the pool has served since it started."""
        live = [telemetry.read_slot(self.stats, c.slot) for c in self.children.values()]
        dead = self._stats_dead
        return telemetry.summarize([*live, (dead[0], dead[1], dead[2], dead[3])])  # type: ignore[list-item]

    def _log_summary(self) -> None:
        log.info("[pool %s] %s", self.settings.name, telemetry.format_summary(self.lock_wait_summary()))

    def worker_pids(self) -> list[int]:
        """The pids of the live workers (in the master)."""
        return list(self.children)

    # -- stopping and reloading --------------------------------------------------------------------
    def _stop_children(self) -> None:
        pids = set(self.children) | self.old_children
        if self._stop == "graceful":
            for sock in self.listeners:
                try:  # stop accepting: blocked accept() calls fail, running requests finish
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for pid in pids:
                _kill(pid, signal.SIGQUIT)
            self._wait_children(time.monotonic() + self.settings.graceful_timeout)
        for pid in set(self.children) | self.old_children:
            _kill(pid, signal.SIGTERM)
        self._wait_children(time.monotonic() + self.settings.stop_timeout)
        for pid in set(self.children) | self.old_children:
            log.warning("[pool %s] child %d ignored SIGTERM; killing it", self.settings.name, pid)
            _kill(pid, signal.SIGKILL)
        self._wait_children(time.monotonic() + 5.0)

    def _wait_children(self, deadline: float) -> None:
        while (self.children or self.old_children) and time.monotonic() < deadline:
            self._reap()
            if any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals):
                return  # SIGTERM during a graceful stop: stop now
            if self.children or self.old_children:
                time.sleep(0.02)

    def _reload(self) -> None:
        """Check the new configuration and code; if they are sound, re-execute this master
        with the listening sockets; otherwise log why and carry on."""
        assert self.reexec is not None
        problem = self.check() if self.check is not None else None
        if problem:
            log.error("[pool %s] reload refused, the pool goes on as it was: %s", self.settings.name, problem)
            return
        fds = []
        for sock in self.listeners:
            sock.set_inheritable(True)
            fds.append(str(sock.fileno()))
        env = dict(os.environ)
        env[LISTEN_FDS_ENV] = ",".join(fds)
        env[OLD_WORKERS_ENV] = ",".join(str(p) for p in (set(self.children) | self.old_children))
        log.info("[pool %s] reloading: %s", self.settings.name, " ".join(self.reexec))
        for h in logging.getLogger().handlers:
            h.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
        os.execve(self.reexec[0], self.reexec, env)

    # -- a worker -------------------------------------------------------------------------------
    def _resolve_user(self) -> None:
        s = self.settings
        if os.geteuid() != 0 or not (s.user or s.group):
            return
        if s.user:
            pw = pwd.getpwnam(s.user)
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        if s.group:
            self._gid = grp.getgrnam(s.group).gr_gid

    def _drop_privileges(self) -> None:
        if self._uid is None and self._gid is None:
            return
        if self._gid is not None:
            os.setgid(self._gid)
        if self._uid is not None and self.settings.user:
            os.initgroups(self.settings.user, self._gid if self._gid is not None else os.getgid())
            os.setuid(self._uid)

    def _worker_main(self, slot_index: int) -> None:
        _set_pdeathsig(signal.SIGKILL)
        if os.getppid() != self.master_pid:
            return  # the master died while we were forking
        signal.set_wakeup_fd(-1)
        if self._wake is not None:
            os.close(self._wake[0])
            os.close(self._wake[1])
            self._wake = None
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR2, *_LOGGED_SIGNALS):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the master decides
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the worker's kind may take it (slow log)
        quit_now = [False]

        def on_quit(signum: int, frame: FrameType | None) -> None:
            quit_now[0] = True  # finish the connection in hand, accept no other

        signal.signal(signal.SIGQUIT, on_quit)
        # a signal wakes the accept loop through this pipe (nothing is raised mid-accept,
        # so a connection once accepted is always served)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)
        self._drop_privileges()
        self.children = {}
        self.old_children = set()
        import random

        random.seed()
        slot = WorkerSlot(self.board, slot_index)
        slot.own(os.getpid())
        ctx = WorkerContext(
            self.settings, slot_index, slot, self.board, self.stats, self.listeners, self.master_pid,
            self.generation, quit_now,
        )
        worker = self.worker_factory(ctx)
        worker.setup()
        set_title(f"phpsess: pool {self.settings.name}")
        slot.set_state(WorkerState.IDLE)
        max_requests = self.settings.max_requests
        served = 0
        poller = select.epoll()
        poller.register(wake_r, select.EPOLLIN)
        by_fd: dict[int, socket.socket] = {}
        # what an accepted connection is made of: the C socket type, no Python wrapper
        # (socket.socket's accept, __init__ and close are Python code, every request)
        kinds: dict[int, tuple[int, int, int]] = {}
        for sock in self.listeners:
            sock.setblocking(False)
            poller.register(sock.fileno(), select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0))
            by_fd[sock.fileno()] = sock
            kinds[sock.fileno()] = (int(sock.family), int(sock.type), sock.proto)
        # the listener that gave the last connection: a busy pool has the next one queued
        # already, taken without sleeping (no epoll_wait, no title change in between)
        hot = -1
        while not quit_now[0]:
            conn: _socket.socket | None = None
            if hot >= 0:
                try:
                    conn = _accept_from(by_fd[hot], kinds[hot])
                except _ListenerClosed:
                    quit_now[0] = True
                    break
                if conn is None:
                    hot = -1
            if conn is None:
                worker.idle()
                try:
                    events = poller.poll()
                except InterruptedError:
                    continue
                for fd, _ev in events:
                    if fd == wake_r:
                        try:
                            while os.read(wake_r, 256):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                        continue
                    if conn is not None or quit_now[0]:
                        continue
                    try:
                        conn = _accept_from(by_fd[fd], kinds[fd])
                    except _ListenerClosed:
                        quit_now[0] = True
                        continue
                    if conn is not None:
                        hot = fd
            if conn is None:
                continue
            slot.accepted()
            try:
                if conn.gettimeout() is not None:  # (accept4 gives a blocking socket: no ioctl)
                    conn.setblocking(True)
                worker.handle(conn)
            except OSError as exc:
                log.info("[pool %s] connection lost: %s", self.settings.name, exc)
            except Exception:
                log.exception("[pool %s] connection failed", self.settings.name)
            finally:
                conn.close()
            slot.set_state(WorkerState.IDLE)
            served += 1
            if max_requests and served >= max_requests:
                break
            if worker.wants_exit() or _over_memory(self.settings.max_memory):
                break
        slot.set_state(WorkerState.FINISHING)


class _ListenerClosed(Exception):
    """The master shut the listening socket down (the pool stops)."""


def _accept_from(listener: socket.socket, kind: tuple[int, int, int]) -> _socket.socket | None:
    """A connection waiting on the non-blocking ``listener``, as the C socket type (a
    blocking one: ``accept4`` with ``SOCK_CLOEXEC`` only); None when there is none (or
    another worker took it, or the client gave up)."""
    try:
        cfd, _addr = listener._accept()  # type: ignore[attr-defined]
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EBADF):
            raise _ListenerClosed() from exc
        if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.EPROTO):
            return None
        raise
    return _socket.socket(kind[0], kind[1], kind[2], cfd)


def _over_memory(limit: int) -> bool:
    """True when this process's peak memory (RSS) has gone past ``limit`` bytes (0: never)."""
    if not limit:
        return False
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if peak > limit:
        log.info("worker %d: peak memory %d MiB over the bound of %d MiB; recycling", os.getpid(),
                 peak >> 20, limit >> 20)
        return True
    return False


def _describe_listener(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, str):
        return name
    if isinstance(name, tuple) and len(name) >= 2:
        host = name[0]
        return f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}"
    return str(name)
