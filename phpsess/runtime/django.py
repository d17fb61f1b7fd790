"""The Django session engine (``SESSION_ENGINE = "phpsess.django"``): ``request.session`` is
the PHP session.  Does no I/O of its own: the session's save handler reads and writes the
store, as PHP's do.

Three parts:

* :class:`SessionStore`, Django's session API (``SessionBase``) over PHP's session: the
  same store, format and lock as PHP pages.  Django's operations map onto PHP's:
  ``cycle_key()`` is ``session_regenerate_id(true)``, ``flush()`` and ``delete()`` are
  ``session_destroy()``, ``set_expiry()`` is the cookie's lifetime
  (``session.cookie_lifetime``: PHP keeps no expiry in the session), and
  ``clear_expired()`` (``manage.py clearsessions``) is the handler's gc with
  ``session.gc_maxlifetime``, the sweep ``phpsess gc`` makes.
* The request: Django's ``request_started`` and ``request_finished`` signals bound a
  PHP request of its own around each Django request (current while Django handles it,
  so ``phpsess.SESSION`` is ``request.session``).  The request's store (the first one
  made while it runs: the middleware's) reads the session at first use, holding PHP's
  lock (or in merge mode, or read only) until Django's middleware saves it; a session
  read but not saved is written at the end of the request as PHP writes it (unchanged
  data only refreshes its timestamp), unless Django chose not to save its changes (a
  5xx response).  Stores made outside a request, or besides the request's, work as
  Django's own backends do: each ``load()`` reads, each ``save()`` writes, each under
  the lock, briefly.
* :class:`SessionMiddleware`, to use in place of Django's (optional): the session
  cookie is PHP's own ``Set-Cookie`` (``session.name`` and ``session.cookie_*``), the
  session's responses get PHP's cache-limiter headers under the ``cache_headers`` rule
  (``PHPSESS_CACHE_HEADERS``), and the session is written and unlocked before a
  response goes out (a streaming one: when it is closed).  With Django's own
  ``SessionMiddleware`` Django writes the cookie from its ``SESSION_COOKIE_*``
  settings, so ``SESSION_COOKIE_NAME`` must be ``session.name`` (checked).

Settings (``settings.py``): ``PHPSESS_INI``, a php.ini-syntax file or a dict of
``session.*`` settings (default ``$PHPSESS_INI``, else PHP's defaults);
``SESSION_COOKIE_NAME``/``_PATH``/``_DOMAIN``/``_SECURE``/``_HTTPONLY``/``_SAMESITE``,
when set in the settings module, override ``session.name`` and the matching
``session.cookie_*``; ``PHPSESS_MODE`` (``"lock"``, ``"merge"``, ``"read_only"``);
``PHPSESS_CACHE_HEADERS`` (``"app"``, the default, or ``"php"``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from datetime import datetime, timedelta
from http.cookies import Morsel
from typing import Any, Callable, Mapping

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started, setting_changed
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from ..core import formats, ids
from ..core.config import SessionConfig
from ..errors import SessionDecodeError, SessionEncodeError
from ..session.settings import default_config, log_warning
from ..storage.base import handler_class
from .asgi import scope_environ
from .cgi import disarm as _disarm_cgi
from .framework import SessionBridge, check_cache_headers, check_mode, header_changes, load_config
from .wsgi import cgi_environ

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["SessionStore", "SessionMiddleware", "django_config", "collect_garbage"]

log = logging.getLogger("phpsess.django")

#: the engine's module names (SESSION_ENGINE): the public one and this one
ENGINES = ("phpsess.django", "phpsess.runtime.django")

#: Django's cookie settings and the session settings they override when set
_COOKIE_SETTINGS = (
    ("SESSION_COOKIE_NAME", "name"),
    ("SESSION_COOKIE_PATH", "cookie_path"),
    ("SESSION_COOKIE_DOMAIN", "cookie_domain"),
    ("SESSION_COOKIE_SECURE", "cookie_secure"),
    ("SESSION_COOKIE_HTTPONLY", "cookie_httponly"),
    ("SESSION_COOKIE_SAMESITE", "cookie_samesite"),
)

_config: SessionConfig | None = None


def django_config() -> SessionConfig:
    """The session settings of this Django project (the module docstring says where from);
    read once, again after ``override_settings`` changes one."""
    global _config
    if _config is None:
        cfg = (load_config(getattr(settings, "PHPSESS_INI", None)) or default_config()).copy()
        for django_name, name in _COOKIE_SETTINGS:
            if settings.is_overridden(django_name):
                value = getattr(settings, django_name)
                if value is None or value is False and name in ("cookie_domain", "cookie_samesite"):
                    value = ""
                cfg.set(name, value, warn=log_warning, startup=True)
        _config = cfg
    return _config


def _setting_changed(*, setting: str, **extra: Any) -> None:
    global _config
    if setting.startswith(("PHPSESS", "SESSION_")):
        _config = None


setting_changed.connect(_setting_changed, weak=False)


def _default_mode() -> str | None:
    return check_mode(getattr(settings, "PHPSESS_MODE", None))


def collect_garbage(config: SessionConfig) -> int:
    """Delete the sessions idle longer than ``session.gc_maxlifetime``: the save handler's
    gc, the sweep ``phpsess gc`` makes (never a session in use).

    :returns: how many were deleted (Redis: 0, its keys expire by themselves).
    :raises NotImplementedError: an ``N;PATH`` files save path, whose subdirectories PHP's
        gc leaves alone: ``phpsess gc`` (cron) sweeps those.
    """
    handler = handler_class(config.save_handler)(config)
    handler.open(config.save_path, config.name)
    try:
        deleted = handler.gc(config.gc_maxlifetime)
    finally:
        handler.close()
    if deleted < 0:
        raise NotImplementedError(
            f"session.save_path {config.save_path!r} has subdirectories, which PHP's gc does not sweep: "
            "run `phpsess gc` from cron instead"
        )
    return deleted


# -- the request --------------------------------------------------------------------------
class _Scope:
    """One Django request's PHP request, and the store that is its session."""

    def __init__(self, environ: Mapping[str, str] | None) -> None:
        self.bridge = SessionBridge(django_config(), environ, logger=log, mode=_default_mode())
        self.store: SessionStore | None = None
        self.done = False

    def claim(self, store: SessionStore) -> None:
        """``store`` is the request's session; the request becomes phpsess's current one
        where the store is made (the request's middleware, so its views see it too)."""
        self.store = store
        self.bridge.bind()

    def end_session(self) -> None:
        """Write (or, where Django chose not to save, abandon) the session and unlock it."""
        if self.store is not None:
            self.store._end_request()

    def finish(self) -> None:
        """The request is over: the session ends, then the PHP request (once)."""
        if self.done:
            return
        self.done = True
        try:
            self.end_session()
        finally:
            self.bridge.finish()


# Where a request's scope is found.  Under WSGI the signals, the middleware and the view
# share the thread and its context.  Under ASGI, Django sends request_started from a task
# of its own (Signal.asend gathers its receivers): the context variable set there is lost,
# but every sync part of one request runs in the request's one thread (asgiref's
# ThreadSensitiveContext), so the thread is the key there.
_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("phpsess_django_request", default=None)
_thread = threading.local()


def _current_scope() -> _Scope | None:
    scope = _scope.get()
    if scope is None:
        scope = getattr(_thread, "scope", None)
    return scope


def _engine_in_use() -> bool:
    return getattr(settings, "SESSION_ENGINE", "") in ENGINES


def _request_started(sender: Any, environ: Mapping[str, Any] | None = None,
                     scope: Mapping[str, Any] | None = None, **extra: Any) -> None:
    """``request_started``: the Django request gets its PHP request."""
    if not _engine_in_use():
        return
    left = _current_scope()
    if left is not None:
        left.finish()  # a request whose end was never signalled: not the lock's problem
    if environ is not None:
        env: Mapping[str, str] | None = cgi_environ(environ)
    elif scope is not None:
        env = scope_environ(dict(scope))
    else:
        env = None
    _scope.set(_Scope(env))
    _thread.scope = _scope.get()


def _request_finished(sender: Any, **extra: Any) -> None:
    """``request_finished`` (the response was closed): the session is written and unlocked."""
    current = _current_scope()
    if current is not None:
        _scope.set(None)
        _thread.scope = None
        current.finish()


request_started.connect(_request_started, weak=False, dispatch_uid="phpsess.django.request_started")
request_finished.connect(_request_finished, weak=False, dispatch_uid="phpsess.django.request_finished")


def _check_cookie_name(cfg: SessionConfig) -> None:
    if settings.SESSION_COOKIE_NAME != cfg.name:
        raise ImproperlyConfigured(
            f"phpsess.django: Django's SessionMiddleware reads the cookie SESSION_COOKIE_NAME = "
            f"{settings.SESSION_COOKIE_NAME!r}, but the PHP session's cookie is session.name = {cfg.name!r}: "
            f"set SESSION_COOKIE_NAME = {cfg.name!r}, or use phpsess.django.SessionMiddleware"
        )


# -- the store ----------------------------------------------------------------------------
class SessionStore(SessionBase):  # type: ignore[misc]  # (Django has no type hints)
    """Django's session API over the PHP session (the module docstring says how).

    :param session_key: the session id (the cookie's value), or None.
    :param bridge: the PHP request this store is the session of (phpsess's middleware
        gives it); by default the current Django request's, for the first store made
        while it runs, else a request of the store's own (each operation brief).
    """

    _session_key: str | None  # (SessionBase's property, which checks the key)

    def __init__(self, session_key: str | None = None, *, bridge: SessionBridge | None = None) -> None:
        claimed: _Scope | None = None
        if bridge is None:
            scope = _current_scope()
            if scope is not None and scope.store is None and not scope.done:
                _check_cookie_name(scope.bridge.config)
                bridge, claimed = scope.bridge, scope
            else:
                bridge = SessionBridge(django_config(), logger=log)
            self._in_request = claimed is not None
        else:
            self._in_request = True
        self._bridge: SessionBridge = bridge
        self._mode: str | None = None
        self._options: dict[str, Any] = {}
        self._expiry: Any = None  # set_expiry()'s value: seconds, a datetime, 0, None
        self._saved = False
        self._save_at_end = False  # a streaming response: saved when it is closed
        self._resend_cookie = False
        super().__init__(session_key)
        if claimed is not None:
            claimed.claim(self)

    # -- keys ----------------------------------------------------------------------------
    def _validate_session_key(self, key: str | None) -> bool:
        """Django's rule (at least 8 characters) and PHP's (``[A-Za-z0-9,-]``, at most 256)."""
        return bool(key) and len(key or "") >= 8 and ids.is_valid_id(key or "")

    def _get_new_session_key(self) -> str:
        while True:
            key = ids.create_id(self._bridge.config)
            if not self.exists(key):
                return key

    @property
    def bridge(self) -> SessionBridge:
        """The PHP request and session behind this store."""
        return self._bridge

    # -- reading -------------------------------------------------------------------------
    def start(self, mode: str | None = None, **options: Any) -> None:
        """Choose how this request uses the session, before its first use:
        ``request.session.start(mode="read_only")`` (or ``read_and_close=True``),
        ``"merge"``, ``"lock"``, and ``session_start()``'s options; then read it.  Once the
        session is read, PHP's notice (logged) and nothing else."""
        if hasattr(self, "_session_cache"):
            self._bridge.report("session_start", "Ignoring session_start() because a session is already active", "Notice")
            return
        if options.pop("read_and_close", False):
            mode = "read_only"
        self._mode = check_mode(mode)
        self._options = options
        self._get_session()

    def _read_only(self) -> bool:
        return (self._mode or self._bridge.mode) == "read_only"

    def load(self) -> Any:
        """Read the session (Django's ``load()``): in a request, started in its mode and kept
        open (locked, in lock mode) until saved or the request ends; otherwise read and
        closed.  An id the store does not hold gives an empty session and no id (nothing
        is created by reading)."""
        b = self._bridge
        s = b.session
        key = self.session_key
        if b.active and key is not None and s.id == key:
            return s.data  # started already (phpsess.session_start() in the view)
        if key is None or not b.exists(key):
            self._session_key = None
            return {}
        b.start(key, self._mode if self._in_request else "read_only", **self._options)
        return s.data

    def exists(self, session_key: str | None) -> bool:
        """Whether the store holds session ``session_key`` (nothing is started or locked)."""
        return session_key is not None and self._bridge.exists(session_key)

    # -- writing -------------------------------------------------------------------------
    def create(self) -> None:
        """A new session: a new id (PHP's), the data held so far written under it at once."""
        b = self._bridge
        data = self._get_session(no_load=True)
        if b.active:
            b.abort()  # leave the session this store had as it is stored
        b.start(None, "lock", **self._options)
        self._session_key = b.session.id
        b.session.data = data
        b.write_close()
        self._session_cache = b.session.data
        self.modified = True
        self._saved = True

    def save(self, must_create: bool = False) -> None:
        """Write the session (Django's ``save()``) and release its lock.

        :raises CreateError: ``must_create`` and the id is taken.
        :raises UpdateError: the session was deleted meanwhile (a logout elsewhere): it is
            not brought back.
        """
        if self._expired():
            self.delete()  # (nothing when it was never stored)
            self._saved = True
            return
        if self.session_key is None:
            self.create()
            return
        if self._in_request and self._read_only():
            log.warning("session %s was read only in this request: its changes are not saved", self.session_key)
            return
        b = self._bridge
        key = self.session_key
        data = self._get_session(no_load=must_create)
        if not (b.active and b.session.id == key):
            exists = b.exists(key)
            if must_create and exists:
                raise CreateError
            if not must_create and not exists:
                raise UpdateError
            b.start(key, "lock", **self._options)
        b.session.data = data
        b.write_close()
        self._session_cache = b.session.data
        self._saved = True

    def delete(self, session_key: str | None = None) -> None:
        """Delete a session from the store (this one: ``session_destroy()``), taking its
        lock first."""
        if session_key is None:
            session_key = self.session_key
            if session_key is None:
                return
        b = self._bridge
        if b.active and b.session.id == session_key:
            b.destroy()
        else:
            b.destroy_id(session_key)

    def cycle_key(self) -> None:
        """A new id for the same data (after a login): ``session_regenerate_id(true)``."""
        data = self._session
        b = self._bridge
        if b.active and b.session.id == self.session_key:
            b.regenerate_id(delete_old=True)
            self._session_key = b.session.id
            self._session_cache = b.session.data
            self.modified = True
            return
        key = self.session_key
        self.create()
        self._session_cache = data
        if key:
            self.delete(key)

    async def acycle_key(self) -> None:
        """:meth:`cycle_key` from async code."""
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        """``manage.py clearsessions``: :func:`collect_garbage` with the project's settings."""
        deleted = collect_garbage(django_config())
        log.info("clear_expired: %d session(s) idle > %d s deleted", deleted, django_config().gc_maxlifetime)

    def _end_request(self) -> None:
        """The request is over: a session still open is written (unchanged data only
        refreshes its timestamp, as PHP's lazy_write does) and unlocked, unless Django
        chose not to save this request's changes to it (then it is left as stored)."""
        b = self._bridge
        if b.active:
            if self._save_at_end:
                self.save()
            elif self.modified and not self._saved:
                b.abort()
            else:
                b.write_close()

    # -- the format -------------------------------------------------------------------------
    def encode(self, session_dict: Mapping[Any, Any]) -> str:
        """The session's stored form (``session.serialize_handler``), as text."""
        raw = formats.encode(session_dict, self._bridge.config.serialize_handler) or b""
        return raw.decode("utf-8", "surrogateescape")

    def decode(self, session_data: str | bytes) -> Any:
        """The data of a stored session; ``{}`` (logged) when it does not decode."""
        raw = session_data.encode("utf-8", "surrogateescape") if isinstance(session_data, str) else session_data
        try:
            value = formats.decode(raw, self._bridge.config.serialize_handler) if raw else {}
        except (SessionDecodeError, SessionEncodeError) as exc:
            log.warning("session data corrupted: %s", exc)
            return {}
        return value if isinstance(value, dict) else {}

    # -- expiry: the cookie's lifetime ---------------------------------------------------------
    def get_session_cookie_age(self) -> int:
        """The default age: ``session.cookie_lifetime``, or (a cookie until the browser
        closes) ``session.gc_maxlifetime``, after which an idle session is collected."""
        cfg = self._bridge.config
        return int(cfg.cookie_lifetime or cfg.gc_maxlifetime)

    def _expiry_of(self, kwargs: Mapping[str, Any]) -> Any:
        return kwargs["expiry"] if "expiry" in kwargs else self._expiry

    def get_expiry_age(self, **kwargs: Any) -> int:
        """Seconds until the session expires (Django's arguments ``modification``, ``expiry``)."""
        modification = kwargs["modification"] if "modification" in kwargs else timezone.now()
        expiry = self._expiry_of(kwargs)
        if not expiry:
            return self.get_session_cookie_age()
        if not isinstance(expiry, (datetime, str)):
            return int(expiry)
        if isinstance(expiry, str):
            expiry = datetime.fromisoformat(expiry)
        delta = expiry - modification
        return int(delta.days * 86400 + delta.seconds)

    def get_expiry_date(self, **kwargs: Any) -> datetime:
        """When the session expires (Django's arguments ``modification``, ``expiry``)."""
        modification = kwargs["modification"] if "modification" in kwargs else timezone.now()
        expiry = self._expiry_of(kwargs)
        if isinstance(expiry, datetime):
            return expiry
        if isinstance(expiry, str):
            return datetime.fromisoformat(expiry)
        result: datetime = modification + timedelta(seconds=expiry or self.get_session_cookie_age())
        return result

    def set_expiry(self, value: int | float | datetime | timedelta | None) -> None:
        """The session cookie's lifetime from this response on (PHP keeps no expiry in the
        session; on the server an idle session lasts ``session.gc_maxlifetime``): seconds,
        a ``datetime`` or ``timedelta``, 0 (until the browser closes), None (the settings').
        An expiry in the past deletes the session when it is saved."""
        if isinstance(value, timedelta):
            value = timezone.now() + value
        self._expiry = value
        self.modified = True
        self._resend_cookie = True
        cfg = self._bridge.config
        if value is None:
            lifetime = django_config().cookie_lifetime
        elif value == 0:
            lifetime = 0
        else:
            lifetime = max(self.get_expiry_age(), 0)
        cfg.set("cookie_lifetime", int(lifetime), warn=log_warning)

    def get_expire_at_browser_close(self) -> bool:
        """True when the cookie lasts until the browser closes (a lifetime of 0)."""
        if self._expiry is None:
            return int(self._bridge.config.cookie_lifetime) == 0
        return bool(self._expiry == 0)

    def _expired(self) -> bool:
        return self._expiry not in (None, 0) and self.get_expiry_age() < 0

    async def aset_expiry(self, value: Any) -> None:
        """:meth:`set_expiry` from async code."""
        self.set_expiry(value)

    async def aget_expiry_age(self, **kwargs: Any) -> int:
        """:meth:`get_expiry_age` from async code."""
        return self.get_expiry_age(**kwargs)

    async def aget_expiry_date(self, **kwargs: Any) -> datetime:
        """:meth:`get_expiry_date` from async code."""
        return self.get_expiry_date(**kwargs)

    async def aget_expire_at_browser_close(self) -> bool:
        """:meth:`get_expire_at_browser_close` from async code."""
        return self.get_expire_at_browser_close()


# -- phpsess's middleware -------------------------------------------------------------------
class _PHPMorsel(Morsel):  # type: ignore[type-arg]
    """A cookie Django sends as PHP wrote it: ``Set-Cookie`` byte for byte.  Its key, value
    and attributes are filled in too, for Django's test client's cookie jar."""

    def __init__(self, line: str) -> None:
        super().__init__()
        name, _, rest = line.partition("=")
        parts = rest.split(";")
        self.set(name, parts[0], parts[0])
        for attr in parts[1:]:
            key, _, value = attr.strip().partition("=")
            key = key.lower()
            if key in ("path", "domain", "expires", "max-age", "samesite"):
                self[key] = value
            elif key in ("secure", "httponly"):
                self[key] = True
        self._php_line = line

    def OutputString(self, attrs: Any = None) -> str:  # noqa: N802 - Morsel's name
        return self._php_line


class SessionMiddleware:
    """phpsess's session middleware, in place of Django's
    (``"phpsess.django.SessionMiddleware"`` in ``MIDDLEWARE``): PHP's cookie, PHP's
    cache-limiter headers under ``PHPSESS_CACHE_HEADERS``, the session written and
    unlocked before the response goes out.  Django's rules otherwise: the session is
    saved when modified (or ``SESSION_SAVE_EVERY_REQUEST``), not for a 5xx response;
    an emptied session's cookie is removed; ``Vary: Cookie`` when it was used.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.cache_headers = check_cache_headers(getattr(settings, "PHPSESS_CACHE_HEADERS", "app"))

    def __call__(self, request: Any) -> Any:
        """One request: its session is ``request.session``."""
        scope = _current_scope()
        own = scope is None or scope.store is not None or scope.done
        if own:  # no request_started (RequestFactory, a test calling the middleware)
            scope = _Scope(cgi_environ(request.META))
        assert scope is not None
        bridge = scope.bridge
        store = SessionStore(bridge.cookie_id(), bridge=bridge)
        scope.claim(store)
        request.session = store
        try:
            response = self.get_response(request)
            self._save(request, store, response)
            self._headers(store, response)
        except BaseException:
            if own:
                scope.finish()
            raise
        if getattr(response, "streaming", False):
            # kept (locked) and written when the response is closed (request_finished, or this closer)
            closers = getattr(response, "_resource_closers", None)
            if own and closers is not None:
                closers.append(scope.finish)
        elif own:
            scope.finish()
        else:
            scope.end_session()
        return response

    def _save(self, request: Any, store: SessionStore, response: Any) -> None:
        """Django's SessionMiddleware's rules for saving; a streaming response's session,
        open, is saved when the response is closed (its cookie is known already)."""
        modified = store.modified
        if (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not store.is_empty() and response.status_code < 500:
            if getattr(response, "streaming", False) and store.bridge.active:
                store._save_at_end = True
                return
            try:
                store.save()
            except UpdateError:
                raise SessionInterrupted(
                    "The request's session was deleted before the request completed. The user may have "
                    "logged out in a concurrent request, for example."
                )

    def _headers(self, store: SessionStore, response: Any) -> None:
        """The PHP side's headers join the response's."""
        b = store.bridge
        cfg = b.config
        if store.is_empty() and cfg.name in b.request.COOKIE:
            b.set_header(*b.delete_cookie_header())
        elif store._resend_cookie and store.session_key:
            cookie = b.cookie_header()
            if cookie is not None:
                b.set_header(*cookie)
        app_names = [*response.headers.keys(), *(["Set-Cookie"] if response.cookies else [])]
        remove, add = header_changes(app_names, b.headers(), self.cache_headers)
        for name in remove:
            if name != "set-cookie":
                del response.headers[name]
        for name, value in add:
            if name.lower() == "set-cookie":
                morsel = _PHPMorsel(value)
                response.cookies[morsel.key] = morsel
            else:
                response.headers[name] = value
        if store.accessed:
            patch_vary_headers(response, ("Cookie",))
