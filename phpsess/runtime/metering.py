"""What a pool worker does around each script, compiled with the request path: the
scoreboard's steps, the process title, PHP's request limits (``max_execution_time``,
``post_max_size``), the lock-wait telemetry, and the request's wall time, CPU and memory.

:class:`~phpsess.runtime.script_worker.ScriptWorker` (FastCGI and HTTP workers alike)
hands each request to a :class:`ScriptMeter`; kept apart from it because a worker class
derives from the supervisor's plain-Python ``Worker`` and is not compiled, and these
steps run on every request.  Process state only (title, rusage, timers through
:func:`~phpsess.runtime.sapi.handle_request`).
"""

from __future__ import annotations

import logging
import mmap
import resource
import time
from typing import Callable, Final, Mapping

from ..core import telemetry
from ..session.request import HeadersSink, Request
from .sapi import handle_request
from .scoreboard import WorkerSlot

__all__ = ["RequestTimes", "ScriptMeter", "set_title"]

log: Final = logging.getLogger("phpsess.pool")

# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_getrusage: Final = resource.getrusage
_RUSAGE_SELF: Final = resource.RUSAGE_SELF
_now: Final = time.time


def _find_setproctitle() -> Callable[[str], None] | None:
    try:
        from setproctitle import setproctitle
    except ImportError:  # pragma: no cover - setproctitle is a dependency
        return None
    return setproctitle


_setproctitle = _find_setproctitle()
#: the title last set ([0]): setting it again is skipped (setproctitle costs a system
#: call each time, even for the kernel's 15-character name, which a pool never changes)
_title: list[str] = [""]


def set_title(title: str) -> None:
    """The process's title as ``ps`` and ``phpsess locks`` show it (setproctitle when
    installed; else only the short kernel name); nothing done when it is already so."""
    if title == _title[0]:
        return
    _title[0] = title
    if _setproctitle is not None:
        _setproctitle(title)
        return
    try:  # pragma: no cover - setproctitle is a dependency
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, title.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # pragma: no cover
        pass


class RequestTimes:
    """A request's wall time, CPU and memory, measured around it."""

    def __init__(self, started: float, ru0: resource.struct_rusage, duration: float = 0.0,
                 cpu_user: float = 0.0, cpu_system: float = 0.0, memory: int = 0) -> None:
        self.started = started
        self.ru0 = ru0
        self.duration = duration
        self.cpu_user = cpu_user
        self.cpu_system = cpu_system
        self.memory = memory

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time, in percent (php-fpm's ``%C``)."""
        return 100.0 * (self.cpu_user + self.cpu_system) / self.duration if self.duration > 0 else 0.0

    def __repr__(self) -> str:
        return (f"RequestTimes(started={self.started!r}, duration={self.duration!r}, cpu_user={self.cpu_user!r}, "
                f"cpu_system={self.cpu_system!r}, memory={self.memory!r})")


class ScriptMeter:
    """One worker's request steps around :func:`~phpsess.runtime.sapi.handle_request`.

    :param slot: the worker's scoreboard slot.
    :param stats: the pool's lock-wait histograms; ``slot_index`` is this worker's.
    :param pool: the pool's name (titles, warnings).
    :param max_execution_time: PHP's ``max_execution_time``: CPU seconds per script (0: none).
    :param post_max_size: PHP's ``post_max_size``: a longer body reaches the script empty,
        with PHP's warning (0: no bound).
    """

    def __init__(self, slot: WorkerSlot, stats: mmap.mmap, slot_index: int, pool: str, root: str,
                 max_execution_time: float, post_max_size: int) -> None:
        self.slot = slot
        self.stats = stats
        self.slot_index = slot_index
        self.pool = pool
        self.root = root
        self.max_execution_time = max_execution_time
        self.post_max_size = post_max_size
        self.idle_title = f"phpsess: pool {pool}"
        #: the script the title names (None: the idle title)
        self.title_script: str | None = None
        self.last_usage: resource.struct_rusage | None = None
        #: the lock-wait histogram as 64-bit words (telemetry.record_words: a few times
        #: cheaper than unpacking and packing it); None on a big-endian machine
        self.stats_words = telemetry.slot_words(stats)

    def begin(self) -> RequestTimes:
        """Start measuring a request (its CPU counted from the end of the previous one: one
        ``getrusage`` per request, and the little CPU of waiting in ``accept`` goes with it)."""
        ru0 = self.last_usage
        if ru0 is None:
            ru0 = _getrusage(_RUSAGE_SELF)
        return RequestTimes(_now(), ru0)

    def end(self, times: RequestTimes) -> RequestTimes:
        """Stop measuring: the scoreboard gets the request's duration, CPU and memory."""
        ru1 = _getrusage(_RUSAGE_SELF)
        self.last_usage = ru1
        times.duration = _now() - times.started
        times.cpu_user = ru1.ru_utime - times.ru0.ru_utime
        times.cpu_system = ru1.ru_stime - times.ru0.ru_stime
        times.memory = ru1.ru_maxrss * 1024
        self.slot.request_done(times.cpu_percent, times.memory)
        return times

    def run_script(self, environ: Mapping[str, str], body: bytes, body_length: int,
                   send_headers: HeadersSink, write: Callable[[bytes], None]) -> Request | None:
        """Run the script ``environ`` names, as :func:`~phpsess.runtime.sapi.handle_request`
        does, within PHP's limits; the scoreboard and the title follow it.

        :param body_length: the body's length as sent (``body`` is empty when it was over
            ``post_max_size``).
        """
        script = environ.get("SCRIPT_FILENAME", "")
        slot = self.slot
        slot.request_started(environ.get("REQUEST_METHOD", ""), environ.get("REQUEST_URI", "") or
                             environ.get("SCRIPT_NAME", ""), script, body_length, environ.get("REMOTE_USER", ""))
        if script != self.title_script:  # (a busy worker running one script keeps its title)
            self.title_script = script
            set_title(f"{self.idle_title} {script}")
        if self.post_max_size and body_length > self.post_max_size:
            log.warning("[pool %s] PHP Warning:  PHP Request Startup: POST Content-Length of %d bytes exceeds the "
                        "limit of %d bytes in Unknown on line 0", self.pool, body_length, self.post_max_size)
            body = b""
        done = handle_request(environ, body, self.root, send_headers, write,
                              time_limit=self.max_execution_time, lock_monitor=slot.session_lock)
        if done is not None:
            words = self.stats_words
            if words is not None:
                telemetry.record_words(words, self.slot_index, done.lock_wait)
            else:
                telemetry.record(self.stats, self.slot_index, done.lock_wait)
        return done

    def idle(self) -> None:
        """The worker waits for a connection: its title is the pool's again.  The pool
        calls this before it sleeps, not after each script: a busy worker that goes
        straight on to its next request (or waits on a kept-alive connection) keeps the
        title of the script it ran, and changes it only for another script."""
        if self.title_script is not None:
            self.title_script = None
            set_title(self.idle_title)
