"""The save handler interface that files, Redis, memory and user handlers implement. No I/O.

Mirrors PHP's ``SessionHandlerInterface`` plus the id hooks of
``SessionIdInterface`` and ``SessionUpdateTimestampHandlerInterface``.
Handlers are storage only: policy (strict mode, lazy_write, gc odds,
delete-old on regenerate) lives once, in :class:`phpsess.session.session.Session`.

Failure is reported by raising :class:`~phpsess.errors.SaveHandlerError`
(chained ``from`` the underlying ``OSError``/``RedisError``), never by
returning ``False``.
"""

from __future__ import annotations

import abc
import importlib
from typing import Callable, ClassVar

from ..core import ids
from ..compiled import mypyc_attr
from ..core.config import SAVE_HANDLERS, SessionConfig

__all__ = ["SaveHandler", "handler_class", "LockInfo"]


class LockInfo:
    """What a handler knows about the lock it holds for the current request."""

    __slots__ = ("waited", "shared")

    def __init__(self, waited: float = 0.0, shared: bool = False) -> None:
        self.waited = waited  # seconds spent waiting for the lock in read()
        self.shared = shared  # True when read() took a shared (read-only) lock


@mypyc_attr(allow_interpreted_subclasses=True)
class SaveHandler(abc.ABC):
    """Stores serialized session payloads for one request at a time.

    One instance serves one request; the lock taken by :meth:`read` is held
    until :meth:`close`.  ``config`` is the request's settings (for
    ``sid_length``, ``lock_timeout``, ...), set before :meth:`open`.
    """

    #: the ``session.save_handler`` / ``session_module_name()`` name
    name: ClassVar[str] = ""

    def __init__(self, config: SessionConfig | None = None) -> None:
        cls = type(self)
        if cls not in _COMPLETE:
            _check_complete(cls)
        self.config = config if config is not None else SessionConfig()
        self.lock_info = LockInfo()

    @abc.abstractmethod
    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: prepare storage at ``save_path`` for session cookie ``name``."""

    @abc.abstractmethod
    def close(self) -> None:
        """PS_CLOSE: release the lock taken by :meth:`read` and any resources.

        Must be safe to call when nothing is open.
        """

    @abc.abstractmethod
    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: return the stored payload (``b""`` if absent) and lock ``sid`` until close.

        ``shared=True`` asks for a shared (read-only) lock where the handler
        supports one; others take their exclusive lock.
        :raises InvalidSessionId: for ids the handler cannot store.
        :raises LockTimeout: when ``config.lock_timeout`` expires first.
        """

    @abc.abstractmethod
    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: store ``data`` for ``sid``; a crash at any instant keeps old or new data."""

    @abc.abstractmethod
    def destroy(self, sid: str) -> None:
        """PS_DESTROY: delete ``sid``.  Must not fail when ``sid`` does not exist."""

    @abc.abstractmethod
    def gc(self, max_lifetime: int) -> int:
        """PS_GC: delete sessions idle longer than ``max_lifetime`` seconds.

        :returns: the number deleted, or -1 where PHP's handler reports failure.
        """

    def create_sid(self) -> str:
        """PS_CREATE_SID: a fresh id; handlers that can check collisions do so."""
        return ids.create_id(self.config)

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID: True when ``sid`` exists in storage (used by use_strict_mode)."""
        return True

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP: mark ``sid`` fresh without rewriting unchanged ``data``."""
        self.write(sid, data)

    #: True when validate_id really checks storage (PHP: the module has a validator)
    has_validator: bool = True


_ABSTRACT = ("open", "close", "read", "write", "destroy", "gc")
_COMPLETE: set[type] = set()  # handler classes that implement every abstract method


def _check_complete(cls: type) -> None:
    """Python's refusal to instantiate an abstract class, done again here: compiled with
    mypyc, SaveHandler is no longer checked by ``abc`` (phpsess/compiled.py)."""
    missing = [name for name in _ABSTRACT if getattr(cls, name) is getattr(SaveHandler, name)]
    if missing:
        raise TypeError(
            f"Can't instantiate abstract class {cls.__name__} with abstract "
            f"method{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))}"
        )
    _COMPLETE.add(cls)


def handler_class(name: str) -> Callable[..., SaveHandler]:
    """Return the handler class registered under ``name`` (case-insensitive).

    :raises KeyError: when no such handler is registered.
    """
    key = name.lower()
    cls = _loaded.get(key)
    if cls is None:
        module_name, _, attr = SAVE_HANDLERS[key].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        _loaded[key] = cls
    return cls


_loaded: dict[str, Callable[..., SaveHandler]] = {}
