"""phpsess.core.superglobals against real PHP 8.2: ``$_GET``, ``$_COOKIE`` and ``$_POST`` as
``php-cgi -n`` builds them from QUERY_STRING, HTTP_COOKIE and a request body. Runs php-cgi.

PHP reports each superglobal with its key types (int or string) and every string
base64-encoded, so nothing is lost between PHP and the comparison.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from phpsess.core.superglobals import parse_cookies, parse_post, parse_query

try:
    from tests.phptools import require, run_php
except ImportError:  # tests/ itself on sys.path
    from phptools import require, run_php  # type: ignore[no-redef]

__all__: list[str] = []

DUMP = r"""<?php
function enc($v) {
    if (!is_array($v)) return base64_encode($v);
    $o = [];
    foreach ($v as $k => $x) $o[] = [is_int($k) ? $k : base64_encode($k), enc($x)];
    return ["a" => $o];
}
echo json_encode(["get" => enc($_GET), "cookie" => enc($_COOKIE), "post" => enc($_POST)]);
"""


def dec(v: Any, top: bool = False) -> Any:
    """PHP's encoding back to Python: lists for 0..n-1 keys (except the superglobal itself)."""
    if isinstance(v, str):
        return base64.b64decode(v).decode("utf-8", "surrogateescape")
    items = {
        (k if isinstance(k, int) else dec(k)): dec(x) for k, x in v["a"]
    }
    if not top and all(k == i for i, k in enumerate(items)):
        return list(items.values())
    return items


QUERIES = [
    "", "a=1", "a=1&a=2", "a=1&b=2&&c", "a", "=x", "a=", "a+b=c+d", "a%20b=c%20d", "a.b=1", "a b=1",
    " a=1", "%20%20a=1", "a%2Bb=%2B", "a=%zz%4", "a=%41%42%c3%a9", "a[]=1&a[]=2", "a[x]=1&a[y]=2",
    "a[x][y]=1", "a[]=1&a[x]=2&a[]=3", "a[1]=x&a[0]=y", "a[0]=x&a[1]=y", "a[5]=x&a[]=y",
    "a[-5]=x&a[]=y", "a[9223372036854775807]=1&a[]=2", "a[9223372036854775808]=1", "a[-0]=1&a[0]=2",
    "a[01]=1&a[1]=2", "a[ 1]=1", "a[ ]=1&a[ ]=2", "a[  ]=1", "a[ x]=1", "a[x]b=1", "a[x]b[y]=1",
    "a[x][y=1", "a[b=1", "a.b[c.d]=1", "a b[c d]=1", "a[b][c][d][e]=1", "[x]=1", "a]=1", "a[]]=1",
    "a=1&a[]=2", "a[]=2&a=1", "123=x&-5=y&05=z", "a[x]=1&a[x][]=2", "a%00b=1", "a=b%00c",
    "a=1;b=2", "a=%", "a[%5D=1", "a%5Bx%5D=1", "a%2Ex=1", "a\u00e9=\u00e9", "&&&", "a=1&=2&b=3",
    "x[" + "][" * 70 + "]=deep&y=1",
    "x" + "[a]" * 63 + "=ok", "x" + "[a]" * 64 + "=ok", "x=1&x" + "[a]" * 65 + "=toodeep&y=1",
    "&".join(f"v{i}={i}" for i in range(1005)),
]

COOKIES = [
    "", "a=1", "a=1; a=2", "a=1;a=2", "a=1 ; b=2", "  a=1", "a", "=x; b=1", ";;a=1;;", "a=x+y%20z",
    "a=%41%zz", "a%20b=1", "a.b=1; c d=2", "a[x]=1; a[x]=2", "a=1; a[x]=2", "a[x]=2; a=1",
    "b[]=1; b[]=2", "c[y]=1; c[y][z]=2", "PHPSESSID=first1; PHPSESSID=second2", "a=\u00e9",
    "\ta=1", "a=1\t", "a=b=c", "a=\"q\"", "__Host-x=1", "%5F%5FHost-x=1", "a=1,b=2",
    "; ".join(f"c{i}={i}" for i in range(1002)),
]

POSTS: list[tuple[str, bytes]] = [
    ("application/x-www-form-urlencoded", b"a=1&b=2"),
    ("application/x-www-form-urlencoded", b"a=1&&b=2&"),
    ("application/x-www-form-urlencoded; charset=UTF-8", b"a+b=c+d&x[]=1&x[]=2"),
    ("Application/X-WWW-Form-URLEncoded", b"a=1"),
    ("application/x-www-form-urlencoded", b"a=1;b=2"),
    ("application/x-www-form-urlencoded", b"a=%00b&c%00d=1"),
    ("application/x-www-form-urlencoded", b"&".join(b"v%d=%d" % (i, i) for i in range(1002))),
    ("application/x-www-form-urlencoded", b"&" * 1001 + b"a=1"),
    ("text/plain", b"a=1"),
    ("application/json", b'{"a": 1}'),
    ("multipart/form-data; boundary=XyZ",
     b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"b[]\"\r\n\r\nx y+z%41\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"b[]\"\r\n\r\nline1\r\nline2\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\n"
     b"Content-Type: text/plain\r\n\r\nfile body\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"c.d\"\r\n\r\n\r\n"
     b"--XyZ--\r\n"),
    ("multipart/form-data; boundary=\"q b\"",
     b"--q b\r\nContent-Disposition: form-data; name=a\r\n\r\nunquoted name\r\n--q b--\r\n"),
]


def php_superglobals(root: Path, i: int, env: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    d = root / str(i)
    d.mkdir()
    script = d / "dump.php"
    script.write_text(DUMP)
    environ = {
        "REDIRECT_STATUS": "200",
        "SCRIPT_FILENAME": str(script),
        "REQUEST_METHOD": "POST" if "CONTENT_TYPE" in env else "GET",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONTENT_LENGTH": str(len(body)),
        **env,
    }
    proc = subprocess.run([require("php-cgi"), "-n", "-d", "display_errors=0", "-d", "log_errors=0"],
                          input=body, capture_output=True, env=environ, timeout=60)
    _, _, out = proc.stdout.partition(b"\r\n\r\n")
    data = json.loads(out)
    return {k: dec(v, top=True) for k, v in data.items()}


@pytest.fixture(scope="module")
def php_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("superglobals")
    jobs: list[tuple[str, dict[str, str], bytes]] = []
    jobs += [("get", {"QUERY_STRING": q}, b"") for q in QUERIES]
    jobs += [("cookie", {"HTTP_COOKIE": c}, b"") for c in COOKIES]
    jobs += [("post", {"CONTENT_TYPE": t}, b) for t, b in POSTS]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ij: php_superglobals(root, ij[0], ij[1][1], ij[1][2]),
                                enumerate(jobs)))
    out: dict[str, list[dict[str, Any]]] = {"get": [], "cookie": [], "post": []}
    for (kind, _, _), r in zip(jobs, results):
        out[kind].append(r)
    return out


def _id(s: object) -> str:
    text = repr(s)
    return text if len(text) < 40 else text[:37] + "..."


@pytest.mark.parametrize("i", range(len(QUERIES)), ids=[_id(q) for q in QUERIES])
def test_get_matches_php(i: int, php_results: dict[str, list[dict[str, Any]]]) -> None:
    assert parse_query(QUERIES[i], warn=lambda m: None) == php_results["get"][i]["get"]


@pytest.mark.parametrize("i", range(len(COOKIES)), ids=[_id(c) for c in COOKIES])
def test_cookie_matches_php(i: int, php_results: dict[str, list[dict[str, Any]]]) -> None:
    assert parse_cookies(COOKIES[i], warn=lambda m: None) == php_results["cookie"][i]["cookie"]


@pytest.mark.parametrize("i", range(len(POSTS)), ids=[_id(p) for p in POSTS])
def test_post_matches_php(i: int, php_results: dict[str, list[dict[str, Any]]]) -> None:
    ctype, body = POSTS[i]
    assert parse_post(ctype, body, warn=lambda m: None) == php_results["post"][i]["post"]


def test_random_query_strings_match_parse_str() -> None:
    """parse_str() runs the same code as $_GET; 400 random strings of the tricky characters."""
    import random

    rng = random.Random(8_2_36)
    alphabet = ["a", "b", "0", "1", "-", "[", "]", "[]", ".", " ", "=", "&", "%", "%5B", "%5D",
                "%20", "+", "%00", "\u00e9", "_"]
    queries = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(400)]
    code = r"""<?php
    function enc($v) {
        if (!is_array($v)) return base64_encode($v);
        $o = [];
        foreach ($v as $k => $x) $o[] = [is_int($k) ? $k : base64_encode($k), enc($x)];
        return ["a" => $o];
    }
    $out = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $q) { parse_str($q, $r); $out[] = enc($r); }
    echo json_encode($out);"""
    proc = run_php(code, stdin=json.dumps(queries).encode())
    php = json.loads(proc.stdout)
    mismatches = [(q, dec(p, top=True), parse_query(q)) for q, p in zip(queries, php)
                  if dec(p, top=True) != parse_query(q)]
    assert mismatches == []
