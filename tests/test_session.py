"""Unit tests of phpsess/session/session.py and phpsess/php.py through the memory handler. No PHP, no
files: each test runs one or more requests in-process (``request_context``) with an injected
clock and gc randomness, on its own partition of the memory store.

Expected values are PHP 8.2's; the same
behaviours are compared byte for byte with real PHP in tests/oracle/test_runtime_diff.py.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import pytest

from phpsess import php
from phpsess.core.config import SessionConfig
from phpsess.errors import PHPDeprecated, PHPNotice, PHPWarning
from phpsess.storage.memory import STORE
from phpsess.session.request import Request
from phpsess.session.context import current_request, request_context

__all__: list[str] = []

NOW = 1_700_000_000.0
_partition = itertools.count()


class Site:
    """A browser talking to one site: runs requests, keeps the session cookie."""

    def __init__(self, **ini: Any) -> None:
        self.save_path = f"/unit-test/{next(_partition)}"
        self.ini = {"save_handler": "memory", "save_path": self.save_path, "gc_probability": 0, **ini}
        self.cookies: dict[str, str] = {}
        self.last: Request | None = None

    def request(self, page: Callable[[], Any], *, cookie: str | None = None,
                random: float = 0.99, query: str = "") -> Any:
        """Run ``page()`` as one request; return its result (the request is in ``self.last``)."""
        header = cookie if cookie is not None else "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        env = {"HTTP_COOKIE": header, "QUERY_STRING": query, "SCRIPT_FILENAME": "/nonexistent/page.php"}
        req = Request(environ=env, config=SessionConfig(self.ini), clock=lambda: NOW)
        req.session.random = lambda: random
        with request_context(req):
            result = page()
        for name, value in req.headers:
            if name == "Set-Cookie":
                cname, _, rest = value.partition("=")
                self.cookies[cname] = rest.split(";", 1)[0]
        self.last = req
        return result

    def stored(self, sid: str) -> bytes | None:
        """The payload the memory store holds for ``sid``."""
        entry = STORE.data.get((self.save_path, sid))
        return None if entry is None else entry[0]

    def headers(self) -> list[tuple[str, str]]:
        """The last response's headers."""
        assert self.last is not None
        return self.last.headers


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    for key in [k for k in STORE.data if k[0] == s.save_path]:
        del STORE.data[key]


NOCACHE = [
    ("Expires", "Thu, 19 Nov 1981 08:52:00 GMT"),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
]


def counter() -> tuple[bool, int, str]:
    ok = php.session_start()
    php.SESSION["n"] = php.SESSION.get("n", 0) + 1
    return ok, php.SESSION["n"], str(php.session_id())


# -- start ---------------------------------------------------------------------------------
def test_first_start_creates_id_and_sends_cookie_then_cache_headers(site: Site) -> None:
    ok, n, sid = site.request(counter)
    assert ok and n == 1 and len(sid) == 32
    assert site.headers() == [("Set-Cookie", f"PHPSESSID={sid}; path=/"), *NOCACHE]
    assert site.stored(sid) == b"n|i:1;"


def test_counter_persists_and_cookie_is_not_resent(site: Site) -> None:
    _, _, sid = site.request(counter)
    assert site.request(counter) == (True, 2, sid)
    assert site.headers() == NOCACHE
    assert site.stored(sid) == b"n|i:2;"


def test_start_while_active_gives_notice_and_returns_true(site: Site) -> None:
    def page() -> bool:
        php.session_start()
        with pytest.warns(PHPNotice, match=r"^session_start\(\): Ignoring session_start\(\) because a session is already active$"):
            return php.session_start({"name": "ignored"})

    assert site.request(page) is True
    assert site.last is not None and site.last.config.name == "PHPSESSID"


def test_start_after_headers_sent_warns_and_fails(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        while php.ob_get_level():  # output_buffering's buffer gone: the output goes out now
            php.ob_end_flush()
        current_request().write(b"x")
        with pytest.warns(PHPWarning, match="Session cannot be started after headers have already been sent"):
            ok = php.session_start()
        return ok, php.session_status()

    assert site.request(page) == (False, php.PHP_SESSION_NONE)


def test_start_options_applied_and_failures_warned(site: Site) -> None:
    def page() -> tuple[bool, str]:
        with pytest.warns(PHPWarning) as rec:
            ok = php.session_start({"bogus": 1, "cookie_lifetime": -5, "name": "OPT"})
        assert [str(w.message) for w in rec] == [
            'session_start(): Setting option "bogus" failed',
            "session_start(): CookieLifetime cannot be negative",
            'session_start(): Setting option "cookie_lifetime" failed',
        ]
        return ok, str(php.session_name())

    assert site.request(page) == (True, "OPT")
    assert site.headers()[0][1].startswith("OPT=")


def test_start_option_float_is_a_type_error(site: Site) -> None:
    def page() -> None:
        with pytest.raises(TypeError, match='Option "read_and_close" must be of type string\\|int\\|bool, float given'):
            php.session_start({"read_and_close": 1.0})

    site.request(page)


def test_start_options_as_keywords_are_checked_as_the_array_form(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> tuple[bool, int, Any]:
        ok = php.session_start(read_and_close=True, cookie_lifetime=0)
        return ok, php.session_status(), php.SESSION.copy()

    assert site.request(page) == (True, php.PHP_SESSION_NONE, {"n": 1})

    def both() -> tuple[bool, str, int]:
        # a keyword wins over the dict's entry of the same name; PHP's messages for both forms
        with pytest.warns(PHPWarning) as rec:
            ok = php.session_start({"name": "FROMDICT", "read_and_close": False}, read_and_close=True, bogus=1)
        assert [str(w.message) for w in rec] == ['session_start(): Setting option "bogus" failed']
        return ok, str(php.session_name()), php.session_status()

    assert site.request(both) == (True, "FROMDICT", php.PHP_SESSION_NONE)

    def wrong_type() -> None:
        with pytest.raises(TypeError, match='Option "read_and_close" must be of type string\\|int\\|bool, float given'):
            php.session_start(read_and_close=1.5)
        with pytest.raises(TypeError, match="Argument #1 \\(\\$options\\) must be of type array, string given"):
            php.session_start("x", read_and_close=True)  # type: ignore[arg-type]

    site.request(wrong_type)


def test_begin_uses_the_given_id_or_a_new_one_whatever_the_cookie_says(site: Site) -> None:
    _, _, sid = site.request(counter)

    def given() -> tuple[bool, Any, bool, bool]:
        s = current_request().session
        return s.begin(sid), dict(s.data), s.exists(sid), s.exists("nosuchsession")

    # the browser's cookie names another id: begin() uses the one it was given
    assert site.request(given, cookie="PHPSESSID=someothercookieid") == (True, {"n": 1}, True, False)

    def new() -> tuple[str, str]:
        s = current_request().session
        assert s.begin(None)
        return s.id or "", s.status.name

    new_id, status = site.request(new)
    assert new_id not in ("", sid) and status == "ACTIVE"
    assert site.headers()[0] == ("Set-Cookie", f"PHPSESSID={new_id}; path=/")
    assert site.stored(new_id) == b""


@pytest.mark.parametrize(("value", "closed"), [
    (True, True), (1, True), ("1", True), ("777", True), (-1, True),
    ("true", False), ("no", False), ("00000", False), (False, False), (0, False),
])
def test_read_and_close_truthiness_is_integer_conversion(site: Site, value: Any, closed: bool) -> None:
    def page() -> int:
        php.session_start({"read_and_close": value})
        return int(php.session_status())

    assert site.request(page) == (php.PHP_SESSION_NONE if closed else php.PHP_SESSION_ACTIVE)


def test_read_and_close_does_not_write(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> Any:
        php.session_start({"read_and_close": True})
        seen = php.SESSION.copy()
        php.SESSION["n"] = 99
        return seen

    assert site.request(page) == {"n": 1}
    assert site.stored(sid) == b"n|i:1;"


def test_values_set_before_start_are_discarded(site: Site) -> None:
    def page() -> Any:
        php.SESSION["early"] = 1
        php.session_start()
        return php.SESSION.copy()

    assert site.request(page) == {}


# -- ids -----------------------------------------------------------------------------------
def test_cookie_id_is_adopted_without_strict_mode(site: Site) -> None:
    assert site.request(counter, cookie="PHPSESSID=unknownsession1") == (True, 1, "unknownsession1")
    assert site.headers() == NOCACHE


def test_strict_mode_replaces_unknown_id_and_sends_cookie() -> None:
    s = Site(use_strict_mode=1)
    ok, n, sid = s.request(counter, cookie="PHPSESSID=unknownsession1")
    assert sid != "unknownsession1" and len(sid) == 32
    assert s.headers()[0] == ("Set-Cookie", f"PHPSESSID={sid}; path=/")
    assert s.request(counter) == (True, 2, sid)


def test_invalid_characters_in_cookie_id_are_discarded(site: Site) -> None:
    ok, n, sid = site.request(counter, cookie="PHPSESSID=abc<def")
    assert ok and sid != "abc<def" and site.headers()[0][0] == "Set-Cookie"


def test_session_id_before_start_is_used_and_sent_as_cookie(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        old = php.session_id("presetsession1")
        php.session_start()
        return old, php.session_id()

    assert site.request(page) == ("", "presetsession1")
    assert site.headers()[0] == ("Set-Cookie", "PHPSESSID=presetsession1; path=/")


def test_session_id_cannot_change_while_active(site: Site) -> None:
    def page() -> Any:
        php.session_start()
        with pytest.warns(PHPWarning, match="Session ID cannot be changed when a session is active"):
            return php.session_id("x")

    assert site.request(page) is False


def test_restart_after_write_close_resends_cookie(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> None:
        php.session_start()
        php.session_write_close()
        php.session_start()

    site.request(page)
    # the cookie is sent again (the id was "set" by the first start); the cache headers,
    # added in replace mode, come after it [obs php-cgi]
    assert site.headers() == [("Set-Cookie", f"PHPSESSID={sid}; path=/"), *NOCACHE]


def test_session_create_id_prefix_and_invalid_prefix(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        good = php.session_create_id("PRE-")
        with pytest.warns(PHPWarning, match="Prefix cannot contain special characters"):
            bad = php.session_create_id("bad prefix")
        return good, bad

    good, bad = site.request(page)
    assert isinstance(good, str) and good.startswith("PRE-") and len(good) == 36
    assert bad is False


# -- close paths -----------------------------------------------------------------------------
def test_write_close_abort_reset_unset_without_session_return_false_silently(site: Site) -> None:
    def page() -> list[Any]:
        return [php.session_write_close(), php.session_abort(), php.session_reset(), php.session_unset()]

    assert site.request(page) == [False, False, False, False]


def test_regenerate_id_without_session_warns_and_returns_false(site: Site) -> None:
    def page() -> Any:
        with pytest.warns(PHPWarning, match=r"^session_regenerate_id\(\): Session ID cannot be regenerated when there is no active session$"):
            return php.session_regenerate_id()

    assert site.request(page) is False


def test_destroy_without_session_warns_and_returns_false(site: Site) -> None:
    def page() -> Any:
        with pytest.warns(PHPWarning, match=r"^session_destroy\(\): Trying to destroy uninitialized session$"):
            return php.session_destroy()

    assert site.request(page) is False


def test_regenerate_keeps_old_data_and_moves_cookie_to_the_end(site: Site) -> None:
    _, _, old = site.request(counter)

    def page() -> Any:
        php.session_start()
        php.SESSION["b"] = 2
        assert php.session_regenerate_id() is True
        return php.session_id()

    new = site.request(page)
    assert new != old
    assert site.headers() == [*NOCACHE, ("Set-Cookie", f"PHPSESSID={new}; path=/")]
    assert site.stored(old) == b"n|i:1;b|i:2;"  # written under the old id before the switch
    assert site.stored(new) == b"n|i:1;b|i:2;"


def test_regenerate_with_delete_removes_old_session(site: Site) -> None:
    _, _, old = site.request(counter)

    def page() -> Any:
        php.session_start()
        php.session_regenerate_id(True)
        return php.session_id()

    new = site.request(page)
    assert site.stored(old) is None
    assert site.stored(new) == b"n|i:1;"


def test_destroy_deletes_storage_keeps_variable_and_unbinds(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> list[Any]:
        php.session_start()
        res = [php.session_destroy(), php.session_id(), php.session_status(), php.SESSION.copy()]
        with pytest.warns(PHPWarning, match="Cannot encode non-existent session"):
            res.append(php.session_encode())
        return res

    assert site.request(page) == [True, "", php.PHP_SESSION_NONE, {"n": 1}, False]
    assert site.stored(sid) is None
    assert [n for n, _ in site.headers()] == ["Expires", "Cache-Control", "Pragma"]  # no deletion cookie


def test_abort_discards_changes(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> list[Any]:
        php.session_start()
        php.SESSION["n"] = 50
        return [php.session_abort(), php.session_status(), php.SESSION.copy(), php.session_id()]

    assert site.request(page) == [True, php.PHP_SESSION_NONE, {"n": 50}, sid]
    assert site.stored(sid) == b"n|i:1;"


def test_reset_restores_stored_data(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> Any:
        php.session_start()
        php.SESSION["n"] = 50
        php.SESSION["x"] = 1
        assert php.session_reset() is True
        return php.SESSION.copy()

    assert site.request(page) == {"n": 1}


def test_unset_empties_session_but_not_copies(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> tuple[Any, Any, Any]:
        php.session_start()
        copy = php.SESSION.copy()
        return php.session_unset(), php.SESSION.copy(), copy

    assert site.request(page) == (True, {}, {"n": 1})
    assert site.stored(sid) == b""


def test_request_shutdown_writes_an_active_session(site: Site) -> None:
    def page() -> str:
        php.session_start()
        php.SESSION["late"] = 1
        php.register_shutdown_function(lambda: php.SESSION.__setitem__("shutdown", 2))
        return str(php.session_id())

    sid = site.request(page)
    assert site.stored(sid) == b"late|i:1;shutdown|i:2;"


# -- lazy_write ------------------------------------------------------------------------------
class Recorder:
    """Wraps the handler the session uses and records write/update_timestamp calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from phpsess.storage.memory import MemoryHandler

        self.calls: list[str] = []
        calls = self.calls
        orig_write, orig_touch = MemoryHandler.write, MemoryHandler.update_timestamp

        def write(h: MemoryHandler, sid: str, data: bytes) -> None:
            calls.append(f"write {data!r}")
            orig_write(h, sid, data)

        def touch(h: MemoryHandler, sid: str, data: bytes) -> None:
            calls.append(f"update_timestamp {data!r}")
            orig_touch(h, sid, data)

        monkeypatch.setattr(MemoryHandler, "write", write)
        monkeypatch.setattr(MemoryHandler, "update_timestamp", touch)


def test_lazy_write_unchanged_data_only_updates_timestamp(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.request(counter)
    rec = Recorder(monkeypatch)
    site.request(lambda: php.session_start())
    site.request(counter)
    assert rec.calls == ["update_timestamp b'n|i:1;'", "write b'n|i:2;'"]


def test_lazy_write_off_always_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(lazy_write=0)
    s.request(counter)
    rec = Recorder(monkeypatch)
    s.request(lambda: php.session_start())
    assert rec.calls == ["write b'n|i:1;'"]


def test_empty_session_is_always_written_with_php_serializer(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.request(lambda: php.session_start())
    rec = Recorder(monkeypatch)
    site.request(lambda: php.session_start())
    assert rec.calls == ["write b''"]


# -- encoding rules ------------------------------------------------------------------------
def test_pipe_in_key_writes_an_empty_session(site: Site) -> None:
    def page() -> tuple[Any, str]:
        php.session_start()
        php.SESSION["ok"] = 1
        php.SESSION["a|b"] = 2
        return php.session_encode(), str(php.session_id())

    enc, sid = site.request(page)
    assert enc is False and site.stored(sid) == b""


def test_numeric_keys_are_skipped_with_a_warning(site: Site) -> None:
    def page() -> str:
        php.session_start()
        php.SESSION["k"] = 1
        php.SESSION[5] = "five"
        php.SESSION["12"] = "twelve"
        with pytest.warns(PHPWarning) as rec:
            php.session_write_close()
        assert [str(w.message) for w in rec] == [
            "session_write_close(): Skipping numeric key 5",
            "session_write_close(): Skipping numeric key 12",
        ]
        return str(php.session_id())

    sid = site.request(page)
    assert site.stored(sid) == b"k|i:1;"


def test_decode_merges_with_php_serializer(site: Site) -> None:
    def page() -> Any:
        php.session_start()
        php.SESSION["a"] = 1
        assert php.session_decode('x|i:5;a|s:1:"z";') is True
        return php.SESSION.copy()

    assert site.request(page) == {"a": "z", "x": 5}


def test_decode_replaces_with_php_serialize() -> None:
    s = Site(serialize_handler="php_serialize")

    def page() -> Any:
        php.session_start()
        php.SESSION["a"] = 1
        assert php.session_decode('a:1:{s:1:"x";i:5;}') is True
        return php.SESSION.copy()

    assert s.request(page) == {"x": 5}


def test_decode_failure_destroys_the_stored_session(site: Site) -> None:
    _, _, sid = site.request(counter)

    def page() -> list[Any]:
        php.session_start()
        with pytest.warns(PHPWarning, match="Failed to decode session object. Session has been destroyed"):
            ok = php.session_decode("x|i:5")
        return [ok, php.session_status(), php.session_id(), php.SESSION.copy()]

    assert site.request(page) == [False, php.PHP_SESSION_NONE, "", {}]
    assert site.stored(sid) is None


def test_corrupt_stored_data_destroys_session_at_start(site: Site) -> None:
    STORE.data[(site.save_path, "corrupt1")] = (b"a|i:1;b", NOW)

    def page() -> list[Any]:
        with pytest.warns(PHPWarning, match=r"^session_start\(\): Failed to decode session object"):
            ok = php.session_start()
        return [ok, php.session_id(), php.SESSION.copy()]

    assert site.request(page, cookie="PHPSESSID=corrupt1") == [False, "", {}]
    assert site.stored("corrupt1") is None


# -- gc --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("u", "runs"), [(0.0, True), (0.0099, True), (0.01, False), (0.5, False)])
def test_gc_runs_when_divisor_times_random_is_below_probability(u: float, runs: bool) -> None:
    s = Site(gc_probability=1, gc_divisor=100, gc_maxlifetime=10)
    STORE.data[(s.save_path, "oldsession1")] = (b"", NOW - 1000)
    s.request(lambda: php.session_start(), random=u)
    assert (s.stored("oldsession1") is None) is runs


def test_session_gc_returns_the_count(site: Site) -> None:
    for i in range(3):
        STORE.data[(site.save_path, f"old{i}")] = (b"", NOW - 5000)

    def page() -> Any:
        php.session_start()
        return php.session_gc()

    assert site.request(page) == 3


# -- settings guarded by state ---------------------------------------------------------------
def test_ini_set_refused_while_active(site: Site) -> None:
    def page() -> list[Any]:
        res = [php.ini_set("session.gc_maxlifetime", 10)]
        php.session_start()
        with pytest.warns(PHPWarning, match=r"^ini_set\(\): Session ini settings cannot be changed when a session is active$"):
            res.append(php.ini_set("session.gc_maxlifetime", 20))
        res.append(php.ini_get("session.gc_maxlifetime"))
        return res

    assert site.request(page) == ["1440", False, "10"]


def test_session_name_numeric_warns_but_returns_old_name(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        with pytest.warns(PHPWarning, match='session.name "123" cannot be numeric or empty'):
            old = php.session_name("123")
        return old, php.session_name()

    assert site.request(page) == ("PHPSESSID", "PHPSESSID")


def test_cache_expire_while_active_warns_and_returns_current_value(site: Site) -> None:
    def page() -> Any:
        php.session_start()
        with pytest.warns(PHPWarning, match="Session cache expiration cannot be changed when a session is active"):
            return php.session_cache_expire(5)

    assert site.request(page) == 180


def test_set_cookie_params_array_form(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        with pytest.warns(PHPWarning) as rec:
            ok = php.session_set_cookie_params({"lifetime": 60, "SameSite": "Strict", "bogus": 1, 7: "x"})
        assert [str(w.message) for w in rec] == [
            'session_set_cookie_params(): Argument #1 ($lifetime_or_options) contains an unrecognized key "bogus"',
            "session_set_cookie_params(): Argument #1 ($lifetime_or_options) cannot contain numeric keys",
        ]
        php.session_start()
        return ok, php.session_get_cookie_params()

    ok, params = site.request(page)
    assert ok is True
    assert params == {"lifetime": 60, "path": "/", "domain": "", "secure": False, "httponly": False,
                      "samesite": "Strict"}
    assert site.headers()[0] == (
        "Set-Cookie", f"PHPSESSID={site.cookies['PHPSESSID']}; expires=Tue, 14 Nov 2023 22:14:20 GMT; "
        "Max-Age=60; path=/; SameSite=Strict")


def test_set_cookie_params_array_and_more_arguments_is_a_value_error(site: Site) -> None:
    def page() -> None:
        with pytest.raises(ValueError, match=r"Argument #2 \(\$path\) must be null"):
            php.session_set_cookie_params({"path": "/"}, "/x")

    site.request(page)


# -- user handler ----------------------------------------------------------------------------
class LoggingHandler:
    """A PHP-style SessionHandlerInterface object (True/False results, str data)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.data: dict[str, str] = {}

    def open(self, path: str, name: str) -> bool:
        self.log.append(f"open {name}")
        return True

    def close(self) -> bool:
        self.log.append("close")
        return True

    def read(self, sid: str) -> str:
        self.log.append("read")
        return self.data.get(sid, "")

    def write(self, sid: str, data: str) -> bool:
        self.log.append(f"write {data}")
        self.data[sid] = data
        return True

    def destroy(self, sid: str) -> bool:
        self.log.append("destroy")
        self.data.pop(sid, None)
        return True

    def gc(self, max_lifetime: int) -> int:
        self.log.append(f"gc {max_lifetime}")
        return 0

    def updateTimestamp(self, sid: str, data: str) -> bool:  # noqa: N802 - PHP's name
        self.log.append(f"updateTimestamp {data}")
        return True


def test_user_handler_object_call_order(site: Site) -> None:
    h = LoggingHandler()

    def first() -> None:
        assert php.session_set_save_handler(h, True) is True
        assert php.session_module_name() == "user"
        php.session_start()
        php.SESSION["a"] = 1

    site.request(first)
    assert h.log == ["open PHPSESSID", "read", "write a|i:1;", "close"]
    h.log.clear()

    def second() -> None:
        php.session_set_save_handler(h, True)
        php.session_start()
        php.session_write_close()
        php.session_start()
        php.session_regenerate_id(True)
        php.session_destroy()

    site.request(second)
    assert h.log == [
        "open PHPSESSID", "read", "updateTimestamp a|i:1;", "close",
        "open PHPSESSID", "read", "destroy", "close", "open PHPSESSID", "read",
        "destroy", "close",
    ]


# -- phpsess extensions: lazy_start, merge mode (docs/compatibility.md) ----------------------
def test_lazy_start_reads_and_locks_only_when_session_is_first_used() -> None:
    s = Site(lazy_start=1, lock_timeout=0.5)
    _, _, sid = s.request(counter)

    def other() -> Any:
        php.session_start()
        php.SESSION["other"] = 1
        return php.session_status()

    def page() -> Any:
        assert php.session_start() is True
        assert php.session_status() == php.PHP_SESSION_ACTIVE
        # not read and not locked yet: another request (a plain locking one) gets through
        other_status = s.request(other)
        seen = php.SESSION.copy()  # first use: read (and lock) now, seeing the other's write
        php.SESSION["n"] += 1
        return other_status, seen

    assert s.request(page) == (php.PHP_SESSION_ACTIVE, {"n": 1, "other": 1})
    assert s.stored(sid) == b"n|i:2;other|i:1;"


def test_lazy_start_never_touched_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(lazy_start=1)
    _, _, sid = s.request(counter)
    rec = Recorder(monkeypatch)
    s.request(lambda: php.session_start())
    assert rec.calls == []
    assert s.stored(sid) == b"n|i:1;"


def test_merge_mode_holds_no_lock_while_the_script_runs_and_keeps_both_changes() -> None:
    s = Site(concurrency="merge", lock_timeout=0.5)
    _, _, sid = s.request(counter)

    def other() -> None:
        php.session_start()
        php.SESSION["b"] = 2

    def page() -> None:
        php.session_start()
        php.SESSION["a"] = 1
        s.request(other)  # would time out on the lock if this request held it
        php.SESSION["n"] += 10

    s.request(page)
    assert s.stored(sid) == b"n|i:11;b|i:2;a|i:1;"


def test_merge_mode_last_write_wins_per_key_and_deletions_apply() -> None:
    s = Site(concurrency="merge", lock_timeout=0.5)

    def setup() -> str:
        php.session_start()
        php.SESSION.update({"x": 1, "y": 1, "z": 1})
        return str(php.session_id())

    sid = s.request(setup)

    def other() -> None:
        php.session_start()
        php.SESSION["x"] = "other"
        php.SESSION["y"] = "other"

    def page() -> None:
        php.session_start()
        php.SESSION["x"] = "mine"  # written after the other request: wins for x
        del php.SESSION["z"]
        s.request(other)

    s.request(page)
    assert s.stored(sid) == b'x|s:4:"mine";y|s:5:"other";'


def test_phpsess_settings_are_accepted_by_ini_set_where_php_returns_false(site: Site) -> None:
    def page() -> list[Any]:
        return [php.ini_set("session.lock_timeout", 2), php.ini_get("session.lock_timeout"),
                php.ini_set("session.no_such_setting", 1), php.ini_set("memory_limit", "1G"),
                php.ini_set("display_errors", 1), php.ini_set("output_buffering", 0)]

    # memory_limit: PHP's core setting, the old value (128M); display_errors: php-cgi under
    # Debian's php.ini returns "" (Off); output_buffering is php.ini-only (false) [obs php-cgi]
    assert site.request(page) == ["0", "2", False, "128M", "", False]


def test_memcached_settings_are_ini_settings_as_in_php(site: Site) -> None:
    """Full names only; changeable while a session is active (they are not session.*);
    refused values warn with php-memcached's text; session_start() options cannot set them."""
    def page() -> list[Any]:
        out: list[Any] = [php.ini_get("memcached.sess_prefix"), php.ini_get("session.memcached.sess_prefix")]
        php.session_start()
        out += [php.ini_set("memcached.sess_prefix", "app."), php.ini_get("memcached.sess_prefix"),
                php.ini_set("sess_prefix", "x"), php.ini_set("session.memcached.sess_prefix", "x")]
        with pytest.warns(PHPWarning, match="cannot contain whitespace"):
            out.append(php.ini_set("memcached.sess_prefix", "a b"))
        with pytest.warns(PHPDeprecated, match="sess_lock_wait and memcached.sess_lock_max_wait are deprecated"):
            out.append(php.ini_set("memcached.sess_lock_wait", "100"))
        php.ini_restore("memcached.sess_prefix")
        out.append(php.ini_get("memcached.sess_prefix"))
        php.session_write_close()
        with pytest.warns(PHPWarning, match='Setting option "memcached.sess_locking" failed'):
            php.session_start({"memcached.sess_locking": 0})
        out.append(php.ini_get("memcached.sess_locking"))
        return out

    assert site.request(page) == ["memc.sess.key.", False, "memc.sess.key.", "app.", False, False, False, False,
                                  "memc.sess.key.", "1"]


def test_session_before_start_is_an_empty_mapping_not_undefined(site: Site) -> None:
    def page() -> tuple[Any, Any]:
        before = (len(php.SESSION), php.SESSION.get("x"))
        php.session_start()
        return before, php.session_status()

    assert site.request(page) == ((0, None), php.PHP_SESSION_ACTIVE)


# -- diagnostics: phpsess.php's, with PHP's text, the caller's line, every time -------------
def test_a_user_handler_returning_an_int_is_deprecated_in_the_calling_function() -> None:
    """PHP 8.2: ``Deprecated: session_start(): Session callback must have a return value of
    type bool, int returned``."""
    from phpsess.errors import PHPDeprecated

    store: dict[str, str] = {}
    site = Site()

    def page() -> None:
        php.session_set_save_handler(
            lambda path, name: 0, lambda: True, lambda sid: store.get(sid, ""),
            lambda sid, data: store.__setitem__(sid, data) or True, lambda sid: True, lambda n: 0,
        )
        with pytest.warns(PHPDeprecated, match=r"^session_start\(\): Session callback must have a "
                                               r"return value of type bool, int returned$"):
            assert php.session_start() is True

    site.request(page)


def test_warnings_name_the_callers_line_and_repeat(recwarn: pytest.WarningsRecorder) -> None:
    import warnings

    site = Site()

    def page() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # Python's once-per-line filter
            for _ in range(3):
                assert php.session_destroy() is False  # line A: no session
        assert [w.lineno for w in recwarn.list] == [page.__code__.co_firstlineno + 4] * 3
        assert all(w.filename == __file__ for w in recwarn.list)

    site.request(page)


def test_int_or_false_results_are_false_not_zero() -> None:
    """PHP's int|false: False stays False in both builds (tests/test_compiled.py)."""
    site = Site()

    def page() -> None:
        with pytest.warns(PHPWarning):
            assert php.session_gc() is False
        php.current_request().send_headers()
        with pytest.warns(PHPWarning):
            assert php.http_response_code(404) is False
        with pytest.warns(PHPWarning):
            assert php.session_cache_expire(5) is False
        assert php.http_response_code() == 200 and php.session_cache_expire() == 180

    site.request(page)
