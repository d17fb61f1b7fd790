"""The save handler interface that files, Redis, memory and user handlers implement, and
the lock policy they share. No I/O of its own (the backends' hooks do it).

Mirrors PHP's ``SessionHandlerInterface`` plus the id hooks of
``SessionIdInterface`` and ``SessionUpdateTimestampHandlerInterface``.
Handlers are storage only: session policy (strict mode, lazy_write, gc odds,
delete-old on regenerate) lives once, in :class:`phpsess.session.session.Session`.

The lock policy lives once, here (:meth:`SaveHandler.acquire_lock`): how long a
request may wait (``session.lock_timeout``), how many may queue
(``session.lock_max_waiters``), which waits are logged (``session.lock_wait_log_ms``,
logger ``phpsess.lock``) and the messages of :class:`~phpsess.errors.LockTimeout` and
:class:`~phpsess.errors.LockBusy`.  A backend with a lock implements four small hooks
(``_lock_try``, ``_lock_wait``, ``_lock_waiters``, ``_lock_where``), as filelock's
backends implement theirs under one base class.  Every built-in backend refuses ids
that are not PHP's (:meth:`SaveHandler.check_id`).

Failure is reported by raising :class:`~phpsess.errors.SaveHandlerError`
(chained ``from`` the underlying ``OSError``/``RedisError``), never by
returning ``False``.
"""

from __future__ import annotations

import abc
import importlib
import logging
import secrets
import time
from typing import Callable, ClassVar, Final

from ..compiled import mypyc_attr
from ..core import ids
from ..core.config import SAVE_HANDLERS, SessionConfig
from ..errors import InvalidSessionId, LockBusy, LockTimeout, SaveHandlerError

__all__ = ["SaveHandler", "handler_class", "LockInfo", "StoredLock"]

#: a wait without end (a module constant: ``math.inf`` would be looked up at every read)
_FOREVER: Final = float("inf")

# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_perf_counter: Final = time.perf_counter
_monotonic: Final = time.monotonic
#: where long lock waits are logged (session.lock_wait_log_ms), whatever the backend
lock_log: Final = logging.getLogger("phpsess.lock")


class LockInfo:
    """What a handler knows about the lock it holds for the current request."""

    __slots__ = ("waited", "shared")

    def __init__(self, waited: float = 0.0, shared: bool = False) -> None:
        self.waited = waited  # seconds spent waiting for the lock in read()
        self.shared = shared  # True when read() took a shared (read-only) lock


class StoredLock:
    """A session lock found in a shared store (redis cluster, memcached) by ``phpsess locks``."""

    __slots__ = ("sid", "key", "where", "holder", "ttl", "waiters")

    def __init__(self, sid: str, key: str, where: str, holder: str, ttl: float | None, waiters: int) -> None:
        self.sid = sid  # the session id
        self.key = key  # the lock's key
        self.where = where  # the server holding it, "host:port"
        self.holder = holder  # the lock value: "hostname|pid|..." (phpsess, phpredis) or "1" (php-memcached)
        self.ttl = ttl  # seconds until the lock expires by itself (None: unknown or never)
        self.waiters = waiters  # phpsess requests waiting for it (PHP's waiters are not counted)

    def pid(self) -> int | None:
        """The holder's pid when its lock value names one (``hostname|pid|...``)."""
        parts = self.holder.split("|")
        for part in parts[1:3]:
            if part.isdigit():
                return int(part)
        return None

    def as_json(self) -> dict[str, object]:
        """The lock as ``phpsess locks --json`` prints it."""
        parts = self.holder.split("|")
        host = parts[1] if parts[0] == "phpsess" and len(parts) > 1 else parts[0] if len(parts) > 1 else ""
        return {"id": self.sid, "key": self.key, "server": self.where, "holder": self.holder, "host": host,
                "pid": self.pid(), "expires_in_seconds": self.ttl, "waiters": self.waiters}


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
        #: source of random bytes for new ids (tests replace it)
        self.random_bytes: Callable[[int], bytes] = secrets.token_bytes
        #: where the handler reports one of PHP's diagnostics (message, level); the session
        #: using it sets its own (Session.diagnose)
        self.diagnose: Callable[[str, str], None] = _log_diagnostic
        #: told (session id, where its lock is) when a read is about to wait for a lock
        self.on_wait: Callable[[str, str], None] | None = None

    # -- ids --------------------------------------------------------------------------
    @staticmethod
    def check_id(sid: str) -> None:
        """Refuse an id that must not reach storage: PHP's files handler's grammar,
        ``[A-Za-z0-9,-]{1,256}`` (a cookie ``x_LOCK`` must not name another session's key).

        :raises InvalidSessionId: with PHP's message.
        """
        if not ids.is_valid_id(sid):
            raise InvalidSessionId(sid)

    # -- the lock policy ----------------------------------------------------------------
    def lock_bound(self) -> tuple[float, str]:
        """How long a request may wait for a lock, in seconds (``math.inf``: for ever, as
        PHP), and the setting that says so (for messages)."""
        timeout = self.config.lock_timeout
        return (timeout if timeout > 0 else _FOREVER), "session.lock_timeout"

    def lock_deadline(self, waited: float = 0.0) -> float:
        """The ``time.monotonic()`` by which a lock taken now must be held (``math.inf``:
        none), when ``waited`` seconds of the bound are spent already."""
        bound, _ = self.lock_bound()
        return _monotonic() + bound - waited if bound != _FOREVER else _FOREVER

    def acquire_lock(self, sid: str, *, shared: bool = False, deadline: float | None = None,
                     waited: float = 0.0) -> float:
        """Take ``sid``'s lock by the policy: try once; if busy, refuse to queue behind
        ``session.lock_max_waiters`` waiters, then wait until ``deadline`` (None: the
        policy's bound from now, :meth:`lock_deadline`; worked out only when it must wait).

        :param waited: seconds this read already waited (a retry), for the messages.
        :returns: the seconds this call waited (0.0 when the lock was free).
        :raises LockBusy: too many requests already wait.
        :raises LockTimeout: ``deadline`` passed first (the lock is not held).
        """
        if self._lock_try(sid, shared):
            return 0.0
        limit = self.config.lock_max_waiters
        if limit > 0:
            waiters = self._lock_waiters(sid)
            if waiters >= limit:
                where = self._lock_where(sid)
                raise LockBusy(
                    f"Session {sid} is busy: {waiters} requests already wait for its lock "
                    f"({where + '; ' if where else ''}session.lock_max_waiters = {limit})",
                    handler=self.name,
                    sid=sid,
                    waiters=waiters,
                )
        if self.on_wait is not None:
            self.on_wait(sid, self._lock_where(sid))
        if deadline is None:
            deadline = self.lock_deadline()
        t0 = _perf_counter()
        timeout = None if deadline == _FOREVER else deadline - _monotonic()
        cause: BaseException | None = None
        try:
            got = (timeout is None or timeout > 0) and self._lock_wait(sid, shared, timeout)
        except TimeoutError as exc:
            got, cause = False, exc
        now_waited = _perf_counter() - t0
        if got:
            return now_waited
        total = waited + now_waited
        bound, setting = self.lock_bound()
        where = self._lock_where(sid)
        raise LockTimeout(
            f"Session lock for {sid} not acquired within {setting} = {bound:g} s "
            f"(waited {total:.3f} s{' for ' + where if where else ''}){self._lock_holder(sid)}",
            handler=self.name,
            sid=sid,
            waited=total,
            cause=cause,
        )

    def lock_acquired(self, sid: str, *, shared: bool, waited: float) -> None:
        """Note a lock now held after ``waited`` seconds: :attr:`lock_info`, and the log
        line of ``session.lock_wait_log_ms``."""
        self.lock_info = LockInfo(waited, shared)
        threshold = self.config.lock_wait_log_ms
        if threshold > 0 and waited * 1000 >= threshold:
            lock_log.warning("waited %.3f s for the lock of session %s (%s)", waited, sid, self._lock_where(sid))

    def describe_lock(self, sid: str) -> str:
        """What ``sid``'s lock is, in words (a path, a key on a server); "" when unknown."""
        return self._lock_where(sid)

    def _lock_try(self, sid: str, shared: bool) -> bool:
        """Hook: one attempt to take ``sid``'s lock without waiting; True when held."""
        raise NotImplementedError(f"{type(self).__name__} has no lock")

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        """Hook: wait for ``sid``'s lock, ``timeout`` seconds at most (None: for ever);
        True when held, False when the time ran out."""
        raise NotImplementedError(f"{type(self).__name__} has no lock")

    def _lock_waiters(self, sid: str) -> int:
        """Hook: how many requests wait for ``sid``'s lock now (0 when unknown)."""
        return 0

    def _lock_where(self, sid: str) -> str:
        """Hook: what the messages call ``sid``'s lock (a path, a key on a server)."""
        return ""

    def _lock_holder(self, sid: str) -> str:
        """Hook: a few words on who holds ``sid``'s lock, for the timeout message (or "")."""
        return ""

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
        """PS_CREATE_SID: a fresh id; handlers that can check collisions do so
        (:meth:`unused_id`)."""
        return ids.create_id(self.config, self.random_bytes)

    def unused_id(self, taken: Callable[[str], bool], tries: int = 4) -> str:
        """A new id for which ``taken(id)`` is false, in ``tries`` attempts at most (PHP's
        files handler: one and three retries).

        :raises SaveHandlerError: every attempt collided.
        """
        for _ in range(tries):
            sid = ids.create_id(self.config, self.random_bytes)
            if not taken(sid):
                return sid
        raise SaveHandlerError(
            f"Failed to create a session ID that does not exist yet ({tries} collisions)",
            handler=self.name,
            operation="create_sid",
        )

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID: True when ``sid`` exists in storage (used by use_strict_mode)."""
        return True

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP: mark ``sid`` fresh without rewriting unchanged ``data``."""
        self.write(sid, data)

    def write_last(self, sid: str, data: bytes, *, touch: bool = False) -> None:
        """PS_WRITE (``touch``: PS_UPDATE_TIMESTAMP) when PS_CLOSE comes right after, as at
        the end of a request.  A handler that can write and release its lock in one round
        trip does so here (its :meth:`close` then has nothing left to release); by default
        this is :meth:`write` or :meth:`update_timestamp`.

        :raises SaveHandlerError: as :meth:`write` does.
        """
        if touch:
            self.update_timestamp(sid, data)
        else:
            self.write(sid, data)

    #: True when validate_id really checks storage (PHP: the module has a validator)
    has_validator: bool = True


def _log_diagnostic(message: str, level: str = "Warning") -> None:
    logging.getLogger("phpsess.storage").warning("PHP %s: %s", level, message)


_ABSTRACT: Final = ("open", "close", "read", "write", "destroy", "gc")
_COMPLETE: Final[set[type]] = set()  # handler classes that implement every abstract method


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


_loaded: Final[dict[str, Callable[..., SaveHandler]]] = {}
