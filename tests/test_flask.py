"""phpsess.flask.PHPSessionInterface: ``flask.session`` is the PHP session.  Flask's test
client, in process; session files under tmp_path; threads for the lock.

Flask's own session tests are the pattern (tests/test_basic.py in Flask's repository):
``test_session`` (set in one request, read in the next), ``test_session_vary_cookie``
(``Vary: Cookie`` when the session was used), ``test_session_expiration`` (a permanent
session's cookie carries an expiry), ``test_flashes`` (flash() lives in the session),
and tests/test_testing.py's ``test_session_transactions`` (``client.session_transaction()``).
What is PHP's instead of Flask's (the cookie's format, the cache limiter's headers, the
locking) is asserted as PHP 8.2 sends and does it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import flask
import pytest

import phpsess
from phpsess.errors import SessionStartError
from phpsess.flask import PHPSessionInterface

NOCACHE = [
    ("Expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
]


def make_app(save: Path, **kw: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.session_interface = PHPSessionInterface({"session.save_path": str(save), "session.gc_probability": 0}, **kw)

    @app.route("/count")
    def count() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        time.sleep(float(flask.request.args.get("hold", 0)))
        return str(flask.session["n"])

    @app.route("/read")
    def read() -> str:
        mode = flask.request.args.get("mode")
        if mode:
            flask.session.start(mode=mode)  # type: ignore[attr-defined]
        value = flask.session.get("n", "none")
        time.sleep(float(flask.request.args.get("hold", 0)))
        if mode:
            flask.session[flask.request.args.get("key", "r")] = 1
        return str(value)

    @app.route("/cached")
    def cached() -> flask.Response:
        flask.session["seen"] = True
        return flask.Response("ok", headers={"Cache-Control": "public, max-age=60"})

    @app.route("/login")
    def login() -> str:
        old = flask.session.id  # type: ignore[attr-defined]
        new = flask.session.regenerate_id()  # type: ignore[attr-defined]
        flask.session["user"] = flask.request.args["user"]
        return f"{old} {new}"

    @app.route("/logout")
    def logout() -> str:
        flask.session.destroy()  # type: ignore[attr-defined]
        return "bye"

    @app.route("/php")
    def php_api() -> str:
        flask.session["via_flask"] = 1
        phpsess.SESSION["via_php"] = 2
        return f"{phpsess.session_id()}={flask.session.id} {sorted(flask.session)}"  # type: ignore[attr-defined]

    @app.route("/flash")
    def flash() -> str:
        flask.flash("saved", "info")
        return "flashed"

    @app.route("/flashes")
    def flashes() -> str:
        return repr(flask.get_flashed_messages(with_categories=True))

    @app.route("/permanent")
    def permanent() -> str:
        flask.session["p"] = 1
        flask.session.permanent = True
        return "p"

    @app.route("/untouched")
    def untouched() -> str:
        return "nothing"

    return app


@pytest.fixture
def save(tmp_path: Path) -> Path:
    d = tmp_path / "sessions"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def app(save: Path) -> flask.Flask:
    return make_app(save)


def cookie(response: Any) -> str:
    lines = response.headers.getlist("Set-Cookie")
    assert len(lines) == 1, lines
    return str(lines[0])


def sid_of(response: Any) -> str:
    return cookie(response).split(";")[0].split("=", 1)[1]


def test_no_start_call_the_session_is_php_s(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    first = client.get("/count")
    sid = sid_of(first)
    assert first.text == "1" and len(sid) == 32
    assert cookie(first) == f"PHPSESSID={sid}; path=/"  # PHP's Set-Cookie, byte for byte
    assert [(n, v) for n, v in first.headers if n in ("Expires", "Cache-Control", "Pragma")] == NOCACHE
    assert first.headers["Vary"] == "Cookie"
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"
    again = client.get("/count")
    assert again.text == "2" and again.headers.getlist("Set-Cookie") == []
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:2;"


def test_flask_test_session_set_then_get_across_requests(app: flask.Flask, save: Path) -> None:
    """Flask's test_session: what one request stores, the next one reads."""
    client = app.test_client()
    assert client.get("/read").text == "none"
    assert list(save.iterdir()) == []  # read, nothing stored: no session was created
    client.get("/count")
    assert client.get("/read").text == "1"


def test_a_request_that_does_not_use_the_session_reads_nothing(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    client.get("/count")
    r = client.get("/untouched")
    assert r.headers.getlist("Set-Cookie") == [] and "Vary" not in r.headers
    assert "Cache-Control" not in r.headers  # no session started: no cache limiter


def test_an_unknown_cookie_id_is_not_adopted(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    client.set_cookie("PHPSESSID", "unknownunknownunknown")
    r = client.get("/count")
    assert r.text == "1" and sid_of(r) != "unknownunknownunknown"
    assert not (save / "sess_unknownunknownunknown").exists()


def test_cache_headers_app_rule_keeps_the_view_s_cache_control(save: Path) -> None:
    r = make_app(save).test_client().get("/cached")
    assert r.headers.getlist("Cache-Control") == ["public, max-age=60"]
    assert "Expires" not in r.headers and "Pragma" not in r.headers
    assert r.headers.getlist("Set-Cookie")  # the session cookie still goes out
    r = make_app(save, cache_headers="php").test_client().get("/cached")
    assert [(n, v) for n, v in r.headers if n in ("Expires", "Cache-Control", "Pragma")] == NOCACHE


def test_regenerate_id_moves_the_session_and_deletes_the_old_one(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    sid = sid_of(client.get("/count"))
    r = client.get("/login?user=ann")
    old, new = r.text.split()
    assert old == sid and new != sid and cookie(r) == f"PHPSESSID={new}; path=/"
    assert not (save / f"sess_{sid}").exists()
    assert (save / f"sess_{new}").read_bytes() == b'n|i:1;user|s:3:"ann";'


def test_destroy_deletes_the_session_and_the_cookie(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    sid = sid_of(client.get("/count"))
    r = client.get("/logout")
    assert not (save / f"sess_{sid}").exists()
    assert cookie(r) == "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"
    assert client.get("/read").text == "none"


def test_phpsess_api_in_a_view_is_the_same_session(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    sid = sid_of(client.get("/count"))
    assert client.get("/php").text == f"{sid}={sid} ['n', 'via_flask', 'via_php']"
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;via_flask|i:1;via_php|i:2;"


def test_flask_flashes_live_in_the_php_session(app: flask.Flask) -> None:
    client = app.test_client()
    client.get("/flash")
    assert client.get("/flashes").text == "[['info', 'saved']]"  # PHP arrays: lists, not tuples
    assert client.get("/flashes").text == "[]"


def test_flask_session_expiration_permanent_sets_the_cookie_lifetime(app: flask.Flask) -> None:
    r = app.test_client().get("/permanent")
    line = cookie(r)
    assert "; expires=" in line and "; Max-Age=2678400; path=/" in line  # 31 days, PHP's format


def test_flask_session_transaction(app: flask.Flask, save: Path) -> None:
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["n"] = 41
    assert client.get("/count").text == "42"
    with client.session_transaction() as sess:
        assert sess["n"] == 42


def test_the_lock_is_held_for_the_request_and_no_update_is_lost(app: flask.Flask, save: Path) -> None:
    sid = sid_of(app.test_client().get("/count"))
    started: list[float] = []

    def client_loop(k: int) -> None:
        c = app.test_client()
        c.set_cookie("PHPSESSID", sid)
        for _ in range(10):
            started.append(time.monotonic())
            c.get("/count?hold=0.002")

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:31;"
    # a request holding the lock makes the next one wait
    c1, c2 = app.test_client(), app.test_client()
    for c in (c1, c2):
        c.set_cookie("PHPSESSID", sid)
    holder = threading.Thread(target=c1.get, args=("/count?hold=0.5",))
    holder.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert c2.get("/count").text == "33"
    assert time.monotonic() - t0 >= 0.3
    holder.join()


@pytest.mark.parametrize("mode", ["read_only", "merge"])
def test_read_only_and_merge_do_not_hold_the_lock(app: flask.Flask, save: Path, mode: str) -> None:
    sid = sid_of(app.test_client().get("/count"))
    clients = [app.test_client() for _ in range(2)]
    for c in clients:
        c.set_cookie("PHPSESSID", sid)
    out: list[str] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda c=c, k=k: out.append(c.get(f"/read?mode={mode}&hold=0.4&key=k{k}").text))
               for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - t0 < 0.75 and out == ["1", "1"]  # both ran at once
    stored = (save / f"sess_{sid}").read_bytes()
    if mode == "read_only":
        assert stored == b"n|i:1;"  # read_and_close: nothing written
    else:
        assert stored in (b"n|i:1;k0|i:1;k1|i:1;", b"n|i:1;k1|i:1;k0|i:1;")  # merged: both keys kept


def test_interface_mode_applies_to_every_request(save: Path) -> None:
    app = make_app(save, mode="read_only")
    client = app.test_client()
    r = client.get("/count")
    assert r.text == "1" and r.headers.getlist("Set-Cookie") == [] and list(save.iterdir()) == []


def test_php_diagnostics_are_logged_not_warned(save: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = flask.Flask(__name__)
    app.session_interface = PHPSessionInterface({"session.save_path": str(save / "missing")})

    @app.route("/")
    def index() -> str:
        flask.session["x"] = 1
        return "x"

    # (filterwarnings = error: a PHPWarning would fail this test)
    with caplog.at_level(logging.WARNING, logger="phpsess.flask"):
        r = app.test_client().get("/")
    assert r.status_code == 500  # the session could not be created: SessionStartError, not a silent loss
    texts = [rec.getMessage() for rec in caplog.records if rec.name == "phpsess.flask"]
    assert "PHP Warning: session_start(): Failed to read session data: files (path: %s)" % (save / "missing") in texts
    errors = [rec.exc_info[1] for rec in caplog.records if rec.exc_info]
    assert any(isinstance(e, SessionStartError) for e in errors)


def test_an_error_in_a_view_still_writes_and_unlocks(save: Path) -> None:
    app = make_app(save)

    @app.route("/boom")
    def boom() -> str:
        flask.session["before_error"] = True
        raise LookupError("boom")

    client = app.test_client()
    sid = sid_of(client.get("/count"))
    assert client.get("/boom").status_code == 500
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;before_error|b:1;"
    t0 = time.monotonic()
    assert client.get("/count").text == "2" and time.monotonic() - t0 < 1


@pytest.fixture(autouse=True)
def _no_current_request_left() -> Iterator[None]:
    yield
    from phpsess.session.context import active_request

    assert active_request() is None  # every request stopped being current
