"""What the ``redis`` and ``rediscluster`` handlers share: a lock key beside each session
key, taken by :meth:`read` and held until the end of the request, and writes fenced by
it.  No I/O of its own (the handlers' hooks talk to the servers).

The flow, once for both handlers:

* :meth:`LockedKeyHandler.read` takes the lock by the policy of
  :meth:`~phpsess.storage.base.SaveHandler.acquire_lock` (the handler's ``_lock_try``
  reads the session in the same round trip) and starts the refresher when
  ``lock_refresh`` asks for it;
* :meth:`~LockedKeyHandler.write`, :meth:`~LockedKeyHandler.update_timestamp` and
  :meth:`~LockedKeyHandler.write_last` (write and release: the last round trip of a
  request) run one script that acts only while the lock holds this request's secret;
  when it does not, nothing is written and :class:`SaveHandlerError` says the lock was
  lost;
* :meth:`~LockedKeyHandler.close` releases the lock (compare-and-delete).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable

from ..core.config import SessionConfig
from ..core.redis_url import DEFAULT_LOCK_TIMEOUT, LockOptions
from ..errors import SaveHandlerError
from .base import LockInfo, SaveHandler

__all__ = ["LockedKeyHandler", "Held", "Refresher", "lock_secret", "session_ttl", "close_quietly"]

log = logging.getLogger("phpsess.storage.redis")

_INT_MAX = 2**31 - 1


_owner: tuple[int, str] = (0, "")  # (pid, "hostname|pid|"), worked out once per process


def lock_secret() -> str:
    """A fresh lock value: phpredis's ``hostname|pid`` plus a random part, unique per lock."""
    global _owner
    pid = os.getpid()
    if _owner[0] != pid:
        _owner = (pid, f"{socket.gethostname()}|{pid}|")
    return _owner[1] + secrets.token_hex(8)


def session_ttl(config: SessionConfig) -> int:
    """redis_session.c: session_gc_maxlifetime(): capped at INT_MAX, <= 0 means 1440."""
    value = config.gc_maxlifetime
    if value > _INT_MAX:
        return _INT_MAX
    if value <= 0:
        log.info("session.gc_maxlifetime is <= 0, defaulting to 1440 seconds")
        return 1440
    return value


class Refresher(threading.Thread):
    """Extends a held lock every third of its life until stopped (``lock_refresh=1``).

    ``refresh`` extends it once: true while the lock is still ours; a
    :class:`SaveHandlerError` (server unreachable) is logged and tried again later.
    """

    def __init__(self, lock_key: str, expire_ms: int, refresh: Callable[[], Any],
                 logger: logging.Logger = log) -> None:
        super().__init__(daemon=True, name="phpsess-redis-lock-refresh")
        self._log = logger
        self._lock_key = lock_key
        self._interval = expire_ms / 3000.0
        self._refresh = refresh
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                kept = self._refresh()
            except SaveHandlerError as exc:
                self._log.warning("cannot refresh session lock %s: %s", self._lock_key, exc)
                continue
            if not kept:
                self._log.warning("session lock %s was lost before it could be refreshed", self._lock_key)
                return

    def stop(self) -> None:
        """Stop refreshing (and wait for the thread, unless called from it)."""
        self._stopped.set()
        if self is not threading.current_thread():
            self.join()


class Held:
    """The lock a handler holds: for which session, under which keys, with which secret."""

    __slots__ = ("sid", "session_key", "lock_key", "secret", "refresher")

    def __init__(self, sid: str, session_key: str, lock_key: str, secret: str | None) -> None:
        self.sid = sid
        self.session_key = session_key
        self.lock_key = lock_key
        self.secret = secret  # None: locking disabled, nothing held
        self.refresher: Refresher | None = None

    def stop_refresh(self) -> None:
        """Stop the refresher, if one runs."""
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None


class LockedKeyHandler(SaveHandler):
    """The read / write / close flow of a handler whose lock is a key beside the session's.

    Subclasses implement the hooks: :meth:`_lock_options`, :meth:`_new_held`,
    :meth:`_get`, :meth:`_release`, :meth:`_refresh`, :meth:`_store_fenced`,
    :meth:`_store_unlocked`, :meth:`_lock_place`, :meth:`_subscribe`,
    :meth:`_await_release` (and the lock policy's ``_lock_try``, which sets
    :attr:`_locked_data` when it wins).
    """

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self._held: Held | None = None
        self._locking: Held | None = None  # the lock being taken, for the lock hooks
        self._locked_data: bytes | None = None  # the payload read with the winning attempt

    # -- hooks ------------------------------------------------------------------------------
    def _lock_options(self, sid: str) -> LockOptions:
        """The lock settings that apply to ``sid`` (raises when open() was not called)."""
        raise NotImplementedError

    def _new_held(self, sid: str, secret: str | None) -> Held:
        """The lock of ``sid`` about to be taken with ``secret`` (None: locking disabled)."""
        raise NotImplementedError

    def _get(self, held: Held) -> bytes:
        """The stored payload of ``held``'s session (``b""`` when absent), without locking."""
        raise NotImplementedError

    def _release(self, held: Held) -> bool:
        """Delete the lock if it holds ``held``'s secret and wake the waiters; False when
        it had expired."""
        raise NotImplementedError

    def _refresh(self, held: Held) -> bool:
        """Extend the lock's life if it is still ours (from the refresher's thread)."""
        raise NotImplementedError

    def _store_fenced(self, held: Held, data: bytes, ttl: int, *, touch: bool, release: bool,
                      operation: str) -> bool:
        """Write (``touch``: refresh) the session, and with ``release`` unlock, in one
        script that acts only while the lock is ours; False when it was not."""
        raise NotImplementedError

    def _store_unlocked(self, held: Held, data: bytes, ttl: int, *, touch: bool, operation: str) -> None:
        """Write (``touch``: refresh, or write a key that expired) with locking disabled."""
        raise NotImplementedError

    def _lock_place(self, held: Held) -> str:
        """The lock's key and where it is, for messages."""
        return held.lock_key

    def _subscribe(self, held: Held, deadline: float) -> Any:
        """A pub/sub connection subscribed to the channels that announce the release of
        ``held``'s lock (confirmed by the server, so no release is missed); None when the
        waiter can only poll."""
        return None

    def _await_release(self, pubsub: Any, pause: float, held: Held) -> bool:
        """Wait up to ``pause`` seconds for a message on ``pubsub``, and drain the others
        (one retry per wake-up is enough); False when the subscription broke and the
        waiter should poll from now on."""
        return False

    # -- the lock policy ------------------------------------------------------------------------
    def lock_bound(self) -> tuple[float, str]:
        """The save_path's ``lock_timeout`` (0: for ever), else ``session.lock_timeout``
        when set, else 30 s: a Redis lock is never waited for without end by default."""
        held = self._locking
        options = self._lock_options(held.sid) if held is not None else None
        if options is not None and options.timeout is not None:
            return (options.timeout or math.inf), "the save_path's lock_timeout"
        if self.config.lock_timeout > 0:
            return float(self.config.lock_timeout), "session.lock_timeout"
        return DEFAULT_LOCK_TIMEOUT, f"the {self.name} handler's default lock_timeout"

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        """Wait for the lock: woken by the releaser's message (:meth:`_subscribe`), else
        poll every ``lock_poll`` seconds (for releases nobody announces)."""
        held = self._locking
        assert held is not None
        poll = self._lock_options(sid).poll
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        log.debug("waiting for session lock %s (bound %s s)", held.lock_key, timeout)
        pubsub = self._subscribe(held, deadline)
        try:
            while True:
                if self._lock_try(sid, shared):
                    got = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = False
                    break
                pause = min(poll, remaining)
                if pubsub is None:
                    time.sleep(pause)
                elif not self._await_release(pubsub, pause, held):
                    close_quietly(pubsub)
                    pubsub = None
        except BaseException:
            if pubsub is not None:
                close_quietly(pubsub)  # in an unknown state: not kept
            raise
        if pubsub is not None:
            self._done_waiting(pubsub, held)
        return got

    def _done_waiting(self, pubsub: Any, held: Held) -> None:
        """A wait is over (the lock taken, or the time up): its pub/sub connection is closed,
        or kept for this thread's next wait."""
        close_quietly(pubsub)

    # -- PS_CLOSE / PS_READ -------------------------------------------------------------------
    def close(self) -> None:
        """PS_CLOSE: release the lock taken by :meth:`read` (owner only) and wake its waiters.

        Safe to call when nothing is held.
        :raises SaveHandlerError: the server cannot be reached (the lock then expires
            after ``lock_expire`` seconds).
        """
        held, self._held = self._held, None
        if held is None or held.secret is None:
            return
        held.stop_refresh()
        if not self._release(held):
            logging.getLogger(type(self).__module__).warning("session lock %s had expired before close (lock_expire=%s s)",
                        self._lock_place(held), self._lock_options(held.sid).expire)

    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: lock ``sid`` (exclusive; also for ``shared``) and return its payload.

        :returns: the stored bytes, ``b""`` when the key does not exist.
        :raises InvalidSessionId: ``sid`` is not ``[A-Za-z0-9,-]{1,256}``.
        :raises LockTimeout: another request held the lock for longer than the wait
            bound (``?lock_timeout=``, else ``session.lock_timeout``, else 30 s).
        :raises SaveHandlerError: the server is unreachable or answers an error.
        """
        self.check_id(sid)
        options = self._lock_options(sid)
        held = self._held
        if held is not None:
            if held.sid == sid:
                return self._get(held)
            self.close()
        if not options.enabled:
            held = self._held = self._new_held(sid, None)
            self.lock_info = LockInfo(0.0, False)
            return self._get(held)
        held = self._new_held(sid, lock_secret())
        self._locking = held
        self._locked_data = None
        try:
            waited = self.acquire_lock(sid)
        finally:
            self._locking = None
        self._held = held
        self.lock_acquired(sid, shared=False, waited=waited)
        if options.refresh:
            refresher = held.refresher = Refresher(held.lock_key, max(1, int(options.expire * 1000)),
                                                   lambda: self._refresh(held), logging.getLogger(type(self).__module__))
            refresher.start()
        log.debug("took session lock %s after %.6f s", held.lock_key, waited)
        return self._locked_data or b""

    # -- writes, fenced by the lock -----------------------------------------------------------
    def _ensure_held(self, sid: str) -> Held:
        """The lock on ``sid``, taken now if read() did not take it (as files' write opens)."""
        self.check_id(sid)
        if self._held is not None and self._held.sid == sid:
            return self._held
        self.read(sid)
        assert self._held is not None
        return self._held

    def _lost(self, held: Held, operation: str) -> SaveHandlerError:
        held.stop_refresh()
        if self._held is held:
            self._held = None
        return SaveHandlerError(
            f"{self.name} save handler: refusing to {operation} session {held.sid}: its lock "
            f"{self._lock_place(held)} expired (lock_expire={self._lock_options(held.sid).expire:g} s) "
            "and may belong to another request now",
            handler=self.name,
            operation=operation,
        )

    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: ``SETEX <prefix><sid> gc_maxlifetime data``, only while the lock is ours.

        :raises SaveHandlerError: the lock expired (another request may own the
            session now; nothing is written), or the server failed.
        """
        self._store(sid, data, touch=False, release=False)

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP (lazy_write): ``EXPIRE <prefix><sid> gc_maxlifetime``.

        Only while the lock is ours; if the key expired during the request it is
        written again with ``data``.
        :raises SaveHandlerError: the lock expired, or the server failed.
        """
        self._store(sid, data, touch=True, release=False)

    def write_last(self, sid: str, data: bytes, *, touch: bool = False) -> None:
        """PS_WRITE (``touch``: PS_UPDATE_TIMESTAMP) with PS_CLOSE next: write and release
        the lock in one round trip (one script, only while the lock is ours; the waiters
        are woken as by :meth:`close`, which then has nothing left to do).

        :raises SaveHandlerError: the lock expired (nothing written), or the server
            failed (the lock is then still ours: :meth:`close` releases it).
        """
        self._store(sid, data, touch=touch, release=True)

    def _store(self, sid: str, data: bytes, *, touch: bool, release: bool) -> None:
        held = self._ensure_held(sid)
        ttl = session_ttl(self.config)
        operation = "update the timestamp of" if touch else "write"
        if held.secret is None:
            self._store_unlocked(held, data, ttl, touch=touch, operation=operation)
            return
        if release:
            held.stop_refresh()
        if not self._store_fenced(held, data, ttl, touch=touch, release=release, operation=operation):
            raise self._lost(held, operation)
        if release and self._held is held:
            self._held = None

    # -- PS_GC / PS_CREATE_SID ------------------------------------------------------------------
    def gc(self, max_lifetime: int) -> int:
        """PS_GC: nothing to do, keys expire by their TTL; returns 0 (phpredis returns SUCCESS)."""
        return 0

    def create_sid(self) -> str:
        """PS_CREATE_SID: a fresh id whose key and lock do not exist yet (3 tries, as phpredis 6).

        :raises SaveHandlerError: three colliding ids in a row, or the server failed.
        """
        return self.unused_id(self._taken, tries=3)

    def _taken(self, sid: str) -> bool:
        """True when ``sid``'s session key or lock exists."""
        raise NotImplementedError


def close_quietly(pubsub: Any) -> None:
    """Close a pub/sub connection, broken or not."""
    try:
        pubsub.close()
    except Exception:  # pragma: no cover - closing a broken connection
        pass
