"""SessionConfig against real PHP 8.2: ini_set() results, warnings, ini_get() afterwards,
the value PHP then uses, php.ini parsing, and the ids PHP generates. Runs ``php -n``.

One PHP process tries every value on every ``session.*`` setting (restoring it after each
try) and reports, per try: ini_set()'s return, ini_get() afterwards, the warnings, and
what PHP then uses where a function shows it (session_get_cookie_params(),
session_cache_expire(), session_name(), ...).  The same tries run on SessionConfig.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

import pytest

from phpsess.core.config import SETTINGS, ConfigError, SessionConfig
from phpsess.session.settings import load_ini_file
from phpsess.core.zend import strval
from phpsess.core.ids import ALPHABET

try:
    from tests.phptools import require, run_php
except ImportError:  # tests/ itself on sys.path
    from phptools import require, run_php  # type: ignore[no-redef]

__all__: list[str] = []

#: string values tried on every setting (PHP sees their UTF-8 bytes)
VALUES = [
    "", "0", "1", "2", "-1", "abc", "12abc", " 12", "12 ", "-5", "+5", "0x1A", "0b11", "0o17",
    "017", "09", "1e3", "1.5", ".5", "5.", "0.5", "1k", "1K", "2m", "1g", "1 k", "1kk", "08k",
    "on", "off", "yes", "no", "true", "false", "none", "On", "YES", " on", "On ", "null",
    "123", " ", "\t7", "\n8", "\v7", "\f7", "7\v", "5 ", "0x", "-0", "+0", "00", "-0x5",
    "0x0x12", "0x 1", "0b2", "0 x", "1_000", "12 abc", "-", "+", "- 1",
    "2147483648", "4294967296", "4294967297", "-2147483649",
    "9223372036854775806", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "99999999999999999999",
    "-99999999999999999999", "18446744073709551615", "18446744073709551616",
    "9223372036854775807k", "8589934592g", "-8589934593g", "18446744073709551616k",
    "a\0b", "\0", "\0a", "1\0", "0\0", "é", "1é", "0é", "1\\", "\x01",
    "php", "PHP", "php_serialize", "php_binary", "php_binary\0x", "files", "FILES", "Files",
    "user", "USER", "redis", "memory", "bogus",
    "22", "26", "32", "256", "257", "21", " 22", "22 ", "+22", "022", "0x16", "22.0", "4",
    "5", "6", "7", "3", " 5", "+5", "05", "5\n",
    "50%", "100%", "101%", "-1%", "abc%", "0%", "4294967396%",
    "nocache", "private", "public", "private_no_expire", "Lax", "Strict", "None",
    "a=b", "a.b", "a b", "x;y", "/path", "INF", "NAN", "1e", " 1e3 ",
]
#: typed values (ini_set's string|int|float|bool|null), tried on a few settings
TYPED: list[Any] = [True, False, None, 0, 7, -3, 40, 1.5, 1e20, 0.1, 100.0, -0.0, 5.0, 1e15, 1e14]

PROBE = r"""<?php
ob_start();
$W = [];
set_error_handler(function ($no, $str) use (&$W) { $W[] = base64_encode($str); return true; });
$cases = json_decode(file_get_contents("php://stdin"), true);
$out = [];
foreach ($cases as [$name, $kind, $v]) {
    if ($kind === "s") $v = base64_decode($v);
    elseif ($kind === "f") $v = (float)$v;
    elseif ($kind === "n") $v = null;
    $W = [];
    $ret = ini_set("session.$name", $v);
    $after = ini_get("session.$name");
    $p = session_get_cookie_params();
    $id = session_create_id();
    $eff = [
        "lifetime" => $p["lifetime"], "path" => $p["path"], "domain" => $p["domain"],
        "secure" => $p["secure"], "httponly" => $p["httponly"], "samesite" => $p["samesite"],
        "cache_expire" => session_cache_expire(), "cache_limiter" => session_cache_limiter(),
        "name" => session_name(), "save_path" => session_save_path(),
        "module" => session_module_name(), "idlen" => strlen($id), "idchars" => count_chars($id, 3),
    ];
    foreach ($eff as $k => $x) if (is_string($x)) $eff[$k] = base64_encode($x);
    $out[] = [$ret === false ? false : base64_encode($ret),
              $after === false ? false : base64_encode($after), $W, $eff];
    ini_restore("session.$name");
}
$o = json_encode($out);
ob_end_clean();
echo $o;
"""


def _b(s: str | bool) -> str | bool:
    return s if s is False else base64.b64decode(s).decode("utf-8", "surrogateescape")


def _encode_case(name: str, v: Any) -> list[Any]:
    if isinstance(v, bool):
        return [name, "b", v]
    if isinstance(v, int):
        return [name, "i", v]
    if isinstance(v, float):
        return [name, "f", repr(v)]
    if v is None:
        return [name, "n", None]
    return [name, "s", base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()]


def php_ini_set_results(cases: list[tuple[str, Any]], ini: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run the probe in one ``php -n`` process; one result dict per case."""
    payload = json.dumps([_encode_case(n, v) for n, v in cases]).encode()
    proc = run_php(PROBE, ini, stdin=payload)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = []
    for ret, after, warnings, eff in json.loads(proc.stdout):
        results.append({
            "ret": _b(ret),
            "get": _b(after),
            "warnings": [_b(w) for w in warnings],
            "eff": {k: _b(v) if isinstance(v, str) else v for k, v in eff.items()},
        })
    return results


def ours(name: str, value: Any, base: SessionConfig) -> dict[str, Any]:
    """The same try on SessionConfig, in the probe's terms (messages as PHP prints them)."""
    cfg = base.copy()
    warnings: list[str] = []
    try:
        ret: str | bool = cfg.set("session." + name, value, warn=warnings.append)
    except ConfigError as exc:
        ret = False
        if str(exc):
            warnings.append("ini_set(): " + str(exc))
    return {"ret": ret, "get": cfg.get(name), "warnings": warnings, "cfg": cfg}


#: where `php -n` of Debian's build starts from other values than php-src's defaults
DEBIAN_BUILD = {"upload_progress.enabled": "0"}
#: deliberate differences: phpsess has save handlers that `php -n` lacks (phpredis has "redis")
PHPSESS_DIFFERS = {("save_handler", "redis"), ("save_handler", "memory")}

PHP_SETTINGS = [s.name for s in SETTINGS.values() if not s.phpsess_only and s.ext == "session" and not s.core]


@pytest.fixture(scope="module")
def table() -> list[tuple[str, Any, dict[str, Any]]]:
    cases = [(n, v) for n in PHP_SETTINGS for v in VALUES]
    cases += [(n, v) for n in ("gc_maxlifetime", "cookie_lifetime", "cookie_secure", "name",
                               "save_handler", "sid_length", "sid_bits_per_character",
                               "cookie_path", "auto_start") for v in TYPED]
    results = php_ini_set_results(cases, {"session.gc_probability": "1"})
    return [(n, v, r) for (n, v), r in zip(cases, results)]


def test_every_setting_php_knows_is_in_settings() -> None:
    proc = run_php('<?php echo json_encode(array_keys(ini_get_all("session")));')
    names = {k.removeprefix("session.") for k in json.loads(proc.stdout)}
    names |= {"trans_sid_tags", "trans_sid_hosts"}  # registered by ext/standard
    assert names == set(PHP_SETTINGS)


def test_defaults_are_php_compiled_defaults() -> None:
    code = ('foreach (ini_get_all("session", false) as $k => $v) echo "$k=$v\\n";'
            'echo "session.trans_sid_tags=", ini_get("session.trans_sid_tags"), "\\n";'
            'echo "session.trans_sid_hosts=", ini_get("session.trans_sid_hosts"), "\\n";')
    proc = subprocess.run([require("php"), "-n", "-r", code], capture_output=True, check=True)
    php = dict(line.split("=", 1) for line in proc.stdout.decode().splitlines())
    # Debian's build differs from php-src here even with -n; phpsess keeps php-src's values
    assert php.pop("session.save_path") == "/var/lib/php/sessions"
    assert php.pop("session.upload_progress.enabled") == "0"
    cfg = SessionConfig()
    assert (cfg.save_path, cfg.upload_progress_enabled) == ("", True)
    assert php == {k: cfg.get(k) for k in php}


def test_access_modes_match_php() -> None:
    proc = run_php('<?php foreach (ini_get_all("session") as $k => $v) echo "$k=", $v["access"], "\n";')
    for line in proc.stdout.decode().splitlines():
        key, access = line.split("=")
        expected = "PERDIR" if access == "6" or access == "2" else "ALL"
        assert SETTINGS[key.removeprefix("session.")].mode == expected, key


@pytest.mark.parametrize("name", PHP_SETTINGS)
def test_ini_set_matches_php(name: str, table: list[tuple[str, Any, dict[str, Any]]]) -> None:
    base = SessionConfig(DEBIAN_BUILD)
    mismatches = []
    for n, value, php in table:
        if n != name or (n, value) in PHPSESS_DIFFERS:
            continue
        got = ours(name, value, base)
        if (got["ret"], got["get"], got["warnings"]) != (php["ret"], php["get"], php["warnings"]):
            mismatches.append((value, {k: php[k] for k in ("ret", "get", "warnings")},
                               {k: got[k] for k in ("ret", "get", "warnings")}))
        mismatches += _effective_mismatches(name, value, php["eff"], got["cfg"])
    assert mismatches == []


def _effective_mismatches(name: str, value: Any, eff: dict[str, Any], cfg: SessionConfig) -> list[Any]:
    """Compare what PHP uses after the try with our typed attributes."""
    mine = {
        "lifetime": cfg.cookie_lifetime, "path": cfg.cookie_path, "domain": cfg.cookie_domain,
        "secure": cfg.cookie_secure, "httponly": cfg.cookie_httponly,
        "samesite": cfg.cookie_samesite, "cache_expire": cfg.cache_expire,
        "cache_limiter": cfg.cache_limiter, "name": cfg.name, "save_path": cfg.save_path,
        "module": cfg.save_handler, "idlen": cfg.sid_length,
    }
    out = [(value, k, eff[k], v) for k, v in mine.items() if eff[k] != v]
    if not set(eff["idchars"]) <= set(ALPHABET[: 1 << cfg.sid_bits_per_character]):
        out.append((value, "idchars", eff["idchars"], cfg.sid_bits_per_character))
    return out


def test_gc_maxlifetime_value_in_use_matches_php() -> None:
    """gc_maxlifetime as PHP passes it to the handler's gc() (session_gc())."""
    values = ["1k", "abc", "12abc", "0x10", "017", "-5", " 7 ", "9223372036854775808", "2m", "1.5"]
    code = r"""<?php
    ob_start();
    class H implements SessionHandlerInterface {
        public $max;
        function open($p, $n): bool { return true; } function close(): bool { return true; }
        function read($id): string|false { return ""; } function write($id, $d): bool { return true; }
        function destroy($id): bool { return true; }
        function gc($max): int|false { $this->max = $max; return 0; }
    }
    $h = new H; session_set_save_handler($h, false); $out = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $v) {
        @ini_set("session.gc_maxlifetime", $v); session_start(); session_gc(); session_abort();
        $out[] = $h->max;
    }
    ob_end_clean(); echo json_encode($out);
    """
    proc = run_php(code, stdin=json.dumps(values).encode())
    php = json.loads(proc.stdout)
    mine = []
    for v in values:
        cfg = SessionConfig()
        cfg.set("gc_maxlifetime", v, warn=lambda m: None)
        mine.append(cfg.gc_maxlifetime)
    assert mine == php


def test_session_start_options_convert_like_ini_set() -> None:
    """session_start([...]) stores int/bool/string options as ini strings (floats: TypeError)."""
    code = r"""<?php ob_start(); $o = [];
    foreach ([["cookie_lifetime", true], ["cookie_lifetime", false], ["cookie_path", 12],
              ["cookie_domain", "x"], ["gc_maxlifetime", -3], ["use_strict_mode", true]] as [$k, $v]) {
        session_start([$k => $v]); $o[] = ini_get("session.$k"); session_abort(); }
    ob_end_clean(); echo json_encode($o);"""
    proc = run_php(code, {"session.save_path": "/tmp"})
    expected = [strval(v) for v in (True, False, 12, "x", -3, True)]
    assert json.loads(proc.stdout) == expected


# -- php.ini files ----------------------------------------------------------------------------

INI_FILES = {
    "quotes_and_comments": (
        "[PHP]\n"
        'session.name = "quoted;semi" ; comment\n'
        "session.cookie_path = /a b c   ; trailing blanks go\n"
        "session.cookie_domain = On\n"
        "session.referer_check = 'single;quoted\\n'\n"
        'session.cache_limiter = "esc \\" \\\\ \\n \\$ x"\n'
        "session.trans_sid_hosts = ${PHPSESS_TEST_VAR}\n"
        'session.trans_sid_tags = "pre${PHPSESS_TEST_VAR}post"\n'
        'session.upload_progress.prefix = foo"bar"baz\n'
        "session.upload_progress.name = none\n"
        'session.save_path = "/tmp"\n'
        "session.cookie_samesite = None\n"
        "session.gc_maxlifetime = 1k\n"
        "[other]\n"
        "session.serialize_handler = php_serialize\n"
        "session.sid_length=26\n"
        "session.sid_bits_per_character =5\n"
        "session.use_strict_mode= yes\n"
        "session.lazy_write = off\n"
        "session.use_trans_sid = NULL\n"
        "session.cookie_httponly = TRUE\n"
        "session.gc_probability=\n"
        "session.gc_divisor = 1000 ; x\n"
    ),
    "concatenation_and_sections": (
        "# not a comment in PHP 8, but a harmless bare key\n"
        "session.cookie_domain = \"a\" b  \"c\"  d\r\n"
        "  session.serialize_handler   =   php_binary\n"
        "session.gc_maxlifetime = 10\n"
        "session.gc_maxlifetime = 20\n"
        "session.cookie_lifetime = 3;4\n"
        'session.use_strict_mode = "On"\n'
        "session.cookie_path = /a/b.c-d_e@g:h+i%j,k$x\n"
        "session.cache_limiter = ${UNDEFINED_PHPSESS_VAR}x\n"
        "session.save_path = ${session.gc_maxlifetime}/s\n"
        "session.name = \"multi\nline\"\n"
        "[ PHP ]\n"
        "session.cookie_secure = yes ; \n"
        "session.use_cookies = Off\n"
        'session.upload_progress.freq = "50%"\t\n'
        "session.cookie_samesite = 'None'\n"
        "session.cookie_httponly = 'yes'\n"
        "session.referer_check = 'r' s 't' u\n"
        "session.trans_sid_tags = a  b \"c\" d e\n"
        "session.trans_sid_hosts = x  \t y   \n"
        "session.lazy_write = ${PHPSESS_TEST_VAR} ${PHPSESS_TEST_VAR} \"${PHPSESS_TEST_VAR}\"\n"
        "error_reporting = E_ALL & ~E_DEPRECATED ; an expression, not ours\n"
        "[HOST=example.com]\n"
        "session.gc_divisor = 7\n"
        "[PATH=/tmp]\n"
        "session.gc_probability = 9\n"
        "[PHP]\n"
        "session.cache_expire = 5 ; after a HOST/PATH section: per-request in PHP too\n"
    ),
}
_CONF = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "phpsess.ini")
for _path in (_CONF, "/usr/lib/php/8.2/php.ini-production", "/usr/lib/php/8.2/php.ini-development"):
    if os.path.exists(_path):
        with open(_path, encoding="utf-8") as _fh:
            INI_FILES[os.path.basename(_path)] = _fh.read()


@pytest.mark.parametrize("name", sorted(INI_FILES))
def test_load_ini_file_matches_php(name: str, tmp_path: Any) -> None:
    path = tmp_path / "php.ini"
    path.write_text(INI_FILES[name])
    env = dict(os.environ, PHP_INI_SCAN_DIR="", PHPSESS_TEST_VAR="/from/env")
    code = ('foreach (ini_get_all("session", false) as $k => $v) echo $k, "=", base64_encode($v), "\\n";'
            'echo "session.trans_sid_tags=", base64_encode(ini_get("session.trans_sid_tags")), "\\n";'
            'echo "session.trans_sid_hosts=", base64_encode(ini_get("session.trans_sid_hosts")), "\\n";'
            'echo "memory_limit=", base64_encode(ini_get("memory_limit")), "\\n";')
    proc = subprocess.run([require("php"), "-c", str(path), "-r", code], capture_output=True, env=env)
    assert proc.returncode == 0 and b"error" not in proc.stderr.lower(), proc.stderr
    php = {}
    for line in proc.stdout.decode().splitlines():
        k, v = line.split("=", 1)
        php[k] = base64.b64decode(v).decode("utf-8", "surrogateescape")
    entries = load_ini_file(str(path), environ={"PHPSESS_TEST_VAR": "/from/env"})
    entries = {k: v for k, v in entries.items()
               if k.startswith("session.") and not SETTINGS[k.removeprefix("session.")].phpsess_only}
    assert set(entries) <= set(php)
    # settings the file leaves alone start from the Debian build's values, as in PHP
    base = {"session.save_path": "/var/lib/php/sessions", "session.upload_progress.enabled": "0"}
    cfg = SessionConfig({**base, **entries})
    assert php == {k: cfg.get(k) for k in php}


# -- ids: what sid_length / sid_bits_per_character make PHP generate -----------------------------

@pytest.mark.parametrize("bits", [4, 5, 6])
def test_php_ids_use_the_alphabet_of_sid_bits_per_character(bits: int) -> None:
    code = r"""<?php ob_start(); $o = [];
    for ($i = 0; $i < 8; $i++) $o[] = session_create_id();
    ob_end_clean(); echo implode("\n", $o);"""
    proc = run_php(code, {"session.sid_length": "256", "session.sid_bits_per_character": str(bits)})
    ids = proc.stdout.decode().split("\n")
    assert all(len(i) == 256 for i in ids)
    used = set("".join(ids))
    assert used <= set(ALPHABET[: 1 << bits])
    # 2048 characters: every symbol of the alphabet shows up (misses are ~1e-10 likely)
    assert used == set(ALPHABET[: 1 << bits])


def test_session_create_id_prefix_rule_matches_is_valid_prefix() -> None:
    from phpsess.core.ids import is_valid_prefix

    prefixes = ["", "a", "a,b-C9", "a b", "a_b", "a.b", "\u00e9", "a" * 256, "a" * 257, "x\ty", "-", ","]
    code = r"""<?php ob_start(); $o = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $p) $o[] = @session_create_id($p) !== false;
    ob_end_clean(); echo json_encode($o);"""
    proc = run_php(code, stdin=json.dumps(prefixes).encode())
    assert json.loads(proc.stdout) == [is_valid_prefix(p) for p in prefixes]


# -- php-memcached's session settings (memcached.sess_*), with the extension loaded -------------

MEMCACHED_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=msgpack.so", "-d", "extension=memcached.so"]
MEMCACHED_SETTINGS = [s.name for s in SETTINGS.values() if s.ext == "memcached"]
MEMC_VALUES = VALUES + ["ketama", "ketama_weighted", "KETAMA", "memc.sess.key.", "app:", "a" * 250, "a" * 251,
                        "a" * 252, "not set", "x\x7f", "sess~1"]

MEMC_PROBE = r"""<?php
$W = [];
set_error_handler(function ($no, $str) use (&$W) { $W[] = [$no, base64_encode($str)]; return true; });
$out = [];
foreach (json_decode(file_get_contents("php://stdin"), true) as [$name, $kind, $v]) {
    if ($kind === "s") $v = base64_decode($v);
    elseif ($kind === "f") $v = (float)$v;
    elseif ($kind === "n") $v = null;
    $W = [];
    $ret = ini_set($name, $v);
    $after = ini_get($name);
    $out[] = [$ret === false ? false : base64_encode($ret), $after === false ? false : base64_encode($after), $W];
    ini_restore($name);
}
echo json_encode($out);
"""


def test_memcached_settings_are_php_memcached_s() -> None:
    code = 'foreach (ini_get_all("memcached") as $k => $v) echo $k, "=", $v["global_value"], "=", $v["access"], "\n";'
    proc = subprocess.run([require("php"), "-n", *MEMCACHED_EXTENSIONS, "-r", code], capture_output=True, check=True)
    php = {k: (v, a) for k, v, a in (line.split("=") for line in proc.stdout.decode().splitlines())}
    sess = {k: v for k, v in php.items() if k.startswith("memcached.sess_")}
    assert set(sess) == set(MEMCACHED_SETTINGS)
    cfg = SessionConfig()
    assert {k: v[0] for k, v in sess.items()} == {k: cfg.get(k) for k in sess}
    assert {v[1] for v in sess.values()} == {"7"}  # PHP_INI_ALL
    assert all(SETTINGS[k].mode == "ALL" for k in sess)


def test_memcached_ini_set_matches_php() -> None:
    cases = [(n, v) for n in MEMCACHED_SETTINGS for v in MEMC_VALUES]
    cases += [(n, v) for n in ("memcached.sess_locking", "memcached.sess_lock_retries") for v in TYPED]
    payload = json.dumps([_encode_case(n, v) for n, v in cases]).encode()
    proc = subprocess.run([require("php"), "-n", *MEMCACHED_EXTENSIONS, "-r", MEMC_PROBE.removeprefix("<?php")],
                          input=payload, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    levels = {2: "Warning", 8192: "Deprecated"}
    mismatches = []
    for (name, value), (ret, after, warnings) in zip(cases, json.loads(proc.stdout)):
        php = (_b(ret), _b(after), [(levels[no], _b(w)) for no, w in warnings])
        cfg = SessionConfig()
        got_warnings: list[tuple[str, str]] = []
        try:
            got_ret: str | bool = cfg.set(name, value, warn=lambda m: got_warnings.append(("Warning", m)))
        except ConfigError as exc:
            got_ret = False
            if str(exc):
                got_warnings.append((exc.level, "ini_set(): " + str(exc)))
        got = (got_ret, cfg.get(name), got_warnings)
        if got != php:
            mismatches.append((name, value, php, got))
    assert mismatches == []


def test_memcached_settings_load_from_php_ini_as_php_reads_them(tmp_path: Any) -> None:
    path = tmp_path / "php.ini"
    path.write_text("[memcached]\nmemcached.sess_locking = Off\nmemcached.sess_lock_wait_min = 2k\n"
                    "memcached.sess_prefix = \"app.\"\nmemcached.sess_lock_retries = -1\n"
                    "memcached.sess_lock_wait = 500\nmemcached.serializer = php\n")
    code = 'foreach (ini_get_all("memcached", false) as $k => $v) echo $k, "=", $v, "\n";'
    proc = subprocess.run([require("php"), "-n", "-c", str(path), *MEMCACHED_EXTENSIONS, "-r", code],
                          capture_output=True, env=dict(os.environ, PHP_INI_SCAN_DIR=""))
    php = dict(line.split("=", 1) for line in proc.stdout.decode().splitlines() if "=" in line)
    from phpsess.session.settings import from_ini_file

    cfg = from_ini_file(str(path))
    assert {k: v for k, v in php.items() if k.startswith("memcached.sess_")} == {
        k: cfg.get(k) for k in MEMCACHED_SETTINGS}
    assert (cfg.memcached_sess_locking, cfg.memcached_sess_lock_wait_min, cfg.memcached_sess_lock_retries) == (
        False, 2048, -1)
