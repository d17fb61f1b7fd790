"""Differential tests of the session runtime: each scenario runs as a PHP page under real
``php-cgi`` and as the same page ported to phpsess under ``python3 script.py`` (CGI), and the
session files, session headers and printed results must be the same. Runs subprocesses.

Read a scenario as a porting guide: the PHP page and its Python port side by side.  The
harness (difftools.py) adds ``out($x)`` / ``out(x)`` (JSON of a value) to both, sends each
step's cookie with the next, and normalises ids (``ID1``...), dates and paths.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import pytest

from .difftools import Scenario, SideResult, Step, compare, run_scenario

__all__: list[str] = []



def S(name: str, *steps: Step, **kw: Any) -> Scenario:
    """A scenario; ``ini`` keys may omit the ``session.`` prefix."""
    ini = {(k if "." in k else "session." + k): str(v) for k, v in kw.pop("ini", {}).items()}
    return Scenario(name, list(steps), ini=ini, **kw)


def plant(name: str, data: bytes, age: float = 0.0) -> Any:
    """A ``before`` hook writing ``save/name`` (mtime ``age`` seconds ago)."""

    def hook(save: Path, ids: Mapping[str, str]) -> None:
        p = save / name.format(**ids)
        p.write_bytes(data)
        p.chmod(0o600)
        if age:
            t = time.time() - age
            os.utime(p, (t, t))

    return hook


def _assert_nothing_outside(outside: Path) -> None:
    assert list(outside.iterdir()) == [], f"files created outside save_path: {list(outside.iterdir())}"


COUNTER = Step(
    php=r"""
out(session_start());
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
out($_SESSION['n']);
out(session_id());
""",
    py=r"""
out(session_start())
SESSION["n"] = SESSION.get("n", 0) + 1
out(SESSION["n"])
out(session_id())
""",
)

SET_A1 = Step(
    php=r"""session_start(); $_SESSION['a'] = 1; $_SESSION['s'] = 'x'; out(session_id());""",
    py=r"""session_start(); SESSION["a"] = 1; SESSION["s"] = "x"; out(session_id())""",
)

SHOW = Step(
    php=r"""out(session_start()); out(session_id()); out($_SESSION);""",
    py=r"""out(session_start()); out(session_id()); out(SESSION)""",
)

#: SHOW, then a change, so that the step's write is a content write on both sides
SHOW_THEN_CHANGE = Step(php=SHOW.php + " $_SESSION['seen'] = 1;", py=SHOW.py + '; SESSION["seen"] = 1')

VALUES_PHP = r"""
$_SESSION['int'] = 42; $_SESSION['neg'] = -7; $_SESSION['float'] = 0.1; $_SESSION['one'] = 1.0;
$_SESSION['big'] = 1e17; $_SESSION['str'] = "héllo|wörld"; $_SESSION['empty'] = "";
$_SESSION['t'] = true; $_SESSION['f'] = false; $_SESSION['nul'] = null;
$_SESSION['list'] = [1, 2, 3]; $_SESSION['map'] = ['k' => 'v', 3 => [true], '-1' => 'neg'];
"""
VALUES_PY = r"""
SESSION["int"] = 42; SESSION["neg"] = -7; SESSION["float"] = 0.1; SESSION["one"] = 1.0
SESSION["big"] = 1e17; SESSION["str"] = "héllo|wörld"; SESSION["empty"] = ""
SESSION["t"] = True; SESSION["f"] = False; SESSION["nul"] = None
SESSION["list"] = [1, 2, 3]; SESSION["map"] = {"k": "v", 3: [True], -1: "neg"}
"""


def serializer(handler: str) -> Scenario:
    return S(
        f"serialize_handler_{handler}",
        Step(php="session_start();" + VALUES_PHP + "out(session_encode());",
             py="session_start()\n" + VALUES_PY + "out(session_encode())"),
        SHOW,
        ini={"serialize_handler": handler},
    )


def limiter(name: str, expire: int = 180) -> Scenario:
    return S(
        f"cache_limiter_{name or 'empty'}",
        Step(
            php=r"""header('Cache-Control: set-before-start'); header('Expires: before');
out(session_cache_limiter()); out(session_cache_expire()); out(session_start());""",
            py=r"""header("Cache-Control: set-before-start"); header("Expires: before")
out(session_cache_limiter()); out(session_cache_expire()); out(session_start())""",
        ),
        ini={"cache_limiter": name, "cache_expire": expire},
    )


USER_HANDLER_PHP = r"""
class H implements SessionHandlerInterface, SessionUpdateTimestampHandlerInterface, SessionIdInterface {
    public array $log = [];
    private string $dir = '';
    function open(string $path, string $name): bool { $this->dir = $path; $this->log[] = "open $name"; return true; }
    function close(): bool { $this->log[] = "close"; return true; }
    function read(string $id): string|false { $this->log[] = "read $id"; return (string) @file_get_contents("$this->dir/u_$id"); }
    function write(string $id, string $data): bool { $this->log[] = "write $id $data"; file_put_contents("$this->dir/u_$id", $data); return true; }
    function destroy(string $id): bool { $this->log[] = "destroy $id"; @unlink("$this->dir/u_$id"); return true; }
    function gc(int $max): int|false { $this->log[] = "gc $max"; return 0; }
    function create_sid(): string { $this->log[] = "create_sid"; return bin2hex(random_bytes(16)); }
    function validateId(string $id): bool { $this->log[] = "validateId $id"; return file_exists("$this->dir/u_$id"); }
    function updateTimestamp(string $id, string $data): bool { $this->log[] = "updateTimestamp $id $data"; touch("$this->dir/u_$id"); return true; }
}
$h = new H;
out(session_set_save_handler($h, true));
out(session_module_name());
"""
USER_HANDLER_PY = r"""
import os, secrets

class H:
    def __init__(self): self.log = []; self.dir = ""
    def open(self, path, name): self.dir = path; self.log.append(f"open {name}"); return True
    def close(self): self.log.append("close"); return True
    def read(self, id):
        self.log.append(f"read {id}")
        try:
            with open(f"{self.dir}/u_{id}") as f: return f.read()
        except OSError: return ""
    def write(self, id, data):
        self.log.append(f"write {id} {data}")
        with open(f"{self.dir}/u_{id}", "w") as f: f.write(data)
        return True
    def destroy(self, id):
        self.log.append(f"destroy {id}")
        try: os.unlink(f"{self.dir}/u_{id}")
        except OSError: pass
        return True
    def gc(self, max): self.log.append(f"gc {max}"); return 0
    def create_sid(self): self.log.append("create_sid"); return secrets.token_hex(16)
    def validateId(self, id): self.log.append(f"validateId {id}"); return os.path.exists(f"{self.dir}/u_{id}")
    def updateTimestamp(self, id, data): self.log.append(f"updateTimestamp {id} {data}"); os.utime(f"{self.dir}/u_{id}"); return True

h = H()
out(session_set_save_handler(h, True))
out(session_module_name())
"""


SCENARIOS: list[Scenario] = [
    # -- lifecycle ---------------------------------------------------------------------------
    S("first_visit", Step(
        php=r"""out(session_status()); out(session_id()); out(session_start()); out(session_status());
out(strlen(session_id())); out($_SESSION); out(session_encode());""",
        py=r"""out(session_status()); out(session_id()); out(session_start()); out(session_status())
out(len(session_id())); out(SESSION); out(session_encode())""")),
    S("counter", COUNTER, COUNTER, COUNTER),
    S("regenerate_keep_old", SET_A1, Step(
        php=r"""session_start(); $old = session_id(); out(session_regenerate_id()); out(session_id() !== $old);
out(session_id()); $_SESSION['b'] = 2;""",
        py=r"""session_start(); old = session_id(); out(session_regenerate_id()); out(session_id() != old)
out(session_id()); SESSION["b"] = 2"""), SHOW),
    S("regenerate_delete_old", SET_A1, Step(
        php=r"""session_start(); $_SESSION['b'] = 2; out(session_regenerate_id(true)); out(session_id());""",
        py=r"""session_start(); SESSION["b"] = 2; out(session_regenerate_id(True)); out(session_id())"""), SHOW),
    S("regenerate_without_session", Step(
        php=r"""out(session_regenerate_id()); out(session_destroy()); out(session_write_close());
out(session_abort()); out(session_reset()); out(session_unset()); out(session_gc());""",
        py=r"""out(session_regenerate_id()); out(session_destroy()); out(session_write_close())
out(session_abort()); out(session_reset()); out(session_unset()); out(session_gc())""")),
    S("destroy", SET_A1, Step(
        php=r"""session_start(); out(session_destroy()); out(session_id()); out(session_status()); out($_SESSION);
out(session_encode()); $_SESSION['after'] = 1;""",
        py=r"""session_start(); out(session_destroy()); out(session_id()); out(session_status()); out(SESSION)
out(session_encode()); SESSION["after"] = 1"""), SHOW),
    S("destroy_then_start_again", SET_A1, Step(
        php=r"""session_start(); session_destroy(); out(session_start()); out(session_id()); out($_SESSION);""",
        py=r"""session_start(); session_destroy(); out(session_start()); out(session_id()); out(SESSION)""")),
    S("abort", SET_A1, Step(
        php=r"""session_start(); $_SESSION['a'] = 2; out(session_abort()); out(session_status()); out($_SESSION);
out(session_id()); out(session_encode());""",
        py=r"""session_start(); SESSION["a"] = 2; out(session_abort()); out(session_status()); out(SESSION)
out(session_id()); out(session_encode())"""), SHOW),
    S("reset", SET_A1, Step(
        php=r"""session_start(); $_SESSION['a'] = 2; $_SESSION['new'] = 1; out(session_reset()); out($_SESSION);
$_SESSION['c'] = 3;""",
        py=r"""session_start(); SESSION["a"] = 2; SESSION["new"] = 1; out(session_reset()); out(SESSION)
SESSION["c"] = 3"""), SHOW),
    S("unset", SET_A1, Step(
        php=r"""session_start(); $copy = $_SESSION; out(session_unset()); out($_SESSION); out($copy);""",
        py=r"""session_start(); copy = SESSION.copy(); out(session_unset()); out(SESSION); out(copy)"""), SHOW_THEN_CHANGE),
    S("read_and_close", SET_A1, Step(
        php=r"""out(session_start(['read_and_close' => true])); out(session_status()); out($_SESSION);
$_SESSION['b'] = 2; out(session_id());""",
        py=r"""out(session_start({"read_and_close": True})); out(session_status()); out(SESSION)
SESSION["b"] = 2; out(session_id())"""), SHOW),
    S("start_twice_notice", Step(
        php=r"""out(session_start()); out(session_start(['name' => 'other']));  out(session_name());""",
        py=r"""out(session_start()); out(session_start({"name": "other"})); out(session_name())""")),
    S("restart_after_write_close_resends_cookie", SET_A1, Step(
        php=r"""session_start(); $_SESSION['n'] = 1; session_write_close(); out(session_id());
out(session_start()); $_SESSION['n']++; session_write_close(); out(session_start());""",
        py=r"""session_start(); SESSION["n"] = 1; session_write_close(); out(session_id())
out(session_start()); SESSION["n"] += 1; session_write_close(); out(session_start())"""), SHOW),
    S("session_id_before_start", Step(
        php=r"""out(session_id('presetsession12')); out(session_id()); out(session_start()); out(session_id());
$_SESSION['x'] = 1; out(session_id('other'));""",
        py=r"""out(session_id("presetsession12")); out(session_id()); out(session_start()); out(session_id())
SESSION["x"] = 1; out(session_id("other"))"""), SHOW),
    S("values_before_start_discarded", Step(
        php=r"""$_SESSION['early'] = 1; out(session_start()); out($_SESSION); $_SESSION = ['replaced' => true];""",
        py=r"""out(session_start()); out(SESSION); SESSION.replace({"replaced": True})"""), SHOW),
    # -- ids ------------------------------------------------------------------------------
    S("cookie_id_adopted_non_strict", Step(php=COUNTER.php, py=COUNTER.py, cookie="PHPSESSID=unknownsession1234")),
    S("strict_mode_unknown_id", Step(php=COUNTER.php, py=COUNTER.py, cookie="PHPSESSID=unknownsession1234"),
      COUNTER, ini={"use_strict_mode": 1}),
    S("strict_mode_known_id", SET_A1, SHOW, ini={"use_strict_mode": 1}),
    S("invalid_id_illegal_char", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=abc$def")),
    S("invalid_id_too_long", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=" + "a" * 300)),
    S("invalid_id_strict", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=abc$def"), ini={"use_strict_mode": 1}),
    S("id_with_forbidden_char_discarded", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=abc<def")),
    S("cookie_percent_space_discarded", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=abc%20def")),
    S("cookie_plus_kept", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=abc+def")),
    S("cookie_empty_value", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=")),
    S("cookie_first_wins", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=firstcookie1; PHPSESSID=second2")),
    S("cookie_array_value", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID[]=arr1")),
    S("cookie_garbage", Step(php=SHOW.php, py=SHOW.py, cookie=";;; =x; PHPSESSID; ===; a=b")),
    S("referer_check_with_server_array", Step(
        php=r"""$ref = $_SERVER['HTTP_REFERER']; out(session_start()); out(session_id() === 'fromquery123');""",
        py=r"""ref = SERVER["HTTP_REFERER"]; out(session_start()); out(session_id() == "fromquery123")""",
        query="PHPSESSID=fromquery123", env={"HTTP_REFERER": "http://evil.test/"}),
      ini={"use_only_cookies": 0, "referer_check": "example.com"}),
    S("get_id_when_only_cookies_off", Step(
        php=r"""out(session_start()); out(session_id()); out(SID);""",
        py=r"""import phpsess
out(session_start()); out(session_id()); out(phpsess.SID)""", query="PHPSESSID=fromquery123&x=1"),
      ini={"use_only_cookies": 0}),
    S("post_id_when_only_cookies_off", Step(
        php=r"""out(session_start()); out(session_id()); out($_POST);""",
        py=r"""out(session_start()); out(session_id()); out(POST)""", post=b"PHPSESSID=frompost123&a=1"),
      ini={"use_only_cookies": 0}),
    S("create_id_prefix", Step(
        php=r"""out(session_create_id('PRE-')); out(session_create_id()); out(session_create_id('bad prefix!'));
session_start(); out(session_create_id('X,Y-'));""",
        py=r"""out(session_create_id("PRE-")); out(session_create_id()); out(session_create_id("bad prefix!"))
session_start(); out(session_create_id("X,Y-"))""")),
    S("sid_length_bits", COUNTER, COUNTER, ini={"sid_length": 26, "sid_bits_per_character": 5}),
    # -- lazy_write -----------------------------------------------------------------------
    S("lazy_write_unchanged_touches", SET_A1, SHOW, Step(
        php=r"""session_start(); $_SESSION['a'] = 5;""", py=r"""session_start(); SESSION["a"] = 5"""), SHOW),
    S("lazy_write_off_rewrites", SET_A1, SHOW, ini={"lazy_write": 0}),
    S("lazy_write_empty_session_always_written", SHOW, SHOW),
    S("lazy_write_php_serialize_empty_touches", SHOW, SHOW, ini={"serialize_handler": "php_serialize"}),
    S("read_and_close_leaves_file_alone", SET_A1, Step(
        php=r"""session_start(['read_and_close' => 1]); out($_SESSION);""",
        py=r"""session_start({"read_and_close": 1}); out(SESSION)""")),
    # -- cache limiter and cookies --------------------------------------------------------
    limiter("nocache"),
    limiter("private", 30),
    limiter("private_no_expire"),
    limiter("public", 5),
    limiter("PUBLIC"),
    limiter(""),
    limiter("bogus"),
    S("cookie_params_ini", COUNTER, COUNTER, ini={
        "cookie_lifetime": 3600, "cookie_path": "/app", "cookie_domain": "example.com",
        "cookie_secure": 1, "cookie_httponly": 1, "cookie_samesite": "Lax"}),
    S("set_cookie_params_positional", Step(
        php=r"""out(session_set_cookie_params(120, '/p', 'example.org', true, true)); out(session_get_cookie_params());
out(session_start()); out(session_set_cookie_params(5));""",
        py=r"""out(session_set_cookie_params(120, "/p", "example.org", True, True)); out(session_get_cookie_params())
out(session_start()); out(session_set_cookie_params(5))""")),
    S("set_cookie_params_array", Step(
        php=r"""out(session_set_cookie_params(['lifetime' => 60, 'SameSite' => 'Strict', 'bogus' => 1, 7 => 'x', 'httponly' => 1]));
out(session_get_cookie_params()); out(session_set_cookie_params(['lifetime' => -5, 'path' => '/neg']));
out(session_get_cookie_params()); out(session_start());""",
        py=r"""out(session_set_cookie_params({"lifetime": 60, "SameSite": "Strict", "bogus": 1, 7: "x", "httponly": 1}))
out(session_get_cookie_params()); out(session_set_cookie_params({"lifetime": -5, "path": "/neg"}))
out(session_get_cookie_params()); out(session_start())""")),
    S("set_cookie_params_errors", Step(
        php=r"""try { session_set_cookie_params(['bogus' => 1]); } catch (ValueError $e) { out($e->getMessage()); }
try { session_set_cookie_params(['path' => '/'], '/x'); } catch (ValueError $e) { out($e->getMessage()); }
ini_set('session.use_cookies', 0); out(session_set_cookie_params(10)); out(session_start());""",
        py=r"""try:
    session_set_cookie_params({"bogus": 1})
except ValueError as e:
    out(str(e))
try:
    session_set_cookie_params({"path": "/"}, "/x")
except ValueError as e:
    out(str(e))
ini_set("session.use_cookies", 0); out(session_set_cookie_params(10)); out(session_start())""")),
    S("cookie_lifetime_not_refreshed", COUNTER, COUNTER, ini={"cookie_lifetime": 100}),
    S("session_name_with_forbidden_char", Step(php=COUNTER.php, py=COUNTER.py), ini={"name": "my.sess"}),
    # -- serializers ----------------------------------------------------------------------
    serializer("php"),
    serializer("php_serialize"),
    serializer("php_binary"),
    S("pipe_in_key_wipes_session", SET_A1, Step(
        php=r"""session_start(); $_SESSION['a|b'] = 1; out(session_encode());""",
        py=r"""session_start(); SESSION["a|b"] = 1; out(session_encode())"""), SHOW_THEN_CHANGE),
    S("numeric_keys_skipped", Step(
        php=r"""session_start(); $_SESSION['k'] = 1; $_SESSION[5] = 'five'; $_SESSION['12'] = 'twelve'; $_SESSION['05'] = 'str';
out(session_encode()); session_write_close();""",
        py=r"""session_start(); SESSION["k"] = 1; SESSION[5] = "five"; SESSION["12"] = "twelve"; SESSION["05"] = "str"
out(session_encode()); session_write_close()"""), SHOW),
    S("numeric_keys_at_shutdown", Step(
        php=r"""session_start(); $_SESSION[3] = 1; $_SESSION['ok'] = 2;""",
        py=r"""session_start(); SESSION[3] = 1; SESSION["ok"] = 2""")),
    S("numeric_keys_php_serialize_kept", Step(
        php=r"""session_start(); $_SESSION[5] = 'five'; $_SESSION['12'] = 1; out(session_encode());""",
        py=r"""session_start(); SESSION[5] = "five"; SESSION["12"] = 1; out(session_encode())"""), SHOW,
      ini={"serialize_handler": "php_serialize"}),
    S("encode_decode", SET_A1, Step(
        php=r"""out(session_decode('x|i:1;')); session_start(); out(session_encode()); out(session_decode('x|i:5;a|s:1:"z";'));
out($_SESSION); out(session_encode());""",
        py=r"""out(session_decode("x|i:1;")); session_start(); out(session_encode()); out(session_decode('x|i:5;a|s:1:"z";'))
out(SESSION); out(session_encode())"""), SHOW),
    S("decode_failure_destroys", SET_A1, Step(
        php=r"""session_start(); out(session_decode('x|i:5')); out(session_status()); out(session_id()); out($_SESSION);
out(session_encode());""",
        py=r"""session_start(); out(session_decode("x|i:5")); out(session_status()); out(session_id()); out(SESSION)
out(session_encode())""")),
    S("encode_before_start", Step(
        php=r"""out(session_encode());""", py=r"""out(session_encode())""")),
    # -- corrupt data ---------------------------------------------------------------------
    S("corrupt_file_destroyed", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=corruptsess1",
                                     before=plant("sess_corruptsess1", b"a|i:1;b"))),
    S("truncated_file_destroyed", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=truncsess1",
                                       before=plant("sess_truncsess1", b'a|i:1;s|s:10:"abc'))),
    S("trailing_newline_destroyed", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=nlsess1",
                                         before=plant("sess_nlsess1", b"a|i:1;\n"))),
    S("other_serializer_data_destroyed", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=otherser1",
                                              before=plant("sess_otherser1", b'a:1:{s:1:"a";i:1;}'))),
    S("php_written_file_read", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=planted1",
                                    before=plant("sess_planted1", b'a|i:1;b|a:2:{i:0;s:2:"x|";s:1:"k";d:0.5;}'))),
    S("binary_bytes_roundtrip", Step(php=r"""session_start(); out(bin2hex($_SESSION['raw'])); $_SESSION['n'] = 1;""",
                                     py=r"""session_start(); out(SESSION["raw"].hex()); SESSION["n"] = 1""",
                                     cookie="PHPSESSID=binary1",
                                     before=plant("sess_binary1", b'raw|s:4:"\xff\x00\xfe|";'))),
    S("symlink_session_file_refused", Step(php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=linked1",
                                           before=lambda save, ids: (save.parent / "outside").mkdir()
                                           or os.symlink(save.parent / "outside" / "target", save / "sess_linked1")),
      check=lambda side: _assert_nothing_outside(side.work / "outside")),
    S("missing_save_path", COUNTER, save_path="missing/dir"),
    S("save_path_is_a_file", COUNTER, save_path="save/plainfile",
      setup=lambda save: (save / "plainfile").write_bytes(b"")),
    # -- gc -------------------------------------------------------------------------------
    S("gc_every_start_deletes_old_files", COUNTER, ini={"gc_probability": 1, "gc_divisor": 1},
      setup=lambda save: [plant("sess_oldsess1", b"a|i:1;", 5000)(save, {}),
                          plant("sess_freshsess1", b"a|i:1;", 100)(save, {}),
                          plant("notasession", b"", 5000)(save, {})]),
    S("session_gc_counts", Step(php=r"""session_start(); out(session_gc());""", py=r"""session_start(); out(session_gc())"""),
      ini={"gc_maxlifetime": 1000},
      setup=lambda save: [plant(f"sess_old{i}", b"", 5000)(save, {}) for i in range(3)]),
    # -- getters, setters, ini ----------------------------------------------------------------
    S("getters_setters", Step(
        php=r"""out(session_name()); out(session_name('MYSESS')); out(session_name('123')); out(session_name());
out(session_save_path() !== ''); out(session_cache_limiter('private')); out(session_cache_expire(10)); out(session_cache_expire());
out(session_module_name()); out(session_module_name('nope'));
out(session_start()); out(session_name('X')); out(session_save_path('/tmp')); out(session_cache_limiter('public'));
out(session_cache_expire(99)); out(session_cache_expire()); out(session_module_name('files')); out(session_id('abc'));""",
        py=r"""out(session_name()); out(session_name("MYSESS")); out(session_name("123")); out(session_name())
out(session_save_path() != ""); out(session_cache_limiter("private")); out(session_cache_expire(10)); out(session_cache_expire())
out(session_module_name()); out(session_module_name("nope"))
out(session_start()); out(session_name("X")); out(session_save_path("/tmp")); out(session_cache_limiter("public"))
out(session_cache_expire(99)); out(session_cache_expire()); out(session_module_name("files")); out(session_id("abc"))""")),
    S("ini_set_and_get", Step(
        php=r"""out(ini_get('session.gc_maxlifetime')); out(ini_set('session.gc_maxlifetime', 10)); out(ini_get('session.gc_maxlifetime'));
out(ini_set('session.sid_length', 10)); out(ini_set('session.serialize_handler', 'nope')); out(ini_set('session.save_handler', 'user'));
out(ini_set('session.cookie_lifetime', -1)); out(ini_set('session.name', '')); out(ini_set('session.auto_start', 1));
out(session_start()); out(ini_set('session.gc_maxlifetime', 20)); out(ini_get('session.gc_maxlifetime'));
out(ini_set('session.trans_sid_tags', 'a=href')); out(ini_get('session.lazy_write'));""",
        py=r"""out(ini_get("session.gc_maxlifetime")); out(ini_set("session.gc_maxlifetime", 10)); out(ini_get("session.gc_maxlifetime"))
out(ini_set("session.sid_length", 10)); out(ini_set("session.serialize_handler", "nope")); out(ini_set("session.save_handler", "user"))
out(ini_set("session.cookie_lifetime", -1)); out(ini_set("session.name", "")); out(ini_set("session.auto_start", 1))
out(session_start()); out(ini_set("session.gc_maxlifetime", 20)); out(ini_get("session.gc_maxlifetime"))
out(ini_set("session.trans_sid_tags", "a=href")); out(ini_get("session.lazy_write"))""")),
    S("start_options", Step(
        php=r"""out(session_start(['bogus' => 1, 'cookie_lifetime' => -5, 'name' => 'OPT', 'auto_start' => 1, 'lazy_write' => 0]));
out(session_name()); out(ini_get('session.lazy_write')); $_SESSION['a'] = 1;""",
        py=r"""out(session_start({"bogus": 1, "cookie_lifetime": -5, "name": "OPT", "auto_start": 1, "lazy_write": 0}))
out(session_name()); out(ini_get("session.lazy_write")); SESSION["a"] = 1""")),
    S("start_after_output_fails", Step(
        php=r"""echo "early\n"; out(session_start()); out(session_status()); out(session_id('x')); out(session_name('Y'));""",
        py=r"""print("early"); out(session_start()); out(session_status()); out(session_id("x")); out(session_name("Y"))""")),
    S("start_after_output_without_cookies", Step(
        php=r"""echo "early\n"; out(session_start()); out(session_status());""",
        py=r"""print("early"); out(session_start()); out(session_status())"""), ini={"use_cookies": 0}),
    S("start_after_output_no_cookies_no_limiter", Step(
        php=r"""echo "early\n"; out(session_start()); $_SESSION['a'] = 1; out(session_id() !== '');""",
        py=r"""print("early"); out(session_start()); SESSION["a"] = 1; out(session_id() != "")"""),
      ini={"use_cookies": 0, "cache_limiter": ""}),
    S("regenerate_after_headers_sent", Step(
        php=r"""session_start(); $_SESSION['a'] = 1; flush_out(); echo "body\n"; out(session_regenerate_id()); out(session_id());""",
        py=r"""session_start(); SESSION["a"] = 1; flush_out(); print("body"); out(session_regenerate_id()); out(session_id())""")),
    S("regenerate_strict_mode", SET_A1, Step(
        php=r"""session_start(); out(session_regenerate_id()); out(session_id());""",
        py=r"""session_start(); out(session_regenerate_id()); out(session_id())"""), SHOW, ini={"use_strict_mode": 1}),
    S("strict_mode_session_id_unknown", Step(
        php=r"""session_id('notstoredyet1'); out(session_start()); out(session_id() === 'notstoredyet1');""",
        py=r"""session_id("notstoredyet1"); out(session_start()); out(session_id() == "notstoredyet1")"""),
      ini={"use_strict_mode": 1}),
    S("setcookie_same_name_replaced", Step(
        php=r"""setcookie('PHPSESSID', 'mine'); setcookie('other', 'kept'); out(session_start());""",
        py=r"""setcookie("PHPSESSID", "mine"); setcookie("other", "kept"); out(session_start())""")),
    S("exit_still_writes", Step(
        php=r"""session_start(); $_SESSION['before_exit'] = 1; flush_out(true); exit; $_SESSION['never'] = 1;""",
        py=r"""import sys
session_start(); SESSION["before_exit"] = 1; flush_out(True); sys.exit(); SESSION["never"] = 1"""), SHOW),
    S("php_binary_long_key_skipped", Step(
        php=r"""session_start(); $_SESSION[str_repeat('k', 128)] = 1; $_SESSION[str_repeat('m', 127)] = 2; $_SESSION[9] = 3;
out(strlen(session_encode()));""",
        py=r"""session_start(); SESSION["k" * 128] = 1; SESSION["m" * 127] = 2; SESSION[9] = 3
out(len(session_encode()))"""), ini={"serialize_handler": "php_binary"}),
    S("save_path_depth_and_mode", Step(php=COUNTER.php + " out(session_gc());", py=COUNTER.py + "\nout(session_gc())",
                                       cookie="PHPSESSID=abcdef123"),
      Step(php=COUNTER.php, py=COUNTER.py, cookie="PHPSESSID=abcdef123"),
      ini={"save_path": "1;0640;{save}"}, setup=lambda save: (save / "a").mkdir()),
    S("save_path_depth_missing_subdir", Step(php=COUNTER.php, py=COUNTER.py, cookie="PHPSESSID=zzzz123"),
      ini={"save_path": "1;{save}"}),
    S("corrupt_file_leaves_other_sessions_alone", Step(
        php=SHOW.php, py=SHOW.py, cookie="PHPSESSID=corruptsess2", before=plant("sess_corruptsess2", b"x")),
      setup=lambda save: plant("sess_neighbour1", b"a|i:1;")(save, {})),
    # -- user save handler ----------------------------------------------------------------
    S("user_handler_call_order", Step(
        php=USER_HANDLER_PHP + r"""session_start(); $_SESSION['a'] = 1; session_write_close(); out($h->log);""",
        py=USER_HANDLER_PY + r"""session_start(); SESSION["a"] = 1; session_write_close(); out(h.log)"""), Step(
        php=USER_HANDLER_PHP + r"""session_start(); session_write_close(); $h->log[] = '--';
session_start(); session_regenerate_id(); $h->log[] = '--'; session_regenerate_id(true); $h->log[] = '--';
session_reset(); $h->log[] = '--'; out(session_gc()); session_abort(); $h->log[] = '--';
session_start(['read_and_close' => true]); $h->log[] = '--'; session_start(); session_destroy(); out($h->log);""",
        py=USER_HANDLER_PY + r"""session_start(); session_write_close(); h.log.append("--")
session_start(); session_regenerate_id(); h.log.append("--"); session_regenerate_id(True); h.log.append("--")
session_reset(); h.log.append("--"); out(session_gc()); session_abort(); h.log.append("--")
session_start({"read_and_close": True}); h.log.append("--"); session_start(); session_destroy(); out(h.log)"""),
      ini={"use_strict_mode": 1}),
    S("user_handler_write_at_shutdown", Step(
        php=USER_HANDLER_PHP + r"""session_start(); $_SESSION['a'] = 1; register_shutdown_function(function () { $_SESSION['late'] = 2; });""",
        py=USER_HANDLER_PY + r"""session_start(); SESSION["a"] = 1
def late(): SESSION["late"] = 2
register_shutdown_function(late)"""), Step(
        php=USER_HANDLER_PHP + r"""session_start(); out($_SESSION); out($h->log);""",
        py=USER_HANDLER_PY + r"""session_start(); out(SESSION); out(h.log)""")),
]

#: scenarios where phpsess deliberately differs from PHP (docs/compatibility.md); each has
#: its own test below, asserting both the difference and that everything else is the same
DIFFERENCES: list[Scenario] = [
    S("gc_deletes_current_session_file", Step(php=SHOW.php + "$_SESSION['z'] = 1;", py=SHOW.py + "\nSESSION['z'] = 1",
                                              cookie="PHPSESSID=stale1",
                                              before=plant("sess_stale1", b"a|i:1;", 5000)),
      ini={"gc_probability": 1, "gc_divisor": 1}),
    Scenario("uncaught_exception_still_writes", [Step(
        php=r"""session_start(); $_SESSION['a'] = 1; throw new Exception('boom');""",
        py=r"""session_start(); SESSION["a"] = 1
raise Exception("boom")"""), SHOW], ini={"display_errors": "0"}),
    S("unknown_serializable_class_kept", Step(
        php=SHOW.php + "$_SESSION['n']++;", py=SHOW.py + '\nSESSION["n"] += 1', cookie="PHPSESSID=ser1",
        before=plant("sess_ser1", b'o|C:3:"Ser":3:{abc}n|i:1;'))),
    S("trans_sid_rewrites_urls", Step(
        php=r"""session_start(); flush_out(); echo '<a href="/x.php">x</a><form action="/y"></form>', "\n";""",
        py=r"""session_start(); flush_out(); print('<a href="/x.php">x</a><form action="/y"></form>')"""),
      ini={"use_only_cookies": 0, "use_trans_sid": 1}),
    S("referer_check_skipped_without_server_array", Step(
        php=r"""out(session_start()); out(session_id());""",
        py=r"""out(session_start()); out(session_id())""",
        query="PHPSESSID=fromquery123", env={"HTTP_REFERER": "http://evil.test/"}),
      ini={"use_only_cookies": 0, "referer_check": "example.com"}),
]

BY_NAME = {sc.name: sc for sc in SCENARIOS + DIFFERENCES}
assert len(BY_NAME) == len(SCENARIOS) + len(DIFFERENCES), "duplicate scenario names"

#: scenarios that fail because of a known bug elsewhere: name -> reason (xfail strict)
KNOWN_BUGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every selected scenario (both sides), a few at a time; name -> (php, py) or exception."""
    wanted = []
    for item in request.session.items:
        cs = getattr(item, "callspec", None)
        if cs is not None and item.module is request.module and "name" in cs.params:
            wanted.append(cs.params["name"])
        elif item.module is request.module and item.name in _DIFFERENCE_TESTS:
            wanted.append(_DIFFERENCE_TESTS[item.name])
    root = tmp_path_factory.mktemp("diff")
    out: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            out[name] = run_scenario(BY_NAME[name], root / name)
        except BaseException as exc:  # reported by the scenario's own test
            out[name] = exc

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(run, wanted))
    return out


def _get(results: dict[str, Any], name: str) -> tuple[SideResult, SideResult]:
    r = results[name]
    if isinstance(r, BaseException):
        raise r
    return r  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "name",
    [pytest.param(sc.name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[sc.name]))
     if sc.name in KNOWN_BUGS else sc.name for sc in SCENARIOS],
)
def test_scenario_matches_php(name: str, results: dict[str, Any]) -> None:
    php, py = _get(results, name)
    for side in (php, py):
        for n, st in enumerate(side.steps, 1):
            assert st.returncode == 0 and "Fatal error" not in st.body and "Traceback" not in st.stderr, (
                f"{side.side} step {n} crashed:\n{st.body}\n{st.stderr}")
    compare(php, py)
    check = BY_NAME[name].check
    if check is not None:
        check(php)
        check(py)


_DIFFERENCE_TESTS = {
    "test_gc_never_deletes_the_locked_current_session_unlike_php": "gc_deletes_current_session_file",
    "test_trans_sid_url_rewriting_is_not_implemented": "trans_sid_rewrites_urls",
    "test_data_of_an_unknown_serializable_class_is_kept_unlike_php": "unknown_serializable_class_kept",
    "test_uncaught_exception_is_a_500_and_the_session_is_still_written": "uncaught_exception_still_writes",
    "test_referer_check_applies_even_when_php_would_skip_it": "referer_check_skipped_without_server_array",
}


def test_gc_never_deletes_the_locked_current_session_unlike_php(results: dict[str, Any]) -> None:
    """PHP's gc (run after the read) unlinks the current session's own stale file and then
    writes to the unlinked inode: the session is lost.  phpsess's files gc skips files that
    a request holds locked, so the session survives; all else (headers, output) is the same."""
    php, py = _get(results, "gc_deletes_current_session_file")
    compare(php, py, ignore=("files", "deleted"))
    assert php.steps[0].deleted == ["sess_stale1"] and "sess_stale1" not in php.steps[0].files
    assert py.steps[0].deleted == []
    assert py.steps[0].files["sess_stale1"].data == b"a|i:1;z|i:1;"


def test_trans_sid_url_rewriting_is_not_implemented(results: dict[str, Any]) -> None:
    """PHP's output rewriter (use_trans_sid=1, use_only_cookies=0) appends the id to relative
    URLs and forms; phpsess prints the page unchanged.  Session, headers and files agree."""
    php, py = _get(results, "trans_sid_rewrites_urls")
    compare(php, py, ignore=("body",))
    sid = php.steps[0].headers[0][1].split("=", 1)[1].split(";")[0]
    assert f'href="/x.php?PHPSESSID={sid}"' in php.steps[0].body
    assert f'<input type="hidden" name="PHPSESSID" value="{sid}" />' in php.steps[0].body
    assert py.steps[0].body == '<a href="/x.php">x</a><form action="/y"></form>\n'


def test_referer_check_applies_even_when_php_would_skip_it(results: dict[str, Any]) -> None:
    """PHP reads HTTP_REFERER from an already materialised $_SERVER: a script that never
    mentions $_SERVER skips session.referer_check (auto_globals_jit), so PHP adopts the
    foreign id; phpsess always checks and starts a fresh session (with $_SERVER used, both
    reject it: scenario referer_check_with_server_array)."""
    php, py = _get(results, "referer_check_skipped_without_server_array")
    assert php.steps[0].body.splitlines() == ["true", '"fromquery123"']
    assert "sess_fromquery123" in php.steps[0].files
    lines = py.steps[0].body.splitlines()
    assert lines[0] == "true" and lines[1] != '"fromquery123"'
    assert "sess_fromquery123" not in py.steps[0].files


def test_uncaught_exception_is_a_500_and_the_session_is_still_written(results: dict[str, Any]) -> None:
    """An uncaught exception is PHP's fatal error: with display_errors=0, status 500, no body,
    and the session is still written at shutdown.  phpsess does the same, and like php-cgi
    logs nothing with log_errors=0 (tests/oracle/test_porting_oracle.py: what it logs)."""
    php, py = _get(results, "uncaught_exception_still_writes")
    compare(php, py)
    assert php.steps[0].status == py.steps[0].status == 500
    assert "boom" not in php.steps[0].stderr and "boom" not in py.steps[0].stderr


def test_data_of_an_unknown_serializable_class_is_kept_unlike_php(results: dict[str, Any]) -> None:
    """A ``C:`` value (class implementing Serializable) whose class the reading process lacks:
    PHP warns, decodes an empty __PHP_Incomplete_Class and re-saves it as ``O:3:"Ser":0:{}``,
    losing its data; phpsess keeps the bytes and writes them back unchanged (what a PHP
    process that has the class would write)."""
    php, py = _get(results, "unknown_serializable_class_kept")
    compare(php, py, ignore=("body", "files"))
    assert php.steps[0].body.splitlines()[0] == "Warning: Class __PHP_Incomplete_Class has no unserializer"
    assert php.steps[0].files["sess_ser1"].data == b'o|O:3:"Ser":0:{}n|i:2;'
    assert py.steps[0].files["sess_ser1"].data == b'o|C:3:"Ser":3:{abc}n|i:2;'
