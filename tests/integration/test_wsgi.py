"""SessionMiddleware: the PHP API inside a WSGI application.  In process first (calling the
middleware as a server would), then a plain WSGI app under gunicorn with two concurrent
clients.  Writes session files under tmp_path; starts gunicorn and stops it.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

import phpsess
from phpsess.errors import PHPWarning
from phpsess.wsgi import SessionMiddleware, cgi_environ, merge_headers
from tests.gctools import cycle_garbage
from tests.integration.nginx import REPO, free_port, http_get, stop_process, wait_for_socket

pytestmark = pytest.mark.slow

NOCACHE = [
    ("Expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
]


class Call:
    """One WSGI call made as a server makes it: start_response captured, body iterated, closed."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: str = "/", cookie: str = "",
                 method: str = "GET", body: bytes = b"", ctype: str = "") -> None:
        path, _, query = path.partition("?")
        self.environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "test",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
        }
        if cookie:
            self.environ["HTTP_COOKIE"] = cookie
        if body:
            self.environ["CONTENT_LENGTH"] = str(len(body))
            self.environ["CONTENT_TYPE"] = ctype
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.result = app(self.environ, self.start_response)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status, self.headers = status, list(headers)
        return lambda data: None

    def body(self, close: bool = True) -> bytes:
        try:
            return b"".join(self.result)
        finally:
            if close:
                self.result.close()  # type: ignore[attr-defined]

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def cookie(self) -> str:
        return self.header("Set-Cookie")[0].split(";")[0]


@pytest.fixture
def ini(tmp_path: Path) -> dict[str, str]:
    return {"session.save_path": str(tmp_path)}


def counter_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    phpsess.session_start()
    phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")])
    return [f"n={phpsess.SESSION['n']}".encode()]


def test_session_headers_join_the_application_headers(tmp_path: Path, ini: dict[str, str]) -> None:
    c = Call(SessionMiddleware(counter_app, ini=ini))
    assert c.status == "200 OK"
    sid = c.cookie.split("=")[1]
    assert c.headers == [("Content-Type", "text/plain"), ("Set-Cookie", f"PHPSESSID={sid}; path=/"), *NOCACHE]
    assert not (tmp_path / f"sess_{sid}").exists() or (tmp_path / f"sess_{sid}").read_bytes() == b""
    assert c.body() == b"n=1"
    assert (tmp_path / f"sess_{sid}").read_bytes() == b"n|i:1;"  # written by close()
    again = Call(SessionMiddleware(counter_app, ini=ini), cookie=c.cookie)
    assert again.body() == b"n=2" and again.header("Set-Cookie") == []


def test_a_finished_call_leaves_nothing_for_the_cycle_collector(ini: dict[str, str]) -> None:
    """A long-running WSGI server should not pay the cycle collector for every call."""
    app = SessionMiddleware(counter_app, ini=ini)

    def serve_once() -> bytes:  # a server that keeps nothing of the call (Call keeps its result)
        environ = dict(Call(lambda e, s: [b""]).environ, HTTP_COOKIE="PHPSESSID=abcdefabcdefabcdefabcdefab")
        result = app(environ, lambda status, headers, exc_info=None: (lambda data: None))
        try:
            return b"".join(result)
        finally:
            result.close()  # type: ignore[attr-defined]

    serve_once()
    body, left = cycle_garbage(serve_once)
    assert body == b"n=2"
    assert left == []


def test_session_is_written_when_the_response_is_closed(tmp_path: Path, ini: dict[str, str]) -> None:
    c = Call(SessionMiddleware(counter_app, ini=ini), cookie="PHPSESSID=abcdefabcdefabcdefabcdefab")
    assert c.body(close=False) == b"n=1"
    assert not (tmp_path / "sess_abcdefabcdefabcdefabcdefab").read_bytes()
    c.result.close()  # type: ignore[attr-defined]
    assert (tmp_path / "sess_abcdefabcdefabcdefabcdefab").read_bytes() == b"n|i:1;"


def test_an_application_error_still_writes_and_unlocks_the_session(tmp_path: Path, ini: dict[str, str]) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        phpsess.session_start()
        phpsess.SESSION["before_error"] = True
        raise LookupError("boom")

    cookie = "PHPSESSID=0123456789abcdef0123456789"
    with pytest.raises(LookupError):
        Call(SessionMiddleware(broken, ini=ini), cookie=cookie)
    assert (tmp_path / "sess_0123456789abcdef0123456789").read_bytes() == b"before_error|b:1;"
    started = time.monotonic()
    assert Call(SessionMiddleware(counter_app, ini=ini), cookie=cookie).body() == b"n=1"
    assert time.monotonic() - started < 1  # no lock left behind


def test_a_generator_error_after_the_first_chunk_still_closes(tmp_path: Path, ini: dict[str, str]) -> None:
    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        phpsess.session_start()
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        phpsess.SESSION["streamed"] = 1
        raise LookupError("mid-stream")

    c = Call(SessionMiddleware(streaming, ini=ini))
    with pytest.raises(LookupError):
        c.body()
    assert (tmp_path / f"sess_{c.cookie.split('=')[1]}").read_bytes() == b"streamed|i:1;"


def test_php_status_and_headers_override_the_application(ini: dict[str, str]) -> None:
    def redirecting(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html"), ("X-App", "1"), ("Set-Cookie", "a=1")])
        phpsess.session_start()
        phpsess.header("Location: /next")
        phpsess.header("Content-Type: text/plain")
        phpsess.setcookie("b", "2")
        return [b""]

    c = Call(SessionMiddleware(redirecting, ini=ini))
    assert c.status == "302 Found"
    names = [n for n, _ in c.headers]
    # PHP's SAPI rebuilds a text/* Content-Type with its default charset: "Content-type: text/plain;charset=UTF-8"
    assert names == ["X-App", "Set-Cookie", "Set-Cookie", *[n for n, _ in NOCACHE], "Location", "Content-type",
                     "Set-Cookie"]
    assert c.header("Content-type") == ["text/plain;charset=UTF-8"] and c.header("Location") == ["/next"]
    c.body()


def test_headers_are_final_at_the_first_body_byte(ini: dict[str, str]) -> None:
    seen: list[bool] = []

    def late(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        seen.append(phpsess.headers_sent())
        yield b"body"
        seen.append(phpsess.headers_sent())
        with pytest.warns(PHPWarning, match="Cannot modify header information - headers already sent"):
            phpsess.header("X-Late: 1")

    c = Call(SessionMiddleware(late, ini=ini))
    assert c.body() == b"body"
    assert seen == [False, True] and c.header("X-Late") == []


def test_start_response_may_come_from_inside_the_iterable(ini: dict[str, str]) -> None:
    def lazy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        phpsess.session_start()
        start_response("201 Created", [("Content-Type", "text/plain")])
        yield b""
        yield b"made"

    c = Call(SessionMiddleware(lazy, ini=ini))
    assert c.status == "201 Created" and c.header("Set-Cookie")
    assert c.body() == b"made"


def test_post_form_is_parsed_and_wsgi_input_still_readable(ini: dict[str, str]) -> None:
    def form(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [f"{phpsess.POST['a']}|{environ['wsgi.input'].read().decode()}|{phpsess.GET['q']}".encode()]

    c = Call(SessionMiddleware(form, ini=ini), path="/x?q=3", method="POST", body=b"a=1&b=2",
             ctype="application/x-www-form-urlencoded")
    assert c.body() == b"1|a=1&b=2|3"


def test_interleaved_calls_keep_their_own_sessions(ini: dict[str, str]) -> None:
    def named(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        phpsess.session_start()
        phpsess.SESSION["who"] = phpsess.GET["who"]
        start_response("200 OK", [])
        yield b"."
        yield str(phpsess.SESSION["who"]).encode()
        yield phpsess.session_id().encode()  # type: ignore[union-attr]

    mw = SessionMiddleware(named, ini=ini)
    a, b = Call(mw, "/?who=a"), Call(mw, "/?who=b")
    ia, ib = iter(a.result), iter(b.result)
    assert [next(ia), next(ib), next(ia), next(ib)] == [b".", b".", b"a", b"b"]
    assert next(ia).decode() == a.cookie.split("=")[1] and next(ib).decode() == b.cookie.split("=")[1]
    a.result.close()  # type: ignore[attr-defined]
    b.result.close()  # type: ignore[attr-defined]


def test_capture_output_puts_print_into_the_body(ini: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test

    def printing(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        print("hello")
        return [b"end"]

    c = Call(SessionMiddleware(printing, ini=ini, capture_output=True))
    assert c.body() == b"hello\nend" and c.header("Content-Length") == []


def test_cache_headers_rule_php_by_default_app_on_request(ini: dict[str, str]) -> None:
    # counter_app sends its own "Cache-Control: max-age=60"
    php_order = Call(SessionMiddleware(counter_app, ini=ini))
    assert [(n, v) for n, v in php_order.headers if n != "Set-Cookie"] == [("Content-Type", "text/plain"), *NOCACHE]
    php_order.body()
    app_wins = Call(SessionMiddleware(counter_app, ini=ini, cache_headers="app"))
    assert [(n, v) for n, v in app_wins.headers if n != "Set-Cookie"] == [
        ("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")]
    assert app_wins.header("Set-Cookie")
    app_wins.body()
    with pytest.raises(ValueError, match='cache_headers must be "app" or "php"'):
        SessionMiddleware(counter_app, ini=ini, cache_headers="mine")


def test_cgi_environ_and_merge_headers() -> None:
    env = cgi_environ({"QUERY_STRING": "x=\xc3\xa9", "wsgi.input": io.BytesIO(), "HTTP_X": "1", "n": 3})
    assert env == {"QUERY_STRING": "x=é", "HTTP_X": "1"}
    assert merge_headers("200 OK", [("A", "1")], 200, [("Status", "404 Not Found"), ("B", "2")]) == (
        "404 Not Found", [("A", "1"), ("B", "2")])


# -- under gunicorn, two concurrent clients --------------------------------------------------

APP = '''
import os, time
import phpsess
from phpsess.wsgi import SessionMiddleware

def app(environ, start_response):
    phpsess.session_start()
    n = phpsess.SESSION.get("n", 0) + 1
    phpsess.SESSION["n"] = n
    if phpsess.GET.get("boom"):
        raise RuntimeError("boom")
    time.sleep(float(phpsess.GET.get("sleep", 0)))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"n={n} pid={os.getpid()}\\n".encode()]

application = SessionMiddleware(app, ini={"session.save_path": os.environ["SESSIONS"]})
'''


@pytest.fixture(params=["sync", "gthread"])
def gunicorn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    if importlib.util.find_spec("gunicorn") is None:
        pytest.fail("gunicorn is required for this test (pip install gunicorn)")
    (tmp_path / "app.py").write_text(APP)
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    port = free_port()
    workers = ["-w", "2"] if request.param == "sync" else ["-w", "1", "--threads", "2", "-k", "gthread"]
    env = {"SESSIONS": str(sessions), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *workers, "-b", f"127.0.0.1:{port}",
                                 "--chdir", str(tmp_path), "app:application"], stdout=log, stderr=log, env=env)
    try:
        wait_for_socket(("127.0.0.1", port), 20)
        yield port
    finally:
        stop_process(proc)


def two_at_once(port: int, paths: list[str], cookies: list[str]) -> tuple[float, list[bytes]]:
    out: list[bytes] = [b"", b""]
    barrier = threading.Barrier(2)

    def one(k: int) -> None:
        barrier.wait()
        out[k] = http_get(port, paths[k], cookie=cookies[k]).body

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return time.monotonic() - started, out


def test_gunicorn_two_clients_of_one_session_take_turns(gunicorn: int) -> None:
    first = http_get(gunicorn, "/")
    cookie = first.header("Set-Cookie").split(";")[0]  # type: ignore[union-attr]
    assert first.body.startswith(b"n=1 ")
    assert [n for n, _ in first.headers if n in ("Expires", "Cache-Control", "Pragma")] == [
        "Expires", "Cache-Control", "Pragma"]
    wall, bodies = two_at_once(gunicorn, ["/?sleep=1", "/?sleep=1"], [cookie, cookie])
    assert wall >= 1.9  # the second waited for the first's session lock
    assert sorted(b.split()[0] for b in bodies) == [b"n=2", b"n=3"]  # no lost update


def test_gunicorn_two_clients_of_two_sessions_run_together(gunicorn: int) -> None:
    c1 = http_get(gunicorn, "/").header("Set-Cookie").split(";")[0]  # type: ignore[union-attr]
    c2 = http_get(gunicorn, "/").header("Set-Cookie").split(";")[0]  # type: ignore[union-attr]
    wall, bodies = two_at_once(gunicorn, ["/?sleep=1", "/?sleep=1"], [c1, c2])
    assert wall < 1.8
    assert [b.split()[0] for b in bodies] == [b"n=2", b"n=2"]


def test_gunicorn_an_error_writes_and_releases_the_session(gunicorn: int) -> None:
    cookie = http_get(gunicorn, "/").header("Set-Cookie").split(";")[0]  # type: ignore[union-attr]
    assert http_get(gunicorn, "/?boom=1", cookie=cookie).status == 500
    r = http_get(gunicorn, "/", cookie=cookie, timeout=5)
    assert r.body.startswith(b"n=3 ")  # PHP saves the session after a fatal error too
