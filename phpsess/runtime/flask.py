"""PHPSessionInterface: ``flask.session`` is the PHP session, with nothing to call.  Does no
I/O of its own: the session's save handler reads and writes the store.

``app.session_interface = PHPSessionInterface(ini=...)``.  Each request gets a PHP
request of its own (:class:`~phpsess.runtime.framework.SessionBridge`, current while
Flask handles it, so ``phpsess.SESSION`` is the same session); ``flask.session`` is a
:class:`FlaskSession` that reads the session at its first use (in lock mode taking
PHP's lock, held until the response is ready), and Flask's ``save_session`` writes it,
releases the lock and adds the PHP side's headers (the session cookie, the cache
limiter's, by ``cache_headers``' rule) to the response.  When a request ends without
``save_session`` (an error inside Flask's own response handling), the request's
teardown writes and unlocks the session, as PHP writes it after a fatal error.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask, Request, Response
from flask import request as _current_flask_request
from flask.sessions import SessionInterface, SessionMixin
from flask.signals import request_tearing_down

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
from .wsgi import cgi_environ

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["PHPSessionInterface", "FlaskSession"]

log = logging.getLogger("phpsess.flask")

#: where a request's session is kept in its WSGI environ (the first one opened: Flask's)
ENVIRON_KEY = "phpsess.flask.session"


class FlaskSession(PHPSession, SessionMixin):  # type: ignore[override]  # (`new` is a property here)
    """``flask.session`` with phpsess: the PHP session of the request
    (:class:`~phpsess.runtime.framework.PHPSession`) with Flask's session attributes.

    :attr:`permanent` is not stored in the session (PHP has no such key): set to True,
    the cookie is sent again with this response, lasting the app's
    ``PERMANENT_SESSION_LIFETIME``; PHP's own ``session.cookie_lifetime`` applies otherwise.
    """

    def __init__(self, bridge: SessionBridge, sid: str | None, lifetime: timedelta) -> None:
        super().__init__(bridge, sid)
        self._lifetime = lifetime
        self._permanent = False

    @property
    def permanent(self) -> bool:
        """Whether this response makes the cookie outlive the browser session."""
        return self._permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._permanent = bool(value)
        self.set_cookie_lifetime(int(self._lifetime.total_seconds()) if value else 0)


class PHPSessionInterface(SessionInterface):
    """A Flask session interface whose session is PHP's: the same cookie (``session.name``
    and the ``session.cookie_*`` settings), store, format and lock as PHP pages.

    :param ini: the settings: a php.ini-syntax file, a mapping of ``session.*`` names to
        values, a :class:`~phpsess.core.config.SessionConfig`; None: ``$PHPSESS_INI`` or
        PHP's defaults.  Flask's ``SESSION_COOKIE_*`` settings are not used.
    :param mode: ``"lock"`` (PHP's exclusive lock for the request), ``"merge"``,
        ``"read_only"``, or None (the settings' ``session.concurrency``); a view can
        choose for its request with ``session.start(mode=...)`` before using it.
    :param cache_headers: ``"app"`` (the default: the session's cache-limiter headers
        are left out when the view's response sets a caching header itself) or
        ``"php"`` (PHP's order: they replace the response's).
    """

    def __init__(self, ini: IniSource = None, *, mode: str | None = None, cache_headers: str = "app") -> None:
        self.config = load_config(ini)
        self.mode = check_mode(mode)
        self.cache_headers = check_cache_headers(cache_headers)

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        """The request's session, nothing read yet; the request becomes phpsess's current one."""
        bridge = SessionBridge(self.config, cgi_environ(request.environ), logger=log, mode=self.mode)
        session = FlaskSession(bridge, bridge.cookie_id(), app.permanent_session_lifetime)
        # the first session opened for a request is Flask's own (test clients open more)
        if request.environ.setdefault(ENVIRON_KEY, session) is session:
            bridge.bind()
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write the session and release its lock; add the PHP side's headers to ``response``."""
        if not isinstance(session, PHPSession):
            return
        try:
            session.save()
            remove, add = header_changes(list(response.headers.keys()), session.response_headers(), self.cache_headers)
            for name in remove:
                del response.headers[name]
            for name, value in add:
                response.headers.add(name, value)
            if session.accessed:
                response.vary.add("Cookie")
        finally:
            session.finish()


def _teardown(sender: Flask, exc: BaseException | None = None, **extra: Any) -> None:
    """``request_tearing_down``: a session ``save_session`` never saw is written and unlocked."""
    session = _current_flask_request.environ.get(ENVIRON_KEY)
    if isinstance(session, PHPSession):
        session.finish()


request_tearing_down.connect(_teardown, weak=False)
