"""What every pool worker does around a script, whatever protocol brought the request
(FastCGI for ``phpsess fpm``, HTTP for ``phpsess serve``): the scoreboard's bookkeeping,
the process title, PHP's request limits and the lock-wait telemetry (the per-request
steps in :mod:`phpsess.runtime.metering`, compiled with the request path).  Process state
only (titles, rusage); the script itself runs in :func:`phpsess.runtime.sapi.handle_request`.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Mapping

from ..session.request import HeadersSink, Request
from ..storage import registry
from .metering import RequestTimes, ScriptMeter
from .output import install_output_proxy
from .prefork import Worker, WorkerContext

__all__ = ["ScriptWorker", "RequestTimes", "preload", "DEFAULT_MAX_EXECUTION_TIME", "DEFAULT_POST_MAX_SIZE"]

log = logging.getLogger("phpsess.pool")

#: PHP's defaults for the limits phpsess applies (php.ini's max_execution_time, post_max_size)
DEFAULT_MAX_EXECUTION_TIME = 30.0
DEFAULT_POST_MAX_SIZE = 8 << 20


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
        #: the steps around each script (compiled with the request path)
        self.meter = ScriptMeter(ctx.slot, ctx.stats, ctx.slot_index, ctx.settings.name, self.root,
                                 max_execution_time, post_max_size)

    def setup(self) -> None:
        """Output through the request's proxy; the lock registry opened now, so the worker's
        descriptors stay the same from its first request on (no sweep of ended processes'
        registries: the master deletes its workers' as it reaps them)."""
        install_output_proxy()
        registry.prepare(sweep=False)

    def idle(self) -> None:
        """The pool is about to wait for a connection: the idle title again."""
        self.meter.idle()

    def begin(self) -> RequestTimes:
        """Start measuring a request (:meth:`ScriptMeter.begin`)."""
        return self.meter.begin()

    def end(self, times: RequestTimes) -> RequestTimes:
        """Stop measuring: the scoreboard gets the request's duration, CPU and memory."""
        return self.meter.end(times)

    def run_script(self, environ: Mapping[str, str], body: bytes, body_length: int,
                   send_headers: HeadersSink, write: Callable[[bytes], None]) -> Request | None:
        """Run the script ``environ`` names within PHP's limits (:meth:`ScriptMeter.run_script`)."""
        return self.meter.run_script(environ, body, body_length, send_headers, write)


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
