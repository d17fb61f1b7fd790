"""``session.save_path`` for the memcached save handler, and where php-memcached puts a key.
No I/O.

php-memcached (``php_memcached_session.c: PS_OPEN_FUNC(memcached)``) hands ``save_path``
to libmemcached's ``memcached_servers_parse()``: servers separated by commas (one
blank after a comma is skipped), each ``host[:port[:weight]]`` or ``host:port weight``,
port 11211 when absent or 0, a path starting with ``/`` for a unix socket::

    10.0.0.1:11211, 10.0.0.2:11211:2      (the second server has weight 2)
    /var/run/memcached/memcached.sock

``PERSISTENT=`` (php-memcached 2's syntax) is refused, as php-memcached 3 refuses it.

:func:`Distribution.server_for` reproduces libmemcached's choice of server for a key, so
that PHP and phpsess agree on where a session and its lock live: with
``memcached.sess_consistent_hash`` libmemcached's ketama continuum (100 points per
server named ``host-i``/``host:port-i``, Bob Jenkins' one-at-a-time hash of the key; or
with ``ketama_weighted`` 160 points scaled by weight and MD5), else the hash modulo the
number of servers.  The key hashed is the one php-memcached passes, *without* the
``memcached.sess_prefix`` (libmemcached's namespace is not hashed): the session ``<id>``
and the lock ``lock.<id>``, which may therefore live on different servers.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PORT",
    "MAX_KEY",
    "REALTIME_MAXDELTA",
    "MemcachedServer",
    "SavePathError",
    "Distribution",
    "parse_save_path",
    "one_at_a_time",
    "expiration",
    "session_key",
    "lock_key",
]

#: libmemcached's MEMCACHED_DEFAULT_PORT
DEFAULT_PORT = 11211
#: the longest key memcached accepts (MEMCACHED_MAX_KEY - 1)
MAX_KEY = 250
#: memcached reads an expiration above 30 days as a Unix time (php_memcached_session.c)
REALTIME_MAXDELTA = 60 * 60 * 24 * 30
_POINTS = 100  # MEMCACHED_POINTS_PER_SERVER
_POINTS_KETAMA = 160  # MEMCACHED_POINTS_PER_SERVER_KETAMA
_ULONG_MAX = 2**64 - 1


class SavePathError(ValueError):
    """A ``session.save_path`` that php-memcached refuses (its PS_OPEN fails)."""

    def __init__(self, save_path: str, message: str) -> None:
        super().__init__(message)
        self.save_path = save_path


@dataclass(frozen=True)
class MemcachedServer:
    """One server of a memcached ``save_path``, as libmemcached keeps it."""

    name: str  # the host as written (ketama hashes it), or the socket path
    port: int = DEFAULT_PORT  # 0 for a unix socket
    weight: int = 1

    @property
    def unix(self) -> bool:
        """A unix socket (a name starting with ``/``)."""
        return self.name.startswith("/")

    @property
    def host(self) -> str:
        """The host to connect to (``[v6]`` without its brackets)."""
        if self.name.startswith("[") and self.name.endswith("]"):
            return self.name[1:-1]
        return self.name

    @property
    def address(self) -> str:
        """``host:port`` or ``unix:/path``: how errors name the server."""
        if self.unix:
            return f"unix:{self.name}"
        host = self.name if self.name.startswith("[") or ":" not in self.name else f"[{self.name}]"
        return f"{host}:{self.port}"


def _strtoul(s: str) -> tuple[int, bool]:
    """C ``strtoul(s, NULL, 10)``: (value, overflowed).  Leading blanks and a sign are
    accepted; garbage gives 0; a '-' negates modulo 2**64."""
    i = 0
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    negative = False
    if i < len(s) and s[i] in "+-":
        negative = s[i] == "-"
        i += 1
    j = i
    while j < len(s) and "0" <= s[j] <= "9":
        j += 1
    if j == i:
        return 0, False
    value = int(s[i:j])
    if value > _ULONG_MAX:
        return _ULONG_MAX, True
    return ((-value) & _ULONG_MAX if negative else value), False


def parse_save_path(save_path: str) -> list[MemcachedServer]:
    """The servers of ``save_path``, in order, as ``memcached_servers_parse()`` reads them.

    :raises SavePathError: ``PERSISTENT=`` (php-memcached 3's warning), nothing to parse,
        a number out of range, or an entry without a host.
    """
    if "PERSISTENT=" in save_path:
        raise SavePathError(
            save_path, "failed to parse session.save_path: PERSISTENT is replaced by memcached.sess_persistent = On")
    text = save_path.split("\0", 1)[0]  # a C string
    servers: list[MemcachedServer] = []
    pos = 0
    while pos < len(text):
        comma = text.find(",", pos)
        entry = text[pos:] if comma < 0 else text[pos:comma]
        pos = len(text) if comma < 0 else comma + 1
        if pos < len(text) and text[pos] in " \t\n\v\f\r":
            pos += 1  # one blank after a comma
        opened = entry.find("[")
        closed = entry.find("]", opened + 1) if opened >= 0 else -1
        colon = entry.find(":", closed + 1) if opened >= 0 and closed >= 0 else entry.find(":")
        port = 0
        weight = 0
        name = entry
        if colon >= 0:
            name = entry[:colon]
            rest = entry[colon + 1:]
            value, overflow = _strtoul(rest)
            if overflow:
                raise SavePathError(save_path, "failed to parse session.save_path")
            port = value & 0xFFFF  # in_port_t
            sep = rest.find(" ")
            if sep < 0:
                sep = rest.find(":")
            if sep >= 0:
                value, overflow = _strtoul(rest[sep + 1:])
                if overflow:
                    raise SavePathError(save_path, "failed to parse session.save_path")
                weight = value & 0xFFFFFFFF
        if not name:
            raise SavePathError(save_path, f"session.save_path entry {entry!r} names no memcached server")
        if name.startswith("/"):
            port = 0
        elif port == 0:
            port = DEFAULT_PORT
        servers.append(MemcachedServer(name, port, weight or 1))  # instance.cc: 0 means 1
    if not servers:
        raise SavePathError(save_path, "failed to parse session.save_path")
    return servers


# -- where libmemcached puts a key -----------------------------------------------------------


def one_at_a_time(data: bytes) -> int:
    """libhashkit's ``hashkit_one_at_a_time`` (bytes read as signed C chars)."""
    value = 0
    for b in data:
        value = (value + (b if b < 0x80 else b | 0xFFFFFF00)) & 0xFFFFFFFF
        value = (value + (value << 10)) & 0xFFFFFFFF
        value ^= value >> 6
    value = (value + (value << 3)) & 0xFFFFFFFF
    value ^= value >> 11
    value = (value + (value << 15)) & 0xFFFFFFFF
    return value


def _md5_points(data: bytes) -> tuple[int, int, int, int]:
    """The four little-endian 32-bit words of MD5(``data``) (ketama_server_hash)."""
    return struct.unpack("<4I", hashlib.md5(data).digest())


def _md5(data: bytes) -> int:
    """libhashkit's ``hashkit_md5``: the first word of the digest."""
    return _md5_points(data)[0]


class Distribution:
    """libmemcached's choice of server for a key, for one list of servers and settings.

    :param consistent: ``memcached.sess_consistent_hash`` (False: hash modulo count).
    :param weighted: ``memcached.sess_consistent_hash_type = ketama_weighted``.
    """

    def __init__(self, servers: list[MemcachedServer], *, consistent: bool = True, weighted: bool = False) -> None:
        if not servers:
            raise ValueError("no servers")
        self.servers = servers
        self.consistent = consistent
        self.weighted = weighted and consistent
        self._values: list[int] = []
        self._index: list[int] = []
        if consistent and len(servers) > 1:
            self._build()

    def _build(self) -> None:
        """hosts.cc update_continuum: the points of every server, sorted by (value, server)."""
        points: list[tuple[int, int]] = []
        n = len(self.servers)
        total = sum(s.weight for s in self.servers) if self.weighted else 0
        for i, s in enumerate(self.servers):
            if s.port == DEFAULT_PORT:
                base = s.name + "-"
            else:
                base = f"{s.name}:{s.port}-"
            if self.weighted:
                # float arithmetic, step by step as C does it
                pct = _f32(_f32(s.weight) / _f32(total)) if total else 0.0
                scaled = _f32(_f32(_f32(_f32(pct * _POINTS_KETAMA) / 4) * _f32(n)) + _f32(0.0000000001))
                per_server = int(math.floor(scaled)) * 4
                for k in range(per_server // 4):
                    for value in _md5_points((base + str(k)).encode("utf-8", "surrogateescape")):
                        points.append((value, i))
            else:
                for k in range(_POINTS):
                    points.append((one_at_a_time((base + str(k)).encode("utf-8", "surrogateescape")), i))
        points.sort()
        self._values = [v for v, _ in points]
        self._index = [i for _, i in points]

    def hash(self, key: str) -> int:
        """The key's hash (one-at-a-time, or MD5 with ketama_weighted)."""
        raw = key.encode("utf-8", "surrogateescape")
        return _md5(raw) if self.weighted else one_at_a_time(raw)

    def index_for(self, key: str) -> int:
        """The index in :attr:`servers` of the server that holds ``key`` (without prefix)."""
        n = len(self.servers)
        if n == 1:
            return 0
        h = self.hash(key)
        if not self.consistent:
            return h % n
        if not self._values:  # no points (weights all 0 with ketama_weighted)
            return 0
        at = bisect.bisect_left(self._values, h)
        return self._index[at if at < len(self._values) else 0]

    def server_for(self, key: str) -> MemcachedServer:
        """The server that holds ``key``."""
        return self.servers[self.index_for(key)]

    def replicas(self, key: str, count: int) -> list[MemcachedServer]:
        """``key``'s server, then up to ``count`` more: the next ones of save_path, as
        libmemcached writes replicas (``memcached.sess_number_of_replicas``)."""
        n = len(self.servers)
        first = self.index_for(key)
        return [self.servers[(first + k) % n] for k in range(min(count, n - 1) + 1)]


def _f32(x: float) -> float:
    """``x`` rounded to a C float (ketama_weighted computes in single precision)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def expiration(seconds: int, now: float) -> int:
    """What php-memcached sends memcached for a lifetime of ``seconds``: itself up to 30
    days, else the Unix time ``now + seconds`` (memcached's rule); 0 (never) for <= 0."""
    if seconds <= 0:
        return 0
    if seconds <= REALTIME_MAXDELTA:
        return seconds
    return int(now) + seconds


def session_key(prefix: str, sid: str) -> str:
    """The key of session ``sid`` on the server: ``memcached.sess_prefix`` + id."""
    return prefix + sid


def lock_key(prefix: str, sid: str) -> str:
    """The key of ``sid``'s lock: ``<prefix>lock.<id>`` (php_memcached_session.c s_lock_session)."""
    return prefix + "lock." + sid
