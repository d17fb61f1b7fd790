"""The classic session attacks, each walked through and shown to fail: fixation through a
chosen id (use_strict_mode), an id in the URL (use_only_cookies), replay of an id after
session_regenerate_id(true), a symlink planted in save_path, injection through keys and
values, and a save_path that others can list.  Runs requests in-process (request_context)
on the files handler in a temporary directory; no server.

Where PHP itself is open to an attack (strict mode off, regenerate_id(false)), a test
says so too, so that the defence is visibly the setting and not an accident.
The same attacks through nginx + ``phpsess fpm`` and a CGI host are in
tests/integration/test_hostile.py.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

from phpsess import php
from phpsess.core.config import SessionConfig
from phpsess.session.request import Request
from phpsess.session.context import request_context

__all__: list[str] = []

NOW = 1_700_000_000.0
#: an id the attacker picks (valid characters, never issued by the server)
CHOSEN = "attackerchosenid0123456789abcdef"


class Visit:
    """The outcome of one request: what the page returned, the headers, the warnings."""

    def __init__(self, result: Any, headers: list[tuple[str, str]], caught: list[str]) -> None:
        self.result = result
        self.headers = headers
        self.warnings = caught

    @property
    def cookie_sid(self) -> str | None:
        """The id a Set-Cookie: PHPSESSID=... header gave the browser, if any."""
        for name, value in self.headers:
            if name == "Set-Cookie" and value.startswith("PHPSESSID="):
                return value[len("PHPSESSID="):].split(";", 1)[0]
        return None

    def set_cookie(self) -> str | None:
        """The whole Set-Cookie value for PHPSESSID, if any."""
        for name, value in self.headers:
            if name == "Set-Cookie" and value.startswith("PHPSESSID="):
                return value
        return None


def visit(save_path: Path | str, page: Callable[[], Any], *, cookie: str = "", query: str = "",
          post: bytes = b"", **ini: Any) -> Visit:
    """Run ``page()`` as one request on the files handler under ``save_path``."""
    env = {"HTTP_COOKIE": cookie, "QUERY_STRING": query, "REQUEST_METHOD": "POST" if post else "GET",
           "SCRIPT_FILENAME": "/nonexistent/page.php"}
    if post:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        env["CONTENT_LENGTH"] = str(len(post))
    cfg = SessionConfig({"save_path": str(save_path), "gc_probability": 0, **ini})
    req = Request(environ=env, config=cfg, body=post, clock=lambda: NOW)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with request_context(req):
            result = page()
    return Visit(result, list(req.headers), [str(w.message) for w in caught])


def start_and_count() -> tuple[bool, str, dict[Any, Any]]:
    """The victim's page: start the session, count visits, return (ok, id, data before)."""
    ok = php.session_start()
    before = dict(php.SESSION)
    if ok:
        php.SESSION["visits"] = php.SESSION.get("visits", 0) + 1
    return ok, str(php.session_id()), before


def login() -> str:
    """A login page done right: new id (old one destroyed), then the privilege."""
    php.session_start()
    php.session_regenerate_id(True)
    php.SESSION["user"] = "victim"
    return str(php.session_id())


def files_in(directory: Path) -> set[str]:
    """Names of everything directly in ``directory``."""
    return set(os.listdir(directory))


# -- fixation through a chosen id ------------------------------------------------------------
def test_strict_mode_refuses_an_id_the_attacker_chose(tmp_path: Path) -> None:
    v = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={CHOSEN}", use_strict_mode=1)
    ok, sid, before = v.result
    assert ok and before == {} and v.warnings == []
    assert sid != CHOSEN and v.cookie_sid == sid  # a fresh id, sent to the browser
    assert files_in(tmp_path) == {f"sess_{sid}"}  # nothing stored under the chosen id


def test_strict_mode_refuses_a_chosen_id_set_with_session_id(tmp_path: Path) -> None:
    def page() -> str:
        php.session_id(CHOSEN)  # e.g. an app that takes the id from a parameter
        php.session_start()
        return str(php.session_id())

    v = visit(tmp_path, page, use_strict_mode=1)
    assert v.result != CHOSEN and not (tmp_path / f"sess_{CHOSEN}").exists()


def test_without_strict_mode_a_chosen_id_is_adopted_as_php_does(tmp_path: Path) -> None:
    # PHP's default (use_strict_mode=0) is open to fixation: the defence is the setting
    v = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={CHOSEN}")
    assert v.result[1] == CHOSEN and v.cookie_sid is None
    assert (tmp_path / f"sess_{CHOSEN}").exists()


def test_fixation_is_defeated_by_regenerate_on_login_even_without_strict_mode(tmp_path: Path) -> None:
    # the attacker plants CHOSEN in the victim's browser; the victim logs in
    v = visit(tmp_path, login, cookie=f"PHPSESSID={CHOSEN}")
    new = v.result
    assert new != CHOSEN and v.cookie_sid == new
    # the attacker, still holding CHOSEN, is not logged in
    attacker = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={CHOSEN}")
    assert attacker.result[2] == {}
    assert "user" in visit(tmp_path, start_and_count, cookie=f"PHPSESSID={new}").result[2]


@pytest.mark.parametrize("chosen", [
    "../../../../tmp/pwned", "..%2F..%2Fetc%2Fpasswd", "a/b", "sess_x/../../y", "%00abc", "abc%00def",
    "x" * 257, "a b", "a+b", "$(id)", "abc;def", "\u00e9t\u00e9", "..", ".", "", "CON", "a%0d%0aSet-Cookie:x=1",
])
def test_strict_mode_never_adopts_a_hostile_id_nor_touches_the_disk_for_it(tmp_path: Path, chosen: str) -> None:
    save = tmp_path / "sessions"
    save.mkdir()
    v = visit(save, start_and_count, cookie=f"PHPSESSID={chosen}", use_strict_mode=1)
    ok, sid, before = v.result
    assert ok and before == {} and sid != chosen
    assert v.cookie_sid == sid and sid.isalnum() and len(sid) == 32
    assert files_in(tmp_path) == {"sessions"}  # nothing created next to save_path
    assert files_in(save) == {f"sess_{sid}"}


# (an id with a NUL byte is left out: PHP cuts it there, see test_hostile.py)
@pytest.mark.parametrize("chosen", ["../../../../tmp/pwned", "a/b", "x" * 257, "a+b", "a%2Fb"])
def test_without_strict_mode_a_hostile_id_fails_the_start_and_touches_nothing(tmp_path: Path, chosen: str) -> None:
    save = tmp_path / "sessions"
    save.mkdir()
    v = visit(save, start_and_count, cookie=f"PHPSESSID={chosen}")
    ok, _sid, _before = v.result
    assert not ok  # PHP: "Session ID is too long or contains illegal characters..." + read failure
    assert any("illegal characters" in w for w in v.warnings), v.warnings
    assert files_in(tmp_path) == {"sessions"} and files_in(save) == set()


# -- the id in the URL ---------------------------------------------------------------------------
def test_use_only_cookies_ignores_an_id_in_the_query_string_and_the_body(tmp_path: Path) -> None:
    victim = visit(tmp_path, start_and_count).result[1]
    for query, post in ((f"PHPSESSID={victim}", b""), ("", f"PHPSESSID={victim}".encode())):
        v = visit(tmp_path, start_and_count, query=query, post=post)
        ok, sid, before = v.result
        assert ok and sid != victim and before == {} and v.cookie_sid == sid
    # the victim's session was never opened by those requests
    assert (tmp_path / f"sess_{victim}").read_bytes() == b"visits|i:1;"


def test_an_id_in_the_url_is_used_only_when_use_only_cookies_is_off(tmp_path: Path) -> None:
    victim = visit(tmp_path, start_and_count).result[1]
    v = visit(tmp_path, start_and_count, query=f"PHPSESSID={victim}", use_only_cookies=0)
    assert v.result[1] == victim and v.result[2] == {"visits": 1}  # PHP's behaviour, hence the default


# -- replay after regenerate_id --------------------------------------------------------------------
def test_old_id_is_worthless_after_regenerate_id_true(tmp_path: Path) -> None:
    old = visit(tmp_path, start_and_count).result[1]
    new = visit(tmp_path, login, cookie=f"PHPSESSID={old}").result
    assert new != old and not (tmp_path / f"sess_{old}").exists()
    # replay without strict mode: the old id gets an empty session, never the victim's
    replay = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={old}")
    assert replay.result[2] == {}
    # replay with strict mode: the old id is not even adopted
    (tmp_path / f"sess_{old}").unlink()
    strict = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={old}", use_strict_mode=1)
    assert strict.result[1] != old and strict.result[2] == {}
    assert "user" in visit(tmp_path, start_and_count, cookie=f"PHPSESSID={new}").result[2]


def test_regenerate_id_false_keeps_the_old_session_readable_as_php_does(tmp_path: Path) -> None:
    def login_keep_old() -> str:
        php.session_start()
        php.SESSION["before_login"] = True
        php.session_regenerate_id(False)
        php.SESSION["user"] = "victim"
        return str(php.session_id())

    old = visit(tmp_path, start_and_count).result[1]
    visit(tmp_path, login_keep_old, cookie=f"PHPSESSID={old}")
    replay = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={old}").result[2]
    assert "user" not in replay and replay.get("before_login") is True  # why delete_old matters


def test_destroyed_session_cannot_be_resurrected_under_strict_mode(tmp_path: Path) -> None:
    def logout() -> None:
        php.session_start()
        php.session_destroy()

    sid = visit(tmp_path, login).result
    visit(tmp_path, logout, cookie=f"PHPSESSID={sid}")
    v = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={sid}", use_strict_mode=1)
    assert v.result[1] != sid and v.result[2] == {}


# -- planted files -----------------------------------------------------------------------------
@pytest.mark.parametrize("strict", [0, 1])
def test_planted_symlink_is_neither_followed_nor_written(tmp_path: Path, strict: int) -> None:
    save = tmp_path / "sessions"
    save.mkdir()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"user|s:5:\"admin\";")  # what the attacker wants read as a session
    (save / f"sess_{CHOSEN}").symlink_to(target)
    missing = tmp_path / "created-by-the-app"
    (save / "sess_0123456789abcdef0123456789abcdef").symlink_to(missing)
    for sid in (CHOSEN, "0123456789abcdef0123456789abcdef"):
        v = visit(save, start_and_count, cookie=f"PHPSESSID={sid}", use_strict_mode=strict)
        ok, got, before = v.result
        assert "user" not in before  # the target's bytes were never read as a session
        if ok:
            assert got != sid  # strict mode gave a fresh id
    assert target.read_bytes() == b"user|s:5:\"admin\";"
    assert not missing.exists() and (save / f"sess_{CHOSEN}").is_symlink()


def test_session_files_are_private_by_default(tmp_path: Path) -> None:
    sid = visit(tmp_path, start_and_count).result[1]
    mode = stat.S_IMODE(os.stat(tmp_path / f"sess_{sid}").st_mode)
    assert mode & 0o077 == 0, oct(mode)


# -- injection through keys and values ----------------------------------------------------------
def test_a_key_with_the_delimiter_cannot_inject_session_variables(tmp_path: Path) -> None:
    def page() -> str:
        php.session_start()
        php.SESSION["name"] = "guest"
        php.SESSION['x|admin|b:1;y'] = 1  # a user-chosen key (e.g. from a form field name)
        return str(php.session_id())

    sid = visit(tmp_path, page).result
    # PHP refuses to encode a php-format session with '|' in a key and writes it empty
    assert (tmp_path / f"sess_{sid}").read_bytes() == b""
    assert "admin" not in visit(tmp_path, start_and_count, cookie=f"PHPSESSID={sid}").result[2]


@pytest.mark.parametrize("handler", ["php", "php_binary", "php_serialize"])
def test_a_hostile_value_stays_one_value(tmp_path: Path, handler: str) -> None:
    evil = 'x";s:5:"admin";b:1;}|admin|b:1;\x01admin' + "\x00" + 'b:1;'

    def page() -> str:
        php.session_start()
        php.SESSION["name"] = evil
        return str(php.session_id())

    sid = visit(tmp_path, page, serialize_handler=handler).result
    again = visit(tmp_path, start_and_count, cookie=f"PHPSESSID={sid}", serialize_handler=handler)
    assert again.result[2] == {"name": evil}


# -- hijacking helpers: the cookie and the save_path -----------------------------------------------
def test_cookie_flags_that_keep_the_id_from_scripts_and_other_sites(tmp_path: Path) -> None:
    v = visit(tmp_path, start_and_count, cookie_httponly=1, cookie_secure=1, cookie_samesite="Strict")
    cookie = v.set_cookie()
    assert cookie is not None
    assert cookie.endswith("; path=/; secure; HttpOnly; SameSite=Strict"), cookie


def test_new_ids_come_from_the_full_alphabet_and_never_repeat(tmp_path: Path) -> None:
    def page() -> str:
        return str(php.session_create_id())

    ids = {visit(tmp_path, page, sid_length=32, sid_bits_per_character=5).result for _ in range(300)}
    assert len(ids) == 300 and all(len(i) == 32 for i in ids)
    assert set("".join(ids)) == set("0123456789abcdefghijklmnopqrstuv")  # 160 bits each


def test_world_readable_save_path_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save = tmp_path / "open"
    save.mkdir()
    os.chmod(save, 0o777)
    with caplog.at_level(logging.WARNING, logger="phpsess"):
        visit(save, start_and_count)
    assert any(r.name.startswith("phpsess") and str(save) in r.getMessage() for r in caplog.records), \
        caplog.records


def test_no_warning_for_a_save_path_others_cannot_list(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save = tmp_path / "closed"
    save.mkdir()
    os.chmod(save, 0o1733)  # Debian's /var/lib/php/sessions: others may create, not list
    with caplog.at_level(logging.WARNING, logger="phpsess"):
        visit(save, start_and_count)
    assert [r for r in caplog.records if r.name.startswith("phpsess")] == []
