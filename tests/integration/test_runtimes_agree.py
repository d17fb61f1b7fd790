"""Every cgi-bin script runs unchanged under CGI, ``phpsess fpm`` behind nginx and ``phpsess serve``,
and the three give the same responses; and ``phpsess fpm`` over the Redis handler keeps every
increment of 10 parallel requests. Starts nginx, a pool, a serve process and a redis-server;
stops them all."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.integration.nginx import PYTHONPATH, REPO, Response, shipped_conf, start_fpm, wait_for
from tests.integration.redis_server import RedisProcess
from tests.integration.serve_process import ServeProcess

pytestmark = pytest.mark.slow

CGI_BIN = Path(REPO) / "cgi-bin"

#: headers that are the transport's business, not the script's
TRANSPORT = {"date", "server", "content-length", "connection", "x-powered-by", "transfer-encoding",
             "access-control-allow-origin", "vary", "keep-alive"}

Fetch = Callable[..., Response]


def _normalise(r: Response) -> tuple[int, list[tuple[str, str]], str]:
    ids: dict[str, str] = {}

    def norm(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            return m.group(1) + ids.setdefault(m.group(2), f"ID{len(ids) + 1}")
        text = re.sub(r"(PHPSESSID=)([A-Za-z0-9,-]+)", sub, text)
        return re.sub(r"expires=[^;]+", "expires=DATE", text)

    # nginx moves Content-Type to the front: compare per name, keeping each name's order
    headers = sorted(((n.lower(), norm(v)) for n, v in r.headers if n.lower() not in TRANSPORT),
                     key=lambda h: h[0])
    return r.status, headers, norm(r.body.decode("utf-8", "replace"))


def _cgi(root: Path, ini: Path) -> Fetch:
    """A CGI host: the script runs as a process with the CGI environment, body on stdin."""

    def fetch(path: str, cookie: str | None = None, method: str = "GET", body: bytes = b"") -> Response:
        script, _, query = path.lstrip("/").partition("?")
        env = {
            "PATH": os.environ.get("PATH", ""), "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": method, "SCRIPT_FILENAME": str(root / script), "SCRIPT_NAME": f"/{script}",
            "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "PYTHONPATH": PYTHONPATH, "PHPSESS_INI": str(ini),
        }
        if cookie:
            env["HTTP_COOKIE"] = cookie
        if body:
            env["CONTENT_LENGTH"] = str(len(body))
            env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        out = subprocess.run([sys.executable, str(root / script)], input=body, env=env,
                             capture_output=True, timeout=60, cwd=str(root))
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))
        return Response(status, headers, payload, 0.0)

    return fetch


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Fetch]]:
    base = tmp_path_factory.mktemp("runtimes")
    fetchers: dict[str, Fetch] = {}
    roots = {}
    for name in ("cgi", "fpm", "serve"):
        root = base / name / "www"
        shutil.copytree(CGI_BIN, root, ignore=shutil.ignore_patterns("__pycache__"))
        (base / name / "sessions").mkdir()
        ini = base / name / "phpsess.ini"
        ini.write_text(f"session.save_path = {base / name / 'sessions'}\nsession.gc_probability = 0\n")
        roots[name] = (root, ini)
    fetchers["cgi"] = _cgi(*roots["cgi"])
    sock = str(base / "fpm" / "fpm.sock")
    with start_fpm(roots["fpm"][0], sock, workers=4, ini=str(roots["fpm"][1])):
        with shipped_conf(base / "fpm" / "nginx", root=roots["fpm"][0], fpm_socket=sock) as ng:
            fetchers["fpm"] = lambda path, cookie=None, method="GET", body=b"": ng.get(
                path, cookie=cookie, method=method, body=body or None,
                headers={"Content-Type": "application/x-www-form-urlencoded"} if body else None)
            with ServeProcess(roots["serve"][0], base / "serve", workers=4,
                              ini={"session.gc_probability": "0"}) as sp:
                from tests.integration.nginx import http_get

                fetchers["serve"] = lambda path, cookie=None, method="GET", body=b"": http_get(
                    sp.port, path, cookie=cookie, method=method, body=body or None,
                    headers={"Content-Type": "application/x-www-form-urlencoded"} if body else None)
                yield fetchers


def _cookie(r: Response) -> str | None:
    for name, value in r.headers:
        if name.lower() == "set-cookie" and value.startswith("PHPSESSID=") and "deleted" not in value:
            return value.split(";")[0]
    return None


def _visit(fetch: Fetch) -> list[tuple[int, list[tuple[str, str]], str]]:
    """The same visit on every runtime: counter twice, a wrong and a right login, the
    logged-in page, a slow request in each mode, logout, and the counter again."""
    seen = []
    r = fetch("/counter.py")
    cookie = _cookie(r)
    seen.append(_normalise(r))
    seen.append(_normalise(fetch("/counter.py", cookie)))
    form = urllib.parse.urlencode({"user": "ann", "password": "nope"}).encode()
    seen.append(_normalise(fetch("/login.py", cookie, "POST", form)))
    form = urllib.parse.urlencode({"user": "ann", "password": "secret"}).encode()
    r = fetch("/login.py", cookie, "POST", form)
    seen.append(_normalise(r))
    cookie = _cookie(r) or cookie
    seen.append(_normalise(fetch("/login.py", cookie)))
    for mode in ("hold", "close", "merge"):
        r = fetch(f"/slow.py?mode={mode}&i=1&ms=0", cookie)
        data = json.loads(r.body)
        seen.append((r.status, _normalise(r)[1], json.dumps(sorted(data))))  # the keys; times differ
    seen.append(_normalise(fetch("/logout.py", cookie)))
    seen.append(_normalise(fetch("/counter.py", cookie)))
    return seen


def test_every_cgi_bin_script_answers_the_same_under_cgi_fpm_and_serve(runtimes: dict[str, Fetch]) -> None:
    visits = {name: _visit(fetch) for name, fetch in runtimes.items()}
    assert visits["fpm"] == visits["cgi"]
    assert visits["serve"] == visits["cgi"]
    statuses = [v[0] for v in visits["cgi"]]
    assert statuses == [200, 200, 403, 303, 200, 200, 200, 200, 200, 200]


def test_fpm_over_redis_keeps_every_increment_of_ten_parallel_requests(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "inc.py").write_text(
        "import time, phpsess\n"
        "from phpsess import SESSION\n"
        "phpsess.session_start()\n"
        "n = SESSION.get('n', 0)\n"
        "time.sleep(0.05)  # read, work, write: a lost update would show\n"
        "SESSION['n'] = n + 1\n"
        "print(SESSION['n'])\n"
    )
    with RedisProcess() as redis:
        ini = tmp_path / "phpsess.ini"
        ini.write_text(f'session.save_handler = redis\nsession.save_path = "{redis.url}"\n'
                       "session.gc_probability = 0\n")
        sock = str(tmp_path / "fpm.sock")
        with start_fpm(root, sock, workers=10, ini=str(ini)) as master:
            import psutil

            wait_for(lambda: len(psutil.Process(master.pid).children()) == 10, 10, "the workers")
            with shipped_conf(tmp_path / "nginx", root=root, fpm_socket=sock) as ng:
                first = ng.get("/inc.py")
                assert first.status == 200 and first.body == b"1\n", first
                cookie = _cookie(first)
                with concurrent.futures.ThreadPoolExecutor(10) as ex:
                    results = list(ex.map(lambda _: ng.get("/inc.py", cookie=cookie), range(10)))
                assert [r.status for r in results] == [200] * 10, results
                assert sorted(int(r.body) for r in results) == list(range(2, 12))
                assert ng.get("/inc.py", cookie=cookie).body == b"12\n"
