"""The ``redis`` save handler: phpredis's data layout, with a lock that holds. Network I/O
(through the ``redis`` client library, imported only here).

Layout, shared with PHP applications that use phpredis (``redis_session.c``):

* the payload of session ``<id>`` is the string key ``<prefix><id>`` (prefix
  ``PHPREDIS_SESSION:`` unless ``?prefix=`` says otherwise), written with
  ``SETEX gc_maxlifetime``; lazy_write refreshes it with ``EXPIRE``;
* the lock is ``<prefix><id>_LOCK``, taken with ``SET NX PX`` and removed
  by its owner only, with a compare-and-delete script.  phpredis's lock value
  is ``hostname|pid``; ours is ``hostname|pid|<random>`` (unique per
  acquisition), so the two never mistake each other's locks for their own.

Where phpsess differs from phpredis (its locking is off by default, and when
on it gives up after ~20 ms and runs unlocked):

* locking is on by default; a waiter gives up only after ``lock_timeout``
  seconds, and then :meth:`RedisHandler.read` raises :class:`LockTimeout`:
  a request never runs without the lock;
* writes check ownership atomically (a Lua script writes only while the lock
  value is still ours), so a holder whose lock expired cannot overwrite the
  next owner's data: it gets :class:`SaveHandlerError` instead;
* the releaser ``PUBLISH``es on a channel named like the lock key; waiters are
  subscribed to it (and to the lock key's keyspace notifications, which fire
  for phpredis releases and expiries where the server enables them), so a
  waiter learns of the release in about one round trip; a short poll
  (``lock_poll``, 5 ms) remains for releases nobody signals.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, RedisError
from redis.retry import Retry

from ..core import ids
from ..core.config import SessionConfig
from ..errors import SaveHandlerError
from ..core.redis_url import (
    DEFAULT_LOCK_TIMEOUT,
    RedisServer,
    SavePathError,
    parse_save_path,
    pick_server,
)
from .base import LockInfo, SaveHandler
from .redislink import Link, Links, Script

__all__ = [
    "RedisHandler",
    "RELEASE_SCRIPT",
    "WRITE_SCRIPT",
    "TOUCH_SCRIPT",
    "DESTROY_SCRIPT",
    "REFRESH_SCRIPT",
    "STORE_RELEASE_SCRIPT",
    "PHPREDIS_RELEASE_SCRIPT",
    "lock_secret",
    "client_for",
]

log = logging.getLogger(__name__)

#: redis_session.c: LOCK_RELEASE_LUA_STR, phpredis's own compare-and-delete (for reference/tests)
PHPREDIS_RELEASE_SCRIPT = (
    'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end'
)

#: compare-and-delete, then wake the waiters.  KEYS: lock.  ARGV: secret.
#: (pcall: a user whose ACL forbids the channel still releases; its waiters poll)
RELEASE_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("del", KEYS[1])
  redis.pcall("publish", KEYS[1], "released")
  return 1
end
return 0
"""

#: SETEX only while the lock is ours.  KEYS: lock, session.  ARGV: secret, ttl, data.
WRITE_SCRIPT = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("setex", KEYS[2], ARGV[2], ARGV[3])
return 1
"""

#: EXPIRE only while the lock is ours; a key that expired meanwhile is rewritten.
#: KEYS: lock, session.  ARGV: secret, ttl, data.
TOUCH_SCRIPT = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call("expire", KEYS[2], ARGV[2]) == 0 and ARGV[3] ~= "" then
  redis.call("setex", KEYS[2], ARGV[2], ARGV[3])
end
return 1
"""

#: DEL the session and release the lock, only while the lock is ours.
#: KEYS: lock, session.  ARGV: secret.
DESTROY_SCRIPT = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("del", KEYS[2])
redis.call("del", KEYS[1])
redis.pcall("publish", KEYS[1], "released")
return 1
"""

def store_release_script(publish: str) -> str:
    """The script of a request's last step: write (or touch) and release, one round trip.

    KEYS: lock, session.  ARGV: secret, ttl, data, touch.  Only while the lock is ours
    (else 0, nothing done): ``SETEX`` (``touch`` = "1": ``EXPIRE``, and ``SETEX`` only if
    the key expired meanwhile), then delete the lock and ``publish`` (``publish`` or
    ``spublish``) on its channel to wake the waiters.
    """
    return f"""
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] ~= "1" then
  redis.call("setex", KEYS[2], ARGV[2], ARGV[3])
elseif redis.call("expire", KEYS[2], ARGV[2]) == 0 and ARGV[3] ~= "" then
  redis.call("setex", KEYS[2], ARGV[2], ARGV[3])
end
redis.call("del", KEYS[1])
redis.pcall("{publish}", KEYS[1], "released")
return 1
"""


#: write (or touch) and release in one step (:meth:`RedisHandler.write_last`)
STORE_RELEASE_SCRIPT = store_release_script("publish")

#: extend the lock's life while it is ours.  KEYS: lock.  ARGV: secret, milliseconds.
REFRESH_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

_INT_MAX = 2**31 - 1
#: PHP's default_socket_timeout, what phpredis uses when read_timeout is 0
_DEFAULT_READ_TIMEOUT = 60.0


def lock_secret() -> str:
    """A fresh lock value: phpredis's ``hostname|pid`` plus a random part, unique per lock."""
    return f"{socket.gethostname()}|{os.getpid()}|{secrets.token_hex(8)}"


class _Client:
    """A redis-py client for one server and the scripts registered on it (one per process)."""

    def __init__(self, server: RedisServer) -> None:
        kwargs: dict[str, Any] = dict(
            db=max(server.database, 0),
            username=server.user,
            password=server.password,
            socket_connect_timeout=server.timeout,
            socket_timeout=server.read_timeout or _DEFAULT_READ_TIMEOUT,
            # No silent retries: a lost reply to SET NX must not be retried into a
            # self-deadlock, and a down server must fail now, naming itself.
            retry=Retry(NoBackoff(), 0),
        )
        if server.scheme == "unix":
            kwargs["unix_socket_path"] = server.host
        else:
            kwargs["host"] = server.host
            kwargs["port"] = server.port
            kwargs["ssl"] = server.scheme == "tls"
        self.redis = redis.Redis(**kwargs)
        pool = self.redis.connection_pool
        # the request path's own connections: RESP2 (what redislink parses), without the
        # RESP3-only maintenance notifications
        link_kwargs = {k: v for k, v in pool.connection_kwargs.items() if not k.startswith("maint_notifications")}
        link_kwargs["protocol"] = 2
        self.links = Links(lambda: pool.connection_class(**link_kwargs), server.address)
        self.database = max(server.database, 0)
        #: channels waiters may subscribe to: 2 = lock + keyspace, 1 = lock only, 0 = none
        #: (lowered when the server's ACL refuses them)
        self.channels = 2


_clients: dict[tuple[Any, ...], _Client] = {}
_clients_lock = threading.Lock()


_RELEASE = Script(RELEASE_SCRIPT)
_WRITE = Script(WRITE_SCRIPT)
_TOUCH = Script(TOUCH_SCRIPT)
_DESTROY = Script(DESTROY_SCRIPT)
_REFRESH = Script(REFRESH_SCRIPT)
_STORE_RELEASE = Script(STORE_RELEASE_SCRIPT)


def _one(link: Link, command: tuple[Any, ...]) -> Any:
    """Send one command; its reply (an error reply raised)."""
    (reply,) = link.call((command,))
    if isinstance(reply, Exception):
        raise reply
    return reply


def client_for(server: RedisServer) -> redis.Redis:
    """The process-wide redis-py client for ``server`` (pooled; safe across fork and threads)."""
    return _client(server).redis


def _client(server: RedisServer) -> _Client:
    key = (
        server.scheme, server.host, server.port, server.database, server.user,
        server.password, server.timeout, server.read_timeout,
    )
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = _Client(server)
        return c


_parsed_paths: dict[str, list[RedisServer]] = {}


def _parsed(save_path: str) -> list[RedisServer]:
    """``parse_save_path`` once per save_path and process (a request's open() is then a
    dict lookup; RedisServer is frozen, the list is the caller's copy)."""
    servers = _parsed_paths.get(save_path)
    if servers is None:
        servers = parse_save_path(save_path)
        if len(_parsed_paths) >= 64:
            _parsed_paths.clear()
        _parsed_paths[save_path] = servers
    return list(servers)


def _bytes(value: Any) -> bytes | None:
    """A reply as bytes (the client does not decode, but its types allow str)."""
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except RedisError:  # pragma: no cover - closing a broken connection
        pass


def _ttl(config: SessionConfig) -> int:
    """redis_session.c: session_gc_maxlifetime(): capped at INT_MAX, <= 0 means 1440."""
    value = config.gc_maxlifetime
    if value > _INT_MAX:
        return _INT_MAX
    if value <= 0:
        log.info("session.gc_maxlifetime is <= 0, defaulting to 1440 seconds")
        return 1440
    return value


class _Refresher(threading.Thread):
    """Extends a held lock every third of its life until stopped (``lock_refresh=1``)."""

    def __init__(self, client: _Client, lock_key: str, secret: str, expire_ms: int) -> None:
        super().__init__(daemon=True, name="phpsess-redis-lock-refresh")
        self._client = client
        self._lock_key = lock_key
        self._secret = secret
        self._expire_ms = expire_ms
        self._stopped = threading.Event()

    def run(self) -> None:
        interval = self._expire_ms / 3000.0
        while not self._stopped.wait(interval):
            try:
                kept = _one(self._client.links.get(),
                            _REFRESH.call((self._lock_key,), (self._secret, self._expire_ms)))
            except RedisError as exc:
                log.warning("cannot refresh session lock %s: %s", self._lock_key, exc)
                continue
            if not kept:
                log.warning("session lock %s was lost before it could be refreshed", self._lock_key)
                return

    def stop(self) -> None:
        self._stopped.set()
        if self is not threading.current_thread():
            self.join()


class _Held:
    """The lock this handler holds: on which server, under which key, with which secret."""

    __slots__ = ("sid", "server", "client", "session_key", "lock_key", "secret", "refresher")

    def __init__(
        self, sid: str, server: RedisServer, client: _Client, secret: str | None
    ) -> None:
        self.sid = sid
        self.server = server
        self.client = client
        self.session_key = server.session_key(sid)
        self.lock_key = server.lock_key(sid)
        self.secret = secret  # None: locking disabled, nothing held
        self.refresher: _Refresher | None = None

    def stop_refresh(self) -> None:
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None


class RedisHandler(SaveHandler):
    """``session.save_handler = redis``: sessions in Redis, laid out as phpredis lays them out.

    One instance serves one request.  :meth:`read` takes ``<key>_LOCK`` and
    holds it until :meth:`close` (or :meth:`destroy`); every write checks, in
    the same atomic step, that the lock is still ours.
    """

    name = "redis"
    has_validator = True

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self._save_path = ""
        self._servers: list[RedisServer] = []
        self._held: _Held | None = None
        self._locking: _Held | None = None  # the lock being taken, for the lock hooks
        self._locked_data: bytes | None = None  # the payload read with the winning SET NX

    # -- helpers ---------------------------------------------------------------------

    def _fail(self, operation: str, server: RedisServer, exc: BaseException, sid: str = "") -> SaveHandlerError:
        what = f" session {sid}" if sid else ""
        return SaveHandlerError(
            f"redis save handler: cannot {operation}{what} on redis server {server.address}: {exc}",
            handler=self.name,
            operation=operation,
            cause=exc,
        )

    def _server(self, sid: str) -> RedisServer:
        if not self._servers:
            raise SaveHandlerError(
                "redis save handler: open() was not called (no session.save_path)",
                handler=self.name,
                operation="open",
            )
        return pick_server(self._servers, sid)

    def lock_bound(self) -> tuple[float, str]:
        """The save_path's ``?lock_timeout=`` (0: for ever), else ``session.lock_timeout``
        when set, else 30 s: a Redis lock is never waited for without end by default."""
        server = self._locking.server if self._locking is not None else None
        if server is not None and server.lock.timeout is not None:
            return (server.lock.timeout or math.inf), "the save_path's lock_timeout"
        if self.config.lock_timeout > 0:
            return float(self.config.lock_timeout), "session.lock_timeout"
        return DEFAULT_LOCK_TIMEOUT, "the redis handler's default lock_timeout"

    # -- PS_OPEN / PS_CLOSE ------------------------------------------------------------

    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: parse ``save_path`` (phpredis syntax); connections are made on first use.

        A lock still held from an earlier read is released first (as the files
        handler's open closes its descriptor: ``session_reset()``).
        :raises SaveHandlerError: for a save_path phpredis would refuse.
        """
        self.close()
        try:
            servers = _parsed(save_path)
        except SavePathError as exc:
            raise SaveHandlerError(
                f"redis save handler: {exc}", handler=self.name, operation="open", cause=exc
            )
        self._save_path = save_path
        self._servers = servers

    def close(self) -> None:
        """PS_CLOSE: release the lock taken by :meth:`read` (owner-only) and wake its waiters.

        Safe to call when nothing is held.
        :raises SaveHandlerError: when the server cannot be reached (the lock
            then expires after ``lock_expire`` seconds).
        """
        held, self._held = self._held, None
        if held is None or held.secret is None:
            return
        held.stop_refresh()
        try:
            released = _one(held.client.links.get(), _RELEASE.call((held.lock_key,), (held.secret,)))
        except RedisError as exc:
            raise self._fail("release the lock of", held.server, exc, held.sid)
        if not released:
            log.warning(
                "session lock %s had expired before close (lock_expire=%s s)",
                held.lock_key, held.server.lock.expire,
            )
        else:
            log.debug("released session lock %s", held.lock_key)

    # -- PS_READ -------------------------------------------------------------------------

    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: lock ``sid`` (exclusive; also for ``shared``) and return its payload.

        :returns: the stored bytes, ``b""`` when the key does not exist.
        :raises InvalidSessionId: ``sid`` is not ``[A-Za-z0-9,-]{1,256}``.
        :raises LockTimeout: another request held the lock for longer than the
            wait bound (``?lock_timeout=``, else ``session.lock_timeout``, else 30 s).
        :raises SaveHandlerError: the server is unreachable or answers an error.
        """
        self.check_id(sid)
        server = self._server(sid)
        if self._held is not None:
            if self._held.sid == sid:
                return self._get(self._held, sid)
            self.close()
        client = _client(server)
        if not server.lock.enabled:
            held = _Held(sid, server, client, None)
            self._held = held
            self.lock_info = LockInfo(0.0, False)
            return self._get(held, sid)
        held, data = self._acquire(sid, server, client)
        self._held = held
        return data if data is not None else b""

    def _get(self, held: _Held, sid: str) -> bytes:
        try:
            data = _one(held.client.links.get(), ("GET", held.session_key))
        except RedisError as exc:
            raise self._fail("read", held.server, exc, sid)
        return _bytes(data) or b""

    def _acquire(self, sid: str, server: RedisServer, client: _Client) -> tuple[_Held, bytes | None]:
        """Take ``<key>_LOCK`` by the lock policy and read the payload under it."""
        held = _Held(sid, server, client, lock_secret())
        assert held.secret is not None
        self._locking = held
        self._locked_data = None
        try:
            waited = self.acquire_lock(sid)
        finally:
            self._locking = None
        self.lock_acquired(sid, shared=False, waited=waited)
        if server.lock.refresh:
            held.refresher = _Refresher(client, held.lock_key, held.secret, self._expire_ms(server))
            held.refresher.start()
        log.debug("took session lock %s after %.6f s", held.lock_key, waited)
        return held, self._locked_data

    @staticmethod
    def _expire_ms(server: RedisServer) -> int:
        return max(1, int(server.lock.expire * 1000))

    # -- the lock policy's hooks (SaveHandler.acquire_lock): SET NX PX on <key>_LOCK --------
    def _lock_try(self, sid: str, shared: bool) -> bool:
        """One attempt: SET NX PX, and in the same round trip GET (kept if the SET won)."""
        held = self._locking
        assert held is not None
        try:
            link = held.client.links.get()
            ok, data = link.call((("SET", held.lock_key, held.secret or "", "NX", "PX", self._expire_ms(held.server)),
                                  ("GET", held.session_key)))
        except RedisError as exc:
            raise self._fail("lock", held.server, exc, held.sid)
        if isinstance(ok, Exception):
            raise self._fail("lock", held.server, ok, held.sid)
        if isinstance(data, Exception):
            # the session key cannot be read (WRONGTYPE: not a string): give the lock back
            # now rather than leave it to expire after lock_expire
            if ok:
                try:
                    _one(link, _RELEASE.call((held.lock_key,), (held.secret or "",)))
                except RedisError:
                    pass  # it expires after lock_expire
            raise self._fail("read", held.server, data, held.sid)
        if ok:
            self._locked_data = _bytes(data)
        return bool(ok)

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        """Wait for the lock: woken by the releaser's PUBLISH, else poll every ``lock_poll``.

        Waiters are the subscribers of the lock's channel, so ``PUBSUB NUMSUB``
        counts them for ``session.lock_max_waiters`` (a waiter that dies drops
        its connection and leaves the count by itself).
        """
        held = self._locking
        assert held is not None
        server = held.server
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        log.debug("waiting for session lock %s (bound %s s)", held.lock_key, timeout)
        pubsub = self._subscribe(held, deadline)
        try:
            while True:
                if self._lock_try(sid, shared):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                pause = min(server.lock.poll, remaining)
                if pubsub is None:
                    time.sleep(pause)
                    continue
                try:
                    msg = pubsub.get_message(timeout=pause)
                    while msg is not None:  # drain: one retry per wake-up is enough
                        msg = pubsub.get_message(timeout=0.0)
                except RedisError as exc:
                    raise self._fail("wait for the lock of", server, exc, held.sid)
        finally:
            if pubsub is not None:
                _close_quietly(pubsub)

    def _lock_waiters(self, sid: str) -> int:
        held = self._locking
        assert held is not None
        try:
            ((_, waiters),) = held.client.redis.pubsub_numsub(held.lock_key)
        except RedisError as exc:
            raise self._fail("count the waiters of", held.server, exc, held.sid)
        return int(waiters)

    def _lock_where(self, sid: str) -> str:
        held = self._locking if self._locking is not None else self._held
        if held is None:
            return ""
        return f"{held.lock_key} on {held.server.address}"

    def _lock_holder(self, sid: str) -> str:
        held = self._locking
        if held is None:
            return ""
        try:
            value = _bytes(held.client.redis.get(held.lock_key))
        except RedisError:
            return ""
        return f" (held by {value.decode('utf-8', 'replace')!r})" if value is not None else ""

    def _subscribe(self, held: _Held, deadline: float) -> Any:
        """A PubSub subscribed (confirmed by the server, so no release is missed) to the
        lock's channel and its keyspace channel; None when ACLs allow neither (then the
        waiter only polls).  Redis 7 gives new ACL users no channels by default."""
        client = held.client
        keyspace = f"__keyspace@{client.database}__:{held.lock_key}"
        options = [[held.lock_key, keyspace], [held.lock_key], []][2 - client.channels :]
        for channels in options:
            if not channels:
                break
            pubsub = client.redis.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
            try:
                pubsub.subscribe(*channels)
                confirmed = 0
                while confirmed < len(channels):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    msg = pubsub.get_message(timeout=min(remaining, 5.0))
                    if msg is not None and msg.get("type") == "subscribe":
                        confirmed += 1
                return pubsub
            except NoPermissionError:
                _close_quietly(pubsub)
                client.channels = len(channels) - 1
                log.warning(
                    "redis user may not subscribe to %s on %s: lock waiters %s",
                    " ".join(channels), held.server.address,
                    "ignore keyspace events" if client.channels else "only poll (lock_poll)",
                )
            except RedisError as exc:
                _close_quietly(pubsub)
                raise self._fail("wait for the lock of", held.server, exc, held.sid)
        return None

    def _ensure_held(self, sid: str) -> _Held:
        """The lock on ``sid``, taken now if read() did not take it (as files' write opens)."""
        self.check_id(sid)
        if self._held is not None and self._held.sid == sid:
            return self._held
        self.read(sid)
        assert self._held is not None
        return self._held

    def _lost(self, held: _Held, operation: str) -> SaveHandlerError:
        held.stop_refresh()
        if self._held is held:
            self._held = None
        return SaveHandlerError(
            f"redis save handler: refusing to {operation} session {held.sid}: its lock "
            f"{held.lock_key} on {held.server.address} expired (lock_expire="
            f"{held.server.lock.expire:g} s) and may belong to another request now",
            handler=self.name,
            operation=operation,
        )

    # -- PS_WRITE / PS_UPDATE_TIMESTAMP / PS_DESTROY ------------------------------------------

    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: ``SETEX <prefix><sid> gc_maxlifetime data``, only while the lock is ours.

        :raises SaveHandlerError: the lock expired (another request may own the
            session now; nothing is written), or the server failed.
        """
        self._store(sid, data, touch=False)

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP (lazy_write): ``EXPIRE <prefix><sid> gc_maxlifetime``.

        Only while the lock is ours; if the key expired during the request it
        is written again with ``data``.
        :raises SaveHandlerError: the lock expired, or the server failed.
        """
        self._store(sid, data, touch=True)

    def _store(self, sid: str, data: bytes, *, touch: bool) -> None:
        """SETEX (or, ``touch``, EXPIRE and SETEX only if the key is gone), fenced by the
        lock in one script; without locking, plain commands."""
        held = self._ensure_held(sid)
        ttl = _ttl(self.config)
        operation = "update the timestamp of" if touch else "write"
        try:
            if held.secret is None:
                if not (touch and held.client.redis.expire(held.session_key, ttl)) and (data or not touch):
                    held.client.redis.execute_command(  # type: ignore[no-untyped-call]
                        "SETEX", held.session_key, ttl, data
                    )
                return
            script = _TOUCH if touch else _WRITE
            ok = _one(held.client.links.get(), script.call((held.lock_key, held.session_key), (held.secret, ttl, data)))
        except RedisError as exc:
            raise self._fail(operation, held.server, exc, sid)
        if not ok:
            raise self._lost(held, operation)

    def write_last(self, sid: str, data: bytes, *, touch: bool) -> None:
        """PS_WRITE (``touch``: PS_UPDATE_TIMESTAMP) with PS_CLOSE next: write and release
        the lock in one round trip (one script: only while the lock is ours; the waiters
        are woken as by :meth:`close`, which then has nothing left to do).

        :raises SaveHandlerError: the lock expired (nothing written), or the server
            failed (the lock is then still ours to release: :meth:`close` tries).
        """
        held = self._ensure_held(sid)
        if held.secret is None:
            self._store(sid, data, touch=touch)
            return
        held.stop_refresh()
        operation = "update the timestamp of" if touch else "write"
        try:
            ok = _one(held.client.links.get(), _STORE_RELEASE.call(
                (held.lock_key, held.session_key), (held.secret, _ttl(self.config), data, "1" if touch else "")))
        except RedisError as exc:
            raise self._fail(operation, held.server, exc, sid)
        if not ok:
            raise self._lost(held, operation)
        self._held = None

    def destroy(self, sid: str) -> None:
        """PS_DESTROY: delete ``sid``; if we hold its lock, delete and unlock in one atomic step.

        Without our lock on ``sid`` this is a plain ``DEL`` (as phpredis does).
        Does not fail when ``sid`` does not exist.
        :raises SaveHandlerError: our lock expired meanwhile, or the server failed.
        """
        self.check_id(sid)
        held = self._held
        if held is not None and held.sid == sid and held.secret is not None:
            held.stop_refresh()
            try:
                ok = _one(held.client.links.get(),
                          _DESTROY.call((held.lock_key, held.session_key), (held.secret,)))
            except RedisError as exc:
                raise self._fail("destroy", held.server, exc, sid)
            if not ok:
                raise self._lost(held, "destroy")
            self._held = None
            return
        server = self._server(sid)
        try:
            _client(server).redis.delete(server.session_key(sid))
        except RedisError as exc:
            raise self._fail("destroy", server, exc, sid)
        if held is not None and held.sid == sid:
            self._held = None  # locking disabled: nothing to release

    # -- PS_GC / PS_CREATE_SID / PS_VALIDATE_SID ------------------------------------------

    def gc(self, max_lifetime: int) -> int:
        """PS_GC: nothing to do, keys expire by their TTL; returns 0 (phpredis returns SUCCESS)."""
        return 0

    def create_sid(self) -> str:
        """PS_CREATE_SID: a fresh id whose key and lock do not exist yet (3 tries, as phpredis 6).

        :raises SaveHandlerError: three colliding ids in a row, or the server failed.
        """
        return self.unused_id(self._taken, tries=3)

    def _taken(self, sid: str) -> bool:
        server = self._server(sid)
        try:
            taken = bool(_client(server).redis.exists(server.session_key(sid), server.lock_key(sid)))
        except RedisError as exc:
            raise self._fail("create an id for a", server, exc)
        if taken:
            log.info("redis session id collision on %s, retrying", sid)
        return taken

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID (use_strict_mode): True when ``<prefix><sid>`` exists.

        :raises SaveHandlerError: the server failed (never a silent "no").
        """
        if not ids.is_valid_id(sid):
            return False
        server = self._server(sid)
        try:
            return bool(_client(server).redis.exists(server.session_key(sid)))
        except RedisError as exc:
            raise self._fail("validate", server, exc, sid)
