"""``session.save_path`` for the redis save handler, parsed as phpredis parses it. No I/O.

phpredis (``redis_session.c: PS_OPEN_FUNC(redis)``) splits ``save_path`` on
commas and whitespace; each piece is one server::

    tcp://host:6379?weight=2&timeout=2.5&prefix=APP:&auth=secret&database=1
    host:6379                       (no scheme: tcp; no parameters possible)
    unix:///var/run/redis.sock?database=0
    tls://host:6380?auth[]=user&auth[]=pass

Query parameters are decoded by PHP's ``parse_str()``
(:func:`phpsess.core.superglobals.parse_query`: ``+`` is a space, ``%xx`` escapes,
``name[]`` arrays) and a ``#fragment`` is glued back onto
the query, so ``auth=pa#ss`` means the password ``pa#ss``.  Unknown
parameters are ignored by phpredis, which lets phpsess add its lock settings
(``locking``, ``lock_expire``, ``lock_timeout``, ``lock_poll``,
``lock_refresh``) to the same string that PHP reads.

:func:`pick_server` reproduces how phpredis spreads sessions over several
servers, so PHP and phpsess agree on where a session lives.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from .superglobals import parse_query
from .zend import floatval, intval

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_LOCK_EXPIRE",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_LOCK_POLL",
    "LockOptions",
    "QueryValue",
    "RedisServer",
    "SavePathError",
    "parse_save_path",
    "pick_server",
    "lock_options",
    "auth_info",
]

#: redis_session.c: REDIS_SESSION_PREFIX
DEFAULT_PREFIX = "PHPREDIS_SESSION:"
#: seconds a lock lives unless refreshed (phpredis: max_execution_time, 30 under FPM)
DEFAULT_LOCK_EXPIRE = 30.0
#: seconds read() waits for a busy lock before raising LockTimeout
DEFAULT_LOCK_TIMEOUT = 30.0
#: seconds between retries when nobody signals the release (phpredis holders, expiry)
DEFAULT_LOCK_POLL = 0.005

#: one parse_str() value: a string, or for ``name[...]`` keys a list/dict (superglobals.py)
QueryValue = Union[str, list[Any], dict[Any, Any]]


class SavePathError(ValueError):
    """A ``session.save_path`` that phpredis would refuse (its PS_OPEN fails)."""

    def __init__(self, save_path: str, message: str) -> None:
        super().__init__(message)
        self.save_path = save_path


@dataclass(frozen=True)
class LockOptions:
    """phpsess's lock settings for one server (save_path parameters; phpredis ignores them).

    ``timeout`` None means: ``session.lock_timeout`` when it is > 0, else
    :data:`DEFAULT_LOCK_TIMEOUT`.  ``timeout`` 0 means: wait without a bound
    (what PHP's files handler does; the lock's expiry still frees it).
    """

    enabled: bool = True
    expire: float = DEFAULT_LOCK_EXPIRE
    timeout: float | None = None
    poll: float = DEFAULT_LOCK_POLL
    refresh: bool = False


@dataclass(frozen=True)
class RedisServer:
    """One server of a redis ``save_path``, with phpredis's parameter defaults."""

    scheme: str  # "tcp", "tls" (also for "ssl") or "unix"
    host: str  # host name / address, or the socket path for "unix"
    port: int = 6379
    weight: int = 1
    database: int = -1  # -1: no SELECT (phpredis leaves the connection's default, 0)
    timeout: float = 86400.0  # connect timeout, seconds
    read_timeout: float = 0.0  # 0: PHP's default_socket_timeout (60 s)
    persistent: bool = False
    persistent_id: str | None = None
    retry_interval: int = 0
    prefix: str = DEFAULT_PREFIX
    user: str | None = None
    password: str | None = None
    lock: LockOptions = field(default_factory=LockOptions)

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port``) or ``unix:/path``: how errors name the server."""
        if self.scheme == "unix":
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def session_key(self, sid: str) -> str:
        """The key phpredis stores ``sid`` under: ``prefix + sid``."""
        return self.prefix + sid

    def lock_key(self, sid: str) -> str:
        """phpredis's lock key for ``sid``: the session key + ``_LOCK``."""
        return self.prefix + sid + "_LOCK"


# -- the values of PHP's parse_str(), as phpredis reads them ----------------------------------


def _as_string(v: QueryValue) -> str:
    return v if isinstance(v, str) else "Array"


def _as_bool(v: QueryValue) -> bool:
    # library.c: redis_conf_bool accepts "true", "yes", "1" (any case)
    return _as_string(v).lower() in ("true", "yes", "1")


def auth_info(v: QueryValue) -> tuple[str | None, str | None]:
    """library.c: redis_extract_auth_info: a string is a password; [user, pass] or [pass];
    (user, password), or (None, None) when the value is not usable."""
    if isinstance(v, str):
        return None, v
    items: dict[Any, Any] = v if isinstance(v, dict) else dict(enumerate(v))
    if len(items) == 2:
        user = items.get("user", items.get(0))
        password = items.get("pass", items.get(1))
    elif len(items) == 1:
        user, password = None, items.get("pass", items.get(0))
    else:
        user, password = None, None
    if not isinstance(password, str) or not (user is None or isinstance(user, str)):
        return None, None
    return user, password


def _seconds(save_path: str, name: str, v: QueryValue, *, allow_zero: bool) -> float:
    f = floatval(v)
    if math.isnan(f) or f < 0 or (f == 0 and not allow_zero) or math.isinf(f):
        raise SavePathError(save_path, f"session.save_path parameter {name}={_as_string(v)!r} is out of range")
    return f


def lock_options(save_path: str, q: dict[str, QueryValue]) -> LockOptions:
    """phpsess's lock parameters (``locking``, ``lock_expire``, ``lock_timeout``,
    ``lock_poll``, ``lock_refresh``) of a parsed save_path query (also the rediscluster
    handler's).

    :raises SavePathError: a value out of range.
    """
    enabled = True
    if "locking" in q:
        enabled = _as_bool(q["locking"])
    expire = DEFAULT_LOCK_EXPIRE
    if "lock_expire" in q:
        expire = _seconds(save_path, "lock_expire", q["lock_expire"], allow_zero=False)
    timeout: float | None = None
    if "lock_timeout" in q:
        timeout = _seconds(save_path, "lock_timeout", q["lock_timeout"], allow_zero=True)
    poll = DEFAULT_LOCK_POLL
    if "lock_poll" in q:
        poll = _seconds(save_path, "lock_poll", q["lock_poll"], allow_zero=False)
    refresh = _as_bool(q["lock_refresh"]) if "lock_refresh" in q else False
    return LockOptions(enabled=enabled, expire=expire, timeout=timeout, poll=poll, refresh=refresh)


# -- PHP's parse_url(), the forms phpredis meets -------------------------------------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_PORT = re.compile(r"([^:/?#\[\]@]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})(?=/|\Z)")


def _split_query(rest: str) -> tuple[str, str | None]:
    """Split ``rest`` into (before, query); a fragment is glued back as phpredis does."""
    fragment: str | None = None
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
    query: str | None = None
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if fragment is not None:
        query = (query or "") + "#" + fragment if query is not None else None
    return rest, query


def _parse_one(save_path: str, url: str) -> RedisServer:
    # redis_session.c: "unix:" is rewritten to "file:" before php_url_parse_ex
    if url.startswith("unix:"):
        url = "file:" + url[5:]
    scheme = "tcp"
    host: str | None = None
    port = 0
    path: str | None = None
    m_hp = _HOST_PORT.match(url)
    m_scheme = _SCHEME.match(url)
    if m_hp and not url.startswith(("file:", "tcp:", "tls:", "ssl:")):
        # "host:port" with no scheme: php_url_parse_ex reads a port, not a scheme
        host, port = m_hp.group(1), int(m_hp.group(2))
        rest = url[m_hp.end():]
        rest, query = _split_query(rest)
    elif m_scheme and url[m_scheme.end():].startswith("//"):
        scheme = m_scheme.group(1).lower()
        rest, query = _split_query(url[m_scheme.end() + 2 :])
        authority, slash, tail = rest.partition("/")
        if scheme == "file":
            if authority:
                raise SavePathError(save_path, f"session.save_path entry {url!r}: a unix socket URL has no host")
            path = "/" + tail
        else:
            if "@" in authority:
                authority = authority.rsplit("@", 1)[1]  # user:pass@ is ignored by phpredis
            hp = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(\d*))?", authority)
            if not hp or not hp.group(1):
                raise SavePathError(
                    save_path, f"Failed to parse session.save_path (url was {url!r})"
                )
            host = hp.group(1)
            if hp.group(2):
                port = int(hp.group(2))
                if port > 65535:
                    raise SavePathError(
                        save_path, f"Failed to parse session.save_path (url was {url!r})"
                    )
    elif m_scheme and m_scheme.group(1).lower() == "file":
        rest, query = _split_query(url[m_scheme.end():])
        scheme = "file"
        path = rest
    elif url.startswith("/"):
        rest, query = _split_query(url)
        scheme = "file"
        path = rest
    else:
        raise SavePathError(
            save_path,
            f"session.save_path entry {url!r} names no redis server "
            f"(write tcp://HOST:PORT or unix:///PATH)",
        )

    q = parse_query(query) if query is not None else {}
    weight = intval(q["weight"]) if "weight" in q else 1
    timeout = floatval(q["timeout"]) if "timeout" in q else 86400.0
    if weight <= 0 or timeout <= 0:
        # redis_session.c: PS_OPEN fails for weight <= 0 or timeout <= 0
        raise SavePathError(
            save_path, f"session.save_path entry {url!r}: weight and timeout must be positive"
        )
    read_timeout = floatval(q["read_timeout"]) if "read_timeout" in q else 0.0
    user, password = auth_info(q["auth"]) if "auth" in q else (None, None)
    common = dict(
        weight=weight,
        database=intval(q["database"]) if "database" in q else -1,
        timeout=timeout,
        read_timeout=max(read_timeout, 0.0),
        persistent=_as_bool(q["persistent"]) if "persistent" in q else False,
        persistent_id=_as_string(q["persistent_id"]) if "persistent_id" in q else None,
        retry_interval=intval(q["retry_interval"]) if "retry_interval" in q else 0,
        prefix=_as_string(q["prefix"]) if "prefix" in q else DEFAULT_PREFIX,
        user=user,
        password=password,
        lock=lock_options(save_path, q),
    )
    if scheme == "file":
        if not path or path == "/":
            raise SavePathError(save_path, f"session.save_path entry {url!r} has no socket path")
        return RedisServer(scheme="unix", host=path, port=0, **common)  # type: ignore[arg-type]
    if scheme not in ("tcp", "tls", "ssl"):
        raise SavePathError(
            save_path, f"session.save_path entry {url!r}: unsupported scheme {scheme!r} (tcp, tls, unix)"
        )
    assert host is not None
    if host.startswith("["):
        host = host[1:-1]
    return RedisServer(
        scheme="tls" if scheme in ("tls", "ssl") else "tcp",
        host=host,
        port=port or 6379,  # library.c: redis_sock_connect uses 6379 for port 0
        **common,  # type: ignore[arg-type]
    )


def parse_save_path(save_path: str) -> list[RedisServer]:
    """Parse a redis ``session.save_path`` into its servers, in the order written.

    :raises SavePathError: where phpredis's PS_OPEN would fail (nothing to
        connect to, weight or timeout <= 0), and for forms phpredis accepts
        but can never connect with (no host, unknown scheme).
    """
    servers: list[RedisServer] = []
    for piece in re.split(r"[\s,]+", save_path):
        if piece:
            servers.append(_parse_one(save_path, piece))
    if not servers:
        raise SavePathError(save_path, "session.save_path names no redis server")
    return servers


def pick_server(servers: Sequence[RedisServer], sid: str) -> RedisServer:
    """The server phpredis stores ``sid`` on (redis_session.c: redis_pool_get_sock).

    The first four bytes of the id, read as a little-endian unsigned int,
    modulo the total weight, select a slot; slots are laid out over the
    servers in *reverse* save_path order (phpredis prepends each server to
    its pool), each taking ``weight`` consecutive slots.
    """
    total = sum(s.weight for s in servers)
    raw = sid.encode("utf-8", "surrogateescape")[:4]
    raw = raw + b"\0" * (4 - len(raw))  # a short id: C reads its NUL terminator (then zeros here)
    pos = int.from_bytes(raw, "little") % total
    start = 0
    for server in reversed(servers):
        if start <= pos < start + server.weight:
            return server
        start += server.weight
    raise AssertionError("unreachable: pos < total weight")
