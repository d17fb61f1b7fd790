"""PHP pages under PHP's own php-fpm and the example Django, Flask and Starlette applications
(examples/frameworks) behind one nginx, on one session store: one login shared by all, 10
concurrent increments from each side ending exact, PHP's lock blocking the framework's
request and the reverse, merge mode keeping every key.  Starts php-fpm, gunicorn (Django,
Flask), uvicorn (Starlette, and the Django site again through Django's ASGI handler) and
nginx on 127.0.0.1, once for the module, and stops them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.nginx import (
    REPO, Nginx, Response, _pythonpath_env, free_port, http_get, start_php_fpm, stop_process, wait_for_socket,
)
from tests.phptools import run_php

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples" / "frameworks"
FRAMEWORKS = ["django", "flask", "asgi"]
#: the servers: the three example apps, and the Django site once more under uvicorn (Django's ASGI handler)
SERVERS = [*FRAMEWORKS, "django-asgi"]


class Site:
    """The nginx in front of everything; remembers where the sessions are."""

    def __init__(self, port: int, save: Path, workdir: Path) -> None:
        self.port = port
        self.save = save
        self.workdir = workdir

    def get(self, path: str, cookie: str | None = None) -> Response:
        r = http_get(self.port, path, cookie=cookie, timeout=20)
        assert r.status == 200, (path, r, self.logs())
        return r

    def json(self, path: str, cookie: str | None = None) -> Any:
        return json.loads(self.get(path, cookie).body)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.workdir.glob("*.log")))


def _server(args: list[str], log: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    out = open(log, "wb")
    proc = subprocess.Popen(args, cwd=str(EXAMPLES), env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    try:
        wait_for_socket(("127.0.0.1", port), 30)
    except TimeoutError:
        stop_process(proc)
        raise AssertionError(f"{args} did not start:\n{log.read_text(errors='replace')}") from None
    return proc


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    for module in ("django", "flask", "starlette", "uvicorn", "gunicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is required for this test (pip install 'phpsess[test]')")
    work = tmp_path_factory.mktemp("frameworks")
    save = work / "sessions"
    save.mkdir(mode=0o700)
    ini = work / "php.ini"
    ini.write_text(f'session.save_path = "{save}"\nsession.gc_probability = 0\n')
    env = _pythonpath_env({"PHPSESS_INI": str(ini), "PYTHONPATH": f"{REPO}:{EXAMPLES}"})
    ports = {name: free_port() for name in SERVERS}
    gthread = ["-k", "gthread", "-w", "1", "--threads", "12", "--graceful-timeout", "2"]
    commands = {
        "django": [sys.executable, "-m", "gunicorn", *gthread, "-b", f"127.0.0.1:{ports['django']}", "django_site.wsgi"],
        "flask": [sys.executable, "-m", "gunicorn", *gthread, "-b", f"127.0.0.1:{ports['flask']}", "flask_app:app"],
        "asgi": [sys.executable, "-m", "uvicorn", "--port", str(ports["asgi"]), "--log-level", "warning", "asgi_app:app"],
        "django-asgi": [sys.executable, "-m", "uvicorn", "--port", str(ports["django-asgi"]), "--log-level", "warning",
                        "django_site.asgi:application"],
    }
    servers: list[subprocess.Popen[bytes]] = []
    fpm_sock = str(work / "php-fpm.sock")
    try:
        with start_php_fpm(work / "php-fpm", fpm_sock, workers=12,
                           ini={"session.save_path": str(save), "session.gc_probability": "0"}):
            for name, args in commands.items():
                servers.append(_server(args, work / f"{name}.log", env, ports[name]))
            body = f"""
        location ~ \\.php$ {{
            root {EXAMPLES}/php;
            include {work}/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{fpm_sock};
        }}
""" + "".join(f"        location /{name}/ {{ proxy_pass http://127.0.0.1:{ports[name]}; }}\n" for name in FRAMEWORKS) \
              + f"        location /django-asgi/ {{ proxy_pass http://127.0.0.1:{ports['django-asgi']}/django/; }}\n"
            with Nginx(work / "nginx", body) as ng:
                yield Site(ng.port, save, work)
    finally:
        for proc in servers:
            stop_process(proc)


def cookie_of(r: Response) -> str:
    line = r.header("Set-Cookie")
    assert line is not None, r
    return line.split(";")[0]


def at_once(site: Site, paths: list[str], cookie: str) -> tuple[list[Any], list[float]]:
    """GET every path at the same moment; the JSON bodies and each request's duration."""
    out: list[Any] = [None] * len(paths)
    took: list[float] = [0.0] * len(paths)
    barrier = threading.Barrier(len(paths))

    def one(k: int) -> None:
        barrier.wait()
        t0 = time.monotonic()
        out[k] = site.json(paths[k], cookie)
        took[k] = time.monotonic() - t0

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out, took


def test_one_login_shared_by_php_and_every_framework(site: Site) -> None:
    login = site.get("/login.php?user=ann")  # PHP logs in
    cookie = cookie_of(login)
    for name in FRAMEWORKS:
        assert site.json(f"/{name}/", cookie) == {"side": name, "user": "ann", "cart": [], "n": 0}
    # each side adds to the cart; PHP sees them all
    site.get("/cart.php?add=pen", cookie)
    for name in FRAMEWORKS:
        site.get(f"/{name}/cart?add={name}-book", cookie)
    assert site.json("/index.php", cookie)["cart"] == ["pen", "django-book", "flask-book", "asgi-book"]
    sid = cookie.split("=", 1)[1]
    # Django wrote last but one, Starlette last: PHP's bytes, which PHP itself reads back
    stored = (site.save / f"sess_{sid}").read_bytes()
    assert stored == b'user|s:3:"ann";cart|a:4:{i:0;s:3:"pen";i:1;s:11:"django-book";i:2;s:10:"flask-book";' \
                     b'i:3;s:9:"asgi-book";}'
    php = run_php(f'<?php session_id("{sid}"); session_start(); echo json_encode($_SESSION);',
                  {"session.save_path": str(site.save)})
    assert json.loads(php.stdout) == {"user": "ann", "cart": ["pen", "django-book", "flask-book", "asgi-book"]}

    for name in FRAMEWORKS:
        # a framework logs in (a new id, PHP's cookie format) ...
        r = site.get(f"/{name}/login?user={name}-user", cookie)
        new = cookie_of(r)
        assert new != cookie and r.header("Set-Cookie") == f"{new}; path=/"
        assert not (site.save / f"sess_{cookie.split('=', 1)[1]}").exists()  # the old id is gone
        assert site.json("/index.php", new)["user"] == f"{name}-user"
        cookie = new
    # ... and logs out: PHP sees nobody, the cookie is removed as PHP's logout removes it
    r = site.get("/asgi/logout", cookie)
    assert r.header("Set-Cookie") == "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"
    assert site.json("/index.php", cookie)["user"] is None
    r = site.get("/django/login?user=bo")
    site.get("/logout.php", cookie_of(r))
    assert site.json("/django/", cookie_of(r))["user"] is None


@pytest.mark.parametrize("name", SERVERS)
def test_ten_concurrent_increments_from_each_side_end_exact(site: Site, name: str) -> None:
    cookie = cookie_of(site.get("/count.php"))
    out, _ = at_once(site, ["/count.php"] * 10 + [f"/{name}/count"] * 10, cookie)
    assert sorted(r["n"] for r in out) == list(range(2, 22))
    assert site.json("/index.php", cookie)["n"] == 21


@pytest.mark.parametrize("name", SERVERS)
def test_php_s_lock_blocks_the_framework_and_the_reverse(site: Site, name: str) -> None:
    cookie = cookie_of(site.get("/count.php"))
    for holder, waiter in (("/count.php?ms=800", f"/{name}/count"), (f"/{name}/count?ms=800", "/count.php")):
        done: list[float] = []
        t = threading.Thread(target=lambda: done.append(site.json(holder, cookie)["n"]))
        t.start()
        time.sleep(0.25)
        t0 = time.monotonic()
        n = site.json(waiter, cookie)["n"]
        waited = time.monotonic() - t0
        t.join(10)
        assert waited >= 0.4, (holder, waiter, waited)  # it waited for the holder's lock ...
        assert n == done[0] + 1  # ... and read what the holder wrote


@pytest.mark.parametrize("name", SERVERS)
def test_merge_mode_keeps_all_keys(site: Site, name: str) -> None:
    cookie = cookie_of(site.get("/count.php"))
    paths = [f"/{name}/merge?ms=300&key=m{k}" for k in range(5)] + ["/count.php"] * 5
    _, took = at_once(site, paths, cookie)
    assert max(took[:5]) < 1.5  # the merging requests did not take turns (5 × 300 ms)
    sid = cookie.split("=", 1)[1]
    php = run_php(f'<?php session_id("{sid}"); session_start(); echo json_encode($_SESSION);',
                  {"session.save_path": str(site.save)})
    final = json.loads(php.stdout)
    assert final["n"] == 6 and sorted(k for k in final if k.startswith("m")) == [f"m{k}" for k in range(5)]
