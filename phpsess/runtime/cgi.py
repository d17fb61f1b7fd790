"""A script run under a CGI host (nginx + fcgiwrap, Apache mod_cgi, ...): one request per
process.  Reads ``os.environ`` and the body from stdin, writes the response to stdout,
hooks interpreter exit (``atexit``, ``sys.excepthook``).

``import phpsess`` calls :func:`activate_if_cgi`, so a script needs nothing
else to behave like a PHP script under php-cgi: status and headers (Set-Cookie,
cache limiter, ``header()`` lines) go out before the first byte of body, and at
exit (normal end, ``sys.exit()``, or an uncaught exception, which becomes a 500
as PHP's fatal error does) the request shutdown runs: shutdown functions, the
session write and unlock, the headers if nothing was printed.
"""

from __future__ import annotations

import atexit
import io
import os
import sys
from types import TracebackType
from typing import BinaryIO, Callable, Mapping

from ..session import context
from ..session.context import request_context
from ..session.request import Request
from .output import install_output_proxy
from .sapi import cgi_head, finalize_headers

__all__ = ["activate", "activate_if_cgi", "is_cgi", "active_request", "read_body"]

_active: Request | None = None


def is_cgi(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process was started by a CGI host (``GATEWAY_INTERFACE`` is set)."""
    env = os.environ if environ is None else environ
    return "GATEWAY_INTERFACE" in env


def active_request() -> Request | None:
    """The request :func:`activate` created in this process, if any."""
    return _active


def _in_request_context() -> bool:
    return context.active_request() is not None


def activate_if_cgi() -> Request | None:
    """:func:`activate` when running under a CGI host, else do nothing.

    A no-op (returns None) outside CGI, when already activated, or inside a
    request context that a runtime set up (the ``phpsess fpm`` pool, ``serve``).
    """
    if _active is not None or not is_cgi() or _in_request_context():
        return None
    return activate()


def read_body(stdin: BinaryIO, content_length: str | None) -> bytes:
    """Read the request body: ``CONTENT_LENGTH`` bytes from the CGI host's stdin."""
    try:
        n = int(content_length or 0)
    except ValueError:
        n = 0
    if n <= 0:
        return b""
    chunks = []
    while n > 0:
        chunk = stdin.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def activate(
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> Request:
    """Make this process one CGI request (as php-cgi is).

    Creates the :class:`~phpsess.session.request.Request` from ``environ`` (default
    ``os.environ``) and the body (``CONTENT_LENGTH`` bytes of ``stdin``, default
    the real stdin; ``sys.stdin`` is then replaced by a copy of the body so the
    script can still read it), makes it current, sends ``print()`` output to it,
    and writes the CGI response (``Status: 200 OK``, headers, blank line, body)
    to ``stdout`` (default the real stdout).  At exit the request shutdown runs;
    an uncaught exception first sets status 500 (if headers are not sent and
    the status is 200) and prints its traceback on stderr.
    """
    global _active
    if _active is not None:
        return _active
    env = dict(os.environ if environ is None else environ)
    if stdin is None:
        stdin = sys.stdin.buffer if sys.stdin is not None else io.BytesIO()
    body = read_body(stdin, env.get("CONTENT_LENGTH"))
    if stdout is None:
        real = sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
        stdout = real.buffer
    out = stdout

    def send_headers(status: int, headers: list[tuple[str, str]]) -> None:
        _write(out, cgi_head(*finalize_headers(status, headers)))

    def write_body(data: bytes) -> None:
        _write(out, data)

    req = Request(environ=env, body=body, send_headers=send_headers, write_body=write_body)
    _active = req
    ctx = request_context(req)
    ctx.__enter__()
    sys.stdin = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", errors="surrogateescape")
    install_output_proxy()
    _install_excepthook(req)
    atexit.register(_at_exit, ctx, out)
    return req


def _write(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
        out.flush()
    except (BrokenPipeError, ConnectionResetError, ValueError):
        pass  # the CGI host is gone; the script still runs to its end (session written)


def _install_excepthook(req: Request) -> None:
    previous: Callable[..., object] = sys.excepthook

    def excepthook(
        etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        # PHP's fatal error with display_errors=0: 500 unless headers went out or the
        # script chose another status (main/main.c: php_error_cb) [obs php-cgi]
        if not req.headers_sent and req.status == 200:
            req.status = 500
        previous(etype, value, tb)

    sys.excepthook = excepthook


def _at_exit(ctx: request_context, out: BinaryIO) -> None:
    """PHP's request shutdown at interpreter exit; never raises (errors go to stderr)."""
    try:
        ctx.__exit__(None, None, None)
    except SystemExit:
        pass  # exit() in a shutdown function
    except Exception as exc:
        import traceback

        req = ctx.request
        if not req.headers_sent and req.status == 200:
            req.status = 500
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        if not req.headers_sent:
            req.send_headers()
    try:
        out.flush()
    except (OSError, ValueError):
        pass
