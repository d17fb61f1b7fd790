"""The HTTP headers PHP's session and cookie functions produce, byte for byte. No I/O.

The clock is an argument (``now``, Unix seconds); nothing here reads it.  Header values
are returned without the ``Name: `` prefix, as ``(name, value)`` pairs where a name is
involved, so the request layer decides where they go.

* :func:`session_cookie` -- the ``Set-Cookie`` of ``session_start()``/``session_regenerate_id()``
  (session.c ``php_session_send_cookie``);
* :func:`setcookie_header`, :func:`setcookie_options` -- ``setcookie()``/``setrawcookie()``
  (ext/standard/head.c ``php_setcookie``);
* :func:`cache_limiter_headers` -- ``session.cache_limiter`` (session.c ``CACHE_LIMITER_FUNC``);
* :func:`http_date`, :func:`php_urlencode`, :func:`php_rawurlencode` -- their building blocks.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Final, Mapping

from .zend import c_str, intval, strval, to_signed64, truthy

if TYPE_CHECKING:
    from .config import SessionConfig

__all__ = [
    "reason_phrase",
    "COOKIE_NAME_FORBIDDEN",
    "SESSION_NAME_WARNING",
    "CookieNameError",
    "has_forbidden_cookie_name_chars",
    "http_date",
    "php_urlencode",
    "php_rawurlencode",
    "session_cookie",
    "setcookie_header",
    "setcookie_options",
    "cache_limiter_headers",
    "CACHE_LIMITERS",
    "NOCACHE_EXPIRES",
]

#: session.c SESSION_FORBIDDEN_CHARS: a session name containing one of these gets no cookie
COOKIE_NAME_FORBIDDEN: Final = "=,;.[ \t\r\n\013\014"
#: the E_WARNING session_start() gives for such a name (the session still starts)
SESSION_NAME_WARNING: Final = "session.name cannot contain any of the following '=,;.[ \\t\\r\\n\\013\\014'"
#: the fixed past date of the ``nocache`` and ``private`` limiters
NOCACHE_EXPIRES: Final = "Thu, 19 Nov 1981 08:52:00 GMT"
#: the cache limiter names PHP knows (matched case-insensitively)
CACHE_LIMITERS: Final = ("public", "private", "private_no_expire", "nocache")

_DAYS: Final = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_INT_MIN: Final = -(1 << 31)
_INT_MAX: Final = (1 << 31) - 1
#: head.c: setcookie() refuses expiry times from the year 10000 on (64-bit builds)
_SETCOOKIE_MAX_EXPIRES: Final = 253402300800
#: head.c: what name/value/path/domain must not contain (the name also not "=")
_COOKIE_VALUE_FORBIDDEN: Final = ",; \t\r\n\013\014"
_NAME_MESSAGE: Final = (
    'cannot contain "=", ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'
)
_VALUE_MESSAGE: Final = 'cannot contain ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'

_URL_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_RAW_URL_SAFE: Final = _URL_SAFE | {ord("~")}


class CookieNameError(ValueError):
    """The session name contains a character of :data:`COOKIE_NAME_FORBIDDEN`.

    ``str(exc)`` is PHP's warning (:data:`SESSION_NAME_WARNING`); PHP starts the
    session anyway, without a cookie.
    """

    def __init__(self, name: str) -> None:
        super().__init__(SESSION_NAME_WARNING)
        self.name = name


def has_forbidden_cookie_name_chars(name: str) -> bool:
    """True when PHP sends no session cookie for a session named ``name``.

    PHP looks at the name as a C string, so nothing after a NUL byte counts.
    """
    return _FORBIDDEN_NAME_CHAR.search(c_str(name)) is not None


_FORBIDDEN_NAME_CHAR: Final = re.compile("[" + re.escape(COOKIE_NAME_FORBIDDEN) + "]")


def _civil(ts: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month 1-12, day, hour, minute, second, weekday 0=Sunday) of a Unix time, UTC.

    Pure integer arithmetic (H. Hinnant's days-to-civil), so any 64-bit time works,
    where ``datetime`` stops at the year 9999.
    """
    days, secs = divmod(ts, 86400)
    weekday = (days + 4) % 7  # 1970-01-01 was a Thursday
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, secs // 3600, secs // 60 % 60, secs % 60, weekday


def http_date(ts: int | float) -> str:
    """``gmdate("D, d M Y H:i:s \\G\\M\\T", ts)``: ``Sat, 21 Nov 2026 21:44:34 GMT``.

    English names, zero-padded day and time, the year at least 4 digits (``-0003`` before
    the common era, ``33715`` after 9999) as PHP 8.2's ``date()`` writes it.
    """
    y, mo, d, h, mi, s, wd = _civil(math.floor(ts))
    year = f"-{-y:04d}" if y < 0 else f"{y:04d}"
    return f"{_DAYS[wd]}, {d:02d} {_MONTHS[mo - 1]} {year} {h:02d}:{mi:02d}:{s:02d} GMT"


def _limiter_date(ts: int) -> str:
    """session.c ``strcpy_gmt``: like :func:`http_date` but the year is plain ``%d``, and
    empty when the C library's ``gmtime_r`` cannot represent the time."""
    y, mo, d, h, mi, s, wd = _civil(ts)
    if not _INT_MIN <= y - 1900 <= _INT_MAX:
        return ""
    return f"{_DAYS[wd]}, {d:02d} {_MONTHS[mo - 1]} {y} {h:02d}:{mi:02d}:{s:02d} GMT"


_PLAIN: Final = re.compile(r"[A-Za-z0-9_.\-]*\Z")


def _encode(s: str | bytes, safe: frozenset[int], space_plus: bool) -> str:
    if isinstance(s, str) and _PLAIN.match(s):
        return s  # nothing to escape (session ids, mostly): skip the byte loop
    data = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    out = []
    for b in data:
        if b in safe:
            out.append(chr(b))
        elif b == 32 and space_plus:
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def php_urlencode(s: str | bytes) -> str:
    """PHP's ``urlencode()``: space -> ``+``, ``A-Za-z0-9-_.`` kept, other bytes ``%XX``.

    A ``str`` is encoded as UTF-8 (lone surrogates from surrogateescape give back their bytes).
    """
    return _encode(s, _URL_SAFE, True)


def php_rawurlencode(s: str | bytes) -> str:
    """PHP's ``rawurlencode()`` (RFC 3986): ``A-Za-z0-9-_.~`` kept, other bytes (space too) ``%XX``."""
    return _encode(s, _RAW_URL_SAFE, False)


def session_cookie(cfg: SessionConfig, sid: str, *, now: float) -> tuple[str, str] | None:
    """The ``Set-Cookie`` header ``session_start()`` sends for ``sid`` (session.c: php_session_send_cookie()).

    ``PHPSESSID=<urlencode(sid)>[; expires=<date>; Max-Age=<lifetime>][; path=..]
    [; domain=..][; secure][; HttpOnly][; SameSite=..]``, where expires/Max-Age appear
    when ``cookie_lifetime > 0`` and empty path/domain/samesite are left out.  Values are
    inserted verbatim, as PHP does.

    :param now: the current Unix time (PHP uses its whole seconds).
    :returns: ``("Set-Cookie", value)``, or None when ``use_cookies`` is off.
    :raises CookieNameError: the session name contains a forbidden character; PHP then
        warns with ``str(exc)`` and starts the session without a cookie.
    """
    if not cfg.use_cookies:
        return None
    name = c_str(cfg.name)
    if has_forbidden_cookie_name_chars(name):
        raise CookieNameError(cfg.name)
    parts = [name, "=", php_urlencode(sid)]
    lifetime = cfg.cookie_lifetime
    if lifetime > 0:
        # session.c: t = tv_sec + lifetime in a time_t, which wraps past 2**63 - 1
        t = to_signed64(math.floor(now) + lifetime)
        if t > 0:
            parts += ["; expires=", http_date(t), "; Max-Age=", str(lifetime)]
    if cfg.cookie_path:
        parts += ["; path=", cfg.cookie_path]
    if cfg.cookie_domain:
        parts += ["; domain=", cfg.cookie_domain]
    if cfg.cookie_secure:
        parts.append("; secure")
    if cfg.cookie_httponly:
        parts.append("; HttpOnly")
    if cfg.cookie_samesite:
        parts += ["; SameSite=", cfg.cookie_samesite]
    return "Set-Cookie", "".join(parts)


def setcookie_header(
    name: str,
    value: str = "",
    expires: int = 0,
    path: str = "",
    domain: str = "",
    secure: bool = False,
    httponly: bool = False,
    samesite: str = "",
    *,
    now: float,
    raw: bool = False,
) -> str:
    """The ``Set-Cookie`` header value of ``setcookie()`` (``raw=True``: ``setrawcookie()``).

    ``setcookie`` encodes the value with :func:`php_rawurlencode` (space -> ``%20``);
    ``setrawcookie`` takes it as is.  An empty value makes a deletion cookie
    ``name=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0`` (``expires``
    ignored).  ``expires > 0`` adds ``expires=<date>; Max-Age=<expires - now, >= 0>``.

    :param now: the current Unix time, for Max-Age.
    :raises ValueError: with PHP's message, where PHP throws ValueError (empty or bad
        name, bad raw value, path or domain, expiry year after 9999).
    """
    func = "setrawcookie" if raw else "setcookie"
    if name == "":
        raise ValueError(f"{func}(): Argument #1 ($name) cannot be empty")
    if any(c in "=" + _COOKIE_VALUE_FORBIDDEN for c in c_str(name)):
        raise ValueError(f"{func}(): Argument #1 ($name) {_NAME_MESSAGE}")
    if raw and any(c in _COOKIE_VALUE_FORBIDDEN for c in c_str(value)):
        raise ValueError(f"{func}(): Argument #2 ($value) {_VALUE_MESSAGE}")
    if any(c in _COOKIE_VALUE_FORBIDDEN for c in c_str(path)):
        raise ValueError(f'{func}(): "path" option {_VALUE_MESSAGE}')
    if any(c in _COOKIE_VALUE_FORBIDDEN for c in c_str(domain)):
        raise ValueError(f'{func}(): "domain" option {_VALUE_MESSAGE}')
    if expires >= _SETCOOKIE_MAX_EXPIRES:
        raise ValueError(f'{func}(): "expires" option cannot have a year greater than 9999')
    if value == "":
        parts = [name, "=deleted; expires=", http_date(1), "; Max-Age=0"]
    else:
        parts = [name, "=", value if raw else php_rawurlencode(value)]
        if expires > 0:
            max_age = max(0, expires - math.floor(now))
            parts += ["; expires=", http_date(expires), "; Max-Age=", str(max_age)]
    if path:
        parts += ["; path=", path]
    if domain:
        parts += ["; domain=", domain]
    if secure:
        parts.append("; secure")
    if httponly:
        parts.append("; HttpOnly")
    if samesite:
        parts += ["; SameSite=", samesite]
    return "".join(parts)


def setcookie_options(
    name: str, value: str = "", options: Mapping[Any, Any] | None = None, *, now: float, raw: bool = False
) -> str:
    """``setcookie($name, $value, $options)``, the array form of PHP 7.3+.

    Keys (any case): ``expires``, ``path``, ``domain``, ``secure``, ``httponly``,
    ``samesite``; values converted as PHP converts them (``expires`` to int,
    ``secure``/``httponly`` by PHP truthiness, the others to strings).

    :raises ValueError: an integer key, an unknown key, or what :func:`setcookie_header` raises.
    """
    func = "setrawcookie" if raw else "setcookie"
    args: dict[str, Any] = {}
    for key, val in (options or {}).items():
        if isinstance(key, int):
            raise ValueError(f"{func}(): option array cannot have numeric keys")
        low = str(key).lower() if str(key).isascii() else str(key)
        if low == "expires":
            args["expires"] = intval(val)
        elif low in ("path", "domain", "samesite"):
            args[low] = strval(val)
        elif low in ("secure", "httponly"):
            args[low] = truthy(val)
        else:
            raise ValueError(f'{func}(): option "{c_str(str(key))}" is invalid')
    return setcookie_header(name, value, now=now, raw=raw, **args)


def cache_limiter_headers(
    cfg: SessionConfig, *, now: float, script_mtime: float | None
) -> list[tuple[str, str]]:
    """The headers ``session.cache_limiter`` adds at session start (session.c: CACHE_LIMITER_FUNC), in order.

    ``nocache``: Expires (1981), ``Cache-Control: no-store, no-cache, must-revalidate``,
    ``Pragma: no-cache``.  ``private``: Expires (1981), ``Cache-Control: private,
    max-age=<cache_expire*60>``, Last-Modified.  ``private_no_expire``: the same without
    Expires.  ``public``: ``Expires: <now + cache_expire*60>``, ``Cache-Control: public,
    max-age=..``, Last-Modified.  The name is matched case-insensitively; an empty or
    unknown one gives ``[]``.  Each header replaces an earlier one of the same name.

    :param now: the current Unix time (whole seconds are used).
    :param script_mtime: the mtime of the running script (``SCRIPT_FILENAME``); None when
        it is unknown or cannot be stat()ed, and then no Last-Modified is sent.
    """
    limiter = c_str(cfg.cache_limiter)
    if not limiter.isascii():
        return []
    limiter = limiter.lower()
    if limiter not in CACHE_LIMITERS:
        return []
    out: list[tuple[str, str]] = []
    # session.c computes cache_expire * 60 in a zend_long, wrapping like C does
    max_age = to_signed64(cfg.cache_expire * 60)
    if limiter == "nocache":
        return [
            ("Expires", NOCACHE_EXPIRES),
            ("Cache-Control", "no-store, no-cache, must-revalidate"),
            ("Pragma", "no-cache"),
        ]
    if limiter == "public":
        out.append(("Expires", _limiter_date(to_signed64(math.floor(now) + max_age))))
        out.append(("Cache-Control", f"public, max-age={max_age}"))
    else:
        if limiter == "private":
            out.append(("Expires", NOCACHE_EXPIRES))
        out.append(("Cache-Control", f"private, max-age={max_age}"))
    if script_mtime is not None:
        out.append(("Last-Modified", _limiter_date(math.floor(script_mtime))))
    return out


_REASONS: Final = {
    200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase PHP sends for ``status`` (``"OK"`` for 200)."""
    return _REASONS.get(status, "")
