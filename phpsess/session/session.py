"""Session: one request's session lifecycle over a SaveHandler, as PHP 8.2's session.c runs it.

No direct I/O: storage goes through the save handler, headers through the
request's header list.  Every change of phase goes through the state table of
:mod:`phpsess.core.state`.  PHP's diagnostics (warnings, notices) are reported
through :meth:`Session.diagnose`, which hands them to :mod:`phpsess.php` (they
become :class:`~phpsess.errors.PHPWarning` / :class:`~phpsess.errors.PHPNotice`)
while a PHP-named function runs, and logs them during request shutdown (as PHP's
log would).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Final, Mapping, Protocol

from ..core import formats as encoding, http as headers, ids, merge, zend
from ..core.config import SAVE_HANDLERS, SETTINGS, SessionConfig
from ..errors import (
    ConfigError,
    InvalidSessionId,
    LockBusy,
    LockTimeout,
    MergeConflict,
    MemoryLimitExceeded,
    PHPFatalError,
    SaveHandlerError,
    SessionStateError,
    SessionDecodeError,
)
from ..storage.base import SaveHandler, handler_class
from ..core.lazydata import SPANS, Entries, SessionData, encode_entries, is_array
from ..core.state import NEXT_PHASE, STATUS, Event, Phase, Status

__all__ = ["Session", "RequestView"]

log: Final = logging.getLogger(__name__)


class RequestView(Protocol):
    """What a session needs of its request (:class:`phpsess.session.request.Request`)."""

    config: SessionConfig
    COOKIE: dict[Any, Any]
    GET: dict[Any, Any]
    POST: dict[Any, Any]
    SERVER: dict[str, Any]
    headers: list[tuple[str, str]]
    headers_sent: bool
    lock_wait: float
    clock: Callable[[], float]

    @property
    def headers_sent_at(self) -> str: ...

    def add_header(self, name: str, value: str, replace: bool = False) -> None: ...

    def remove_header(self, name: str, value_prefix: str | None = None) -> None: ...

    def script_mtime(self) -> float | None: ...

    @property
    def lock_monitor(self) -> Callable[[str, str, bool, float], None] | None: ...


def _report_waiting(monitor: Callable[[str, str, bool, float], None]) -> Callable[[str, str], None]:
    """A handler's ``on_wait``: tells ``monitor`` (the request's lock monitor) that a read is
    about to wait for the lock of session ``sid`` held ``where``."""

    def on_wait(sid: str, where: str) -> None:
        monitor(sid, where, True, 0.0)

    return on_wait


class Session:
    """The session of one request: PHP's ``PS(...)`` globals plus the algorithms of session.c.

    Methods are named after what they do (``start``, ``write_close``, ``regenerate_id``);
    their arguments and results follow PHP's so that :mod:`phpsess.php` only adapts names.
    """

    def __init__(self, request: RequestView) -> None:
        # the request owns its session; Request.end_response() cuts this link back when
        # the request is over, so the pair dies by reference count, not by the cycle
        # collector (a cycle per request cost a pool worker ~7 µs of gc per request)
        self._request: RequestView | None = request
        self.config: SessionConfig = request.config
        #: where the session is in its life (core/state.py); changed only by _go()
        self.phase = Phase.NONE
        self.id: str | None = None
        #: ``$_SESSION``: a plain dict of user data (or, after php_serialize decoded a
        #: non-array, that value, which is then never written, as in PHP)
        self.data: Any = {}
        #: whether ``$_SESSION`` is linked to the session (false before the first start
        #: and after destroy: session_encode() then warns)
        self.bound = False
        #: session_start() ran in this request (SESSION written before it is discarded)
        self.started_once = False
        self.handler: SaveHandler | None = None
        self.user_handler: SaveHandler | None = None
        self._handler_cache: tuple[str, SaveHandler] | None = None
        self.lazy_snapshot: bytes | None = None
        self.send_cookie = False
        self.define_sid = False
        self.sid_constant: str | None = None
        #: the PHP function now running, for the ``fn(): `` prefix of diagnostics
        self.function: str | None = None
        #: receives (function, message, level) of PHP's diagnostics; phpsess.php's
        self.reporter: Callable[[str, str, str], None] | None = None
        self.random: Callable[[], float] = random.random
        #: merge mode (phase MERGING): the data as read, to find what this request changed
        self.merge_base: dict[Any, bytes] = {}
        self.lock_wait = 0.0
        #: lazy start (phase PENDING): whether the deferred read is read_and_close's
        self._lazy_shared = False
        #: whether a user handler extending SessionHandler has opened the module it
        #: wraps (PHP's ``mod_user_is_open``): phpsess.session.userclass
        self.parent_open = False
        #: a session_start() got past PHP's check of the save and serialize handlers
        #: (until then, a php.ini naming an unknown one makes the status DISABLED)
        self.enabled = False

    # -- the state machine -------------------------------------------------------------
    def _go(self, event: Event) -> None:
        """Change phase by ``event`` (core/state.py's table; an illegal event raises
        SessionStateError, as :func:`~phpsess.core.state.next_phase`)."""
        after = NEXT_PHASE[self.phase][event]
        if after is None:
            raise SessionStateError(self.phase, event)
        self.phase = after

    @property
    def status(self) -> Status:
        """``session_status()``: PHP's view of the phase."""
        return STATUS[self.phase]

    @property
    def active(self) -> bool:
        """True while a session is started (PHP_SESSION_ACTIVE).  (Session's own methods
        test ``self.phase`` directly: a property is a call in plain Python.)"""
        return self.phase is not Phase.NONE

    @property
    def pending(self) -> bool:
        """True while a lazily started session has not been read yet."""
        return self.phase is Phase.PENDING

    @property
    def request(self) -> RequestView:
        """The request this session belongs to.

        :raises RuntimeError: that request no longer exists.
        """
        request = self._request
        if request is None:
            raise RuntimeError("this session's request has ended")
        return request

    def detach(self) -> None:
        """Forget the request (it is over); :attr:`request` raises from now on."""
        self._request = None

    # -- diagnostics -------------------------------------------------------------------
    def diagnose(self, message: str, level: str = "Warning") -> None:
        """Report one of PHP's diagnostics with PHP's text; ``level`` is ``Warning``,
        ``Notice`` or ``Deprecated``.

        While a PHP-named function runs (:attr:`function`), :attr:`reporter` gets it
        (phpsess.php turns it into a PHPWarning naming the caller's line); otherwise (the
        request's shutdown) it is logged, as PHP's log would have it.
        """
        if self.user_handler is not None and getattr(self.user_handler, "pending", None) is not None:
            return  # PHP's session module is silent while a handler's exception is pending
        reporter = self.reporter
        if self.function is None or reporter is None:
            log.warning("PHP %s: %s", level, message)
            return
        reporter(self.function, message, level)

    def _rethrow(self) -> None:
        """Raise the exception a user handler's callback raised during the PHP function that
        is ending (PHP throws it when the function returns)."""
        if self.user_handler is None:
            return  # (getattr(None, ...) raises and clears an AttributeError: every request)
        take = getattr(self.user_handler, "take_pending", None)
        if take is not None:
            exc = take()
            if exc is not None:
                raise exc

    def notice(self, message: str) -> None:
        """Report an E_NOTICE."""
        self.diagnose(message, "Notice")

    # -- module resolution -------------------------------------------------------------
    @property
    def module_name(self) -> str:
        """What ``session_module_name()`` returns: ``files``, ``redis``, ``user``..."""
        if self.user_handler is not None:
            return "user"
        return self.config.save_handler

    def _new_handler(self) -> SaveHandler | None:
        handler = self._pick_handler()
        if handler is not None:
            monitor = self.request.lock_monitor
            # not a method of the session: the handler stays in the session's cache, and a
            # reference back would make a cycle for the garbage collector every request
            handler.on_wait = _report_waiting(monitor) if monitor is not None else None
        return handler

    def _pick_handler(self) -> SaveHandler | None:
        if self.user_handler is not None:
            self.user_handler.config = self.config
            self.user_handler.diagnose = self.diagnose
            return self.user_handler
        return self.module_handler(report=True)

    def module_handler(self, *, report: bool = False) -> SaveHandler | None:
        """The handler of ``session.save_handler`` (``files``...), whether or not a user
        handler is installed: what PHP's SessionHandler class wraps.  None when there is no
        such module (with PHP's warning when ``report``)."""
        name = self.config.save_handler
        cached = self._handler_cache
        if cached is not None and cached[0] == name:
            # one instance per request and module: a restart reuses it (it was closed)
            cached[1].config = self.config
            return cached[1]
        try:
            cls = handler_class(name)
        except KeyError:
            if report:
                self.diagnose(f'Cannot find session save handler "{name}" - session startup failed')
            return None
        handler = cls(self.config)
        self._handler_cache = (name, handler)
        return handler

    # -- session_start -----------------------------------------------------------------
    def start(self, options: Mapping[Any, Any] | None = None) -> bool:
        """``session_start($options)`` (session.c: PHP_FUNCTION(session_start)). Returns PHP's result."""
        ok = self._start(options)
        self._rethrow()
        return ok

    def _start(self, options: Mapping[Any, Any] | None) -> bool:
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(
                f"session_start(): Argument #1 ($options) must be of type array, {zend.type_name(options)} given"
            )
        if self.phase is not Phase.NONE:
            self.notice("Ignoring session_start() because a session is already active")
            return True
        cfg = self.config
        if cfg.use_cookies and self.request.headers_sent:
            self.diagnose("Session cannot be started after headers have already been sent")
            return False
        read_and_close = False
        for key, value in (options or {}).items():
            if isinstance(value, float) or not isinstance(value, (str, int, bool)):
                raise TypeError(
                    f'session_start(): Option "{key}" must be of type string|int|bool, '
                    f"{zend.type_name(value)} given"
                )
            if isinstance(key, int):
                continue
            if key == "read_and_close":
                read_and_close = zend.intval(value) != 0
                continue
            name = cfg.canonical("session." + str(key))
            if name is None or SETTINGS[name].mode == "PERDIR":
                self.diagnose(f'Setting option "{key}" failed')
                continue
            if self.request.headers_sent and not name.startswith("trans_sid_"):
                # (a warning for an earlier option is output too: PHP's CLI displays it)
                self.diagnose("Session ini settings cannot be changed after headers have already been sent")
                self.diagnose(f'Setting option "{key}" failed')
                continue
            try:
                cfg.set(name, value, warn=self.diagnose)
            except ConfigError as exc:
                if str(exc):
                    self.diagnose(str(exc))
                self.diagnose(f'Setting option "{key}" failed')
        if not self._internal_start(shared=read_and_close):
            self.data = {}
            return False
        if read_and_close:
            if self.pending:
                self.load_lazy()
            if self.phase is not Phase.NONE:  # (a lazy read that failed has closed it already)
                self._close(write=False)
        return True

    def begin(self, sid: str | None, options: Mapping[Any, Any] | None = None) -> bool:
        """:meth:`start` with an id the caller chose: ``sid``, or with None a new id,
        whatever the request's cookie (or URL) says.

        The framework integrations (:mod:`phpsess.runtime.framework`) use it: they
        take the id from the cookie themselves and start only a session the store
        holds (:meth:`exists`), so an unknown id is never adopted, and a new session
        always gets a new id and its ``Set-Cookie``.  The id of the request's own cookie
        is found as PHP finds it (no ``Set-Cookie`` again); another id is started as
        after ``session_id(sid)`` (its cookie is sent).  A session already active is left
        as it is (PHP's notice, True), as :meth:`start` does.
        """
        if self.phase is Phase.NONE:
            cfg = self.config
            if sid is None:
                # "" (not None) skips the id discovery of _internal_start(), and
                # _initialize() then creates an id and sends its cookie
                self.id = ""
            elif cfg.use_cookies and self.request.COOKIE.get(cfg.name) == sid:
                self.id = None
            else:
                self.id = sid
        return self.start(options)

    def exists(self, sid: str) -> bool:
        """Whether the store holds a session ``sid``: the handler's ``validate_id``
        (PHP's PS_VALIDATE_SID, what ``use_strict_mode`` asks), without starting or
        locking anything.  An id the handler refuses does not exist; a handler that
        cannot tell (no validator) says it exists, as PHP's strict mode then assumes.

        :raises SaveHandlerError: the store could not be asked (its ``open()`` failed).
        """
        if self.phase is not Phase.NONE and self.handler is not None:
            return self._validate(self.handler, sid)  # open already (and maybe locked): just ask
        handler = self._new_handler()
        if handler is None:
            raise SaveHandlerError(f'Cannot find session save handler "{self.config.save_handler}"')
        if not handler.has_validator:
            return True
        try:
            handler.open(self.config.save_path, self.config.name)
            return self._validate(handler, sid)
        finally:
            self._safe_close(handler)

    def _internal_start(self, *, shared: bool = False) -> bool:
        """php_session_start(): id discovery, initialize, cache limiter (session.c)."""
        cfg = self.config
        req = self.request
        unusable = self._unusable()
        if unusable is not None:
            self.diagnose(unusable)
            return False
        self.enabled = True
        self.define_sid = not cfg.use_only_cookies
        self.send_cookie = bool(cfg.use_cookies or cfg.use_only_cookies)
        if self.id is None:
            if cfg.use_cookies and cfg.name in req.COOKIE:
                value = req.COOKIE[cfg.name]
                self.id = value if isinstance(value, str) else None
                self.send_cookie = False
                self.define_sid = False
            if not cfg.use_only_cookies and self.id is None:
                for source in (req.GET, req.POST):
                    if cfg.name in source:
                        value = source[cfg.name]
                        if isinstance(value, str):
                            self.id = value
                            self.send_cookie = False
                        else:
                            self.id = None
                            self.send_cookie = True
                        break
                if self.id and cfg.referer_check:
                    referer = req.SERVER.get("HTTP_REFERER")
                    if isinstance(referer, str) and referer and cfg.referer_check not in referer:
                        self.id = None
                        self.send_cookie = True
        if self.id is not None and ids.has_forbidden_chars(self.id):
            self.id = None
        ok = self._initialize(shared=shared)
        if ok and cfg.cache_limiter:
            ok = self._send_cache_limiter()
        if not ok:
            self._go(Event.FAIL)
            self.id = None
            return False
        return True

    def _unusable(self) -> str | None:
        """PHP's refusal when php.ini named a save or serialize handler that does not exist
        (session_status() is then PHP_SESSION_DISABLED); None when the session is usable."""
        cfg = self.config
        if cfg.serialize_handler in encoding.HANDLERS and (
            self.user_handler is not None or cfg.save_handler in SAVE_HANDLERS
        ):
            return None  # (the usual answer, without the config's property: not compiled)
        return cfg.unusable

    def _initialize(self, *, shared: bool = False, reopen: bool = False) -> bool:
        """php_session_initialize() of session.c."""
        cfg = self.config
        self._go(Event.OPEN)
        handler = self.handler if reopen and self.handler is not None else self._new_handler()
        if handler is None:
            self._go(Event.FAIL)
            return False
        if reopen and handler is not self.user_handler:
            self._safe_close(handler)
        self.handler = handler
        try:
            handler.open(cfg.save_path, cfg.name)
        except SaveHandlerError as exc:
            if str(exc):
                self.diagnose(str(exc))
            self._safe_close(handler)
            self.handler = None
            self._go(Event.FAIL)
            self.diagnose(
                f"Failed to initialize storage module: {self.module_name} (path: {cfg.save_path})"
            )
            return False
        if not self.id:
            self.id = self._create_sid_at_start(handler)
            if cfg.use_cookies:
                self.send_cookie = True
        elif cfg.use_strict_mode and handler.has_validator and not self._validate(handler, self.id):
            self.id = self._create_sid_at_start(handler) or ids.create_id(cfg)
            if cfg.use_cookies:
                self.send_cookie = True
        self._reset_id()
        if self.data and not self.started_once and isinstance(self.data, dict):
            # PHP replaces $_SESSION silently (php_session_track_init); a port that wrote
            # SESSION before session_start() (an include turned into a once-per-process
            # import...) loses those writes: say so in the log, as PHP does not
            log.warning("SESSION was written before session_start() (keys %s): discarded by session_start(), "
                        "as PHP discards $_SESSION", ", ".join(repr(k) for k in list(self.data)[:10]))
        self.started_once = True
        self.data = {}
        self.bound = True
        if cfg.lazy_start and not reopen:
            self._go(Event.DEFER)
            self._lazy_shared = shared
            return True
        return self._read_and_decode(handler, shared=shared)

    def _create_sid_at_start(self, handler: SaveHandler) -> str:
        """The handler's new id; its failure fails the start and raises PHP's fatal error
        (or the exception a user handler's callback raised, which PHP throws instead)."""
        try:
            return handler.create_sid()
        except SaveHandlerError as exc:
            self._go(Event.FAIL)
            self._safe_close(handler)
            self.handler = None
            self.id = None
            self._rethrow()
            raise PHPFatalError(
                f"Failed to create session ID: {self.module_name} (path: {self.config.save_path})",
                cause=exc,
            )

    def _ensure_loaded(self) -> None:
        if self.phase is Phase.PENDING:
            self.load_lazy()

    def load_lazy(self) -> bool:
        """Lazy start: read and lock the session now, on first use of $_SESSION.

        A failure leaves the session inactive with an empty $_SESSION (and PHP's
        warnings), as a failed session_start() would.
        """
        if self.phase is not Phase.PENDING:
            return self.phase is not Phase.NONE
        handler = self.handler
        if handler is None:  # (cannot happen: PENDING keeps its handler)
            self._go(Event.FAIL)
            return False
        if not self._read_and_decode(handler, shared=self._lazy_shared):
            self._go(Event.FAIL)
            self.id = None
            self.data = {}
            return False
        return True

    def _read_and_decode(self, handler: SaveHandler, *, shared: bool) -> bool:
        """Read (taking the lock), probabilistic gc, decode (the end of php_session_initialize())."""
        cfg = self.config
        assert self.id is not None
        try:
            raw = handler.read(self.id, shared=shared)
        except InvalidSessionId as exc:
            self.diagnose(str(exc))
            return self._read_failed(handler)
        except (LockTimeout, LockBusy) as exc:
            self.diagnose(str(exc))
            return self._read_failed(handler)
        except SaveHandlerError as exc:
            if str(exc):
                self.diagnose(str(exc))
            return self._read_failed(handler)
        self._go(Event.READ)
        self._note_lock_wait(handler)
        monitor = self.request.lock_monitor
        if monitor is not None:
            monitor(self.id, handler.describe_lock(self.id), False, handler.lock_info.waited)
        self._maybe_gc(handler)
        if cfg.memory_limit and raw:
            need = encoding.decode_cost(raw)
            if need > cfg.memory_limit:
                # PHP's fatal error in the middle of session_start(): the script ends, the
                # stored session stays as it is (nothing is written), the lock is released
                self._safe_close(handler)
                self.handler = None
                self._go(Event.FAIL)
                self.id = None
                self.data = {}
                self.bound = False
                raise MemoryLimitExceeded(cfg.memory_limit, need)
        self.lazy_snapshot = raw if cfg.lazy_write else None
        try:
            self.data = self._decode(raw)
        except SessionDecodeError:
            self._cancel_decode()
            return False
        if cfg.concurrency == "merge" and is_array(self.data) and not shared:
            # merge mode: no lock is held while the script works (core/merge.py)
            self.merge_base = merge.snapshot(self.data)
            self._safe_close(handler)
            self._go(Event.UNLOCK)
        return True

    def _validate(self, handler: SaveHandler, sid: str) -> bool:
        try:
            return handler.validate_id(sid)
        except (SaveHandlerError, InvalidSessionId):
            return False

    def _read_failed(self, handler: SaveHandler) -> bool:
        self._safe_close(handler)
        self.handler = None
        self._go(Event.FAIL)
        self.diagnose(
            f"Failed to read session data: {self.module_name} (path: {self.config.save_path})"
        )
        return False

    def _note_lock_wait(self, handler: SaveHandler) -> None:
        """Add the handler's lock wait to the request's telemetry (handlers log long waits)."""
        waited = handler.lock_info.waited
        self.lock_wait += waited
        self.request.lock_wait += waited

    def _maybe_gc(self, handler: SaveHandler) -> None:
        """Probabilistic GC after a successful read (session.c: php_session_gc())."""
        cfg = self.config
        if cfg.gc_probability <= 0:
            return
        r = int(cfg.gc_divisor * self.random())
        if r < cfg.gc_probability:
            try:
                handler.gc(cfg.gc_maxlifetime)
            except SaveHandlerError as exc:
                log.warning("session gc failed: %s", exc)

    def _decode(self, raw: bytes) -> Any:
        if not raw:
            return {}
        handler = self.config.serialize_handler
        if handler == "php" and self.id:
            entries = SPANS.lookup(self.id, raw)
            if entries is not None:
                # exactly what this process last wrote: decode each key on first use
                return SessionData(raw, entries, php_arrays=self.config.php_arrays)
        return encoding.decode(raw, handler, php_arrays=self.config.php_arrays)

    def _cancel_decode(self) -> None:
        """php_session_cancel_decode(): destroy the stored session, fresh $_SESSION."""
        self._php_destroy()
        self.data = {}
        self.bound = True  # php_session_track_init(): a fresh $_SESSION is linked again
        self.diagnose("Failed to decode session object. Session has been destroyed")

    def _php_destroy(self) -> bool:
        """php_session_destroy(): handler destroy + close, id cleared, phase NONE."""
        ok = True
        handler = self.handler
        SPANS.forget(self.id or "")
        if handler is not None:
            try:
                handler.destroy(self.id or "")
            except (SaveHandlerError, InvalidSessionId):
                ok = False
                self.diagnose("Session object destruction failed")
            self._safe_close(handler)
        self.handler = None
        self._go(Event.DESTROY)
        self.id = None
        self.bound = False
        self.lazy_snapshot = None
        return ok

    # -- cookies and headers -----------------------------------------------------------
    def _reset_id(self) -> None:
        """php_session_reset_id(): Set-Cookie when needed, the SID constant."""
        cfg = self.config
        if cfg.use_cookies and self.send_cookie:
            self._send_cookie()
            self.send_cookie = False
        self.sid_constant = f"{cfg.name}={self.id}" if self.define_sid else ""

    def _send_cookie(self) -> None:
        cfg = self.config
        req = self.request
        if headers.has_forbidden_cookie_name_chars(cfg.name):
            self.diagnose(headers.SESSION_NAME_WARNING)
            return
        if req.headers_sent:
            self.diagnose(
                f"Session cookie cannot be sent after headers have already been sent{req.headers_sent_at}"
            )
            return
        cookie = headers.session_cookie(cfg, self.id or "", now=req.clock())
        if cookie is None:
            return
        name, value = cookie
        req.remove_header("Set-Cookie", cfg.name + "=")
        req.add_header(name, value)

    def _send_cache_limiter(self) -> bool:
        """php_session_cache_limiter() of session.c. False when headers were already sent."""
        req = self.request
        if req.headers_sent:
            if self.handler is not None:
                self._safe_close(self.handler)
                self.handler = None
            self._go(Event.FAIL)
            self.diagnose(
                f"Session cache limiter cannot be sent after headers have already been sent{req.headers_sent_at}"
            )
            return False
        limiter = self.config.cache_limiter
        if limiter == "nocache":
            hdrs = headers.cache_limiter_headers(self.config, now=0.0, script_mtime=None)
        else:
            hdrs = headers.cache_limiter_headers(self.config, now=req.clock(), script_mtime=req.script_mtime())
        if not req.headers:
            req.headers.extend(hdrs)  # nothing to replace
        else:
            for name, value in hdrs:
                req.add_header(name, value, replace=True)
        return True

    # -- closing -----------------------------------------------------------------------
    def _skip_warning(self, key: int) -> None:
        self.diagnose(f"Skipping numeric key {key}")

    def _encode(self, data: Mapping[Any, Any]) -> bytes | None:
        cfg = self.config
        return encoding.encode(
            data, cfg.serialize_handler, on_skip=self._skip_warning, precision=cfg.serialize_precision
        )

    def _encode_for_write(self, data: Mapping[Any, Any]) -> tuple[bytes | None, Entries | None]:
        """The payload to store, and its value boundaries when the lazy path can use them."""
        if self.config.serialize_handler == "php" and self.config.serialize_precision == -1:
            payload, entries = encode_entries(data, self._skip_warning)
            if entries is not None:
                return payload, entries
            return self._encode(data), None
        return self._encode(data), None

    def _close(self, *, write: bool) -> None:
        """php_session_save_current_state() then close (session.c)."""
        handler = self.handler
        cfg = self.config
        if self.phase is Phase.PENDING:
            write = False  # lazy start, $_SESSION never touched: nothing read, nothing to write
        close = handler is not None
        try:
            if write and handler is not None and is_array(self.data):
                sid = self.id or ""
                try:
                    if self.phase is Phase.MERGING:
                        self.write_merged(handler, sid)
                    else:
                        val, entries = self._encode_for_write(self.data)
                        # close() follows: the handler may release its lock in the same step
                        handler.write_last(
                            sid,
                            val or b"",
                            touch=(
                                val is not None
                                and cfg.lazy_write
                                and self.lazy_snapshot is not None
                                and val == self.lazy_snapshot
                            ),
                        )
                        if val and entries:
                            SPANS.remember(sid, val, entries)
                except (SaveHandlerError, InvalidSessionId) as exc:
                    SPANS.forget(self.id or "")
                    if str(exc):
                        self.diagnose(str(exc))  # the handler's reason first, as PHP warns it
                    if self.user_handler is not None:
                        name = getattr(self.user_handler, "write_name", type(self.user_handler).__name__ + "::write")
                        self.diagnose(
                            "Failed to write session data using user defined save handler. "
                            f"(session.save_path: {cfg.save_path}, handler: {name})"
                        )
                    else:
                        self.diagnose(
                            f"Failed to write session data ({self.module_name}). Please verify that "
                            f"the current setting of session.save_path is correct ({cfg.save_path})"
                        )
        except BaseException:
            # exit() in a user handler's write ends the script there: PHP calls no close()
            close = handler is not self.user_handler
            raise
        finally:
            if close and handler is not None:
                self._safe_close(handler)
            self.handler = None
            if self.phase is not Phase.NONE:  # (a user callback may have ended it: session_destroy())
                self._go(Event.CLOSE)
            self.lazy_snapshot = None

    def write_merged(self, handler: SaveHandler, sid: str) -> None:
        """Merge mode's write: take the lock again, re-read, apply this request's
        top-level changes (:func:`phpsess.core.merge.merge_stored`), write.

        The handler was closed after the start's read; it is opened and read (locked)
        here and left open: the caller closes it, which releases the lock.

        :raises MergeConflict: ``merge_conflict = error`` and another request changed a
            key this one changed (nothing is written).
        :raises SaveHandlerError: from the handler.
        """
        cfg = self.config
        handler.open(cfg.save_path, cfg.name)
        raw = handler.read(sid)
        stored: Any
        try:
            stored = encoding.decode(raw, cfg.serialize_handler) if raw else {}
        except SessionDecodeError as exc:
            log.warning("merge: stored session %s does not decode (%s); writing this request's data", sid, exc)
            stored = None
        if not isinstance(stored, dict):
            stored = None  # undecodable, or php_serialize holding a non-array: replaced
        merged = merge.merge_stored(self.merge_base, self.data, stored or {}, on_conflict=cfg.merge_conflict)
        if merged is None:
            # nothing changed here: keep the session alive as PHP's lazy_write does,
            # without rewriting it from this request's (possibly stale) copy
            log.debug("merge: session %s unchanged by this request; touching it", sid)
            if cfg.lazy_write:
                handler.update_timestamp(sid, raw)
            else:
                handler.write(sid, raw)
            if stored is not None:
                self.data = stored
            return
        self.data = merged
        payload = self._encode(merged) or b""
        if cfg.lazy_write and payload == raw:
            handler.update_timestamp(sid, payload)
        else:
            handler.write(sid, payload)

    def _safe_close(self, handler: SaveHandler) -> None:
        try:
            handler.close()
        except SaveHandlerError as exc:
            log.warning("session handler close failed: %s", exc)

    def write_close(self) -> bool:
        """``session_write_close()``: False (silently) when not active."""
        if self.phase is Phase.NONE:
            return False
        self._close(write=True)
        self._rethrow()
        return True

    def abort(self) -> bool:
        """``session_abort()``: close without writing."""
        if self.phase is Phase.NONE:
            return False
        self._close(write=False)
        self._rethrow()
        return True

    def reset(self) -> bool:
        """``session_reset()``: re-read the stored data, discarding changes."""
        self._ensure_loaded()
        if self.phase is Phase.NONE:
            return False
        self._initialize(reopen=True)
        self._rethrow()
        return True

    def destroy(self) -> bool:
        """``session_destroy()``."""
        self._ensure_loaded()
        if self.phase is Phase.NONE:
            self.diagnose("Trying to destroy uninitialized session")
            return False
        ok = self._php_destroy()
        self._rethrow()
        return ok

    def unset(self) -> bool:
        """``session_unset()``: empty $_SESSION (copies taken before are unaffected)."""
        self._ensure_loaded()
        if self.phase is Phase.NONE:
            return False
        if is_array(self.data):
            self.data = {}
        return True

    def request_shutdown(self) -> None:
        """PHP's RSHUTDOWN: write and close a session still active. Never raises."""
        self.function = None
        try:
            if self.phase is not Phase.NONE:
                self._close(write=True)
        except MergeConflict as exc:
            # merge_conflict = error, and the script did not write_close() itself
            log.warning("session %s not written (merge mode): %s", self.id, exc)
        except Exception:  # pragma: no cover - last line of defence at shutdown
            log.exception("session shutdown failed")
            if self.handler is not None:
                self._safe_close(self.handler)
            self._go(Event.FAIL)
        finally:
            self._release_parent()

    def _release_parent(self) -> None:
        """A user handler extending SessionHandler that left the module it wraps open (an
        exception, a missing parent::close()): close it, so that no worker keeps the
        session locked after the request (PHP leaves it to the process's end)."""
        pending = getattr(self.user_handler, "take_pending", None) if self.user_handler is not None else None
        if pending is not None:
            exc = pending()
            if exc is not None:
                log.warning("session handler raised during shutdown: %r", exc)
        if self.parent_open:
            self.parent_open = False
            handler = self.module_handler()
            if handler is not None:
                self._safe_close(handler)

    # -- regenerate --------------------------------------------------------------------
    def regenerate_id(self, delete_old: bool = False) -> bool:
        """``session_regenerate_id($delete_old_session)``."""
        ok = self._regenerate_id(delete_old)
        self._rethrow()
        return ok

    def _regenerate_id(self, delete_old: bool) -> bool:
        self._ensure_loaded()
        if self.phase is Phase.NONE:
            self.diagnose("Session ID cannot be regenerated when there is no active session")
            return False
        if self.request.headers_sent:
            self.diagnose("Session ID cannot be regenerated after headers have already been sent")
            return False
        cfg = self.config
        handler = self.handler
        assert handler is not None
        old = self.id or ""
        merging = self.phase is Phase.MERGING
        if delete_old:
            try:
                handler.destroy(old)
            except (SaveHandlerError, InvalidSessionId):
                self._safe_close(handler)
                self.handler = None
                self._go(Event.FAIL)
                self.diagnose(
                    f"Session object destruction failed. ID: {self.module_name} (path: {cfg.save_path})"
                )
                return False
        else:
            try:
                if is_array(self.data):
                    if merging:
                        # merge mode: the old id keeps what other requests wrote meanwhile,
                        # and this request carries the merged data to the new id
                        try:
                            self.write_merged(handler, old)
                        except MergeConflict:
                            self._safe_close(handler)
                            raise
                    else:
                        handler.write(old, self._encode(self.data) or b"")
            except (SaveHandlerError, InvalidSessionId):
                self._safe_close(handler)
                self.handler = None
                self._go(Event.FAIL)
                self.diagnose(f"Session write failed. ID: {self.module_name} (path: {cfg.save_path})")
                return False
        self._safe_close(handler)
        if self.status_value() == Status.NONE:  # (mypy cannot see close() change the phase)
            # the handler's close() ended the session itself (session_destroy() in a user
            # close()): PHP 8.2 crashes here; later PHP versions say this
            self.diagnose("Session ID cannot be regenerated because the save handler closed the session")
            return False
        self.lazy_snapshot = None
        self.id = None
        try:
            handler.open(cfg.save_path, cfg.name)
        except SaveHandlerError as exc:
            self._go(Event.FAIL)
            self.handler = None
            self._rethrow()
            raise PHPFatalError(
                f"Failed to open session: {self.module_name} (path: {cfg.save_path})",
                cause=exc,
            )
        try:
            new = handler.create_sid()
        except SaveHandlerError as exc:
            self._go(Event.FAIL)
            self.handler = None
            self._rethrow()
            raise PHPFatalError(
                f"Failed to create new session ID: {self.module_name} (path: {cfg.save_path})",
                cause=exc,
            )
        if cfg.use_strict_mode and handler.has_validator:
            for _ in range(3):
                if not self._validate(handler, new):
                    break
                new = handler.create_sid()
        self.id = new
        try:
            handler.read(new)
        except (SaveHandlerError, InvalidSessionId) as exc:
            self._safe_close(handler)
            self.handler = None
            self._go(Event.FAIL)
            raise PHPFatalError(
                f"Failed to create(read) session ID: {self.module_name} (path: {cfg.save_path})",
                cause=exc,
            )
        self.handler = handler
        self._go(Event.REGENERATE)
        if merging:
            # the new id starts empty: everything this request holds is a change,
            # written (under the lock, briefly) at close
            self.merge_base = {}
            self._safe_close(handler)
        if cfg.use_cookies:
            self.send_cookie = True
        self._reset_id()
        return True

    # -- ids ---------------------------------------------------------------------------
    def create_id(self, prefix: str = "") -> str | bool:
        """``session_create_id($prefix)``."""
        new = self._create_id(prefix)
        self._rethrow()
        return new

    def _create_id(self, prefix: str) -> str | bool:
        if prefix and not ids.is_valid_id(prefix):
            self.diagnose(
                'Prefix cannot contain special characters. Only the A-Z, a-z, 0-9, "-", and "," '
                "characters are allowed"
            )
            return False
        handler = self.handler
        if self.phase is not Phase.NONE and handler is not None:
            new = ""
            for _ in range(3):
                try:
                    new = handler.create_sid()
                except SaveHandlerError:
                    new = ""
                    break
                if not (handler.has_validator and self._validate(handler, new)):
                    break
            if not new:
                self.diagnose("Failed to create new ID")
                return False
        else:
            new = ids.create_id(self.config)
        return prefix + new

    def set_id(self, sid: str | None) -> str | bool:
        """``session_id($id)``: returns the previous id."""
        old = self.id or ""
        if sid is not None:
            if self.phase is not Phase.NONE:
                self.diagnose("Session ID cannot be changed when a session is active")
                return False
            if self.config.use_cookies and self.request.headers_sent:
                self.diagnose("Session ID cannot be changed after headers have already been sent")
                return False
            self.id = sid
        return old.split("\0", 1)[0]

    # -- gc, encode, decode ------------------------------------------------------------
    def gc(self) -> int | None:
        """``session_gc()``: the number of sessions deleted; None where PHP returns false
        (no active session: PHP's warning; the handler failed)."""
        n = self._gc()
        self._rethrow()
        return n

    def _gc(self) -> int | None:
        self._ensure_loaded()
        if self.phase is Phase.NONE or self.handler is None:
            self.diagnose("Session cannot be garbage collected when there is no active session")
            return None
        try:
            n = self.handler.gc(self.config.gc_maxlifetime)
        except SaveHandlerError as exc:
            log.warning("session gc failed: %s", exc)
            return None
        return None if n < 0 else n

    def encode(self) -> bytes | bool:
        """``session_encode()``: the encoded bytes, or False."""
        self._ensure_loaded()
        if not self.bound or not is_array(self.data):
            self.diagnose("Cannot encode non-existent session")
            return False
        val = self._encode(self.data)
        if val is None:
            return False
        return val

    def decode(self, payload: bytes) -> bool:
        """``session_decode($data)``."""
        self._ensure_loaded()
        if self.phase is Phase.NONE:
            self.diagnose("Session data cannot be decoded when there is no active session")
            return False
        try:
            decoded = (
                encoding.decode(payload, self.config.serialize_handler, php_arrays=self.config.php_arrays)
                if payload else {}
            )
        except SessionDecodeError:
            self._cancel_decode()
            return False
        if self.config.serialize_handler == "php_serialize" or not is_array(self.data):
            self.data = decoded
        elif isinstance(decoded, dict):
            self.data.update(decoded)
        return True

    # -- settings guarded by state -----------------------------------------------------
    def check_changeable(self, what: str) -> bool:
        """SESSION_CHECK_ACTIVE_STATE / OUTPUT_STATE for ``what`` (e.g. "Session name")."""
        if self.phase is not Phase.NONE:
            self.diagnose(f"{what} cannot be changed when a session is active")
            return False
        if self.request.headers_sent:
            self.diagnose(f"{what} cannot be changed after headers have already been sent")
            return False
        return True

    def set_save_handler(self, handler: SaveHandler) -> bool:
        """``session_set_save_handler($handler)``."""
        if not self.check_changeable("Session save handler"):
            return False
        self.user_handler = handler
        self.config.use_user_handler()
        return True

    def set_module_name(self, module: str) -> bool:
        """``session_module_name($module)`` setter part."""
        if not self.check_changeable("Session save handler module"):
            return False
        if module.lower() == "user":
            raise ValueError('session_module_name(): Argument #1 ($module) cannot be "user"')
        try:
            handler_class(module)
        except KeyError:
            self.diagnose(f'Session handler module "{module}" cannot be found')
            return False
        self.user_handler = None
        self.config.set("save_handler", module)
        return True

    def status_value(self) -> int:
        """``session_status()``."""
        if self.phase is Phase.NONE and not self.enabled and self.config.unusable is not None:
            return int(Status.DISABLED)
        return int(self.status)
