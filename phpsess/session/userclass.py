"""PHP's session handler classes and interfaces: ``SessionHandler``, ``SessionHandlerInterface``,
``SessionIdInterface``, ``SessionUpdateTimestampHandlerInterface``. No I/O of their own.

A user handler that extends :class:`SessionHandler` wraps the save handler that was in use
when it was installed (``session.save_handler``, usually ``files``), as PHP's class does
(ext/session/mod_user_class.c): ``parent::read($id)`` reads through that module.  The
methods follow PHP's rules, not Python's:

* they act on the current request's session and need it to be active: otherwise they raise
  :class:`~phpsess.errors.SessionStateError` ("Session is not active", PHP's ``Error``);
* ``open()`` marks the wrapped module open (even when it fails) and ``close()`` closed;
  every other method but ``create_sid()`` warns "Parent session handler is not open" and
  returns False when it is not;
* strings in and out: ``read()`` returns the stored bytes as ``str`` (surrogateescape keeps
  every byte), ``write()`` takes ``str`` (or bytes); failures return False with PHP's
  warning, never raise.
"""

from __future__ import annotations

import abc
from typing import Union

from ..errors import InvalidSessionId, SaveHandlerError, SessionStateError
from ..storage.base import SaveHandler
from .context import current_request
from .session import Session

__all__ = [
    "SessionHandlerInterface",
    "SessionIdInterface",
    "SessionUpdateTimestampHandlerInterface",
    "SessionHandler",
]

#: what ``read()`` returns: the data, or False on failure (PHP's ``string|false``)
StrOrFalse = Union[str, bool]
#: what ``gc()`` returns: the number deleted, or False (PHP's ``int|false``)
IntOrFalse = Union[int, bool]


class SessionHandlerInterface(abc.ABC):
    """PHP's ``SessionHandlerInterface``: what ``session_set_save_handler($handler)`` calls."""

    @abc.abstractmethod
    def open(self, path: str, name: str) -> bool:
        """Prepare storage at ``path`` for the session named ``name``."""

    @abc.abstractmethod
    def close(self) -> bool:
        """Release what :meth:`open` and :meth:`read` took."""

    @abc.abstractmethod
    def read(self, id: str) -> StrOrFalse:  # noqa: A002 - PHP's parameter name
        """The stored data of session ``id`` ("" when there is none), or False."""

    @abc.abstractmethod
    def write(self, id: str, data: str) -> bool:  # noqa: A002
        """Store ``data`` for session ``id``."""

    @abc.abstractmethod
    def destroy(self, id: str) -> bool:  # noqa: A002
        """Delete session ``id``."""

    @abc.abstractmethod
    def gc(self, max_lifetime: int) -> IntOrFalse:
        """Delete sessions idle longer than ``max_lifetime`` seconds; how many, or False."""


class SessionIdInterface(abc.ABC):
    """PHP's ``SessionIdInterface``: a handler that makes its own session ids."""

    @abc.abstractmethod
    def create_sid(self) -> str:
        """A new session id."""


class SessionUpdateTimestampHandlerInterface(abc.ABC):
    """PHP's ``SessionUpdateTimestampHandlerInterface``: strict mode's check and lazy_write's touch."""

    @abc.abstractmethod
    def validateId(self, id: str) -> bool:  # noqa: N802,A002 - PHP's names
        """True when session ``id`` exists (session.use_strict_mode rejects the others)."""

    @abc.abstractmethod
    def updateTimestamp(self, id: str, data: str) -> bool:  # noqa: N802,A002
        """Keep unchanged session ``id`` alive (session.lazy_write) without rewriting it."""


def _parent(method: str) -> tuple[Session, SaveHandler]:
    """The active session and the module a SessionHandler wraps (PS_SANITY_CHECK)."""
    session = current_request().session
    if not session.active:
        raise SessionStateError(session.status, method, "Session is not active")
    handler = session.module_handler()
    if handler is None:
        raise SessionStateError(session.status, method, "Cannot call default session handler")
    return session, handler


def _parent_open(method: str) -> tuple[Session, SaveHandler] | None:
    """:func:`_parent`, and the wrapped module must be open (PS_SANITY_CHECK_IS_OPEN)."""
    session, handler = _parent(method)
    if not session.parent_open:
        _warn(session, method, "Parent session handler is not open")
        return None
    return session, handler


def _warn(session: Session, method: str, message: str) -> None:
    before = session.function
    session.function = f"SessionHandler::{method}"
    try:
        session.diagnose(message)
    finally:
        session.function = before


def _failed(session: Session, method: str, exc: Exception) -> bool:
    """The wrapped module failed: its warning (under this method's name), False."""
    if str(exc):
        _warn(session, method, str(exc))
    return False


def _bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)


class SessionHandler(SessionHandlerInterface, SessionIdInterface):
    """PHP's ``SessionHandler``: the save handler in use (``files``...) as a class to extend.

    ``session_set_save_handler(MyHandler())`` with ``class MyHandler(SessionHandler)``
    overriding some methods and calling ``super().read(id)`` for the rest behaves as the
    same class in PHP.
    """

    def open(self, path: str, name: str) -> bool:
        """Open the wrapped module (it counts as open from now on, even if this fails)."""
        session, handler = _parent("open")
        session.parent_open = True
        try:
            handler.open(path, name)
        except SaveHandlerError as exc:
            return _failed(session, "open", exc)
        return True

    def close(self) -> bool:
        """Close the wrapped module (releasing the session's lock)."""
        found = _parent_open("close")
        if found is None:
            return False
        session, handler = found
        session.parent_open = False
        try:
            handler.close()
        except SaveHandlerError as exc:
            return _failed(session, "close", exc)
        return True

    def read(self, id: str) -> StrOrFalse:  # noqa: A002
        """The wrapped module's data for ``id`` (locking it), or False."""
        found = _parent_open("read")
        if found is None:
            return False
        session, handler = found
        try:
            data = handler.read(id)
        except (SaveHandlerError, InvalidSessionId) as exc:
            return _failed(session, "read", exc)
        return data.decode("utf-8", "surrogateescape")

    def write(self, id: str, data: str) -> bool:  # noqa: A002
        """Store ``data`` for ``id`` through the wrapped module."""
        found = _parent_open("write")
        if found is None:
            return False
        session, handler = found
        try:
            handler.write(id, _bytes(data))
        except (SaveHandlerError, InvalidSessionId) as exc:
            return _failed(session, "write", exc)
        return True

    def destroy(self, id: str) -> bool:  # noqa: A002
        """Delete ``id`` through the wrapped module."""
        found = _parent_open("destroy")
        if found is None:
            return False
        session, handler = found
        try:
            handler.destroy(id)
        except (SaveHandlerError, InvalidSessionId) as exc:
            return _failed(session, "destroy", exc)
        return True

    def gc(self, max_lifetime: int) -> IntOrFalse:
        """The wrapped module's garbage collection: how many it deleted, or False."""
        found = _parent_open("gc")
        if found is None:
            return False
        session, handler = found
        try:
            n = handler.gc(int(max_lifetime))
        except SaveHandlerError as exc:
            return _failed(session, "gc", exc)
        return False if n < 0 else n

    def create_sid(self) -> str:
        """A new id from the wrapped module (which need not be open)."""
        _, handler = _parent("create_sid")
        return handler.create_sid()

