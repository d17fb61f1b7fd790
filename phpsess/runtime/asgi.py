"""SessionMiddleware for ASGI applications (Starlette, FastAPI): ``request.session`` is the
PHP session.  The session's blocking steps (waiting for the lock, reading, writing) run
in worker threads (``anyio.to_thread``), never in the event loop; the middleware itself
does no other I/O.

Per HTTP request the middleware makes a PHP request of its own
(:class:`~phpsess.runtime.framework.SessionBridge`, current while the application
runs, so ``phpsess.SESSION`` works in endpoints and in their worker threads), and
puts a :class:`~phpsess.runtime.framework.PHPSession` in ``scope["session"]``
(Starlette's ``request.session``, FastAPI's too).  When the request's cookie names a
session the store holds, that session is started before the application runs (in a
worker thread: in lock mode the wait for PHP's lock keeps a thread, not the loop),
so that using ``request.session`` in an ``async def`` endpoint never blocks.  A new
session is created when the response starts, if something was stored in it, so that
its cookie goes out with the response.  The session is written and its lock
released when the response's last body message is about to be sent, or, if the
application raises or the client goes away first, when the application ends.

WebSocket connections see their session read only (``read_and_close``): a WebSocket
response has no headers to carry a cookie.  Other scope types (``lifespan``) pass
through untouched.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, TypeVar, Union

from .cgi import disarm as _disarm_cgi
from .framework import (
    IniSource,
    PHPSession,
    SessionBridge,
    check_cache_headers,
    check_mode,
    header_changes,
    load_config,
)

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["SessionMiddleware", "scope_environ"]

log = logging.getLogger("phpsess.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: a locking mode, or a function of the scope that chooses one per request
ModeChoice = Union[str, None, Callable[[Scope], Union[str, None]]]

_T = TypeVar("_T")


async def _in_thread(fn: Callable[[], _T]) -> _T:
    """``fn()`` in a worker thread (the context, hence the current request, goes along)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn)


def _text(raw: bytes | str) -> str:
    """Header bytes as a CGI variable holds them (UTF-8, undecodable bytes kept).  (Some
    servers and test clients give text where ASGI says bytes: taken as it is.)"""
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "surrogateescape")


def scope_environ(scope: Scope) -> dict[str, str]:
    """The CGI variables of an ASGI HTTP or WebSocket scope, as a CGI script would see them
    (``REQUEST_METHOD``, ``QUERY_STRING``, ``HTTP_COOKIE``, ``REMOTE_ADDR``...).  Repeated
    headers are joined as a server joins them (``Cookie`` with ``"; "``)."""
    env: dict[str, str] = {
        "REQUEST_METHOD": str(scope.get("method", "GET")),
        "SCRIPT_NAME": str(scope.get("root_path", "")),
        "PATH_INFO": str(scope.get("path", "")),
        "QUERY_STRING": _text(scope.get("query_string", b"")),
        "SERVER_PROTOCOL": "HTTP/" + str(scope.get("http_version", "1.1")),
    }
    server = scope.get("server")
    if server:
        env["SERVER_NAME"], env["SERVER_PORT"] = str(server[0]), str(server[1])
    client = scope.get("client")
    if client:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        value = _text(raw_value)
        if key in env:
            value = env[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        env[key] = value
    return env


class SessionMiddleware:
    """Wrap an ASGI application so that ``scope["session"]`` (``request.session``) is the
    PHP session: the same cookie, store, format and lock as PHP pages.

    ``app = SessionMiddleware(app, ini=...)``, or with Starlette
    ``Middleware(phpsess.asgi.SessionMiddleware, ini=...)`` in place of Starlette's.

    :param app: the ASGI application.
    :param ini: the settings: a php.ini-syntax file, a mapping of ``session.*`` names to
        values, a :class:`~phpsess.core.config.SessionConfig`; None: ``$PHPSESS_INI`` or
        PHP's defaults.
    :param mode: ``"lock"`` (PHP's exclusive lock, held until the response is sent),
        ``"merge"``, ``"read_only"``, None (the settings' ``session.concurrency``), or a
        function of the scope returning one of those, to choose per request (e.g.
        ``lambda scope: "read_only" if scope["method"] == "GET" else "lock"``).
    :param cache_headers: ``"app"`` (the default: the session's cache-limiter headers
        are left out when the response sets a caching header itself) or ``"php"``
        (PHP's order: they replace the response's).
    """

    def __init__(self, app: ASGIApp, ini: IniSource = None, *, mode: ModeChoice = None,
                 cache_headers: str = "app") -> None:
        self.app = app
        self.config = load_config(ini)
        self.mode: ModeChoice = mode if callable(mode) else check_mode(mode)
        self.cache_headers = check_cache_headers(cache_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One ASGI call: the application runs with the request's PHP session in the scope."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        mode = self.mode(scope) if callable(self.mode) else self.mode
        if kind == "websocket":
            mode = "read_only"
        bridge = SessionBridge(self.config, scope_environ(scope), logger=log, mode=check_mode(mode))
        session = PHPSession(bridge, bridge.cookie_id())
        scope["session"] = session
        bridge.bind()
        call = _Call(self, session, send)
        try:
            if session.bridge.cookie_id() is not None:
                await _in_thread(session.load)  # may wait for the lock: a thread waits, not the loop
            else:
                session.load()  # new and empty: nothing to read
            await self.app(scope, receive, call.send if kind == "http" else send)
        finally:
            await _finish(session)


async def _finish(session: PHPSession) -> None:
    """Write and unlock a session still open and end its request, even while cancelled."""
    import anyio

    if session.started or session.bridge.request.shutdown_functions:
        with anyio.CancelScope(shield=True):
            await _in_thread(session.finish)
    else:
        session.finish()  # nothing left to write: no thread needed
    session.bridge.unbind()  # (from this context: the thread's copy could not)


class _Call:
    """One HTTP call's ``send``: the PHP side's headers join the response's head; the
    session is saved before the last body message goes out."""

    def __init__(self, mw: SessionMiddleware, session: PHPSession, send: Send) -> None:
        self.mw = mw
        self.session = session
        self.server_send = send
        self.saved = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        session = self.session
        if kind == "http.response.start":
            if session.pending_create:
                await _in_thread(session.save)  # a new id: its cookie goes with this head
            app_headers = list(message.get("headers", ()))
            remove, add = header_changes(
                (bytes(n).decode("latin-1") for n, _ in app_headers), session.response_headers(),
                self.mw.cache_headers,
            )
            headers = [(n, v) for n, v in app_headers if bytes(n).decode("latin-1").lower() not in remove]
            headers += [(n.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for n, v in add]
            message = {**message, "headers": headers}
        elif kind == "http.response.body" and not message.get("more_body", False) and not self.saved:
            self.saved = True
            await _in_thread(session.save)  # written and unlocked before the client has it all
        await self.server_send(message)
