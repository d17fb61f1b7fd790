"""What the framework integrations share (Django, Flask, ASGI): one framework request's PHP
session (:class:`SessionBridge`), the mapping a view sees (:class:`PHPSession`), the
locking modes, the cache-header rule, and PHP's diagnostics as log records.  No I/O of
its own: storage goes through the session's save handler.

A framework request gets a :class:`~phpsess.session.request.Request` of its own (its
cookies parsed as PHP parses them, its settings a copy of the configured ones), made
the current request while the framework runs the view, so ``phpsess.SESSION`` and the
framework's session object are one session.  The integrations start that session
only when the request's cookie names a session the store holds
(:meth:`~phpsess.session.session.Session.exists`): an unknown id is never adopted, as
with ``session.use_strict_mode = 1``, and a new session (a new id, its cookie, a
stored record) is made only when something is stored in it, as the frameworks' own
sessions do.

Locking modes, phpsess's own choices for ``session_start()``:

* ``"lock"``: PHP's exclusive lock, held from the read until the session is written
  at the end of the request (PHP's default);
* ``"merge"``: ``session.concurrency = merge``: read, lock released; the write takes
  it again briefly and merges this request's changes key by key;
* ``"read_only"``: ``read_and_close``: read, lock released, nothing ever written.

``None`` follows the settings (``session.concurrency``, else ``"lock"``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Iterator, Mapping, MutableMapping, Union

from ..core import http, ids
from ..core.config import SessionConfig
from ..core.state import Phase
from ..errors import InvalidSessionId, SaveHandlerError, SessionError, SessionStartError, SessionStateError
from ..session.context import request_context
from ..session.request import Request
from ..session.session import Session
from ..session.settings import from_ini_file, log_warning

__all__ = [
    "MODES",
    "CACHE_HEADER_RULES",
    "CACHE_HEADER_NAMES",
    "IniSource",
    "load_config",
    "mode_options",
    "check_mode",
    "check_cache_headers",
    "header_changes",
    "SessionBridge",
    "PHPSession",
]

#: the locking modes (module docstring)
MODES = ("lock", "merge", "read_only")
#: who wins when the application set caching headers itself: ``"app"`` or ``"php"``
CACHE_HEADER_RULES = ("app", "php")
#: the headers PHP's cache limiter sends (lower case)
CACHE_HEADER_NAMES = frozenset({"expires", "cache-control", "pragma", "last-modified"})

IniSource = Union[str, "os.PathLike[str]", SessionConfig, Mapping[str, Any], None]


def load_config(ini: IniSource) -> SessionConfig | None:
    """The settings an integration's requests start from: a php.ini-syntax file, a
    :class:`SessionConfig`, or a mapping of ``session.*`` names (the prefix may be left
    out) to values; None means the process-wide default (``$PHPSESS_INI`` or PHP's).

    :raises ConfigError: an unreadable file or a value PHP would refuse.
    """
    if ini is None or isinstance(ini, SessionConfig):
        return ini
    if isinstance(ini, Mapping):
        return SessionConfig(ini, warn=log_warning)
    return from_ini_file(os.fspath(ini))


def check_mode(mode: str | None) -> str | None:
    """``mode`` if it is one of :data:`MODES` (or None).

    :raises ValueError: any other value.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (or None), not {mode!r}")
    return mode


def mode_options(mode: str | None) -> dict[str, Any]:
    """The ``session_start()`` options of a locking mode (None: none, the settings decide)."""
    if check_mode(mode) is None:
        return {}
    if mode == "read_only":
        return {"read_and_close": True}
    return {"concurrency": mode}


def check_cache_headers(rule: str) -> str:
    """``rule`` if it is ``"app"`` or ``"php"``.

    :raises ValueError: any other value.
    """
    if rule not in CACHE_HEADER_RULES:
        raise ValueError(f'cache_headers must be "app" or "php", not {rule!r}')
    return rule


def header_changes(
    app_names: Iterable[str], php_headers: Iterable[tuple[str, str]], rule: str
) -> tuple[set[str], list[tuple[str, str]]]:
    """How the PHP side's headers join a response whose own header names are ``app_names``.

    :param rule: ``"php"``: PHP's order, a header the PHP side set replaces the
        application's headers of that name (the cache limiter's ``Cache-Control``
        replaces the application's), ``Set-Cookie`` accumulates.  ``"app"``: the same,
        except that when the application set any caching header itself
        (``Cache-Control``, ``Expires``, ``Pragma``, ``Last-Modified``), none of the PHP
        side's caching headers is added: the application's caching policy wins.
    :returns: (the lower-case names of the application's headers to remove, the PHP
        side's headers to add, in order).  ``Status`` lines are left out: the framework's
        response has the status.
    """
    app = {n.lower() for n in app_names}
    php = [(n, v) for n, v in php_headers if n.lower() != "status"]
    if check_cache_headers(rule) == "app" and app & CACHE_HEADER_NAMES:
        php = [(n, v) for n, v in php if n.lower() not in CACHE_HEADER_NAMES]
    replaced = {n.lower() for n, _ in php if n.lower() != "set-cookie"}
    return replaced & app, php


class SessionBridge:
    """One framework request's PHP request and session, driven from Python: start, write,
    regenerate, destroy, each raising instead of returning PHP's ``false``, PHP's
    warnings logged on ``logger`` (with PHP's text, ``session_start(): ...``).

    :param config: the settings (copied for this request); None: the process-wide ones.
    :param environ: the request's CGI variables (``HTTP_COOKIE``, ``REQUEST_METHOD``...).
    :param logger: where PHP's diagnostics go (``phpsess.django``, ``phpsess.flask``...).
    :param mode: the locking mode (:data:`MODES`); None: the settings decide.
    """

    def __init__(
        self,
        config: SessionConfig | None,
        environ: Mapping[str, str] | None = None,
        *,
        logger: logging.Logger,
        mode: str | None = None,
    ) -> None:
        self.mode = check_mode(mode)
        self.request = Request(environ=environ or {}, config=config)
        # a framework's session holds its own types (its serializers want JSON's list and
        # dict, Flask's flashes are lists): PHP arrays come back as list/dict here
        # (session.php_arrays, docs/types.md)
        self.request.config.set("php_arrays", "0", startup=True)
        self.log = logger
        self.finished = False
        self._messages: list[str] | None = None
        self._bound: request_context | None = None

    @property
    def session(self) -> Session:
        """The request's :class:`~phpsess.session.session.Session`."""
        return self.request.session

    @property
    def config(self) -> SessionConfig:
        """This request's settings (its own copy)."""
        return self.request.config

    def cookie_id(self) -> str | None:
        """The session id the request's cookie names (``session.name``, PHP's cookie
        parsing), or None: no cookie, cookies off, or an id PHP would discard."""
        cfg = self.config
        if not cfg.use_cookies:
            return None
        value = self.request.COOKIE.get(cfg.name)
        if not isinstance(value, str) or not value or ids.has_forbidden_chars(value):
            return None
        return value

    # -- diagnostics -----------------------------------------------------------------
    def report(self, function: str | None, message: str, level: str = "Warning") -> None:
        """The session's reporter: PHP's diagnostic, logged (notices at INFO)."""
        text = f"{function}(): {message}" if function else message
        if self._messages is not None and level != "Notice":
            self._messages.append(text)
        self.log.log(logging.INFO if level == "Notice" else logging.WARNING, "PHP %s: %s", level, text)

    def _enter(self, function: str) -> Session:
        s = self.session
        s.function = function
        s.reporter = self.report
        self._messages = []
        return s

    def _leave(self, s: Session) -> list[str]:
        s.function = None
        messages, self._messages = self._messages or [], None
        return messages

    # -- the session -------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while the session is started (read, and in lock mode locked)."""
        return self.session.phase is not Phase.NONE

    def exists(self, sid: str) -> bool:
        """Whether the store holds session ``sid`` (nothing is started or locked).

        :raises SessionStartError: the store could not be asked.
        """
        s = self._enter("session_start")
        try:
            return s.exists(sid)
        except SaveHandlerError as exc:
            raise SessionStartError([*self._messages_so_far(), str(exc)], cause=exc)
        finally:
            self._leave(s)

    def _messages_so_far(self) -> list[str]:
        return list(self._messages or [])

    def start(self, sid: str | None, mode: str | None = None, **options: Any) -> None:
        """Start session ``sid`` (None: a new id, with its ``Set-Cookie``) in ``mode``
        (None: the bridge's); ``options`` are ``session_start()``'s, checked as PHP checks them.

        :raises SessionStartError: PHP's ``session_start()`` would have returned false
            (the lock was not obtained in ``session.lock_timeout``, the store failed...).
        """
        opts = {"lazy_start": 0, **mode_options(self.mode if mode is None else check_mode(mode)), **options}
        s = self._enter("session_start")
        try:
            ok = s.begin(sid, opts)
        finally:
            messages = self._leave(s)
        if not ok:
            raise SessionStartError(messages)

    def write_close(self) -> None:
        """Write the session and release its lock (``session_write_close()``); nothing
        when it is not active."""
        s = self._enter("session_write_close")
        try:
            s.write_close()
        finally:
            self._leave(s)

    def abort(self) -> None:
        """Close without writing (``session_abort()``); nothing when not active."""
        s = self._enter("session_abort")
        try:
            s.abort()
        finally:
            self._leave(s)

    def regenerate_id(self, delete_old: bool = True) -> str:
        """Move the active session to a new id (``session_regenerate_id()``); its cookie
        goes out with the response.

        :returns: the new id.
        :raises SessionError: no active session, or the store failed.
        """
        s = self._enter("session_regenerate_id")
        try:
            ok = s.regenerate_id(delete_old)
        finally:
            messages = self._leave(s)
        if not ok or not s.id:
            raise SessionError("; ".join(messages) or "the session id could not be regenerated")
        return s.id

    def destroy(self) -> None:
        """Delete the active session from the store and close it (``session_destroy()``).

        :raises SessionError: the store failed.
        """
        s = self._enter("session_destroy")
        try:
            ok = s.destroy()
        finally:
            messages = self._leave(s)
        if not ok:
            raise SessionError("; ".join(messages) or "the session could not be destroyed")

    def destroy_id(self, sid: str) -> None:
        """Delete session ``sid``, another than this request's, from the store: its lock is
        taken first (a request using it finishes first, within ``session.lock_timeout``).
        Nothing when the store does not hold it.

        :raises SessionError: the store failed or the lock was not obtained.
        """
        if not self.exists(sid):
            return
        from ..storage.base import handler_class

        cfg = self.config
        handler = handler_class(cfg.save_handler)(cfg)
        try:
            handler.open(cfg.save_path, cfg.name)
            handler.read(sid)
            handler.destroy(sid)
        except InvalidSessionId:
            return
        finally:
            try:
                handler.close()
            except SaveHandlerError as exc:
                self.log.warning("session handler close failed: %s", exc)

    def headers(self) -> list[tuple[str, str]]:
        """The headers the PHP side has for the response so far (``Set-Cookie``, the
        cache limiter's, ``phpsess.header()``'s), in order."""
        return list(self.request.headers)

    def cookie_header(self) -> tuple[str, str] | None:
        """The session's ``Set-Cookie`` as ``session_start()`` sends it, for the id now in
        use and this request's cookie settings (e.g. a changed lifetime), or None."""
        sid = self.session.id
        if not sid:
            return None
        try:
            return http.session_cookie(self.config, sid, now=self.request.clock())
        except http.CookieNameError as exc:
            self.log.warning("%s", exc)
            return None

    def delete_cookie_header(self) -> tuple[str, str]:
        """A ``Set-Cookie`` that removes the session cookie: PHP's ``setcookie(name, "", 1,
        path, domain, secure, httponly)``, what the PHP manual's logout sends."""
        cfg = self.config
        line = http.setcookie_header(
            cfg.name, "", 1, cfg.cookie_path, cfg.cookie_domain, bool(cfg.cookie_secure),
            bool(cfg.cookie_httponly), cfg.cookie_samesite, now=self.request.clock(),
        )
        return ("Set-Cookie", line)

    def set_header(self, name: str, value: str) -> None:
        """Add ``name: value`` to the PHP side's headers, replacing a ``Set-Cookie`` of the
        session cookie (or another header of that name)."""
        if name.lower() == "set-cookie":
            self.request.remove_header("Set-Cookie", self.config.name + "=")
            self.request.add_header(name, value)
        else:
            self.request.add_header(name, value, replace=True)

    # -- the request ---------------------------------------------------------------------
    def bind(self) -> None:
        """Make this request the current one in the calling context (``phpsess.SESSION``,
        ``phpsess.session_id()``... act on it) until :meth:`finish`."""
        if self._bound is None:
            self._bound = request_context(self.request, shutdown=False)
            self._bound.__enter__()

    def unbind(self) -> None:
        """Stop being the current request (undo :meth:`bind`).  Called from another
        context than :meth:`bind`'s (a worker thread's copy), it does nothing: call it
        again from the binding context."""
        bound = self._bound
        if bound is None:
            return
        try:
            bound.__exit__(None, None, None)
        except ValueError:
            return  # another context (a copy of the binding one): the binder unbinds
        self._bound = None

    def finish(self) -> None:
        """The request is over: PHP's request shutdown (shutdown functions, then a session
        still open is written and unlocked), and the request stops being current.  Once."""
        if self.finished:
            return
        self.finished = True
        try:
            self.request.shutdown()
        finally:
            self.request.end_response()
            self.unbind()


class PHPSession(MutableMapping[str, Any]):
    """A framework request's PHP session as a mapping: what ``flask.session`` and
    Starlette's ``request.session`` are with phpsess.

    Nothing is read until the mapping is first used (or :meth:`load` is called): then,
    when the request's cookie names a session the store holds, it is started in the
    bridge's locking mode (in lock mode its lock is held until :meth:`save`); otherwise
    the session is new and empty, and it is created (a new id and its cookie) by
    :meth:`save` only if something was stored in it.  The values are PHP's
    (docs/types.md); nested changes (``session["cart"].append(x)``) are saved too, as
    PHP writes the whole ``$_SESSION`` at the end.

    Python-friendly results: :attr:`id` is a ``str`` or None; the methods raise
    :class:`~phpsess.errors.SessionError` where PHP's functions return false.
    """

    def __init__(self, bridge: SessionBridge, sid: str | None) -> None:
        self._bridge = bridge
        self._sid = sid
        #: unloaded, open (started: read, maybe locked), new (nothing stored yet), closed
        self._state = "unloaded"
        self._mode: str | None = None
        self._options: dict[str, Any] = {}
        self._destroyed = False
        self._resend_cookie = False
        #: set when a key is assigned or deleted through this mapping (informational:
        #: the whole session is written at the end in any case)
        self.modified = False
        #: set by the framework when a view uses the session
        self.accessed = False

    # -- loading -------------------------------------------------------------------------
    @property
    def bridge(self) -> SessionBridge:
        """The request and session behind this mapping."""
        return self._bridge

    def load(self) -> None:
        """Read the session now if it is not read yet: start it (taking its lock in lock
        mode) when the cookie names one the store holds, else begin a new, empty one.

        :raises SessionStartError: the session could not be started.
        """
        if self._state != "unloaded":
            return
        b = self._bridge
        s = b.session
        if s.phase is not Phase.NONE:  # started through phpsess.session_start() in the view
            self._state = "open"
            return
        sid = self._sid
        if sid is not None and b.exists(sid):
            b.start(sid, self._mode, **self._options)
            self._state = "open" if b.active else "closed"  # read_only has closed it
        else:
            s.data = {}
            self._state = "new"

    def start(self, mode: str | None = None, **options: Any) -> None:
        """Choose how this request uses the session, before its first use:
        ``session.start(mode="read_only")`` (or ``read_and_close=True``), ``"merge"``,
        ``"lock"``, and any ``session_start()`` option (``cookie_lifetime=3600``...).
        Then the session is read as :meth:`load` does.

        Once the session is read, PHP's notice (logged) and nothing else.
        """
        if self._state != "unloaded":
            self._bridge.report("session_start", "Ignoring session_start() because a session is already active", "Notice")
            return
        if options.pop("read_and_close", False):
            mode = "read_only"
        self._mode = check_mode(mode)
        self._options = options
        self.load()

    def _data(self) -> MutableMapping[Any, Any]:
        if self._state == "unloaded":
            self.load()
        s = self._bridge.session
        if s.phase is Phase.PENDING:
            s.load_lazy()
        data: MutableMapping[Any, Any] = s.data
        return data

    # -- the mapping ---------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __contains__(self, key: object) -> bool:
        return key in self._data()

    def get(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)``."""
        return self._data().get(key, default)

    def clear(self) -> None:
        """Empty the session (PHP's ``$_SESSION = []``); it stays, with its id."""
        self._data()
        self._bridge.session.data = {}
        self.modified = True

    def copy(self) -> dict[Any, Any]:
        """A plain dict copy of the session's data."""
        return dict(self._data())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} {self._state} {dict(self._data())!r}>"

    # -- PHP's operations, Python-style ---------------------------------------------------
    @property
    def id(self) -> str | None:
        """The session id, or None while the session is new (nothing stored yet).  Asking
        reads the session (:meth:`load`) if it was not read yet."""
        if self._state == "unloaded":
            self.load()
        if self._state == "new":
            return None
        return self._bridge.session.id or None

    @property
    def new(self) -> bool:
        """True when the store holds no session for this request (yet)."""
        if self._state == "unloaded":
            self.load()
        return self._state == "new"

    @property
    def started(self) -> bool:
        """True while the session is started (read; in lock mode, locked)."""
        return self._bridge.active

    def regenerate_id(self, delete_old: bool = True) -> str:
        """Move the session to a new id, keeping its data, and send the new cookie (PHP's
        ``session_regenerate_id()``; after a login, against session fixation).  A new
        session is created now.

        :returns: the new id.
        :raises SessionError: the session was closed already, or the store failed.
        """
        if self._state == "unloaded":
            self.load()
        if self._state == "new":
            self._create(keep_open=True)  # a new id already: no old one to leave behind
            return self.id or ""
        if self._state == "closed" or not self._bridge.active:
            raise SessionStateError(Phase.NONE, "regenerate_id", "the session is closed: its id cannot be regenerated")
        return self._bridge.regenerate_id(delete_old)

    def destroy(self) -> None:
        """Delete the session from the store and empty this mapping (PHP's
        ``session_destroy()`` after ``$_SESSION = []``, a logout).  The cookie is
        removed with the response, unless something is stored in the session again:
        that makes a new session, with a new id.

        :raises SessionError: the store failed.
        """
        if self._state == "unloaded":
            self.load()
        b = self._bridge
        if b.active:
            b.destroy()
        elif self._state == "closed" and b.session.id:
            b.destroy_id(b.session.id)
        b.session.data = {}
        b.session.id = None
        self._state = "new"
        self._destroyed = True
        self.modified = True

    def set_cookie_lifetime(self, seconds: int) -> None:
        """Send the session cookie again with the response, with lifetime ``seconds``
        (0: until the browser closes): PHP's ``session.cookie_lifetime`` for this request."""
        self._bridge.config.set("cookie_lifetime", int(seconds), warn=self._bridge.log.warning)
        self._resend_cookie = True

    def _create(self, *, keep_open: bool = False) -> None:
        """Make the new session now: a new id (and its ``Set-Cookie``) holding the data,
        written and closed, or (``keep_open``) started and locked, written at :meth:`save`.
        Nobody else knows the new id, so its lock is never waited for."""
        b = self._bridge
        data = dict(b.session.data)
        b.start(None, "lock", **self._options)
        b.session.data = data
        if keep_open:
            self._state = "open"
            return
        b.write_close()
        self._state = "closed"

    @property
    def pending_create(self) -> bool:
        """True when :meth:`save` would create a new session (it is new, holds something,
        and is not read only): the caller may want it done before the response starts."""
        b = self._bridge
        return (
            self._state == "new" and bool(len(b.session.data))
            and self._mode != "read_only" and b.mode != "read_only"
        )

    def save(self) -> None:
        """The end of the session for this request: write it and release its lock (PHP's
        ``session_write_close()``), or create it if it is new and holds something.  Read
        only sessions are not written.  Idempotent; the data stays readable.
        """
        b = self._bridge
        if self._state == "open":
            if b.active:
                b.write_close()
            self._state = "closed"
        elif self.pending_create:
            self._create()

    def response_headers(self) -> list[tuple[str, str]]:
        """The PHP side's headers for the response as they stand (``Set-Cookie``, the cache
        limiter's, ``phpsess.header()``'s): with the session cookie again when its
        lifetime changed (:meth:`set_cookie_lifetime`), and its removal when the session
        was destroyed and not made again.  Call it when the response's head is made
        (after :meth:`save`, or after creating a new session)."""
        b = self._bridge
        if self._resend_cookie and self._state in ("open", "closed") and b.session.id:
            cookie = b.cookie_header()
            if cookie is not None:
                b.set_header(*cookie)
            self._resend_cookie = False
        if self._state == "new" and self._destroyed and self._sid is not None:
            b.set_header(*b.delete_cookie_header())
        return b.headers()

    def abort(self) -> None:
        """Close the session without writing this request's changes (PHP's ``session_abort()``)."""
        if self._bridge.active:
            self._bridge.abort()
        if self._state == "open":
            self._state = "closed"

    def finish(self) -> None:
        """The request is over: a session still open is written and unlocked (after an
        error too, as PHP writes it after a fatal error), then the request's shutdown.
        A new session is not created here: its cookie could no longer be sent.  Never
        raises for the session (it is logged)."""
        try:
            if self._state == "open":
                self.save()
            elif self._state == "new" and len(self._bridge.session.data) and not self._bridge.session.id:
                # its cookie can no longer reach the client: storing it would make an orphan
                self._bridge.log.warning(
                    "a new session's data was not stored: it was set after the response had started"
                )
        except SessionError as exc:
            self._bridge.log.warning("session not saved at the end of the request: %s", exc)
        finally:
            self._bridge.finish()
