"""A script run under a CGI host (nginx + fcgiwrap, Apache mod_cgi, ...): one request per
process.  Reads ``os.environ`` and the body from stdin, writes the response to stdout,
hooks interpreter exit (``atexit``, ``sys.excepthook``) -- all only once the process has
become the CGI request.

A CGI script needs nothing but ``import phpsess`` to behave like a PHP script under
php-cgi: status and headers (Set-Cookie, cache limiter, ``header()`` lines) go out
before the first byte of body, and at exit (normal end, ``sys.exit()``, or an uncaught
exception, which becomes a 500 as PHP's fatal error does) the request shutdown runs:
shutdown functions, the session write and unlock, the headers if nothing was printed.

Importing has no effect by itself.  When the CGI script (the ``__main__`` module) does
``import phpsess`` under a CGI host (``GATEWAY_INTERFACE`` set), :func:`arm` prepares
the process to become the request at its first use of PHP's API, its first output, or
its exit, whichever comes first (:func:`activate`).  Other uses of phpsess under a CGI
host are left alone: a module that imports phpsess is not the script, and the
entry points of other runtimes (``phpsess.wsgi``, the servers, the ``phpsess``
command) call :func:`disarm` when they are imported, so a WSGI application served by
``wsgiref.handlers.CGIHandler`` writes its own response.  ``PHPSESS_CGI=0`` turns the
automatic part off; :func:`activate` can always be called explicitly.
"""

from __future__ import annotations

import atexit
import io
import os
import sys
from types import FrameType, TracebackType
from typing import BinaryIO, Callable, Mapping, NoReturn

from ..session import context
from ..session.context import request_context
from ..session.request import Request
from .diagnostics import install_warning_display, report_uncaught
from .output import OutputProxy, install_output_proxy
from .sapi import cgi_head, finalize_headers

__all__ = ["activate", "arm", "disarm", "arm_if_imported_by_script", "is_cgi", "active_request", "read_body"]

_active: Request | None = None
#: armed: the proxy arm() installed (None when stdout was left alone)
_armed = False
_armed_proxy: OutputProxy | None = None
#: the largest body read from stdin at once (bytes); a bigger CONTENT_LENGTH is read in pieces
_READ_CHUNK = 1 << 20


def is_cgi(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process was started by a CGI host (``GATEWAY_INTERFACE`` is set)."""
    env = os.environ if environ is None else environ
    return "GATEWAY_INTERFACE" in env


def active_request() -> Request | None:
    """The request :func:`activate` created in this process, if any."""
    return _active


def arm_if_imported_by_script() -> None:
    """``import phpsess``'s hook: when the module importing phpsess is the script
    (``__main__``), :func:`arm` it for its CGI request, or, outside a CGI host, let its
    ``print()`` output be the CLI request's (:func:`arm_cli`); otherwise do nothing."""
    cgi = is_cgi()
    if cgi and os.environ.get("PHPSESS_CGI", "1") == "0":
        return
    if not cgi and os.environ.get("PHPSESS_CLI", "1") == "0":
        return
    frame: FrameType | None = sys._getframe(1)
    # skip phpsess's own frames and the import machinery's: the first other is the importer
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or frame.f_globals.get("__name__", "").partition(".")[0] == "phpsess"
    ):
        frame = frame.f_back
    if frame is not None and frame.f_globals.get("__name__") == "__main__":
        if cgi:
            arm()
        else:
            arm_cli()


def arm_cli() -> None:
    """A script run from the command line: its output (``print()``) is the CLI request's
    output, as ``echo`` is in PHP's CLI, so that output before ``session_start()`` means
    that headers were sent (PHP warns and returns false).  Output printed before
    ``import phpsess`` cannot be seen.  Undone by :func:`disarm`."""
    global _armed_proxy
    if _armed or _active is not None or context.active_request() is not None:
        return
    if type(sys.stdout) is OutputProxy or sys.stdout is None:
        return
    _armed_proxy = install_output_proxy()
    _armed_proxy.activate = context.current_request


def arm() -> None:
    """Make this process the CGI request at its first use of PHP's API, first output
    (``print()``) or exit, whichever comes first.  A no-op when not under a CGI host,
    already armed or active, or inside a request another runtime made current."""
    global _armed, _armed_proxy
    if _armed or _active is not None or not is_cgi() or context.active_request() is not None:
        return
    _armed = True
    context.set_fallback(_activate_armed)
    if type(sys.stdout) is not OutputProxy:
        _armed_proxy = install_output_proxy()
        _armed_proxy.activate = _activate_armed
    atexit.register(_exit_armed)


def disarm() -> None:
    """Leave this process alone after all (another runtime serves it): undo :func:`arm`
    if it has not activated yet.  Called by the non-CGI entry points when imported."""
    global _armed, _armed_proxy
    if not _armed:
        cli = _armed_proxy
        if cli is not None:  # arm_cli()'s
            _armed_proxy = None
            cli.activate = None
            if sys.stdout is cli:
                sys.stdout = cli.original
        return
    _armed = False
    context.set_fallback(None)
    proxy = _armed_proxy
    _armed_proxy = None
    if proxy is not None:
        proxy.activate = None
        if sys.stdout is proxy:
            sys.stdout = proxy.original


def _activate_armed() -> Request:
    return activate()


def _exit_armed() -> None:
    """At exit, a CGI script that never used phpsess still answers (an empty page)."""
    if _armed and _active is None:
        activate()
        _at_exit_now()


def read_body(stdin: BinaryIO, content_length: str | None) -> bytes:
    """Read the request body: ``CONTENT_LENGTH`` bytes from the CGI host's stdin (fewer
    if stdin ends first), in pieces, so a huge ``CONTENT_LENGTH`` allocates nothing up front.

    A ``CONTENT_LENGTH`` that is not a non-negative decimal number reads nothing.
    """
    text = (content_length or "").strip()
    if not text.isdigit() or not text.isascii():
        return b""
    n = int(text) if len(text) <= 18 else 1 << 62  # (int() refuses 4,300 digits and more)
    chunks = []
    while n > 0:
        chunk = stdin.read(min(n, _READ_CHUNK))
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
    global _active, _armed, _armed_proxy
    if _active is not None:
        return _active
    _armed = False
    context.set_fallback(None)
    if _armed_proxy is not None:
        _armed_proxy.activate = None
        _armed_proxy = None
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
    script = env.get("SCRIPT_FILENAME") or getattr(sys.modules.get("__main__"), "__file__", None)
    if script:
        req.included_files.append(os.path.realpath(script))
    req.on_fatal = lambda exc: report_uncaught(req, exc)
    _active = req
    ctx = request_context(req)
    ctx.__enter__()
    sys.stdin = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", errors="surrogateescape")
    install_output_proxy()
    install_warning_display()
    _install_excepthook(req)
    _install_exit(req)
    _exit_hooks.append((ctx, out))
    atexit.register(_at_exit_now)
    return req


#: the request to shut down at exit (activate() registers it; run once)
_exit_hooks: list[tuple[request_context, BinaryIO]] = []


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
        # PHP's fatal error: with display_errors=0 a 500 unless headers went out or the
        # script chose another status (main/main.c: php_error_cb) [obs php-cgi]; the
        # "PHP Fatal error:  Uncaught ..." text displayed and/or logged
        if not isinstance(value, Exception):
            if not req.headers_sent and req.status == 200:
                req.status = 500
            previous(etype, value, tb)
            return
        report_uncaught(req, value)

    sys.excepthook = excepthook


def _install_exit(req: Request) -> None:
    """``sys.exit("Access denied")`` is PHP's ``die("Access denied")``: the text goes to the
    response (not stderr) and the exit status is 0; ``sys.exit(3)`` exits with status 3."""
    real_exit = sys.exit

    def php_exit(status: str | int | None = None) -> NoReturn:
        if isinstance(status, str):
            req.write(status.encode("utf-8", "surrogateescape"))
            real_exit(0)
        real_exit(status)

    sys.exit = php_exit


def _at_exit_now() -> None:
    while _exit_hooks:
        ctx, out = _exit_hooks.pop()
        _at_exit(ctx, out)


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
