"""The ``memcached`` save handler: php-memcached's keys, lock and server choice, with a lock
that holds. Network I/O (through ``pymemcache``, imported only here).

Layout, shared with PHP applications that use php-memcached 3 (``php_memcached_session.c``):

* session ``<id>`` is the key ``<memcached.sess_prefix><id>`` (``memc.sess.key.<id>``),
  stored as it is (flags 0) with ``set``, expiring after ``session.gc_maxlifetime``
  (above 30 days as a Unix time, memcached's rule); lazy_write refreshes it with ``touch``;
* the lock is ``<prefix>lock.<id>``, taken with ``add`` (which fails while it exists),
  expiring after ``memcached.sess_lock_expire`` seconds; php-memcached's lock value is
  ``1``, phpsess's ``phpsess|hostname|pid|<random>`` (its own, so it can tell);
* the server of each key is libmemcached's (:class:`~phpsess.core.memcached_url.Distribution`):
  the session and its lock hash separately and may live on different servers;
  ``memcached.sess_number_of_replicas`` copies the session to the next servers.

Where phpsess differs from php-memcached (whose lock is on by default, but whose waiter
gives up after ``sess_lock_retries`` tries, ~0.75 s, and whose unlock deletes the key
whoever holds it):

* a waiter retries on php-memcached's schedule (``sess_lock_wait_min`` doubling up to
  ``sess_lock_wait_max``) until ``session.lock_timeout``, or when that is 0 for as long
  as php-memcached's retries would take; then :class:`~phpsess.errors.LockTimeout`:
  a request never runs without the lock (PHP's read fails there too, with a warning);
* a lock whose holder died frees itself after ``sess_lock_expire`` seconds (php-memcached
  uses ``max_execution_time`` when that is 0, which is 0 -- for ever -- in the CLI;
  phpsess uses 30 s);
* before each write the lock is checked and renewed in one compare-and-swap (``ms <lock>
  C<cas>`` on the CAS its ``add`` returned; ``gets`` + ``cas`` on a memcached without the
  meta protocol): a holder whose lock expired gets
  :class:`~phpsess.errors.SaveHandlerError` and writes nothing, and a write is never more
  than a round trip away from a fresh ``sess_lock_expire`` lease;
* the release is a compare-and-delete (``md <lock> C<cas>``; classic: ``cas`` to an
  already expired item): a holder whose lock expired never deletes the next owner's lock;
* round trips (memcached 1.6's meta protocol, docs/memcached.md): the lock's add and the
  session's read go together, and so do the last write and the release
  (:meth:`MemcachedHandler.write_last`): 3 per locked cycle, php-memcached's 4;
* waiters register in short-lived slots ``<lock key>.w<n>`` so that
  ``session.lock_max_waiters`` can count them.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterator, TypeVar

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import (
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)

from ..core import ids
from ..core.config import SessionConfig
from ..core.memcached_url import (
    MAX_KEY,
    Distribution,
    MemcachedServer,
    SavePathError,
    expiration,
    lock_key,
    parse_save_path,
    session_key,
)
from ..errors import SaveHandlerError
from .base import LockInfo, SaveHandler, StoredLock

__all__ = ["MemcachedHandler", "client_for", "lock_token", "DEFAULT_LOCK_EXPIRE", "WAITER_SLOTS"]

log = logging.getLogger(__name__)

#: seconds a lock lives when memcached.sess_lock_expire is 0 (php-fpm's max_execution_time)
DEFAULT_LOCK_EXPIRE = 30
#: how many waiters session.lock_max_waiters can count on one session
WAITER_SLOTS = 64
#: seconds a waiter's slot outlives its last refresh (a killed waiter leaves the count)
_SLOT_TTL = 3
_IO_TIMEOUT = 5.0  # libmemcached's MEMCACHED_DEFAULT_TIMEOUT
_CONNECT_TIMEOUT = 4.0  # MEMCACHED_DEFAULT_CONNECT_TIMEOUT
_PHP_LOCK_VALUE = b"1"

_T = TypeVar("_T")


_token_prefix: tuple[int, str] = (0, "")


def lock_token() -> bytes:
    """A fresh lock value, unique per acquisition: ``phpsess|hostname|pid|<random>``."""
    global _token_prefix
    pid = os.getpid()
    if _token_prefix[0] != pid:  # the host name is asked once per process (and after fork)
        _token_prefix = (pid, f"phpsess|{socket.gethostname()}|{pid}|")
    return (_token_prefix[1] + secrets.token_hex(8)).encode()


_clients: dict[tuple[Any, ...], PooledClient] = {}
_clients_lock = threading.Lock()


def _close_clients() -> None:
    """At interpreter exit: close this process's pooled connections (left to the garbage
    collector, each open socket would be a ResourceWarning)."""
    with _clients_lock:
        for key, client in list(_clients.items()):
            if key[0] == os.getpid():
                try:
                    client.close()
                except (MemcacheError, OSError):  # pragma: no cover - a connection already broken
                    pass


atexit.register(_close_clients)


def client_for(server: MemcachedServer, connect_timeout: float = _CONNECT_TIMEOUT) -> PooledClient:
    """The process's pooled pymemcache client for ``server`` (a new pool after fork)."""
    key = (os.getpid(), server.name, server.port, connect_timeout)
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            address: Any = server.name if server.unix else (server.host, server.port)
            c = _clients[key] = PooledClient(
                address, connect_timeout=connect_timeout, timeout=_IO_TIMEOUT, no_delay=True,
                default_noreply=False, max_pool_size=64,
            )
        return c


# -- the meta protocol: the session cycle's round trips ---------------------------------------
#
# memcached >= 1.6 answers "meta" commands (mg, ms, md) whose flags do in one command what
# the classic protocol needs two for: ``ms ... ME c`` adds the lock and returns its CAS,
# ``ms ... C<cas>`` renews it only if it is still the one we added, ``md ... C<cas>``
# deletes it only then.  Commands for one server are sent together and their replies read
# in order (one round trip).  Servers that do not answer the meta protocol (memcached
# before 1.6) get the classic commands through pymemcache, as before.


def _connect(server: MemcachedServer, timeout: float) -> socket.socket:
    """A new socket connected to ``server`` (unix or TCP), with ``timeout`` set.

    :raises OSError: the server cannot be reached.
    """
    if not server.unix:
        return socket.create_connection((server.host, server.port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(server.name)
    except OSError:
        sock.close()
        raise
    return sock


class _MetaConn:
    """One socket to a memcached server, and the bytes read from it not yet consumed."""

    __slots__ = ("sock", "buf", "reused")

    def __init__(self, server: MemcachedServer, connect_timeout: float) -> None:
        sock = _connect(server, connect_timeout)
        if not server.unix:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(_IO_TIMEOUT)
        self.sock = sock
        self.buf = b""
        self.reused = False  # taken from the pool: the server may have closed it meanwhile

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise MemcacheUnexpectedCloseError()
        self.buf += chunk

    def reply(self) -> tuple[bytes, bytes | None]:
        """The next reply: its header line, and its value when it has one (``VA``)."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                break
            self._more()
        line = self.buf[:end]
        if line.startswith(b"VA "):
            size = int(line.split(b" ", 2)[1])
            stop = end + 2 + size
            while len(self.buf) < stop + 2:
                self._more()
            value = self.buf[end + 2:stop]
            self.buf = self.buf[stop + 2:]
            return line, value
        self.buf = self.buf[end + 2:]
        if line.startswith((b"SERVER_ERROR", b"CLIENT_ERROR", b"ERROR")):
            raise MemcacheServerError(line.decode("ascii", "replace"))
        return line, None

    def close(self) -> None:
        """Close the socket (a connection in an unknown state is never reused)."""
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


_meta_pools: dict[tuple[Any, ...], list[_MetaConn]] = {}
_meta_capable: dict[tuple[Any, ...], bool] = {}
_META_PROBE = b"ms phpsess.meta.probe 1 T1 c\r\n1\r\n"
_BAD_KEY_BYTE = re.compile(rb"[\x00-\x20\x7f]")


def _close_meta() -> None:
    """At interpreter exit: close this process's meta connections."""
    with _clients_lock:
        for key, conns in list(_meta_pools.items()):
            if key[0] == os.getpid():
                for conn in conns:
                    conn.close()
                conns.clear()


atexit.register(_close_meta)


def meta_exchange(server: MemcachedServer, connect_timeout: float, request: bytes,
                  replies: int) -> list[tuple[bytes, bytes | None]]:
    """Send ``request`` (one or more meta commands) to ``server`` in one write and read
    ``replies`` replies: one round trip, on a connection of the process's pool.

    A pooled connection the server closed meanwhile (a restart) is replaced once, when
    nothing of the reply came back (so the request was not executed).

    :raises MemcacheError: the server refused a command (``SERVER_ERROR``, ...) or closed.
    :raises OSError: it cannot be reached or did not answer within the I/O timeout.
    """
    key = (os.getpid(), server.name, server.port, connect_timeout)
    with _clients_lock:
        pool = _meta_pools.get(key)
        if pool is None:
            pool = _meta_pools[key] = []
        conn = pool.pop() if pool else None
    if conn is None:
        conn = _MetaConn(server, connect_timeout)
    while True:
        try:
            conn.sock.sendall(request)
            out = [conn.reply() for _ in range(replies)]
        except (MemcacheUnexpectedCloseError, BrokenPipeError, ConnectionResetError):
            conn.close()
            if not conn.reused or conn.buf:
                raise
            conn = _MetaConn(server, connect_timeout)  # the pooled one was dead: once more
            continue
        except BaseException:
            conn.close()
            raise
        break
    if conn.buf:  # pragma: no cover - more than was asked for: not reusable
        conn.close()
        return out
    conn.reused = True
    with _clients_lock:
        if len(pool) < 64:
            pool.append(conn)
            return out
    conn.close()  # pragma: no cover
    return out


def speaks_meta(server: MemcachedServer, connect_timeout: float) -> bool:
    """Whether ``server`` answers the meta commands this handler sends (memcached 1.6's
    ``ms <key> <size>`` returning its CAS); asked once per process and server.

    :raises MemcacheError, OSError: the server cannot be reached.
    """
    key = (os.getpid(), server.name, server.port)
    known = _meta_capable.get(key)
    if known is None:
        try:
            head = meta_exchange(server, connect_timeout, _META_PROBE, 1)[0][0]
        except MemcacheServerError:
            known = False  # "ERROR" / "CLIENT_ERROR": an older memcached
        else:
            known = head.startswith(b"HD c")
        if not known:
            log.info("memcached server %s does not speak the meta protocol: classic commands", server.address)
        _meta_capable[key] = known
    return known


def _meta_key(key: str) -> bytes:
    """``key`` as the meta commands send it, refused as pymemcache refuses it."""
    try:
        raw = key.encode("ascii")
    except UnicodeEncodeError:
        raise MemcacheIllegalInputError(f"Non-ASCII key: {key!r}")
    if len(raw) > MAX_KEY or _BAD_KEY_BYTE.search(raw) is not None:
        raise MemcacheIllegalInputError(f"Key contains whitespace, control characters or is too long: {key!r}")
    return raw


def _cas_of(head: bytes) -> int:
    """The ``c<cas>`` flag of a meta reply's header line (0 when absent)."""
    for token in head.split(b" ")[1:]:
        if token.startswith(b"c"):
            return int(token[1:])
    return 0


_distributions: dict[tuple[str, bool, bool], tuple[list[MemcachedServer], Distribution]] = {}


def _distribution_for(save_path: str, consistent: bool, weighted: bool) -> tuple[list[MemcachedServer], Distribution]:
    """The servers of ``save_path`` and their key distribution, built once per process (a
    ketama continuum hashes 100 points per server).

    :raises SavePathError: a save_path php-memcached refuses.
    """
    key = (save_path, consistent, weighted)
    found = _distributions.get(key)
    if found is None:
        servers = parse_save_path(save_path)
        found = (servers, Distribution(servers, consistent=consistent, weighted=weighted))
        if len(_distributions) >= 64:
            _distributions.clear()
        _distributions[key] = found
    return found


class _Held:
    """The lock this handler holds (or, with locking off, the session it has read)."""

    __slots__ = ("sid", "lock_server", "lock_key", "token", "expire", "cas", "prefetched")

    def __init__(self, sid: str, lock_server: MemcachedServer, key: str, token: bytes | None, expire: int) -> None:
        self.sid = sid
        self.lock_server = lock_server
        self.lock_key = key
        self.token = token  # None: locking disabled, nothing held
        self.expire = expire  # the lock's lifetime, seconds
        self.cas = 0  # the lock item's CAS since our add or last renew (meta protocol)
        self.prefetched: bytes | None = None  # the payload read in the lock's round trip


class MemcachedHandler(SaveHandler):
    """``session.save_handler = memcached``: sessions in memcached, as php-memcached keeps them.

    One instance serves one request.  :meth:`read` takes ``<prefix>lock.<id>`` and holds
    it until :meth:`close` (or :meth:`destroy`); every write first checks and renews it.
    """

    name = "memcached"
    has_validator = True

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self._save_path = ""
        self._servers: list[MemcachedServer] = []
        self._dist: Distribution | None = None
        self._held: _Held | None = None
        self._locking: _Held | None = None  # the lock being taken, for the lock hooks
        #: time source for expirations above 30 days (tests replace it)
        self.clock: Callable[[], float] = time.time

    # -- helpers ------------------------------------------------------------------------

    def _fail(self, operation: str, server: MemcachedServer, exc: BaseException, sid: str = "") -> SaveHandlerError:
        what = f" session {sid}" if sid else ""
        return SaveHandlerError(
            f"memcached save handler: cannot {operation}{what} on memcached server {server.address}: "
            f"{exc or type(exc).__name__}",
            handler=self.name,
            operation=operation,
            cause=exc,
        )

    def _call(self, server: MemcachedServer, operation: str, sid: str, fn: Callable[[PooledClient], _T]) -> _T:
        """``fn(client)`` on ``server``; a pooled connection the server closed meanwhile
        (a restart) is retried once on a new one, other failures raise naming the server."""
        client = client_for(server, self._connect_timeout())
        try:
            try:
                return fn(client)
            except (MemcacheUnexpectedCloseError, BrokenPipeError, ConnectionResetError):
                return fn(client)  # the pool dropped the dead connection: once more
        except (MemcacheError, OSError) as exc:
            raise self._fail(operation, server, exc, sid)

    def _meta(self, server: MemcachedServer, operation: str, sid: str) -> bool:
        """Whether ``server`` takes the meta commands (:func:`speaks_meta`)."""
        try:
            return speaks_meta(server, self._connect_timeout())
        except (MemcacheError, OSError) as exc:
            raise self._fail(operation, server, exc, sid)

    def _exchange(self, server: MemcachedServer, operation: str, sid: str, request: bytes,
                  replies: int) -> list[tuple[bytes, bytes | None]]:
        """:func:`meta_exchange`, its failures raised naming the server."""
        try:
            return meta_exchange(server, self._connect_timeout(), request, replies)
        except (MemcacheError, OSError) as exc:
            raise self._fail(operation, server, exc, sid)

    def _connect_timeout(self) -> float:
        ms = self.config.memcached_sess_connect_timeout
        return ms / 1000.0 if ms > 0 else _CONNECT_TIMEOUT

    def _distribution(self) -> Distribution:
        if self._dist is None:
            raise SaveHandlerError(
                "memcached save handler: open() was not called (no session.save_path)",
                handler=self.name, operation="open",
            )
        return self._dist

    def _prefix(self) -> str:
        return self.config.memcached_sess_prefix

    def _keys(self, sid: str) -> tuple[str, str]:
        """The session's key and its lock's, refused when memcached could not store them."""
        data_key, lk = session_key(self._prefix(), sid), lock_key(self._prefix(), sid)
        if len(lk.encode()) > MAX_KEY:
            raise SaveHandlerError(
                f"memcached save handler: key {lk!r} is longer than memcached's {MAX_KEY} bytes "
                "(shorten memcached.sess_prefix or session.sid_length)",
                handler=self.name, operation="read",
            )
        return data_key, lk

    def _data_servers(self, sid: str) -> list[MemcachedServer]:
        """The session's server, then its replicas (memcached.sess_number_of_replicas)."""
        return self._distribution().replicas(sid, max(self.config.memcached_sess_number_of_replicas, 0))

    def _lock_expire(self) -> int:
        value = self.config.memcached_sess_lock_expire
        return value if value > 0 else DEFAULT_LOCK_EXPIRE

    def _ttl(self) -> int:
        """The session's expiration, as php-memcached computes it from gc_maxlifetime."""
        return expiration(self.config.gc_maxlifetime, self.clock())

    def lock_bound(self) -> tuple[float, str]:
        """``session.lock_timeout`` when set; else as long as php-memcached's retries take
        (``memcached.sess_lock_retries`` waits of ``sess_lock_wait_min`` doubling up to
        ``sess_lock_wait_max`` ms): PHP and phpsess give up at about the same time."""
        if self.config.lock_timeout > 0:
            return float(self.config.lock_timeout), "session.lock_timeout"
        return self._php_wait_total(), "memcached.sess_lock_retries"

    def _php_wait_total(self) -> float:
        cfg = self.config
        wait, total = cfg.memcached_sess_lock_wait_min, 0
        for _ in range(max(cfg.memcached_sess_lock_retries, 0)):
            total += wait
            wait = min(cfg.memcached_sess_lock_wait_max, wait * 2)
        return total / 1000.0

    # -- PS_OPEN / PS_CLOSE ----------------------------------------------------------------

    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: parse ``save_path`` (libmemcached's server list); connections are made on
        first use.  A lock still held from an earlier read is released first.

        :raises SaveHandlerError: for a save_path php-memcached refuses.
        """
        self.close()
        cfg = self.config
        try:
            self._servers, self._dist = _distribution_for(
                save_path, cfg.memcached_sess_consistent_hash,
                cfg.memcached_sess_consistent_hash_type == "ketama_weighted")
        except SavePathError as exc:
            raise SaveHandlerError(f"memcached save handler: {exc}", handler=self.name, operation="open", cause=exc)
        self._save_path = save_path

    def close(self) -> None:
        """PS_CLOSE: release the lock taken by :meth:`read` if it is still ours.

        Safe to call when nothing is held.
        :raises SaveHandlerError: the server cannot be reached (the lock then expires
            after ``memcached.sess_lock_expire`` seconds).
        """
        held, self._held = self._held, None
        if held is None or held.token is None:
            return
        if self._release(held):
            log.debug("released session lock %s", held.lock_key)
        else:
            log.warning("session lock %s had expired before close (lock expiry %s s)", held.lock_key, held.expire)

    def _release(self, held: _Held) -> bool:
        """Compare-and-delete: ``md <lock> C<cas>`` (meta), or ``gets`` then ``cas`` the lock
        to an item that expired already (classic)."""
        token = held.token
        timeout = self._connect_timeout()
        if self._meta(held.lock_server, "release the lock of", held.sid):
            request = b"md %b C%d\r\n" % (_meta_key(held.lock_key), held.cas)
            head = self._exchange(held.lock_server, "release the lock of", held.sid, request, 1)[0][0]
            return head.startswith(b"HD")

        def release(c: PooledClient) -> bool:
            value, cas = c.gets(held.lock_key)
            if value != token:
                return False
            return bool(c.cas(held.lock_key, b"", cas, expire=-1))

        return self._call(held.lock_server, "release the lock of", held.sid, release)

    # -- PS_READ ---------------------------------------------------------------------------

    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: lock ``sid`` (exclusive; also for ``shared``) and return its payload.

        :returns: the stored bytes, ``b""`` when the key does not exist.
        :raises InvalidSessionId: ``sid`` is not ``[A-Za-z0-9,-]{1,256}``.
        :raises LockTimeout: another request held the lock past the wait bound.
        :raises SaveHandlerError: a server is unreachable, or the keys are too long.
        """
        self.check_id(sid)
        _, lk = self._keys(sid)
        if self._held is not None:
            if self._held.sid == sid:
                return self._get(sid)
            self.close()
        lock_server = self._distribution().server_for("lock." + sid)
        if not self.config.memcached_sess_locking:
            self._held = _Held(sid, lock_server, lk, None, 0)
            self.lock_info = LockInfo(0.0, False)
            return self._get(sid)
        held = _Held(sid, lock_server, lk, lock_token(), self._lock_expire())
        self._locking = held
        try:
            waited = self.acquire_lock(sid)
        finally:
            self._locking = None
        self._held = held
        self.lock_acquired(sid, shared=False, waited=waited)
        log.debug("took session lock %s after %.6f s", held.lock_key, waited)
        data = held.prefetched
        if data is not None:  # read in the round trip that took the lock
            held.prefetched = None
            return data
        return self._get(sid)

    def _get(self, sid: str) -> bytes:
        """The payload from the session's server, else from the first replica that answers."""
        key = session_key(self._prefix(), sid)
        servers = self._data_servers(sid)
        first_error: SaveHandlerError | None = None
        for server in servers:
            try:
                data = self._call(server, "read", sid, lambda c: c.get(key))
            except SaveHandlerError as exc:
                if first_error is None:
                    first_error = exc
                continue
            if first_error is not None:
                log.warning("read session %s from a replica: %s", sid, first_error)
            return bytes(data) if data is not None else b""
        assert first_error is not None
        raise first_error

    # -- for the tools (phpsess show, phpsess locks) ---------------------------------------

    def peek(self, sid: str) -> bytes | None:
        """The stored payload of ``sid`` without taking its lock (``phpsess show``).

        :returns: None when the session does not exist.
        :raises SaveHandlerError: no server holding it answers.
        """
        self.check_id(sid)
        key = session_key(self._prefix(), sid)
        first_error: SaveHandlerError | None = None
        for server in self._data_servers(sid):
            try:
                data = self._call(server, "read", sid, lambda c: c.get(key))
            except SaveHandlerError as exc:
                first_error = first_error or exc
                continue
            return bytes(data) if data is not None else None
        assert first_error is not None
        raise first_error

    def list_locks(self) -> list[StoredLock]:
        """Every session lock on the servers of save_path (``phpsess locks``), found with
        memcached's ``lru_crawler metadump all``: its holder, time left and phpsess waiters.

        :raises SaveHandlerError: a server does not answer or cannot list its keys.
        """
        marker = self._prefix() + "lock."
        found: list[StoredLock] = []
        now = time.time()
        self._distribution()  # open() was called
        for server in self._servers:
            # A crawl can miss a key that its waiters' polling keeps moving in memcached's
            # LRU (about 1 crawl in 10 here): the union of a few crawls, and the lock of
            # every waiter slot found (<lock key>.wN), which nobody touches
            keys: dict[str, int] = {}
            try:
                for _ in range(_METADUMP_PASSES):
                    keys.update(_metadump(server, self._connect_timeout()))
            except (OSError, ValueError) as exc:
                raise self._fail("list the locks", server, exc)
            for key in [k for k in keys if k.startswith(marker)]:
                base, dot, slot = key.rpartition(".w")
                if dot and slot.isdigit() and base not in keys:
                    keys[base] = -2  # its expiry unknown: asked below
            for key, exp in keys.items():
                sid = key[len(marker):]
                if not key.startswith(marker) or not ids.is_valid_id(sid):
                    continue  # a waiter slot (<lock key>.wN), or another application's key
                if exp == -2:
                    value, exp = self._value_and_expiry(server, sid, key)
                else:
                    value = self._call(server, "list the locks", sid, lambda c: c.get(key))
                if value is None:
                    continue  # released meanwhile
                slots = [f"{key}.w{i}" for i in range(WAITER_SLOTS)]
                waiters = len(self._call(server, "list the locks", sid, lambda c: c.get_many(slots)))
                found.append(StoredLock(sid, key, server.address, bytes(value).decode("utf-8", "replace"),
                                        None if exp < 0 else max(0.0, exp - now), waiters))
        return sorted(found, key=lambda lock: lock.sid)

    def _value_and_expiry(self, server: MemcachedServer, sid: str, key: str) -> tuple[bytes | None, int]:
        """``key``'s value and expiry (a unix time; -1: none, or unknown without the meta
        protocol); None for a missing key."""
        if self._meta(server, "list the locks", sid):
            head, data = self._exchange(server, "list the locks", sid, b"mg " + _meta_key(key) + b" v t\r\n", 1)[0]
            if data is None:
                return None, -1
            ttl = -1
            for flag in head.split()[2:]:
                if flag.startswith(b"t") and flag[1:].lstrip(b"-").isdigit():
                    ttl = int(flag[1:])
            return data, -1 if ttl < 0 else int(time.time()) + ttl
        return self._call(server, "list the locks", sid, lambda c: c.get(key)), -1

    # -- the lock policy's hooks (SaveHandler.acquire_lock): add on <prefix>lock.<id> ----------

    def _lock_try(self, sid: str, shared: bool) -> bool:
        """One ``add`` of the lock; a reply lost to a dead connection is settled by a ``get``.

        Meta protocol: ``ms <lock> ME c`` (add, returning the lock's CAS for the fenced
        renew and release) and, when the session lives on the lock's server, ``mg`` of the
        session in the same round trip; that payload is kept only when the add succeeded.
        """
        held = self._locking
        assert held is not None and held.token is not None
        exp = expiration(held.expire, self.clock())
        if self._meta(held.lock_server, "lock", sid):
            return self._meta_lock_try(held, exp)
        client = client_for(held.lock_server, self._connect_timeout())
        try:
            try:
                return bool(client.add(held.lock_key, held.token, expire=exp))
            except (MemcacheUnexpectedCloseError, BrokenPipeError, ConnectionResetError):
                if client.get(held.lock_key) == held.token:
                    return True  # the add reached the server before the connection died
                return bool(client.add(held.lock_key, held.token, expire=exp))
        except (MemcacheError, OSError) as exc:
            raise self._fail("lock", held.lock_server, exc, sid)

    def _meta_lock_try(self, held: _Held, exp: int) -> bool:
        token = held.token
        assert token is not None
        lk = _meta_key(held.lock_key)
        try:
            request = b"ms %b %d T%d ME c\r\n%b\r\n" % (lk, len(token), exp, token)
            prefetch = self._data_servers(held.sid)[0] is held.lock_server
            if prefetch:
                request += b"mg %b v\r\n" % _meta_key(session_key(self._prefix(), held.sid))
        except MemcacheError as exc:
            raise self._fail("lock", held.lock_server, exc, held.sid)
        replies = self._exchange(held.lock_server, "lock", held.sid, request, 2 if prefetch else 1)
        head = replies[0][0]
        if head.startswith(b"HD"):
            held.cas = _cas_of(head)
            if prefetch:
                value = replies[1][1]
                held.prefetched = value if value is not None else b""
            return True
        if not head.startswith(b"NS"):
            raise self._fail("lock", held.lock_server, MemcacheServerError(head.decode("ascii", "replace")), held.sid)
        # taken: by another request, or by this one's add whose reply a dead connection lost
        check = self._exchange(held.lock_server, "lock", held.sid, b"mg %b v c\r\n" % lk, 1)[0]
        if check[1] == token:
            held.cas = _cas_of(check[0])
            return True
        return False

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        """Retry on php-memcached's schedule: ``sess_lock_wait_min`` ms, doubling up to
        ``sess_lock_wait_max`` (at least 1 ms), until the lock is ours or ``timeout`` passes."""
        held = self._locking
        assert held is not None
        cfg = self.config
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        wait = max(cfg.memcached_sess_lock_wait_min, 1) / 1000.0
        longest = max(cfg.memcached_sess_lock_wait_max, 1) / 1000.0
        slot = self._take_slot(held)
        refreshed = time.monotonic()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(wait, remaining))
                if self._lock_try(sid, shared):
                    return True
                wait = min(longest, wait * 2)
                if slot is not None and time.monotonic() - refreshed > _SLOT_TTL / 3:
                    self._refresh_slot(held, slot)
                    refreshed = time.monotonic()
        finally:
            if slot is not None:
                self._drop_slot(held, slot)

    def _slot_key(self, held: _Held, i: int) -> str:
        return f"{held.lock_key}.w{i}"

    def _take_slot(self, held: _Held) -> int | None:
        """Register as a waiter: the first free slot key (None: all taken, or keys too long)."""
        if len(self._slot_key(held, WAITER_SLOTS - 1)) > MAX_KEY:
            return None
        client = client_for(held.lock_server, self._connect_timeout())
        try:
            for i in range(WAITER_SLOTS):
                if client.add(self._slot_key(held, i), b"1", expire=_SLOT_TTL):
                    return i
        except (MemcacheError, OSError) as exc:
            raise self._fail("wait for the lock of", held.lock_server, exc, held.sid)
        return None

    def _refresh_slot(self, held: _Held, slot: int) -> None:
        self._call(held.lock_server, "wait for the lock of", held.sid,
                   lambda c: c.touch(self._slot_key(held, slot), _SLOT_TTL))

    def _drop_slot(self, held: _Held, slot: int) -> None:
        try:
            client_for(held.lock_server, self._connect_timeout()).delete(self._slot_key(held, slot))
        except (MemcacheError, OSError) as exc:  # the slot expires by itself
            log.debug("cannot drop waiter slot of %s: %s", held.lock_key, exc)

    def _lock_waiters(self, sid: str) -> int:
        held = self._locking
        assert held is not None
        if len(self._slot_key(held, WAITER_SLOTS - 1)) > MAX_KEY:
            return 0
        keys = [self._slot_key(held, i) for i in range(WAITER_SLOTS)]
        return len(self._call(held.lock_server, "count the waiters of", sid, lambda c: c.get_many(keys)))

    def _lock_where(self, sid: str) -> str:
        held = self._locking if self._locking is not None else self._held
        if held is None:
            return ""
        return f"{held.lock_key} on memcached server {held.lock_server.address}"

    def _lock_holder(self, sid: str) -> str:
        held = self._locking
        if held is None:
            return ""
        try:
            value = client_for(held.lock_server, self._connect_timeout()).get(held.lock_key)
        except (MemcacheError, OSError):
            return ""
        if value is None:
            return ""
        if bytes(value) == _PHP_LOCK_VALUE:
            return " (held by a PHP request: php-memcached's lock value '1')"
        return f" (held by {bytes(value).decode('utf-8', 'replace')!r})"

    # -- fencing ------------------------------------------------------------------------------

    def _ensure_held(self, sid: str) -> _Held:
        """The lock on ``sid``, taken now if read() did not take it (as files' write opens)."""
        self.check_id(sid)
        if self._held is not None and self._held.sid == sid:
            return self._held
        self.read(sid)
        assert self._held is not None
        return self._held

    def _renew(self, held: _Held, operation: str) -> None:
        """Check that the lock is still ours and extend it, in one compare-and-swap: ``ms
        <lock> C<cas>`` on the CAS of our add (meta, one round trip), or ``gets`` then
        ``cas`` on the lock's own value (classic)."""
        token = held.token
        assert token is not None
        exp = expiration(held.expire, self.clock())

        def renew(c: PooledClient) -> bool:
            value, cas = c.gets(held.lock_key)
            if value != token:
                return False
            return bool(c.cas(held.lock_key, token, cas, expire=exp))

        if self._meta(held.lock_server, operation, held.sid):
            try:
                request = b"ms %b %d C%d T%d c\r\n%b\r\n" % (_meta_key(held.lock_key), len(token), held.cas, exp, token)
            except MemcacheError as exc:
                raise self._fail(operation, held.lock_server, exc, held.sid)
            head = self._exchange(held.lock_server, operation, held.sid, request, 1)[0][0]
            ours = head.startswith(b"HD")
            if ours:
                held.cas = _cas_of(head)
        else:
            ours = self._call(held.lock_server, operation, held.sid, renew)
        if not ours:
            if self._held is held:
                self._held = None
            raise SaveHandlerError(
                f"memcached save handler: refusing to {operation} session {held.sid}: its lock "
                f"{held.lock_key} on memcached server {held.lock_server.address} expired "
                f"(lock expiry {held.expire} s) and may belong to another request now",
                handler=self.name,
                operation=operation,
            )

    # -- PS_WRITE / PS_UPDATE_TIMESTAMP / PS_DESTROY ----------------------------------------------

    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: ``set <prefix><sid>`` (and its replicas), only while the lock is ours.

        :raises SaveHandlerError: the lock expired (nothing is written), or a server failed.
        """
        held = self._ensure_held(sid)
        if held.token is not None:
            self._renew(held, "write")
        self._store(sid, data)

    def write_last(self, sid: str, data: bytes, *, touch: bool = False) -> None:
        """PS_WRITE then the release of PS_CLOSE: the lock checked and renewed (one round
        trip), then the session's ``ms`` and the lock's compare-and-delete ``md C<cas>``
        sent together (one more), when the session has no replica and lives on the lock's
        server and that server speaks the meta protocol; else :meth:`write`.  ``touch``
        (PS_UPDATE_TIMESTAMP): :meth:`update_timestamp`, the lock released by close().

        :raises SaveHandlerError: the lock expired (nothing is written), or a server failed.
        """
        if touch:
            self.update_timestamp(sid, data)
            return
        held = self._ensure_held(sid)
        if (held.token is None or self.config.memcached_sess_number_of_replicas > 0
                or self._data_servers(sid)[0] is not held.lock_server
                or not self._meta(held.lock_server, "write", sid)):
            self.write(sid, data)
            return
        self._renew(held, "write")
        try:
            request = b"ms %b %d T%d\r\n%b\r\nmd %b C%d\r\n" % (
                _meta_key(session_key(self._prefix(), sid)), len(data), self._ttl(), data,
                _meta_key(held.lock_key), held.cas)
        except MemcacheError as exc:
            raise self._fail("write", held.lock_server, exc, sid)
        # a failed exchange leaves the lock held here: close() releases it (or says it cannot)
        stored, released = self._exchange(held.lock_server, "write", sid, request, 2)
        self._held = None
        if not released[0].startswith(b"HD"):
            log.warning("session lock %s had expired before close (lock expiry %s s)", held.lock_key, held.expire)
        else:
            log.debug("released session lock %s", held.lock_key)
        if not stored[0].startswith(b"HD"):
            raise self._fail("write", held.lock_server, MemcacheServerError(stored[0].decode("ascii", "replace")), sid)

    def _store(self, sid: str, data: bytes) -> None:
        key = session_key(self._prefix(), sid)
        ttl = self._ttl()
        servers = self._data_servers(sid)
        self._set(servers[0], "write", sid, key, data, ttl)
        for replica in servers[1:]:
            try:
                self._set(replica, "write a replica of", sid, key, data, ttl)
            except SaveHandlerError as exc:  # libmemcached's replicas are best effort (SETQ)
                log.warning("%s", exc)

    def _set(self, server: MemcachedServer, operation: str, sid: str, key: str, data: bytes, ttl: int) -> None:
        """``set`` (``ms`` with the meta protocol) of ``key``, flags 0."""
        if not self._meta(server, operation, sid):
            self._call(server, operation, sid, lambda c: c.set(key, data, expire=ttl))
            return
        try:
            request = b"ms %b %d T%d\r\n%b\r\n" % (_meta_key(key), len(data), ttl, data)
        except MemcacheError as exc:
            raise self._fail(operation, server, exc, sid)
        head = self._exchange(server, operation, sid, request, 1)[0][0]
        if not head.startswith(b"HD"):
            raise self._fail(operation, server, MemcacheServerError(head.decode("ascii", "replace")), sid)

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP (lazy_write): ``touch`` the session (and its replicas), only
        while the lock is ours; a session that expired meanwhile is written again.

        :raises SaveHandlerError: the lock expired, or a server failed.
        """
        held = self._ensure_held(sid)
        if held.token is not None:
            self._renew(held, "update the timestamp of")
        key = session_key(self._prefix(), sid)
        ttl = self._ttl()
        servers = self._data_servers(sid)
        touched = self._call(servers[0], "update the timestamp of", sid, lambda c: c.touch(key, ttl))
        if not touched:
            self._store(sid, data)
            return
        for replica in servers[1:]:
            try:
                self._call(replica, "update the timestamp of a replica of", sid, lambda c: c.touch(key, ttl))
            except SaveHandlerError as exc:
                log.warning("%s", exc)

    def destroy(self, sid: str) -> None:
        """PS_DESTROY: delete ``sid`` (and its replicas) and release our lock on it.

        Does not fail when ``sid`` does not exist.
        :raises SaveHandlerError: our lock expired meanwhile, or a server failed.
        """
        self.check_id(sid)
        key, _ = self._keys(sid)
        held = self._held
        if held is not None and held.sid == sid and held.token is not None:
            self._renew(held, "destroy")
        servers = self._data_servers(sid)
        self._call(servers[0], "destroy", sid, lambda c: c.delete(key))
        for replica in servers[1:]:
            try:
                self._call(replica, "destroy a replica of", sid, lambda c: c.delete(key))
            except SaveHandlerError as exc:
                log.warning("%s", exc)
        if held is not None and held.sid == sid:
            self._held = None
            if held.token is not None:
                self._release(held)

    # -- PS_GC / PS_CREATE_SID / PS_VALIDATE_SID ------------------------------------------------

    def gc(self, max_lifetime: int) -> int:
        """PS_GC: nothing to do, memcached expires sessions; returns 0 (php-memcached: SUCCESS)."""
        return 0

    def create_sid(self) -> str:
        """PS_CREATE_SID: a fresh id whose session and lock do not exist yet (3 tries, as
        php-memcached).

        :raises SaveHandlerError: three colliding ids in a row, or a server failed.
        """
        return self.unused_id(self._taken, tries=3)

    def _taken(self, sid: str) -> bool:
        key, lk = self._keys(sid)
        dist = self._distribution()
        if self._call(dist.server_for(sid), "create an id for a", "", lambda c: c.get(key)) is not None:
            return True
        return self._call(dist.server_for("lock." + sid), "create an id for a", "", lambda c: c.get(lk)) is not None

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID (use_strict_mode): True when ``<prefix><sid>`` exists.

        :raises SaveHandlerError: the servers failed (never a silent "no").
        """
        if not ids.is_valid_id(sid):
            return False
        key = session_key(self._prefix(), sid)
        first_error: SaveHandlerError | None = None
        for server in self._data_servers(sid):
            try:
                return self._call(server, "validate", sid, lambda c: c.get(key)) is not None
            except SaveHandlerError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise first_error


#: crawls of ``lru_crawler metadump`` united by :meth:`MemcachedHandler.list_locks`
_METADUMP_PASSES = 3


def _metadump(server: MemcachedServer, timeout: float) -> Iterator[tuple[str, int]]:
    """``(key, expiry)`` of every key on ``server`` (``lru_crawler metadump all``; expiry is
    a unix time, -1 for none).

    :raises OSError: the server cannot be reached.
    :raises ValueError: it refused the command (memcached older than 1.4.31).
    """
    sock = _connect(server, max(timeout, _IO_TIMEOUT))
    with sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        with sock.makefile("rb") as reply:
            for line in reply:
                line = line.rstrip(b"\r\n")
                if line == b"END":
                    return
                if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR", b"BUSY")):
                    raise ValueError(f"lru_crawler metadump refused: {line.decode('ascii', 'replace')}")
                fields = dict(f.split(b"=", 1) for f in line.split() if b"=" in f)
                if b"key" in fields:
                    yield urllib.parse.unquote(fields[b"key"].decode("ascii", "replace")), int(fields.get(b"exp", b"-1"))
