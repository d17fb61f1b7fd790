"""One PHP-style request: superglobals, header list, output, shutdown. No socket I/O:
output goes to callables the runtime adapter (cgi, fastcgi, serve, wsgi) provides.

The current request is found through a :class:`contextvars.ContextVar`, so a
worker that serves many requests (or many threads) never leaks one request's
session into another.  In a plain Python process with no adapter, a single
CLI request is created on first use and shut down at interpreter exit, as PHP's
CLI does.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import logging
import os
import sys
import time
import traceback
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Mapping
from types import FrameType

from ..core import superglobals
from ..core.config import SessionConfig

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "Request",
    "current_request",
    "request_context",
    "default_config",
    "set_default_config",
    "OutputProxy",
    "install_output_proxy",
    "HeadersSink",
]

log = logging.getLogger(__name__)

#: receives (status, headers) once, when the first body byte (or the end) comes
HeadersSink = Callable[[int, list[tuple[str, str]]], None]

_PKG_DIR = os.path.dirname(__file__)
_current: contextvars.ContextVar["Request"] = contextvars.ContextVar("phpsess_request")
_default_config: SessionConfig | None = None
_cli_request: "Request | None" = None


def default_config() -> SessionConfig:
    """The process-wide settings every new request copies (php.ini level).

    Read once from ``$PHPSESS_INI`` when set, else PHP's defaults.
    """
    global _default_config
    if _default_config is None:
        path = os.environ.get("PHPSESS_INI")
        if path:
            from ..core.config import from_ini_file

            _default_config = from_ini_file(path)
        else:
            _default_config = SessionConfig()
    return _default_config


def set_default_config(cfg: SessionConfig) -> None:
    """Replace the process-wide settings (``--ini FILE`` of the runtimes)."""
    global _default_config
    _default_config = cfg


_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase PHP sends for ``status`` (``"OK"`` for 200)."""
    return _REASONS.get(status, "")


_Session: Any = None  # phpsess.session.session.Session, once a request used a session


class Request:
    """One request's PHP state: superglobals, header list, output state, session.

    :param environ: the CGI environment (``QUERY_STRING``, ``HTTP_COOKIE``, ...).
    :param config: this request's settings (copied; ``ini_set`` changes only the copy).
    :param body: the request body (for ``$_POST``).
    :param send_headers: called once with (status, headers) before the first body byte.
    :param write_body: receives body bytes.
    :param cli: PHP CLI semantics (no cookies are sent anywhere).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        config: SessionConfig | None = None,
        body: bytes = b"",
        send_headers: HeadersSink | None = None,
        write_body: Callable[[bytes], None] | None = None,
        cli: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.environ: dict[str, str] = dict(environ or {})
        self.config = (config or default_config()).copy()
        self.cli = cli
        self.clock = clock
        self.start_time = time.monotonic()
        self.SERVER: dict[str, Any] = dict(self.environ)
        self.GET: dict[Any, Any] = superglobals.parse_query(self.environ.get("QUERY_STRING", ""))
        self.COOKIE: dict[Any, Any] = superglobals.parse_cookies(self.environ.get("HTTP_COOKIE", ""))
        # PHP reads form bodies for POST requests only
        self.POST: dict[Any, Any] = (
            superglobals.parse_post(self.environ.get("CONTENT_TYPE", ""), body)
            if body and self.environ.get("REQUEST_METHOD", "").upper() == "POST"
            else {}
        )
        self.body = body
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self._sent_at: tuple[str, int] | None = None  # where the output started
        self._send_headers = send_headers
        self._write_body = write_body
        self.shutdown_functions: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._session: Session | None = None
        self.finished = False
        self.lock_wait: float = 0.0  # seconds this request waited for its session lock

    # -- script location ---------------------------------------------------------------
    @property
    def script_filename(self) -> str | None:
        """The running script's path (``SCRIPT_FILENAME``/``PATH_TRANSLATED``), if known."""
        return self.environ.get("SCRIPT_FILENAME") or self.environ.get("PATH_TRANSLATED") or None

    # -- the session -------------------------------------------------------------------
    @property
    def session(self) -> "Session":
        """This request's :class:`~phpsess.session.session.Session`, created on first use."""
        if self._session is None:
            global _Session
            if _Session is None:  # (session imports this module: bound on first use)
                from .session import Session as _Session
            self._session = _Session(self)
        return self._session

    @property
    def has_session(self) -> bool:
        """True once anything touched :attr:`session`."""
        return self._session is not None

    # -- headers -----------------------------------------------------------------------
    def header(self, line: str, replace: bool = True, response_code: int = 0) -> None:
        """PHP's ``header()``: add (or replace) a header line, or set the status line.

        Headers sent already: PHP's warning (raised here as :class:`RuntimeError`
        for php.py to translate).
        """
        if self.headers_sent:
            raise RuntimeError(
                f"Cannot modify header information - headers already sent{self.headers_sent_at}"
            )
        if "\n" in line or "\r" in line:
            raise ValueError("Header may not contain more than a single header, new line detected")
        if line[:5].upper() == "HTTP/":
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1].isdigit():
                self.status = int(parts[1])
            return
        name, sep, value = line.partition(":")
        if not sep:
            # PHP ignores header lines without a colon
            return
        name = name.strip()
        value = value.strip()
        if name.lower() == "content-type" and value[:5].lower() == "text/" and "charset" not in value.lower():
            # SAPI: text/* types get default_charset appended, the header rebuilt
            name, value = "Content-type", value + ";charset=UTF-8"
        if replace:
            self.remove_header(name)
        self.headers.append((name, value))
        if response_code:
            self.status = response_code
        elif name.lower() == "location" and self.status not in (201,) and not 300 <= self.status < 400:
            self.status = 302

    def add_header(self, name: str, value: str, replace: bool = False) -> None:
        """Append ``name: value``; with ``replace`` remove earlier headers of that name first."""
        if replace:
            self.remove_header(name)
        self.headers.append((name, value))

    def remove_header(self, name: str, value_prefix: str | None = None) -> None:
        """Drop headers named ``name`` (case-insensitive), optionally only those whose value
        starts with ``value_prefix``."""
        headers = self.headers
        low = name.lower()
        for n, v in headers:  # usually nothing matches: then no new list
            if n.lower() == low and (value_prefix is None or v.startswith(value_prefix)):
                break
        else:
            return
        self.headers = [
            (n, v)
            for (n, v) in headers
            if not (n.lower() == low and (value_prefix is None or v.startswith(value_prefix)))
        ]

    @property
    def headers_sent_at(self) -> str:
        """`` (output started at FILE:LINE)`` once headers went out from a script, else ``""``
        (the tail of PHP's "headers already sent" warnings)."""
        at = self._sent_at
        return f" (output started at {at[0]}:{at[1]})" if at is not None else ""

    def headers_list(self) -> list[str]:
        """PHP's ``headers_list()``: ``"Name: value"`` strings, in order."""
        return [f"{n}: {v}" for n, v in self.headers]

    def send_headers(self) -> None:
        """Send status and headers now (once); after this ``headers_sent()`` is true."""
        if self.headers_sent:
            return
        self.headers_sent = True
        # the innermost Python frame outside phpsess is where the output started
        # (compiled modules have no frames: _getframe(0) may already be the caller's)
        try:
            frame: FrameType | None = sys._getframe(0)
        except ValueError:  # compiled, called straight from C (atexit): no Python frame
            frame = None
        while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
            frame = frame.f_back
        if frame is not None:
            self._sent_at = (frame.f_code.co_filename, frame.f_lineno)  # text built when asked
        if self._send_headers is not None:
            self._send_headers(self.status, list(self.headers))

    # -- body --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Write body bytes; the first non-empty write sends the headers first."""
        if not data:
            return
        if not self.headers_sent:
            self.send_headers()
        if self._write_body is not None:
            self._write_body(data)

    # -- shutdown ----------------------------------------------------------------------
    def register_shutdown_function(self, fn: Callable[..., Any], *args: Any) -> None:
        """PHP's ``register_shutdown_function()``."""
        self.shutdown_functions.append((fn, args))

    def shutdown(self) -> None:
        """PHP's request shutdown: shutdown functions, then the session write/close,
        then the headers (if no body was ever written).  Runs once; never raises for
        a session failure (it is logged)."""
        if self.finished:
            return
        self.finished = True
        try:
            i = 0
            while i < len(self.shutdown_functions):  # functions may register more
                fn, args = self.shutdown_functions[i]
                fn(*args)
                i += 1
        except Exception:
            # PHP: a fatal error in a shutdown function ends the others, gives a 500
            # while headers are unsent, and the session is still written
            if not self.headers_sent:
                self.status = 500
            traceback.print_exc()
        finally:
            try:
                if self._session is not None:
                    self._session.request_shutdown()
            finally:
                if not self.headers_sent:
                    self.send_headers()

    def end_response(self) -> None:
        """The request is over and its response handed over: forget the two sinks (body
        bytes written after this are dropped) and cut the session's link back here
        (the session's functions that need the request raise from now on).

        Runtimes call it after :meth:`shutdown`, so the request, its session and the
        runtime's objects its sinks belong to die by reference count instead of
        waiting for the cycle collector.
        """
        self._send_headers = None
        self._write_body = None
        if self._session is not None:
            self._session.detach()


def current_request() -> Request:
    """The request being served in this context.

    Outside any runtime adapter this is a process-wide CLI request (PHP CLI
    semantics), shut down at interpreter exit.
    """
    req = _current.get(None)
    if req is not None:
        return req
    global _cli_request
    if _cli_request is None or _cli_request.finished:
        _cli_request = Request(environ={}, cli=True, write_body=_stdout_write)
        atexit.register(_cli_request.shutdown)
    return _cli_request


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


class OutputProxy(io.TextIOBase):
    """A ``sys.stdout`` replacement that sends ``print()`` output to the current request.

    Outside a request context it writes to the original stream.  Text is
    encoded as UTF-8; ``.buffer`` accepts bytes.
    """

    def __init__(self, fallback: IO[str]) -> None:
        super().__init__()
        self._fallback = fallback
        self.buffer = _BinaryOutput(self)

    def _target(self) -> Request | None:
        return _current.get(None)

    def write(self, s: str) -> int:
        req = self._target()
        if req is None:
            return self._fallback.write(s)
        req.write(s.encode("utf-8", "surrogateescape"))
        return len(s)

    def write_bytes(self, b: bytes) -> int:
        req = self._target()
        if req is None:
            self._fallback.flush()
            fb = getattr(self._fallback, "buffer", None)
            if fb is not None:
                return int(fb.write(b))
            return self._fallback.write(b.decode("utf-8", "replace"))
        req.write(bytes(b))
        return len(b)

    def flush(self) -> None:
        if self._target() is None:
            self._fallback.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()


class _BinaryOutput(io.RawIOBase):
    def __init__(self, proxy: OutputProxy) -> None:
        super().__init__()
        self._proxy = proxy

    def write(self, b: Any) -> int:
        return self._proxy.write_bytes(bytes(b))

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._proxy.flush()


def install_output_proxy() -> OutputProxy:
    """Replace ``sys.stdout`` with an :class:`OutputProxy` (idempotent); return it."""
    if isinstance(sys.stdout, OutputProxy):
        return sys.stdout
    proxy = OutputProxy(sys.stdout)
    sys.stdout = proxy
    return proxy


def iter_headers(headers: list[tuple[str, str]]) -> Iterator[str]:
    """``"Name: value"`` lines."""
    for n, v in headers:
        yield f"{n}: {v}"
