"""PHP's session API under PHP's names: session_start(), SESSION, ini_set(), header(), ... No I/O
of its own: every function acts on the current request (phpsess.session.request.current_request())
and its Session.

Only this module (through Session.diagnose) turns PHP's diagnostics into
:class:`~phpsess.errors.PHPWarning` / :class:`~phpsess.errors.PHPNotice`.

Strings: PHP strings are bytes.  A function whose PHP result is text
(``session_id()``, ``session_name()``, ``ini_get()``...) returns ``str``;
``session_encode()`` returns ``str`` when the encoded session is valid UTF-8
and ``bytes`` otherwise, so nothing is ever lost (docs/porting.md).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import MutableMapping
from typing import Any, Callable, Final, Iterator, Mapping

from .core import codec, http as headers, zend
from .compiled import IntOrFalse
from .core.config import SETTINGS
from .core.zend import floatval, intval, strval
from .core.engine import (
    E_ALL,
    E_DEPRECATED,
    E_ERROR,
    E_NOTICE,
    E_STRICT,
    E_USER_DEPRECATED,
    E_USER_ERROR,
    E_USER_NOTICE,
    E_USER_WARNING,
    E_WARNING,
    EngineConfig,
    parse_error_level,
)
from .core.superglobals import (
    UPLOAD_ERR_CANT_WRITE,
    UPLOAD_ERR_EXTENSION,
    UPLOAD_ERR_FORM_SIZE,
    UPLOAD_ERR_INI_SIZE,
    UPLOAD_ERR_NO_FILE,
    UPLOAD_ERR_NO_TMP_DIR,
    UPLOAD_ERR_OK,
    UPLOAD_ERR_PARTIAL,
)
from .session.obuffer import (
    PHP_OUTPUT_HANDLER_CLEAN,
    PHP_OUTPUT_HANDLER_CONT,
    PHP_OUTPUT_HANDLER_END,
    PHP_OUTPUT_HANDLER_FINAL,
    PHP_OUTPUT_HANDLER_FLUSH,
    PHP_OUTPUT_HANDLER_START,
    PHP_OUTPUT_HANDLER_STDFLAGS,
    PHP_OUTPUT_HANDLER_WRITE,
)
from .errors import ConfigError, PHPDeprecated, PHPFatalError, PHPNotice, PHPWarning
from .storage.base import SaveHandler
from .session.request import HeaderRefused, Request
from .session.context import current_request
from .session.session import Session
from .core.state import Phase, Status

__all__ = [
    "PHP_SESSION_DISABLED",
    "PHP_SESSION_NONE",
    "PHP_SESSION_ACTIVE",
    "SESSION",
    "GET",
    "POST",
    "COOKIE",
    "SERVER",
    "REQUEST",
    "FILES",
    "session_start",
    "session_write_close",
    "session_commit",
    "session_abort",
    "session_reset",
    "session_destroy",
    "session_unset",
    "session_regenerate_id",
    "session_id",
    "session_name",
    "session_status",
    "session_save_path",
    "session_module_name",
    "session_set_save_handler",
    "session_gc",
    "session_create_id",
    "session_encode",
    "session_decode",
    "session_get_cookie_params",
    "session_set_cookie_params",
    "session_cache_limiter",
    "session_cache_expire",
    "session_register_shutdown",
    "ini_get",
    "ini_set",
    "ini_restore",
    "header",
    "header_remove",
    "headers_sent",
    "headers_list",
    "setcookie",
    "http_response_code",
    "register_shutdown_function",
    "serialize",
    "unserialize",
    "session_lock_wait",
    "echo",
    "intval",
    "floatval",
    "strval",
    "ob_start",
    "ob_get_clean",
    "ob_get_contents",
    "ob_get_length",
    "ob_get_level",
    "ob_get_flush",
    "ob_get_status",
    "ob_end_clean",
    "ob_end_flush",
    "ob_clean",
    "ob_flush",
    "ob_list_handlers",
    "ob_implicit_flush",
    "flush",
    "error_reporting",
    "trigger_error",
    "is_uploaded_file",
    "move_uploaded_file",
    "PHP_OUTPUT_HANDLER_START",
    "PHP_OUTPUT_HANDLER_WRITE",
    "PHP_OUTPUT_HANDLER_FLUSH",
    "PHP_OUTPUT_HANDLER_CLEAN",
    "PHP_OUTPUT_HANDLER_FINAL",
    "PHP_OUTPUT_HANDLER_CONT",
    "PHP_OUTPUT_HANDLER_END",
    "PHP_OUTPUT_HANDLER_STDFLAGS",
    "E_ERROR",
    "E_WARNING",
    "E_NOTICE",
    "E_DEPRECATED",
    "E_USER_ERROR",
    "E_USER_WARNING",
    "E_USER_NOTICE",
    "E_USER_DEPRECATED",
    "E_STRICT",
    "E_ALL",
    "UPLOAD_ERR_OK",
    "UPLOAD_ERR_INI_SIZE",
    "UPLOAD_ERR_FORM_SIZE",
    "UPLOAD_ERR_PARTIAL",
    "UPLOAD_ERR_NO_FILE",
    "UPLOAD_ERR_NO_TMP_DIR",
    "UPLOAD_ERR_CANT_WRITE",
    "UPLOAD_ERR_EXTENSION",
]

PHP_SESSION_DISABLED: Final = int(Status.DISABLED)
PHP_SESSION_NONE: Final = int(Status.NONE)
PHP_SESSION_ACTIVE: Final = int(Status.ACTIVE)


def _session(function: str) -> Session:
    s = current_request().session
    s.function = function
    s.reporter = report
    return s


#: PHP's diagnostic levels and the warnings that carry them
_CATEGORIES: Final[dict[str, type[PHPWarning]]] = {"Warning": PHPWarning, "Notice": PHPNotice, "Deprecated": PHPDeprecated}
_PKG_DIR: Final = os.path.dirname(__file__)


def report(function: str | None, message: str, level: str = "Warning") -> None:
    """Raise one of PHP's diagnostics as a Python warning: :class:`PHPWarning` (or
    ``PHPNotice``, ``PHPDeprecated``) with PHP's text, ``function(): message``.

    It names the line of the script that called into phpsess (the first frame outside
    the package), and is shown every time, as PHP shows each diagnostic, not once per
    line as Python's default warning filter would.
    """
    category = _CATEGORIES.get(level, PHPWarning)
    text = f"{function}(): {message}" if function else message
    try:
        # (0, not 1: compiled, this function has no frame of its own and 0 is the caller's)
        frame: Any = sys._getframe(0)
    except ValueError:  # compiled, called straight from C: no Python frame
        frame = None
    while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
        frame = frame.f_back
    if frame is None:
        warnings.warn(category(text), stacklevel=2)
        return
    warnings.warn_explicit(
        category(text), category, frame.f_code.co_filename, frame.f_lineno,
        module=frame.f_globals.get("__name__", "__main__"),
        registry={},  # a fresh registry: never deduplicated
        module_globals=frame.f_globals,
    )


def _text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


# -- lifecycle ---------------------------------------------------------------------------
def session_start(options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> bool:
    """Start or resume the session: PHP's ``session_start(array $options = [])``.

    ``options`` may hold any ``session.*`` setting without its prefix (they stay
    in force for the rest of the request) and ``read_and_close``; phpsess adds
    ``lazy_start`` and ``concurrency`` ("lock" or "merge").  The same options may
    be given as keyword arguments, ``session_start(read_and_close=True)``, alone or
    with the dict (a keyword wins over the dict's entry of that name); they are
    checked as PHP checks the array's entries, with PHP's messages.
    """
    if kwargs and (options is None or isinstance(options, Mapping)):
        options = {**(options or {}), **kwargs}
    return _session("session_start").start(options)


def session_write_close() -> bool:
    """Write the session and release its lock; False when no session is active."""
    return _session("session_write_close").write_close()


def session_commit() -> bool:
    """Alias of :func:`session_write_close`."""
    return _session("session_commit").write_close()


def session_abort() -> bool:
    """Close the session without writing the changes."""
    return _session("session_abort").abort()


def session_reset() -> bool:
    """Re-initialise $_SESSION with the stored data, discarding this request's changes."""
    return _session("session_reset").reset()


def session_destroy() -> bool:
    """Delete the stored session; $_SESSION keeps its contents but is no longer saved."""
    return _session("session_destroy").destroy()


def session_unset() -> bool:
    """Empty $_SESSION; False when no session is active."""
    return _session("session_unset").unset()


def session_regenerate_id(delete_old_session: bool = False) -> bool:
    """Move the session to a new id (sends a new cookie); optionally delete the old one."""
    return _session("session_regenerate_id").regenerate_id(bool(delete_old_session))


def session_status() -> int:
    """PHP_SESSION_DISABLED (0), PHP_SESSION_NONE (1) or PHP_SESSION_ACTIVE (2)."""
    return current_request().session.status_value()


def session_lock_wait() -> float:
    """phpsess extension: seconds this request has waited for session locks so far."""
    return current_request().lock_wait


# -- ids and names -----------------------------------------------------------------------
def session_id(id: Any = None) -> str | bool:  # noqa: A002 - PHP's parameter name (Any: checked here, as PHP)
    """Get the current id, or set the id used by the next session_start() (returns the old).

    As PHP's ``?string`` parameter: bytes are the id's bytes, an int or float becomes its
    string; anything else raises TypeError.
    """
    if id is not None and not isinstance(id, str):
        if isinstance(id, (bytes, bytearray)):
            id = bytes(id).decode("utf-8", "surrogateescape")  # noqa: A001
        elif isinstance(id, (int, float)):
            id = zend.strval(id)  # noqa: A001
        else:
            raise TypeError(
                f"session_id(): Argument #1 ($id) must be of type ?string, {zend.type_name(id)} given"
            )
    return _session("session_id").set_id(id)


def session_create_id(prefix: str = "") -> str | bool:
    """A new, unused session id, prefixed with ``prefix``."""
    return _session("session_create_id").create_id(prefix)


def session_name(name: str | None = None) -> str | bool:
    """Get or set the session (cookie) name; returns the old name."""
    s = _session("session_name")
    old = s.config.name
    if name is None:
        return old
    if not s.check_changeable("Session name"):
        return False
    try:
        s.config.set("name", name)
    except ConfigError as exc:
        s.diagnose(str(exc))
    return old


def session_save_path(path: str | None = None) -> str | bool:
    """Get or set ``session.save_path``; returns the old value."""
    s = _session("session_save_path")
    old = s.config.save_path
    if path is None:
        return old
    if "\0" in path:
        raise ValueError("session_save_path(): Argument #1 ($path) must not contain any null bytes")
    if not s.check_changeable("Session save path"):
        return False
    s.config.set("save_path", path)
    return old


def session_module_name(module: str | None = None) -> str | bool:
    """Get or set the save handler module (``files``, ``redis``, ``memory``; ``user`` is refused)."""
    s = _session("session_module_name")
    old = s.module_name
    if module is None:
        return old
    if not s.set_module_name(module):
        return False
    return old


def session_set_save_handler(handler: Any, register_shutdown: Any = True, *more: Any) -> bool:
    """Install a user save handler.

    Either an object with PHP's ``SessionHandlerInterface`` methods (``open``,
    ``close``, ``read``, ``write``, ``destroy``, ``gc``; optionally ``create_sid``,
    ``validateId``, ``updateTimestamp``) returning PHP-style results, or a
    :class:`~phpsess.storage.base.SaveHandler` instance, or (PHP's old form)
    six to nine callables.
    """
    from .storage.user import UserHandler, callables_handler

    s = _session("session_set_save_handler")
    if more or callable(handler) and not isinstance(handler, SaveHandler) and callable(register_shutdown):
        funcs = (handler, register_shutdown, *more)
        if len(funcs) < 6 or len(funcs) > 9:
            raise TypeError("Wrong parameter count for session_set_save_handler()")
        wrapped: SaveHandler = callables_handler(funcs, s.config)
        register = False
    else:
        if isinstance(handler, SaveHandler):
            wrapped = handler
        else:
            for method in ("open", "close", "read", "write", "destroy", "gc"):
                if not callable(getattr(handler, method, None)):
                    raise TypeError(
                        "session_set_save_handler(): Argument #1 ($open) must be of type "
                        f"SessionHandlerInterface, {zend.type_name(handler)} given"
                    )
            wrapped = UserHandler(handler, s.config)
        register = bool(register_shutdown)
    if not s.set_save_handler(wrapped):
        return False
    if register:
        session_register_shutdown()
    return True


# -- gc, encode, decode ------------------------------------------------------------------
def session_gc() -> IntOrFalse:
    """Run the handler's garbage collection now; the number of sessions deleted, or False."""
    n = _session("session_gc").gc()
    if n is None:
        return False
    return n


def session_encode() -> str | bytes | bool:
    """The current $_SESSION encoded with ``session.serialize_handler``, or False."""
    out = _session("session_encode").encode()
    if isinstance(out, bytes):
        return _text(out)
    return out


def session_decode(data: str | bytes) -> bool:
    """Decode ``data`` into $_SESSION (a failure destroys the session, as in PHP)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    return _session("session_decode").decode(raw)


# -- cookies and cache limiter -----------------------------------------------------------
def session_get_cookie_params() -> dict[str, Any]:
    """``lifetime``, ``path``, ``domain``, ``secure``, ``httponly``, ``samesite``, in PHP's order."""
    c = current_request().config
    return {
        "lifetime": c.cookie_lifetime,
        "path": c.cookie_path,
        "domain": c.cookie_domain,
        "secure": c.cookie_secure,
        "httponly": c.cookie_httponly,
        "samesite": c.cookie_samesite,
    }


_COOKIE_KEYS: Final = ("lifetime", "path", "domain", "secure", "httponly", "samesite")


def session_set_cookie_params(
    lifetime_or_options: int | Mapping[Any, Any],
    path: str | None = None,
    domain: str | None = None,
    secure: bool | None = None,
    httponly: bool | None = None,
) -> bool:
    """Set the session cookie parameters (both PHP signatures: an options dict, or positional)."""
    s = _session("session_set_cookie_params")
    cfg = s.config
    if not cfg.use_cookies:
        s.diagnose("Session cookies cannot be used when session.use_cookies is disabled")
        return False
    if not s.check_changeable("Session cookie parameters"):
        return False
    values: dict[str, Any] = {}
    if isinstance(lifetime_or_options, Mapping):
        for n, (arg, argname) in enumerate(
            ((path, "path"), (domain, "domain"), (secure, "secure"), (httponly, "httponly")), start=2
        ):
            if arg is not None:
                raise ValueError(
                    f"session_set_cookie_params(): Argument #{n} (${argname}) must be null when "
                    "argument #1 ($lifetime_or_options) is an array"
                )
        for key, value in lifetime_or_options.items():
            if isinstance(key, int):
                s.diagnose("Argument #1 ($lifetime_or_options) cannot contain numeric keys")
                continue
            low = str(key).lower()
            if low in _COOKIE_KEYS:
                values[low] = value
            else:
                s.diagnose(f'Argument #1 ($lifetime_or_options) contains an unrecognized key "{key}"')
        if not values:
            raise ValueError(
                "session_set_cookie_params(): Argument #1 ($lifetime_or_options) must contain at "
                "least 1 valid key"
            )
    else:
        values["lifetime"] = lifetime_or_options
        for key, value in (("path", path), ("domain", domain), ("secure", secure), ("httponly", httponly)):
            if value is not None:
                values[key] = value
    for key in _COOKIE_KEYS:
        if key not in values:
            continue
        value = values[key]
        if key in ("secure", "httponly"):
            value = bool(value)
        try:
            cfg.set("cookie_" + key, value, warn=s.diagnose)
        except ConfigError as exc:
            if str(exc):
                s.diagnose(str(exc))
            return False
    return True


def session_cache_limiter(value: str | None = None) -> str | bool:
    """Get or set ``session.cache_limiter`` (``nocache``, ``private``, ``private_no_expire``, ``public``)."""
    s = _session("session_cache_limiter")
    old = s.config.cache_limiter
    if value is None:
        return old
    if not s.check_changeable("Session cache limiter"):
        return False
    s.config.set("cache_limiter", value)
    return old


def session_cache_expire(value: Any = None) -> IntOrFalse:  # (Any: checked here, as PHP)
    """Get or set ``session.cache_expire`` in minutes (while active: warns, returns the value)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str) and not zend.is_numeric_string(value) or not isinstance(value, (str, int, float)):
        if value is not None:  # PHP's ?int parameter: only numeric strings convert
            raise TypeError(
                f"session_cache_expire(): Argument #1 ($value) must be of type ?int, {zend.type_name(value)} given"
            )
    s = _session("session_cache_expire")
    old = s.config.cache_expire
    if value is None:
        return old
    if s.active:
        s.diagnose("Session cache expiration cannot be changed when a session is active")
        return old
    if s.request.headers_sent:
        s.diagnose("Session cache expiration cannot be changed after headers have already been sent")
        return False
    s.config.set("cache_expire", value, warn=s.diagnose)
    return old


def session_register_shutdown() -> None:
    """Write and close the session when the request ends (after other shutdown functions)."""
    req = current_request()

    def _register_close() -> None:
        req.register_shutdown_function(session_write_close)

    req.register_shutdown_function(_register_close)


# -- ini -----------------------------------------------------------------------------------
def ini_get(option: str) -> str | bool:
    """The raw string value of a ``session.*`` (or ``memcached.sess_*``) setting, or of
    the engine settings phpsess honours (``output_buffering``, ``display_errors``...,
    ``serialize_precision``), or False for an unknown setting."""
    req = current_request()
    if option == "serialize_precision":
        return str(req.config.serialize_precision)
    value = req.config.get(option)
    if value is None:
        value = req.engine.get(option)
    if value is None:
        return False
    return value


def ini_set(option: str, value: Any) -> str | bool:
    """Set a ``session.*`` (or ``memcached.sess_*``) setting, or an engine setting phpsess
    honours, for this request; returns the old value or False."""
    if EngineConfig.knows(option):
        old = current_request().engine.set(option, value)
        if old is None:
            return False
        return old
    s = _session("ini_set")
    req = s.request
    cfg = req.config
    if option == "serialize_precision":
        try:
            return cfg.set_serialize_precision(value)
        except ConfigError:
            return False
    key = cfg.canonical(option)
    if key is None:
        return False
    setting = SETTINGS[key]
    if setting.ext != "session":
        # an extension's setting (memcached.sess_*): its own validator only; PHP lets it
        # change while a session is active
        try:
            return cfg.set(key, value, warn=s.diagnose)
        except ConfigError as exc:
            if str(exc):
                s.diagnose(str(exc), exc.level)
            return False
    if not option.startswith("session.") and not (setting.phpsess_only or setting.core):
        return False
    if setting.mode == "PERDIR":
        return False
    if not key.startswith("trans_sid_") and not SETTINGS[key].core:
        if s.active:
            s.diagnose("Session ini settings cannot be changed when a session is active")
            return False
        if req.headers_sent:
            s.diagnose("Session ini settings cannot be changed after headers have already been sent")
            return False
    try:
        return cfg.set(key, value, warn=s.diagnose)
    except ConfigError as exc:
        if str(exc):
            s.diagnose(str(exc))
        return False


def ini_restore(option: str) -> None:
    """Restore a ``session.*`` setting to its process-wide value."""
    from .session.settings import default_config

    cfg = current_request().config
    if option == "serialize_precision":
        cfg.set_serialize_precision(default_config().serialize_precision)
        return
    key = cfg.canonical(option)
    if key is not None:
        raw = default_config().get(key)
        if raw is not None:
            cfg.set(key, raw, startup=True)


# -- output layer --------------------------------------------------------------------------
def _headers_sent_warning(req: Request) -> None:
    req.session.function = None
    report(None, f"Cannot modify header information - headers already sent{_by(req)}")


def _by(req: Request) -> str:
    return f" by{req.headers_sent_at}" if req.headers_sent_at else ""


def header(header: str, replace: bool = True, response_code: int = 0) -> None:
    """PHP's ``header()``: add a response header (or ``HTTP/1.1 404 Not Found`` status line)."""
    req = current_request()
    if req.headers_sent:
        _headers_sent_warning(req)
        return
    try:
        req.header(header, replace, response_code)
    except HeaderRefused as exc:  # header injection: PHP warns and sends nothing of it
        req.session.function = None
        report(None, str(exc))


def header_remove(name: str | None = None) -> None:
    """PHP's ``header_remove()``: drop headers named ``name``, or all headers."""
    req = current_request()
    if req.headers_sent:
        return
    if name is None:
        req.headers = []
    else:
        req.remove_header(name)


def headers_sent() -> bool:
    """True once status and headers have gone out (after the first body byte)."""
    return current_request().headers_sent


def headers_list() -> list[str]:
    """The headers that will be (or were) sent, as ``"Name: value"`` (empty in CLI, as PHP)."""
    req = current_request()
    if req.cli:
        return []
    return req.headers_list()


def http_response_code(response_code: int = 0) -> IntOrFalse:
    """Get or set the response status; returns the previous one."""
    req = current_request()
    old = req.status
    if response_code:
        if req.headers_sent:
            _headers_sent_warning(req)
            return False
        req.status = int(response_code)
    return old


def setcookie(
    name: str,
    value: str = "",
    expires_or_options: int | Mapping[str, Any] = 0,
    path: str = "",
    domain: str = "",
    secure: bool = False,
    httponly: bool = False,
) -> bool:
    """PHP's ``setcookie()`` (both signatures); False when headers were already sent."""
    req = current_request()
    if req.headers_sent:
        _headers_sent_warning(req)
        return False
    if isinstance(expires_or_options, Mapping):
        line = headers.setcookie_options(name, value, expires_or_options, now=req.clock())
    else:
        line = headers.setcookie_header(
            name, value, int(expires_or_options), path, domain, bool(secure), bool(httponly),
            now=req.clock(),
        )
    req.add_header("Set-Cookie", line)
    return True


def register_shutdown_function(callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback(*args)`` at the end of the request, before the session is written."""
    current_request().register_shutdown_function(callback, *args)


# -- output control ------------------------------------------------------------------------
def echo(*values: Any) -> None:
    """PHP's ``echo``: each value as PHP prints it (no separator, no newline)."""
    from .core.zend import strval

    req = current_request()
    for v in values:
        req.write(v if isinstance(v, bytes) else strval(v).encode("utf-8", "surrogateescape"))


def _ob_notice(function: str, message: str) -> bool:
    report(function, message, "Notice")
    return False


def ob_start(callback: Callable[..., Any] | None = None, chunk_size: int = 0,
             flags: int = PHP_OUTPUT_HANDLER_STDFLAGS) -> bool:
    """Start an output buffer; ``callback(buffer, phase)`` (if given) filters what leaves it
    (a str, or False to pass the buffer unchanged); ``chunk_size`` > 0 flushes it each time
    it holds that many bytes."""
    out = current_request().output
    if out.in_handler:
        report("ob_start", "Cannot use output buffering in output buffering display handlers", "Notice")
        return False
    out.start(callback, int(chunk_size), int(flags))
    return True


def _text_out(data: bytes | None) -> str | bool:
    if data is None:
        return False
    return data.decode("utf-8", "surrogateescape")


def ob_get_contents() -> str | bool:
    """The top buffer's contents, or False without a buffer."""
    return _text_out(current_request().output.contents())


def ob_get_length() -> IntOrFalse:
    """The length in bytes of the top buffer's contents, or False without a buffer."""
    data = current_request().output.contents()
    if data is None:
        return False
    return len(data)


def ob_get_level() -> int:
    """How many output buffers are active (1 under ``output_buffering`` before any ob_start())."""
    return current_request().output.level


def ob_get_clean() -> str | bool:
    """The top buffer's contents, and the buffer removed; False without a buffer."""
    out = current_request().output
    data = out.contents()
    if data is None:
        return False
    out.end(discard=True)
    return _text_out(data)


def ob_get_flush() -> str | bool:
    """The top buffer's contents, and the buffer flushed and removed."""
    out = current_request().output
    data = out.contents()
    if data is None:
        return _ob_notice("ob_get_flush", "Failed to delete and flush buffer. No buffer to delete or flush")
    out.end(discard=False)
    return _text_out(data)


def ob_end_clean() -> bool:
    """Discard the top buffer and remove it."""
    if not current_request().output.end(discard=True):
        return _ob_notice("ob_end_clean", "Failed to delete buffer. No buffer to delete")
    return True


def ob_end_flush() -> bool:
    """Send the top buffer down (through its callback) and remove it."""
    if not current_request().output.end(discard=False):
        return _ob_notice("ob_end_flush", "Failed to delete and flush buffer. No buffer to delete or flush")
    return True


def ob_clean() -> bool:
    """Discard the top buffer's contents."""
    if not current_request().output.clean():
        return _ob_notice("ob_clean", "Failed to delete buffer. No buffer to delete")
    return True


def ob_flush() -> bool:
    """Send the top buffer's contents down one level (through its callback)."""
    if not current_request().output.flush():
        return _ob_notice("ob_flush", "Failed to flush buffer. No buffer to flush")
    return True


def ob_list_handlers() -> list[str]:
    """The active buffers' handler names, outermost first (``default output handler``...)."""
    return current_request().output.handlers()


def ob_get_status() -> dict[str, Any]:
    """PHP's ``ob_get_status()`` of the top buffer (``{}`` without one)."""
    return current_request().output.status()


def ob_implicit_flush(enable: bool = True) -> None:
    """PHP's ``ob_implicit_flush()``: output reaches the server as it is written anyway."""
    current_request().engine.set("implicit_flush", "1" if enable else "0")


def flush() -> None:
    """PHP's ``flush()``: push what left the output buffers to the client.  Body bytes are
    handed to the server as they leave the buffers, so there is nothing left to push; like
    PHP's, it neither empties the output buffers nor sends the headers."""


def error_reporting(level: int | str | None = None) -> int:
    """PHP's ``error_reporting()``: the current level; with ``level``, set it (old one returned)."""
    eng = current_request().engine
    old = int(eng.value("error_reporting"))
    if level is not None:
        eng.set("error_reporting", str(parse_error_level(str(level))))
    return old


def trigger_error(message: str, error_level: int = E_USER_NOTICE) -> bool:
    """PHP's ``trigger_error()``: a user notice, warning or deprecation with ``message``."""
    if error_level == E_USER_ERROR:
        raise PHPFatalError(message)
    if error_level not in (E_USER_NOTICE, E_USER_WARNING, E_USER_DEPRECATED):
        raise ValueError("trigger_error(): Argument #2 ($error_level) must be one of E_USER_ERROR, "
                         "E_USER_WARNING, E_USER_NOTICE, or E_USER_DEPRECATED")
    level = {E_USER_NOTICE: "Notice", E_USER_WARNING: "Warning", E_USER_DEPRECATED: "Deprecated"}[error_level]
    current_request()  # (a CGI script's first call makes it the request, whose settings show it)
    report(None, message, level)
    return True


# -- uploads -------------------------------------------------------------------------------
def is_uploaded_file(filename: str) -> bool:
    """True when ``filename`` is the temporary file of one of this request's uploads."""
    return str(filename) in current_request().uploaded_files


def move_uploaded_file(from_: str, to: str) -> bool:
    """Move an upload's temporary file to ``to``; False (silently) when ``from_`` is not one."""
    import shutil

    req = current_request()
    src = str(from_)
    if src not in req.uploaded_files:
        return False
    try:
        try:
            os.replace(src, to)
        except OSError:
            shutil.copyfile(src, to)
            os.unlink(src)
        os.chmod(to, 0o644)  # PHP: 0666 & ~umask
    except OSError as exc:
        report("move_uploaded_file", f"Unable to move \"{src}\" to \"{to}\": {exc.strerror}")
        return False
    req.uploaded_files.discard(src)
    return True


# -- serialize -----------------------------------------------------------------------------
def serialize(value: Any) -> bytes:
    """PHP's ``serialize()``: the bytes PHP would produce for ``value``."""
    return codec.dumps(value)


def unserialize(data: bytes | str, allowed_classes: Any = True) -> Any:
    """PHP's ``unserialize()`` (raises SessionDecodeError where PHP returns false)."""
    return codec.loads(data, allowed_classes=allowed_classes)


# -- superglobals --------------------------------------------------------------------------
def _str_key(key: str) -> Any:
    """:func:`codec.php_array_key` of a str key: a name-like key (most are) as it is,
    without the call."""
    if not key or key[0] not in "-0123456789":
        return key
    return codec.php_array_key(key)


class _SessionProxy(MutableMapping):  # type: ignore[type-arg]
    """``$_SESSION`` of the current request: a mapping that forwards to ``Session.data``."""

    __slots__ = ()

    @staticmethod
    def _data() -> Any:
        s = current_request().session
        if s.phase is Phase.PENDING:  # (an attribute test: this runs at every $_SESSION access)
            _session("session_start").load_lazy()
        return s.data

    @staticmethod
    def _key(data: Any, key: Any) -> Any:
        # PHP arrays store "12" as 12 ($_SESSION['12'] is then skipped by the php
        # serializer); a "12" key decoded from stored data stays a string, so reads
        # fall back to the key as given
        if isinstance(key, str):
            k = _str_key(key)
            if k != key and (k in data or key not in data):
                return k
        return key

    def __getitem__(self, key: Any) -> Any:
        data = self._data()
        return data[self._key(data, key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        data = self._data()
        data[_str_key(key) if isinstance(key, str) else key] = value

    def __delitem__(self, key: Any) -> None:
        data = self._data()
        del data[self._key(data, key)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __contains__(self, key: object) -> bool:
        data = self._data()
        return self._key(data, key) in data

    def get(self, key: Any, default: Any = None) -> Any:
        data = self._data()
        return data.get(self._key(data, key), default)

    def copy(self) -> dict[Any, Any]:
        """A plain dict copy of $_SESSION."""
        return dict(self._data())

    def replace(self, data: Mapping[Any, Any]) -> None:
        """PHP's ``$_SESSION = [...]``: replace the whole array."""
        current_request().session.data = {
            _str_key(k) if isinstance(k, str) else k: v for k, v in data.items()
        }

    def __repr__(self) -> str:
        return repr(self._data())

    def __eq__(self, other: object) -> bool:
        return bool(self._data() == other)

    __hash__ = None  # type: ignore[assignment]


class _RequestDictProxy(MutableMapping):  # type: ignore[type-arg]
    """``$_GET``/``$_POST``/``$_COOKIE``/``$_SERVER`` of the current request."""

    __slots__ = ("_attr",)

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def _d(self) -> dict[str, Any]:
        d: dict[str, Any] = getattr(current_request(), self._attr)
        return d

    def __getitem__(self, key: str) -> Any:
        return self._d()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._d()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._d()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d())

    def __len__(self) -> int:
        return len(self._d())

    def __repr__(self) -> str:
        return repr(self._d())

    def __eq__(self, other: object) -> bool:
        return bool(self._d() == other)

    __hash__ = None  # type: ignore[assignment]


SESSION = _SessionProxy()
GET = _RequestDictProxy("GET")
POST = _RequestDictProxy("POST")
COOKIE = _RequestDictProxy("COOKIE")
SERVER = _RequestDictProxy("SERVER")
REQUEST = _RequestDictProxy("REQUEST")
FILES = _RequestDictProxy("FILES")
