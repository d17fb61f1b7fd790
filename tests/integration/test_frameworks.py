"""PHP pages under PHP's own php-fpm and the example Django, Flask and Starlette applications
(examples/frameworks) behind one nginx, on one session store: one login shared by all, 10
concurrent increments from each side ending exact, PHP's lock blocking the framework's
request and the reverse, merge mode keeping every key.  Starts php-fpm, gunicorn (Django,
Flask), uvicorn (Starlette, and the Django site again through Django's ASGI handler) and
nginx on 127.0.0.1, once per store for the module, and stops them; the concurrency tests
run over session files and over Redis (a redis-server, phpredis on PHP's side).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.nginx import (
    REPO, Nginx, Response, _pythonpath_env, http_get, start_php_fpm, stop_process,
)
from tests.integration.redis_server import RedisProcess, redis_server  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples" / "frameworks"
FRAMEWORKS = ["django", "flask", "asgi"]
#: the servers: the three example apps, and the Django site once more under uvicorn (Django's ASGI handler)
SERVERS = [*FRAMEWORKS, "django-asgi"]


class Site:
    """The nginx in front of everything; remembers where the sessions are."""

    def __init__(self, port: int, store: str, save: Path, workdir: Path, php_ini: dict[str, str]) -> None:
        self.port = port
        self.store = store
        self.save = save
        self.workdir = workdir
        self.php_ini = php_ini

    def get(self, path: str, cookie: str | None = None) -> Response:
        r = http_get(self.port, path, cookie=cookie, timeout=20)
        assert r.status == 200, (path, r, self.logs())
        return r

    def json(self, path: str, cookie: str | None = None) -> Any:
        return json.loads(self.get(path, cookie).body)

    def php_session(self, sid: str) -> Any:
        """``$_SESSION`` of ``sid`` as PHP's CLI reads it from the store (json)."""
        args = [require("php"), "-n", *(a for ext in EXTENSIONS[self.store] for a in ("-d", f"extension={ext}"))]
        for k, v in {**PHP_BASE_INI, **self.php_ini}.items():
            args += ["-d", f"{k}={v}"]
        code = f'session_id("{sid}"); session_start(); echo json_encode($_SESSION);'
        out = subprocess.run([*args, "-r", code], capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stderr == b"", out
        return json.loads(out.stdout)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.workdir.glob("*.log")))


def _listener() -> socket.socket:
    """A listening socket on 127.0.0.1 at a port the kernel picks, handed to a server as its
    file descriptor: no other process can take the port between choosing and binding it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _server(args: list[str], log: Path, env: dict[str, str], sock: socket.socket, ready: str) -> subprocess.Popen[bytes]:
    """Start a server on the listening ``sock`` (its fd in ``args``); return once it answers
    ``GET ready``, or fail with its log."""
    out = open(log, "wb")
    proc = subprocess.Popen(args, cwd=str(EXAMPLES), env=env, stdout=out, stderr=subprocess.STDOUT,
                            pass_fds=[sock.fileno()])
    out.close()
    port = sock.getsockname()[1]
    deadline = time.monotonic() + 30
    while True:
        try:
            http_get(port, ready, timeout=5)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise AssertionError(f"{args} did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)


#: the PHP extensions each store needs (php -n loads none; phpredis needs igbinary first)
EXTENSIONS = {"files": [], "redis": ["igbinary.so", "redis.so"]}


@contextlib.contextmanager
def _site(work: Path, store: str, redis_url: str = "") -> Iterator[Site]:
    """php-fpm, the four servers and nginx, all on one session store: ``files`` (a temp
    directory) or ``redis`` (phpredis's format and lock on PHP's side)."""
    for module in ("django", "flask", "starlette", "uvicorn", "gunicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is required for this test (pip install 'phpsess[test]')")
    save = work / "sessions"
    save.mkdir(mode=0o700)
    if store == "files":
        settings = {"session.save_path": str(save)}
    else:
        settings = {"session.save_handler": "redis", "session.save_path": f"{redis_url}?prefix=frameworks:"}
    settings["session.gc_probability"] = "0"
    php_ini = dict(settings)
    if store == "redis":  # phpredis's lock, on, with waits long enough for the tests
        php_ini.update({"redis.session.locking_enabled": "1", "redis.session.lock_wait_time": "2000",
                        "redis.session.lock_retries": "5000", "redis.session.lock_expire": "30"})
    php_ini = {k: f'"{v}"' for k, v in php_ini.items()}
    ini = work / "php.ini"
    ini.write_text("".join(f"{k} = {v}\n" for k, v in php_ini.items()))
    env = _pythonpath_env({"PHPSESS_INI": str(ini), "PYTHONPATH": f"{REPO}:{EXAMPLES}"})
    socks = {name: _listener() for name in SERVERS}
    fds = {name: str(sock.fileno()) for name, sock in socks.items()}
    ports = {name: sock.getsockname()[1] for name, sock in socks.items()}
    gthread = ["-k", "gthread", "-w", "1", "--threads", "12", "--graceful-timeout", "2"]
    commands = {
        "django": [sys.executable, "-m", "gunicorn", *gthread, "-b", f"fd://{fds['django']}", "django_site.wsgi"],
        "flask": [sys.executable, "-m", "gunicorn", *gthread, "-b", f"fd://{fds['flask']}", "flask_app:app"],
        "asgi": [sys.executable, "-m", "uvicorn", "--fd", fds["asgi"], "--log-level", "warning", "asgi_app:app"],
        "django-asgi": [sys.executable, "-m", "uvicorn", "--fd", fds["django-asgi"], "--log-level", "warning",
                        "django_site.asgi:application"],
    }
    servers: list[subprocess.Popen[bytes]] = []
    fpm_sock = str(work / "php-fpm.sock")
    try:
        with start_php_fpm(work / "php-fpm", fpm_sock, workers=12, ini=php_ini, extensions=EXTENSIONS[store]):
            for name, args in commands.items():
                ready = "/django/" if name == "django-asgi" else f"/{name}/"
                servers.append(_server(args, work / f"{name}.log", env, socks[name], ready))
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
                yield Site(ng.port, store, save, work, php_ini)
    finally:
        for proc in servers:
            stop_process(proc)
        for sock in socks.values():
            sock.close()


@pytest.fixture(scope="module")
def files_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with _site(tmp_path_factory.mktemp("frameworks"), "files") as site:
        yield site


@pytest.fixture(scope="module")
def redis_site(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess) -> Iterator[Site]:  # noqa: F811
    with _site(tmp_path_factory.mktemp("frameworks-redis"), "redis", redis_server.url) as site:
        yield site


@pytest.fixture(params=["files", "redis"])
def site(request: pytest.FixtureRequest) -> Site:
    """Each store in turn: session files, and Redis (phpredis on PHP's side)."""
    return request.getfixturevalue(f"{request.param}_site")  # type: ignore[no-any-return]


def cookie_of(r: Response) -> str:
    line = r.header("Set-Cookie")
    assert line is not None, r
    return line.split(";")[0]


def at_once(site: Site, paths: list[str], cookie: str) -> tuple[list[Any], list[float]]:
    """GET every path at the same moment; the JSON bodies and each request's duration."""
    out: list[Any] = [None] * len(paths)
    took: list[float] = [0.0] * len(paths)
    failed: list[BaseException] = []
    barrier = threading.Barrier(len(paths))

    def one(k: int) -> None:
        barrier.wait()
        t0 = time.monotonic()
        try:
            out[k] = site.json(paths[k], cookie)
        except BaseException as e:  # (re-raised below, in the test's thread)
            failed.append(e)
        took[k] = time.monotonic() - t0

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if failed:
        raise failed[0]
    assert all(r is not None for r in out), "a request did not end within 60 s"
    return out, took


def test_one_login_shared_by_php_and_every_framework(files_site: Site) -> None:
    site = files_site
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
    assert site.php_session(sid) == {"user": "ann", "cart": ["pen", "django-book", "flask-book", "asgi-book"]}

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
    final = site.php_session(cookie.split("=", 1)[1])
    assert final["n"] == 6 and sorted(k for k in final if k.startswith("m")) == [f"m{k}" for k in range(5)]
