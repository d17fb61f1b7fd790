"""Which request is current: a :class:`contextvars.ContextVar` that each runtime sets for
the request it serves, so a worker that serves many requests (or many threads) never leaks
one request's session into another.  Outside any runtime the current request is a
process-wide CLI request, created on first use and shut down at interpreter exit (as PHP's
CLI does); it writes to the process's stdout.
"""

from __future__ import annotations

import atexit
import contextvars
import sys
from typing import Callable, Final

from .request import Request

__all__ = ["current_request", "active_request", "request_context", "set_fallback"]

_current: Final[contextvars.ContextVar[Request]] = contextvars.ContextVar("phpsess_request")
_cli_request: Request | None = None
#: makes the request of a process that no runtime serves (default: PHP's CLI request)
_fallback: Callable[[], Request] | None = None


def active_request() -> Request | None:
    """The request a runtime made current in this context, or None (no CLI fallback)."""
    return _current.get(None)


def current_request() -> Request:
    """The request being served in this context.

    Outside any runtime adapter this is the process-wide request of :func:`set_fallback`
    (a CGI script's), else a CLI request (PHP CLI semantics), shut down at exit.
    """
    req = _current.get(None)
    if req is not None:
        return req
    global _cli_request
    if _cli_request is None or _cli_request.ended:  # (shutdown functions still see it)
        if _fallback is not None:
            _cli_request = _fallback()
        else:
            _cli_request = Request(environ={}, cli=True, write_body=_stdout_write)
            atexit.register(_cli_request.shutdown)
    return _cli_request


def set_fallback(factory: Callable[[], Request] | None) -> None:
    """Make ``factory()`` the request of code that runs outside any runtime (None: the CLI's).

    :mod:`phpsess.runtime.cgi` uses it so that a CGI script's first PHP call makes
    the process that CGI request.
    """
    global _fallback
    _fallback = factory


def _stdout_write(data: bytes) -> None:
    out = sys.__stdout__
    if out is not None:
        out.flush()
        out.buffer.write(data)
        out.buffer.flush()


class request_context:
    """``with request_context(req): ...`` makes ``req`` current, and shuts it down on exit.

    Shutdown runs on every exit path (normal end, exception, ``sys.exit``).
    """

    def __init__(self, request: Request, *, shutdown: bool = True) -> None:
        self.request = request
        self._token: contextvars.Token[Request] | None = None
        self._shutdown = shutdown

    def __enter__(self) -> Request:
        self._token = _current.set(self.request)
        return self.request

    def __exit__(self, *exc: object) -> None:
        try:
            if self._shutdown:
                self.request.shutdown()
        finally:
            if self._token is not None:
                _current.reset(self._token)
