"""Adapters that turn PHP-style user save handlers into SaveHandlers. No I/O of their own.

``session_set_save_handler()`` accepts an object with PHP's
``SessionHandlerInterface`` methods (returning ``True``/``False``, a string from
``read``, a count from ``gc``) or six to nine callables.  Their results are
coerced exactly as PHP 8.2's mod_user.c does (its ``FINISH`` macro and ``PS_READ_FUNC(user)``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..core.config import SessionConfig
from ..core.zend import type_name
from ..errors import PHPFatalError, SaveHandlerError
from .base import SaveHandler

__all__ = ["UserHandler", "callables_handler"]




def coerce_bool(result: Any, operation: str, diagnose: Callable[[str, str], None]) -> None:
    """mod_user.c FINISH: True ok; False fail; 0 ok and -1 fail with E_DEPRECATED (to
    ``diagnose``); else TypeError.

    :raises SaveHandlerError: when the callback reported failure.
    """
    if result is True:
        return
    if result is False:
        raise SaveHandlerError("", handler="user", operation=operation)
    if isinstance(result, int) and result in (0, -1):
        diagnose("Session callback must have a return value of type bool, int returned", "Deprecated")
        if result == -1:
            raise SaveHandlerError("", handler="user", operation=operation)
        return
    raise TypeError(
        f"Session callback must have a return value of type bool, {type_name(result)} returned"
    )


class UserHandler(SaveHandler):
    """A SaveHandler that calls a PHP-style handler object's methods, as PHP's mod_user.c.

    * ``close()`` reaches the user's ``close`` only once per ``open`` (PHP's
      ``mod_user_implemented``): a session that fails and then closes calls it once.
    * An exception raised by a callback is PHP's pending exception: the operation fails
      without a call to any further callback (``close`` included) and without the session's
      warnings, and the PHP function that was running raises it at its end
      (:meth:`take_pending`).  ``SystemExit`` (PHP's ``exit()``) ends the script at once.
    """

    name = "user"

    def __init__(self, target: Any, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self.target = target
        self._create_sid = getattr(target, "create_sid", None)
        self._validate = getattr(target, "validateId", None) or getattr(target, "validate_id", None)
        self._update = getattr(target, "updateTimestamp", None) or getattr(
            target, "update_timestamp", None
        )
        self.has_validator = self._validate is not None
        #: the user's open() was called and its close() not yet (mod_user_implemented)
        self.opened = False
        #: the exception a callback raised, which the running PHP function re-raises
        self.pending: Exception | None = None
        self._in_call = False

    @property
    def write_name(self) -> str:
        """How PHP's "Failed to write session data" warning names the write callback."""
        write = getattr(self.target, "write", None)
        if isinstance(self.target, _Callables):
            owner = getattr(write, "__self__", None)
            name = getattr(write, "__name__", "write")
            return f"{type(owner).__name__}::{name}" if owner is not None else name
        return f"{type(self.target).__name__}::write"

    def take_pending(self) -> Exception | None:
        """The exception a callback raised since the last call (cleared)."""
        exc, self.pending = self.pending, None
        return exc

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.pending is not None:
            # PHP calls no user function while an exception is pending: a silent failure
            raise SaveHandlerError("", handler="user", operation=operation)
        if self._in_call:
            # a callback that calls back into the session (session_destroy() in close()):
            # PHP refuses, and forgets that it was inside one (ps_call_handler)
            self._in_call = False
            self.diagnose("Cannot call session save handler in a recursive manner", "Warning")
            raise SaveHandlerError("", handler="user", operation=operation)
        self._in_call = True
        # the session whose diagnostics these are: a PHP function the callback calls
        # (session_destroy()...) must not rename the one that called the handler
        session = getattr(self.diagnose, "__self__", None)
        running = getattr(session, "function", None)
        try:
            return fn(*args)
        except SaveHandlerError:
            raise
        except Exception as exc:
            self.pending = exc
            raise SaveHandlerError("", handler="user", operation=operation, cause=exc)
        finally:
            self._in_call = False
            if session is not None and running is not None:
                session.function = running

    def open(self, save_path: str, name: str) -> None:
        """Call the user's ``open(save_path, name)``."""
        try:
            result = self._call("open", self.target.open, save_path, name)
        finally:
            self.opened = True
        coerce_bool(result, "open", self.diagnose)

    def close(self) -> None:
        """Call the user's ``close()``, once per ``open`` and not while an exception is pending."""
        if not self.opened:
            return
        self.opened = False
        if self.pending is not None:
            return
        coerce_bool(self._call("close", self.target.close), "close", self.diagnose)

    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """Call the user's ``read(id)``: a string is the data, anything else a failure."""
        data = self._call("read", self.target.read, sid)
        if isinstance(data, str):
            return data.encode("utf-8", "surrogateescape")
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        raise SaveHandlerError("", handler="user", operation="read")

    def write(self, sid: str, data: bytes) -> None:
        """Call the user's ``write(id, data)`` (data as str when it is valid UTF-8)."""
        coerce_bool(self._call("write", self.target.write, sid, _text(data)), "write", self.diagnose)

    def destroy(self, sid: str) -> None:
        """Call the user's ``destroy(id)``."""
        coerce_bool(self._call("destroy", self.target.destroy, sid), "destroy", self.diagnose)

    def gc(self, max_lifetime: int) -> int:
        """Call the user's ``gc(max_lifetime)``: int count, True -> 1, else -1."""
        result = self._call("gc", self.target.gc, max_lifetime)
        if result is True:
            return 1
        if isinstance(result, int) and not isinstance(result, bool):
            return result
        return -1

    def create_sid(self) -> str:
        """The user's ``create_sid()`` when defined, else PHP's generator."""
        if self._create_sid is None:
            return super().create_sid()
        try:
            sid = self._call("create_sid", self._create_sid)
        except SaveHandlerError as exc:
            sid = None
            cause: BaseException | None = self.pending or exc
        else:
            cause = None
        if not isinstance(sid, str):
            # PHP throws Error "Session id must be a string" (its previous: what the
            # callback threw); the session fails without another word
            self.pending = PHPFatalError("Session id must be a string", cause=cause)
            raise SaveHandlerError("", handler="user", operation="create_sid")
        return sid

    def validate_id(self, sid: str) -> bool:
        """The user's ``validateId(id)``; without one every id is accepted (PHP's dummy)."""
        if self._validate is None:
            return True
        try:
            coerce_bool(self._call("validate_sid", self._validate, sid), "validate_sid", self.diagnose)
        except SaveHandlerError:
            return False
        return True

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """The user's ``updateTimestamp(id, data)``, falling back to ``write`` as PHP does."""
        if self._update is None:
            self.write(sid, data)
            return
        coerce_bool(
            self._call("update_timestamp", self._update, sid, _text(data)), "update_timestamp", self.diagnose
        )


def _text(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


class _Callables:
    def __init__(self, funcs: Sequence[Callable[..., Any]]) -> None:
        names = ("open", "close", "read", "write", "destroy", "gc", "create_sid", "validateId", "updateTimestamp")
        for n, f in zip(names, funcs):
            if not callable(f):
                shown = "Array" if isinstance(f, (list, tuple, dict)) else f
                raise TypeError(
                    f"session_set_save_handler(): Argument #{names.index(n) + 1} (${n}) must be a "
                    f'valid callback, function "{shown}" not found or invalid function name'
                )
            setattr(self, n, f)


def callables_handler(funcs: Sequence[Callable[..., Any]], config: SessionConfig | None = None) -> UserHandler:
    """PHP's six-to-nine-callables form of session_set_save_handler()."""
    return UserHandler(_Callables(funcs), config)
