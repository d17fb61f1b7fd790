"""Set-Cookie and cache limiter headers, byte for byte as PHP 8.2 sent them (values recorded
from php-cgi; tests/oracle/test_headers_oracle.py re-checks them live)."""

from __future__ import annotations

from typing import Any

import pytest

from phpsess.core.config import SessionConfig
from phpsess.core.http import (
    COOKIE_NAME_FORBIDDEN,
    NOCACHE_EXPIRES,
    SESSION_NAME_WARNING,
    CookieNameError,
    cache_limiter_headers,
    has_forbidden_cookie_name_chars,
    http_date,
    php_rawurlencode,
    php_urlencode,
    session_cookie,
    setcookie_header,
    setcookie_options,
)

NOW = 1795295091  # Sat, 21 Nov 2026 21:04:51 GMT


@pytest.mark.parametrize(("ts", "text"), [
    (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
    (1, "Thu, 01 Jan 1970 00:00:01 GMT"),
    (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
    (NOW, "Sat, 21 Nov 2026 21:04:51 GMT"),
    (NOW + 0.999, "Sat, 21 Nov 2026 21:04:51 GMT"),
    (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
    (2147483648, "Tue, 19 Jan 2038 03:14:08 GMT"),
    (253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    (1795295095 + 1000000000000, "Sun, 18 Aug 33715 22:51:35 GMT"),
    (1795295095 + 9223372034707292159, "Fri, 07 Oct 292277026585 09:20:54 GMT"),
    (-62135596800 + 86400 * 365 * 4, "Fri, 31 Dec 0004 00:00:00 GMT"),
    (-62135596800 - 86400 * 365 * 4, "Thu, 02 Jan -0003 00:00:00 GMT"),
])
def test_http_date(ts: float, text: str) -> None:
    assert http_date(ts) == text


@pytest.mark.parametrize(("raw", "url", "rawurl"), [
    ("abc-_.~", "abc-_.%7E", "abc-_.~"),
    ("a b+c", "a+b%2Bc", "a%20b%2Bc"),
    ("a,b-c", "a%2Cb-c", "a%2Cb-c"),
    ("\u00e9/", "%C3%A9%2F", "%C3%A9%2F"),
    (b"\x00\xff", "%00%FF", "%00%FF"),
    ("\udcff", "%FF", "%FF"),
])
def test_urlencode(raw: Any, url: str, rawurl: str) -> None:
    assert php_urlencode(raw) == url
    assert php_rawurlencode(raw) == rawurl


# -- session cookie ----------------------------------------------------------------------------

@pytest.mark.parametrize(("ini", "sid", "now", "value"), [
    ({}, "25bo90frihi1gkb1gvm9o4jn0a", 0, "PHPSESSID=25bo90frihi1gkb1gvm9o4jn0a; path=/"),
    ({"cookie_lifetime": "3600", "cookie_path": "/app", "cookie_domain": "example.com",
      "cookie_secure": "1", "cookie_httponly": "1", "cookie_samesite": "Lax"},
     "890678b2bc74b087deadfa782a632f2c", NOW,
     "PHPSESSID=890678b2bc74b087deadfa782a632f2c; expires=Sat, 21 Nov 2026 22:04:51 GMT; "
     "Max-Age=3600; path=/app; domain=example.com; secure; HttpOnly; SameSite=Lax"),
    ({"cookie_path": "", "cookie_samesite": "None"}, "a,b-c", NOW, "PHPSESSID=a%2Cb-c; SameSite=None"),
    ({"cookie_path": "/x y", "cookie_domain": ".example.org"}, "ABC", NOW,
     "PHPSESSID=ABC; path=/x y; domain=.example.org"),
    ({"cookie_lifetime": "1000000000000"}, "x", 1795295095,
     "PHPSESSID=x; expires=Sun, 18 Aug 33715 22:51:35 GMT; Max-Age=1000000000000; path=/"),
    ({"cookie_lifetime": "9223372034707292159"}, "x", 1795295095,
     "PHPSESSID=x; expires=Fri, 07 Oct 292277026585 09:20:54 GMT; Max-Age=9223372034707292159; path=/"),
    # after 2038 the same lifetime wraps the time_t: PHP then sends neither expires nor Max-Age
    ({"cookie_lifetime": "9223372034707292159"}, "x", 2147483649, "PHPSESSID=x; path=/"),
    ({"cookie_lifetime": "9223372036854775807"}, "x", NOW, "PHPSESSID=x; path=/"),
    ({"name": "MY-SESSION_id", "cookie_httponly": "yes"}, "x", NOW, "MY-SESSION_id=x; path=/; HttpOnly"),
    ({"cookie_lifetime": "60"}, "x", NOW + 0.9,
     "PHPSESSID=x; expires=Sat, 21 Nov 2026 21:05:51 GMT; Max-Age=60; path=/"),
])
def test_session_cookie(ini: dict[str, str], sid: str, now: float, value: str) -> None:
    assert session_cookie(SessionConfig(ini), sid, now=now) == ("Set-Cookie", value)


def test_session_cookie_none_without_use_cookies() -> None:
    assert session_cookie(SessionConfig({"use_cookies": "0"}), "x", now=0) is None


@pytest.mark.parametrize("name", ["a=b", "a,b", "a;b", "a.b", "a[b", "a b", "a\tb", "a\rb", "a\nb",
                                  "a\x0bb", "a\x0cb"])
def test_session_cookie_forbidden_name_raises_php_warning(name: str) -> None:
    assert has_forbidden_cookie_name_chars(name)
    with pytest.raises(CookieNameError) as info:
        session_cookie(SessionConfig({"name": name}), "x", now=0)
    assert str(info.value) == SESSION_NAME_WARNING
    assert str(info.value) == "session.name cannot contain any of the following '=,;.[ \\t\\r\\n\\013\\014'"
    assert info.value.name == name


def test_forbidden_name_chars_are_phps() -> None:
    assert COOKIE_NAME_FORBIDDEN == "=,;.[ \t\r\n\x0b\x0c"
    assert not has_forbidden_cookie_name_chars("PHPSESSID-x_y]")
    assert not has_forbidden_cookie_name_chars("ok\0.")  # C string: stops at NUL


# -- setcookie() -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "value"), [
    ({"name": "a", "value": "x y+z~\u00e9/", "expires": NOW + 10, "path": "/p", "domain": "d",
      "secure": True, "httponly": True},
     "a=x%20y%2Bz~%C3%A9%2F; expires=Sat, 21 Nov 2026 21:05:01 GMT; Max-Age=10; path=/p; domain=d; secure; HttpOnly"),
    ({"name": "b", "value": "x+y", "expires": 1, "raw": True},
     "b=x+y; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0"),
    ({"name": "c", "value": ""}, "c=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0"),
    ({"name": "c", "value": "", "expires": NOW + 100, "path": "/x"},
     "c=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/x"),
    ({"name": "e", "value": "0"}, "e=0"),
    ({"name": "f", "value": "v", "expires": -5}, "f=v"),
    ({"name": "g", "value": "v", "expires": NOW - 50},
     "g=v; expires=Sat, 21 Nov 2026 21:04:01 GMT; Max-Age=0"),
    ({"name": "h", "value": "b", "expires": 253402300799},
     "h=b; expires=Fri, 31 Dec 9999 23:59:59 GMT; Max-Age=251607005708"),
    ({"name": "a.b[c", "value": "v"}, "a.b[c=v"),
    ({"name": "u", "value": "a=b&c"}, "u=a%3Db%26c"),
    ({"name": "r", "value": 'a%20b=c"d', "raw": True}, 'r=a%20b=c"d'),
    ({"name": "s", "value": "v", "samesite": "Strict"}, "s=v; SameSite=Strict"),
])
def test_setcookie_header(kw: dict[str, Any], value: str) -> None:
    assert setcookie_header(now=NOW, **kw) == value


@pytest.mark.parametrize(("kw", "message"), [
    ({"name": "", "value": "x"}, "setcookie(): Argument #1 ($name) cannot be empty"),
    ({"name": "a=b", "value": "x"},
     'setcookie(): Argument #1 ($name) cannot contain "=", ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'),
    ({"name": "a\x0b", "value": "x", "raw": True},
     'setrawcookie(): Argument #1 ($name) cannot contain "=", ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'),
    ({"name": "r", "value": "a b", "raw": True},
     'setrawcookie(): Argument #2 ($value) cannot contain ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'),
    ({"name": "p", "value": "v", "path": "/a;b"},
     'setcookie(): "path" option cannot contain ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'),
    ({"name": "p", "value": "v", "domain": "d,x"},
     'setcookie(): "domain" option cannot contain ",", ";", " ", "\\t", "\\r", "\\n", "\\013", or "\\014"'),
    ({"name": "p", "value": "v", "expires": 253402300800},
     'setcookie(): "expires" option cannot have a year greater than 9999'),
])
def test_setcookie_header_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        setcookie_header(now=NOW, **kw)
    assert str(info.value) == message


@pytest.mark.parametrize(("options", "value"), [
    ({"expires": 5, "samesite": "Strict", "path": "/"},
     "d=v; expires=Thu, 01 Jan 1970 00:00:05 GMT; Max-Age=0; path=/; SameSite=Strict"),
    ({"EXPIRES": "12abc", "Secure": "0", "httponly": "yes", "samesite": "None", "domain": ""},
     "d=v; expires=Thu, 01 Jan 1970 00:00:12 GMT; Max-Age=0; HttpOnly; SameSite=None"),
    ({"expires": 1.9, "secure": 1, "path": 12},
     "d=v; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=12; secure"),
    ({"expires": "1e3", "httponly": []}, "d=v; expires=Thu, 01 Jan 1970 00:16:40 GMT; Max-Age=0"),
    ({}, "d=v"),
])
def test_setcookie_options(options: dict[Any, Any], value: str) -> None:
    assert setcookie_options("d", "v", options, now=NOW) == value


@pytest.mark.parametrize(("options", "message"), [
    ({"bogus": 1}, 'setcookie(): option "bogus" is invalid'),
    ({5: 1}, "setcookie(): option array cannot have numeric keys"),
])
def test_setcookie_options_errors(options: dict[Any, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        setcookie_options("p", "v", options, now=NOW)
    assert str(info.value) == message


# -- cache limiter ------------------------------------------------------------------------------

MTIME = 1600000000  # Sun, 13 Sep 2020 12:26:40 GMT


@pytest.mark.parametrize(("limiter", "expire", "headers"), [
    ("nocache", "180", [("Expires", NOCACHE_EXPIRES), ("Cache-Control", "no-store, no-cache, must-revalidate"),
                        ("Pragma", "no-cache")]),
    ("NoCache", "180", [("Expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
                        ("Cache-Control", "no-store, no-cache, must-revalidate"), ("Pragma", "no-cache")]),
    ("private", "180", [("Expires", NOCACHE_EXPIRES), ("Cache-Control", "private, max-age=10800"),
                        ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    ("private_no_expire", "1", [("Cache-Control", "private, max-age=60"),
                                ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    ("public", "180", [("Expires", "Sun, 22 Nov 2026 00:04:51 GMT"), ("Cache-Control", "public, max-age=10800"),
                       ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    ("PUBLIC", "-1", [("Expires", "Sat, 21 Nov 2026 21:03:51 GMT"), ("Cache-Control", "public, max-age=-60"),
                      ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    ("public", "1000000000000", [("Expires", "Mon, 15 Mar 1903351 07:44:51 GMT"),
                                 ("Cache-Control", "public, max-age=60000000000000"),
                                 ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    # cache_expire * 60 and now + that wrap in C; gmtime() then fails and Expires is empty
    ("public", "153722867280912930", [("Expires", ""), ("Cache-Control", "public, max-age=9223372036854775800"),
                                      ("Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")]),
    ("bogus", "180", []),
    ("", "180", []),
    ("\0nocache", "180", []),
])
def test_cache_limiter_headers(limiter: str, expire: str, headers: list[tuple[str, str]]) -> None:
    cfg = SessionConfig({"cache_limiter": limiter, "cache_expire": expire})
    assert cache_limiter_headers(cfg, now=NOW, script_mtime=MTIME) == headers


def test_cache_limiter_last_modified_uses_the_script_mtime() -> None:
    cfg = SessionConfig({"cache_limiter": "private"})
    assert cache_limiter_headers(cfg, now=NOW, script_mtime=-2147483648)[-1] == (
        "Last-Modified", "Fri, 13 Dec 1901 20:45:52 GMT")
    assert cache_limiter_headers(cfg, now=NOW, script_mtime=MTIME + 0.7)[-1] == (
        "Last-Modified", "Sun, 13 Sep 2020 12:26:40 GMT")
    assert [n for n, _ in cache_limiter_headers(cfg, now=NOW, script_mtime=None)] == ["Expires", "Cache-Control"]
