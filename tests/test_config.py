"""SessionConfig: ini_set() semantics of every session.* setting, as PHP 8.2.36 behaves
(expectations recorded from PHP; tests/oracle/test_config_oracle.py re-checks them live)."""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

from phpsess.core.config import (
    MAX_COOKIE_LIFETIME,
    SETTINGS,
    SessionConfig,
    parse_bool,
    parse_float,
    parse_long,
    parse_quantity,
)
from phpsess.errors import ConfigError
from phpsess.session.settings import from_ini_file, load_ini_file

CONF = Path(__file__).resolve().parent.parent / "conf" / "phpsess.ini"


def _q(text: str) -> str:
    return f'Invalid quantity "{text}"'


class R(str):
    """An expected refusal: ConfigError with this text ("" = PHP says nothing)."""


# (setting, value, ini_set() return or ConfigError text, ini_get() after, typed value, warnings)
SET_CASES: list[tuple[str, Any, Any, str, Any, list[str]]] = [
    ("gc_maxlifetime", "abc", "1440", "abc", 0, [
        'Invalid "session.gc_maxlifetime" setting. Invalid quantity "abc": no valid leading digits, '
        'interpreting as "0" for backwards compatibility']),
    ("gc_maxlifetime", "12abc", "1440", "12abc", 12, [
        'Invalid "session.gc_maxlifetime" setting. Invalid quantity "12abc": unknown multiplier "c", '
        'interpreting as "12" for backwards compatibility']),
    ("gc_maxlifetime", "1k", "1440", "1k", 1024, []),
    ("gc_maxlifetime", " 1 k ", "1440", " 1 k ", 1024, []),
    ("gc_maxlifetime", "0x1A", "1440", "0x1A", 26, []),
    ("gc_maxlifetime", "017", "1440", "017", 15, []),
    ("gc_maxlifetime", "0b11", "1440", "0b11", 3, []),
    ("gc_maxlifetime", "-5", "1440", "-5", -5, []),
    ("gc_maxlifetime", "", "1440", "", 0, []),
    ("gc_maxlifetime", 7, "1440", "7", 7, []),
    ("gc_maxlifetime", True, "1440", "1", 1, []),
    ("gc_maxlifetime", None, "1440", "", 0, []),
    ("gc_maxlifetime", 100.0, "1440", "100", 100, []),
    ("gc_maxlifetime", "0.5", "1440", "0.5", 0, [
        'Invalid "session.gc_maxlifetime" setting. Invalid prefix "0.", interpreting as "0" for '
        'backwards compatibility']),
    ("gc_maxlifetime", "9223372036854775808", "1440", "9223372036854775808", -(1 << 63), [
        'Invalid "session.gc_maxlifetime" setting. Invalid quantity "9223372036854775808": value is '
        'out of range, using overflow result for backwards compatibility']),
    ("gc_probability", "-1", "1", "-1", -1, []),
    ("gc_divisor", "0", "100", "0", 0, []),
    ("cache_expire", "1e3", "180", "1e3", 1, [
        'Invalid "session.cache_expire" setting. Invalid quantity "1e3": unknown multiplier "3", '
        'interpreting as "1" for backwards compatibility']),
    ("cookie_lifetime", "3600", "0", "3600", 3600, []),
    ("cookie_lifetime", "-5", R("CookieLifetime cannot be negative"), "0", 0, []),
    ("cookie_lifetime", "-1%", R("CookieLifetime cannot be negative"), "0", 0, []),
    ("cookie_lifetime", "-0x5", R(""), "0", 0, []),  # refused silently (OnUpdateLongGEZero)
    ("cookie_lifetime", "99999999999999999999", "0", "99999999999999999999", 0, []),  # not applied
    ("cookie_secure", "on", "0", "on", True, []),
    ("cookie_secure", "On ", "0", "On ", False, []),
    ("cookie_secure", " on", "0", " on", False, []),
    ("cookie_secure", "YES", "0", "YES", True, []),
    ("cookie_secure", "2", "0", "2", True, []),
    ("cookie_secure", "12abc", "0", "12abc", True, []),
    ("cookie_secure", "0x1A", "0", "0x1A", False, []),
    ("cookie_secure", "4294967296", "0", "4294967296", False, []),  # C atoi() wraps to 0
    ("cookie_secure", "none", "0", "none", False, []),
    ("cookie_secure", False, "0", "", False, []),
    ("name", "MYSESS", "PHPSESSID", "MYSESS", "MYSESS", []),
    ("name", "123", R('session.name "123" cannot be numeric or empty'), "PHPSESSID", "PHPSESSID", []),
    ("name", " 1e3 ", R('session.name " 1e3 " cannot be numeric or empty'), "PHPSESSID", "PHPSESSID", []),
    ("name", "", R('session.name "" cannot be numeric or empty'), "PHPSESSID", "PHPSESSID", []),
    ("name", "0x1A", "PHPSESSID", "0x1A", "0x1A", []),
    ("name", "a.b", "PHPSESSID", "a.b", "a.b", []),  # refused only when the cookie is sent
    ("name", "\0a", R(""), "PHPSESSID", "PHPSESSID", []),
    ("name", "a\0b", "PHPSESSID", "a\0b", "a", []),
    ("save_handler", "FILES", "files", "FILES", "files", []),
    ("save_handler", "user", R('Session save handler "user" cannot be set by ini_set()'), "files", "files", []),
    ("save_handler", "bogus", R('Session save handler "bogus" cannot be found'), "files", "files", []),
    ("save_handler", "a\0b", R('Session save handler "a" cannot be found'), "files", "files", []),
    ("save_handler", "redis", "files", "redis", "redis", []),
    ("serialize_handler", "php_serialize", "php", "php_serialize", "php_serialize", []),
    ("serialize_handler", "PHP_BINARY", "php", "PHP_BINARY", "php_binary", []),
    ("serialize_handler", "json", R('Serialization handler "json" cannot be found'), "php", "php", []),
    ("save_path", "/tmp", "", "/tmp", "/tmp", []),
    ("save_path", "/tmp\0x", R(""), "", "", []),
    ("cookie_path", "a\0b", "/", "a\0b", "a", []),
    ("sid_length", "26", "32", "26", 26, []),
    ("sid_length", " +40", "32", " +40", 40, []),
    ("sid_length", "040", "32", "040", 40, []),
    ("sid_length", "40 ", R('session.configuration "session.sid_length" must be between 22 and 256'),
     "32", 32, []),
    ("sid_length", "21", R('session.configuration "session.sid_length" must be between 22 and 256'),
     "32", 32, []),
    ("sid_length", "", R('session.configuration "session.sid_length" must be between 22 and 256'),
     "32", 32, []),
    ("sid_length", 40.0, "32", "40", 40, []),
    ("sid_length", True, R('session.configuration "session.sid_length" must be between 22 and 256'),
     "32", 32, []),
    ("sid_bits_per_character", "5", "4", "5", 5, []),
    ("sid_bits_per_character", "7",
     R('session.configuration "session.sid_bits_per_character" must be between 4 and 6'), "4", 4, []),
    ("cache_limiter", "Public", "nocache", "Public", "Public", []),
    ("trans_sid_tags", "", "a=href,area=href,frame=src,form=", "", "", []),
    ("auto_start", "1", R(""), "0", False, []),  # PERDIR: ini_set() returns false silently
    ("upload_progress.freq", "5%", R(""), "1%", "1%", []),
    ("bogus", "1", R(""), "", None, []),
]


@pytest.mark.parametrize(("name", "value", "ret", "after", "typed", "warnings"), SET_CASES)
def test_set_behaves_like_ini_set(name: str, value: Any, ret: Any, after: str, typed: Any,
                                  warnings: list[str]) -> None:
    cfg = SessionConfig()
    got: list[str] = []
    if not isinstance(ret, R):
        assert cfg.set(name, value, warn=got.append) == ret
    else:
        with pytest.raises(ConfigError) as info:
            cfg.set(name, value, warn=got.append)
        assert str(info.value) == ret
        assert info.value.setting == name
    assert got == warnings
    if name in SETTINGS:
        assert cfg.get(name) == after
        assert getattr(cfg, SETTINGS[name].attr) == typed


def test_set_accepts_the_session_prefix_and_returns_the_old_raw_value() -> None:
    cfg = SessionConfig()
    assert cfg.set("session.gc_maxlifetime", "60") == "1440"
    assert cfg.set("gc_maxlifetime", "1k") == "60"
    assert cfg.get("session.gc_maxlifetime") == "1k" and cfg.gc_maxlifetime == 1024
    assert cfg.get("session.bogus") is None


def test_perdir_settings_are_allowed_at_startup_only() -> None:
    cfg = SessionConfig({"session.auto_start": "On", "upload_progress.freq": "50%"})
    assert cfg.auto_start is True and cfg.upload_progress_freq == "50%"
    with pytest.raises(ConfigError) as info:
        cfg.set("auto_start", "0")
    assert str(info.value) == ""
    assert cfg.set("auto_start", "0", startup=True) == "On"


def test_upload_progress_freq_limits_at_startup() -> None:
    with pytest.raises(ConfigError, match=r"must be less than or equal to 100%"):
        SessionConfig({"upload_progress.freq": "200%"})
    with pytest.raises(ConfigError, match="must be greater than or equal to 0"):
        SessionConfig({"upload_progress.freq": "-5"})
    assert SessionConfig({"upload_progress.freq": "4096"}).upload_progress_freq == "4096"


def test_cookie_lifetime_above_the_limit_is_accepted_but_not_applied() -> None:
    cfg = SessionConfig({"cookie_lifetime": "60"})
    assert cfg.set("cookie_lifetime", str(MAX_COOKIE_LIFETIME)) == "60"
    assert cfg.cookie_lifetime == MAX_COOKIE_LIFETIME
    assert cfg.set("cookie_lifetime", str(MAX_COOKIE_LIFETIME + 1)) == str(MAX_COOKIE_LIFETIME)
    assert cfg.cookie_lifetime == MAX_COOKIE_LIFETIME
    assert cfg.get("cookie_lifetime") == str(MAX_COOKIE_LIFETIME + 1)


def test_refused_value_keeps_the_old_one() -> None:
    cfg = SessionConfig({"sid_length": "26"})
    with pytest.raises(ConfigError):
        cfg.set("sid_length", "300")
    assert (cfg.get("sid_length"), cfg.sid_length) == ("26", 26)


def test_constructor_raises_on_invalid_values_and_unknown_names() -> None:
    with pytest.raises(ConfigError, match="between 22 and 256"):
        SessionConfig({"sid_length": "5"})
    with pytest.raises(ConfigError, match='Unknown session setting "gc_maxlifetme"'):
        SessionConfig({"gc_maxlifetme": "5"})


def test_warnings_go_to_the_callback_and_core_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        cfg = SessionConfig({"gc_maxlifetime": "abc"}, warn=seen.append)
        quiet = SessionConfig({"gc_maxlifetime": "abc"})
    assert cfg.gc_maxlifetime == quiet.gc_maxlifetime == 0
    assert len(seen) == 1 and seen[0].startswith('Invalid "session.gc_maxlifetime" setting.')
    assert caplog.text == ""  # a pure module: the caller decides where warnings go


def test_ini_file_warnings_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "php.ini"
    path.write_text("session.gc_maxlifetime = abc\n")
    with caplog.at_level(logging.WARNING, logger="phpsess.session.settings"):
        cfg = from_ini_file(str(path))
    assert cfg.gc_maxlifetime == 0
    assert 'Invalid "session.gc_maxlifetime" setting.' in caplog.text


@pytest.mark.parametrize(("name", "value", "typed"), [
    ("lock_timeout", "2.5", 2.5), ("lock_timeout", " 0 ", 0.0), ("lock_timeout", 3, 3.0),
    ("lock_max_waiters", "10", 10), ("lock_max_waiters", "", 0), ("lock_wait_log_ms", "+250", 250),
    ("lazy_start", "On", True), ("lazy_start", "0", False),
    ("concurrency", "MERGE", "merge"), ("concurrency", "lock", "lock"),
])
def test_phpsess_settings_accept(name: str, value: Any, typed: Any) -> None:
    cfg = SessionConfig()
    cfg.set(name, value)
    assert getattr(cfg, name) == typed


@pytest.mark.parametrize(("name", "value"), [
    ("lock_timeout", "-1"), ("lock_timeout", "abc"), ("lock_timeout", "inf"), ("lock_timeout", "nan"),
    ("lock_max_waiters", "-1"), ("lock_max_waiters", "1.5"), ("lock_max_waiters", "1k"),
    ("lock_wait_log_ms", "x"), ("concurrency", "optimistic"),
])
def test_phpsess_settings_refuse(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"session.{name}"):
        SessionConfig().set(name, value)


def test_defaults_are_php_compiled_defaults() -> None:
    cfg = SessionConfig()
    assert (cfg.name, cfg.sid_length, cfg.sid_bits_per_character, cfg.gc_maxlifetime) == (
        "PHPSESSID", 32, 4, 1440)
    assert (cfg.use_cookies, cfg.use_only_cookies, cfg.lazy_write, cfg.cookie_secure) == (
        True, True, True, False)
    assert cfg.as_ini()["session.trans_sid_tags"] == "a=href,area=href,frame=src,form="
    assert cfg.changed() == {} and repr(cfg) == "SessionConfig({})"
    assert list(cfg.as_ini()) == [s.ini_name for s in SETTINGS.values()]
    assert [s.name for s in SETTINGS.values() if s.core] == ["memory_limit"]


def test_copy_is_independent() -> None:
    a = SessionConfig({"name": "A"})
    b = a.copy()
    b.set("name", "B")
    b.set("gc_maxlifetime", "1")
    assert (a.name, a.get("name"), a.gc_maxlifetime) == ("A", "A", 1440)
    assert (b.name, b.get("name"), b.gc_maxlifetime) == ("B", "B", 1)
    assert a == a.copy() and a != b


def test_new_and_copy_take_a_few_microseconds() -> None:
    cfg = SessionConfig({"name": "X", "gc_maxlifetime": "60", "sid_length": "26"})
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        cfg.copy()
    t1 = time.perf_counter()
    for _ in range(n):
        SessionConfig()
    t2 = time.perf_counter()
    assert (t1 - t0) / n < 20e-6 and (t2 - t1) / n < 20e-6


# -- conversions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value", "error"), [
    ("", 0, None), ("  ", 0, None), ("0", 0, None), ("-0", 0, None), ("42", 42, None),
    ("1k", 1024, None), ("1K", 1024, None), ("2m", 2 << 20, None), ("1g", 1 << 30, None),
    ("0x10", 16, None), ("0o17", 15, None), ("0b101", 5, None), ("017", 15, None), ("0k", 0, None),
    ("-0x5", -5, None), ("\t7\n", 7, None), ("-9223372036854775808", -(1 << 63), None),
    ("abc", 0, _q("abc") + ': no valid leading digits, interpreting as "0" for backwards compatibility'),
    ("12 abc", 12, _q("12 abc") + ': unknown multiplier "c", interpreting as "12 " for backwards compatibility'),
    ("1kk", 1024, _q("1kk") + ', interpreting as "1k" for backwards compatibility'),
    ("0x", 0, _q("0x") + ': no digits after base prefix, interpreting as "0" for backwards compatibility'),
    ("0x0x12", 0, _q("0x0x12") + ': no digits after base prefix, interpreting as "0" for backwards compatibility'),
    ("0.5", 0, 'Invalid prefix "0.", interpreting as "0" for backwards compatibility'),
    ("09", 0, _q("09") + ': unknown multiplier "9", interpreting as "0" for backwards compatibility'),
    ("a\0b", 0, _q("a\\x00b") + ': no valid leading digits, interpreting as "0" for backwards compatibility'),
    ("1\u00e9", 1, _q("1\\xC3\\xA9") + ': unknown multiplier "\\xA9", interpreting as "1" for backwards compatibility'),
    ("99999999999999999999", -1,
     _q("99999999999999999999") + ": value is out of range, using overflow result for backwards compatibility"),
    ("8589934592g", -(1 << 63),
     _q("8589934592g") + ": value is out of range, using overflow result for backwards compatibility"),
])
def test_parse_quantity(raw: str, value: int, error: str | None) -> None:
    assert parse_quantity(raw) == (value, error)


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("0", False), ("", False), ("on", True), ("ON", True), ("yes", True), ("true", True),
    ("off", False), ("no", False), ("none", False), (" on", False), ("on ", False), ("2", True),
    ("-1", True), ("12abc", True), ("abc", False), ("0x1", False), (" 5", True), ("2147483648", True),
    ("4294967296", False), ("4294967297", True), ("9223372036854775808", True),
])
def test_parse_bool(raw: str, value: bool) -> None:
    assert parse_bool(raw) is value


def test_parse_long_and_float() -> None:
    assert [parse_long(s) for s in ("12abc", " -3", "x", "99999999999999999999")] == [
        12, -3, 0, (1 << 63) - 1]
    assert [parse_float(s) for s in ("1.5", " 2e1x", "abc", ".5", "-1.")] == [1.5, 20.0, 0.0, 0.5, -1.0]


# -- php.ini files ------------------------------------------------------------------------------

def _ini(tmp_path: Path, text: str, **environ: str) -> dict[str, str]:
    path = tmp_path / "php.ini"
    path.write_text(text)
    return load_ini_file(str(path), environ=environ)


@pytest.mark.parametrize(("line", "value"), [
    ("session.name = PHPSESSID", "PHPSESSID"),
    ("session.name=x", "x"),
    ("  session.name   =   spaced   ", "spaced"),
    ('session.name = "quoted;semi" ; comment', "quoted;semi"),
    ("session.name = a b c ; comment", "a b c"),
    ("session.name = 'single \\n raw'", "single \\n raw"),
    ('session.name = "esc \\" \\\\ \\$ \\n"', 'esc " \\ $ \\n'),
    ('session.name = "a" b  "c"  d', "abcd"),
    ("session.name = a  b \"c\" d e", "a  bcd e"),
    ("session.name = 'r' s 't' u", "r s t u"),
    ("session.name = On", "1"), ("session.name = yes", "1"), ("session.name = TRUE", "1"),
    ("session.name = off", ""), ("session.name = None", ""), ("session.name = null", ""),
    ("session.name = no ; c", ""), ('session.name = "None"', "None"), ("session.name = nobody", "nobody"),
    ("session.name = ${V}", "env"), ("session.name = x${V}y", "xenvy"), ('session.name = "${V}"', "env"),
    ("session.name = '${V}'", "${V}"), ("session.name = ${UNSET}", ""), ("session.name = a$b", "a$b"),
    ("session.name =", ""), ("session.name = \t", ""), ("session.name = a#b", "a#b"),
])
def test_load_ini_file_values(tmp_path: Path, line: str, value: str) -> None:
    assert _ini(tmp_path, "[Session]\n" + line + "\n", V="env") == {"session.name": value}


def test_load_ini_file_sections_keys_and_lookups(tmp_path: Path) -> None:
    text = (
        "; comment\n# bare key line\nengine = On\n[PHP]\nsession.gc_maxlifetime = 10\r\n"
        "session.gc_maxlifetime = 20\nsession.save_path = ${session.gc_maxlifetime}/x\n"
        'session.name = "multi\nline"\n'
        "error_reporting = E_ALL & ~E_DEPRECATED\nextension[] = x\n"
        "[Session]\nsession.cookie_path = /p\n[HOST=example.com]\nsession.cookie_domain = d\n"
        "[PHP]\nsession.cache_expire = 5\n"
    )
    assert _ini(tmp_path, text) == {
        "session.gc_maxlifetime": "20", "session.save_path": "20/x", "session.name": "multi\nline",
        "session.cookie_path": "/p",
    }


@pytest.mark.parametrize("line", [
    "session.name = a=b", "session.name = a|b", "session.name = ~0", "session.name = (x)",
    'session.name = "unterminated', "session.name = 'unterminated", "[PHP", "session.name = ${X",
    "session.name = On x",
])
def test_load_ini_file_syntax_errors_raise(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError, match=r"syntax error, unexpected .* on line \d+"):
        _ini(tmp_path, "a = 1\n" + line + "\n")


def test_load_ini_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_ini_file(str(tmp_path / "missing.ini"))


def test_from_ini_file_ignores_unknown_session_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "php.ini"
    path.write_text("session.cookie_partitioned = 1\nsession.name = S\n")
    with caplog.at_level(logging.WARNING, logger="phpsess.core.config"):
        cfg = from_ini_file(str(path))
    assert cfg.name == "S" and "session.cookie_partitioned" in caplog.text


def test_from_ini_file_refused_values_warn_and_keep_the_default(tmp_path: Path) -> None:
    # PHP's startup: "PHP Startup: <reason>" and the default stays (checked against PHP
    # 8.2 in tests/oracle/test_phpt.py); ini_set() at runtime still refuses (ConfigError)
    path = tmp_path / "php.ini"
    path.write_text("session.sid_length = 5\nsession.save_handler = user\nsession.name = 123\n")
    seen: list[str] = []
    cfg = from_ini_file(str(path), warn=seen.append)
    assert (cfg.sid_length, cfg.save_handler, cfg.name, cfg.unusable) == (32, "files", "PHPSESSID", None)
    assert seen == [
        'PHP Startup: session.configuration "session.sid_length" must be between 22 and 256',
        'PHP Startup: Session save handler "user" cannot be set by ini_set()',
        'PHP Startup: session.name "123" cannot be numeric or empty',
    ]
    with pytest.raises(ConfigError):
        cfg.set("sid_length", "5")


def test_from_ini_file_unknown_handlers_disable_the_session(tmp_path: Path) -> None:
    path = tmp_path / "php.ini"
    path.write_text("session.serialize_handler = blah\nserialize_precision = 17\n")
    cfg = from_ini_file(str(path), warn=pytest.fail)
    assert (cfg.get("serialize_handler"), cfg.serialize_precision) == ("blah", 17)
    assert cfg.unusable == 'Cannot find session serialization handler "blah" - session startup failed'


# -- conf/phpsess.ini ----------------------------------------------------------------------------

def test_conf_phpsess_ini_documents_every_setting() -> None:
    text = CONF.read_text()
    entries = load_ini_file(str(CONF))
    assert set(entries) == {s.ini_name for s in SETTINGS.values()}
    for key, s in SETTINGS.items():
        block = re.search(r"((?:^;.*\n)+)^" + re.escape(s.ini_name) + r" =", text, re.M)
        assert block, key
        comment = block.group(1)
        if s.ext != "session":
            assert f"php-{s.ext} 3.2 default: {s.default or chr(34) * 2}" in comment, key
            assert entries[s.ini_name] == s.default, key
        elif s.phpsess_only:
            assert f"phpsess default: {s.default}" in comment, key
        else:
            default = s.default or '""'
            assert f"PHP 8.2 default: {default} |" in comment, key
            if s.debian is not None:
                assert f"Debian: {s.debian or chr(34) * 2}" in comment, key
                assert entries[s.ini_name] == s.debian, key
    cfg = from_ini_file(str(CONF))
    assert (cfg.sid_length, cfg.sid_bits_per_character, cfg.gc_probability) == (26, 5, 0)
