"""phpsess.django: Django's session API over the PHP session.  In process: Django configured
once for this module (settings.configure), its test client, session files under tmp_path,
threads for the lock.

Part 1 mirrors Django's own backend conformance tests, ``SessionTestsMixin`` in Django's
tests/sessions_tests/tests.py (Django's test suite is not installed with Django): each
``test_mixin_*`` names the upstream case it re-implements against
``phpsess.django.SessionStore``.  Where the engine is PHP's rather than Django's the test
says so and pins PHP's behaviour instead (the format is ``session.serialize_handler``'s;
an expiry is the cookie's lifetime, PHP keeping none in the session).  Part 2 runs views
through Django's test client, with phpsess's middleware and with Django's own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="phpsess-tests",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.sessions"],
        DATABASES={},
        USE_TZ=True,
        SESSION_ENGINE="phpsess.django",
        SESSION_COOKIE_NAME="PHPSESSID",
        MIDDLEWARE=["phpsess.django.SessionMiddleware"],
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.contrib.sessions.backends.base import CreateError, UpdateError  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse  # noqa: E402
from django.test import Client, RequestFactory, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

import phpsess  # noqa: E402
from phpsess.django import SessionMiddleware, SessionStore  # noqa: E402
from phpsess.session.context import active_request  # noqa: E402

NOCACHE = [
    ("Expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
]
STOCK = ["django.contrib.sessions.middleware.SessionMiddleware"]


# -- views --------------------------------------------------------------------------------
def count(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    time.sleep(float(request.GET.get("hold", 0)))
    return HttpResponse(str(request.session["n"]))


def read(request: HttpRequest) -> HttpResponse:
    mode = request.GET.get("mode")
    if mode:
        request.session.start(mode=mode)  # type: ignore[attr-defined]
    value = request.session.get("n", "none")
    time.sleep(float(request.GET.get("hold", 0)))
    if "key" in request.GET:
        request.session[request.GET["key"]] = 1
    return HttpResponse(str(value))


def login(request: HttpRequest) -> HttpResponse:
    old = request.session.session_key
    request.session.cycle_key()  # what django.contrib.auth.login() does
    request.session["user"] = request.GET["user"]
    return HttpResponse(f"{old} {request.session.session_key}")


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()  # what django.contrib.auth.logout() does
    return HttpResponse("bye")


def expiry(request: HttpRequest) -> HttpResponse:
    request.session["e"] = 1
    request.session.set_expiry(int(request.GET["s"]))
    return HttpResponse("e")


def cached(request: HttpRequest) -> HttpResponse:
    request.session["seen"] = True
    response = HttpResponse("ok")
    response["Cache-Control"] = "public, max-age=60"
    return response


def php_api(request: HttpRequest) -> HttpResponse:
    request.session["via_django"] = 1
    phpsess.SESSION["via_php"] = 2
    return HttpResponse(f"{phpsess.session_id() == request.session.session_key} {sorted(request.session.keys())}")


def boom(request: HttpRequest) -> HttpResponse:
    request.session["n"] = 1000
    return HttpResponse("server error", status=500)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    request.session["streamed"] = request.session.get("streamed", 0) + 1

    def body() -> Iterator[bytes]:
        yield b"a"
        time.sleep(float(request.GET.get("hold", 0)))
        yield b"b"

    return StreamingHttpResponse(body())


urlpatterns = [path(name, view) for name, view in [
    ("count", count), ("read", read), ("login", login), ("logout", logout), ("expiry", expiry),
    ("cached", cached), ("php", php_api), ("boom", boom), ("stream", stream)]]


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def save(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "sessions"
    d.mkdir(mode=0o700)
    with override_settings(PHPSESS_INI={"session.save_path": str(d), "session.gc_probability": 0}):
        yield d
    assert active_request() is None  # every request stopped being current


@pytest.fixture
def session(save: Path) -> Iterator[SessionStore]:
    s = SessionStore()
    yield s
    s.delete()


def sid_of(response: HttpResponse) -> str:
    return str(response.cookies["PHPSESSID"].value)


def set_cookie(response: HttpResponse) -> str:
    return response.cookies["PHPSESSID"].output(header="").strip()


# -- part 1: SessionTestsMixin ------------------------------------------------------------
def test_mixin_new_session(session: SessionStore) -> None:
    assert session.modified is False and session.accessed is False


def test_mixin_get_empty_and_store_and_pop(session: SessionStore) -> None:
    assert session.get("cat") is None
    session["cat"] = "dog"
    assert session.modified is True
    assert session.pop("cat") == "dog"
    assert session.pop("some key", "does not exist") == "does not exist"
    with pytest.raises(KeyError):
        session.pop("some key")


def test_mixin_setdefault_update_has_key_values_keys_items(session: SessionStore) -> None:
    assert session.setdefault("foo", "bar") == "bar" and session.setdefault("foo", "baz") == "bar"
    session.update({"update key": 1})
    assert session.get("update key") == 1
    session.modified = session.accessed = False
    assert "foo" in session and session.accessed and not session.modified
    assert list(session.values()) == ["bar", 1]
    assert list(session.keys()) == ["foo", "update key"]
    assert list(session.items()) == [("foo", "bar"), ("update key", 1)]


def test_mixin_clear(session: SessionStore) -> None:
    session["x"] = 1
    session.modified = session.accessed = False
    session.clear()
    assert list(session.items()) == [] and session.accessed and session.modified


def test_mixin_save_writes_php_s_format(session: SessionStore, save: Path) -> None:
    session["cat"] = "dog"
    session.save()
    assert session.exists(session.session_key) is True
    assert (save / f"sess_{session.session_key}").read_bytes() == b'cat|s:3:"dog";'  # session.serialize_handler


def test_mixin_delete(session: SessionStore) -> None:
    session.save()
    session.delete(session.session_key)
    assert session.exists(session.session_key) is False


def test_mixin_flush(session: SessionStore) -> None:
    session["foo"] = "bar"
    session.save()
    prev_key = session.session_key
    session.flush()
    assert session.exists(prev_key) is False and session.session_key != prev_key
    assert session.modified and session.accessed


def test_mixin_cycle(session: SessionStore) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    prev_key, prev_data = session.session_key, list(session.items())
    session.cycle_key()
    assert session.exists(prev_key) is False and session.session_key != prev_key
    assert list(session.items()) == prev_data


def test_mixin_cycle_with_no_session_cache(session: SessionStore) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    prev_data = list(session.items())
    other = SessionStore(session.session_key)
    assert not hasattr(other, "_session_cache")
    other.cycle_key()
    assert list(other.items()) == prev_data
    other.delete()


def test_mixin_save_doesnt_clear_data(session: SessionStore) -> None:
    session["a"] = "b"
    session.save()
    assert session["a"] == "b"


def test_mixin_invalid_key(save: Path) -> None:
    s = SessionStore("1")
    s.save()
    assert s.session_key != "1" and s.get("cat") is None
    s.delete()
    s.delete("1")


@pytest.mark.parametrize(("key", "kept"), [
    ("", None), ("1234567", None), ("12345678", "12345678"),
    ("1234567/../x", None), ("a" * 257, None),  # PHP's id grammar too: [A-Za-z0-9,-]{1,256}
])
def test_mixin_session_key_validation(save: Path, key: str, kept: str | None) -> None:
    """Upstream: test_session_key_empty_string_invalid, _too_short_invalid, _valid_string_saved."""
    s = SessionStore()
    s._session_key = key
    assert s.session_key == kept


def test_mixin_session_key_is_read_only(session: SessionStore) -> None:
    with pytest.raises(AttributeError):
        session.session_key = session._get_new_session_key()  # type: ignore[misc]


def test_mixin_default_expiry_is_php_s(session: SessionStore) -> None:
    """Upstream test_default_expiry expects SESSION_COOKIE_AGE: here the cookie's lifetime,
    or (a cookie until the browser closes, PHP's default) session.gc_maxlifetime."""
    assert session.get_expiry_age() == 1440 and session.get_expire_at_browser_close() is True
    session.set_expiry(0)
    assert session.get_expiry_age() == 1440


@pytest.mark.parametrize("kind", ["seconds", "timedelta", "datetime"])
def test_mixin_custom_expiry(session: SessionStore, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream: test_custom_expiry_seconds, _timedelta, _datetime."""
    modification = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: modification)
    value: Any = {"seconds": 10, "timedelta": timedelta(seconds=10),
                  "datetime": modification + timedelta(seconds=10)}[kind]
    session.set_expiry(value)
    assert session.get_expiry_date(modification=modification) == modification + timedelta(seconds=10)
    assert session.get_expiry_age(modification=modification) == 10
    assert session.bridge.config.cookie_lifetime == 10  # PHP's: the cookie carries it


def test_mixin_custom_expiry_reset(session: SessionStore) -> None:
    session.set_expiry(None)
    session.set_expiry(10)
    session.set_expiry(None)
    assert session.get_expiry_age() == 1440 and session.bridge.config.cookie_lifetime == 0


def test_mixin_get_expire_at_browser_close(save: Path) -> None:
    """Upstream flips SESSION_EXPIRE_AT_BROWSER_CLOSE: here session.cookie_lifetime decides."""
    for lifetime, default in ((0, True), (3600, False)):
        with override_settings(PHPSESS_INI={"session.save_path": str(save), "session.cookie_lifetime": lifetime}):
            s = SessionStore()
            s.set_expiry(10)
            assert s.get_expire_at_browser_close() is False
            s.set_expiry(0)
            assert s.get_expire_at_browser_close() is True
            s.set_expiry(None)
            assert s.get_expire_at_browser_close() is default


def test_mixin_decode(session: SessionStore) -> None:
    data = {"a test key": "a test value", "n": [1, 2.5, None, True]}
    encoded = session.encode(data)
    assert encoded == 'a test key|s:12:"a test value";n|a:4:{i:0;i:1;i:1;d:2.5;i:2;N;i:3;b:1;}'
    assert session.decode(encoded) == data


def test_mixin_decode_failure_logged(session: SessionStore, caplog: pytest.LogCaptureFixture) -> None:
    """Upstream logs to django.security.SuspiciousSession (a bad signature): PHP's format
    has no signature; an undecodable payload is logged on phpsess.django."""
    with caplog.at_level(logging.WARNING, logger="phpsess.django"):
        assert session.decode("flaskdj:alkdjf") == {}
    assert [r.getMessage()[:23] for r in caplog.records] == ["session data corrupted:"]


def test_mixin_actual_expiry(session: SessionStore) -> None:
    session["foo"] = "bar"
    session.set_expiry(-timedelta(seconds=10))
    session.save()
    old_key = session.session_key
    new_session = SessionStore(old_key)
    assert "foo" not in new_session  # an expiry in the past: deleted when saved


def test_mixin_session_load_does_not_create_record(save: Path) -> None:
    s = SessionStore("someunknownkey")
    s.load()
    assert s.session_key is None and s.exists(s.session_key) is False
    assert s.session_key != "someunknownkey" and list(save.iterdir()) == []


def test_mixin_session_save_does_not_resurrect_session_logged_out_in_other_context(save: Path) -> None:
    s1 = SessionStore()
    s1["test_data"] = "value1"
    s1.save(must_create=True)
    s2 = SessionStore(s1.session_key)
    s2.delete()
    s1["test_data"] = "value2"
    with pytest.raises(UpdateError):
        s1.save()
    assert s1.load() == {}


def test_mixin_must_create_refuses_a_taken_key(session: SessionStore) -> None:
    session.save()
    other = SessionStore(session.session_key)
    with pytest.raises(CreateError):
        other.save(must_create=True)


def test_mixin_clearsessions_command(save: Path) -> None:
    """Upstream test_clearsessions_command: expired sessions go, the others stay (here:
    idle longer than session.gc_maxlifetime, PHP's gc by modification time)."""
    fresh, old = SessionStore(), SessionStore()
    for s in (fresh, old):
        s["foo"] = "bar"
        s.save()
    past = time.time() - 1441
    os.utime(save / f"sess_{old.session_key}", (past, past))
    call_command("clearsessions")
    assert sorted(p.name for p in save.iterdir()) == [f"sess_{fresh.session_key}"]


# -- part 2: views through Django's test client -------------------------------------------
def test_the_session_is_php_s_cookie_headers_and_file(save: Path) -> None:
    client = Client()
    first = client.get("/count")
    sid = sid_of(first)
    assert first.content == b"1" and len(sid) == 32
    assert set_cookie(first) == f"PHPSESSID={sid}; path=/"  # PHP's Set-Cookie, byte for byte
    assert [(n, first[n]) for n in ("Expires", "Cache-Control", "Pragma")] == NOCACHE
    assert first["Vary"] == "Cookie"
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"
    again = client.get("/count")
    assert again.content == b"2" and "PHPSESSID" not in again.cookies
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:2;"


def test_reading_creates_nothing_and_unknown_ids_are_not_adopted(save: Path) -> None:
    client = Client()
    assert client.get("/read").content == b"none" and list(save.iterdir()) == []
    client.cookies["PHPSESSID"] = "unknownunknownunknown"
    r = client.get("/count")
    assert r.content == b"1" and sid_of(r) != "unknownunknownunknown"


def test_django_client_session_property(save: Path) -> None:
    """Django's testing docs: modify ``client.session``, save it, the next request sees it."""
    client = Client()
    s = client.session
    s["n"] = 41
    s.save()
    assert client.get("/count").content == b"42"


def test_cache_headers_rule(save: Path) -> None:
    r = Client().get("/cached")
    assert r["Cache-Control"] == "public, max-age=60" and not r.has_header("Expires")
    assert "PHPSESSID" in r.cookies
    with override_settings(PHPSESS_CACHE_HEADERS="php"):
        r = Client().get("/cached")
    assert [(n, r[n]) for n in ("Expires", "Cache-Control", "Pragma")] == NOCACHE


def test_cycle_key_is_regenerate_id(save: Path) -> None:
    client = Client()
    sid = sid_of(client.get("/count"))
    r = client.get("/login?user=ann")
    old, new = r.content.decode().split()
    assert old == sid and new != sid and set_cookie(r) == f"PHPSESSID={new}; path=/"
    assert not (save / f"sess_{sid}").exists()
    assert (save / f"sess_{new}").read_bytes() == b'n|i:1;user|s:3:"ann";'


def test_flush_destroys_and_removes_the_cookie(save: Path) -> None:
    client = Client()
    sid = sid_of(client.get("/count"))
    r = client.get("/logout")
    assert not (save / f"sess_{sid}").exists()
    assert set_cookie(r) == "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"


def test_set_expiry_sends_the_cookie_with_php_s_lifetime(save: Path) -> None:
    r = Client().get("/expiry?s=3600")
    assert "; expires=" in set_cookie(r) and set_cookie(r).endswith("; Max-Age=3600; path=/")


def test_phpsess_api_in_a_view_is_request_session(save: Path) -> None:
    client = Client()
    sid = sid_of(client.get("/count"))
    assert client.get("/php").content == b"True ['n', 'via_django', 'via_php']"
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;via_django|i:1;via_php|i:2;"


def test_a_5xx_response_saves_nothing_and_unlocks(save: Path) -> None:
    client = Client()
    sid = sid_of(client.get("/count"))
    assert client.get("/boom").status_code == 500
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"  # Django saves nothing for a 5xx
    t0 = time.monotonic()
    assert client.get("/count").content == b"2" and time.monotonic() - t0 < 1


def test_a_streaming_response_holds_the_lock_until_closed(save: Path) -> None:
    client = Client()
    sid = sid_of(client.get("/count"))
    r = client.get("/stream")
    other = Client()
    other.cookies["PHPSESSID"] = sid
    done: list[float] = []
    waiter = threading.Thread(target=lambda: done.append(float(other.get("/count").content)))
    waiter.start()
    time.sleep(0.3)
    assert done == []  # waiting for the lock the streaming response holds
    assert b"".join(r.streaming_content) == b"ab"  # type: ignore[attr-defined]
    r.close()
    waiter.join(5)
    assert done == [2.0]
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:2;streamed|i:1;"


def _concurrent(paths: list[str], sid: str) -> tuple[list[bytes], float]:
    out: list[bytes] = [b""] * len(paths)

    def one(k: int) -> None:
        c = Client()
        c.cookies["PHPSESSID"] = sid
        out[k] = c.get(paths[k]).content

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out, time.monotonic() - t0


@pytest.mark.parametrize("middleware", ["phpsess", "django"])
def test_the_lock_is_held_for_the_request_no_update_lost(save: Path, middleware: str) -> None:
    with override_settings(MIDDLEWARE=STOCK if middleware == "django" else ["phpsess.django.SessionMiddleware"]):
        sid = sid_of(Client().get("/count"))
        out, wall = _concurrent(["/count?hold=0.05"] * 10, sid)
        assert sorted(int(x) for x in out) == list(range(2, 12)) and wall >= 0.45
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:11;"


@pytest.mark.parametrize("mode", ["merge", "read_only"])
def test_merge_and_read_only_do_not_hold_the_lock(save: Path, mode: str) -> None:
    sid = sid_of(Client().get("/count"))
    out, wall = _concurrent([f"/read?mode={mode}&hold=0.3&key=k{k}" for k in range(4)], sid)
    assert out == [b"1"] * 4 and wall < 0.9
    stored = (save / f"sess_{sid}").read_bytes()
    if mode == "merge":
        assert stored.startswith(b"n|i:1;") and all(f"k{k}|i:1;".encode() in stored for k in range(4))
    else:
        assert stored == b"n|i:1;"


def test_phpsess_mode_setting(save: Path) -> None:
    sid = sid_of(Client().get("/count"))
    with override_settings(PHPSESS_MODE="read_only"):
        out, wall = _concurrent(["/read?hold=0.3&key=k"] * 3, sid)
    assert out == [b"1"] * 3 and wall < 0.8 and (save / f"sess_{sid}").read_bytes() == b"n|i:1;"


def test_django_s_own_middleware_with_the_engine(save: Path) -> None:
    with override_settings(MIDDLEWARE=STOCK):
        client = Client()
        r = client.get("/count")
        sid = sid_of(r)
        assert r["Vary"] == "Cookie"
        assert set_cookie(r) == f"PHPSESSID={sid}; HttpOnly; Path=/; SameSite=Lax"  # Django's cookie
        assert not r.has_header("Cache-Control")  # Django's middleware: no cache limiter
        assert client.get("/count").content == b"2"
        assert client.get("/php").content == b"True ['n', 'via_django', 'via_php']"
        assert client.get("/login?user=bo").status_code == 200
        r = client.get("/logout")
        assert r.cookies["PHPSESSID"].value == "" and list(save.iterdir()) == []

    # Django's default cookie name ("sessionid", not set in the settings) and PHP's: refused
    from phpsess.runtime import django as engine

    real = settings.is_overridden
    with override_settings(MIDDLEWARE=STOCK, SESSION_COOKIE_NAME="sessionid"):
        engine._config = None
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings, "is_overridden", lambda name: name != "SESSION_COOKIE_NAME" and real(name))
            with pytest.raises(ImproperlyConfigured, match="set SESSION_COOKIE_NAME = 'PHPSESSID'"):
                Client().get("/count")
        engine._config = None


def test_the_middleware_without_request_signals(save: Path) -> None:
    """A RequestFactory request (no request_started/finished): the middleware ends it."""
    request = RequestFactory().get("/count")
    response = SessionMiddleware(count)(request)
    sid = sid_of(response)
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:1;"
    request = RequestFactory().get("/count", HTTP_COOKIE=f"PHPSESSID={sid}")
    assert SessionMiddleware(count)(request).content == b"2"


# -- the same over Redis ---------------------------------------------------------------------
from tests.integration.redis_server import redis_save_path, redis_server  # noqa: E402,F401


def test_the_engine_over_redis(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The store is whatever session.save_handler says: Redis here, phpredis's keys and lock."""
    ini = {"session.save_handler": "redis", "session.save_path": redis_save_path(request, tmp_path),
           "session.gc_probability": 0}
    with override_settings(PHPSESS_INI=ini):
        s = SessionStore()
        assert s.load() == {} and s.session_key is None  # nothing created by reading
        s["cat"] = "dog"
        s.save()
        assert SessionStore(s.session_key)["cat"] == "dog" and s.exists(s.session_key)
        s2 = SessionStore(s.session_key)
        s2.delete()
        with pytest.raises(UpdateError):
            s.save()
        sid = sid_of(Client().get("/count"))
        out, wall = _concurrent(["/count?hold=0.05"] * 6, sid)
        assert sorted(int(x) for x in out) == list(range(2, 8)) and wall >= 0.27  # Redis's lock, held
        assert SessionStore(sid).load() == {"n": 7}


def test_django_cookie_settings_set_in_the_settings_override_the_ini(save: Path) -> None:
    from phpsess.django import django_config

    ini = {"session.save_path": str(save), "session.cookie_path": "/php", "session.cookie_domain": "php.example"}
    with override_settings(PHPSESS_INI=ini, SESSION_COOKIE_PATH="/shop", SESSION_COOKIE_HTTPONLY=True,
                           SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=True):
        cfg = django_config()
        assert (cfg.name, cfg.cookie_path, cfg.cookie_domain, cfg.cookie_httponly, cfg.cookie_samesite,
                cfg.cookie_secure) == ("PHPSESSID", "/shop", "php.example", True, "Lax", True)
        r = Client().get("/count")
        assert set_cookie(r) == f"PHPSESSID={sid_of(r)}; path=/shop; domain=php.example; secure; HttpOnly; SameSite=Lax"


@pytest.mark.parametrize("middleware", ["phpsess", "django"])
def test_django_async_client(save: Path, middleware: str) -> None:
    """Django's ASGI path (its AsyncClient): the request's store is found from the request's
    thread (Django sends request_started from a task of its own).  One request at a time:
    the AsyncClient runs every request's sync code in one shared thread, where a request
    waiting for another's lock would wait for ever; real ASGI servers give each request
    a thread of its own (tests/integration/test_frameworks.py: django-asgi)."""
    import asyncio

    from django.test import AsyncClient

    async def visits() -> list[bytes]:
        client = AsyncClient()
        out = [(await client.get("/count")).content for _ in range(3)]
        out.append((await client.get("/read")).content)  # read, not modified: unlocked at the end
        out.append((await client.get("/login?user=ann")).content.split()[0] == client.cookies["PHPSESSID"].value.encode())
        return out

    with override_settings(MIDDLEWARE=STOCK if middleware == "django" else ["phpsess.django.SessionMiddleware"]):
        assert asyncio.run(visits()) == [b"1", b"2", b"3", b"3", False]
    (stored,) = save.iterdir()
    assert stored.read_bytes() == b'n|i:3;user|s:3:"ann";'
    t0 = time.monotonic()
    other = Client()
    other.cookies["PHPSESSID"] = stored.name[5:]
    assert other.get("/count").content == b"4" and time.monotonic() - t0 < 1  # no lock left behind
