"""``phpsess serve``: routing and HTTP pieces alone, then the real server (a subprocess over
cgi-bin) with the example scripts, real php-cgi on the same session files, 10 parallel
requests on one session, and signals.  Starts processes; each test stops what it starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from phpsess.runtime.server import (
    HTTPError,
    Route,
    build_environ,
    cors_headers,
    parse_request_head,
    route,
)
from tests.integration.nginx import Response, http_get, wait_for
from tests.integration.serve_process import CGI_BIN, ServeProcess, cookie_of
from tests.phptools import require

pytestmark = pytest.mark.slow

#: response headers PHP does not produce (the web server adds them)
SERVER_HEADERS = {"date", "server", "content-length", "connection", "x-powered-by"}


# -- the pure pieces ----------------------------------------------------------------------------


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "empty").mkdir()
    (root / "__pycache__").mkdir()
    for name in ("a.py", "sub/index.py", "app/demo.py", ".hidden.py", "__pycache__/x.py", "notes.txt"):
        (root / name).write_text("print('x')\n")
    (tmp_path / "outside.py").write_text("print('secret')\n")
    (root / "escape.py").symlink_to(tmp_path / "outside.py")
    (root / "etc").symlink_to("/etc")
    return root


def test_route_maps_urls_to_scripts_with_path_info(docroot: Path) -> None:
    r = str(docroot)
    assert route(r, "/a.py") == Route("script", f"{r}/a.py", "/a.py")
    assert route(r, "/a.py/x/y") == Route("script", f"{r}/a.py", "/a.py", "/x/y")
    assert route(r, "/%61.py") == Route("script", f"{r}/a.py", "/a.py")
    assert route(r, "//./a.py") == Route("script", f"{r}/a.py", "/a.py")


def test_route_directories_run_index_then_demo_then_list(docroot: Path) -> None:
    r = str(docroot)
    assert route(r, "/sub/") == Route("script", f"{r}/sub/index.py", "/sub/index.py")
    assert route(r, "/app/") == Route("script", f"{r}/app/demo.py", "/app/demo.py")
    assert route(r, "/empty/") == Route("listing", f"{r}/empty", "/empty/")
    assert route(r, "/sub") == Route("redirect", f"{r}/sub", "/sub/")


@pytest.mark.parametrize(
    "path",
    ["/../outside.py", "/sub/../../outside.py", "/%2e%2e/outside.py", "/.hidden.py", "/__pycache__/x.py",
     "/notes.txt", "/nope.py", "/escape.py", "/etc/passwd", "/a.py%00", "a.py", "/sub/%2e%2e/a.py"],
)
def test_route_refuses_what_is_not_a_script_under_root(docroot: Path, path: str) -> None:
    assert route(str(docroot), path) is None


def test_parse_request_head() -> None:
    head = b"get /a.py?x=1 HTTP/1.1\r\nHost: h:1\r\nCookie: a=1\r\nX-Empty:\r\nCookie: b=2"
    assert parse_request_head(head) == (
        "GET", "/a.py?x=1", "HTTP/1.1", [("Host", "h:1"), ("Cookie", "a=1"), ("X-Empty", ""), ("Cookie", "b=2")]
    )


@pytest.mark.parametrize(
    ("head", "status"),
    [(b"GET /\r\n", 400), (b"GET / HTTP/2.0", 505), (b"GET / SPDY", 400), (b"GET / HTTP/1.1\r\nNoColon", 400),
     (b"GET / HTTP/1.1\r\nA: 1\r\n  folded", 400), (b"GET / HTTP/1.1\r\nBad Name: 1", 400)],
)
def test_parse_request_head_refuses_malformed_requests(head: bytes, status: int) -> None:
    with pytest.raises(HTTPError) as info:
        parse_request_head(head)
    assert info.value.status == status


def test_build_environ_is_the_cgi_environment(docroot: Path) -> None:
    env = build_environ(
        method="POST", target="/a.py/p?x=1&y=%20", version="HTTP/1.1",
        headers=[("Host", "localhost:8080"), ("Cookie", "a=1"), ("cookie", "b=2"), ("Accept", "x"),
                 ("accept", "y"), ("Content-Type", "application/x-www-form-urlencoded"),
                 ("Content-Length", "999"), ("X_Spoofed", "1"), ("X-Real", "2")],
        route=Route("script", f"{docroot}/a.py", "/a.py", "/p"), root=str(docroot),
        client=("127.0.0.1", 5555), server=("127.0.0.1", 8080), ports=[8080, 9001], body_length=3,
    )
    assert env == {
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": env["SERVER_SOFTWARE"], "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http", "REQUEST_METHOD": "POST", "REQUEST_URI": "/a.py/p?x=1&y=%20",
        "DOCUMENT_URI": "/a.py/p", "DOCUMENT_ROOT": str(docroot), "SCRIPT_NAME": "/a.py",
        "SCRIPT_FILENAME": f"{docroot}/a.py", "PATH_INFO": "/p", "PATH_TRANSLATED": f"{docroot}/p",
        "QUERY_STRING": "x=1&y=%20", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555",
        "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_NAME": "localhost",
        "PHPSESS_SERVE_PORTS": "8080,9001", "HTTP_HOST": "localhost:8080", "HTTP_COOKIE": "a=1; b=2",
        "HTTP_ACCEPT": "x, y", "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": "3",
        "HTTP_X_REAL": "2",
    }
    assert env["SERVER_SOFTWARE"].startswith("phpsess/")


def test_cors_only_between_the_servers_own_ports() -> None:
    ports = [8080, 9001]
    allowed = cors_headers("http://localhost:8080", "localhost:9001", ports)
    assert allowed == [("Access-Control-Allow-Origin", "http://localhost:8080"),
                       ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
    assert cors_headers("http://localhost:7000", "localhost:9001", ports) == []
    assert cors_headers("http://evil.example:8080", "localhost:9001", ports) == []
    assert cors_headers("https://localhost:8080", "localhost:9001", ports) == []
    assert cors_headers(None, "localhost:9001", ports) == []
    preflight = dict(cors_headers("http://127.0.0.1:9001", "127.0.0.1:8080", ports, preflight=True))
    assert preflight["Access-Control-Allow-Methods"] == "GET, POST, HEAD"


def _written(status: int, headers: list[tuple[str, str]], chunks: list[bytes], *, method: str = "GET",
             version: str = "1.1", buffer: int = 65536) -> bytes:
    """What a ResponseWriter sends for one response, read back from a socketpair."""
    import h11

    from phpsess.runtime.http_conn import ResponseWriter

    a, b = socket.socketpair()
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(f"{method} / HTTP/{version}\r\nHost: x\r\n\r\n".encode())
    conn.next_event()
    conn.next_event()
    w = ResponseWriter(b, conn, head_only=method == "HEAD", server="phpsess/t", date="D", write_timeout=5,
                       buffer=buffer)
    got: list[bytes] = []

    def read() -> None:
        while True:
            more = a.recv(65536)
            if not more:
                break
            got.append(more)

    reader = threading.Thread(target=read)
    reader.start()
    w.send_headers(status, headers)
    for c in chunks:
        w.write(c)
    w.finish()
    b.close()
    reader.join(10)
    a.close()
    assert not w.broken
    return b"".join(got)


def test_response_sets_length_and_closes() -> None:
    data = _written(404, [("X-A", "1"), ("Content-Length", "99"), ("Connection", "keep-alive")], [b"go", b"ne"])
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 404 Not Found"
    assert [ln for ln in lines[1:] if not ln.lower().startswith(("date: ", "server: "))] == [
        "X-A: 1", "Content-Length: 4", "Connection: close"]
    assert body == b"gone"
    assert _written(200, [], [b"gone"], method="HEAD").endswith(b"Content-Length: 4\r\nConnection: close\r\n\r\n")


def test_big_response_is_streamed_not_buffered() -> None:
    chunks = [b"x" * 1000] * 300
    data = _written(200, [("X-A", "1")], chunks, buffer=4096)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert body.endswith(b"0\r\n\r\n")
    data10 = _written(200, [], chunks, version="1.0", buffer=4096)
    head, _, body = data10.partition(b"\r\n\r\n")
    assert b"chunked" not in head and body == b"x" * 300_000  # HTTP/1.0: until the close


def test_header_with_a_control_character_is_never_sent() -> None:
    data = _written(200, [("X-Ok", "1"), ("X-Bad", "a\x00b")], [b"body"])
    assert b"X-Ok: 1" in data and b"X-Bad" not in data and b"\x00" not in data


# -- the real server over cgi-bin -------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(CGI_BIN, tmp_path_factory.mktemp("serve")).start()
    try:
        yield server
    finally:
        left = server.stop()
        assert left == [], f"processes left after SIGTERM: {left}"


def php_headers(r: Response) -> list[tuple[str, str]]:
    """The headers PHP itself would send (no Date/Server/...), session ids masked."""
    out = []
    for n, v in r.headers:
        if n.lower() in SERVER_HEADERS:
            continue
        out.append((n.lower(), re.sub(r"PHPSESSID=[0-9a-z]{20,}", "PHPSESSID=<id>", v)))
    return out


def php_cgi(script: Path, save_path: Path, cookie: str = "", method: str = "GET",
            body: bytes = b"") -> tuple[list[tuple[str, str]], bytes]:
    """Run ``script`` with real php-cgi as a web server would; return (headers, body)."""
    env = {"REDIRECT_STATUS": "200", "SCRIPT_FILENAME": str(script), "REQUEST_METHOD": method,
           "HTTP_COOKIE": cookie, "GATEWAY_INTERFACE": "CGI/1.1", "PATH": os.environ.get("PATH", "")}
    if body:
        env.update(CONTENT_TYPE="application/x-www-form-urlencoded", CONTENT_LENGTH=str(len(body)))
    out = subprocess.run([require("php-cgi"), "-n", "-d", f"session.save_path={save_path}",
                          "-d", "expose_php=0"], input=body, env=env, capture_output=True, timeout=30, check=True)
    head, _, payload = out.stdout.partition(b"\r\n\r\n")
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in head.decode().split("\r\n")]
    return [(n.lower(), re.sub(r"PHPSESSID=[0-9a-z]{20,}", "PHPSESSID=<id>", v)) for n, v in headers], payload


COUNTER_PHP = """<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain; charset=UTF-8');
echo "n = {$_SESSION['n']}\\n";
"""

LOGOUT_PHP = """<?php
session_start();
$_SESSION = [];
$p = session_get_cookie_params();
setcookie(session_name(), '', time() - 42000, $p['path'], $p['domain'], $p['secure'], $p['httponly']);
session_destroy();
"""


def test_start_line_names_url_root_and_workers(srv: ServeProcess) -> None:
    assert srv.banner == f"phpsess serve: http://127.0.0.1:{srv.port}/ (root {CGI_BIN.resolve()}, 16 workers)"
    wait_for(lambda: len(srv.processes()) == 1 + 16, 10, "16 workers")


def test_counter_speaks_php_and_shares_the_session_file_with_php_cgi(srv: ServeProcess, tmp_path: Path) -> None:
    counter_php = tmp_path / "counter.php"
    counter_php.write_text(COUNTER_PHP)
    first = http_get(srv.port, "/counter.py")
    php_first = php_cgi(counter_php, srv.sessions)
    assert first.status == 200
    assert (php_headers(first), first.body) == php_first
    assert php_headers(first)[0] == ("set-cookie", "PHPSESSID=<id>; path=/")
    cookie = cookie_of(first.header("Set-Cookie") or "")
    assert srv.session_file(cookie).read_bytes() == b"n|i:1;"
    # PHP continues the session phpsess started, and phpsess the one PHP wrote
    assert php_cgi(counter_php, srv.sessions, cookie)[1] == b"n = 2\n"
    assert srv.session_file(cookie).read_bytes() == b"n|i:2;"
    third = http_get(srv.port, "/counter.py", cookie=cookie)
    assert third.body == b"n = 3\n"
    assert third.all("Set-Cookie") == []  # id from the cookie: not sent again (PHP)
    assert (php_headers(third), third.body.replace(b"3", b"4")) == php_cgi(counter_php, srv.sessions, cookie)


def test_login_moves_the_session_to_a_new_id(srv: ServeProcess) -> None:
    form = http_get(srv.port, "/login.py")
    assert form.status == 200 and b'<form method="post"' in form.body
    cookie = cookie_of(form.header("Set-Cookie") or "")
    wrong = http_get(srv.port, "/login.py", method="POST", cookie=cookie, body=b"user=ann&password=nope",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status == 403 and b'id="error"' in wrong.body
    ok = http_get(srv.port, "/login.py", method="POST", cookie=cookie, body=b"user=ann&password=secret",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ok.status == 303 and ok.header("Location") == "login.py"
    new_cookie = cookie_of(ok.header("Set-Cookie") or "")
    assert new_cookie.startswith("PHPSESSID=") and new_cookie != cookie
    assert not srv.session_file(cookie).exists()  # session_regenerate_id(true) deleted it
    assert srv.session_file(new_cookie).read_bytes() == b'failed|i:1;user|s:3:"ann";logins|i:1;'
    page = http_get(srv.port, "/login.py", cookie=new_cookie)
    assert b'<b id="user">ann</b>' in page.body


def test_logout_destroys_the_session_and_expires_the_cookie_as_php(srv: ServeProcess, tmp_path: Path) -> None:
    cookie = cookie_of(http_get(srv.port, "/counter.py").header("Set-Cookie") or "")
    out = http_get(srv.port, "/logout.py", cookie=cookie)
    assert out.status == 200 and b'id="status">Logged out.' in out.body
    assert not srv.session_file(cookie).exists()
    logout_php = tmp_path / "logout.php"
    logout_php.write_text(LOGOUT_PHP)
    cookie2 = cookie_of(http_get(srv.port, "/counter.py").header("Set-Cookie") or "")
    php_out, _ = php_cgi(logout_php, srv.sessions, cookie2)
    assert not srv.session_file(cookie2).exists()
    assert php_headers(out) == php_out
    assert out.header("Set-Cookie") == "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"


def test_slow_endpoint_answers_json(srv: ServeProcess) -> None:
    r = http_get(srv.port, "/slow.py?mode=close&i=7&ms=10")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    data = json.loads(r.body)
    assert data["i"] == "7" and data["mode"] == "close" and data["hits"] == 0
    assert data["start"] <= data["session"] <= data["end"] and data["pid"] > 0


def test_root_is_the_demo_page(srv: ServeProcess) -> None:
    r = http_get(srv.port, "/")
    assert r.status == 200 and r.header("Content-Type") == "text/html; charset=UTF-8"
    for mode in ("hold", "close", "merge"):
        assert f'<span id="total-{mode}">'.encode() in r.body
    assert b"<script src" not in r.body and b"<link" not in r.body  # no external assets
    ports = json.loads(re.search(rb'data-ports="([^"]*)"', r.body).group(1).replace(b"&quot;", b'"'))
    assert len(ports) == 3 and ports[0] == srv.port
    for port in ports[1:]:  # the extra ports serve the same scripts, with CORS for the page
        r2 = http_get(port, "/slow.py?mode=close&ms=0", headers={"Origin": f"http://127.0.0.1:{srv.port}"})
        assert r2.status == 200
        assert r2.header("Access-Control-Allow-Origin") == f"http://127.0.0.1:{srv.port}"
        assert r2.header("Access-Control-Allow-Credentials") == "true"


@pytest.mark.parametrize("path", ["/nope.py", "/../etc/passwd", "/%2e%2e/README.md", "/.git/config",
                                  "/__pycache__/", "/demo.py%00.txt"])
def test_only_scripts_under_root_are_served(srv: ServeProcess, path: str) -> None:
    assert http_get(srv.port, path).status == 404


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_details(srv: ServeProcess) -> None:
    assert raw(srv.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head = raw(srv.port, b"HEAD /counter.py HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"Connection: close\r\n\r\n")
    assert b"Content-Length: 6\r\n" in head  # "n = 1\n", body not sent
    chunked = raw(srv.port, b"POST /login.py HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n\r\n"
                  b"8\r\nuser=bob\r\n10\r\n&password=secret\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 303 See Other\r\n")


def parallel(port: int, paths: list[str], cookie: str) -> tuple[float, list[Response]]:
    """Send the requests all at once (one thread each); return (wall time, responses)."""
    results: list[Response | BaseException] = [None] * len(paths)  # type: ignore[list-item]
    barrier = threading.Barrier(len(paths))

    def one(k: int) -> None:
        barrier.wait()
        try:
            results[k] = http_get(port, paths[k], cookie=cookie)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.monotonic() - started
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return wall, results  # type: ignore[return-value]


@pytest.fixture
def session_cookie(srv: ServeProcess) -> str:
    return cookie_of(http_get(srv.port, "/counter.py").header("Set-Cookie") or "")


def test_ten_parallel_requests_holding_the_session_run_one_at_a_time(srv: ServeProcess, session_cookie: str) -> None:
    wall, rs = parallel(srv.port, [f"/slow.py?mode=hold&i={i}" for i in range(10)], session_cookie)
    assert 4.5 <= wall < 8, srv.log()
    data = [json.loads(r.body) for r in rs]
    assert sorted(d["hits"] for d in data) == list(range(1, 11))  # each saw the previous one's write
    assert len({d["pid"] for d in data}) == 10  # ten workers, nine of them blocked on the lock
    assert max(d["start"] for d in data) - min(d["start"] for d in data) < 1.0  # all arrived at once
    assert b"hits|i:10;" in srv.session_file(session_cookie).read_bytes()


def test_ten_parallel_requests_closing_early_run_together(srv: ServeProcess, session_cookie: str) -> None:
    wall, rs = parallel(srv.port, [f"/slow.py?mode=close&i={i}" for i in range(10)], session_cookie)
    assert wall < 1.5, srv.log()
    assert all(r.status == 200 for r in rs)


def test_ten_parallel_requests_in_merge_mode_run_together_and_all_save(srv: ServeProcess, session_cookie: str) -> None:
    wall, rs = parallel(srv.port, [f"/slow.py?mode=merge&i={i}" for i in range(10)], session_cookie)
    assert wall < 1.5, srv.log()
    stored = srv.session_file(session_cookie).read_bytes()
    assert all(f"slow_{i}|".encode() in stored for i in range(10)), stored
    assert b"n|i:1;" in stored  # what the requests did not touch is kept


def test_ten_parallel_counters_count_to_ten(srv: ServeProcess) -> None:
    cookie = f"PHPSESSID={'c0ffee' * 5}ab"
    _, rs = parallel(srv.port, ["/counter.py"] * 10, cookie)
    assert sorted(r.body for r in rs) == sorted(f"n = {n}\n".encode() for n in range(1, 11))
    assert srv.session_file(cookie).read_bytes() == b"n|i:10;"


def test_a_dead_worker_is_replaced(srv: ServeProcess) -> None:
    workers = srv.processes()[1:]
    workers[0].kill()
    wait_for(lambda: len(srv.processes()) == 17 and workers[0].pid not in {p.pid for p in srv.processes()},
             5, "a new worker")
    assert http_get(srv.port, "/counter.py").status == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_master_and_workers_even_mid_request(tmp_path: Path, sig: int) -> None:
    server = ServeProcess(CGI_BIN, tmp_path, workers=4).start()
    try:
        cookie = cookie_of(http_get(server.port, "/counter.py").header("Set-Cookie") or "")
        wait_for(lambda: len(server.processes()) == 5, 10, "4 workers")
        family = server.processes()
        busy = [threading.Thread(target=_ignore_errors, args=(server.port, f"/slow.py?mode=hold&ms=3000&i={i}",
                                                               cookie)) for i in range(3)]
        for t in busy:
            t.start()
        wait_for(lambda: _in_flight(server) == 3, 5, "3 requests in flight")
        started = time.monotonic()
        assert server.stop(sig) == []
        assert time.monotonic() - started < 3
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
        for t in busy:
            t.join(10)
    finally:
        server.stop(signal.SIGKILL)


def _ignore_errors(port: int, path: str, cookie: str) -> None:
    try:
        http_get(port, path, cookie=cookie, timeout=10)
    except OSError:
        pass


def _in_flight(server: ServeProcess) -> int:
    """How many workers hold an established client connection."""
    busy = 0
    for p in server.processes()[1:]:
        try:
            busy += any(c.status == psutil.CONN_ESTABLISHED for c in p.net_connections("tcp"))
        except psutil.Error:
            pass
    return busy
