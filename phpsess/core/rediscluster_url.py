"""``session.save_path`` for the rediscluster save handler, parsed as phpredis parses it, and
the key slots of Redis Cluster. No I/O.

phpredis (``redis_session.c: PS_OPEN_FUNC(rediscluster)``) reads ``save_path`` as a query
string (PHP's ``parse_str()``)::

    seed[]=10.0.0.1:7000&seed[]=10.0.0.2:7000&timeout=2&read_timeout=2&failover=error
        &persistent=1&prefix=APP:&auth=secret

``seed[]`` (at least one ``host:port``) is required; ``timeout``/``read_timeout`` must not
be negative; ``failover`` is ``none``, ``error`` or ``distribute``; unknown parameters are
ignored, which lets phpsess add its own: the lock settings of the redis handler
(``locking``, ``lock_expire``, ``lock_timeout``, ``lock_poll``, ``lock_refresh``) and
``wait_replicas`` / ``wait_timeout`` / ``retry_timeout`` (below).

Sessions are the keys ``<prefix><id>`` (``PHPREDIS_CLUSTER_SESSION:<id>``), as phpredis
writes them.  phpredis's cluster handler has no lock; phpsess's lock key lives in the
session key's hash slot (:func:`lock_key_for`), so that one script can check the lock
and write the session atomically, and a slot migration or a failover moves both keys
together.
"""

from __future__ import annotations

import binascii
import functools
import math
from dataclasses import dataclass, field
from typing import Any

from .redis_url import LockOptions, QueryValue, auth_info, lock_options
from .superglobals import parse_query
from .zend import floatval, intval

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_WAIT_TIMEOUT",
    "DEFAULT_RETRY_TIMEOUT",
    "SLOTS",
    "ClusterSeed",
    "ClusterConfig",
    "SavePathError",
    "parse_save_path",
    "crc16",
    "key_slot",
    "lock_key_for",
]

#: redis_session.c: CLUSTER_SESSION_PREFIX
DEFAULT_PREFIX = "PHPREDIS_CLUSTER_SESSION:"
#: seconds a lock or write waits for a replica's acknowledgement (WAIT)
DEFAULT_WAIT_TIMEOUT = 0.1
#: seconds a command keeps being retried while its master is unreachable (a failover)
DEFAULT_RETRY_TIMEOUT = 10.0
#: Redis Cluster's number of hash slots
SLOTS = 16384


class SavePathError(ValueError):
    """A ``session.save_path`` that phpredis's cluster handler refuses (its PS_OPEN fails)."""

    def __init__(self, save_path: str, message: str) -> None:
        super().__init__(message)
        self.save_path = save_path


@dataclass(frozen=True)
class ClusterSeed:
    """One ``seed[]=host:port``."""

    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterConfig:
    """A rediscluster ``save_path``: phpredis's parameters and phpsess's."""

    seeds: tuple[ClusterSeed, ...]
    timeout: float = 0.0  # connect timeout, seconds; 0: PHP's default_socket_timeout (60)
    read_timeout: float = 0.0  # 0: default_socket_timeout
    persistent: bool = False
    failover: str = "none"  # none | error | distribute: where phpredis may read
    prefix: str = DEFAULT_PREFIX
    user: str | None = None
    password: str | None = None
    lock: LockOptions = field(default_factory=LockOptions)
    #: phpsess: replicas that must acknowledge a lock or a write before going on (WAIT)
    wait_replicas: int = 1
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    #: phpsess: seconds to ride out an unreachable master (failover) before failing
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT

    @property
    def addresses(self) -> str:
        """The seeds, for messages."""
        return ", ".join(s.address for s in self.seeds)

    def session_key(self, sid: str) -> str:
        """The key phpredis stores ``sid`` under: ``prefix + sid``."""
        return self.prefix + sid

    def lock_key(self, sid: str) -> str:
        """phpsess's lock key for ``sid``, in the session key's slot."""
        return lock_key_for(self.prefix + sid)


def _string(v: QueryValue) -> str:
    return v if isinstance(v, str) else "Array"


def _seconds(save_path: str, name: str, v: QueryValue) -> float:
    f = floatval(v)
    if math.isnan(f) or f < 0 or math.isinf(f):
        raise SavePathError(save_path, f"session.save_path parameter {name}={_string(v)!r} is out of range")
    return f


def _seed(save_path: str, raw: str) -> ClusterSeed | None:
    """cluster_library.c get_valid_seeds: ``host:port`` split at the last colon."""
    host, colon, port = raw.rpartition(":")
    if not colon:
        return None  # phpredis: "Seed '%s' not in host:port format, ignoring"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    p = intval(port)
    if not host or not 0 < p <= 65535:
        raise SavePathError(save_path, f"session.save_path seed {raw!r} is not a host:port")
    return ClusterSeed(host, p)


def parse_save_path(save_path: str) -> ClusterConfig:
    """Parse a rediscluster ``session.save_path``.

    :raises SavePathError: where phpredis's PS_OPEN fails (no ``seed[]`` array, no valid
        seed, a negative timeout), and for phpsess parameters out of range.
    """
    q: dict[str, Any] = parse_query(save_path)
    seeds_raw = q.get("seed")
    if not isinstance(seeds_raw, (list, dict)):
        raise SavePathError(save_path, "session.save_path has no seed[]=host:port (phpredis needs seed[] for a cluster)")
    seeds: list[ClusterSeed] = []
    for raw in (seeds_raw.values() if isinstance(seeds_raw, dict) else seeds_raw):
        if not isinstance(raw, str):
            continue  # phpredis: "Skipping non-string entry in seeds array"
        seed = _seed(save_path, raw)
        if seed is not None and seed not in seeds:
            seeds.append(seed)
    if not seeds:
        raise SavePathError(save_path, "No valid seeds detected")
    timeout = floatval(q["timeout"]) if "timeout" in q else 0.0
    read_timeout = floatval(q["read_timeout"]) if "read_timeout" in q else 0.0
    if timeout < 0 or read_timeout < 0:
        raise SavePathError(save_path, "Can't set negative timeout values in session configuration")
    failover = _string(q["failover"]).lower() if "failover" in q else "none"
    user, password = auth_info(q["auth"]) if "auth" in q else (None, None)
    wait_replicas = intval(q["wait_replicas"]) if "wait_replicas" in q else 1
    if wait_replicas < 0:
        raise SavePathError(save_path, "session.save_path parameter wait_replicas must be >= 0")
    return ClusterConfig(
        seeds=tuple(seeds),
        timeout=timeout,
        read_timeout=read_timeout,
        persistent=_string(q["persistent"]).lower() in ("true", "yes", "1") if "persistent" in q else False,
        failover=failover if failover in ("error", "distribute") else "none",
        prefix=_string(q["prefix"]) if "prefix" in q else DEFAULT_PREFIX,
        user=user,
        password=password,
        lock=lock_options(save_path, q),
        wait_replicas=wait_replicas,
        wait_timeout=_seconds(save_path, "wait_timeout", q["wait_timeout"]) if "wait_timeout" in q
        else DEFAULT_WAIT_TIMEOUT,
        retry_timeout=_seconds(save_path, "retry_timeout", q["retry_timeout"]) if "retry_timeout" in q
        else DEFAULT_RETRY_TIMEOUT,
    )


# -- hash slots -------------------------------------------------------------------------------


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), Redis Cluster's key hash (binascii's, in C: the same CRC as
    :func:`crc16_table_driven`, ~20 times faster; a key's slot is worked out per command)."""
    return binascii.crc_hqx(data, 0)


def crc16_table_driven(data: bytes) -> int:
    """CRC16-CCITT (XMODEM) by its table, as cluster.c computes it (the reference for
    :func:`crc16`)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


def _hash_part(key: bytes) -> tuple[bytes, bool]:
    """The part of ``key`` that is hashed, and whether it is a hash tag: the text between
    the first ``{`` and the first ``}`` after it when not empty, else the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end], True
    return key, False


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (cluster.c keyHashSlot)."""
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return crc16(_hash_part(raw)[0]) & (SLOTS - 1)


@functools.lru_cache(maxsize=64)
def _tag_for_slot(slot: int) -> str:
    """A short string whose slot is ``slot`` (for the rare session keys holding a ``}``)."""
    i = 0
    while True:
        tag = f"s{i}"
        if crc16(tag.encode()) & (SLOTS - 1) == slot:
            return tag
        i += 1


def lock_key_for(session_key: str) -> str:
    """The lock key of a session key, in the same hash slot.

    ``{<key>}_LOCK`` (the whole session key as the hash tag) -- or ``<key>_LOCK`` when the
    key has a hash tag of its own (a prefix like ``{app}:``), or ``{<tag>}<key>_LOCK`` with
    a tag of the same slot for the rare key that holds a ``}`` but no hash tag.
    """
    raw = session_key.encode("utf-8", "surrogateescape")
    if _hash_part(raw)[1]:
        return session_key + "_LOCK"
    if raw.find(b"}") < 0:  # (not `in`: it tries the needle as an int first)
        return "{" + session_key + "}_LOCK"
    return "{" + _tag_for_slot(key_slot(raw)) + "}" + session_key + "_LOCK"
