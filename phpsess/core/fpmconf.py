"""php-fpm's configuration, read as php-fpm reads it, for ``phpsess fpm --config``. No I/O:
the caller reads the files (and resolves ``include``); this module checks what they say.

One file can run php-fpm or phpsess: a whole ``php-fpm.conf`` with its ``[global]``
section, or a pool file such as ``pool.d/www.conf``.  The syntax is php.ini's
(:mod:`phpsess.core.ini`), with php-fpm's additions: ``$pool`` in a value is the pool's
name, times take a unit (``30s``, ``5m``, ``1h``, ``1d``; plain numbers are seconds),
``listen.mode`` is octal, and ``php_value[...]``, ``php_admin_value[...]``,
``php_flag[...]``, ``php_admin_flag[...]``, ``env[...]`` are arrays.

Each directive is one of three kinds:

* phpsess does what it says (``listen``, ``pm.*``, ``user``, ``pm.status_path``, ...);
* it is php-fpm's but has no effect here (``rlimit_files``, ``chroot``, ...): a warning
  naming the file and line, as for a directive nobody knows;
* a wrong value (``pm = sometimes``, ``pm.max_children = -1``): :class:`FpmConfigError`
  with the file, the line and the reason; the pool does not start.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping

from .ini import IniEntry, IniSyntaxError, scan_ini

__all__ = [
    "FpmConfigError",
    "Located",
    "GlobalConfig",
    "PoolConfig",
    "FpmConfig",
    "read_entries",
    "build_config",
    "parse_duration",
    "parse_size",
    "GLOBAL_UNSUPPORTED",
    "POOL_UNSUPPORTED",
]

Warn = Callable[[str], None]


class FpmConfigError(ValueError):
    """A value php-fpm would refuse (or phpsess cannot honour): ``[file:line] reason``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"[{source}:{line}] {reason}" if line else f"[{source}] {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Located:
    """One ``key = value`` of a configuration file, with where it was written."""

    section: str | None
    key: str
    value: str
    source: str
    line: int


@dataclasses.dataclass
class GlobalConfig:
    """The ``[global]`` section."""

    pid: str | None = None
    error_log: str | None = None
    log_level: str = "notice"
    include: list[tuple[str, Located]] = dataclasses.field(default_factory=list)
    process_control_timeout: float = 0.0


@dataclasses.dataclass
class PoolConfig:
    """One pool (a ``[name]`` section), with php-fpm's defaults where php-fpm has one."""

    name: str
    listen: str = ""
    listen_backlog: int = 511
    listen_owner: str | None = None
    listen_group: str | None = None
    listen_mode: int = 0o660
    listen_allowed_clients: list[str] = dataclasses.field(default_factory=list)
    user: str | None = None
    group: str | None = None
    pm: str = ""
    pm_max_children: int = 0
    pm_start_servers: int = 0
    pm_min_spare_servers: int = 0
    pm_max_spare_servers: int = 0
    pm_process_idle_timeout: float = 10.0
    pm_max_requests: int = 0
    pm_status_path: str | None = None
    ping_path: str | None = None
    ping_response: str = "pong"
    access_log: str | None = None
    access_format: str = '%R - %u %t "%m %r" %s'
    slowlog: str | None = None
    request_slowlog_timeout: float = 0.0
    request_terminate_timeout: float = 0.0
    chdir: str | None = None
    clear_env: bool = True
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: php_value / php_flag (the script may change them) and the admin kinds (it may not)
    php_values: dict[str, str] = dataclasses.field(default_factory=dict)
    php_admin_values: dict[str, str] = dataclasses.field(default_factory=dict)
    #: where each directive was written, for later messages
    where: dict[str, Located] = dataclasses.field(default_factory=dict)

    def ini(self, name: str, default: str | None = None) -> str | None:
        """A PHP ini value of this pool (``php_admin_value`` wins), or ``default``."""
        if name in self.php_admin_values:
            return self.php_admin_values[name]
        return self.php_values.get(name, default)


@dataclasses.dataclass
class FpmConfig:
    """A whole configuration: the global settings and the pools."""

    global_: GlobalConfig
    pools: list[PoolConfig]

    def pool(self, name: str | None) -> PoolConfig:
        """The pool ``name``; without a name, the only pool.

        :raises FpmConfigError: no such pool, or several and none chosen.
        """
        if name is None:
            if len(self.pools) == 1:
                return self.pools[0]
            names = ", ".join(p.name for p in self.pools)
            raise FpmConfigError(
                "config", 0,
                f"{len(self.pools)} pools ({names}): phpsess fpm runs one pool per process; choose one with --pool",
            )
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise FpmConfigError("config", 0, f"no pool named {name!r} (pools: {', '.join(p.name for p in self.pools)})")


#: php-fpm's directives that phpsess accepts and ignores (a warning says so)
GLOBAL_UNSUPPORTED = frozenset({
    "syslog.facility", "syslog.ident", "log_limit", "log_buffering", "emergency_restart_threshold",
    "emergency_restart_interval", "process.max", "process.priority", "daemonize", "rlimit_files",
    "rlimit_core", "events.mechanism", "systemd_interval",
})
POOL_UNSUPPORTED = frozenset({
    "prefix", "listen.setfib", "listen.acl_users", "listen.acl_groups", "process.priority",
    "process.dumpable", "pm.max_spawn_rate", "pm.status_listen", "request_slowlog_trace_depth",
    "request_terminate_timeout_track_finished", "rlimit_files", "rlimit_core", "chroot",
    "catch_workers_output", "decorate_workers_output", "security.limit_extensions", "apparmor_hat",
    "access.suppress_path",
})
_ARRAYS = ("php_value", "php_admin_value", "php_flag", "php_admin_flag", "env")
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*\Z")
_SIZE = re.compile(r"\s*(\d+)\s*([kKmMgG]?)\s*\Z")
_LOG_LEVELS = ("alert", "error", "warning", "notice", "debug")


def parse_duration(text: str) -> float | None:
    """php-fpm's time values: ``30``, ``30s``, ``5m``, ``1h``, ``1d`` -> seconds; None if not."""
    m = _DURATION.match(text)
    if m is None:
        return None
    return float(int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def parse_size(text: str) -> int | None:
    """PHP's sizes: ``8M``, ``128k``, ``1G``, ``512`` -> bytes; None if not."""
    m = _SIZE.match(text)
    if m is None:
        return None
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def read_entries(text: str, source: str, environ: Mapping[str, str]) -> list[Located]:
    """The entries of one configuration file (``${VAR}`` from ``environ``).

    :raises FpmConfigError: a syntax error, with its line.
    """
    try:
        raw: list[IniEntry] = list(scan_ini(text, lambda name: environ.get(name, ""), strict=lambda key: False))
    except IniSyntaxError as exc:
        raise FpmConfigError(source, exc.line, str(exc)) from None
    out = []
    for entry in raw:
        if entry.value is None:
            raise FpmConfigError(source, entry.line, f"'{entry.key}' has no value")
        out.append(Located(entry.section, entry.key, entry.value, source, entry.line))
    return out


def build_config(entries: Iterable[Located], warn: Warn, *, default_source: str = "config") -> FpmConfig:
    """Check every entry and build the configuration (the caller has read the files,
    includes resolved, in order).  A pool file without ``[global]`` is fine.

    :param warn: receives a warning for each directive that has no effect here.
    :raises FpmConfigError: a wrong value, a missing required directive, no pool.
    """
    glob = GlobalConfig()
    pools: dict[str, PoolConfig] = {}
    for e in entries:
        section = e.section
        if section is None:
            raise FpmConfigError(e.source, e.line, f"'{e.key}' is outside of any [section]")
        if section == "global":
            _global_entry(glob, e, warn)
            continue
        pool = pools.get(section)
        if pool is None:
            pool = pools[section] = PoolConfig(name=section)
        _pool_entry(pool, e, warn)
    if not pools:
        raise FpmConfigError(default_source, 0, "no pool defined: at least one pool section ([www]) is needed")
    for pool in pools.values():
        _check_pool(pool, default_source)
    return FpmConfig(glob, list(pools.values()))


def _bad(e: Located, reason: str) -> FpmConfigError:
    return FpmConfigError(e.source, e.line, f"{reason} for '{e.key}' (\"{e.value}\")")


def _duration(e: Located) -> float:
    value = parse_duration(e.value)
    if value is None:
        raise _bad(e, "invalid time value (a number of seconds, or with s, m, h or d)")
    return value


def _int(e: Located, minimum: int = 0) -> int:
    text = e.value.strip()
    if not text.isdigit():
        raise _bad(e, "invalid value: a whole number is needed")
    value = int(text)
    if value < minimum:
        raise _bad(e, f"invalid value: at least {minimum}")
    return value


def _bool(e: Located) -> bool:
    # the ini scanner makes yes/on/true "1" and no/off/false ""
    low = e.value.strip().lower()
    if low in ("1", "yes", "on", "true"):
        return True
    if low in ("", "0", "no", "off", "false", "none"):
        return False
    raise _bad(e, "invalid boolean (yes or no)")


def _global_entry(glob: GlobalConfig, e: Located, warn: Warn) -> None:
    key = e.key
    if key == "pid":
        glob.pid = e.value
    elif key == "error_log":
        glob.error_log = e.value
    elif key == "log_level":
        if e.value.lower() not in _LOG_LEVELS:
            raise _bad(e, f"invalid log level (one of {', '.join(_LOG_LEVELS)})")
        glob.log_level = e.value.lower()
    elif key == "include":
        glob.include.append((e.value, e))
    elif key == "process_control_timeout":
        glob.process_control_timeout = _duration(e)
    elif key in GLOBAL_UNSUPPORTED:
        warn(f"[{e.source}:{e.line}] '{key}' is php-fpm's and has no effect in phpsess fpm; ignored")
    else:
        warn(f"[{e.source}:{e.line}] unknown entry '{key}'; ignored")


def _pool_entry(pool: PoolConfig, e: Located, warn: Warn) -> None:
    key = e.key
    value = e.value.replace("$pool", pool.name)
    e = dataclasses.replace(e, value=value)
    base, bracket, rest = key.partition("[")
    if bracket:
        if base not in _ARRAYS or not rest.endswith("]") or len(rest) < 2:
            warn(f"[{e.source}:{e.line}] unknown entry '{key}'; ignored")
            return
        name = rest[:-1]
        if base == "env":
            pool.env[name] = value
        elif base in ("php_value", "php_flag"):
            pool.php_values[name] = value
        else:
            pool.php_admin_values[name] = value
        pool.where[key] = e
        return
    pool.where[key] = e
    if key == "listen":
        if not value.strip():
            raise _bad(e, "empty address")
        pool.listen = value.strip()
    elif key == "listen.backlog":
        pool.listen_backlog = -1 if value.strip() == "-1" else _int(e)
    elif key == "listen.owner":
        pool.listen_owner = value or None
    elif key == "listen.group":
        pool.listen_group = value or None
    elif key == "listen.mode":
        text = value.strip()
        if not text or any(c not in "01234567" for c in text):
            raise _bad(e, "invalid mode: an octal number such as 0660 is needed")
        pool.listen_mode = int(text, 8)
    elif key == "listen.allowed_clients":
        pool.listen_allowed_clients = [a.strip() for a in value.split(",") if a.strip()]
    elif key == "user":
        pool.user = value or None
    elif key == "group":
        pool.group = value or None
    elif key == "pm":
        if value not in ("static", "dynamic", "ondemand"):
            raise _bad(e, "invalid process manager (static, dynamic or ondemand)")
        pool.pm = value
    elif key == "pm.max_children":
        pool.pm_max_children = _int(e, 1)
    elif key == "pm.start_servers":
        pool.pm_start_servers = _int(e)
    elif key == "pm.min_spare_servers":
        pool.pm_min_spare_servers = _int(e)
    elif key == "pm.max_spare_servers":
        pool.pm_max_spare_servers = _int(e)
    elif key == "pm.process_idle_timeout":
        pool.pm_process_idle_timeout = _duration(e)
    elif key == "pm.max_requests":
        pool.pm_max_requests = _int(e)
    elif key in ("pm.status_path", "ping.path"):
        if not value.startswith("/"):
            raise _bad(e, "the path must start with a '/'")
        if key == "pm.status_path":
            pool.pm_status_path = value
        else:
            pool.ping_path = value
    elif key == "ping.response":
        pool.ping_response = value
    elif key == "access.log":
        pool.access_log = value or None
    elif key == "access.format":
        pool.access_format = value
    elif key == "slowlog":
        pool.slowlog = value or None
    elif key == "request_slowlog_timeout":
        pool.request_slowlog_timeout = _duration(e)
    elif key == "request_terminate_timeout":
        pool.request_terminate_timeout = _duration(e)
    elif key == "chdir":
        pool.chdir = value or None
    elif key == "clear_env":
        pool.clear_env = _bool(e)
    elif key in POOL_UNSUPPORTED:
        warn(f"[{e.source}:{e.line}] '{key}' is php-fpm's and has no effect in phpsess fpm; ignored")
    else:
        warn(f"[{e.source}:{e.line}] unknown entry '{key}'; ignored")


def _check_pool(pool: PoolConfig, default_source: str) -> None:
    """php-fpm's checks of a pool (fpm_conf.c: fpm_conf_process_all_pools)."""

    def fail(key: str, reason: str) -> FpmConfigError:
        e = pool.where.get(key)
        if e is None:
            return FpmConfigError(default_source, 0, f"[pool {pool.name}] {reason}")
        return FpmConfigError(e.source, e.line, f"[pool {pool.name}] {reason}")

    if not pool.pm:
        raise fail("pm", "'pm' is required (static, dynamic or ondemand)")
    if not pool.pm_max_children:
        raise fail("pm.max_children", "'pm.max_children' is required and must be at least 1")
    if pool.pm == "dynamic":
        if not pool.pm_min_spare_servers or not pool.pm_max_spare_servers:
            raise fail("pm.min_spare_servers", "pm.min_spare_servers and pm.max_spare_servers are required with pm = dynamic")
        if pool.pm_min_spare_servers > pool.pm_max_children or pool.pm_max_spare_servers > pool.pm_max_children:
            raise fail("pm.max_spare_servers", "pm.min/max_spare_servers cannot be greater than pm.max_children")
        if pool.pm_min_spare_servers > pool.pm_max_spare_servers:
            raise fail("pm.min_spare_servers", "pm.min_spare_servers cannot be greater than pm.max_spare_servers")
        if not pool.pm_start_servers:
            pool.pm_start_servers = pool.pm_min_spare_servers + (pool.pm_max_spare_servers - pool.pm_min_spare_servers) // 2
        if not pool.pm_min_spare_servers <= pool.pm_start_servers <= pool.pm_max_spare_servers:
            raise fail("pm.start_servers", "pm.start_servers must be between pm.min_spare_servers and pm.max_spare_servers")
    if pool.pm == "ondemand" and pool.pm_process_idle_timeout < 1:
        raise fail("pm.process_idle_timeout", "pm.process_idle_timeout must be at least 1 s")
