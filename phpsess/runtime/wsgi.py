"""SessionMiddleware: PHP's session API inside any WSGI application (Flask, Django, plain WSGI).
Does no I/O of its own beyond reading the request body from ``wsgi.input``.

Per WSGI call the middleware makes a :class:`~phpsess.session.request.Request` from the
environ and body and makes it current (in a context of its own, so threads and
interleaved calls never share one), so ``phpsess.session_start()``,
``phpsess.SESSION``, ``phpsess.header()``... work in the application's code.
The response headers are fixed at the first body byte, as in PHP: the
application's own status and headers, with the headers the PHP API produced
(``Set-Cookie`` from the session, the cache limiter's ``Expires``/
``Cache-Control``/``Pragma``, ``header()`` calls) added.  When the response is
finished (the server calls ``close()`` on the body, or the application raised),
PHP's request shutdown runs: shutdown functions, then the session is written and
its lock released.
"""

from __future__ import annotations

import contextvars
import io
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from ..session.request import Request
from .framework import IniSource, check_cache_headers, header_changes, load_config
from .output import install_output_proxy
from ..core.http import reason_phrase
from ..session.context import request_context
from .cgi import disarm as _disarm_cgi

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["SessionMiddleware", "cgi_environ", "merge_headers"]

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: content types whose body PHP parses into $_POST (only these are read up front)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def cgi_environ(environ: Mapping[str, Any]) -> dict[str, str]:
    """The CGI variables of a WSGI environ, as a CGI script would see them in ``os.environ``.

    Keeps the ``str`` entries only (``wsgi.*`` objects are dropped) and re-decodes
    PEP 3333's latin-1 "bytes as str" as UTF-8 with surrogateescape.
    """
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not isinstance(value, str) or key.startswith("wsgi."):
            continue
        try:
            value = value.encode("latin-1").decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            pass  # a server that already gave real text
        out[key] = value
    return out


def merge_headers(
    app_status: str,
    app_headers: list[tuple[str, str]],
    php_status: int,
    php_headers: list[tuple[str, str]],
    cache_headers: str = "php",
) -> tuple[str, list[tuple[str, str]]]:
    """Combine the application's response head with what the PHP API produced.

    A header set through the PHP API replaces the application's headers of that
    name (as the cache limiter replaces an earlier ``Cache-Control``), except
    ``Set-Cookie``, which accumulates.  With ``cache_headers="app"`` the PHP side's
    caching headers are left out when the application set one itself
    (:func:`phpsess.runtime.framework.header_changes`).  A ``Status:`` line from
    ``header()`` or a status other than 200 set through the PHP API
    (``http_response_code()``, ``header("Location: ...")``) replaces the
    application's status.
    """
    status = app_status
    php: list[tuple[str, str]] = []
    for name, value in php_headers:
        if name.lower() == "status":
            code = value.strip()[:3]
            if code.isdigit():
                php_status = int(code)
            continue
        php.append((name, value))
    if php_status != 200:
        reason = reason_phrase(php_status)
        status = f"{php_status} {reason}" if reason else str(php_status)
    replaced, php = header_changes((n for n, _ in app_headers), php, cache_headers)
    merged = [(n, v) for n, v in app_headers if n.lower() not in replaced]
    return status, merged + php


def _read_body(environ: dict[str, Any]) -> bytes:
    """The body, when PHP would parse it into $_POST; ``wsgi.input`` is replaced by a copy."""
    ctype = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
    if ctype not in _FORM_TYPES:
        return b""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = str(environ.get("CONTENT_LENGTH") or "").strip()
    if length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


class SessionMiddleware:
    """Wrap a WSGI application so that it can use phpsess's PHP API.

    :param app: the WSGI application.
    :param ini: the settings every request starts from: a php.ini-syntax file, a
        :class:`~phpsess.core.config.SessionConfig`, or a mapping of ``session.*`` names to
        values; None uses the process-wide default (``$PHPSESS_INI`` or PHP's defaults).
    :param capture_output: install :class:`~phpsess.session.request.OutputProxy` so that
        ``print()`` in the application goes into the response body (before the
        application's own body), as a PHP page's ``echo`` does; the application's
        ``Content-Length`` is then dropped.
    :param cache_headers: who wins when the application set caching headers itself:
        ``"php"`` (the default, PHP's order: the cache limiter's ``Cache-Control``,
        ``Expires``, ``Pragma`` replace the application's) or ``"app"`` (the session's
        caching headers are left out when the application set any of them).
    """

    def __init__(
        self, app: WSGIApp, ini: IniSource = None, *, capture_output: bool = False, cache_headers: str = "php"
    ) -> None:
        self.app = app
        self.config = load_config(ini)
        self.capture_output = capture_output
        self.cache_headers = check_cache_headers(cache_headers)
        if capture_output:
            install_output_proxy()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """One WSGI call: run the application in a fresh PHP request context."""
        call = _Call(self, environ, start_response)
        return call.run()


class _Call:
    """The state of one WSGI call."""

    def __init__(self, mw: SessionMiddleware, environ: dict[str, Any], start_response: StartResponse) -> None:
        self.mw = mw
        self.environ = environ
        self.server_start_response = start_response
        body = _read_body(environ)
        self.request = Request(
            environ=cgi_environ(environ),
            config=mw.config,
            body=body,
            send_headers=self._php_headers_ready,
            write_body=self._output,
        )
        self.context = contextvars.copy_context()
        self.context.run(request_context(self.request, shutdown=False).__enter__)
        self.app_head: tuple[str, list[tuple[str, str]], ExcInfo | None] | None = None
        self.php_head: tuple[int, list[tuple[str, str]]] | None = None
        self.server_write: Callable[[bytes], object] | None = None
        self.pending: list[bytes] = []
        self.failed = False  # the application raised: leave the error response to the server
        self.finished = False

    # -- headers -------------------------------------------------------------------------
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """The start_response the application sees."""
        if exc_info is not None and self.server_write is not None:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: headers already sent
        if self.app_head is not None and exc_info is None:
            raise RuntimeError("start_response() called twice without exc_info")
        self.app_head = (status, list(headers), exc_info)
        if self.php_head is not None:
            self._send_head()
        return self._app_write

    def _php_headers_ready(self, status: int, headers: list[tuple[str, str]]) -> None:
        # Request.send_headers(): the PHP side's head is final now
        self.php_head = (status, list(headers))
        if self.app_head is not None:
            self._send_head()

    def _send_head(self) -> None:
        if self.failed or self.server_write is not None or self.app_head is None or self.php_head is None:
            return
        app_status, app_headers, exc_info = self.app_head
        status, headers = merge_headers(app_status, app_headers, *self.php_head, self.mw.cache_headers)
        if self.mw.capture_output:  # printed output may lengthen the body at any time
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        if exc_info is not None:
            self.server_write = self.server_start_response(status, headers, exc_info)
        else:
            self.server_write = self.server_start_response(status, headers)

    def _freeze_head(self) -> None:
        """The first body byte: PHP's headers become final (headers_sent() is true)."""
        if self.app_head is None:
            raise RuntimeError("the WSGI application sent body data before calling start_response()")
        if not self.request.headers_sent:
            self.context.run(self.request.send_headers)
        self._send_head()

    # -- body ----------------------------------------------------------------------------
    def _output(self, data: bytes) -> None:
        self.pending.append(data)

    def _take_pending(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        return data

    def _app_write(self, data: bytes) -> None:
        """The legacy ``write()`` callable returned by start_response."""
        self._freeze_head()
        assert self.server_write is not None
        out = self._take_pending() + bytes(data)
        if out:
            self.server_write(out)

    # -- the call ------------------------------------------------------------------------
    def run(self) -> Iterable[bytes]:
        try:
            result = self.context.run(self.mw.app, self.environ, self.start_response)
        except BaseException:
            self.failed = True
            self.finish()
            raise
        try:
            iterator = self.context.run(iter, result)
            first: list[bytes] = []
            exhausted = False
            while not first:
                try:
                    chunk = self.context.run(next, iterator)
                except StopIteration:
                    exhausted = True
                    break
                if chunk:
                    first.append(bytes(chunk))
            self._freeze_head()
            lead = self._take_pending()
            head = [lead] if lead else []
            return _Body(self, head + first, None if exhausted else iterator, result)
        except BaseException:
            self.failed = True
            self._close_result(result)
            raise

    def _close_result(self, result: Iterable[bytes]) -> None:
        try:
            close = getattr(result, "close", None)
            if close is not None:
                self.context.run(close)
        finally:
            self.finish()

    def finish(self) -> None:
        """PHP's request shutdown: shutdown functions, session write and unlock (once)."""
        if self.finished:
            return
        self.finished = True
        try:
            self.context.run(self.request.shutdown)
        finally:
            # the request's sinks are this call's methods: let go of them, and the call,
            # the request and the session die by reference count (no cycle left)
            self.request.end_response()


class _Body:
    """The response body handed to the server; its ``close()`` ends the PHP request."""

    def __init__(
        self, call: _Call, head: list[bytes], iterator: Iterator[bytes] | None, result: Iterable[bytes]
    ) -> None:
        self._call = call
        self._head = head
        self._iterator = iterator
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        if self._iterator is None:
            return
        call = self._call
        while True:
            try:
                chunk = call.context.run(next, self._iterator)
            except StopIteration:
                break
            out = call._take_pending() + bytes(chunk)
            if out:
                yield out
        tail = call._take_pending()
        if tail:
            yield tail

    def close(self) -> None:
        """Close the application's iterable, then run the request shutdown."""
        self._call._close_result(self._result)

