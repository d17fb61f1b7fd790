"""$_GET / $_COOKIE / $_POST parsing, as php-cgi 8.2 builds them (expectations recorded from
PHP; tests/oracle/test_superglobals_oracle.py re-checks them live, plus random strings)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phpsess.core import superglobals
from phpsess.core.superglobals import (
    parse_cookies,
    parse_multipart,
    parse_post,
    parse_query,
    raw_url_decode,
    url_decode,
)

GET_CASES: list[tuple[str, dict[Any, Any]]] = [
    ("", {}),
    ("a=1&a=2", {"a": "2"}),
    ("a=1&b=2&&c", {"a": "1", "b": "2", "c": ""}),
    ("=x", {}),
    ("a+b=c+d", {"a_b": "c d"}),
    ("a%20b=c%20d", {"a_b": "c d"}),
    ("a.b=1", {"a_b": "1"}),
    (" a=1", {"a": "1"}),
    ("a=%zz%4", {"a": "%zz%4"}),
    ("a=%41%42%c3%a9", {"a": "AB\u00e9"}),
    ("a=%ff", {"a": "\udcff"}),
    ("a[]=1&a[]=2", {"a": ["1", "2"]}),
    ("a[x][y]=1", {"a": {"x": {"y": "1"}}}),
    ("a[]=1&a[x]=2&a[]=3", {"a": {0: "1", "x": "2", 1: "3"}}),
    ("a[1]=x&a[0]=y", {"a": {1: "x", 0: "y"}}),
    ("a[0]=x&a[1]=y", {"a": ["x", "y"]}),
    ("a[5]=x&a[]=y", {"a": {5: "x", 6: "y"}}),
    ("a[-5]=x&a[]=y", {"a": {-5: "x", -4: "y"}}),
    ("a[9223372036854775807]=1&a[]=2", {"a": {9223372036854775807: "1"}}),
    ("a[9223372036854775808]=1", {"a": {"9223372036854775808": "1"}}),
    ("a[-0]=1&a[0]=2", {"a": {"-0": "1", 0: "2"}}),
    ("a[01]=1&a[1]=2", {"a": {"01": "1", 1: "2"}}),
    ("a[ ]=1&a[ ]=2", {"a": ["1", "2"]}),
    ("a[ x]=1", {"a": {" x": "1"}}),
    ("a[x]b=1", {"a": {"x": "1"}}),
    ("a[x][y=1", {"a": {"x": "1"}}),
    ("a[b=1", {"a_b": "1"}),
    ("a.b[c.d]=1", {"a_b": {"c.d": "1"}}),
    ("[x]=1", {}),
    ("a]=1", {"a]": "1"}),
    ("a=1&a[]=2", {"a": ["2"]}),
    ("a[]=2&a=1", {"a": "1"}),
    ("123=x&-5=y&05=z", {123: "x", -5: "y", "05": "z"}),
    ("a[x]=1&a[x][]=2", {"a": {"x": ["2"]}}),
    ("a%00b=1", {"a": "1"}),
    ("a=b%00c", {"a": "b\x00c"}),
    ("a=1;b=2", {"a": "1;b=2"}),
    ("a%5Bx%5D=1", {"a": {"x": "1"}}),
    ("a=%2B&b=+", {"a": "+", "b": " "}),
]


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


@pytest.mark.parametrize(("qs", "expected"), GET_CASES)
def test_parse_query(qs: str, expected: dict[Any, Any]) -> None:
    assert parse_query(qs) == expected


def test_parse_query_nesting_limit() -> None:
    assert parse_query("x" + "[a]" * 64 + "=ok&y=1") == {"x": _nested(64, "ok"), "y": "1"}
    assert parse_query("x=1&x" + "[a]" * 65 + "=deep&y=1") == {"y": "1"}
    assert parse_query("x[a]=1&x" + "[a]" * 3 + "=ok", max_nesting=2) == {}


def test_parse_query_max_input_vars_warns_and_drops_the_rest() -> None:
    warnings: list[str] = []
    got = parse_query("&".join(f"v{i}={i}" for i in range(1005)), warn=warnings.append)
    assert len(got) == 1000 and "v999" in got and "v1000" not in got
    assert warnings == ["Input variables exceeded 1000. To increase the limit change max_input_vars in php.ini."]
    assert parse_query("a=1&b=2&c=3", max_input_vars=2) == {"a": "1", "b": "2"}


def test_parse_query_separators_and_bytes() -> None:
    assert parse_query("a=1;b=2&c=3", separators="&;") == {"a": "1", "b": "2", "c": "3"}
    assert parse_query(b"a=%C3%A9&b=\xff") == {"a": "\u00e9", "b": "\udcff"}


COOKIE_CASES: list[tuple[str, dict[Any, Any]]] = [
    ("", {}),
    ("a=1; a=2", {"a": "1"}),
    ("a=1 ; b=2", {"a": "1 ", "b": "2"}),
    ("a", {"a": ""}),
    ("=x; b=1", {"b": "1"}),
    (";;a=1;;", {"a": "1"}),
    ("a=x+y%20z", {"a": "x+y z"}),
    ("a%20b=1", {"a%20b": "1"}),
    ("a.b=1; c d=2", {"a_b": "1", "c_d": "2"}),
    ("a[x]=1; a[x]=2", {"a": {"x": "2"}}),
    ("a=1; a[x]=2", {"a": {"x": "2"}}),
    ("a[x]=2; a=1", {"a": {"x": "2"}}),
    ("b[]=1; b[]=2", {"b": ["1", "2"]}),
    ("PHPSESSID=first1; PHPSESSID=second2", {"PHPSESSID": "first1"}),
    ("\ta=1", {"a": "1"}),
    ("a=1\t", {"a": "1\t"}),
    ("a=b=c", {"a": "b=c"}),
    ("%5F%5FHost-x=1", {"%5F%5FHost-x": "1"}),
    ("a=1,b=2", {"a": "1,b=2"}),
    ("a=%C3%A9", {"a": "\u00e9"}),
]


@pytest.mark.parametrize(("header", "expected"), COOKIE_CASES)
def test_parse_cookies(header: str, expected: dict[Any, Any]) -> None:
    assert parse_cookies(header) == expected


@given(st.lists(st.tuples(st.text(" \t_-.[]aZ09é\0%", max_size=6), st.sampled_from(["=", ""]),
                          st.text("ab%2Ce+ =;", max_size=5)), max_size=6),
       st.sampled_from([";", "; ", ";;"]))
@settings(max_examples=600, deadline=None)
def test_plain_cookie_names_take_a_short_way_to_the_same_array(pairs: list[tuple[str, str, str]], sep: str) -> None:
    """The common header (plain names) skips PHP's general registration; whatever the
    header, $_COOKIE is what the general registration makes of it."""
    header = sep.join(n + eq + v for n, eq, v in pairs)
    data = header.encode("utf-8", "surrogateescape").split(b"\0", 1)[0]
    general = superglobals._registered_cookies(data, 1000, 64, None)
    assert parse_cookies(header) == general
    names = [p.partition(b"=")[0].lstrip(b" \t\n\r\v\f") for p in data.split(b";")]
    if all(superglobals._PLAIN_NAME.match(n) for n in names if n):
        assert superglobals._plain_cookies(data, 1000) == general  # (and not None: it took the short way)


def test_the_short_way_leaves_the_warning_to_the_general_one() -> None:
    header = "; ".join(f"c{i}={i}" for i in range(1001)).encode()
    assert superglobals._plain_cookies(header, 1000) is None
    assert superglobals._plain_cookies(b"PHPSESSID=abc; a.b=1", 1000) is None  # a name PHP mangles
    assert superglobals._plain_cookies(b"PHPSESSID=abc; _ga=GA1.2; XSRF-TOKEN=x%3D", 1000) == {
        "PHPSESSID": "abc", "_ga": "GA1.2", "XSRF-TOKEN": "x="}


def test_parse_cookies_max_input_vars() -> None:
    warnings: list[str] = []
    got = parse_cookies("; ".join(f"c{i}={i}" for i in range(1002)), warn=warnings.append)
    assert len(got) == 1000 and len(warnings) == 1


POST_CASES: list[tuple[str, bytes, dict[Any, Any]]] = [
    ("application/x-www-form-urlencoded", b"a=1&b=2", {"a": "1", "b": "2"}),
    ("application/x-www-form-urlencoded", b"a=1&&b=2&", {"a": "1", "b": "2"}),
    ("application/x-www-form-urlencoded; charset=UTF-8", b"a+b=c+d&x[]=1&x[]=2",
     {"a_b": "c d", "x": ["1", "2"]}),
    ("Application/X-WWW-Form-URLEncoded", b"a=1", {"a": "1"}),
    ("application/x-www-form-urlencoded", b"a=1;b=2", {"a": "1;b=2"}),
    ("application/x-www-form-urlencoded", b"a=%00b&c%00d=1", {"a": "\x00b", "c": "1"}),
    ("application/x-www-form-urlencoded", b"", {}),
    ("text/plain", b"a=1", {}),
    ("application/json", b'{"a": 1}', {}),
    ("", b"a=1", {}),
    ("multipart/form-data; boundary=XyZ",
     b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"b[]\"\r\n\r\nx y+z%41\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"b[]\"\r\n\r\nline1\r\nline2\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\n"
     b"Content-Type: text/plain\r\n\r\nfile body\r\n"
     b"--XyZ\r\nContent-Disposition: form-data; name=\"c.d\"\r\n\r\n\r\n"
     b"--XyZ--\r\n",
     {"a": "1", "b": ["x y+z%41", "line1\r\nline2"], "c_d": ""}),
    ("multipart/form-data; boundary=\"q b\"",
     b"--q b\r\nContent-Disposition: form-data; name=a\r\n\r\nunquoted name\r\n--q b--\r\n",
     {"a": "unquoted name"}),
    ("multipart/form-data", b"--x\r\n", {}),
]


@pytest.mark.parametrize(("ctype", "body", "expected"), POST_CASES)
def test_parse_post(ctype: str, body: bytes, expected: dict[Any, Any]) -> None:
    assert parse_post(ctype, body) == expected


def test_parse_post_counts_like_php() -> None:
    """The urlencoded reader stores the 1001st variable before it notices the limit."""
    warnings: list[str] = []
    body = b"&".join(b"v%d=%d" % (i, i) for i in range(1002))
    got = parse_post("application/x-www-form-urlencoded", body, warn=warnings.append)
    assert len(got) == 1001 and "v1000" in got and len(warnings) == 1
    # empty pieces count too
    assert parse_post("application/x-www-form-urlencoded", b"&" * 1001 + b"a=1", warn=lambda m: None) == {}


def test_parse_multipart_directly() -> None:
    body = b"--b\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n--b--"
    assert parse_multipart("b", body) == {"k": "v"}


def test_url_decoding() -> None:
    assert url_decode(b"a+b%20c%zz%4") == b"a b c%zz%4"
    assert raw_url_decode(b"a+b%20c") == b"a+b c"
