"""The exceptions and warnings phpsess raises. No I/O.

Everything phpsess raises derives from :class:`SessionError`.  PHP's warnings
and notices are Python warnings (:class:`PHPWarning`, :class:`PHPNotice`); only
``php.py`` (the PHP-named facade) emits them.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = [
    "SessionError",
    "ConfigError",
    "InvalidSessionId",
    "SessionStateError",
    "SessionDecodeError",
    "SessionEncodeError",
    "SaveHandlerError",
    "LockTimeout",
    "LockBusy",
    "MergeConflict",
    "SessionStartError",
    "PHPFatalError",
    "PHPError",
    "MemoryLimitExceeded",
    "PHPWarning",
    "PHPNotice",
    "PHPDeprecated",
]

_E = TypeVar("_E", bound=BaseException)


def caused_by(err: _E, cause: BaseException | None) -> _E:
    """``err`` with ``cause`` as its ``__cause__``: ``raise caused_by(X, exc)`` is
    ``raise X from exc`` (and ``caused_by(X, None)`` is ``from None``).

    The modules compiled with mypyc (phpsess/compiled.py) drop the ``from`` clause
    of a ``raise``, so phpsess's errors take their cause as an argument instead
    (``SaveHandlerError(..., cause=exc)``, :class:`SessionError`), which sets it here.
    """
    err.__cause__ = cause  # also sets __suppress_context__, as ``from`` does
    return err


class SessionError(Exception):
    """Base of everything phpsess raises; ``cause`` becomes ``__cause__`` (as ``raise ...
    from cause`` would, which the compiled build cannot say)."""

    def __init__(self, *args: Any, cause: BaseException | None = None) -> None:
        super().__init__(*args)
        if cause is not None:
            caused_by(self, cause)


class ConfigError(SessionError, ValueError):
    """A ``session.*`` setting was given a value PHP refuses.

    ``str(exc)`` is PHP's own warning text for the refusal.
    """

    def __init__(self, setting: str, value: Any, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause)
        self.setting = setting
        self.value = value
        #: the level PHP reports ``str(exc)`` at: "Warning", or "Deprecated" (memcached.sess_lock_wait)
        self.level = "Warning"


class InvalidSessionId(SessionError, ValueError):
    """A session id that must not reach storage (illegal characters, too long)."""

    def __init__(self, sid: str, message: str | None = None) -> None:
        super().__init__(
            message
            or "Session ID is too long or contains illegal characters. "
            'Only the A-Z, a-z, 0-9, "-", and "," characters are allowed'
        )
        self.sid = sid


class SessionStateError(SessionError, RuntimeError):
    """An action that the current ``session_status()`` does not allow."""

    def __init__(self, status: Any, action: Any, message: str | None = None) -> None:
        super().__init__(message or f"cannot {action} while session status is {status}")
        self.status = status
        self.action = action


class SessionDecodeError(SessionError, ValueError):
    """Serialized data that PHP's unserializer would refuse.

    ``offset`` is the byte offset into the payload where decoding failed.
    """

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset
        self.reason = message


class SessionEncodeError(SessionError, ValueError):
    """A Python value that has no PHP serialized form (e.g. a set, a function)."""


class SaveHandlerError(SessionError):
    """A save handler operation failed; ``__cause__`` holds the OS/Redis error (``cause``)."""

    def __init__(
        self, message: str, *, handler: str = "", operation: str = "", cause: BaseException | None = None
    ) -> None:
        super().__init__(message, cause=cause)
        self.handler = handler
        self.operation = operation


class LockTimeout(SaveHandlerError, TimeoutError):
    """The session lock was not obtained within ``session.lock_timeout``."""

    def __init__(
        self, message: str, *, handler: str = "", sid: str = "", waited: float = 0.0,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, handler=handler, operation="lock", cause=cause)
        self.sid = sid
        self.waited = waited


class LockBusy(SaveHandlerError):
    """Too many requests already wait on this session (``session.lock_max_waiters``)."""

    def __init__(self, message: str, *, handler: str = "", sid: str = "", waiters: int = 0) -> None:
        super().__init__(message, handler=handler, operation="lock")
        self.sid = sid
        self.waiters = waiters


class PHPFatalError(SessionError, RuntimeError):
    """What PHP makes a fatal error (E_ERROR) that ends the script: e.g. ``Failed to create
    session ID: files (path: /x)`` when the handler cannot make one.  ``__cause__`` holds
    the handler's error (``cause``)."""


class PHPError(PHPFatalError):
    """PHP's ``Error`` thrown by the engine, e.g. ``Failed opening required 'x.py'`` from
    :func:`phpsess.require`; uncaught, it reads ``Uncaught Error: ...`` as in PHP."""

    php_class = "Error"


class MemoryLimitExceeded(BaseException):
    """PHP's fatal error ``Allowed memory size of N bytes exhausted (tried to allocate M
    bytes)``: the session a request would decode needs more than ``memory_limit``.

    A BaseException (the one exception to the tree above), so that a script's own
    ``except Exception`` cannot swallow it, as nothing in PHP can catch that error;
    the runtime answers 500 and logs the text, and the stored session is left as it was.
    """

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"Allowed memory size of {limit} bytes exhausted (tried to allocate {size} bytes)")
        self.limit = limit
        self.size = size


class MergeConflict(SessionError):
    """Merge mode found that a key this request changed was changed meanwhile by another."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__("session keys changed concurrently by another request: " + ", ".join(keys))
        self.keys = keys


class SessionStartError(SessionError, RuntimeError):
    """The session could not be started where phpsess's Python surface (the Django, Flask
    and ASGI integrations) needs it: PHP's ``session_start()`` would warn and return
    false.  The message is PHP's warnings, ``; ``-joined; ``messages`` holds them."""

    def __init__(self, messages: list[str], *, cause: BaseException | None = None) -> None:
        super().__init__("; ".join(messages) or "the session could not be started", cause=cause)
        self.messages = list(messages)


class PHPWarning(UserWarning):
    """PHP's E_WARNING, carrying PHP's message text."""


class PHPNotice(PHPWarning):
    """PHP's E_NOTICE, carrying PHP's message text."""


class PHPDeprecated(PHPWarning):
    """PHP's E_DEPRECATED, carrying PHP's message text."""
