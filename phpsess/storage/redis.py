"""The ``redis`` save handler: phpredis's data layout, with a lock that holds. Network I/O
(through the ``redis`` client library: redis-py connects; a request's commands go over
:mod:`phpsess.storage.redislink`'s kept connections, two round trips per locked cycle).

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
  (``lock_poll``, 5 ms) remains for releases nobody signals;
* the last write of a request and the release are one script
  (:meth:`~phpsess.storage.redisbase.LockedKeyHandler.write_last`).
"""

from __future__ import annotations

import logging
import os
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
    LockOptions,
    RedisServer,
    SavePathError,
    parse_save_path,
    pick_server,
)
from .redisbase import Held, LockedKeyHandler, close_quietly, lock_secret, session_ttl
from .redislink import Link, Links, Script

__all__ = [
    "RedisHandler",
    "RELEASE_SCRIPT",
    "WRITE_SCRIPT",
    "TOUCH_SCRIPT",
    "DESTROY_SCRIPT",
    "REFRESH_SCRIPT",
    "STORE_RELEASE_SCRIPT",
    "release_script",
    "store_release_script",
    "PHPREDIS_RELEASE_SCRIPT",
    "lock_secret",
    "client_for",
]

log = logging.getLogger(__name__)

#: redis_session.c: LOCK_RELEASE_LUA_STR, phpredis's own compare-and-delete (for reference/tests)
PHPREDIS_RELEASE_SCRIPT = (
    'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end'
)


def release_script(publish: str) -> str:
    """Compare-and-delete, then wake the waiters with ``publish`` (``publish``, or
    ``spublish`` on a cluster: the lock's shard channel).  KEYS: lock.  ARGV: secret.
    (pcall: a user whose ACL forbids the channel still releases; its waiters poll.)"""
    return f"""
if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("del", KEYS[1])
  redis.pcall("{publish}", KEYS[1], "released")
  return 1
end
return 0
"""


RELEASE_SCRIPT = release_script("publish")

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

    KEYS: lock, session.  ARGV: secret, ttl, data, touch, again.  Only while the lock is
    ours (else 0, nothing done): ``SETEX`` (``touch`` = "1": ``EXPIRE``, and ``SETEX``
    only if the key expired meanwhile), then delete the lock and ``publish`` (``publish``
    or ``spublish``) on its channel to wake the waiters; 1.  ``again`` = "1" marks a
    retry after a lost reply: finding the lock gone and its own data stored, it answers
    2 (done) instead of 0.
    """
    return f"""
local v = redis.call("get", KEYS[1])
if v ~= ARGV[1] then
  if v == false and ARGV[5] == "1" and redis.call("get", KEYS[2]) == ARGV[3] then return 2 end
  return 0
end
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
        self._idle = threading.local()
        #: channels waiters may subscribe to: 2 = lock + keyspace, 1 = lock only, 0 = none
        #: (lowered when the server's ACL refuses them)
        self.channels = 2

    def idle_pubsub(self) -> Any:
        """A pub/sub connection for a waiter of this thread: the one its last wait left
        subscribed to nothing, else a new one."""
        kept = getattr(self._idle, "pubsub", None)
        self._idle.pubsub = None
        if kept is not None:
            pid, pubsub = kept
            if pid == os.getpid():
                return pubsub
        return self.redis.pubsub()  # type: ignore[no-untyped-call,unused-ignore]

    def keep_pubsub(self, pubsub: Any) -> None:
        """Give a waiter's pub/sub connection, subscribed to nothing now, back to its
        thread for the next wait."""
        previous = getattr(self._idle, "pubsub", None)
        self._idle.pubsub = (os.getpid(), pubsub)
        if previous is not None:  # pragma: no cover - one wait at a time per thread
            close_quietly(previous[1])


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


_ttl = session_ttl  # (the name the rediscluster handler and tests import)


class _Held(Held):
    """The lock this handler holds: on which server, under which key, with which secret."""

    __slots__ = ("server", "client")

    def __init__(self, sid: str, server: RedisServer, client: _Client, secret: str | None) -> None:
        super().__init__(sid, server.session_key(sid), server.lock_key(sid), secret)
        self.server = server
        self.client = client


class RedisHandler(LockedKeyHandler):
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
        self._locking: _Held | None = None

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

    # -- the hooks of LockedKeyHandler ----------------------------------------------------------
    def _lock_options(self, sid: str) -> LockOptions:
        return self._server(sid).lock

    def _new_held(self, sid: str, secret: str | None) -> _Held:
        server = self._server(sid)
        return _Held(sid, server, _client(server), secret)

    def _get(self, held: Held) -> bytes:
        assert isinstance(held, _Held)
        try:
            data = _one(held.client.links.get(), ("GET", held.session_key))
        except RedisError as exc:
            raise self._fail("read", held.server, exc, held.sid)
        return _bytes(data) or b""

    def _release(self, held: Held) -> bool:
        assert isinstance(held, _Held)
        try:
            released = _one(held.client.links.get(), _RELEASE.call((held.lock_key,), (held.secret,)))
        except RedisError as exc:
            raise self._fail("release the lock of", held.server, exc, held.sid)
        log.debug("released session lock %s: %s", held.lock_key, released)
        return bool(released)

    def _refresh(self, held: Held) -> bool:
        assert isinstance(held, _Held)
        try:
            return bool(_one(held.client.links.get(), _REFRESH.call(
                (held.lock_key,), (held.secret, self._expire_ms(held.server)))))
        except RedisError as exc:
            raise self._fail("refresh the lock of", held.server, exc, held.sid)

    def _store_fenced(self, held: Held, data: bytes, ttl: int, *, touch: bool, release: bool,
                      operation: str) -> bool:
        assert isinstance(held, _Held)
        if release:
            command = _STORE_RELEASE.call((held.lock_key, held.session_key),
                                          (held.secret, ttl, data, "1" if touch else "", ""))
        else:
            command = (_TOUCH if touch else _WRITE).call((held.lock_key, held.session_key), (held.secret, ttl, data))
        try:
            return bool(_one(held.client.links.get(), command))
        except RedisError as exc:
            raise self._fail(operation, held.server, exc, held.sid)

    def _store_unlocked(self, held: Held, data: bytes, ttl: int, *, touch: bool, operation: str) -> None:
        assert isinstance(held, _Held)
        try:
            link = held.client.links.get()
            if not (touch and _one(link, ("EXPIRE", held.session_key, ttl))) and (data or not touch):
                _one(link, ("SETEX", held.session_key, ttl, data))
        except RedisError as exc:
            raise self._fail(operation, held.server, exc, held.sid)

    def _lock_place(self, held: Held) -> str:
        assert isinstance(held, _Held)
        return f"{held.lock_key} on {held.server.address}"

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

    def _await_release(self, pubsub: Any, pause: float, held: Held) -> bool:
        """The releaser's PUBLISH (or a keyspace event), else ``pause`` seconds.

        Waiters are the subscribers of the lock's channel, so ``PUBSUB NUMSUB``
        counts them for ``session.lock_max_waiters`` (a waiter that dies drops
        its connection and leaves the count by itself).
        """
        assert isinstance(held, _Held)
        try:
            msg = pubsub.get_message(timeout=pause)
            while msg is not None:
                msg = pubsub.get_message(timeout=0.0)
        except RedisError as exc:
            raise self._fail("wait for the lock of", held.server, exc, held.sid)
        return True

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

    def _subscribe(self, held: Held, deadline: float) -> Any:
        """A PubSub subscribed (confirmed by the server, so no release is missed) to the
        lock's channel and its keyspace channel; None when ACLs allow neither (then the
        waiter only polls).  Redis 7 gives new ACL users no channels by default."""
        assert isinstance(held, _Held)
        client = held.client
        keyspace = f"__keyspace@{client.database}__:{held.lock_key}"
        options = [[held.lock_key, keyspace], [held.lock_key], []][2 - client.channels :]
        for channels in options:
            if not channels:
                break
            pubsub = client.idle_pubsub()
            try:
                pubsub.subscribe(*channels)
                # confirmations of these channels (a reused connection may first bring the
                # ends of its previous wait: unsubscribe confirmations, a late message)
                waiting_for = {c.encode("utf-8", "surrogateescape") for c in channels}
                while waiting_for:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    msg = pubsub.get_message(timeout=min(remaining, 5.0))
                    if msg is not None and msg.get("type") == "subscribe":
                        waiting_for.discard(_bytes(msg.get("channel")) or b"")
                return pubsub
            except NoPermissionError:
                close_quietly(pubsub)
                client.channels = len(channels) - 1
                log.warning(
                    "redis user may not subscribe to %s on %s: lock waiters %s",
                    " ".join(channels), held.server.address,
                    "ignore keyspace events" if client.channels else "only poll (lock_poll)",
                )
            except RedisError as exc:
                close_quietly(pubsub)
                raise self._fail("wait for the lock of", held.server, exc, held.sid)
        return None

    def _done_waiting(self, pubsub: Any, held: Held) -> None:
        """Unsubscribe, and keep the connection for this thread's next wait (a waiter pays
        for a new connection once per thread, not once per wait)."""
        try:
            pubsub.unsubscribe()
        except RedisError:
            close_quietly(pubsub)
            return
        assert isinstance(held, _Held)
        held.client.keep_pubsub(pubsub)

    # -- PS_DESTROY / PS_VALIDATE_SID ----------------------------------------------------------

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
