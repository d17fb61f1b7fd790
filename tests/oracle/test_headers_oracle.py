"""phpsess.core.http against real PHP 8.2: Set-Cookie of sessions and setcookie(), cache
limiter headers, dates and URL encoding, byte for byte. Runs ``php-cgi -n`` and ``php -n``.

Each page prints PHP's ``time()`` after sending its headers; our functions get that as
``now`` (or one second less, when PHP's clock ticked between the header and ``time()``).
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from phpsess.core.config import SessionConfig
from phpsess.core.http import (
    CookieNameError,
    cache_limiter_headers,
    http_date,
    php_rawurlencode,
    php_urlencode,
    session_cookie,
    setcookie_header,
    setcookie_options,
)

try:
    from tests.phptools import require, run_php
except ImportError:  # tests/ itself on sys.path
    from phptools import require, run_php  # type: ignore[no-redef]

__all__: list[str] = []


def php_cgi(
    script: Path, code: str | None, ini: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[list[tuple[str, str]], bytes]:
    """Run ``code`` (None: the script as it is) as ``script`` under ``php-cgi -n``;
    return (headers, body)."""
    if code is not None:
        script.write_text(code)
    environ = {
        "REDIRECT_STATUS": "200",
        "SCRIPT_FILENAME": str(script),
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    environ.update(env or {})
    args = [require("php-cgi"), "-n", "-d", "display_errors=1", "-d", "html_errors=0",
            "-d", f"session.save_path={script.parent}"]
    for k, v in (ini or {}).items():
        args += ["-d", f"{k}={v}"]
    proc = subprocess.run(args, capture_output=True, env=environ, timeout=60)
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    headers = []
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        name, _, value = line.partition(":")
        headers.append((name, value.lstrip(" ")))
    return headers, body


def parallel(fn: Callable[..., Any], items: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(fn, items))


def same_at_php_time(php_value: Any, ours_at: Callable[[int], Any], php_time: int) -> bool:
    """True when ours equals PHP's for PHP's time() or the second before it."""
    return php_value in (ours_at(php_time), ours_at(php_time - 1))


# -- session cookie -------------------------------------------------------------------------

SESSION_COOKIE_CASES: list[tuple[dict[str, str], str]] = [
    ({}, "abcdef0123456789abcdef0123456789"),
    ({"session.cookie_lifetime": "3600", "session.cookie_path": "/app",
      "session.cookie_domain": "example.com", "session.cookie_secure": "1",
      "session.cookie_httponly": "1", "session.cookie_samesite": "Lax"}, "9380fmclo7vv8ndnudntjirnml"),
    ({"session.cookie_path": "", "session.cookie_samesite": "None"}, "a,b-c,,--"),
    ({"session.cookie_path": "/x y", "session.cookie_domain": ".example.org",
      "session.cookie_samesite": "anything goes"}, "ABCxyz019"),
    ({"session.cookie_lifetime": "1000000000000"}, "x"),
    ({"session.cookie_lifetime": "9223372034707292159"}, "x"),
    ({"session.cookie_lifetime": "9223372036854775807"}, "x"),  # too large: not applied
    ({"session.cookie_lifetime": "1k", "session.cookie_secure": "on"}, "x"),
    ({"session.name": "MY-SESSION_id", "session.cookie_httponly": "yes"}, "x"),
    ({"session.name": "n\u00e9"}, "x"),
    ({"session.use_cookies": "0"}, "x"),
]


@pytest.fixture(scope="module")
def session_cookie_results(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    base = tmp_path_factory.mktemp("sc")

    def run(i_case: tuple[int, tuple[dict[str, str], str]]) -> Any:
        i, (ini, sid) = i_case
        d = base / str(i)
        d.mkdir()
        # ini_set() rather than -d: the ini parser would turn -d x=None into ""
        code = (f"<?php foreach (json_decode({json.dumps(json.dumps(ini))}, true) as $k => $v) "
                f"ini_set($k, $v); session_id({json.dumps(sid)}); session_start(); echo time();")
        return php_cgi(d / "page.php", code, {"session.cache_limiter": ""})

    return parallel(run, list(enumerate(SESSION_COOKIE_CASES)))


@pytest.mark.parametrize("i", range(len(SESSION_COOKIE_CASES)))
def test_session_cookie_matches_php(i: int, session_cookie_results: list[Any]) -> None:
    ini, sid = SESSION_COOKIE_CASES[i]
    headers, body = session_cookie_results[i]
    php = [h for h in headers if h[0] == "Set-Cookie"]
    cfg = SessionConfig(ini)

    def ours(now: int) -> list[tuple[str, str]]:
        c = session_cookie(cfg, sid, now=now)
        return [] if c is None else [c]

    assert same_at_php_time(php, ours, int(body))


def test_session_cookie_forbidden_name_warns_like_php(tmp_path: Path) -> None:
    for name in ("a.b", "a[b", "a b", "a=b", "x\ty"):
        code = ("<?php set_error_handler(function ($n, $s) { echo $s, '|'; return true; });"
                f"ob_start(); ini_set('session.name', {json.dumps(name)}); session_start();"
                "echo session_status();")
        headers, body = php_cgi(tmp_path / "p.php", code)
        assert [h for h in headers if h[0] == "Set-Cookie"] == []
        with pytest.raises(CookieNameError) as info:
            session_cookie(SessionConfig({"name": name}), "x", now=0)
        # the warning, and the session started anyway
        assert body.decode() == "session_start(): " + str(info.value) + "|2"


# -- setcookie() ----------------------------------------------------------------------------

#: (arguments as PHP literals, the same for setcookie_header/setcookie_options)
SETCOOKIE_CASES: list[tuple[str, dict[str, Any]]] = [
    ('"a", "x y+z~\u00e9/"', {"name": "a", "value": "x y+z~\u00e9/"}),
    ('"a", "v", time() + 10, "/p", "d", true, true', {"name": "a", "value": "v", "expires": "+10",
                                                       "path": "/p", "domain": "d", "secure": True,
                                                       "httponly": True}),
    ('"b", "x+y", 1', {"name": "b", "value": "x+y", "expires": 1, "raw": True}),
    ('"c", ""', {"name": "c", "value": ""}),
    ('"c", "", time() + 100, "/x", "", true', {"name": "c", "value": "", "expires": "+100",
                                              "path": "/x", "secure": True}),
    ('"e", "0"', {"name": "e", "value": "0"}),
    ('"f", "v", -5', {"name": "f", "value": "v", "expires": -5}),
    ('"g", "v", time() - 50', {"name": "g", "value": "v", "expires": "-50"}),
    ('"h", "v", 253402300799', {"name": "h", "value": "v", "expires": 253402300799}),
    ('"a.b[c", "v"', {"name": "a.b[c", "value": "v"}),
    ('"u", "a=b&c"', {"name": "u", "value": "a=b&c"}),
    ('"r", "a%20b=c\\"d"', {"name": "r", "value": 'a%20b=c"d', "raw": True}),
    ('"d", "v", ["expires" => 5, "samesite" => "Strict", "path" => "/"]',
     {"name": "d", "value": "v", "options": {"expires": 5, "samesite": "Strict", "path": "/"}}),
    ('"q", "v", ["EXPIRES" => "12abc", "Secure" => "0", "httponly" => "yes", "samesite" => "None", "domain" => ""]',
     {"name": "q", "value": "v", "options": {"EXPIRES": "12abc", "Secure": "0", "httponly": "yes",
                                             "samesite": "None", "domain": ""}}),
    ('"q2", "v", ["expires" => 1.9, "secure" => 1, "path" => 12]',
     {"name": "q2", "value": "v", "options": {"expires": 1.9, "secure": 1, "path": 12}}),
    ('"q3", "", ["expires" => time() + 5, "path" => "/x"]',
     {"name": "q3", "value": "", "options": {"expires": "+5", "path": "/x"}}),
    # errors
    ('"", "x"', {"name": "", "value": "x"}),
    ('"a=b", "x"', {"name": "a=b", "value": "x"}),
    ('"a\\x0b", "x"', {"name": "a\x0b", "value": "x"}),
    ('"r", "a b"', {"name": "r", "value": "a b", "raw": True}),
    ('"p", "v", 0, "/a;b"', {"name": "p", "value": "v", "path": "/a;b"}),
    ('"p", "v", 0, "/", "d,x"', {"name": "p", "value": "v", "path": "/", "domain": "d,x"}),
    ('"p", "v", 253402300800', {"name": "p", "value": "v", "expires": 253402300800}),
    ('"p", "v", ["bogus" => 1]', {"name": "p", "value": "v", "options": {"bogus": 1}}),
    ('"p", "v", [5 => 1]', {"name": "p", "value": "v", "options": {5: 1}}),
]


@pytest.fixture(scope="module")
def setcookie_results(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    base = tmp_path_factory.mktemp("setcookie")

    def run(i_case: tuple[int, tuple[str, dict[str, Any]]]) -> Any:
        i, (php_args, kw) = i_case
        func = "setrawcookie" if kw.get("raw") else "setcookie"
        code = (f"<?php try {{ {func}({php_args}); }} catch (Throwable $e) "
                "{ echo get_class($e), ': ', $e->getMessage(), '|'; } echo time();")
        d = base / str(i)
        d.mkdir()
        return php_cgi(d / "page.php", code)

    return parallel(run, list(enumerate(SETCOOKIE_CASES)))


@pytest.mark.parametrize("i", range(len(SETCOOKIE_CASES)))
def test_setcookie_matches_php(i: int, setcookie_results: list[Any]) -> None:
    _, kw = SETCOOKIE_CASES[i]
    headers, body = setcookie_results[i]
    error, _, time_text = body.decode().rpartition("|")
    php_time = int(time_text)
    php = [v for n, v in headers if n == "Set-Cookie"]

    def ours(now: int) -> Any:
        args = dict(kw)
        for key in ("expires",):
            if isinstance(args.get(key), str):
                args[key] = now + int(args[key])
        opts = args.pop("options", None)
        if isinstance(opts, dict) and isinstance(opts.get("expires"), str) and opts["expires"][0] in "+-":
            opts = dict(opts, expires=now + int(opts["expires"]))
        try:
            if opts is not None:
                return [setcookie_options(args.pop("name"), args.pop("value"), opts, now=now, **args)], ""
            return [setcookie_header(now=now, **args)], ""
        except ValueError as exc:
            return [], f"ValueError: {exc}"

    assert same_at_php_time((php, error), ours, php_time)


# -- cache limiter ---------------------------------------------------------------------------

LIMITER_CASES: list[dict[str, str]] = [
    {"session.cache_limiter": name, "session.cache_expire": expire}
    for name in ("nocache", "NoCache", "private", "private_no_expire", "public", "PUBLIC", "bogus", "")
    for expire in ("180", "0", "-1", "1k")
] + [
    {"session.cache_limiter": "public", "session.cache_expire": "153722867280912930"},
    {"session.cache_limiter": "public", "session.cache_expire": "1000000000000"},
]
MTIMES = [1_600_000_000, -2147483648, 0]


@pytest.fixture(scope="module")
def limiter_results(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    base = tmp_path_factory.mktemp("limiter")
    cases = [(i, ini, mtime) for i, ini in enumerate(LIMITER_CASES) for mtime in MTIMES[:1]]
    cases += [(100 + j, {"session.cache_limiter": "private"}, m) for j, m in enumerate(MTIMES)]

    def run(case: tuple[int, dict[str, str], int]) -> Any:
        i, ini, mtime = case
        d = base / str(i)
        d.mkdir()
        script = d / "page.php"
        script.write_text("<?php session_start(); echo time();")
        os.utime(script, (mtime, mtime))
        headers, body = php_cgi(script, None, ini)
        return ini, mtime, headers, body

    return parallel(run, cases)


def test_cache_limiter_headers_match_php(limiter_results: list[Any]) -> None:
    for ini, mtime, headers, body in limiter_results:
        php = [(n, v) for n, v in headers if n in ("Expires", "Cache-Control", "Pragma", "Last-Modified")]
        cfg = SessionConfig(ini, warn=lambda m: None)
        assert same_at_php_time(
            php, lambda now: cache_limiter_headers(cfg, now=now, script_mtime=mtime), int(body)
        ), (ini, mtime, php)


def test_no_last_modified_when_the_script_is_unknown() -> None:
    cfg = SessionConfig({"cache_limiter": "private"})
    assert [n for n, _ in cache_limiter_headers(cfg, now=0, script_mtime=None)] == ["Expires", "Cache-Control"]


# -- building blocks ---------------------------------------------------------------------------

TIMESTAMPS = [0, 1, -1, 86399, 86400, 951782400, 1795295091, 2147483647, 2147483648, 4102444800,
              253402300799, 253402300800, 1000000000000 + 1795295091, 32503680000, -62135596800,
              -62135596800 - 86400 * 365 * 4, -100000000000, 9223372036854775807 - 2147483648,
              1e9 + 0.999, -0.5, 11644473600, 978307200, 1234567890]


def test_http_date_matches_gmdate() -> None:
    code = r"""<?php foreach (json_decode(file_get_contents("php://stdin")) as $t)
        echo gmdate("D, d M Y H:i:s \G\M\T", is_int($t) ? $t : (int)floor($t)), "\n";"""
    proc = run_php(code, stdin=json.dumps(TIMESTAMPS).encode())
    assert proc.stdout.decode().splitlines() == [http_date(t) for t in TIMESTAMPS]


def test_urlencode_and_rawurlencode_match_php() -> None:
    data = bytes(range(256)) + "h\u00e9 \u20ac~*'()!".encode()
    proc = run_php(r"""<?php $s = file_get_contents("php://stdin");
        echo urlencode($s), "\n", rawurlencode($s), "\n";""", stdin=data)
    url, raw = proc.stdout.decode().splitlines()
    assert php_urlencode(data) == url
    assert php_rawurlencode(data) == raw
    assert php_urlencode(data.decode("utf-8", "surrogateescape")) == url
