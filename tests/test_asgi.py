"""phpsess.asgi.SessionMiddleware: ``request.session`` is the PHP session in Starlette (and
FastAPI, which is Starlette underneath).  Starlette's TestClient and httpx's ASGI transport,
in process; session files under tmp_path.

Starlette's own session tests are the pattern (tests/middleware/test_session.py in
Starlette's repository): ``test_session`` (set, read back, clear), ``test_session_expires``
-- here PHP's cookie, and ``test_secure_session``'s "a session of another site is not
accepted" -- here an id the store does not know is not adopted.  The event loop is never
blocked by a lock wait, and the lock is released when the response is sent, after an error,
or when the client goes away.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import phpsess
from phpsess.asgi import SessionMiddleware, scope_environ

try:  # what Starlette's TestClient uses: httpx2 since Starlette 1.x, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

NOCACHE = [
    ("expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
    ("cache-control", "no-store, no-cache, must-revalidate"),
    ("pragma", "no-cache"),
]


async def count(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    await asyncio.sleep(float(request.query_params.get("hold", 0)))
    return PlainTextResponse(str(request.session["n"]))


def count_sync(request: Request) -> Response:
    # a sync endpoint runs in Starlette's threadpool: the current PHP request goes along
    phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
    time.sleep(float(request.query_params.get("hold", 0)))
    return PlainTextResponse(f"{phpsess.SESSION['n']} {phpsess.session_id() == request.session.id}")


async def keyed(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("hold", 0)))
    request.session[request.query_params["key"]] = 1
    return JSONResponse(dict(request.session))


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def cached(request: Request) -> Response:
    request.session["seen"] = True
    return PlainTextResponse("ok", headers={"Cache-Control": "public, max-age=60"})


async def login(request: Request) -> Response:
    request.session.regenerate_id()
    request.session["user"] = request.query_params["user"]
    return PlainTextResponse(request.session.id)


async def logout(request: Request) -> Response:
    request.session.destroy()
    return PlainTextResponse("bye")


async def boom(request: Request) -> Response:
    request.session["before_error"] = True
    raise LookupError("boom")


async def read(request: Request) -> Response:
    return PlainTextResponse(str(request.session.get("n", "none")))


ROUTES = [Route(p, f) for p, f in [
    ("/count", count), ("/count_sync", count_sync), ("/keyed", keyed), ("/ping", ping), ("/cached", cached),
    ("/login", login), ("/logout", logout), ("/boom", boom), ("/read", read)]]


def make_app(save: Path, **kw: Any) -> Starlette:
    ini = {"session.save_path": str(save), "session.gc_probability": 0}
    return Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, ini=ini, **kw)])


@pytest.fixture
def save(tmp_path: Path) -> Path:
    d = tmp_path / "sessions"
    d.mkdir(mode=0o700)
    return d


def sid_of(r: httpx.Response) -> str:
    lines = r.headers.get_list("set-cookie")
    assert len(lines) == 1, lines
    return lines[0].split(";")[0].split("=", 1)[1]


def test_session_is_php_s_with_php_s_cookie_and_cache_headers(save: Path) -> None:
    with TestClient(make_app(save)) as client:
        first = client.get("/count")
        sid = sid_of(first)
        assert first.text == "1" and first.headers["set-cookie"] == f"PHPSESSID={sid}; path=/"
        assert [(n, v) for n, v in first.headers.multi_items() if n in ("expires", "cache-control", "pragma")] == NOCACHE
        assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"
        again = client.get("/count")
        assert again.text == "2" and "set-cookie" not in again.headers
        assert client.get("/count_sync").text == "3 True"
        assert (save / f"sess_{sid}").read_bytes() == b"n|i:3;"


def test_starlette_test_session_read_clear_and_unknown_ids(save: Path) -> None:
    with TestClient(make_app(save)) as client:
        assert client.get("/read").text == "none" and list(save.iterdir()) == []  # nothing stored: no session
        client.get("/count")
        assert client.get("/read").text == "1"
        r = client.get("/logout")
        assert r.headers["set-cookie"].startswith("PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT")
        assert client.get("/read").text == "none" and list(save.iterdir()) == []
    with TestClient(make_app(save), cookies={"PHPSESSID": "notastoredsessionid"}) as client:
        r = client.get("/count")
        assert r.text == "1" and sid_of(r) != "notastoredsessionid"  # an unknown id is not adopted


def test_login_regenerates_the_id(save: Path) -> None:
    with TestClient(make_app(save)) as client:
        sid = sid_of(client.get("/count"))
        r = client.get("/login?user=ann")
        assert r.text != sid and r.headers["set-cookie"] == f"PHPSESSID={r.text}; path=/"
        assert not (save / f"sess_{sid}").exists()
        assert (save / f"sess_{r.text}").read_bytes() == b'n|i:1;user|s:3:"ann";'


def test_cache_headers_rule(save: Path) -> None:
    with TestClient(make_app(save)) as client:
        r = client.get("/cached")
        assert r.headers.get_list("cache-control") == ["public, max-age=60"] and "expires" not in r.headers
        assert "set-cookie" in r.headers
    with TestClient(make_app(save, cache_headers="php")) as client:
        r = client.get("/cached")
        assert [(n, v) for n, v in r.headers.multi_items() if n in ("expires", "cache-control", "pragma")] == NOCACHE


async def _gather(app: Starlette, requests: list[tuple[str, str | None]]) -> tuple[list[httpx.Response], list[float]]:
    """Send the requests at once (each with its cookie); their responses and end times."""
    transport = httpx.ASGITransport(app=app)
    ends: list[float] = [0.0] * len(requests)

    async def one(k: int, path: str, sid: str | None) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     cookies={"PHPSESSID": sid} if sid else None) as c:
            r = await c.get(path)
        ends[k] = time.monotonic()
        return r

    responses = await asyncio.gather(*(one(k, p, s) for k, (p, s) in enumerate(requests)))
    return list(responses), ends


def test_a_lock_wait_does_not_block_the_event_loop(save: Path) -> None:
    app = make_app(save)
    with TestClient(app) as client:
        sid = sid_of(client.get("/count"))

    async def scenario() -> None:
        t0 = time.monotonic()
        # the holder keeps the lock 0.5 s; the waiter waits for it in a thread; ping is served at once
        holder = asyncio.ensure_future(_gather(app, [("/count?hold=0.5", sid)]))
        await asyncio.sleep(0.1)
        (waiter, pinged), ends = await _gather(app, [("/count", sid), ("/ping", None)])
        (held,), _ = await holder
        assert pinged.text == "pong" and ends[1] - t0 < 0.35
        assert ends[0] - t0 >= 0.45
        assert sorted([held.text, waiter.text]) == ["2", "3"]

    asyncio.run(scenario())
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:3;"


def test_ten_concurrent_increments_are_exact(save: Path) -> None:
    app = make_app(save)
    with TestClient(app) as client:
        sid = sid_of(client.get("/count"))
    responses, _ = asyncio.run(_gather(app, [("/count", sid)] * 5 + [("/count_sync", sid)] * 5))
    assert sorted(int(r.text.split()[0]) for r in responses) == list(range(2, 12))
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:11;"


@pytest.mark.parametrize("mode", ["merge", "read_only"])
def test_merge_and_read_only_do_not_hold_the_lock(save: Path, mode: str) -> None:
    app = make_app(save, mode=lambda scope: mode if scope["path"] == "/keyed" else None)
    with TestClient(app) as client:
        sid = sid_of(client.get("/count"))
    t0 = time.monotonic()
    responses, _ = asyncio.run(_gather(app, [(f"/keyed?key=k{k}&hold=0.3", sid) for k in range(4)]))
    assert time.monotonic() - t0 < 0.9  # all four at once
    stored = (save / f"sess_{sid}").read_bytes()
    if mode == "merge":
        assert stored.startswith(b"n|i:1;") and all(f"k{k}|i:1;".encode() in stored for k in range(4))
    else:
        assert stored == b"n|i:1;"
    assert all(r.status_code == 200 for r in responses)


async def _raw_call(app: Any, path: str, cookie: str, *, disconnect: bool = False) -> list[dict[str, Any]]:
    """Call the ASGI app as a server does; with ``disconnect`` the client goes away mid-request."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"cookie", cookie.encode())], "client": ("127.0.0.1", 1),
             "server": ("test", 80)}

    async def receive() -> dict[str, Any]:
        if disconnect:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_the_lock_is_released_after_an_error_and_a_disconnect(save: Path) -> None:
    with TestClient(make_app(save)) as client:
        sid = sid_of(client.get("/count"))

    async def waits_for_the_client(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["waited"] = True
        while (await receive())["type"] != "http.disconnect":
            pass
        raise asyncio.CancelledError  # as a server cancels a request whose client went away

    async def raising(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["raised"] = True
        raise LookupError("boom")

    ini = {"session.save_path": str(save)}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_raw_call(SessionMiddleware(waits_for_the_client, ini), "/", f"PHPSESSID={sid}", disconnect=True))
    with pytest.raises(LookupError):
        asyncio.run(_raw_call(SessionMiddleware(raising, ini), "/", f"PHPSESSID={sid}"))
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;waited|b:1;raised|b:1;"  # written, as PHP does
    t0 = time.monotonic()
    with TestClient(make_app(save), cookies={"PHPSESSID": sid}, raise_server_exceptions=False) as client:
        assert client.get("/count").text == "2"
        assert client.get("/boom").status_code == 500
    assert time.monotonic() - t0 < 1  # no lock left behind


def test_a_streamed_response_holds_the_lock_until_its_last_body_message(save: Path) -> None:
    """Lock mode: the lock is held while the response streams, and the session is written
    and unlocked just before the last body message goes to the server (so a client that
    has the whole response finds the session free)."""
    with TestClient(make_app(save)) as client:
        sid = sid_of(client.get("/count"))
    path = save / f"sess_{sid}"

    def state() -> tuple[bytes, bool]:
        """The stored bytes, and whether PHP's flock on the file is free right now."""
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read(), False
            fcntl.flock(f, fcntl.LOCK_UN)
            return f.read(), True

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["n"] += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for chunk in (b"a", b"b"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    seen: list[tuple[bool, tuple[bytes, bool]]] = []

    async def server_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            seen.append((message.get("more_body", False), state()))

    async def call() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"test"), (b"cookie", f"PHPSESSID={sid}".encode())],
                 "client": ("127.0.0.1", 1), "server": ("test", 80)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await SessionMiddleware(streaming, {"session.save_path": str(save)})(scope, receive, server_send)

    asyncio.run(call())
    assert seen == [(True, (b"n|i:1;", False)), (True, (b"n|i:1;", False)), (False, (b"n|i:2;", True))]


def test_php_diagnostics_are_logged(save: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, ini={"save_path": str(save / "no")})])
    with caplog.at_level(logging.WARNING, logger="phpsess.asgi"):
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/count").status_code == 500
    texts = [r.getMessage() for r in caplog.records if r.name == "phpsess.asgi"]
    assert f"PHP Warning: session_start(): Failed to read session data: files (path: {save / 'no'})" in texts


def test_lifespan_passes_through_and_websockets_read_only(save: Path) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("n")))
        websocket.session["n"] = 99  # read only: not written
        await websocket.close()

    app = Starlette(routes=[*ROUTES, WebSocketRoute("/ws", ws)],
                    middleware=[Middleware(SessionMiddleware, ini={"save_path": str(save)})])
    with TestClient(app) as client:  # (runs the lifespan)
        sid = sid_of(client.get("/count"))
        with client.websocket_connect("/ws") as conn:
            assert conn.receive_text() == "1"
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"


def test_scope_environ() -> None:
    env = scope_environ({"type": "http", "method": "POST", "path": "/a", "query_string": b"x=%C3%A9",
                         "headers": [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-type", b"text/plain"),
                                     (b"x-thing", b"\xc3\xa9")], "client": ("10.0.0.1", 5), "server": ("h", 8000)})
    assert env["HTTP_COOKIE"] == "a=1; b=2" and env["CONTENT_TYPE"] == "text/plain" and env["HTTP_X_THING"] == "é"
    assert (env["REQUEST_METHOD"], env["QUERY_STRING"], env["REMOTE_ADDR"], env["SERVER_PORT"]) == (
        "POST", "x=%C3%A9", "10.0.0.1", "8000")
