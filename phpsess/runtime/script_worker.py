"""What every pool worker does around a script, whatever protocol brought the request
(FastCGI for ``phpsess fpm``, HTTP for ``phpsess serve``): the scoreboard's bookkeeping,
the process title, PHP's request limits and the lock-wait telemetry.  Process state only
(titles, rusage); the script itself runs in :func:`phpsess.runtime.sapi.handle_request`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import time
from typing import Callable, Mapping

from ..core import telemetry
from ..session.request import HeadersSink, Request
from ..storage import registry
from .output import install_output_proxy
from .prefork import Worker, WorkerContext, set_title
from .sapi import handle_request

__all__ = ["ScriptWorker", "RequestTimes", "preload", "DEFAULT_MAX_EXECUTION_TIME", "DEFAULT_POST_MAX_SIZE"]

log = logging.getLogger("phpsess.pool")

#: PHP's defaults for the limits phpsess applies (php.ini's max_execution_time, post_max_size)
DEFAULT_MAX_EXECUTION_TIME = 30.0
DEFAULT_POST_MAX_SIZE = 8 << 20


@dataclasses.dataclass
class RequestTimes:
    """A request's wall time, CPU and memory, measured around it."""

    started: float
    ru0: resource.struct_rusage
    duration: float = 0.0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    memory: int = 0

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time, in percent (php-fpm's ``%C``)."""
        return 100.0 * (self.cpu_user + self.cpu_system) / self.duration if self.duration > 0 else 0.0


class ScriptWorker(Worker):
    """A pool worker that runs scripts under ``root``.

    :param max_execution_time: PHP's ``max_execution_time``: CPU seconds per script (0: none).
    :param post_max_size: PHP's ``post_max_size``: a longer body reaches the script empty,
        with PHP's warning (0: no bound).
    """

    def __init__(self, ctx: WorkerContext, root: str, *, max_execution_time: float = DEFAULT_MAX_EXECUTION_TIME,
                 post_max_size: int = DEFAULT_POST_MAX_SIZE) -> None:
        super().__init__(ctx)
        self.root = os.path.realpath(root)
        self.max_execution_time = max_execution_time
        self.post_max_size = post_max_size
        self.idle_title = f"phpsess: pool {ctx.settings.name}"
        self._last_usage: resource.struct_rusage | None = None
        #: the lock-wait histogram as 64-bit words (telemetry.record_words: a few times
        #: cheaper than unpacking and packing it); None on a big-endian machine
        self._stats_words = telemetry.slot_words(ctx.stats)

    def setup(self) -> None:
        """Output through the request's proxy; the lock registry opened now, so the worker's
        descriptors stay the same from its first request on (no sweep of ended processes'
        registries: the master deletes its workers' as it reaps them)."""
        install_output_proxy()
        registry.prepare(sweep=False)

    def begin(self) -> RequestTimes:
        """Start measuring a request (its CPU counted from the end of the previous one: one
        ``getrusage`` per request, and the little CPU of waiting in ``accept`` goes with it)."""
        ru0 = self._last_usage
        if ru0 is None:
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
        return RequestTimes(time.time(), ru0)

    def end(self, times: RequestTimes) -> RequestTimes:
        """Stop measuring: the scoreboard gets the request's duration, CPU and memory."""
        ru1 = self._last_usage = resource.getrusage(resource.RUSAGE_SELF)
        times.duration = time.time() - times.started
        times.cpu_user = ru1.ru_utime - times.ru0.ru_utime
        times.cpu_system = ru1.ru_stime - times.ru0.ru_stime
        times.memory = ru1.ru_maxrss * 1024
        self.ctx.slot.request_done(times.cpu_percent, times.memory)
        return times

    def run_script(self, environ: Mapping[str, str], body: bytes, body_length: int,
                   send_headers: HeadersSink, write: Callable[[bytes], None]) -> Request | None:
        """Run the script ``environ`` names, as :func:`~phpsess.runtime.sapi.handle_request`
        does, within PHP's limits; the scoreboard and the title follow it.

        :param body_length: the body's length as sent (``body`` is empty when it was over
            ``post_max_size``).
        """
        script = environ.get("SCRIPT_FILENAME", "")
        slot = self.ctx.slot
        slot.request_started(environ.get("REQUEST_METHOD", ""), environ.get("REQUEST_URI", "") or
                             environ.get("SCRIPT_NAME", ""), script, body_length, environ.get("REMOTE_USER", ""))
        set_title(f"{self.idle_title} {script}")
        if self.post_max_size and body_length > self.post_max_size:
            log.warning("[pool %s] PHP Warning:  PHP Request Startup: POST Content-Length of %d bytes exceeds the "
                        "limit of %d bytes in Unknown on line 0", self.ctx.settings.name, body_length,
                        self.post_max_size)
            body = b""
        try:
            done = handle_request(environ, body, self.root, send_headers, write,
                                  time_limit=self.max_execution_time, lock_monitor=slot.session_lock)
            if done is not None:
                words = self._stats_words
                if words is not None:
                    telemetry.record_words(words, self.ctx.slot_index, done.lock_wait)
                else:
                    telemetry.record(self.ctx.stats, self.ctx.slot_index, done.lock_wait)
            return done
        finally:
            set_title(self.idle_title)


def preload() -> None:
    """Import, once in the master, what every worker needs: the PHP surface, the codec and
    the configured save handler (shared copy-on-write after the fork)."""
    import importlib

    from ..session.settings import default_config
    from ..storage.base import handler_class

    for name in ("phpsess.php", "phpsess.core.codec", "phpsess.core.formats", "phpsess.core.lazydata"):
        importlib.import_module(name)
    try:
        handler_class(default_config().save_handler)
    except (KeyError, ImportError) as exc:
        log.debug("save handler not preloaded: %s", exc)
