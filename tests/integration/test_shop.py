"""The shop of cgi-bin/shop, ported page by page from PHP, walked by one browser that mixes the
two: PHP pages under real php-cgi (Debian's php.ini, so output_buffering = 4096), Python
pages under ``phpsess serve``, both on one session directory. Runs php-cgi and a server.

Log in (PHP), products (Python), add (PHP), cart (Python), update (Python), cart (PHP),
remove (PHP), log out (Python): one session throughout, flash messages written by one
side shown by the other, CSRF refused by both, and the same state rendered byte for byte
alike by a page and its port.  The Python pages include common.py per request: with two
workers, each of eight fresh browsers gets its own session cookie.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.nginx import Response, http_get
from tests.integration.serve_process import CGI_BIN, ServeProcess
from tests.phptools import require

__all__: list[str] = []

SHOP = CGI_BIN / "shop"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(CGI_BIN, tmp_path_factory.mktemp("shop"), workers=2).start()
    try:
        yield server
    finally:
        assert server.stop() == []


class Browser:
    """Keeps the cookie; sends each page to php-cgi (``.php``) or to the server (``.py``)."""

    def __init__(self, srv: ServeProcess) -> None:
        self.srv = srv
        self.cookie = ""

    def _keep(self, set_cookies: list[str]) -> None:
        for c in set_cookies:
            self.cookie = c.split(";", 1)[0]

    def go(self, page: str, form: dict[str, str] | None = None) -> Response:
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        if page.endswith(".py"):
            r = http_get(self.srv.port, f"/shop/{page}", cookie=self.cookie or None,
                         method="POST" if body is not None else "GET", body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"} if body is not None else None)
        else:
            r = self._php(page, body)
        self._keep(r.all("Set-Cookie"))
        return r

    def _php(self, page: str, body: bytes | None) -> Response:
        env = {"REDIRECT_STATUS": "200", "SCRIPT_FILENAME": str(SHOP / page), "SCRIPT_NAME": f"/shop/{page}",
               "REQUEST_URI": f"/shop/{page}", "REQUEST_METHOD": "POST" if body is not None else "GET",
               "HTTP_COOKIE": self.cookie, "GATEWAY_INTERFACE": "CGI/1.1", "PATH": os.environ.get("PATH", "")}
        if body is not None:
            env.update(CONTENT_TYPE="application/x-www-form-urlencoded", CONTENT_LENGTH=str(len(body)))
        # Debian's php.ini for php-cgi, with the server's session directory
        out = subprocess.run([require("php-cgi"), "-d", f"session.save_path={self.srv.sessions}"],
                             input=body or b"", env=env, capture_output=True, timeout=30, check=True,
                             cwd=str(SHOP))
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            n, _, v = line.partition(": ")
            if n.lower() == "status":
                status = int(v[:3])
            else:
                headers.append((n, v))
        return Response(status, headers, payload, 0.0)

    def csrf(self, r: Response) -> str:
        m = re.search(r'name="csrf" value="([0-9a-f]{32})"', r.text)
        assert m, r.text
        return m.group(1)


def flashes(r: Response) -> list[str]:
    return re.findall(r'<p class="flash">(.*?)</p>', r.text)


def qty(r: Response, product: str) -> int | None:
    m = re.search(rf'id="qty-{product}" value="(\d+)"', r.text)
    return int(m.group(1)) if m else None


def test_a_browser_walks_the_shop_mixing_php_and_python_pages(srv: ServeProcess) -> None:
    b = Browser(srv)
    # not logged in: both sides send to the login page with a flash
    r = b.go("index.py")
    assert (r.status, r.header("Location")) == (303, "login.py")
    r = b.go("login.php")
    assert flashes(r) == ["Please log in."]  # written by Python, shown by PHP
    token = b.csrf(r)
    # CSRF: a wrong token is refused by either side, with die()'s text
    r = b.go("login.py", {"csrf": "0" * 32, "user": "ann", "password": "secret"})
    assert (r.status, r.text) == (403, "Invalid CSRF token")
    r = b.go("login.php", {"csrf": "0" * 32, "user": "ann", "password": "secret"})
    assert (r.status, r.text) == (403, "Invalid CSRF token")
    before = b.cookie
    r = b.go("login.php", {"csrf": token, "user": "ann", "password": "secret"})
    assert (r.status, r.header("Location")) == (303, "index.php")
    assert b.cookie != before  # session_regenerate_id(true)
    # the products, in Python, show PHP's flash and the user
    r = b.go("index.py")
    assert r.status == 200
    assert flashes(r) == ["Welcome, ann!"]
    assert '<span id="user">ann</span>' in r.text
    token = b.csrf(r)
    # add in PHP ("2" juggled to 2), then in Python: the cart page prints its header first,
    # and the redirect still works (output buffering on both sides)
    r = b.go("cart.php", {"csrf": token, "action": "add", "product": "tea", "qty": "2"})
    assert (r.status, r.header("Location")) == (303, "cart.php")
    r = b.go("cart.py")
    assert flashes(r) == ["Green tea added."]
    assert qty(r, "tea") == 2
    r = b.go("cart.py", {"csrf": token, "action": "add", "product": "mug", "qty": "1"})
    assert (r.status, r.header("Location")) == (303, "cart.py")
    r = b.go("cart.php")
    assert flashes(r) == ["Mug added."]
    assert (qty(r, "tea"), qty(r, "mug")) == (2, 1)
    assert '<span id="total">18.00</span>' in r.text
    assert '<span id="count">3</span>' in r.text
    # update in Python with PHP's array syntax (qty[tea]=5, qty[mug]=0 removes the mug)
    r = b.go("cart.py", {"csrf": token, "action": "update", "qty[tea]": "5", "qty[mug]": "0"})
    assert r.status == 303
    php_view = b.go("cart.php")
    assert flashes(php_view) == ["Cart updated."]
    assert (qty(php_view, "tea"), qty(php_view, "mug")) == (5, None)
    # the same state, no flash pending: a page and its port render the same bytes
    py_view = b.go("cart.py")
    php_view = b.go("cart.php")
    assert py_view.text == php_view.text.replace(".php", ".py")
    assert b.go("index.py").text == b.go("index.php").text.replace(".php", ".py")
    # remove in PHP, log out in Python
    r = b.go("cart.php", {"csrf": token, "action": "remove", "product": "tea"})
    assert r.status == 303
    assert qty(b.go("cart.py"), "tea") is None
    old = b.cookie
    r = b.go("logout.py", {"csrf": token})
    assert (r.status, r.header("Location")) == (303, "login.py")
    assert b.cookie != old
    r = b.go("login.php")
    assert flashes(r) == ["Logged out."]
    assert 'id="user"' not in r.text
    assert not (Path(srv.sessions) / f"sess_{old.split('=', 1)[1]}").exists()


def test_each_fresh_browser_gets_a_session_from_the_included_file(srv: ServeProcess) -> None:
    # common.py's session_start() runs at every request (require_once, not import)
    cookies = set()
    for _ in range(8):
        r = http_get(srv.port, "/shop/login.py")
        assert r.status == 200
        set_cookie = r.all("Set-Cookie")
        assert len(set_cookie) == 1
        cookies.add(set_cookie[0].split(";", 1)[0])
    assert len(cookies) == 8
