"""SessionConfig: the ``session.*`` ini settings, and the session settings of the extensions
whose save handlers phpsess has (``memcached.sess_*`` of php-memcached), parsed and checked
as PHP 8.2 does. No I/O (reading an ini file is :mod:`phpsess.session.settings`'s, scanning
one :mod:`phpsess.core.ini`'s).

Each setting is kept twice: the raw string that ``ini_get()`` returns, and a
typed attribute named like the ini setting without ``session.`` (dots become
underscores: ``session.upload_progress.enabled`` -> ``upload_progress_enabled``,
``memcached.sess_locking`` -> ``memcached_sess_locking``).  Extension settings live in
the same table under their full ini names (:attr:`Setting.ext` says whose they are): they
come from the same php.ini, ``ini_get()``/``ini_set()`` take their full names, and each
request gets its own copy, as in PHP.
The typed attribute is the value PHP actually uses, converted the way PHP
converts it (``gc_maxlifetime = "1k"`` is 1024, ``cookie_secure = "on"`` is True,
``cookie_secure = " on"`` is False).

Messages follow PHP 8.2.36 (checked against it in ``tests/oracle/test_config_oracle.py``):

* a refused value raises :class:`~phpsess.errors.ConfigError`; ``str(exc)`` is PHP's
  warning text *without* the ``ini_set(): `` / ``session_start(): `` prefix that PHP
  puts in front of it, or ``""`` when PHP refuses silently (``ini_set`` just returns
  false: a NUL byte in ``save_path``, a PERDIR setting at runtime, an unknown name);
* a value that PHP accepts with a warning (``Invalid "session.gc_maxlifetime" setting.
  Invalid quantity "abc": ...``) is stored and the warning text goes to the ``warn``
  callback; PHP raises those with ``zend_error``, so they carry no function prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .formats import HANDLERS as SERIALIZE_HANDLERS
from .zend import (
    C_SPACE,
    LONG_MAX,
    LONG_MIN,
    ULONG_MAX,
    c_str,
    is_numeric_string,
    strtod,
    strtol,
    strtoul,
    strval,
    to_int32,
    to_signed64,
)

__all__ = [
    "SessionConfig",
    "SETTINGS",
    "SAVE_HANDLERS",
    "Setting",
    "Warn",
    "parse_bool",
    "parse_long",
    "parse_float",
    "parse_quantity",
    "MAX_COOKIE_LIFETIME",
]

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One ``session.*`` ini entry: its default, how it parses, where it may be changed."""

    name: str  # without the "session." prefix; an extension's setting: its full ini name
    default: str
    kind: str  # Python type of the attribute: "bool" | "int" | "str" | "float"
    mode: str = "ALL"  # "ALL" | "PERDIR"
    phpsess_only: bool = False  # an extension of phpsess, unknown to PHP
    core: bool = False  # one of PHP's core settings: its ini name has no "session." prefix
    check: str = ""  # the validator (PHP's OnUpdate handler); "" = same as kind
    #: Debian's php.ini-production value, or None when it leaves PHP's default (documentation)
    debian: str | None = None
    doc: str = ""
    #: the extension that registers it in PHP: "session", or e.g. "memcached" (php-memcached)
    ext: str = "session"

    @property
    def attr(self) -> str:
        """The SessionConfig attribute that holds the parsed value."""
        return self.name.replace(".", "_")

    @property
    def ini_name(self) -> str:
        """The name in php.ini and ``ini_get()``: ``session.NAME``; a core setting's NAME
        (``memory_limit``) or an extension's full name (``memcached.sess_locking``)."""
        return self.name if self.core or self.ext != "session" else "session." + self.name


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("save_handler", "files", "str", check="save_handler", debian="files",
                doc="storage module: files, redis (phpredis-compatible), memory; user = set by code"),
        Setting("save_path", "", "str", check="save_path",
                doc='files: "[N;[MODE;]]/dir"; redis: "tcp://host:6379?prefix=...&database=0"'),
        Setting("name", "PHPSESSID", "str", check="name", debian="PHPSESSID",
                doc="cookie (and GET/POST) name; not numeric, not empty, no '=,;.[ \\t\\r\\n\\v\\f'"),
        Setting("auto_start", "0", "bool", "PERDIR", debian="0",
                doc="start a session at every request start (php.ini only)"),
        Setting("gc_probability", "1", "int", check="long", debian="0",
                doc="GC runs at session start with probability gc_probability/gc_divisor"),
        Setting("gc_divisor", "100", "int", check="long", debian="1000",
                doc="see gc_probability; <= 0 makes GC run at every start"),
        Setting("gc_maxlifetime", "1440", "int", check="long", debian="1440",
                doc="seconds after which GC may delete an idle session (and redis TTL)"),
        Setting("serialize_handler", "php", "str", check="serialize_handler", debian="php",
                doc="payload format: php, php_serialize, php_binary"),
        Setting("cookie_lifetime", "0", "int", check="cookie_lifetime", debian="0",
                doc="cookie lifetime in seconds; 0 = until the browser is closed"),
        Setting("cookie_path", "/", "str", debian="/", doc="cookie Path attribute"),
        Setting("cookie_domain", "", "str", debian="", doc="cookie Domain attribute; empty = none"),
        Setting("cookie_secure", "0", "bool", doc="send the cookie over HTTPS only"),
        Setting("cookie_httponly", "0", "bool", debian="",
                doc="hide the cookie from JavaScript (HttpOnly)"),
        Setting("cookie_samesite", "", "str", debian="",
                doc='SameSite attribute: Strict, Lax, None (quote "None" in php.ini!)'),
        Setting("use_cookies", "1", "bool", debian="1", doc="send and read the session cookie"),
        Setting("use_only_cookies", "1", "bool", debian="1",
                doc="never take the id from GET/POST (session fixation protection)"),
        Setting("use_strict_mode", "0", "bool", debian="0",
                doc="refuse ids that do not exist in storage and make a new one"),
        Setting("referer_check", "", "str", debian="",
                doc="drop GET/POST ids when HTTP_REFERER lacks this substring"),
        Setting("cache_limiter", "nocache", "str", debian="nocache",
                doc="cache headers at start: nocache, private, private_no_expire, public, or empty"),
        Setting("cache_expire", "180", "int", check="long", debian="180",
                doc="minutes, for the private/public cache limiters"),
        Setting("use_trans_sid", "0", "bool", debian="0",
                doc="rewrite URLs and forms to carry the id (needs use_only_cookies=0)"),
        Setting("sid_length", "32", "int", check="sid_length", debian="26",
                doc="length of new ids, 22..256"),
        Setting("sid_bits_per_character", "4", "int", check="sid_bits", debian="5",
                doc="bits per id character: 4 (0-9a-f), 5 (0-9a-v), 6 (0-9a-zA-Z,-)"),
        Setting("lazy_write", "1", "bool", doc="write only when the data changed (else touch)"),
        Setting("trans_sid_tags", "a=href,area=href,frame=src,form=", "str",
                debian="a=href,area=href,frame=src,form=", doc="tags=attributes rewritten by trans-sid"),
        Setting("trans_sid_hosts", "", "str", doc="hosts rewritten by trans-sid; empty = HTTP_HOST"),
        Setting("upload_progress.enabled", "1", "bool", "PERDIR",
                doc="track file upload progress in the session (php.ini only)"),
        Setting("upload_progress.cleanup", "1", "bool", "PERDIR",
                doc="remove the progress entry when the upload is done"),
        Setting("upload_progress.prefix", "upload_progress_", "str", "PERDIR",
                doc="prefix of the progress key in $_SESSION"),
        Setting("upload_progress.name", "PHP_SESSION_UPLOAD_PROGRESS", "str", "PERDIR",
                doc="form field that names the upload"),
        Setting("upload_progress.freq", "1%", "str", "PERDIR", check="rfc1867_freq",
                doc="update every N bytes, or N% of the upload (0..100%)"),
        Setting("upload_progress.min_freq", "1", "float", "PERDIR",
                doc="minimum seconds between updates"),
        # phpsess extensions (documented in conf/phpsess.ini and docs/compatibility.md)
        Setting("lock_timeout", "0", "float", phpsess_only=True, check="nonneg_float",
                doc="seconds to wait for the session lock; 0 = wait forever (as PHP)"),
        Setting("lock_max_waiters", "0", "int", phpsess_only=True, check="nonneg_int",
                doc="refuse to queue behind more than N waiters on one session; 0 = no limit"),
        Setting("lock_wait_log_ms", "1000", "int", phpsess_only=True, check="nonneg_int",
                doc="log lock waits longer than this many milliseconds; 0 = never"),
        Setting("lazy_start", "0", "bool", phpsess_only=True,
                doc="open (and lock) storage at the first access to SESSION, not at start"),
        Setting("concurrency", "lock", "str", phpsess_only=True, check="concurrency",
                doc="lock = PHP's exclusive lock; merge = optimistic merge of changed keys"),
        Setting("merge_conflict", "overwrite", "str", phpsess_only=True, check="merge_conflict",
                doc="merge mode, same key changed by two requests: overwrite (last write wins) or error"),
        # php-memcached 3.2's session settings (php_memcached.c PHP_INI_BEGIN), used by the
        # memcached save handler; docs/memcached.md
        *(Setting(f"memcached.sess_{n}", d, k, check=c, ext="memcached", doc=doc) for n, d, k, c, doc in [
            ("locking", "1", "bool", "", "lock the session from read to close"),
            ("lock_wait_min", "150", "int", "long_gez", "milliseconds before the first retry of a busy lock"),
            ("lock_wait_max", "150", "int", "long_gez", "longest wait between retries (the wait doubles up to it)"),
            ("lock_retries", "5", "int", "long", "retries of a busy lock before read() fails (PHP)"),
            ("lock_expire", "0", "int", "long_gez",
             "seconds a lock lives; 0 = max_execution_time in PHP (30 s under php-fpm), 30 in phpsess"),
            ("binary_protocol", "1", "bool", "", "libmemcached's binary protocol (phpsess: the text protocol)"),
            ("consistent_hash", "1", "bool", "", "consistent hashing over several servers (else modulo)"),
            ("consistent_hash_type", "ketama", "str", "memc_hash", "ketama or ketama_weighted"),
            ("number_of_replicas", "0", "int", "long_gez", "copies of each session on the next servers"),
            ("randomize_replica_read", "0", "bool", "", "read from a random replica"),
            ("remove_failed_servers", "0", "bool", "", "take failed servers out of the distribution"),
            ("server_failure_limit", "0", "int", "long_gez", "failures before a server is removed"),
            ("connect_timeout", "0", "int", "long", "connect timeout, milliseconds (0: libmemcached's 4 s)"),
            ("sasl_username", "", "str", "", "SASL user (binary protocol)"),
            ("sasl_password", "", "str", "", "SASL password"),
            ("persistent", "0", "bool", "", "keep connections between requests (phpsess always does)"),
            ("prefix", "memc.sess.key.", "str", "memc_prefix", "key prefix of sessions and their locks"),
            ("lock_wait", "not set", "str", "memc_deprecated", "deprecated by php-memcached 3: no effect"),
            ("lock_max_wait", "not set", "str", "memc_deprecated", "deprecated by php-memcached 3: no effect"),
        ]),
        Setting("php_arrays", "1", "bool", phpsess_only=True,
                doc="decoded PHP arrays are PHPArray (PHP's keys and order); 0 = plain list/dict"),
        # PHP's core setting, for what a request decodes from its session (0: no limit)
        Setting("memory_limit", "128M", "int", core=True, check="memory_limit", debian="128M",
                doc="bytes a request may use for the session it decodes; -1 = no limit"),
    ]
}

#: ``session.save_handler`` name -> where its class lives ("module:Class"), imported on
#: first use by :func:`phpsess.storage.base.handler_class`
SAVE_HANDLERS: dict[str, str] = {
    "files": "phpsess.storage.files:FilesHandler",
    "redis": "phpsess.storage.redis:RedisHandler",
    "memory": "phpsess.storage.memory:MemoryHandler",
    "memcached": "phpsess.storage.memcached:MemcachedHandler",
    "rediscluster": "phpsess.storage.rediscluster:RedisClusterHandler",
}

# -- ini conversions ---------------------------------------------------------------------------

#: session.c OnUpdateCookieLifetime: larger lifetimes are accepted but not applied
MAX_COOKIE_LIFETIME = LONG_MAX - 0x7FFFFFFF - 1
_DIGITS = "0123456789"


def _ch(s: str, i: int) -> str:
    """``s[i]``, or NUL past the end (C reads the terminator)."""
    return s[i] if i < len(s) else "\0"


def parse_long(raw: str) -> int:
    """C ``atol``/``strtol`` base 10 on the leading part of ``raw``: garbage gives 0."""
    return strtol(raw)[0]


def parse_bool(raw: str) -> bool:
    """PHP's ``zend_ini_parse_bool``: ``on``/``yes``/``true`` (any case, nothing around them),
    else C ``atoi() != 0`` (so ``"2"``, ``"-1"``, ``"12abc"`` are true, ``" on"`` is false)."""
    if len(raw) <= 4 and raw.isascii() and raw.lower() in ("on", "yes", "true"):
        return True
    return to_int32(strtol(raw)[0]) != 0


def parse_float(raw: str) -> float:
    """``zend_strtod`` on the leading part of ``raw`` (decimal only, no inf/nan): garbage gives 0.0."""
    return strtod(raw)


#: the C escapes smart_str_append_escaped writes (other bytes: \xHH)
_C_ESCAPES = {10: "\\n", 13: "\\r", 9: "\\t", 12: "\\f", 11: "\\v", 92: "\\\\", 27: "\\e"}


def _escape(s: str) -> str:
    """``smart_str_append_escaped`` of a byte view (one char per byte, see parse_quantity):
    control bytes, backslash and bytes > 126 escaped, C style."""
    out = []
    for b in s.encode("latin-1"):
        if 32 <= b <= 126 and b != 92:
            out.append(chr(b))
        else:
            out.append(_C_ESCAPES.get(b) or "\\x%02X" % b)
    return "".join(out)


def parse_quantity(raw: str) -> tuple[int, str | None]:
    """PHP 8.2's ``zend_ini_parse_quantity`` (signed): ``"1k"`` -> 1024, ``"0x1A"`` -> 26.

    Leading/trailing blanks are ignored; ``0x``/``0o``/``0b`` prefixes and a leading ``0``
    (octal) select the base; one ``k``/``m``/``g`` suffix multiplies.  Anything else is
    "interpreted for backwards compatibility" as PHP does, with its message.

    :returns: (value as a 64-bit signed integer, PHP's error text or None).
    """
    # work on bytes, as C does: one char per byte of the UTF-8 (surrogateescape) encoding
    s = raw if raw.isascii() else raw.encode("utf-8", "surrogateescape").decode("latin-1")
    start = 0
    end = len(s)
    while start < end and s[start] in C_SPACE:
        start += 1
    while start < end and s[end - 1] in C_SPACE:
        end -= 1
    if start == end:
        return 0, None
    d = start
    negative = False
    if s[d] == "+":
        d += 1
    elif s[d] == "-":
        negative = True
        d += 1
    if _ch(s, d) not in _DIGITS:
        return 0, (
            f'Invalid quantity "{_escape(s)}": no valid leading digits, '
            'interpreting as "0" for backwards compatibility'
        )
    base = 0
    if s[d] == "0" and _ch(s, d + 1) not in _DIGITS:
        if d + 1 == end:
            return 0, None
        c = _ch(s, d + 1)
        if c in "gGmMkK":
            pass  # "0k": a zero with a multiplier
        elif c in "xXoObB":
            base = {"x": 16, "o": 8, "b": 2}[c.lower()]
            d += 2
            bad = d == end
            if not bad:
                # zend_ini_consume_quantity_prefix: no blanks, sign or second prefix allowed
                p = d
                while p < end and s[p] in C_SPACE:
                    p += 1
                if _ch(s, p) in "+-":
                    p += 1
                if _ch(s, p) == "0" and _ch(s, p + 1) not in _DIGITS and p + 1 != end:
                    if _ch(s, p + 1) in "xXoObB":
                        p += 2
                bad = p != d
            if bad:
                return 0, (
                    f'Invalid quantity "{_escape(s)}": no digits after base prefix, '
                    'interpreting as "0" for backwards compatibility'
                )
        else:
            c = c.encode("latin-1").decode("utf-8", "surrogateescape")  # the raw byte, as %c
            return 0, (
                f'Invalid prefix "0{c}", interpreting as "0" for backwards compatibility'
            )
    value, digits_end, overflow = strtoul(s, d, base)
    if not overflow:
        if negative and value == LONG_MAX + 1:
            value = -value
        elif value > LONG_MAX:
            overflow = True
        elif negative:
            value = -value
    if digits_end == d:
        return 0, (
            f'Invalid quantity "{_escape(s)}": no valid leading digits, '
            'interpreting as "0" for backwards compatibility'
        )
    while digits_end < end and s[digits_end] in C_SPACE:
        digits_end += 1
    if digits_end < end:
        suffix = s[end - 1]
        factor = {"g": 1 << 30, "m": 1 << 20, "k": 1 << 10}.get(suffix.lower() if suffix.isascii() else "")
        if factor is None:
            return to_signed64(value), (
                f'Invalid quantity "{_escape(s)}": unknown multiplier "{_escape(suffix)}", '
                f'interpreting as "{_escape(s[:digits_end])}" for backwards compatibility'
            )
        if not overflow:
            sv = to_signed64(value)
            if sv > 0:
                overflow = sv > LONG_MAX // factor
            else:
                overflow = sv < -(-LONG_MIN // factor)
        value = (value * factor) & ULONG_MAX
        if digits_end != end - 1:
            return to_signed64(value), (
                f'Invalid quantity "{_escape(s)}", interpreting as '
                f'"{_escape(s[:digits_end])}{_escape(suffix)}" for backwards compatibility'
            )
    if overflow:
        return to_signed64(value), (
            f'Invalid quantity "{_escape(s)}": value is out of range, '
            "using overflow result for backwards compatibility"
        )
    return to_signed64(value), None


# -- validators (PHP's OnUpdate* handlers) ----------------------------------------------------

_KEEP = object()  # accepted, but the value in use does not change (cookie_lifetime too large)


def _quantity(key: str, raw: str, warn: Warn | None) -> int:
    value, err = parse_quantity(raw)
    if err is not None:
        _warn(warn, f'Invalid "{SETTINGS[key].ini_name}" setting. {c_str(err)}')
    return value


def _warn(warn: Warn | None, message: str) -> None:
    if warn is not None:
        warn(message)


def _strict_long(raw: str) -> int | None:
    """``strtol`` that must consume the whole string (blanks/sign before digits only)."""
    value, end, _ = strtol(raw)
    if end != len(raw):
        return None if raw else 0  # strtol("") gives 0 with *end == '\0'
    return value


def _v_str(key: str, raw: str, warn: Warn | None) -> Any:
    # PHP 8.2 keeps these as C strings: what it uses stops at a NUL byte
    return c_str(raw)


def _v_bool(key: str, raw: str, warn: Warn | None) -> Any:
    return parse_bool(raw)


def _v_float(key: str, raw: str, warn: Warn | None) -> Any:
    return parse_float(raw)


def _v_long(key: str, raw: str, warn: Warn | None) -> Any:
    return _quantity(key, raw, warn)


def _v_save_path(key: str, raw: str, warn: Warn | None) -> Any:
    # session.c OnUpdateSaveDir: a NUL byte fails silently
    if "\0" in raw:
        raise ConfigError(key, raw, "")
    return raw


def _v_name(key: str, raw: str, warn: Warn | None) -> Any:
    # session.c OnUpdateName (8.2): empty or numeric -> warning; then OnUpdateStringUnempty
    # fails silently on a value whose first byte is NUL
    if raw == "" or is_numeric_string(raw):
        raise ConfigError(key, raw, f'session.name "{c_str(raw)}" cannot be numeric or empty')
    if raw[0] == "\0":
        raise ConfigError(key, raw, "")
    return c_str(raw)


def _v_save_handler(key: str, raw: str, warn: Warn | None) -> Any:
    # session.c OnUpdateSaveHandler: module names compare case-insensitively, up to a NUL
    name = c_str(raw)
    name = name.lower() if name.isascii() else name
    if name == "user":
        raise ConfigError(key, raw, 'Session save handler "user" cannot be set by ini_set()')
    if name not in SAVE_HANDLERS:
        raise ConfigError(key, raw, f'Session save handler "{c_str(raw)}" cannot be found')
    return name


def _v_serialize_handler(key: str, raw: str, warn: Warn | None) -> Any:
    # session.c _php_find_ps_serializer: case-insensitive, up to a NUL
    name = c_str(raw)
    low = name.lower() if name.isascii() else name
    if low not in SERIALIZE_HANDLERS:
        raise ConfigError(key, raw, f'Serialization handler "{name}" cannot be found')
    return low


def _v_cookie_lifetime(key: str, raw: str, warn: Warn | None) -> Any:
    # session.c OnUpdateCookieLifetime: atol() < 0 refused; > MAX accepted, not applied;
    # then OnUpdateLongGEZero: a negative quantity ("-0x5") fails silently
    if parse_long(raw) < 0:
        raise ConfigError(key, raw, "CookieLifetime cannot be negative")
    if parse_long(raw) > MAX_COOKIE_LIFETIME:
        return _KEEP
    value = _quantity(key, raw, warn)
    if value < 0:
        raise ConfigError(key, raw, "")
    return value


def _strict_range(low: int, high: int) -> Callable[[str, str, Warn | None], Any]:
    """A validator of a whole-string integer in ``low..high`` (PHP: sid_length, sid_bits)."""

    def validate(key: str, raw: str, warn: Warn | None) -> Any:
        value = _strict_long(raw)
        if value is None or not low <= value <= high:
            raise ConfigError(
                key, raw, f'session.configuration "session.{key}" must be between {low} and {high}'
            )
        return value

    return validate


def _v_rfc1867_freq(key: str, raw: str, warn: Warn | None) -> Any:
    value = to_int32(parse_long(raw))
    if value < 0:
        raise ConfigError(key, raw, "session.upload_progress.freq must be greater than or equal to 0")
    if raw.endswith("%") and value > 100:
        raise ConfigError(key, raw, "session.upload_progress.freq must be less than or equal to 100%")
    return raw


#: what PHP has in use when it sets memory_limit (one 2 MiB chunk): a lower limit is refused
MEMORY_IN_USE = 2 << 20


def _v_memory_limit(key: str, raw: str, warn: Warn | None) -> Any:
    """main.c OnSetMemoryLimit: an unsigned quantity, -1 (or any negative) for no limit
    (0 here); below what is in use already, refused with PHP's warning."""
    value, err = parse_quantity(raw)
    if err is not None:
        _warn(warn, f'Invalid "{key}" setting. {c_str(err)}')
    if value < 0:
        if value != -1 and err is None:
            _warn(warn, f'Invalid "{key}" setting. Invalid quantity "{raw}": value is out of range, '
                        "using overflow result for backwards compatibility")
        return 0
    if value < MEMORY_IN_USE:
        raise ConfigError(
            key, raw, f"Failed to set memory limit to {value} bytes (Current memory usage is {MEMORY_IN_USE} bytes)"
        )
    return value


def _v_nonneg_float(key: str, raw: str, warn: Warn | None) -> Any:
    try:
        value = float(raw.strip(C_SPACE)) if raw.strip(C_SPACE) else 0.0
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(key, raw, f'session.{key} must be a number of seconds >= 0, "{raw}" given')
    return value


def _v_nonneg_int(key: str, raw: str, warn: Warn | None) -> Any:
    text = raw.strip(C_SPACE)
    if text == "":
        return 0
    if not (text.isascii() and text.lstrip("+").isdigit()) or text.count("+") > 1:
        raise ConfigError(key, raw, f'session.{key} must be an integer >= 0, "{raw}" given')
    return int(text)


def _one_of(first: str, second: str) -> Callable[[str, str, Warn | None], Any]:
    """A validator of phpsess's two-word settings (any case, blanks around)."""

    def validate(key: str, raw: str, warn: Warn | None) -> Any:
        low = raw.strip(C_SPACE).lower()
        if low not in (first, second):
            raise ConfigError(key, raw, f'session.{key} must be "{first}" or "{second}", "{raw}" given')
        return low

    return validate


def _v_long_gez(key: str, raw: str, warn: Warn | None) -> Any:
    # OnUpdateLongGEZero: a negative quantity fails silently
    value = _quantity(key, raw, warn)
    if value < 0:
        raise ConfigError(key, raw, "")
    return value


#: libmemcached's MEMCACHED_MAX_KEY (with its NUL)
_MEMCACHED_MAX_KEY = 251


def _v_memc_prefix(key: str, raw: str, warn: Warn | None) -> Any:
    # php_memcached.c OnUpdateSessionPrefixString: length, then no blank or control byte
    data = raw.encode("utf-8", "surrogateescape")
    if data:
        if len(data) > _MEMCACHED_MAX_KEY:
            raise ConfigError(key, raw, f"memcached.sess_prefix too long (max: {_MEMCACHED_MAX_KEY - 1})")
        if any(not 0x21 <= b <= 0x7E for b in data):  # s_memc_valid_key_ascii: isgraph() only
            raise ConfigError(key, raw, "memcached.sess_prefix cannot contain whitespace or control characters")
    return raw


def _v_memc_hash(key: str, raw: str, warn: Warn | None) -> Any:
    # php_memcached.c OnUpdateConsistentHash: exactly one of two words
    if c_str(raw) not in ("ketama", "ketama_weighted"):
        raise ConfigError(key, raw, "memcached.sess_consistent_hash_type must be ketama or ketama_weighted")
    return c_str(raw)


def _v_memc_deprecated(key: str, raw: str, warn: Warn | None) -> Any:
    # php_memcached.c OnUpdateDeprecatedLockValue: always refused, with E_DEPRECATED unless empty
    message = ""
    if raw and c_str(raw) != "not set":
        message = ("memcached.sess_lock_wait and memcached.sess_lock_max_wait are deprecated. Please update "
                   "your configuration to use memcached.sess_lock_wait_min, memcached.sess_lock_wait_max and "
                   "memcached.sess_lock_retries")
    exc = ConfigError(key, raw, message)
    exc.level = "Deprecated"
    raise exc


_VALIDATORS: dict[str, Callable[[str, str, Warn | None], Any]] = {
    "str": _v_str,
    "bool": _v_bool,
    "float": _v_float,
    "int": _v_long,
    "long": _v_long,
    "save_path": _v_save_path,
    "name": _v_name,
    "save_handler": _v_save_handler,
    "serialize_handler": _v_serialize_handler,
    "cookie_lifetime": _v_cookie_lifetime,
    "sid_length": _strict_range(22, 256),
    "sid_bits": _strict_range(4, 6),
    "rfc1867_freq": _v_rfc1867_freq,
    "nonneg_float": _v_nonneg_float,
    "nonneg_int": _v_nonneg_int,
    "concurrency": _one_of("lock", "merge"),
    "merge_conflict": _one_of("overwrite", "error"),
    "long_gez": _v_long_gez,
    "memc_prefix": _v_memc_prefix,
    "memc_hash": _v_memc_hash,
    "memc_deprecated": _v_memc_deprecated,
    "memory_limit": _v_memory_limit,
}

_SETTING_VALIDATOR = {name: _VALIDATORS[s.check or s.kind] for name, s in SETTINGS.items()}
_DEFAULT_RAW: dict[str, str] = {name: s.default for name, s in SETTINGS.items()}


class SessionConfig:
    """The ``session.*`` settings of one request, typed, with PHP's raw strings kept.

    Defaults live on the class; an instance holds only its raw-string dict and the
    typed values that differ, so creating and copying one costs a few microseconds.
    """

    save_handler: str
    save_path: str
    name: str
    auto_start: bool
    gc_probability: int
    gc_divisor: int
    gc_maxlifetime: int
    serialize_handler: str
    cookie_lifetime: int
    cookie_path: str
    cookie_domain: str
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: str
    use_cookies: bool
    use_only_cookies: bool
    use_strict_mode: bool
    referer_check: str
    cache_limiter: str
    cache_expire: int
    use_trans_sid: bool
    sid_length: int
    sid_bits_per_character: int
    lazy_write: bool
    trans_sid_tags: str
    trans_sid_hosts: str
    upload_progress_enabled: bool
    upload_progress_cleanup: bool
    upload_progress_prefix: str
    upload_progress_name: str
    upload_progress_freq: str
    upload_progress_min_freq: float
    lock_timeout: float
    lock_max_waiters: int
    lock_wait_log_ms: int
    lazy_start: bool
    concurrency: str
    merge_conflict: str
    memcached_sess_locking: bool
    memcached_sess_lock_wait_min: int
    memcached_sess_lock_wait_max: int
    memcached_sess_lock_retries: int
    memcached_sess_lock_expire: int
    memcached_sess_binary_protocol: bool
    memcached_sess_consistent_hash: bool
    memcached_sess_consistent_hash_type: str
    memcached_sess_number_of_replicas: int
    memcached_sess_randomize_replica_read: bool
    memcached_sess_remove_failed_servers: bool
    memcached_sess_server_failure_limit: int
    memcached_sess_connect_timeout: int
    memcached_sess_sasl_username: str
    memcached_sess_sasl_password: str
    memcached_sess_persistent: bool
    memcached_sess_prefix: str
    memcached_sess_lock_wait: str
    memcached_sess_lock_max_wait: str
    php_arrays: bool
    memory_limit: int

    _raw: dict[str, str]
    #: PHP's core ``serialize_precision`` (not a ``session.*`` setting): the significant
    #: digits of floats in session data; -1 is the shortest form that reads back the same
    serialize_precision: int = -1

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, warn: Warn | None = None) -> None:
        """Start from PHP 8.2's compiled defaults, then apply ``overrides``.

        ``overrides`` maps ini names (with or without ``session.``) to values, applied
        at php.ini level (PERDIR settings allowed).

        :param warn: receives PHP's warnings for accepted-but-odd values (None: dropped).
        :raises ConfigError: an unknown name, or a value PHP refuses.
        """
        self._raw = _DEFAULT_RAW.copy()
        if overrides:
            for key, value in overrides.items():
                if self.canonical(key) is None:
                    raise ConfigError(key, value, f'Unknown session setting "{key}"')
                self.set(key, value, startup=True, warn=warn)

    @staticmethod
    def canonical(name: str) -> str | None:
        """``"session.gc_maxlifetime"`` or ``"gc_maxlifetime"`` -> ``"gc_maxlifetime"``;
        an extension's setting by its full name (``"memcached.sess_locking"``), a core one by
        its name (``"memory_limit"``, which has no ``session.`` form); None if unknown."""
        if name.startswith("session."):
            s = SETTINGS.get(name[8:])
            return s.name if s is not None and s.ext == "session" and not s.core else None
        return name if name in SETTINGS else None

    def get(self, name: str) -> str | None:
        """The raw string ``ini_get(NAME)`` returns (``session.NAME``, or an extension's
        setting); None for an unknown setting."""
        key = self.canonical(name)
        return None if key is None else self._raw[key]

    def set(
        self,
        name: str,
        value: Any,
        *,
        startup: bool = False,
        warn: Warn | None = None,
    ) -> str:
        """Set one setting as ``ini_set()`` would; return the previous raw string.

        ``value`` is converted with :func:`phpsess.core.zend.strval` first.  Whether a session is active
        or output was sent is the caller's business (``php.py``), as are the function
        prefixes of the messages.

        :param startup: php.ini level (PERDIR settings allowed).
        :param warn: receives PHP's non-fatal warning texts (value accepted anyway);
            when None they are dropped (the I/O layers pass one that logs or warns).
        :raises ConfigError: the value is refused and the setting keeps its old value;
            ``str(exc)`` is PHP's warning, or ``""`` when PHP refuses silently.
        """
        key = self.canonical(name)
        if key is None:
            raise ConfigError(name, value, "")
        s = SETTINGS[key]
        if s.mode == "PERDIR" and not startup:
            raise ConfigError(name, value, "")
        raw = strval(value)
        parsed = _SETTING_VALIDATOR[key](key, raw, warn)
        old = self._raw[key]
        self._raw[key] = raw
        if parsed is not _KEEP:
            self.__dict__[s.attr] = parsed
        return old

    def use_user_handler(self) -> None:
        """``session_set_save_handler()``: ``ini_get("session.save_handler")`` is ``user``
        from now on; the typed :attr:`save_handler` keeps the module a user handler
        extending PHP's SessionHandler wraps."""
        self._raw["save_handler"] = "user"

    def set_serialize_precision(self, value: Any) -> str:
        """``ini_set("serialize_precision", value)``: return the previous value.

        :raises ConfigError: below -1 (PHP refuses it silently).
        """
        raw = strval(value)
        precision = parse_long(raw)
        if precision < -1:
            raise ConfigError("serialize_precision", value, "")
        old = str(self.serialize_precision)
        self.__dict__["serialize_precision"] = precision
        return old

    def set_at_startup(self, name: str, value: Any, *, warn: Warn | None = None) -> None:
        """Apply one php.ini entry as PHP's startup does: nothing is refused loudly.

        An unknown ``save_handler`` or ``serialize_handler`` is kept as it is (``ini_get()``
        returns it); the session is then unusable and ``session_start()`` says so
        (:attr:`unusable`).  Any other refused value leaves the setting at its default
        and PHP's startup warning (``PHP Startup: ...``) goes to ``warn``; ``save_handler =
        user`` is refused that way too.
        """
        key = self.canonical(name)
        if key is None:
            raise ConfigError(name, value, f'Unknown session setting "{name}"')
        try:
            self.set(key, value, startup=True, warn=warn)
        except ConfigError as exc:
            raw = strval(value)
            known = SAVE_HANDLERS if key == "save_handler" else SERIALIZE_HANDLERS
            if key in ("save_handler", "serialize_handler") and c_str(raw).lower() not in (*known, "user"):
                self._raw[key] = raw
                self.__dict__[SETTINGS[key].attr] = c_str(raw)
                return
            if str(exc):
                _warn(warn, f"PHP Startup: {exc}")

    @property
    def unusable(self) -> str | None:
        """PHP's warning when php.ini named a save or serialize handler that does not
        exist (the session is then disabled), else None."""
        if self.save_handler not in SAVE_HANDLERS:
            return f'Cannot find session save handler "{self.save_handler}" - session startup failed'
        if self.serialize_handler not in SERIALIZE_HANDLERS:
            return (
                f'Cannot find session serialization handler "{self.serialize_handler}" - '
                "session startup failed"
            )
        return None

    def copy(self) -> SessionConfig:
        """An independent copy (each request gets one, so ini_set never leaks)."""
        new = object.__new__(SessionConfig)
        d = self.__dict__.copy()
        d["_raw"] = self._raw.copy()
        new.__dict__ = d
        return new

    __copy__ = copy

    def as_ini(self) -> dict[str, str]:
        """All settings as ``{ini name: raw}`` (``session.NAME``, ``memcached.sess_...``,
        ``memory_limit``), in PHP's order."""
        return {SETTINGS[k].ini_name: v for k, v in self._raw.items()}

    def changed(self) -> dict[str, str]:
        """The raw settings that differ from PHP's defaults."""
        return {k: v for k, v in self._raw.items() if v != SETTINGS[k].default}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionConfig):
            return NotImplemented
        return self._raw == other._raw and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SessionConfig({self.changed()!r})"


for _s in SETTINGS.values():
    try:
        setattr(SessionConfig, _s.attr, _SETTING_VALIDATOR[_s.name](_s.name, _s.default, None))
    except ConfigError:  # memcached.sess_lock_wait: refuses every value, its default too
        setattr(SessionConfig, _s.attr, _s.default)
del _s


