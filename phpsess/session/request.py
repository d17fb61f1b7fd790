"""One PHP-style request: superglobals, header list, output buffers, shutdown. No socket
I/O: output goes to callables the runtime adapter (cgi, fastcgi, serve, wsgi) provides;
the file system is used for the script's modification time and for the temporary files
of uploads ($_FILES: written when first used, removed at the end of the request).

Which request is current is :mod:`phpsess.session.context`'s business.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from types import FrameType
from typing import Any, Callable, Final, Mapping

from ..core import superglobals
from ..core.config import SessionConfig
from ..core.engine import EngineConfig
from .obuffer import OutputBuffers
from .session import Session
from .settings import default_config, default_engine

__all__ = ["Request", "HeadersSink", "LockMonitor", "HeaderRefused"]

log: Final = logging.getLogger(__name__)

#: receives (status, headers) once, when the first body byte (or the end) comes
HeadersSink = Callable[[int, list[tuple[str, str]]], None]
#: told (session id, where its lock is, waiting?, seconds waited) when a request waits
#: for a session lock and when it holds it (the pool's status page, slow log)
LockMonitor = Callable[[str, str, bool, float], None]

#: the package's directory: frames under it are phpsess's own, not the script's
_PKG_DIR: Final = os.path.dirname(os.path.dirname(__file__))



def _output_started_at() -> tuple[str, int] | None:
    """Where the script's output started: the innermost Python frame outside phpsess
    (compiled modules have no frames: ``_getframe(0)`` may already be the caller's).
    Each frame looked at costs a frame object, so a request whose output leaves at its
    end (the output buffers flushed at shutdown) does not look."""
    try:
        frame: FrameType | None = sys._getframe(0)
    except ValueError:  # compiled, called straight from C (atexit): no Python frame
        return None
    while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return frame.f_code.co_filename, frame.f_lineno  # text built when asked


class HeaderRefused(ValueError):
    """``header()`` refused a line (NUL byte, or a CR/LF inside it): PHP's warning text."""

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
        engine: EngineConfig | None = None,
    ) -> None:
        self.environ: dict[str, str] = dict(environ or {})
        self.config = (config or default_config()).copy()
        #: PHP's settings outside session.* (output_buffering, display_errors, ...)
        self.engine = (engine or default_engine()).copy()
        self.cli = cli
        self.clock = clock
        self.start_time = time.monotonic()
        self.SERVER: dict[str, Any] = dict(self.environ)
        if not cli:
            # php_register_server_variables: PHP_SELF, REQUEST_TIME_FLOAT, REQUEST_TIME last
            server = self.SERVER
            server["PHP_SELF"] = superglobals.php_self(self.environ)
            now = clock()
            server["REQUEST_TIME_FLOAT"] = now
            server["REQUEST_TIME"] = int(now)
        self.GET: dict[Any, Any] = superglobals.parse_query(self.environ.get("QUERY_STRING", ""))
        self.COOKIE: dict[Any, Any] = superglobals.parse_cookies(self.environ.get("HTTP_COOKIE", ""))
        # PHP reads form bodies for POST requests only
        self.POST: dict[Any, Any] = (
            superglobals.parse_post(self.environ.get("CONTENT_TYPE", ""), body)
            if body and self.environ.get("REQUEST_METHOD", "").upper() == "POST"
            else {}
        )
        self.body = body
        self._request_vars: dict[Any, Any] | None = None
        self._files: dict[Any, Any] | None = None
        #: temporary files of this request's uploads still where PHP put them
        self.uploaded_files: set[str] = set()
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self._sent_at: tuple[str, int] | None = None  # where the output started
        #: the output buffers are being flushed at the request's end: no script code is
        #: running, so there is no place where the output started to look for
        self._flushing_at_end = False
        self._send_headers = send_headers
        self._write_body = write_body
        self.shutdown_functions: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        #: PHP's output buffers; output_buffering (php.ini) starts one, except in CLI as PHP's CLI
        self.output = OutputBuffers(self._emit)
        if not cli:
            size = self.engine.value("output_buffering")
            if size:
                self.output.start(None, size if size > 1 else 0)
        #: get_included_files(): the script, then what include()/require() ran
        self.included_files: list[str] = []
        #: the runtime logs this request's errors with time, URI and session id (the pools)
        self.log_context = False
        #: reports an uncaught exception as PHP's fatal error (set by the runtime; None:
        #: a 500 and the traceback on stderr)
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._session: Session | None = None
        self.finished = False
        #: shutdown() has run to its end (during it, the request is still the current one)
        self.ended = False
        self.lock_wait: float = 0.0  # seconds this request waited for its session lock
        #: told when this request waits for or holds a session lock (set by a runtime)
        self.lock_monitor: LockMonitor | None = None

    # -- script location ---------------------------------------------------------------
    @property
    def script_filename(self) -> str | None:
        """The running script's path (``SCRIPT_FILENAME``/``PATH_TRANSLATED``), if known."""
        return self.environ.get("SCRIPT_FILENAME") or self.environ.get("PATH_TRANSLATED") or None

    def script_mtime(self) -> float | None:
        """The running script's modification time (the cache limiters' ``Last-Modified``):
        ``SCRIPT_FILENAME``'s, or in CLI the main module's; None when unknown."""
        path = self.script_filename
        if path is None and self.cli:
            main = sys.modules.get("__main__")
            path = getattr(main, "__file__", None)
        if not path:
            return None
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None

    # -- $_REQUEST, $_FILES ----------------------------------------------------------------
    @property
    def REQUEST(self) -> dict[Any, Any]:
        """``$_REQUEST``: $_GET and $_POST (``request_order``, else ``variables_order``) merged."""
        if self._request_vars is None:
            order = self.engine.value("request_order") or self.engine.value("variables_order")
            self._request_vars = superglobals.merge_request(
                str(order), {"G": self.GET, "P": self.POST, "C": self.COOKIE})
        return self._request_vars

    @property
    def FILES(self) -> dict[Any, Any]:
        """``$_FILES``: the files of a ``multipart/form-data`` POST, each stored in a
        temporary file (``upload_tmp_dir``, else the system's) that is deleted when the
        request ends unless :meth:`move_uploaded_file` moved it."""
        if self._files is None:
            self._files = {}
            ctype = self.environ.get("CONTENT_TYPE", "")
            if (self.body and self.environ.get("REQUEST_METHOD", "").upper() == "POST"
                    and ctype.split(";", 1)[0].strip().lower() == "multipart/form-data"
                    and self.engine.value("file_uploads")):
                boundary = ""
                for param in ctype.split(";")[1:]:
                    k, _, v = param.strip().partition("=")
                    if k.strip().lower() == "boundary":
                        boundary = v.strip().strip('"')
                if boundary:
                    self._files = superglobals.parse_files(
                        superglobals.multipart_parts(boundary, self.body), self._store_upload,
                        upload_max_filesize=self.engine.value("upload_max_filesize"),
                        max_file_uploads=self.engine.value("max_file_uploads"))
        return self._files

    def _store_upload(self, content: bytes) -> str | None:
        import tempfile

        directory = str(self.engine.value("upload_tmp_dir") or "") or None
        try:
            fd, path = tempfile.mkstemp(prefix="php", dir=directory)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        self.uploaded_files.add(path)
        return path

    def remove_uploads(self) -> None:
        """Delete the uploads' temporary files that were not moved (PHP does at request end)."""
        for path in self.uploaded_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.uploaded_files.clear()

    # -- the session -------------------------------------------------------------------
    @property
    def session(self) -> "Session":
        """This request's :class:`~phpsess.session.session.Session`, created on first use."""
        if self._session is None:
            self._session = Session(self)
        return self._session

    @property
    def has_session(self) -> bool:
        """True once anything touched :attr:`session`."""
        return self._session is not None

    # -- headers -----------------------------------------------------------------------
    def header(self, line: str, replace: bool = True, response_code: int = 0) -> None:
        """PHP's ``header()``: add (or replace) a header line, or set the status line.

        Headers sent already: PHP's warning (raised here as :class:`RuntimeError`
        for php.py to translate).  A line with a NUL byte, or a CR or LF inside it (header
        injection): :class:`HeaderRefused` with PHP's warning, and nothing is added.
        """
        if self.headers_sent:
            raise RuntimeError(
                f"Cannot modify header information - headers already sent{self.headers_sent_at}"
            )
        line = line.rstrip(" \t\n\v\f\r")  # PHP trims trailing white space (a final CRLF too)
        if "\0" in line:
            raise HeaderRefused("Header may not contain NUL bytes")
        if "\n" in line or "\r" in line:
            raise HeaderRefused("Header may not contain more than a single header, new line detected")
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
        if not self._flushing_at_end:
            self._sent_at = _output_started_at()
        if self._send_headers is not None:
            self._send_headers(self.status, list(self.headers))

    # -- body --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Output: through the output buffers (:attr:`output`) to the body."""
        if data:
            self.output.write(data)

    def _emit(self, data: bytes) -> None:
        """Body bytes out of the buffers; the first non-empty write sends the headers first."""
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
        """PHP's request shutdown: shutdown functions, the output buffers flushed, then
        the session write/close, then the headers (if no body was ever written).  Runs
        once; never raises for a session failure (it is logged)."""
        if self.finished:
            return
        self.finished = True
        try:
            i = 0
            while i < len(self.shutdown_functions):  # functions may register more
                fn, args = self.shutdown_functions[i]
                fn(*args)
                i += 1
        except Exception as exc:
            # PHP: a fatal error in a shutdown function ends the others, gives a 500
            # while headers are unsent, and the session is still written
            if self.on_fatal is not None:
                self.on_fatal(exc)
            else:
                if not self.headers_sent:
                    self.status = 500
                traceback.print_exc()
        finally:
            try:
                # main/main.c php_request_shutdown: output buffers end before modules
                # (the session) shut down
                self._flushing_at_end = True
                self.output.end_all()
            except Exception:
                traceback.print_exc()
            try:
                if self._session is not None:
                    self._session.request_shutdown()
            finally:
                try:
                    if not self.headers_sent:
                        self.send_headers()
                    if self.uploaded_files:
                        self.remove_uploads()
                finally:
                    self.ended = True

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
        self.on_fatal = None
        self.output.detach()
        if self._session is not None:
            self._session.detach()
