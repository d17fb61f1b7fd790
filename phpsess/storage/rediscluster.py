"""The ``rediscluster`` save handler: phpredis's cluster layout, with a lock that holds across
failovers and slot migrations. Network I/O (through redis-py's ``RedisCluster``, imported
only here and in :mod:`phpsess.storage.redis`).

Layout, shared with PHP applications that use phpredis's ``rediscluster`` handler
(``redis_session.c``): session ``<id>`` is the string key ``<prefix><id>``
(``PHPREDIS_CLUSTER_SESSION:<id>``), written with ``SETEX gc_maxlifetime``.

phpredis's cluster handler has no lock at all.  phpsess's lock is ``{<prefix><id>}_LOCK``
(:func:`~phpsess.core.rediscluster_url.lock_key_for`): the session key is its hash tag,
so the lock and the session share one hash slot, and therefore one master, one replica
set, and one migration.  That makes the redis handler's guarantees hold in a cluster:

* taking the lock, reading under it, writing only while it is ours, deleting, releasing:
  each is one Lua script over the two keys, atomic on the slot's master;
* every script is idempotent (it compares the lock with this request's own random value),
  so a command whose reply was lost to a dying master is simply sent again to the new
  one (for up to ``retry_timeout`` seconds): a failover delays requests, it does not
  fail them, nor apply a write twice;
* after taking the lock and after each write, ``WAIT`` for ``wait_replicas`` replicas
  (in the same round trip): a master that crashes right after cannot take the lock or
  the write with it, since its promoted replica already has them;
* during a slot migration the scripts follow ``ASK`` redirections to the importing node
  (``TRYAGAIN`` while the two keys are split between the nodes is retried), and
  ``MOVED`` after it;
* releases wake the waiters with ``SPUBLISH`` on the lock's shard channel (sharded
  pub/sub, Redis 7), which also counts them for ``session.lock_max_waiters``
  (``PUBSUB SHARDNUMSUB``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..core import ids
from ..core.config import SessionConfig
from ..core.rediscluster_url import ClusterConfig, SavePathError, key_slot, parse_save_path
from ..errors import SaveHandlerError
from ..core.redis_url import LockOptions
from .base import StoredLock
from .redis import REFRESH_SCRIPT, TOUCH_SCRIPT, WRITE_SCRIPT, _bytes, release_script, store_release_script
from .redisbase import Held, LockedKeyHandler, close_quietly
from .redislink import Links, Script

__all__ = ["RedisClusterHandler", "ACQUIRE_SCRIPT", "RELEASE_SCRIPT", "DESTROY_SCRIPT", "STORE_RELEASE_SCRIPT",
           "cluster_for"]

log = logging.getLogger(__name__)

#: take the lock (or find it ours already: a retried acquisition) and read the session.
#: KEYS: lock, session.  ARGV: secret, milliseconds.  {1, data} when held, {0, holder} when busy.
ACQUIRE_SCRIPT = """
local v = redis.call("get", KEYS[1])
if v == ARGV[1] then return {1, redis.call("get", KEYS[2])} end
if v then return {0, v} end
redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
return {1, redis.call("get", KEYS[2])}
"""

#: compare-and-delete, then wake the waiters on the lock's shard channel
RELEASE_SCRIPT = release_script("spublish")

#: DEL the session and release the lock, only while the lock is ours.  KEYS: lock, session.
#: ARGV: secret.  (Retried after a lost reply, it finds both gone: 2.)
DESTROY_SCRIPT = """
local v = redis.call("get", KEYS[1])
if v == false then
  if redis.call("exists", KEYS[2]) == 0 then return 2 end
  return 0
end
if v ~= ARGV[1] then return 0 end
redis.call("del", KEYS[2])
redis.call("del", KEYS[1])
redis.pcall("spublish", KEYS[1], "released")
return 1
"""

#: write (or touch) and release in one step (:meth:`RedisClusterHandler.write_last`)
STORE_RELEASE_SCRIPT = store_release_script("spublish")

_ACQUIRE = Script(ACQUIRE_SCRIPT)
_RELEASE = Script(RELEASE_SCRIPT)
_DESTROY = Script(DESTROY_SCRIPT)
_WRITE = Script(WRITE_SCRIPT)
_TOUCH = Script(TOUCH_SCRIPT)
_REFRESH = Script(REFRESH_SCRIPT)
_STORE_RELEASE = Script(STORE_RELEASE_SCRIPT)

#: errors after which the command is sent again (to the slot's master as the cluster now sees it)
_RETRY = (RedisConnectionError, RedisTimeoutError, ClusterDownError, SlotNotCoveredError, TryAgainError,
          MovedError, ReadOnlyError, MasterDownError, BusyLoadingError)
#: what redis-py's cluster client raises: RedisClusterException (no seed answers, a slot
#: nobody serves) is not a RedisError
_ERRORS = (RedisError, RedisClusterException)
_DEFAULT_SOCKET_TIMEOUT = 60.0  # PHP's default_socket_timeout (timeout/read_timeout 0)


class _Cluster:
    """A redis-py RedisCluster for one set of seeds and credentials (one per process)."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self.lock = threading.Lock()
        self.client: RedisCluster | None = None
        self._links: dict[str, Links] = {}

    def links(self, node: ClusterNode) -> Links:
        """The request path's connections to ``node`` (:mod:`~phpsess.storage.redislink`)."""
        links = self._links.get(node.name)
        if links is None:
            cfg = self.cfg
            host, port = node.host, node.port

            def make() -> Connection:
                return Connection(host=host, port=port, username=cfg.user, password=cfg.password,  # type: ignore[no-untyped-call]
                                  socket_connect_timeout=cfg.timeout or _DEFAULT_SOCKET_TIMEOUT,
                                  socket_timeout=cfg.read_timeout or _DEFAULT_SOCKET_TIMEOUT,
                                  retry=Retry(NoBackoff(), 0), protocol=2)

            with self.lock:
                links = self._links.setdefault(node.name, Links(make, node.name))
        return links

    def get(self) -> RedisCluster:
        """The client, connected (the slot map read) on first use."""
        with self.lock:
            if self.client is None:
                cfg = self.cfg
                self.client = RedisCluster(
                    startup_nodes=[ClusterNode(s.host, s.port) for s in cfg.seeds],  # type: ignore[no-untyped-call]
                    username=cfg.user,
                    password=cfg.password,
                    socket_connect_timeout=cfg.timeout or _DEFAULT_SOCKET_TIMEOUT,
                    socket_timeout=cfg.read_timeout or _DEFAULT_SOCKET_TIMEOUT,
                    # the handler retries itself (every command it sends is idempotent)
                    retry=Retry(NoBackoff(), 0),
                    require_full_coverage=False,
                )
            return self.client


_parsed_paths: dict[str, ClusterConfig] = {}


def _parsed(save_path: str) -> ClusterConfig:
    """``parse_save_path`` once per save_path and process (a request's open() is then a
    dict lookup; ClusterConfig is frozen)."""
    cfg = _parsed_paths.get(save_path)
    if cfg is None:
        cfg = parse_save_path(save_path)
        if len(_parsed_paths) >= 64:
            _parsed_paths.clear()
        _parsed_paths[save_path] = cfg
    return cfg


_clusters: dict[tuple[Any, ...], _Cluster] = {}
_clusters_lock = threading.Lock()


def _cluster(cfg: ClusterConfig) -> _Cluster:
    key = (os.getpid(), cfg.seeds, cfg.user, cfg.password, cfg.timeout, cfg.read_timeout)
    with _clusters_lock:
        c = _clusters.get(key)
        if c is None:
            c = _clusters[key] = _Cluster(cfg)
        return c


def cluster_for(save_path: str) -> RedisCluster:
    """The process's redis-py RedisCluster for a rediscluster ``save_path`` (tools, tests).

    :raises SaveHandlerError: a save_path phpredis refuses, or no seed answers.
    """
    try:
        cfg = parse_save_path(save_path)
    except SavePathError as exc:
        raise SaveHandlerError(f"rediscluster save handler: {exc}", handler="rediscluster", operation="open",
                               cause=exc)
    try:
        return _cluster(cfg).get()
    except _ERRORS as exc:
        raise SaveHandlerError(f"rediscluster save handler: no seed answers ({cfg.addresses}): {exc}",
                               handler="rediscluster", operation="open", cause=exc)


class _Held(Held):
    """The lock this handler holds: under which keys, with which secret."""

    __slots__ = ()

    def __init__(self, sid: str, cfg: ClusterConfig, secret: str | None) -> None:
        super().__init__(sid, cfg.session_key(sid), cfg.lock_key(sid), secret)


class RedisClusterHandler(LockedKeyHandler):
    """``session.save_handler = rediscluster``: sessions in Redis Cluster, laid out as
    phpredis lays them out, with phpsess's lock in each session's own hash slot."""

    name = "rediscluster"
    has_validator = True

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self._cfg: ClusterConfig | None = None
        self._holder = b""  # the lock's value when ACQUIRE found it busy

    # -- helpers ------------------------------------------------------------------------

    def _config(self) -> ClusterConfig:
        if self._cfg is None:
            raise SaveHandlerError("rediscluster save handler: open() was not called (no session.save_path)",
                                   handler=self.name, operation="open")
        return self._cfg

    def _client(self, operation: str, sid: str) -> RedisCluster:
        cfg = self._config()
        try:
            return _cluster(cfg).get()
        except _ERRORS as exc:
            raise self._fail(operation, f"any seed ({cfg.addresses})", exc, sid)

    def _fail(self, operation: str, where: str, exc: BaseException, sid: str = "") -> SaveHandlerError:
        what = f" session {sid}" if sid else ""
        return SaveHandlerError(
            f"rediscluster save handler: cannot {operation}{what} on {where}: {exc}",
            handler=self.name,
            operation=operation,
            cause=exc,
        )

    def _expire_ms(self) -> int:
        return max(1, int(self._config().lock.expire * 1000))

    def _replicas(self, client: RedisCluster, slot: int) -> int:
        """How many replicas a write to ``slot`` waits for (what the slot map knows of)."""
        want = self._config().wait_replicas
        if want <= 0:
            return 0
        known = len(client.nodes_manager.slots_cache.get(slot) or ()) - 1
        return min(want, max(known, 0))

    def _run(self, sid: str, key: str, commands: list[tuple[Any, ...]], *, wait: bool,
             operation: str = "", again: list[tuple[Any, ...]] | None = None) -> list[Any]:
        """Send ``commands`` (all on ``key``'s slot) to that slot's master in one round trip,
        followed by ``WAIT`` when ``wait``; follow ASK/MOVED, and retry across a failover
        for up to ``retry_timeout`` seconds.  Every command given here is idempotent, or
        has an ``again`` form to send instead once a first try may have run.

        :returns: the commands' results (not WAIT's).
        :raises SaveHandlerError: naming the node, when a command fails for good.
        """
        operation = operation or str(commands[0][0]).lower()
        cfg = self._config()
        cluster = _cluster(cfg)
        try:
            client = cluster.get()
        except _ERRORS as exc:
            raise self._fail(operation, f"any seed ({cfg.addresses})", exc, sid)
        slot = key_slot(key)
        deadline = time.monotonic() + cfg.retry_timeout
        delay = 0.01
        ask: ClusterNode | None = None
        node: ClusterNode | None = None
        while True:
            problem: BaseException | None = None
            try:
                node = ask if ask is not None else _master(client, key)
                ask = None
                replicas = self._replicas(client, slot) if wait else 0
                link = cluster.links(node).get()
                asking = node is not _master(client, key)
                batch: list[tuple[Any, ...]] = [("ASKING",)] if asking else []
                batch.extend(commands)
                if again is not None:
                    commands = again  # what a retry sends, once this may have run
                if replicas:
                    batch.append(("WAIT", replicas, max(1, int(cfg.wait_timeout * 1000))))
                results = link.call(batch)
                if asking:
                    results = results[1:]
                for r in results:
                    if isinstance(r, AskError):
                        ask = client.nodes_manager.get_node(host=r.host, port=r.port)
                        if ask is None:
                            client.nodes_manager.initialize()
                        problem = r
                        break
                    if isinstance(r, _RETRY):
                        problem = r
                        break
                    if isinstance(r, ResponseError):
                        raise self._fail(operation, f"redis cluster node {node.name}", r, sid)
                if problem is None:
                    if replicas:
                        acked = results.pop()
                        if isinstance(acked, int) and acked < replicas:
                            log.warning("%s of session %s: %d of %d replicas acknowledged within %s s",
                                        operation, sid, acked, replicas, cfg.wait_timeout)
                    return list(results)
            except _RETRY as exc:
                problem = exc
            except SaveHandlerError:
                raise
            except _ERRORS as exc:
                raise self._fail(operation, f"redis cluster node {node.name if node else cfg.addresses}", exc, sid)
            if time.monotonic() >= deadline:
                where = f"redis cluster node {node.name}" if node is not None else f"seeds {cfg.addresses}"
                raise self._fail(operation, where + f" (retried {cfg.retry_timeout:g} s)", problem, sid)
            if isinstance(problem, AskError):
                continue  # straight to the importing node
            if isinstance(problem, (MovedError, ReadOnlyError)):
                self._reload_slots(client)
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
            if not isinstance(problem, TryAgainError):
                self._reload_slots(client)

    @staticmethod
    def _reload_slots(client: RedisCluster) -> None:
        """Read the slot map again (after MOVED, a dead master, a promoted replica)."""
        try:
            client.nodes_manager.initialize()
        except _ERRORS as exc:
            log.debug("cannot refresh the cluster's slot map yet: %s", exc)

    # -- PS_OPEN / PS_CLOSE ----------------------------------------------------------------

    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: parse ``save_path`` (phpredis's ``seed[]=...`` syntax); the cluster's slot
        map is read on first use.  A lock still held from an earlier read is released first.

        :raises SaveHandlerError: for a save_path phpredis would refuse.
        """
        self.close()
        try:
            self._cfg = _parsed(save_path)
        except SavePathError as exc:
            raise SaveHandlerError(f"rediscluster save handler: {exc}", handler=self.name, operation="open",
                                   cause=exc)

    # -- the hooks of LockedKeyHandler ----------------------------------------------------------

    def _lock_options(self, sid: str) -> LockOptions:
        return self._config().lock

    def _new_held(self, sid: str, secret: str | None) -> _Held:
        return _Held(sid, self._config(), secret)

    def _release(self, held: Held) -> bool:
        (released,) = self._run(held.sid, held.lock_key, [_RELEASE.call((held.lock_key,), (held.secret,))],
                                wait=False, operation="release the lock of")
        return bool(released)

    def _refresh(self, held: Held) -> bool:
        (kept,) = self._run(held.sid, held.lock_key,
                            [_REFRESH.call((held.lock_key,), (held.secret or "", self._expire_ms()))],
                            wait=False, operation="refresh the lock of")
        return bool(kept)

    def _store_fenced(self, held: Held, data: bytes, ttl: int, *, touch: bool, release: bool,
                      operation: str) -> bool:
        keys = (held.lock_key, held.session_key)
        if release:
            # a retry after a lost reply finds the lock gone: "again" tells it to look for its own write
            args = (held.secret, ttl, data, "1" if touch else "")
            (ok,) = self._run(held.sid, held.lock_key, [_STORE_RELEASE.call(keys, (*args, ""))], wait=True,
                              operation=operation, again=[_STORE_RELEASE.call(keys, (*args, "1"))])
        else:
            (ok,) = self._run(held.sid, held.lock_key, [(_TOUCH if touch else _WRITE).call(
                keys, (held.secret, ttl, data))], wait=True, operation=operation)
        return bool(ok)

    def _store_unlocked(self, held: Held, data: bytes, ttl: int, *, touch: bool, operation: str) -> None:
        if touch:
            (ok,) = self._run(held.sid, held.session_key, [("EXPIRE", held.session_key, ttl)], wait=True,
                              operation=operation)
            if ok or not data:
                return
        self._run(held.sid, held.session_key, [("SETEX", held.session_key, ttl, data)], wait=True,
                  operation=operation)

    # -- for the tools (phpsess show, phpsess locks) ---------------------------------------

    def peek(self, sid: str) -> bytes | None:
        """The stored payload of ``sid`` without taking its lock (``phpsess show``).

        :returns: None when the session does not exist.
        :raises SaveHandlerError: the cluster is unreachable or answers an error.
        """
        self.check_id(sid)
        key = self._config().session_key(sid)
        (data,) = self._run(sid, key, [("GET", key)], wait=False, operation="read")
        return _bytes(data)

    def list_locks(self) -> list[StoredLock]:
        """Every session lock in the cluster (``phpsess locks``): SCAN on each master for
        lock keys of save_path's prefix, with their holder, time left and waiters.

        :raises SaveHandlerError: the cluster is unreachable or a master fails.
        """
        cfg = self._config()
        client = self._client("list the locks", "")
        found: list[StoredLock] = []
        for node in client.get_primaries():  # type: ignore[no-untyped-call]
            conn = node.redis_connection
            if conn is None:  # pragma: no cover - a node redis-py has not connected yet
                continue
            try:
                for raw in conn.scan_iter(match="*_LOCK", count=1000):
                    key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                    sid = _sid_of_lock(cfg, key)
                    if sid is None:
                        continue
                    pipe = conn.pipeline(transaction=False)
                    pipe.get(key)
                    pipe.pttl(key)
                    pipe.execute_command("PUBSUB", "SHARDNUMSUB", key)
                    value, pttl, subs = pipe.execute()
                    if value is None:
                        continue  # released meanwhile
                    waiters = int(subs[1]) if isinstance(subs, list) and len(subs) > 1 else 0
                    found.append(StoredLock(sid, key, node.name, (_bytes(value) or b"").decode("utf-8", "replace"),
                                            pttl / 1000.0 if isinstance(pttl, int) and pttl >= 0 else None,
                                            waiters))
            except _ERRORS as exc:
                raise self._fail("list the locks", f"redis cluster node {node.name}", exc)
        return sorted(found, key=lambda lock: lock.sid)

    def _get(self, held: Held) -> bytes:
        (data,) = self._run(held.sid, held.session_key, [("GET", held.session_key)], wait=False, operation="read")
        return _bytes(data) or b""

    # -- the lock policy's hooks ---------------------------------------------------------------

    def _lock_try(self, sid: str, shared: bool) -> bool:
        """One ACQUIRE script (and WAIT for the replicas when it won)."""
        held = self._locking
        assert held is not None and held.secret is not None
        (result,) = self._run(sid, held.lock_key, [_ACQUIRE.call((held.lock_key, held.session_key),
                                                                 (held.secret, self._expire_ms()))],
                              wait=True, operation="lock")
        won, value = result
        if won:
            self._locked_data = _bytes(value)
            return True
        self._holder = _bytes(value) or b""
        return False

    def _await_release(self, pubsub: Any, pause: float, held: Held) -> bool:
        """The releaser's SPUBLISH (sharded pub/sub on the lock's master), else ``pause``
        seconds; False when the node went away (the waiter polls from now on)."""
        try:
            msg = pubsub.get_sharded_message(timeout=pause)
            while msg is not None:
                msg = pubsub.get_sharded_message(timeout=0.0)
        except _ERRORS:
            return False
        return True

    def _subscribe(self, held: Held, deadline: float) -> Any:
        """A pub/sub connection to the lock's master, subscribed (confirmed) to the lock's
        shard channel; None when that fails (the waiter then polls)."""
        try:
            client = self._client("wait for the lock of", held.sid)
            node = _master(client, held.lock_key)
            conn = node.redis_connection
            if conn is None:  # pragma: no cover
                return None
            pubsub = conn.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
        except (*_ERRORS, SaveHandlerError) as exc:
            log.debug("waiters of %s poll: %s", held.lock_key, exc)
            return None
        try:
            pubsub.ssubscribe(held.lock_key)
            while time.monotonic() < deadline:
                msg = pubsub.get_sharded_message(ignore_subscribe_messages=False,
                                                 timeout=min(deadline - time.monotonic(), 2.0))
                if msg is not None and msg.get("type") == "ssubscribe":
                    return pubsub
            close_quietly(pubsub)
        except _ERRORS as exc:
            log.debug("waiters of %s poll: %s", held.lock_key, exc)
            close_quietly(pubsub)
        return None

    def _lock_waiters(self, sid: str) -> int:
        held = self._locking
        assert held is not None
        (reply,) = self._run(sid, held.lock_key, [("PUBSUB", "SHARDNUMSUB", held.lock_key)], wait=False,
                             operation="count the waiters of")
        return int(reply[1]) if isinstance(reply, list) and len(reply) > 1 else 0

    def _lock_where(self, sid: str) -> str:
        held = self._locking if self._locking is not None else self._held
        if held is None:
            return ""
        return f"{held.lock_key} in redis cluster slot {key_slot(held.lock_key)}"

    def _lock_holder(self, sid: str) -> str:
        value = self._holder
        return f" (held by {value.decode('utf-8', 'replace')!r})" if value else ""

    # -- PS_DESTROY / PS_VALIDATE_SID ------------------------------------------------------------

    def destroy(self, sid: str) -> None:
        """PS_DESTROY: delete ``sid``; with our lock, delete and unlock in one atomic step.

        Does not fail when ``sid`` does not exist.
        :raises SaveHandlerError: our lock expired meanwhile, or the cluster failed.
        """
        self.check_id(sid)
        cfg = self._config()
        held = self._held
        if held is not None and held.sid == sid and held.secret is not None:
            held.stop_refresh()
            (ok,) = self._run(sid, held.lock_key, [_DESTROY.call((held.lock_key, held.session_key), (held.secret,))],
                              wait=True, operation="destroy")
            if not ok:
                raise self._lost(held, "destroy")
            self._held = None
            return
        key = cfg.session_key(sid)
        self._run(sid, key, [("DEL", key)], wait=True, operation="destroy")
        if held is not None and held.sid == sid:
            self._held = None

    def _taken(self, sid: str) -> bool:
        cfg = self._config()
        key = cfg.session_key(sid)
        (n,) = self._run(sid, key, [("EXISTS", key, cfg.lock_key(sid))], wait=False, operation="create an id for")
        return bool(n)

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID (use_strict_mode): True when ``<prefix><sid>`` exists.

        :raises SaveHandlerError: the cluster failed (never a silent "no").
        """
        if not ids.is_valid_id(sid):
            return False
        key = self._config().session_key(sid)
        (n,) = self._run(sid, key, [("EXISTS", key)], wait=False, operation="validate")
        return bool(n)


def _sid_of_lock(cfg: ClusterConfig, key: str) -> str | None:
    """The session id whose lock is ``key`` under save_path's prefix, else None."""
    body = key[:-len("_LOCK")]
    for candidate in (body, body[1:-1] if body.startswith("{") else "", body.partition("}")[2]):
        if candidate.startswith(cfg.prefix):
            sid = candidate[len(cfg.prefix):]
            if sid and ids.is_valid_id(sid) and cfg.lock_key(sid) == key:
                return sid
    return None


def _master(client: RedisCluster, key: str) -> ClusterNode:
    """The master serving ``key``'s slot in the client's slot map."""
    node: ClusterNode = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return node

