"""php-src's session tests (ext/session/tests/*.phpt) ported to phpsess: each runs under
real PHP 8.2 (``php -n`` with the test's ini) and as its Python port, and the two outputs
must be the same (tests/oracle/phpttools.py).  Runs subprocesses.

Each case names the php-src test it ports; the PHP side is written for this suite (the
same scenario as the php-src test, not its text) and is the oracle, not the .phpt's
expected output.  Tests that cannot be ported are listed, with the reason, in
docs/compatibility.md ("php-src's session tests").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .phpttools import Outcome, Phpt, run_all

__all__: list[str] = []

NO_COOKIES = {"use_cookies": "0", "cache_limiter": ""}

#: a PHP user handler that logs each call, and its Python port
LOGGING_PHP = r"""
class LogHandler implements SessionHandlerInterface {
    public $data = [];
    function open($path, $name): bool { echo "open $name\n"; return true; }
    function close(): bool { echo "close\n"; return true; }
    function read($id): string|false { echo "read $id\n"; return $this->data[$id] ?? ''; }
    function write($id, $data): bool { echo "write $id $data\n"; $this->data[$id] = $data; return true; }
    function destroy($id): bool { echo "destroy $id\n"; unset($this->data[$id]); return true; }
    function gc($max): int|false { echo "gc $max\n"; return 0; }
}
"""
LOGGING_PY = r"""
class LogHandler(SessionHandlerInterface):
    def __init__(self):
        self.data = {}
    def open(self, path, name):
        echo(f"open {name}\n"); return True
    def close(self):
        echo("close\n"); return True
    def read(self, id):
        echo(f"read {id}\n"); return self.data.get(id, "")
    def write(self, id, data):
        echo(f"write {id} {data}\n"); self.data[id] = data; return True
    def destroy(self, id):
        echo(f"destroy {id}\n"); self.data.pop(id, None); return True
    def gc(self, max):
        echo(f"gc {max}\n"); return 0
"""

#: a class extending SessionHandler that logs each call before calling the parent
WRAP_PHP = r"""
class Wrap extends SessionHandler {
    public $n = 0;
    function open($p, $n): bool { $this->n++; echo "open\n"; return parent::open($p, $n); }
    function close(): bool { $this->n++; echo "close\n"; return parent::close(); }
    function read($id): string|false { $this->n++; echo "read\n"; return parent::read($id); }
    function write($id, $d): bool { $this->n++; echo "write $d\n"; return parent::write($id, $d); }
    function destroy($id): bool { $this->n++; echo "destroy\n"; return parent::destroy($id); }
    function gc($m): int|false { $this->n++; echo "gc\n"; return parent::gc($m); }
    function create_sid(): string { $this->n++; echo "create_sid\n"; return parent::create_sid(); }
}
"""
WRAP_PY = r"""
class Wrap(SessionHandler):
    def __init__(self):
        self.n = 0
    def open(self, p, n):
        self.n += 1; echo("open\n"); return super().open(p, n)
    def close(self):
        self.n += 1; echo("close\n"); return super().close()
    def read(self, id):
        self.n += 1; echo("read\n"); return super().read(id)
    def write(self, id, d):
        self.n += 1; echo(f"write {d}\n"); return super().write(id, d)
    def destroy(self, id):
        self.n += 1; echo("destroy\n"); return super().destroy(id)
    def gc(self, m):
        self.n += 1; echo("gc\n"); return super().gc(m)
    def create_sid(self):
        self.n += 1; echo("create_sid\n"); return super().create_sid()
"""

PHPT: list[Phpt] = [
    # -- serializers, encode/decode -----------------------------------------------------
    Phpt(
        "001",
        php=r"""class foo { public $bar = "ok"; public $yes; function method() { $this->yes = "done"; } }
$baz = new foo; $baz->method(); $arr[3] = new foo; $arr[3]->method();
session_start(); $_SESSION["baz"] = $baz; $_SESSION["arr"] = $arr;
print session_encode() . "\n"; session_destroy();""",
        py=r"""from phpsess.core.codec import PHPObject
session_start()
SESSION["baz"] = PHPObject("foo", {"bar": "ok", "yes": "done"})
SESSION["arr"] = {3: PHPObject("foo", {"bar": "ok", "yes": "done"})}
echo(session_encode(), "\n"); session_destroy()""",
        ini={**NO_COOKIES, "serialize_handler": "php"},
    ),
    Phpt(
        "003",
        php=r"""class foo { public $bar = "ok"; public $yes; function method() { $this->yes++; } }
session_id("abtest"); session_start();
session_decode('baz|O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}arr|a:1:{i:3;O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}}');
$_SESSION["baz"]->method(); $_SESSION["arr"][3]->method();
var_dump($_SESSION["baz"]); var_dump($_SESSION["arr"]); session_destroy();""",
        py=r"""session_id("abtest"); session_start()
session_decode('baz|O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}arr|a:1:{i:3;O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}}')
SESSION["baz"].properties["yes"] += 1; SESSION["arr"][3].properties["yes"] += 1
var_dump(SESSION["baz"]); var_dump(SESSION["arr"]); session_destroy()""",
        ini={**NO_COOKIES, "use_strict_mode": "0", "serialize_handler": "php"},
    ),
    Phpt(
        "004",
        php=LOGGING_PHP + r"""$h = new LogHandler;
$h->data['abtest'] = 'baz|a:1:{s:3:"bar";s:2:"ok";}arr|a:1:{i:3;i:1;}';
session_set_save_handler($h);
session_id("abtest"); session_start();
$_SESSION["arr"][3]++; var_dump($_SESSION); session_write_close();
session_start(); $_SESSION["c"] = 123; var_dump($_SESSION); session_write_close();
session_start(); var_dump($_SESSION); session_destroy();""",
        py=LOGGING_PY + r"""h = LogHandler()
h.data["abtest"] = 'baz|a:1:{s:3:"bar";s:2:"ok";}arr|a:1:{i:3;i:1;}'
session_set_save_handler(h)
session_id("abtest"); session_start()
SESSION["arr"][3] += 1; var_dump(SESSION); session_write_close()
session_start(); SESSION["c"] = 123; var_dump(SESSION); session_write_close()
session_start(); var_dump(SESSION); session_destroy()""",
        ini={**NO_COOKIES, "serialize_handler": "php"},
    ),
    Phpt(
        "016",
        php=r"""session_start(); $_SESSION["test"] = 1; session_write_close(); print "I live\n";""",
        py=r"""session_start(); SESSION["test"] = 1; session_write_close(); echo("I live\n")""",
        ini={**NO_COOKIES, "save_path": "123;:/really\\completely:::/invalid;;,23123;213"},
    ),
    Phpt(
        "027",
        php=r"""session_start(); $_SESSION['a'] = 1; $_SESSION = []; session_write_close();
session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = 1; SESSION.clear(); session_write_close()
session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_encode_basic",
        php=r"""var_dump(session_start()); $_SESSION["foo"] = 1234567890; var_dump(session_encode());
var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["foo"] = 1234567890; var_dump(session_encode())
var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_encode_variation1",
        php=r"""var_dump(session_encode()); var_dump(session_start()); var_dump(session_encode());
var_dump(session_write_close()); var_dump(session_encode()); var_dump(session_start());
var_dump(session_encode()); var_dump(session_destroy()); var_dump(session_encode());""",
        py=r"""var_dump(session_encode()); var_dump(session_start()); var_dump(session_encode())
var_dump(session_write_close()); var_dump(session_encode()); var_dump(session_start())
var_dump(session_encode()); var_dump(session_destroy()); var_dump(session_encode())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_encode_variation8",
        php=r"""var_dump(session_start()); $_SESSION["foo"] = 1; var_dump(session_encode()); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["foo"] = 1; var_dump(session_encode()); var_dump(session_destroy())""",
        ini={**NO_COOKIES, "serialize_handler": "blah"},
    ),
    Phpt(
        "session_encode_serialize",
        php=r"""var_dump(session_start()); $_SESSION["foo"] = 1234567890; $_SESSION["bar"] = [1, "x" => 2.5];
var_dump(session_encode()); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["foo"] = 1234567890; SESSION["bar"] = {0: 1, "x": 2.5}
var_dump(session_encode()); var_dump(session_destroy())""",
        ini={**NO_COOKIES, "serialize_handler": "php_serialize"},
    ),
    Phpt(
        "session_encode_variation6 (numeric keys)",
        php=r"""var_dump(session_start()); $_SESSION[-1] = 'neg'; $_SESSION[5] = 'five'; $_SESSION['ok'] = 1;
var_dump(session_encode()); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION[-1] = "neg"; SESSION[5] = "five"; SESSION["ok"] = 1
var_dump(session_encode()); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_decode_basic",
        php=r"""var_dump(session_start()); $_SESSION['x'] = 'old';
var_dump(session_decode('foo|a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}guff|R:1;blah|R:1;'));
var_dump($_SESSION); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["x"] = "old"
var_dump(session_decode('foo|a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}guff|R:1;blah|R:1;'))
var_dump(SESSION); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_decode_error2",
        php=r"""var_dump(session_start());
for ($i = 0; $i < 4; $i++) { var_dump(session_decode("foo|a:$i:{i:0;i:1;}")); var_dump($_SESSION); }
var_dump(session_destroy());""",
        py=r"""var_dump(session_start())
for i in range(4):
    var_dump(session_decode(f"foo|a:{i}:{{i:0;i:1;}}")); var_dump(SESSION)
var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_decode_variation3",
        php=r"""var_dump(session_start()); $_SESSION['a'] = 1;
var_dump(session_decode('foo|a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}')); var_dump($_SESSION); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["a"] = 1
var_dump(session_decode('foo|a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}')); var_dump(SESSION); var_dump(session_destroy())""",
        ini={**NO_COOKIES, "serialize_handler": "blah"},
    ),
    Phpt(
        "session_decode_basic_serialize",
        php=r"""var_dump(session_start()); $_SESSION['old'] = 1;
var_dump(session_decode('a:2:{s:3:"foo";i:1;s:3:"bar";a:1:{i:0;b:1;}}')); var_dump($_SESSION);
var_dump(session_decode('s:3:"abc";')); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); SESSION["old"] = 1
var_dump(session_decode('a:2:{s:3:"foo";i:1;s:3:"bar";a:1:{i:0;b:1;}}')); var_dump(SESSION)
var_dump(session_decode('s:3:"abc";')); var_dump(session_destroy())""",
        ini={**NO_COOKIES, "serialize_handler": "php_serialize"},
    ),
    Phpt(
        "session_decode_variation4 (not active)",
        php=r"""var_dump(session_decode('foo|i:1;')); var_dump(session_start()); var_dump(session_decode('foo|i:1;'));
var_dump($_SESSION); var_dump(session_destroy()); var_dump(session_decode('foo|i:2;'));""",
        py=r"""var_dump(session_decode('foo|i:1;')); var_dump(session_start()); var_dump(session_decode('foo|i:1;'))
var_dump(SESSION); var_dump(session_destroy()); var_dump(session_decode('foo|i:2;'))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug72681 (| inside a value)",
        php=r"""session_start(); $_SESSION['abc'] = 'abc|xyz'; $e = session_encode(); var_dump($e);
$_SESSION = []; var_dump(session_decode($e)); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["abc"] = "abc|xyz"; e = session_encode(); var_dump(e)
SESSION.clear(); var_dump(session_decode(e)); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "serialize_precision (session data floats)",
        php=r"""session_start(); $_SESSION['f'] = 0.1; $_SESSION['g'] = 1/3; var_dump(session_encode());
ini_set('serialize_precision', 5); var_dump(session_encode()); var_dump(ini_get('serialize_precision'));
session_write_close(); var_dump(file_get_contents("$SAVE/sess_" . session_id()));""",
        py=r"""session_start(); SESSION["f"] = 0.1; SESSION["g"] = 1 / 3; var_dump(session_encode())
ini_set("serialize_precision", 5); var_dump(session_encode()); var_dump(ini_get("serialize_precision"))
session_write_close()
with open(f"{SAVE}/sess_" + session_id()) as f:
    var_dump(f.read())""",
        ini={**NO_COOKIES, "serialize_precision": "17"},
    ),
    Phpt(
        "php_binary serializer",
        php=r"""session_start(); $_SESSION['a'] = 1; $_SESSION['long'] = str_repeat('x', 3);
var_dump(bin2hex(session_encode())); session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = 1; SESSION["long"] = "xxx"
enc = session_encode(); var_dump((enc.encode("utf-8", "surrogateescape") if isinstance(enc, str) else enc).hex())
session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini={**NO_COOKIES, "serialize_handler": "php_binary"},
    ),
    # -- ini problems at startup -----------------------------------------------------------
    Phpt(
        "session_start_variation (unknown serialize_handler in php.ini)",
        php=r"""var_dump(ini_get('session.serialize_handler'), session_status(), session_start(), session_status(), session_id());
echo "after\n";""",
        py=r"""var_dump(ini_get("session.serialize_handler"), session_status(), session_start(), session_status(), session_id())
echo("after\n")""",
        ini={**NO_COOKIES, "serialize_handler": "blah"},
    ),
    Phpt(
        "session_start_variation (unknown save_handler in php.ini)",
        php=r"""var_dump(ini_get('session.save_handler'), session_status(), session_start(), session_status());""",
        py=r"""var_dump(ini_get("session.save_handler"), session_status(), session_start(), session_status())""",
        ini={**NO_COOKIES, "save_handler": "blah"},
    ),
    # -- ids -----------------------------------------------------------------------------
    Phpt(
        "session_id_basic",
        php=r"""var_dump(session_id()); var_dump(session_id("test")); var_dump(session_id());
var_dump(session_start()); var_dump(session_id()); var_dump(session_destroy()); var_dump(session_id());""",
        py=r"""var_dump(session_id()); var_dump(session_id("test")); var_dump(session_id())
var_dump(session_start()); var_dump(session_id()); var_dump(session_destroy()); var_dump(session_id())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_id_basic2 (bytes and numbers)",
        php=r"""var_dump(session_id('abc')); var_dump(session_id()); var_dump(session_id(123)); var_dump(session_id());
var_dump(session_id(1.5)); var_dump(session_id());
try { session_id([]); } catch (TypeError $e) { error($e); }""",
        py=r"""var_dump(session_id(b"abc")); var_dump(session_id()); var_dump(session_id(123)); var_dump(session_id())
var_dump(session_id(1.5)); var_dump(session_id())
try:
    session_id([])
except TypeError as e:
    error(e)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_id_error2 (ids with odd characters)",
        php=r"""foreach (['', 'a b', "tab\there", 'x,y-z', str_repeat('a', 300)] as $id) {
  session_id($id); var_dump(@session_start()); var_dump(strlen(session_id())); @session_destroy(); }""",
        py=r"""import warnings
for id in ["", "a b", "tab\there", "x,y-z", "a" * 300]:
    session_id(id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        var_dump(session_start()); var_dump(len(session_id())); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_id_error3",
        php=r"""session_start(); var_dump(session_id('x')); session_write_close(); var_dump(session_id('x'));""",
        py=r"""session_start(); var_dump(session_id("x")); session_write_close(); var_dump(session_id("x"))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_create_id_basic",
        php=r"""var_dump(session_create_id('!')); var_dump(strlen(session_create_id()));
var_dump(strlen(session_create_id('abc-,'))); session_start(); var_dump(strlen(session_create_id('x'))); session_destroy();""",
        py=r"""var_dump(session_create_id("!")); var_dump(len(session_create_id()))
var_dump(len(session_create_id("abc-,"))); session_start(); var_dump(len(session_create_id("x"))); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug68063 (empty id)",
        php=r"""session_id(''); var_dump(session_start()); var_dump(strlen(session_id())); session_destroy();""",
        py=r"""session_id(""); var_dump(session_start()); var_dump(len(session_id())); session_destroy()""",
        ini={**NO_COOKIES, "sid_length": "40"},
    ),
    Phpt(
        "bug79413 (session_create_id() while active)",
        php=r"""var_dump(session_start()); $old = session_id(); $new = session_create_id();
var_dump($new !== $old); var_dump(session_id() === $old); session_destroy();""",
        py=r"""var_dump(session_start()); old = session_id(); new = session_create_id()
var_dump(new != old); var_dump(session_id() == old); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_id_error4 (sid_length/bits)",
        php=r"""foreach ([[22, 4], [256, 6], [48, 5]] as [$l, $b]) { ini_set('session.sid_length', $l);
  ini_set('session.sid_bits_per_character', $b); session_start(); var_dump(strlen(session_id())); session_destroy(); session_id(''); }""",
        py=r"""for l, b in [(22, 4), (256, 6), (48, 5)]:
    ini_set("session.sid_length", l); ini_set("session.sid_bits_per_character", b)
    session_start(); var_dump(len(session_id())); session_destroy(); session_id("")""",
        ini=NO_COOKIES,
    ),
]


# -- lifecycle: start, options, status, abort, reset, unset, destroy, write_close ----------
PHPT += [
    Phpt(
        "session_start_basic",
        php=r"""var_dump(session_start()); var_dump(session_status()); var_dump(session_start()); var_dump(session_destroy());""",
        py=r"""var_dump(session_start()); var_dump(session_status()); var_dump(session_start()); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_status",
        php=r"""var_dump(session_status() == PHP_SESSION_NONE); session_start(); var_dump(session_status() == PHP_SESSION_ACTIVE);
session_destroy(); var_dump(session_status() == PHP_SESSION_NONE);""",
        py=r"""var_dump(session_status() == PHP_SESSION_NONE); session_start(); var_dump(session_status() == PHP_SESSION_ACTIVE)
session_destroy(); var_dump(session_status() == PHP_SESSION_NONE)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_read_and_close",
        php=r"""session_start(); $_SESSION['a'] = 1; $id = session_id(); session_write_close();
foreach ([true, 1, '1', 0, '0', 'x', false] as $v) { session_id($id); var_dump(session_start(['read_and_close' => $v]), session_status()); if (session_status() == PHP_SESSION_ACTIVE) session_write_close(); }
try { session_start(['read_and_close' => 1.0]); } catch (TypeError $e) { error($e); }
try { session_start(['read_and_close' => []]); } catch (TypeError $e) { error($e); }
session_id($id); session_start(['read_and_close' => true]); var_dump($_SESSION); $_SESSION['b'] = 2;
session_id($id); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = 1; id = session_id(); session_write_close()
for v in [True, 1, "1", 0, "0", "x", False]:
    session_id(id); var_dump(session_start({"read_and_close": v}), session_status())
    if session_status() == PHP_SESSION_ACTIVE: session_write_close()
try:
    session_start({"read_and_close": 1.0})
except TypeError as e:
    error(e)
try:
    session_start({"read_and_close": []})
except TypeError as e:
    error(e)
session_id(id); session_start({"read_and_close": True}); var_dump(SESSION); SESSION["b"] = 2
session_id(id); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation (options)",
        php=r"""var_dump(session_start(['name' => 'OPT', 'gc_maxlifetime' => 99, 'bogus' => 1, 'auto_start' => 1, 'sid_length' => 5]));
var_dump(session_name(), ini_get('session.gc_maxlifetime'), ini_get('session.sid_length')); session_destroy();""",
        py=r"""var_dump(session_start({"name": "OPT", "gc_maxlifetime": 99, "bogus": 1, "auto_start": 1, "sid_length": 5}))
var_dump(session_name(), ini_get("session.gc_maxlifetime"), ini_get("session.sid_length")); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_basic1 (lazy_write option, session_commit)",
        php=r"""var_dump(session_start(['lazy_write' => true])); $id = session_id(); $_SESSION['x'] = 'y'; var_dump(session_commit());
session_id($id); var_dump(session_start(['lazy_write' => false])); var_dump($_SESSION); var_dump(session_commit());
var_dump(session_id() === $id); session_start(); session_destroy();""",
        py=r"""var_dump(session_start({"lazy_write": True})); id = session_id(); SESSION["x"] = "y"; var_dump(session_commit())
session_id(id); var_dump(session_start({"lazy_write": False})); var_dump(SESSION); var_dump(session_commit())
var_dump(session_id() == id); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_abort_basic",
        php=r"""session_start(); $_SESSION['a'] = 1; $id = session_id(); session_write_close();
session_start(); $_SESSION['a'] = 2; var_dump(session_abort()); var_dump(session_status());
session_start(); var_dump($_SESSION); var_dump(session_abort()); var_dump(session_abort()); session_start(); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = 1; id = session_id(); session_write_close()
session_start(); SESSION["a"] = 2; var_dump(session_abort()); var_dump(session_status())
session_start(); var_dump(SESSION); var_dump(session_abort()); var_dump(session_abort()); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_reset_basic",
        php=r"""var_dump(session_reset()); session_start(); $_SESSION['a'] = 1; session_write_close();
session_start(); $_SESSION['a'] = 99; $_SESSION['b'] = 2; var_dump(session_reset()); var_dump($_SESSION); session_destroy();""",
        py=r"""var_dump(session_reset()); session_start(); SESSION["a"] = 1; session_write_close()
session_start(); SESSION["a"] = 99; SESSION["b"] = 2; var_dump(session_reset()); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_unset_basic",
        php=r"""var_dump(session_unset()); session_start(); $_SESSION['foo'] = 'bar'; $copy = $_SESSION;
var_dump(session_unset()); var_dump($_SESSION, $copy); session_destroy(); var_dump(session_unset());""",
        py=r"""var_dump(session_unset()); session_start(); SESSION["foo"] = "bar"; copy = dict(SESSION)
var_dump(session_unset()); var_dump(SESSION, copy); session_destroy(); var_dump(session_unset())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_destroy_variation1",
        php=r"""var_dump(session_destroy()); var_dump(session_start()); $_SESSION['a'] = 1; var_dump(session_destroy());
var_dump(session_id(), $_SESSION, session_destroy()); var_dump(session_start()); var_dump($_SESSION); session_destroy();""",
        py=r"""var_dump(session_destroy()); var_dump(session_start()); SESSION["a"] = 1; var_dump(session_destroy())
var_dump(session_id(), SESSION, session_destroy()); var_dump(session_start()); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_write_close_variation1",
        php=r"""var_dump(session_write_close()); var_dump(session_start()); var_dump(session_write_close());
var_dump(session_write_close()); var_dump(session_start()); var_dump(session_commit()); var_dump(session_start()); var_dump(session_destroy());""",
        py=r"""var_dump(session_write_close()); var_dump(session_start()); var_dump(session_write_close())
var_dump(session_write_close()); var_dump(session_start()); var_dump(session_commit()); var_dump(session_start()); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_write_close_variation3 (id kept after close)",
        php=r"""session_id('test'); session_start(); session_write_close(); var_dump(session_id()); session_start();
var_dump(session_id()); session_destroy(); var_dump(session_id());""",
        py=r"""session_id("test"); session_start(); session_write_close(); var_dump(session_id()); session_start()
var_dump(session_id()); session_destroy(); var_dump(session_id())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug73273 (session_unset keeps copies)",
        php=r"""session_start(); $_SESSION['a'] = [1]; $x = $_SESSION; session_unset(); $_SESSION['b'] = 2; var_dump($x, $_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = [1]; x = dict(SESSION); session_unset(); SESSION["b"] = 2; var_dump(x, SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "lazy_write (unchanged data keeps the file untouched)",
        php=r"""session_start(); $_SESSION['a'] = 1; $id = session_id(); session_write_close(); $f = "$SAVE/sess_$id";
touch($f, 1000000000); clearstatcache(); session_id($id); session_start(); session_write_close(); clearstatcache();
var_dump(filemtime($f) > 1000000000); var_dump(file_get_contents($f));
ini_set('session.lazy_write', 0); session_start(); session_write_close(); clearstatcache(); var_dump(filemtime($f) > 1000000000);""",
        py=r"""import os
session_start(); SESSION["a"] = 1; id = session_id(); session_write_close(); f = f"{SAVE}/sess_{id}"
os.utime(f, (1000000000, 1000000000)); session_id(id); session_start(); session_write_close()
var_dump(os.stat(f).st_mtime > 1000000000)
with open(f) as fh:
    var_dump(fh.read())
ini_set("session.lazy_write", 0); session_start(); session_write_close(); var_dump(os.stat(f).st_mtime > 1000000000)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug71162 (empty session written)",
        php=r"""session_start(); $id = session_id(); session_write_close(); var_dump(file_exists("$SAVE/sess_$id"), filesize("$SAVE/sess_$id"));""",
        py=r"""import os
session_start(); id = session_id(); session_write_close(); p = f"{SAVE}/sess_{id}"; var_dump(os.path.exists(p), os.path.getsize(p))""",
        ini=NO_COOKIES,
    ),
]

# -- regenerate and strict mode ------------------------------------------------------------
PHPT += [
    Phpt(
        "session_regenerate_id_basic",
        php=r"""var_dump(session_regenerate_id()); var_dump(session_start()); $a = session_id(); $_SESSION['k'] = 'v';
var_dump(session_regenerate_id()); $b = session_id(); var_dump($a !== $b, file_exists("$SAVE/sess_$a"));
var_dump(session_regenerate_id(true)); $c = session_id(); var_dump($b !== $c, file_exists("$SAVE/sess_$b"));
session_write_close(); var_dump(file_get_contents("$SAVE/sess_$c")); var_dump(file_get_contents("$SAVE/sess_$a"));""",
        py=r"""import os
var_dump(session_regenerate_id()); var_dump(session_start()); a = session_id(); SESSION["k"] = "v"
var_dump(session_regenerate_id()); b = session_id(); var_dump(a != b, os.path.exists(f"{SAVE}/sess_{a}"))
var_dump(session_regenerate_id(True)); c = session_id(); var_dump(b != c, os.path.exists(f"{SAVE}/sess_{b}"))
session_write_close()
for x in (c, a):
    with open(f"{SAVE}/sess_{x}") as fh:
        var_dump(fh.read())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug61470 (regenerate locks the new id)",
        php=r"""session_start(); session_regenerate_id(); $id = session_id(); var_dump(file_exists("$SAVE/sess_$id")); session_destroy();""",
        py=r"""import os
session_start(); session_regenerate_id(); id = session_id(); var_dump(os.path.exists(f"{SAVE}/sess_{id}")); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_regenerate_id_variation1 (headers sent)",
        php=r"""session_start(); echo "x\n"; var_dump(session_regenerate_id()); session_destroy();""",
        py=r"""session_start(); echo("x\n"); var_dump(session_regenerate_id()); session_destroy()""",
        ini={"cache_limiter": ""},
    ),
    Phpt(
        "use_strict_mode (files: unknown id replaced)",
        php=r"""file_put_contents("$SAVE/sess_knownid1234", 'v|i:1;');
session_id('knownid1234'); session_start(); var_dump(session_id(), $_SESSION); session_write_close();
session_id('unknownid999'); session_start(); var_dump(session_id() === 'unknownid999', strlen(session_id())); session_destroy();""",
        py=r"""with open(f"{SAVE}/sess_knownid1234", "w") as fh:
    fh.write("v|i:1;")
session_id("knownid1234"); session_start(); var_dump(session_id(), SESSION); session_write_close()
session_id("unknownid999"); session_start(); var_dump(session_id() == "unknownid999", len(session_id())); session_destroy()""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
    Phpt(
        "session_strict_mode_sessionhandler",
        php=r"""file_put_contents("$SAVE/sess_knownid1234", 'v|s:5:"files";');
session_set_save_handler(new SessionHandler, true);
session_id('knownid1234'); session_start(); var_dump(session_id() === 'knownid1234', $_SESSION['v']); session_write_close();
session_id('attackerchosen'); session_start(); var_dump(session_id() === 'attackerchosen'); session_write_close();""",
        py=r"""with open(f"{SAVE}/sess_knownid1234", "w") as fh:
    fh.write('v|s:5:"files";')
session_set_save_handler(SessionHandler(), True)
session_id("knownid1234"); session_start(); var_dump(session_id() == "knownid1234", SESSION["v"]); session_write_close()
session_id("attackerchosen"); session_start(); var_dump(session_id() == "attackerchosen"); session_write_close()""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
]

# -- gc ------------------------------------------------------------------------------------
PHPT += [
    Phpt(
        "session_gc_basic",
        php=r"""var_dump(session_gc()); session_start(); var_dump(session_gc()); session_write_close(); var_dump(session_gc());""",
        py=r"""var_dump(session_gc()); session_start(); var_dump(session_gc()); session_write_close(); var_dump(session_gc())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gc (files: old sessions deleted)",
        php=r"""foreach (['old1', 'old2', 'new1'] as $n) { file_put_contents("$SAVE/sess_$n", 'a|i:1;'); }
touch("$SAVE/sess_old1", time() - 5000); touch("$SAVE/sess_old2", time() - 5000);
session_start(); var_dump(session_gc()); $l = glob("$SAVE/sess_*"); var_dump(count($l)); session_destroy();""",
        py=r"""import os, time, glob
for n in ["old1", "old2", "new1"]:
    with open(f"{SAVE}/sess_{n}", "w") as fh:
        fh.write("a|i:1;")
for n in ["old1", "old2"]:
    os.utime(f"{SAVE}/sess_{n}", (time.time() - 5000, time.time() - 5000))
session_start(); var_dump(session_gc()); var_dump(len(glob.glob(f"{SAVE}/sess_*"))); session_destroy()""",
        ini={**NO_COOKIES, "gc_maxlifetime": "100"},
    ),
    Phpt(
        "gc_probability (gc at start)",
        php=r"""file_put_contents("$SAVE/sess_old1", 'a|i:1;'); touch("$SAVE/sess_old1", time() - 5000);
session_start(); var_dump(file_exists("$SAVE/sess_old1")); session_destroy();""",
        py=r"""import os, time
with open(f"{SAVE}/sess_old1", "w") as fh:
    fh.write("a|i:1;")
os.utime(f"{SAVE}/sess_old1", (time.time() - 5000, time.time() - 5000))
session_start(); var_dump(os.path.exists(f"{SAVE}/sess_old1")); session_destroy()""",
        ini={**NO_COOKIES, "gc_maxlifetime": "100", "gc_probability": "1", "gc_divisor": "1"},
    ),
]

# -- cookies, names, cache limiter -----------------------------------------------------------
PHPT += [
    Phpt(
        "session_get_cookie_params_basic",
        php=r"""var_dump(session_get_cookie_params());
var_dump(session_set_cookie_params(3600, '/path', 'foo', true, true));
var_dump(session_get_cookie_params());
var_dump(session_set_cookie_params(['lifetime' => 1, 'samesite' => 'Lax', 'httponly' => false]));
var_dump(session_get_cookie_params());""",
        py=r"""var_dump(session_get_cookie_params())
var_dump(session_set_cookie_params(3600, "/path", "foo", True, True))
var_dump(session_get_cookie_params())
var_dump(session_set_cookie_params({"lifetime": 1, "samesite": "Lax", "httponly": False}))
var_dump(session_get_cookie_params())""",
        ini={"cookie_path": "/", "cookie_domain": "", "cookie_secure": "0", "cookie_httponly": "0", "cookie_samesite": ""},
    ),
    Phpt(
        "session_set_cookie_params_error",
        php=r"""var_dump(session_set_cookie_params(-10));
try { session_set_cookie_params(['lifetime' => 1], '/'); } catch (ArgumentCountError $e) { error($e); }
try { session_set_cookie_params([]); } catch (ValueError $e) { error($e); }
var_dump(@session_set_cookie_params(['bogus' => 1]));
var_dump(ini_get('session.cookie_lifetime'));""",
        py=r"""var_dump(session_set_cookie_params(-10))
try:
    session_set_cookie_params({"lifetime": 1}, "/")
except TypeError as e:
    echo("ArgumentCountError: ", e, "\n")
try:
    session_set_cookie_params({})
except ValueError as e:
    echo("ValueError: ", e, "\n")
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    var_dump(session_set_cookie_params({"bogus": 1}))
var_dump(ini_get("session.cookie_lifetime"))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_cookie_params_variation (active session)",
        php=r"""session_start(); var_dump(session_set_cookie_params(5)); var_dump(ini_get('session.cookie_lifetime'));
session_destroy(); var_dump(session_set_cookie_params(5)); var_dump(ini_get('session.cookie_lifetime'));""",
        py=r"""session_start(); var_dump(session_set_cookie_params(5)); var_dump(ini_get("session.cookie_lifetime"))
session_destroy(); var_dump(session_set_cookie_params(5)); var_dump(ini_get("session.cookie_lifetime"))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_name_basic",
        php=r"""var_dump(session_name()); var_dump(session_name('blah')); var_dump(session_start()); var_dump(session_name());
var_dump(session_name('other')); var_dump(session_destroy()); var_dump(session_name());""",
        py=r"""var_dump(session_name()); var_dump(session_name("blah")); var_dump(session_start()); var_dump(session_name())
var_dump(session_name("other")); var_dump(session_destroy()); var_dump(session_name())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_name_variation1 (invalid names)",
        php=r"""foreach (['', '123', "a\0b", 'a=b', 'ok.name'] as $n) { var_dump(session_name($n)); var_dump(session_name()); }""",
        py=r"""for n in ["", "123", "a\0b", "a=b", "ok.name"]:
    var_dump(session_name(n)); var_dump(session_name())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_cache_limiter_basic",
        php=r"""var_dump(session_cache_limiter()); var_dump(session_cache_limiter('public')); var_dump(session_cache_limiter());
var_dump(session_start()); var_dump(session_cache_limiter('private')); var_dump(session_destroy()); var_dump(session_cache_limiter());""",
        py=r"""var_dump(session_cache_limiter()); var_dump(session_cache_limiter("public")); var_dump(session_cache_limiter())
var_dump(session_start()); var_dump(session_cache_limiter("private")); var_dump(session_destroy()); var_dump(session_cache_limiter())""",
        ini={"use_cookies": "0"},
    ),
    Phpt(
        "session_cache_expire_basic",
        php=r"""var_dump(session_cache_expire()); var_dump(session_cache_expire(1234567890)); var_dump(session_cache_expire());
var_dump(session_start()); var_dump(session_cache_expire(5)); var_dump(session_destroy()); var_dump(session_cache_expire('10'));
var_dump(session_cache_expire());""",
        py=r"""var_dump(session_cache_expire()); var_dump(session_cache_expire(1234567890)); var_dump(session_cache_expire())
var_dump(session_start()); var_dump(session_cache_expire(5)); var_dump(session_destroy()); var_dump(session_cache_expire("10"))
var_dump(session_cache_expire())""",
        ini={"use_cookies": "0", "cache_limiter": ""},
    ),
    Phpt(
        "session_start_error (output before start, cookies on)",
        php=r"""echo "x\n"; var_dump(session_start()); var_dump(session_status());""",
        py=r"""echo("x\n"); var_dump(session_start()); var_dump(session_status())""",
        ini={},
    ),
    Phpt(
        "session_start_error (print() before start)",
        php=r"""print "x\n"; var_dump(session_start());""",
        py=r"""print("x"); var_dump(session_start())""",
        ini={},
    ),
    Phpt(
        "session_start_variation (output before start, cache limiter)",
        php=r"""echo "x\n"; var_dump(session_start()); var_dump(session_status());""",
        py=r"""echo("x\n"); var_dump(session_start()); var_dump(session_status())""",
        ini={"use_cookies": "0"},
    ),
]

# -- ini functions and their warnings -----------------------------------------------------------
PHPT += [
    Phpt(
        "session_ini_set",
        php=r"""$r = [];
foreach (['session.name' => 'X', 'session.gc_maxlifetime' => 50, 'session.use_cookies' => 0, 'session.save_handler' => 'files',
          'session.serialize_handler' => 'php_serialize', 'session.sid_length' => 40, 'session.auto_start' => 1,
          'session.cookie_samesite' => 'Strict', 'session.bogus' => 1] as $k => $v) { $r[] = [$k, ini_set($k, $v), ini_get($k)]; }
session_start();
foreach (['session.name' => 'Y', 'session.gc_maxlifetime' => 51, 'session.trans_sid_tags' => 'a=href'] as $k => $v) { $r[] = [$k, ini_set($k, $v), ini_get($k)]; }
session_destroy(); var_dump($r);""",
        py=r"""r = []
for k, v in {"session.name": "X", "session.gc_maxlifetime": 50, "session.use_cookies": 0, "session.save_handler": "files",
             "session.serialize_handler": "php_serialize", "session.sid_length": 40, "session.auto_start": 1,
             "session.cookie_samesite": "Strict", "session.bogus": 1}.items():
    r.append([k, ini_set(k, v), ini_get(k)])
session_start()
for k, v in {"session.name": "Y", "session.gc_maxlifetime": 51, "session.trans_sid_tags": "a=href"}.items():
    r.append([k, ini_set(k, v), ini_get(k)])
session_destroy(); var_dump(r)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "error_when_setting_save_handler_ini_setting_in_runtime",
        php=r"""var_dump(ini_set('session.save_handler', 'user')); var_dump(ini_set('session.save_handler', 'nope'));
var_dump(ini_get('session.save_handler'));""",
        py=r"""var_dump(ini_set("session.save_handler", "user")); var_dump(ini_set("session.save_handler", "nope"))
var_dump(ini_get("session.save_handler"))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "save_handler=user in php.ini (startup error, files kept)",
        php=r"""var_dump(ini_get('session.save_handler'), session_status(), session_start(), session_status(), session_module_name()); session_destroy();""",
        py=r"""var_dump(ini_get("session.save_handler"), session_status(), session_start(), session_status(), session_module_name()); session_destroy()""",
        ini={**NO_COOKIES, "save_handler": "user"},
    ),
    Phpt(
        "session_save_path_basic",
        php=r"""$d = session_save_path(); var_dump($d === $SAVE); var_dump(session_save_path('/tmp') === $SAVE); var_dump(session_save_path());
session_save_path($SAVE); session_start(); var_dump(session_save_path('/x')); session_destroy();
try { session_save_path("a\0b"); } catch (ValueError $e) { error($e); }""",
        py=r"""d = session_save_path(); var_dump(d == SAVE); var_dump(session_save_path("/tmp") == SAVE); var_dump(session_save_path())
session_save_path(SAVE); session_start(); var_dump(session_save_path("/x")); session_destroy()
try:
    session_save_path("a\0b")
except ValueError as e:
    error(e)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_save_path_variation (missing directory)",
        php=r"""session_save_path("$SAVE/nope"); var_dump(session_start()); var_dump(session_status());""",
        py=r"""session_save_path(f"{SAVE}/nope"); var_dump(session_start()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_module_name_basic",
        php=r"""var_dump(session_module_name()); var_dump(session_module_name('files')); var_dump(session_module_name('blah'));
try { session_module_name('user'); } catch (ValueError $e) { error($e); }
session_start(); var_dump(session_module_name('files')); var_dump(session_module_name()); session_destroy();""",
        py=r"""var_dump(session_module_name()); var_dump(session_module_name("files")); var_dump(session_module_name("blah"))
try:
    session_module_name("user")
except ValueError as e:
    error(e)
session_start(); var_dump(session_module_name("files")); var_dump(session_module_name()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "ini settings refused while active",
        php=r"""session_start(); var_dump(ini_set('session.serialize_handler', 'php_serialize'), session_name('Z'), session_save_path('/'),
session_cache_limiter('public'), session_set_cookie_params(1), session_module_name('files'), session_id('abc')); session_destroy();""",
        py=r"""session_start(); var_dump(ini_set("session.serialize_handler", "php_serialize"), session_name("Z"), session_save_path("/"),
    session_cache_limiter("public"), session_set_cookie_params(1), session_module_name("files"), session_id("abc")); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "invalid ini values at startup (warn, default kept)",
        php=r"""var_dump(ini_get('session.name'), ini_get('session.sid_length'), ini_get('session.cookie_lifetime'));""",
        py=r"""var_dump(ini_get("session.name"), ini_get("session.sid_length"), ini_get("session.cookie_lifetime"))""",
        ini={**NO_COOKIES, "name": "123", "sid_length": "5"},
    ),
]


# -- user handlers -----------------------------------------------------------------------------
PHPT += [
    Phpt(
        "session_set_save_handler_basic",
        php=LOGGING_PHP + r"""$h = new LogHandler; var_dump(session_module_name()); var_dump(session_set_save_handler($h));
var_dump(session_module_name(), ini_get('session.save_handler')); session_id('abc'); var_dump(session_start());
$_SESSION['x'] = 1; session_write_close(); session_start(); var_dump($_SESSION); var_dump(session_gc()); session_destroy();""",
        py=LOGGING_PY + r"""h = LogHandler(); var_dump(session_module_name()); var_dump(session_set_save_handler(h))
var_dump(session_module_name(), ini_get("session.save_handler")); session_id("abc"); var_dump(session_start())
SESSION["x"] = 1; session_write_close(); session_start(); var_dump(SESSION); var_dump(session_gc()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_closures",
        php=r"""$d = [];
session_set_save_handler(function($p, $n) { echo "open\n"; return true; }, function() { echo "close\n"; return true; },
  function($id) use (&$d) { echo "read\n"; return $d[$id] ?? ''; }, function($id, $v) use (&$d) { echo "write $v\n"; $d[$id] = $v; return true; },
  function($id) { echo "destroy\n"; return true; }, function($m) { return 0; });
session_id('abc'); session_start(); $_SESSION['a'] = 'b'; session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""d = {}
def w(id, v):
    echo(f"write {v}\n"); d[id] = v; return True
session_set_save_handler(lambda p, n: echo("open\n") or True, lambda: echo("close\n") or True,
    lambda id: echo("read\n") or d.get(id, ""), w, lambda id: echo("destroy\n") or True, lambda m: 0)
session_id("abc"); session_start(); SESSION["a"] = "b"; session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_variation (active session)",
        php=LOGGING_PHP + r"""session_start(); var_dump(session_set_save_handler(new LogHandler)); var_dump(session_module_name()); session_destroy();""",
        py=LOGGING_PY + r"""session_start(); var_dump(session_set_save_handler(LogHandler())); var_dump(session_module_name()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_error (read returns non-string)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { return true; } function close(): bool { echo "close\n"; return true; }
  #[\ReturnTypeWillChange] function read($id) { return 123; } function write($id, $d): bool { return true; }
  function destroy($id): bool { return true; } #[\ReturnTypeWillChange] function gc($m) { return true; } }
session_set_save_handler(new H); var_dump(session_start()); var_dump(session_status());""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): return True
    def close(self): echo("close\n"); return True
    def read(self, id): return 123
    def write(self, id, d): return True
    def destroy(self, id): return True
    def gc(self, m): return True
session_set_save_handler(H()); var_dump(session_start()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_error (write fails)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { return true; } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { return ''; } function write($id, $d): bool { echo "write\n"; return false; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H); session_start(); $_SESSION['a'] = 1; var_dump(session_write_close()); var_dump(session_status());""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): return True
    def close(self): echo("close\n"); return True
    def read(self, id): return ""
    def write(self, id, d): echo("write\n"); return False
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H()); session_start(); SESSION["a"] = 1; var_dump(session_write_close()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_error (open fails)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { echo "open\n"; return false; } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { echo "read\n"; return ''; } function write($id, $d): bool { return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H); var_dump(session_start()); var_dump(session_status());""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): echo("open\n"); return False
    def close(self): echo("close\n"); return True
    def read(self, id): echo("read\n"); return ""
    def write(self, id, d): return True
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H()); var_dump(session_start()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh9584 / bug60634 (exception thrown in write)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { echo "open\n"; return true; } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { echo "read\n"; return ''; }
  function write($id, $d): bool { echo "write\n"; throw new Exception('boom'); }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H); session_start(); $_SESSION['a'] = 1;
try { session_write_close(); } catch (Exception $e) { error($e); }
var_dump(session_status()); echo "end\n";""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): echo("open\n"); return True
    def close(self): echo("close\n"); return True
    def read(self, id): echo("read\n"); return ""
    def write(self, id, d): echo("write\n"); raise Exception("boom")
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H()); session_start(); SESSION["a"] = 1
try:
    session_write_close()
except Exception as e:
    error(e)
var_dump(session_status()); echo("end\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug60634 (exit() in write)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { echo "open\n"; return true; } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { echo "read\n"; return ''; }
  function write($id, $d): bool { echo "write\n"; exit; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H); session_start(); $_SESSION['a'] = 1; session_write_close(); echo "never\n";""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): echo("open\n"); return True
    def close(self): echo("close\n"); return True
    def read(self, id): echo("read\n"); return ""
    def write(self, id, d): echo("write\n"); raise SystemExit
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H()); session_start(); SESSION["a"] = 1; session_write_close(); echo("never\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug60634_error_3 (exception thrown in open)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { echo "open\n"; throw new Exception('in open'); } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { echo "read\n"; return ''; } function write($id, $d): bool { echo "write\n"; return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H);
try { session_start(); } catch (Exception $e) { error($e); }
var_dump(session_status()); echo "end\n";""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): echo("open\n"); raise Exception("in open")
    def close(self): echo("close\n"); return True
    def read(self, id): echo("read\n"); return ""
    def write(self, id, d): echo("write\n"); return True
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H())
try:
    session_start()
except Exception as e:
    error(e)
var_dump(session_status()); echo("end\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug60634_error_4 (exception thrown in read)",
        php=r"""class H implements SessionHandlerInterface {
  function open($p, $n): bool { echo "open\n"; return true; } function close(): bool { echo "close\n"; return true; }
  function read($id): string|false { echo "read\n"; throw new Exception('in read'); } function write($id, $d): bool { echo "write\n"; return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H);
try { var_dump(session_start()); } catch (Exception $e) { error($e); }
var_dump(session_status()); echo "end\n";""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): echo("open\n"); return True
    def close(self): echo("close\n"); return True
    def read(self, id): echo("read\n"); raise Exception("in read")
    def write(self, id, d): echo("write\n"); return True
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H())
try:
    var_dump(session_start())
except Exception as e:
    error(e)
var_dump(session_status()); echo("end\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_sid_001 (create_sid)",
        php=r"""class H implements SessionHandlerInterface, SessionIdInterface {
  function open($p, $n): bool { return true; } function close(): bool { return true; }
  function read($id): string|false { echo "read $id\n"; return ''; } function write($id, $d): bool { echo "write $id\n"; return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; }
  function create_sid(): string { return 'my_sid'; } }
session_set_save_handler(new H); session_start(); var_dump(session_id()); session_write_close();""",
        py=r"""class H(SessionHandlerInterface, SessionIdInterface):
    def open(self, p, n): return True
    def close(self): return True
    def read(self, id): echo(f"read {id}\n"); return ""
    def write(self, id, d): echo(f"write {id}\n"); return True
    def destroy(self, id): return True
    def gc(self, m): return 0
    def create_sid(self): return "my_sid"
session_set_save_handler(H()); session_start(); var_dump(session_id()); session_write_close()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_iface_002 (validateId, updateTimestamp)",
        php=r"""class H implements SessionHandlerInterface, SessionUpdateTimestampHandlerInterface {
  public $d = ['known12345' => 'a|i:1;'];
  function open($p, $n): bool { return true; } function close(): bool { return true; }
  function read($id): string|false { echo "read $id\n"; return $this->d[$id] ?? ''; }
  function write($id, $v): bool { echo "write $v\n"; $this->d[$id] = $v; return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; }
  function validateId($id): bool { echo "validate $id\n"; return isset($this->d[$id]); }
  function updateTimestamp($id, $v): bool { echo "touch $v\n"; return true; } }
session_set_save_handler(new H); session_id('known12345'); session_start(); session_write_close();
session_id('unknown678'); session_start(); var_dump(session_id() === 'unknown678'); session_write_close();""",
        py=r"""class H(SessionHandlerInterface, SessionUpdateTimestampHandlerInterface):
    def __init__(self): self.d = {"known12345": "a|i:1;"}
    def open(self, p, n): return True
    def close(self): return True
    def read(self, id): echo(f"read {id}\n"); return self.d.get(id, "")
    def write(self, id, v): echo(f"write {v}\n"); self.d[id] = v; return True
    def destroy(self, id): return True
    def gc(self, m): return 0
    def validateId(self, id): echo(f"validate {id}\n"); return id in self.d
    def updateTimestamp(self, id, v): echo(f"touch {v}\n"); return True
session_set_save_handler(H()); session_id("known12345"); session_start(); session_write_close()
session_id("unknown678"); session_start(); var_dump(session_id() == "unknown678"); session_write_close()""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
    Phpt(
        "session_set_save_handler_class_001 (wrapping the files handler)",
        php=WRAP_PHP + r"""$old = ini_get('session.save_handler'); $h = new Wrap; session_set_save_handler($h); session_start();
var_dump($old, ini_get('session.save_handler'), $h->n, $_SESSION); $_SESSION['foo'] = 'hello'; session_write_close();
session_start(); var_dump($_SESSION); session_write_close(); var_dump($h->n);
var_dump(file_get_contents("$SAVE/sess_" . session_id()));""",
        py=WRAP_PY + r"""old = ini_get("session.save_handler"); h = Wrap(); session_set_save_handler(h); session_start()
var_dump(old, ini_get("session.save_handler"), h.n, SESSION); SESSION["foo"] = "hello"; session_write_close()
session_start(); var_dump(SESSION); session_write_close(); var_dump(h.n)
with open(f"{SAVE}/sess_" + session_id()) as fh:
    var_dump(fh.read())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_005 (parent not opened)",
        php=r"""class M extends SessionHandler { function open($p, $n): bool { return true; }
  function read($id): string|false { return parent::read($id); } }
session_set_save_handler(new M); var_dump(session_start()); var_dump(session_id(), ini_get('session.save_handler'), $_SESSION);
session_write_close();""",
        py=r"""class M(SessionHandler):
    def open(self, p, n): return True
    def read(self, id): return super().read(id)
session_set_save_handler(M()); var_dump(session_start()); var_dump(session_id(), ini_get("session.save_handler"), SESSION)
session_write_close()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "sessionhandler_open_001 (no active session)",
        php=r"""$x = new SessionHandler;
foreach (['open', 'close', 'read', 'create_sid'] as $m) { try { $m == 'open' ? $x->open('', '') : ($m == 'read' ? $x->read('a') : $x->$m()); } catch (Error $e) { error($e); } }""",
        py=r"""x = SessionHandler()
for m in ["open", "close", "read", "create_sid"]:
    try:
        x.open("", "") if m == "open" else (x.read("a") if m == "read" else getattr(x, m)())
    except SessionStateError as e:
        echo("Error: ", e, "\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_016 (parent methods by hand)",
        php=r"""session_set_save_handler(new SessionHandler, true); $h = new SessionHandler; session_start(); $id = session_id();
var_dump($h->close(), $h->read($id), is_string($h->create_sid())); var_dump($h->open($SAVE, 'X'));
var_dump($h->read('abc'), $h->write('abc', 'x|i:1;'), $h->read('abc'), $h->gc(100), $h->destroy('abc'), $h->close());""",
        py=r"""session_set_save_handler(SessionHandler(), True); h = SessionHandler(); session_start(); id = session_id()
var_dump(h.close(), h.read(id), isinstance(h.create_sid(), str)); var_dump(h.open(SAVE, "X"))
var_dump(h.read("abc"), h.write("abc", "x|i:1;"), h.read("abc"), h.gc(100), h.destroy("abc"), h.close())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_002 (strings, not bytes)",
        php=r"""class M extends SessionHandler { function read($id): string|false { $d = parent::read($id); var_dump(gettype($d)); return $d; }
  function write($id, $d): bool { var_dump(gettype($d), $d); return parent::write($id, $d); } }
session_set_save_handler(new M); session_start(); $_SESSION['s'] = "h\u{e9}"; session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""class M(SessionHandler):
    def read(self, id):
        d = super().read(id); var_dump("string" if isinstance(d, str) else type(d).__name__); return d
    def write(self, id, d):
        var_dump("string" if isinstance(d, str) else type(d).__name__, d); return super().write(id, d)
session_set_save_handler(M()); session_start(); SESSION["s"] = "h\u00e9"; session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_012 (destroy, regenerate through SessionHandler)",
        php=WRAP_PHP + r"""$h = new Wrap; session_set_save_handler($h); session_start(); $_SESSION['a'] = 1; $a = session_id();
session_regenerate_id(true); var_dump(file_exists("$SAVE/sess_$a")); session_destroy(); var_dump($h->n);""",
        py=WRAP_PY + r"""import os
h = Wrap(); session_set_save_handler(h); session_start(); SESSION["a"] = 1; a = session_id()
session_regenerate_id(True); var_dump(os.path.exists(f"{SAVE}/sess_{a}")); session_destroy(); var_dump(h.n)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_017 (gc and reset through SessionHandler)",
        php=WRAP_PHP + r"""$h = new Wrap; session_set_save_handler($h); session_start(); $_SESSION['a'] = 1; session_write_close();
session_start(); $_SESSION['a'] = 2; session_reset(); var_dump($_SESSION, session_gc()); session_abort(); var_dump($h->n);""",
        py=WRAP_PY + r"""h = Wrap(); session_set_save_handler(h); session_start(); SESSION["a"] = 1; session_write_close()
session_start(); SESSION["a"] = 2; session_reset(); var_dump(SESSION, session_gc()); session_abort(); var_dump(h.n)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_multiple",
        php=LOGGING_PHP + r"""$a = new LogHandler; $b = new LogHandler; session_set_save_handler($a); session_set_save_handler($b);
session_id('multi'); session_start(); $_SESSION['x'] = 1; session_write_close(); var_dump(count($a->data), count($b->data));""",
        py=LOGGING_PY + r"""a = LogHandler(); b = LogHandler(); session_set_save_handler(a); session_set_save_handler(b)
session_id("multi"); session_start(); SESSION["x"] = 1; session_write_close(); var_dump(len(a.data), len(b.data))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_type_error",
        php=r"""try { session_set_save_handler(new stdClass); } catch (TypeError $e) { error($e); }
try { session_set_save_handler('a', 'b'); } catch (TypeError $e) { error($e); }""",
        py=r"""class stdClass: pass
try:
    session_set_save_handler(stdClass())
except TypeError as e:
    error(e)
try:
    session_set_save_handler("a", "b")
except TypeError as e:
    error(e)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug55688 (gc return values)",
        php=r"""class H extends SessionHandler { function gc($m): int|false { echo "gc $m\n"; return parent::gc($m); } }
session_set_save_handler(new H); session_start(); var_dump(session_gc()); session_destroy();""",
        py=r"""class H(SessionHandler):
    def gc(self, m): echo(f"gc {m}\n"); return super().gc(m)
session_set_save_handler(H()); session_start(); var_dump(session_gc()); session_destroy()""",
        ini={**NO_COOKIES, "gc_maxlifetime": "77"},
    ),
    Phpt(
        "bug61728 (open gets the save path and name)",
        php=r"""class H extends SessionHandler { function open($p, $n): bool { var_dump($p === getenv('PHPT_SAVE'), $n); return parent::open($p, $n); } }
session_set_save_handler(new H); session_name('MYNAME'); session_start(); session_destroy();""",
        py=r"""import os
class H(SessionHandler):
    def open(self, p, n): var_dump(p == os.environ["PHPT_SAVE"], n); return super().open(p, n)
session_set_save_handler(H()); session_name("MYNAME"); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug67972 (SessionHandler::create_sid without session)",
        php=r"""try { (new SessionHandler)->create_sid(); } catch (Error $e) { error($e); }""",
        py=r"""try:
    SessionHandler().create_sid()
except SessionStateError as e:
    echo("Error: ", e, "\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_regenerate_id_write_fails",
        php=r"""class H extends SessionHandler { function write($id, $d): bool { echo "write\n"; return false; } }
session_set_save_handler(new H); session_start(); var_dump(session_regenerate_id()); var_dump(session_status());""",
        py=r"""class H(SessionHandler):
    def write(self, id, d): echo("write\n"); return False
session_set_save_handler(H()); session_start(); var_dump(session_regenerate_id()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_regenerate_id_destroy_fails",
        php=r"""class H extends SessionHandler { function destroy($id): bool { echo "destroy\n"; return false; } }
session_set_save_handler(new H); session_start(); var_dump(session_regenerate_id(true)); var_dump(session_status());""",
        py=r"""class H(SessionHandler):
    def destroy(self, id): echo("destroy\n"); return False
session_set_save_handler(H()); session_start(); var_dump(session_regenerate_id(True)); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh7787 (write fails: handler named in the warning)",
        php=r"""class MySessionHandler extends SessionHandler { function write($id, $d): bool { return false; } }
session_set_save_handler(new MySessionHandler); session_start(); $_SESSION['a'] = 1; session_write_close();
session_set_save_handler(fn($p, $n) => true, fn() => true, fn($id) => '', fn($id, $d) => false, fn($id) => true, fn($m) => 0);
session_start(); $_SESSION['a'] = 1; session_write_close();""",
        py=r"""class MySessionHandler(SessionHandler):
    def write(self, id, d): return False
session_set_save_handler(MySessionHandler()); session_start(); SESSION["a"] = 1; session_write_close()
session_set_save_handler(lambda p, n: True, lambda: True, lambda id: "", lambda id, d: False, lambda id: True, lambda m: 0)
session_start(); SESSION["a"] = 1; session_write_close()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug70133 (create_sid returns a bad value)",
        php=r"""class H extends SessionHandler { function create_sid(): string { return 'bad id!'; } }
session_set_save_handler(new H); var_dump(session_start()); var_dump(session_id()); session_write_close();""",
        py=r"""class H(SessionHandler):
    def create_sid(self): return "bad id!"
session_set_save_handler(H()); var_dump(session_start()); var_dump(session_id()); session_write_close()""",
        ini=NO_COOKIES,
    ),
]


# -- bug regressions -------------------------------------------------------------------------
PHPT += [
    Phpt(
        "bug74514 (getters do not warn after output)",
        php=r"""echo "out\n"; var_dump(session_name('foo')); var_dump(session_name()); var_dump(session_module_name());
var_dump(session_save_path() === $SAVE); var_dump(session_cache_limiter()); var_dump(session_cache_expire());""",
        py=r"""echo("out\n"); var_dump(session_name("foo")); var_dump(session_name()); var_dump(session_module_name())
var_dump(session_save_path() == SAVE); var_dump(session_cache_limiter()); var_dump(session_cache_expire())""",
    ),
    Phpt(
        "bug74936 (getters while active)",
        php=r"""session_start(); var_dump(session_cache_expire()); var_dump(session_cache_limiter()); var_dump(session_save_path() === $SAVE); session_destroy();""",
        py=r"""session_start(); var_dump(session_cache_expire()); var_dump(session_cache_limiter()); var_dump(session_save_path() == SAVE); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug80889 (set handler when save_handler is invalid)",
        php=LOGGING_PHP + r"""$a = ini_get('session.save_handler'); session_set_save_handler(new LogHandler); var_dump($a, ini_get('session.save_handler'));
var_dump(session_status()); session_id('abc'); var_dump(session_start()); session_write_close();""",
        py=LOGGING_PY + r"""a = ini_get("session.save_handler"); session_set_save_handler(LogHandler()); var_dump(a, ini_get("session.save_handler"))
var_dump(session_status()); session_id("abc"); var_dump(session_start()); session_write_close()""",
        ini={**NO_COOKIES, "save_handler": "whatever"},
    ),
    Phpt(
        "bug73529 (session_decode() fails loudly on wrong input)",
        php=r"""ini_set('session.serialize_handler', 'php_serialize'); session_start(); $r1 = session_decode('foo|s:3:"bar";'); $s1 = $_SESSION;
@session_destroy(); ini_set('session.serialize_handler', 'php'); session_start(); $r2 = session_decode(serialize(['foo' => 'bar'])); $s2 = $_SESSION;
var_dump(session_destroy()); var_dump($r1, $s1, $r2, $s2);""",
        py=r"""import warnings
ini_set("session.serialize_handler", "php_serialize"); session_start(); r1 = session_decode('foo|s:3:"bar";'); s1 = dict(SESSION)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    session_destroy()
ini_set("session.serialize_handler", "php"); session_start(); r2 = session_decode(serialize({"foo": "bar"})); s2 = dict(SESSION)
var_dump(session_destroy()); var_dump(r1, s1, r2, s2)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug60860 (save_handler=user in php.ini, no handler)",
        php=r"""var_dump(session_start()); echo "ok\n"; session_destroy();""",
        py=r"""var_dump(session_start()); echo("ok\n"); session_destroy()""",
        ini={**NO_COOKIES, "save_handler": "user"},
    ),
    Phpt(
        "bug66481 (empty session.name in php.ini)",
        php=r"""var_dump(session_name('foo')); var_dump(session_name('bar'));""",
        py=r"""var_dump(session_name("foo")); var_dump(session_name("bar"))""",
        ini={**NO_COOKIES, "name": ""},
    ),
    Phpt(
        "bug73100 (session_module_name('user') while active)",
        php=r"""var_dump(session_start()); try { session_module_name('user'); } catch (ValueError $e) { error($e); }
var_dump(session_module_name('files')); var_dump(session_destroy());""",
        py=r"""var_dump(session_start())
try:
    session_module_name("user")
except ValueError as e:
    error(e)
var_dump(session_module_name("files")); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug42596 (save_path MODE option)",
        php=r"""mkdir("$SAVE/s"); umask(0); session_save_path("0;0777;$SAVE/s"); session_start(); echo "hello\n"; session_write_close();
foreach (glob("$SAVE/s/*") as $f) { var_dump(decoct(fileperms($f))); }
umask(022); session_save_path("0;0640;$SAVE/s"); session_id(''); session_start(); $id = session_id(); session_write_close(); var_dump(decoct(fileperms("$SAVE/s/sess_$id")));""",
        py=r"""import os, glob
os.mkdir(f"{SAVE}/s"); os.umask(0); session_save_path(f"0;0777;{SAVE}/s"); session_start(); echo("hello\n"); session_write_close()
for f in glob.glob(f"{SAVE}/s/*"):
    var_dump(oct(os.stat(f).st_mode)[2:])
os.umask(0o22); session_save_path(f"0;0640;{SAVE}/s"); session_id(""); session_start(); id = session_id(); session_write_close()
var_dump(oct(os.stat(f"{SAVE}/s/sess_{id}").st_mode)[2:])""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "save_path N;path (subdirectories)",
        php=r"""session_save_path("2;$SAVE"); session_id('abcdef1234567890'); var_dump(session_start()); session_write_close();
mkdir("$SAVE/a"); mkdir("$SAVE/a/b"); session_id('abcdef1234567890'); session_start(); $_SESSION['x'] = 1; session_write_close();
var_dump(file_get_contents("$SAVE/a/b/sess_abcdef1234567890"));
session_save_path("abc;$SAVE"); var_dump(session_start());
session_save_path("1;2;3;$SAVE"); var_dump(session_start());""",
        py=r"""import os
session_save_path(f"2;{SAVE}"); session_id("abcdef1234567890"); var_dump(session_start()); session_write_close()
os.mkdir(f"{SAVE}/a"); os.mkdir(f"{SAVE}/a/b"); session_id("abcdef1234567890"); session_start(); SESSION["x"] = 1; session_write_close()
with open(f"{SAVE}/a/b/sess_abcdef1234567890") as fh:
    var_dump(fh.read())
session_save_path(f"abc;{SAVE}"); var_dump(session_start())
session_save_path(f"1;2;3;{SAVE}"); var_dump(session_start())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug38377 (destroy after regenerate)",
        php=r"""session_start(); session_regenerate_id(); var_dump(session_destroy()); echo "Done\n";""",
        py=r"""session_start(); session_regenerate_id(); var_dump(session_destroy()); echo("Done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug74941 (start after headers sent, no cookies)",
        php=r"""echo "x\n"; var_dump(session_start()); session_destroy();""",
        py=r"""echo("x\n"); var_dump(session_start()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug72940 (SID defined)",
        php=r"""var_dump(defined('SID')); session_id('abc'); session_start(); var_dump(SID); session_write_close();
ini_set('session.use_only_cookies', 0); session_start(); var_dump(SID); session_destroy();""",
        py=r"""import phpsess
var_dump(hasattr(phpsess, "SID")); session_id("abc"); session_start(); var_dump(phpsess.SID); session_write_close()
ini_set("session.use_only_cookies", 0); session_start(); var_dump(phpsess.SID); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug70876 / bug72562 (malformed php_binary and php payloads)",
        php=r"""session_start();
foreach (['php' => ["a|i:1", "|i:1;", "a|a:1:{", "x|s:100:\"abc\";"], 'php_binary' => ["\x05a", "\x7fabc"]] as $h => $list) {
  foreach ($list as $p) { ini_set('session.serialize_handler', $h); @session_start(); var_dump(@session_decode($p)); var_dump($_SESSION); }
}""",
        py=r"""import warnings
session_start()
for h, lst in {"php": ["a|i:1", "|i:1;", "a|a:1:{", 'x|s:100:"abc";'], "php_binary": [b"\x05a", b"\x7fabc"]}.items():
    for p in lst:
        ini_set("session.serialize_handler", h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session_start(); r = session_decode(p)
        var_dump(r); var_dump(SESSION)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug71972 (nested data)",
        php=r"""session_start(); $a = []; $c = &$a; for ($i = 0; $i < 50; $i++) { $c['x'] = []; $c = &$c['x']; } $_SESSION['deep'] = $a;
session_write_close(); session_start(); $n = 0; $c = $_SESSION['deep']; while (isset($c['x'])) { $n++; $c = $c['x']; } var_dump($n); session_destroy();""",
        py=r"""session_start(); a = {}; c = a
for i in range(50):
    c["x"] = {}; c = c["x"]
SESSION["deep"] = a; session_write_close(); session_start(); n = 0; c = SESSION["deep"]
while "x" in c:
    n += 1; c = c["x"]
var_dump(n); session_destroy()""",
        ini=NO_COOKIES,
    ),
]

# -- as CGI requests: cookies, cache limiter headers, ids from the request ---------------------
PHPT += [
    Phpt(
        "bug80774 (session name with a backslash)",
        php=r"""session_name("foo\\bar"); session_id('12345'); session_start(); session_destroy();""",
        py=r"""session_name("foo\\bar"); session_id("12345"); session_start(); session_destroy()""",
        ini={"use_strict_mode": "0"}, cgi=True,
    ),
    Phpt(
        "session_regenerate_id_cookie",
        php=r"""session_start(); $a = session_id(); session_regenerate_id(); var_dump($a !== session_id()); session_destroy();""",
        py=r"""session_start(); a = session_id(); session_regenerate_id(); var_dump(a != session_id()); session_destroy()""",
        cgi=True,
    ),
    Phpt(
        "cookie from the request (--COOKIE--)",
        php=r"""session_start(); var_dump(session_id()); $_SESSION['n'] = 1; session_write_close();""",
        py=r"""session_start(); var_dump(session_id()); SESSION["n"] = 1; session_write_close()""",
        cgi=True, cookie="PHPSESSID=cookieid12345; other=1",
    ),
    Phpt(
        "bug51338 / id from GET (use_only_cookies=0)",
        php=r"""session_start(); var_dump(session_id(), SID); session_destroy();""",
        py=r"""import phpsess
session_start(); var_dump(session_id(), phpsess.SID); session_destroy()""",
        cgi=True, get="PHPSESSID=fromquery12345&x=1", ini={"use_only_cookies": "0", "use_trans_sid": "0"},
    ),
    Phpt(
        "id from POST (use_only_cookies=0)",
        php=r"""session_start(); var_dump(session_id()); session_destroy();""",
        py=r"""session_start(); var_dump(session_id()); session_destroy()""",
        cgi=True, post="PHPSESSID=frompost12345", ini={"use_only_cookies": "0", "use_trans_sid": "0"},
    ),
    Phpt(
        "referer_check",
        php=r"""session_start(); var_dump(session_id() === 'fromquery12345'); session_destroy();""",
        py=r"""session_start(); var_dump(session_id() == "fromquery12345"); session_destroy()""",
        cgi=True, get="PHPSESSID=fromquery12345", ini={"use_only_cookies": "0", "use_trans_sid": "0", "referer_check": "example.com"},
    ),
    Phpt(
        "session_set_cookie_params_variation (cookie attributes)",
        php=r"""session_set_cookie_params(['lifetime' => 100, 'path' => '/p', 'domain' => 'example.com', 'secure' => true, 'httponly' => true, 'samesite' => 'Strict']);
session_id('abcdefabcdef'); session_start(); session_destroy();""",
        py=r"""session_set_cookie_params({"lifetime": 100, "path": "/p", "domain": "example.com", "secure": True, "httponly": True, "samesite": "Strict"})
session_id("abcdefabcdef"); session_start(); session_destroy()""",
        cgi=True,
    ),
    Phpt(
        "session_cache_limiter_variation (public, private, private_no_expire)",
        php=r"""header('X-Test: 1'); session_cache_limiter('private'); session_cache_expire(7); session_start(); session_write_close();""",
        py=r"""header("X-Test: 1"); session_cache_limiter("private"); session_cache_expire(7); session_start(); session_write_close()""",
        cgi=True, ini={"use_cookies": "0"},
    ),
    Phpt(
        "session_cache_limiter_variation (public)",
        php=r"""session_cache_limiter('public'); session_start(); session_write_close();""",
        py=r"""session_cache_limiter("public"); session_start(); session_write_close()""",
        cgi=True, ini={"use_cookies": "0", "cache_expire": "30"},
    ),
    Phpt(
        "session_cache_limiter_variation (private_no_expire)",
        php=r"""session_cache_limiter('private_no_expire'); session_start(); session_write_close();""",
        py=r"""session_cache_limiter("private_no_expire"); session_start(); session_write_close()""",
        cgi=True, ini={"use_cookies": "0"},
    ),
    Phpt(
        "bug74833 (cookie lifetime and SID)",
        php=r"""ini_set('session.cookie_lifetime', 3600); session_id('abcdefghijk'); session_start(); var_dump(SID); session_destroy();""",
        py=r"""import phpsess
ini_set("session.cookie_lifetime", 3600); session_id("abcdefghijk"); session_start(); var_dump(phpsess.SID); session_destroy()""",
        cgi=True,
    ),
    Phpt(
        "bug67694 (regenerate with a cookie: one Set-Cookie)",
        php=r"""session_start(); session_regenerate_id(true); session_regenerate_id(); session_write_close();""",
        py=r"""session_start(); session_regenerate_id(True); session_regenerate_id(); session_write_close()""",
        cgi=True, cookie="PHPSESSID=cookieid12345",
    ),
    Phpt(
        "use_strict_mode with a cookie id",
        php=r"""session_start(); var_dump(session_id() === 'unknowncookie1'); session_destroy();""",
        py=r"""session_start(); var_dump(session_id() == "unknowncookie1"); session_destroy()""",
        cgi=True, cookie="PHPSESSID=unknowncookie1", ini={"use_strict_mode": "1"},
    ),
    Phpt(
        "session_destroy with a cookie (cookie kept)",
        php=r"""session_start(); $_SESSION['a'] = 1; session_destroy(); var_dump(session_id());""",
        py=r"""session_start(); SESSION["a"] = 1; session_destroy(); var_dump(session_id())""",
        cgi=True, cookie="PHPSESSID=cookieid12345",
    ),
]


# -- SessionHandler: inheritance, shutdown order, default object ----------------------------------
FINISH_PHP = r"""
class MySession extends SessionHandler {
    public $num;
    function __construct($num) { $this->num = $num; echo "(#$num) constructor\n"; }
    function finish() { echo "(#$this->num) finish\n"; session_write_close(); }
    function write($id, $data): bool { echo "(#$this->num) writing $data\n"; return parent::write($id, $data); }
    function close(): bool { echo "(#$this->num) closing\n"; return parent::close(); }
}
"""
FINISH_PY = r"""
class MySession(SessionHandler):
    def __init__(self, num):
        self.num = num; echo(f"(#{num}) constructor\n")
    def finish(self):
        echo(f"(#{self.num}) finish\n"); session_write_close()
    def write(self, id, data):
        echo(f"(#{self.num}) writing {data}\n"); return super().write(id, data)
    def close(self):
        echo(f"(#{self.num}) closing\n"); return super().close()
"""

PHPT += [
    Phpt(
        "session_set_save_handler_class_003 (inheritance)",
        php=r"""class S3 extends SessionHandler { public $i = 0;
  function open($p, $n): bool { ++$this->i; return parent::open($p, $n); } function read($k): string|false { ++$this->i; return parent::read($k); } }
class S4 extends S3 { function write($id, $d): bool { $this->i = "hai"; return parent::write($id, $d); } }
$h = new S3; session_set_save_handler($h); session_start(); $_SESSION['foo'] = 'hello'; session_write_close(); session_unset();
session_start(); var_dump($_SESSION, $h->i); session_write_close(); session_unset();
$h = new S4; session_set_save_handler($h); session_start(); $_SESSION['bar'] = 'hello'; session_write_close(); session_unset();
var_dump($_SESSION, $h->i);""",
        py=r"""class S3(SessionHandler):
    i = 0
    def open(self, p, n): self.i += 1; return super().open(p, n)
    def read(self, k): self.i += 1; return super().read(k)
class S4(S3):
    def write(self, id, d): self.i = "hai"; return super().write(id, d)
h = S3(); session_set_save_handler(h); session_start(); SESSION["foo"] = "hello"; session_write_close(); session_unset()
session_start(); var_dump(SESSION, h.i); session_write_close(); session_unset()
h = S4(); session_set_save_handler(h); session_start(); SESSION["bar"] = "hello"; session_write_close(); session_unset()
var_dump(SESSION, h.i)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_004 (default SessionHandler object)",
        php=r"""session_set_save_handler(new SessionHandler); session_start(); $_SESSION['foo'] = 'hello';
var_dump(ini_get('session.save_handler'), $_SESSION); session_write_close(); session_unset(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_set_save_handler(SessionHandler()); session_start(); SESSION["foo"] = "hello"
var_dump(ini_get("session.save_handler"), SESSION); session_write_close(); session_unset(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_007 (manual shutdown, reopen)",
        php=FINISH_PHP + r"""$h = new MySession(1); session_set_save_handler($h); session_start(); $_SESSION['foo'] = 'bar'; $h->finish();
$h = new MySession(2); session_set_save_handler($h); session_start(); $_SESSION['abc'] = 'xyz'; echo "done\n";""",
        py=FINISH_PY + r"""h = MySession(1); session_set_save_handler(h); session_start(); SESSION["foo"] = "bar"; h.finish()
h = MySession(2); session_set_save_handler(h); session_start(); SESSION["abc"] = "xyz"; echo("done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_009 (implicit shutdown)",
        php=FINISH_PHP + r"""$h = new MySession(1); session_set_save_handler($h); session_start(); $_SESSION['foo'] = 'bar'; echo "done\n";""",
        py=FINISH_PY + r"""h = MySession(1); session_set_save_handler(h); session_start(); SESSION["foo"] = "bar"; echo("done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_010 (manual shutdown function)",
        php=FINISH_PHP + r"""$h = new MySession(1); session_set_save_handler($h, false); register_shutdown_function([$h, 'finish']);
session_start(); $_SESSION['foo'] = 'bar'; echo "done\n";""",
        py=FINISH_PY + r"""h = MySession(1); session_set_save_handler(h, False); register_shutdown_function(h.finish)
session_start(); SESSION["foo"] = "bar"; echo("done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_011 (no shutdown function registered)",
        php=FINISH_PHP + r"""$h = new MySession(1); session_set_save_handler($h, false); session_start(); $_SESSION['foo'] = 'bar'; echo "done\n";""",
        py=FINISH_PY + r"""h = MySession(1); session_set_save_handler(h, False); session_start(); SESSION["foo"] = "bar"; echo("done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_014 (save_handler=user in php.ini)",
        php=r"""session_set_save_handler(new SessionHandler); var_dump(session_start()); session_destroy();""",
        py=r"""session_set_save_handler(SessionHandler()); var_dump(session_start()); session_destroy()""",
        ini={**NO_COOKIES, "save_handler": "user"},
    ),
    Phpt(
        "session_set_save_handler_class_015 (registered, never started)",
        php=r"""var_dump(session_set_save_handler(new SessionHandler)); echo "end\n";""",
        py=r"""var_dump(session_set_save_handler(SessionHandler())); echo("end\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class_018 (own storage, create_sid)",
        php=r"""class M extends SessionHandler { public $path;
  function open($p, $n): bool { $this->path = "$p/u_sess_$n"; return true; } function close(): bool { return true; }
  function read($id): string|false { return (string)@file_get_contents($this->path . $id); }
  function write($id, $d): bool { return file_put_contents($this->path . $id, $d) !== false; }
  function destroy($id): bool { @unlink($this->path . $id); return true; } function gc($m): int|false { return 0; }
  function create_sid(): string { return 'fixed_sid_018'; } }
session_set_save_handler(new M); session_start(); $_SESSION['foo'] = 'hello'; var_dump(session_id(), $_SESSION); session_write_close(); session_unset();
session_start(); var_dump($_SESSION); session_write_close(); var_dump(file_get_contents("$SAVE/u_sess_PHPSESSIDfixed_sid_018"));""",
        py=r"""import os
class M(SessionHandler):
    def open(self, p, n): self.path = f"{p}/u_sess_{n}"; return True
    def close(self): return True
    def read(self, id):
        try:
            with open(self.path + id) as fh: return fh.read()
        except OSError:
            return ""
    def write(self, id, d):
        with open(self.path + id, "w") as fh: fh.write(d)
        return True
    def destroy(self, id): return True
    def gc(self, m): return 0
    def create_sid(self): return "fixed_sid_018"
session_set_save_handler(M()); session_start(); SESSION["foo"] = "hello"; var_dump(session_id(), SESSION); session_write_close(); session_unset()
session_start(); var_dump(SESSION); session_write_close()
with open(f"{SAVE}/u_sess_PHPSESSIDfixed_sid_018") as fh:
    var_dump(fh.read())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class (parent::read twice, locks kept)",
        php=r"""class M extends SessionHandler { function read($id): string|false { $a = parent::read($id); $b = parent::read($id); var_dump($a === $b); return $a; } }
session_set_save_handler(new M); session_start(); $_SESSION['a'] = 1; session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""class M(SessionHandler):
    def read(self, id):
        a = super().read(id); b = super().read(id); var_dump(a == b); return a
session_set_save_handler(M()); session_start(); SESSION["a"] = 1; session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class (invalid id through the parent)",
        php=r"""session_set_save_handler(new SessionHandler); session_id('bad id!'); var_dump(session_start()); var_dump(session_status());""",
        py=r"""session_set_save_handler(SessionHandler()); session_id("bad id!"); var_dump(session_start()); var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class (lazy_write: updateTimestamp falls back to write)",
        php=WRAP_PHP + r"""$h = new Wrap; session_set_save_handler($h); session_start(); $_SESSION['a'] = 1; session_write_close();
session_start(); session_write_close(); var_dump($h->n);""",
        py=WRAP_PY + r"""h = Wrap(); session_set_save_handler(h); session_start(); SESSION["a"] = 1; session_write_close()
session_start(); session_write_close(); var_dump(h.n)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class (read_and_close, abort, reset)",
        php=WRAP_PHP + r"""$h = new Wrap; session_set_save_handler($h); session_start(); $_SESSION['a'] = 1; session_write_close();
session_start(['read_and_close' => true]); var_dump($_SESSION); session_start(); session_abort(); var_dump($h->n);""",
        py=WRAP_PY + r"""h = Wrap(); session_set_save_handler(h); session_start(); SESSION["a"] = 1; session_write_close()
session_start({"read_and_close": True}); var_dump(SESSION); session_start(); session_abort(); var_dump(h.n)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_class (use_strict_mode with a known id)",
        php=WRAP_PHP + r"""$h = new Wrap; session_set_save_handler($h); session_start(); $id = session_id(); session_write_close();
session_id($id); session_start(); var_dump(session_id() === $id); session_write_close(); var_dump($h->n);""",
        py=WRAP_PY + r"""h = Wrap(); session_set_save_handler(h); session_start(); id = session_id(); session_write_close()
session_id(id); session_start(); var_dump(session_id() == id); session_write_close(); var_dump(h.n)""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
]


# -- API variations --------------------------------------------------------------------------
PHPT += [
    Phpt(
        "session_commit_variation (many commits)",
        php=r"""session_start(); $id = session_id(); for ($i = 0; $i < 3; $i++) { $_SESSION['n'] = $i; var_dump(session_commit()); session_id($id); session_start(); var_dump($_SESSION['n']); }
var_dump(session_commit()); var_dump(session_commit()); session_start(); session_destroy();""",
        py=r"""session_start(); id = session_id()
for i in range(3):
    SESSION["n"] = i; var_dump(session_commit()); session_id(id); session_start(); var_dump(SESSION["n"])
var_dump(session_commit()); var_dump(session_commit()); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_get_cookie_params_variation1 (ini changes)",
        php=r"""foreach (['cookie_lifetime' => 1234567890, 'cookie_path' => '/guff', 'cookie_domain' => 'foo', 'cookie_secure' => true, 'cookie_httponly' => true, 'cookie_samesite' => 'None'] as $k => $v) {
  ini_set("session.$k", $v); } var_dump(session_get_cookie_params());""",
        py=r"""for k, v in {"cookie_lifetime": 1234567890, "cookie_path": "/guff", "cookie_domain": "foo", "cookie_secure": True, "cookie_httponly": True, "cookie_samesite": "None"}.items():
    ini_set(f"session.{k}", v)
var_dump(session_get_cookie_params())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_cookie_params_variation1-7 (each argument)",
        php=r"""var_dump(session_set_cookie_params(3600)); var_dump(ini_get('session.cookie_lifetime'));
var_dump(session_set_cookie_params(3600, '/foo')); var_dump(ini_get('session.cookie_path'));
var_dump(session_set_cookie_params(3600, '/foo', 'blah')); var_dump(ini_get('session.cookie_domain'));
var_dump(session_set_cookie_params(3600, '/foo', 'blah', true)); var_dump(ini_get('session.cookie_secure'));
var_dump(session_set_cookie_params(3600, '/foo', 'blah', false, true)); var_dump(ini_get('session.cookie_httponly'), ini_get('session.cookie_secure'));
var_dump(session_set_cookie_params(['samesite' => 'Lax', 'path' => '/x'])); var_dump(ini_get('session.cookie_samesite'), ini_get('session.cookie_path'));
var_dump(session_set_cookie_params(['lifetime' => 'abc']));""",
        py=r"""var_dump(session_set_cookie_params(3600)); var_dump(ini_get("session.cookie_lifetime"))
var_dump(session_set_cookie_params(3600, "/foo")); var_dump(ini_get("session.cookie_path"))
var_dump(session_set_cookie_params(3600, "/foo", "blah")); var_dump(ini_get("session.cookie_domain"))
var_dump(session_set_cookie_params(3600, "/foo", "blah", True)); var_dump(ini_get("session.cookie_secure"))
var_dump(session_set_cookie_params(3600, "/foo", "blah", False, True)); var_dump(ini_get("session.cookie_httponly"), ini_get("session.cookie_secure"))
var_dump(session_set_cookie_params({"samesite": "Lax", "path": "/x"})); var_dump(ini_get("session.cookie_samesite"), ini_get("session.cookie_path"))
var_dump(session_set_cookie_params({"lifetime": "abc"}))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_cache_expire_variation1-3",
        php=r"""var_dump(session_cache_expire(-5)); var_dump(session_cache_expire()); var_dump(ini_get('session.cache_expire'));
ini_set('session.cache_expire', 'abc'); var_dump(session_cache_expire()); var_dump(ini_set('session.cache_expire', 99)); var_dump(session_cache_expire());
try { session_cache_expire('x'); } catch (TypeError $e) { error($e); } var_dump(session_cache_expire(null));""",
        py=r"""var_dump(session_cache_expire(-5)); var_dump(session_cache_expire()); var_dump(ini_get("session.cache_expire"))
ini_set("session.cache_expire", "abc"); var_dump(session_cache_expire()); var_dump(ini_set("session.cache_expire", 99)); var_dump(session_cache_expire())
try:
    session_cache_expire("x")
except TypeError as e:
    error(e)
var_dump(session_cache_expire(None))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_cache_limiter_variation1-3 (ini and invalid)",
        php=r"""ini_set('session.cache_limiter', 'public'); var_dump(session_cache_limiter()); var_dump(session_cache_limiter('bogus'));
var_dump(session_cache_limiter()); var_dump(ini_get('session.cache_limiter')); var_dump(session_start()); session_destroy();""",
        py=r"""ini_set("session.cache_limiter", "public"); var_dump(session_cache_limiter()); var_dump(session_cache_limiter("bogus"))
var_dump(session_cache_limiter()); var_dump(ini_get("session.cache_limiter")); var_dump(session_start()); session_destroy()""",
        ini={"use_cookies": "0"},
    ),
    Phpt(
        "session_name_variation2 (ini)",
        php=r"""ini_set('session.name', 'blah'); var_dump(session_name()); var_dump(ini_set('session.name', '')); var_dump(ini_set('session.name', '  ')); var_dump(session_name());
var_dump(session_start()); var_dump(session_name()); session_destroy();""",
        py=r"""ini_set("session.name", "blah"); var_dump(session_name()); var_dump(ini_set("session.name", "")); var_dump(ini_set("session.name", "  ")); var_dump(session_name())
var_dump(session_start()); var_dump(session_name()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_save_path_variation1-5",
        php=r"""ini_set('session.save_path', "$SAVE/x"); var_dump(session_save_path() === "$SAVE/x"); var_dump(session_save_path($SAVE) === "$SAVE/x");
var_dump(ini_get('session.save_path') === $SAVE); var_dump(session_start()); var_dump(session_save_path() === $SAVE); session_destroy();
var_dump(session_save_path('') === $SAVE); var_dump(session_save_path());""",
        py=r"""ini_set("session.save_path", f"{SAVE}/x"); var_dump(session_save_path() == f"{SAVE}/x"); var_dump(session_save_path(SAVE) == f"{SAVE}/x")
var_dump(ini_get("session.save_path") == SAVE); var_dump(session_start()); var_dump(session_save_path() == SAVE); session_destroy()
var_dump(session_save_path("") == SAVE); var_dump(session_save_path())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_module_name_variation1-3",
        php=r"""var_dump(session_module_name('blah')); var_dump(session_module_name()); var_dump(session_start()); var_dump(session_module_name()); session_destroy();
var_dump(ini_set('session.save_handler', 'FILES')); var_dump(session_module_name());""",
        py=r"""var_dump(session_module_name("blah")); var_dump(session_module_name()); var_dump(session_start()); var_dump(session_module_name()); session_destroy()
var_dump(ini_set("session.save_handler", "FILES")); var_dump(session_module_name())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation (use_cookies/use_only_cookies)",
        php=r"""ini_set('session.use_only_cookies', 0); var_dump(session_start(), SID !== ''); session_destroy();
ini_set('session.use_only_cookies', 1); var_dump(session_start(), SID); session_destroy();""",
        py=r"""import phpsess
ini_set("session.use_only_cookies", 0); var_dump(session_start(), phpsess.SID != ""); session_destroy()
ini_set("session.use_only_cookies", 1); var_dump(session_start(), phpsess.SID); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation (serialize_handler per start)",
        php=r"""session_start(['serialize_handler' => 'php_serialize']); $_SESSION['a'] = [1]; $id = session_id(); session_write_close();
var_dump(file_get_contents("$SAVE/sess_$id")); session_id($id); session_start(['serialize_handler' => 'php']); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start({"serialize_handler": "php_serialize"}); SESSION["a"] = [1]; id = session_id(); session_write_close()
with open(f"{SAVE}/sess_{id}") as fh:
    var_dump(fh.read())
session_id(id); session_start({"serialize_handler": "php"}); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_write_close_variation4 (files content after each close)",
        php=r"""session_id('fixed1234567'); session_start(); $_SESSION['a'] = 1; session_write_close(); echo file_get_contents("$SAVE/sess_fixed1234567"), "\n";
session_start(); $_SESSION['b'] = [true, null, 1.5]; session_write_close(); echo file_get_contents("$SAVE/sess_fixed1234567"), "\n";
session_start(); unset($_SESSION['a']); session_write_close(); echo file_get_contents("$SAVE/sess_fixed1234567"), "\n";""",
        py=r"""def show():
    with open(f"{SAVE}/sess_fixed1234567") as fh:
        echo(fh.read(), "\n")
session_id("fixed1234567"); session_start(); SESSION["a"] = 1; session_write_close(); show()
session_start(); SESSION["b"] = [True, None, 1.5]; session_write_close(); show()
session_start(); del SESSION["a"]; session_write_close(); show()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_unset_variation1",
        php=r"""session_start(); $_SESSION['a'] = 1; session_write_close(); var_dump(session_unset()); var_dump($_SESSION);
session_start(); var_dump(session_unset()); var_dump($_SESSION); session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["a"] = 1; session_write_close(); var_dump(session_unset()); var_dump(SESSION)
session_start(); var_dump(session_unset()); var_dump(SESSION); session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_id_variation (id of a destroyed session reused)",
        php=r"""session_id('reused12345'); session_start(); $_SESSION['a'] = 1; session_destroy(); session_id('reused12345'); session_start(); var_dump($_SESSION, session_id()); session_destroy();""",
        py=r"""session_id("reused12345"); session_start(); SESSION["a"] = 1; session_destroy(); session_id("reused12345"); session_start(); var_dump(SESSION, session_id()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_encode_variation (php_serialize with objects and references)",
        php=r"""session_start(); $a = [1]; $_SESSION['x'] = &$a; $_SESSION['y'] = &$a; $o = new stdClass; $o->p = 1; $_SESSION['o1'] = $o; $_SESSION['o2'] = $o;
var_dump(session_encode()); ini_set('session.serialize_handler', 'php_serialize');""",
        py=r"""from phpsess.core.codec import PHPObject, PHPReference
session_start(); a = PHPReference([1]); SESSION["x"] = a; SESSION["y"] = a; o = PHPObject("stdClass", {"p": 1}); SESSION["o1"] = o; SESSION["o2"] = o
var_dump(session_encode()); ini_set("session.serialize_handler", "php_serialize")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_decode_variation (keys and values)",
        php=r"""session_start(); var_dump(session_decode('a|i:1;b|s:1:"x";c|d:0.5;d|b:0;e|N;f|a:0:{}')); var_dump($_SESSION);
var_dump(session_decode('')); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); var_dump(session_decode('a|i:1;b|s:1:"x";c|d:0.5;d|b:0;e|N;f|a:0:{}')); var_dump(SESSION)
var_dump(session_decode("")); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
]

# -- user handlers: callables, interfaces, errors -------------------------------------------------
PHPT += [
    Phpt(
        "session_set_save_handler_variation1 (getter behaviour)",
        php=r"""var_dump(session_module_name()); var_dump(session_module_name(FALSE)); var_dump(session_module_name('files')); var_dump(session_module_name());""",
        py=r"""var_dump(session_module_name()); var_dump(session_module_name("")); var_dump(session_module_name("files")); var_dump(session_module_name())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_variation4 (gc called by probability)",
        php=LOGGING_PHP + r"""session_set_save_handler(new LogHandler); session_id('abc'); session_start(); session_write_close();""",
        py=LOGGING_PY + r"""session_set_save_handler(LogHandler()); session_id("abc"); session_start(); session_write_close()""",
        ini={**NO_COOKIES, "gc_probability": "1", "gc_divisor": "1", "gc_maxlifetime": "1234"},
    ),
    Phpt(
        "session_set_save_handler_variation5 (destroy and regenerate)",
        php=LOGGING_PHP + r"""$h = new LogHandler; session_set_save_handler($h); session_id('abc'); session_start(); $_SESSION['a'] = 1;
session_regenerate_id(); session_regenerate_id(true); session_destroy(); var_dump(array_values($h->data));""",
        py=LOGGING_PY + r"""h = LogHandler(); session_set_save_handler(h); session_id("abc"); session_start(); SESSION["a"] = 1
session_regenerate_id(); session_regenerate_id(True); session_destroy(); var_dump(list(h.data.values()))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_variation6 (lazy_write and user handler)",
        php=LOGGING_PHP + r"""$h = new LogHandler; session_set_save_handler($h); session_id('abc'); session_start(); $_SESSION['a'] = 1; session_write_close();
session_start(); session_write_close(); session_start(); $_SESSION['a'] = 2; session_write_close();""",
        py=LOGGING_PY + r"""h = LogHandler(); session_set_save_handler(h); session_id("abc"); session_start(); SESSION["a"] = 1; session_write_close()
session_start(); session_write_close(); session_start(); SESSION["a"] = 2; session_write_close()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_error3 (exception from open, then destroy)",
        php=r"""class H implements SessionHandlerInterface { function open($p, $n): bool { throw new Exception('Do something bad..!'); }
  function close(): bool { echo "close\n"; return true; } function read($id): string|false { return ''; } function write($id, $d): bool { return true; }
  function destroy($id): bool { return true; } function gc($m): int|false { return 0; } }
session_set_save_handler(new H); try { session_start(); } catch (Exception $e) { error($e); } var_dump(session_destroy());""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): raise Exception("Do something bad..!")
    def close(self): echo("close\n"); return True
    def read(self, id): return ""
    def write(self, id, d): return True
    def destroy(self, id): return True
    def gc(self, m): return 0
session_set_save_handler(H())
try:
    session_start()
except Exception as e:
    error(e)
var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_error4 (callables must be callable)",
        php=r"""function f() { return true; }
try { session_set_save_handler('f', 'f', 'f', 'f', 'f', 'nope'); } catch (TypeError $e) { error($e); }
try { session_set_save_handler('f', 'f', 'f'); } catch (ArgumentCountError $e) { error($e); }""",
        py=r"""def f(*a): return True
try:
    session_set_save_handler(f, f, f, f, f, "nope")
except TypeError as e:
    error(e)
try:
    session_set_save_handler(f, f, f)
except TypeError as e:
    echo("ArgumentCountError: ", e, "\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_iface_001 (interface implementation)",
        php=r"""class H implements SessionHandlerInterface { public $d = [];
  function open($p, $n): bool { return true; } function close(): bool { return true; }
  function read($id): string|false { return $this->d[$id] ?? ''; } function write($id, $v): bool { $this->d[$id] = $v; return true; }
  function destroy($id): bool { unset($this->d[$id]); return true; } function gc($m): int|false { return 0; } }
$h = new H; session_set_save_handler($h); var_dump($h instanceof SessionHandlerInterface); session_start(); $_SESSION['foo'] = 'hello';
$id = session_id(); session_write_close(); var_dump($h->d[$id]); session_start(); var_dump($_SESSION); session_destroy(); var_dump($h->d);""",
        py=r"""class H(SessionHandlerInterface):
    def __init__(self): self.d = {}
    def open(self, p, n): return True
    def close(self): return True
    def read(self, id): return self.d.get(id, "")
    def write(self, id, v): self.d[id] = v; return True
    def destroy(self, id): self.d.pop(id, None); return True
    def gc(self, m): return 0
h = H(); session_set_save_handler(h); var_dump(isinstance(h, SessionHandlerInterface)); session_start(); SESSION["foo"] = "hello"
id = session_id(); session_write_close(); var_dump(h.d[id]); session_start(); var_dump(SESSION); session_destroy(); var_dump(h.d)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_iface_003 (SessionHandler implements the interfaces)",
        php=r"""$h = new SessionHandler; var_dump($h instanceof SessionHandlerInterface, $h instanceof SessionIdInterface, $h instanceof SessionUpdateTimestampHandlerInterface);""",
        py=r"""h = SessionHandler(); var_dump(isinstance(h, SessionHandlerInterface), isinstance(h, SessionIdInterface), isinstance(h, SessionUpdateTimestampHandlerInterface))""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_set_save_handler_sid_002 (create_sid returns a non-string)",
        php=r"""class H extends SessionHandler { #[\ReturnTypeWillChange] function create_sid() { return null; } }
session_set_save_handler(new H); try { session_start(); } catch (Error $e) { error($e); } var_dump(session_status());""",
        py=r"""class H(SessionHandler):
    def create_sid(self): return None
session_set_save_handler(H())
try:
    session_start()
except PHPFatalError as e:
    echo("Error: ", e, "\n")
var_dump(session_status())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug31454 (bad callables)",
        php=r"""try { session_set_save_handler([&$x, 'f'], 'g', 'h', 'i', 'j', 'k'); } catch (TypeError $e) { error($e); } echo "Done\n";""",
        py=r"""try:
    session_set_save_handler(["x", "f"], "g", "h", "i", "j", "k")
except TypeError as e:
    error(e)
echo("Done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug32330 (destroy then start with a user handler)",
        php=LOGGING_PHP + r"""$h = new LogHandler; session_set_save_handler($h); session_id('abc'); session_start(); $_SESSION['a'] = 1; session_destroy();
session_set_save_handler($h); session_id('def'); session_start(); $_SESSION['b'] = 2; session_write_close(); var_dump($h->data);""",
        py=LOGGING_PY + r"""h = LogHandler(); session_set_save_handler(h); session_id("abc"); session_start(); SESSION["a"] = 1; session_destroy()
session_set_save_handler(h); session_id("def"); session_start(); SESSION["b"] = 2; session_write_close(); var_dump(h.data)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug63379 (regenerate_id(true) with SessionHandler keeps the data)",
        php=r"""session_set_save_handler(new SessionHandler); session_start(); $_SESSION['blah'] = 'foo'; $_SESSION['arr'] = ['x']; session_regenerate_id(true);
$id = session_id(); session_write_close(); session_id($id); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_set_save_handler(SessionHandler()); session_start(); SESSION["blah"] = "foo"; SESSION["arr"] = ["x"]; session_regenerate_id(True)
id = session_id(); session_write_close(); session_id(id); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug63379_nodestroy",
        php=r"""session_set_save_handler(new SessionHandler); session_start(); $_SESSION['blah'] = 'foo'; $old = session_id(); session_regenerate_id();
$id = session_id(); session_write_close(); session_id($id); session_start(); var_dump($_SESSION); session_write_close(); session_id($old); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_set_save_handler(SessionHandler()); session_start(); SESSION["blah"] = "foo"; old = session_id(); session_regenerate_id()
id = session_id(); session_write_close(); session_id(id); session_start(); var_dump(SESSION); session_write_close(); session_id(old); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug69111 (SessionHandler with a save path of its own)",
        php=r"""mkdir("$SAVE/other"); $h = new SessionHandler; session_set_save_handler($h); session_start(); $id = session_id();
var_dump($h->open("$SAVE/other", 'X')); var_dump($h->write($id, 'a|i:1;')); var_dump($h->close()); var_dump(glob("$SAVE/other/*") == ["$SAVE/other/sess_$id"]);""",
        py=r"""import os, glob
os.mkdir(f"{SAVE}/other"); h = SessionHandler(); session_set_save_handler(h); session_start(); id = session_id()
var_dump(h.open(f"{SAVE}/other", "X")); var_dump(h.write(id, "a|i:1;")); var_dump(h.close()); var_dump(glob.glob(f"{SAVE}/other/*") == [f"{SAVE}/other/sess_{id}"])""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug78624 (session_gc() return value with a user handler)",
        php=r"""class H extends SessionHandler { function gc($m): int|false { return 1; } }
session_set_save_handler(new H); session_start(); var_dump(session_gc()); session_destroy();
class G extends SessionHandler { function gc($m): int|false { return false; } }
session_set_save_handler(new G); session_start(); var_dump(session_gc()); session_destroy();""",
        py=r"""class H(SessionHandler):
    def gc(self, m): return 1
session_set_save_handler(H()); session_start(); var_dump(session_gc()); session_destroy()
class G(SessionHandler):
    def gc(self, m): return False
session_set_save_handler(G()); session_start(); var_dump(session_gc()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug79091 (create_sid while active with a user handler)",
        php=r"""class H extends SessionHandler { function create_sid(): string { return 'newsid' . rand(100000, 999999); } }
session_set_save_handler(new H); session_start(); $a = session_create_id(); var_dump(strlen($a), str_starts_with($a, 'newsid')); session_destroy();""",
        py=r"""class H(SessionHandler):
    def create_sid(self):
        import random; return "newsid" + str(random.randint(100000, 999999))
session_set_save_handler(H()); session_start(); a = session_create_id(); var_dump(len(a), a.startswith("newsid")); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh9583 (validateId and updateTimestamp on a SessionHandler subclass)",
        php=r"""class H extends SessionHandler implements SessionUpdateTimestampHandlerInterface {
  function validateId($id): bool { echo "validate\n"; return true; } function updateTimestamp($id, $d): bool { echo "update\n"; return true; } }
session_set_save_handler(new H); session_start(); $id = session_id(); session_write_close(); session_id($id); session_start(); session_write_close();""",
        py=r"""class H(SessionHandler, SessionUpdateTimestampHandlerInterface):
    def validateId(self, id): echo("validate\n"); return True
    def updateTimestamp(self, id, d): echo("update\n"); return True
session_set_save_handler(H()); session_start(); id = session_id(); session_write_close(); session_id(id); session_start(); session_write_close()""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
    Phpt(
        "basic_set_save_handler_test02 (handler data round trip)",
        php=LOGGING_PHP + r"""$h = new LogHandler; session_set_save_handler($h); session_id('abc'); session_start(); $_SESSION['Blah'] = 'Hello World!'; $_SESSION['Foo'] = false;
$_SESSION['Guff'] = 1234567890; session_write_close(); session_start(); var_dump($_SESSION); session_write_close(); session_unset(); var_dump($_SESSION); session_start(); session_destroy();""",
        py=LOGGING_PY + r"""h = LogHandler(); session_set_save_handler(h); session_id("abc"); session_start(); SESSION["Blah"] = "Hello World!"; SESSION["Foo"] = False
SESSION["Guff"] = 1234567890; session_write_close(); session_start(); var_dump(SESSION); session_write_close(); session_unset(); var_dump(SESSION); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_regenerate_id_handler_destroys_session (destroy inside the handler)",
        php=r"""class H extends SessionHandler { function write($id, $d): bool { echo "write\n"; return parent::write($id, $d); } }
session_set_save_handler(new H); session_start(); $_SESSION['a'] = 1; var_dump(session_regenerate_id()); var_dump(session_status()); session_destroy();""",
        py=r"""class H(SessionHandler):
    def write(self, id, d): echo("write\n"); return super().write(id, d)
session_set_save_handler(H()); session_start(); SESSION["a"] = 1; var_dump(session_regenerate_id()); var_dump(session_status()); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_create_sid_throws",
        php=r"""class H extends SessionHandler { function create_sid(): string { throw new Exception('no id'); } function close(): bool { echo "close\n"; return parent::close(); } }
session_set_save_handler(new H); try { session_start(); } catch (Throwable $e) { error($e); error($e->getPrevious()); } var_dump(session_status()); echo "end\n";""",
        py=r"""class H(SessionHandler):
    def create_sid(self): raise Exception("no id")
    def close(self): echo("close\n"); return super().close()
session_set_save_handler(H())
try:
    session_start()
except PHPFatalError as e:
    error(e); error(e.__cause__)
var_dump(session_status()); echo("end\n")""",
        ini=NO_COOKIES, errors={"Error": "PHPFatalError"},
    ),
]


PHPT += [
    Phpt(
        "029 (session_decode() without a session)",
        php=r"""var_dump(@session_decode("garbage data and no session started")); var_dump(@session_decode('userid|s:5:"mazen";chatRoom|s:1:"1";')); print "I live\n";""",
        py=r"""import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    var_dump(session_decode("garbage data and no session started")); var_dump(session_decode('userid|s:5:"mazen";chatRoom|s:1:"1";'))
echo("I live\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "030 (destroy, new id, destroy)",
        php=r"""session_id("abtest"); session_start(); var_dump(session_destroy()); session_id("abtest2"); session_start(); var_dump(session_id()); var_dump(session_destroy()); print "I live\n";""",
        py=r"""session_id("abtest"); session_start(); var_dump(session_destroy()); session_id("abtest2"); session_start(); var_dump(session_id()); var_dump(session_destroy()); echo("I live\n")""",
        ini={**NO_COOKIES, "use_strict_mode": "0"},
    ),
    Phpt(
        "bug24592 (NULL values stored)",
        php=r"""session_start(); $foo = $_SESSION['foo'] ?? null; $bar = $_SESSION['bar'] ?? null; var_dump($foo, $bar, $_SESSION);
$_SESSION['foo'] = $foo; $_SESSION['bar'] = $bar; var_dump($_SESSION); var_dump(session_encode()); session_write_close(); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); foo = SESSION.get("foo"); bar = SESSION.get("bar"); var_dump(foo, bar, SESSION)
SESSION["foo"] = foo; SESSION["bar"] = bar; var_dump(SESSION); var_dump(session_encode()); session_write_close(); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug70013 (reference to $_SESSION kept across regenerate)",
        php=r"""session_start(); $s = &$_SESSION; $s['test'] = 1; session_regenerate_id(false); $s['test'] = 2; var_dump($s['test'] === $_SESSION['test']);
$s['test'] = 3; session_regenerate_id(true); $s['test'] = 4; var_dump($s['test'] === $_SESSION['test']); session_write_close();
session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); s = SESSION; s["test"] = 1; session_regenerate_id(False); s["test"] = 2; var_dump(s["test"] == SESSION["test"])
s["test"] = 3; session_regenerate_id(True); s["test"] = 4; var_dump(s["test"] == SESSION["test"]); session_write_close()
session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug79031 (Serializable objects sharing a property)",
        php=r"""class SerializableClass implements Serializable { public $sharedProp; function __construct($p) { $this->sharedProp = $p; }
  function serialize() { return serialize(get_object_vars($this)); } function unserialize($d) { foreach (unserialize($d) as $k => $v) { $this->$k = $v; } } }
$p = new stdClass; $p->name = 'test'; session_start(); $_SESSION = ['obj1' => new SerializableClass($p), 'obj2' => new SerializableClass($p)];
$s = session_encode(); echo $s, "\n"; var_dump(session_decode($s)); echo session_encode(), "\n"; session_destroy();""",
        py=r"""session_start()
s = 'obj1|C:17:"SerializableClass":65:{a:1:{s:10:"sharedProp";O:8:"stdClass":1:{s:4:"name";s:4:"test";}}}obj2|C:17:"SerializableClass":28:{a:1:{s:10:"sharedProp";r:3;}}'
session_decode(s); echo(session_encode(), "\n"); var_dump(session_decode(s)); echo(session_encode(), "\n"); session_destroy()""",
        ini={**NO_COOKIES, "error_reporting": "24575"},
    ),
    Phpt(
        "session_start (read_and_close with strict mode and a new id)",
        php=r"""var_dump(session_start(['read_and_close' => true])); var_dump(session_status(), strlen(session_id()), glob("$SAVE/*"));""",
        py=r"""import glob
var_dump(session_start({"read_and_close": True})); var_dump(session_status(), len(session_id()), glob.glob(f"{SAVE}/*"))""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
    Phpt(
        "session_decode (php_serialize holding a non-array)",
        php=r"""session_start(); var_dump(session_decode('i:5;')); var_dump($_SESSION); var_dump(session_encode()); $id = session_id(); session_write_close();
var_dump(file_exists("$SAVE/sess_$id") ? file_get_contents("$SAVE/sess_$id") : 'none');""",
        py=r"""import os
from phpsess.session.context import current_request
session_start(); var_dump(session_decode("i:5;")); var_dump(current_request().session.data); var_dump(session_encode()); id = session_id(); session_write_close()
p = f"{SAVE}/sess_{id}"
if os.path.exists(p):
    with open(p) as fh:
        var_dump(fh.read())
else:
    var_dump("none")""",
        ini={**NO_COOKIES, "serialize_handler": "php_serialize"},
    ),
    Phpt(
        "corrupt session file (decode failure destroys it)",
        php=r"""file_put_contents("$SAVE/sess_corrupt1234", 'a|i:1;b|x:garbage'); session_id('corrupt1234'); var_dump(session_start());
var_dump($_SESSION, session_status(), file_exists("$SAVE/sess_corrupt1234"));""",
        py=r"""import os
with open(f"{SAVE}/sess_corrupt1234", "w") as fh:
    fh.write("a|i:1;b|x:garbage")
session_id("corrupt1234"); var_dump(session_start())
var_dump(SESSION, session_status(), os.path.exists(f"{SAVE}/sess_corrupt1234"))""",
        ini=NO_COOKIES,
    ),
]


PHPT += [
    Phpt(
        "session_start_variation1 (repeated starts)",
        php=r"""for ($i = 0; $i < 3; $i++) var_dump(session_start()); session_destroy();""",
        py=r"""for i in range(3): var_dump(session_start())
session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation2 (start and destroy)",
        php=r"""for ($i = 0; $i < 3; $i++) { var_dump(session_start()); var_dump(session_destroy()); }""",
        py=r"""for i in range(3):
    var_dump(session_start()); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation5 ($_SESSION before start)",
        php=r"""$_SESSION['blah'] = 'foo'; var_dump($_SESSION); session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""SESSION["blah"] = "foo"; var_dump(SESSION); session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation6 (data after destroy, restart)",
        php=r"""session_start(); $_SESSION['colour'] = 'green'; $_SESSION['age'] = 6; var_dump($_SESSION); var_dump(session_destroy()); var_dump($_SESSION);
session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["colour"] = "green"; SESSION["age"] = 6; var_dump(SESSION); var_dump(session_destroy()); var_dump(SESSION)
session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation7 (data after write_close)",
        php=r"""session_start(); $_SESSION['colour'] = 'green'; var_dump(session_write_close()); var_dump($_SESSION); $_SESSION['x'] = 1;
session_start(); var_dump($_SESSION); session_destroy();""",
        py=r"""session_start(); SESSION["colour"] = "green"; var_dump(session_write_close()); var_dump(SESSION); SESSION["x"] = 1
session_start(); var_dump(SESSION); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_start_variation8 (id set before start)",
        php=r"""var_dump(session_id()); session_id('start8test'); var_dump(session_start()); var_dump(session_id()); var_dump(session_destroy()); var_dump(session_id());""",
        py=r"""var_dump(session_id()); session_id("start8test"); var_dump(session_start()); var_dump(session_id()); var_dump(session_destroy()); var_dump(session_id())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_module_name_variation3 (files round trip)",
        php=r"""session_module_name('files'); session_start(); $_SESSION['Blah'] = 'Hello World!'; $_SESSION['Foo'] = false; $_SESSION['Guff'] = 1234567890;
var_dump($_SESSION); var_dump(session_write_close()); session_start(); var_dump($_SESSION); var_dump(session_destroy()); session_start(); var_dump($_SESSION); var_dump(session_destroy());""",
        py=r"""session_module_name("files"); session_start(); SESSION["Blah"] = "Hello World!"; SESSION["Foo"] = False; SESSION["Guff"] = 1234567890
var_dump(SESSION); var_dump(session_write_close()); session_start(); var_dump(SESSION); var_dump(session_destroy()); session_start(); var_dump(SESSION); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_destroy_variation2-3 (destroy twice, data kept)",
        php=r"""session_start(); $_SESSION['a'] = 1; var_dump(session_destroy()); var_dump(session_destroy()); var_dump($_SESSION);
session_start(); var_dump(session_id() !== '', $_SESSION); var_dump(session_destroy());""",
        py=r"""session_start(); SESSION["a"] = 1; var_dump(session_destroy()); var_dump(session_destroy()); var_dump(SESSION)
session_start(); var_dump(session_id() != "", SESSION); var_dump(session_destroy())""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_write_close_variation2 (after destroy)",
        php=r"""session_start(); var_dump(session_destroy()); var_dump(session_write_close()); var_dump(session_start()); var_dump(session_write_close()); session_start(); session_destroy();""",
        py=r"""session_start(); var_dump(session_destroy()); var_dump(session_write_close()); var_dump(session_start()); var_dump(session_write_close()); session_start(); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "session_encode_variation2-5 (before start, after unset, types)",
        php=r"""$_SESSION['x'] = 1; var_dump(session_encode()); session_start(); $_SESSION['a'] = [1.5, true, null, 'x' => ['y' => 'z']]; var_dump(session_encode());
session_unset(); var_dump(session_encode()); session_destroy();""",
        py=r"""SESSION["x"] = 1; var_dump(session_encode()); session_start(); SESSION["a"] = {0: 1.5, 1: True, 2: None, "x": {"y": "z"}}; var_dump(session_encode())
session_unset(); var_dump(session_encode()); session_destroy()""",
        ini=NO_COOKIES,
    ),
]


# -- exceptions and failures inside user handlers ----------------------------------------------
FAILING_PHP = r"""
class Failing implements SessionHandlerInterface, SessionIdInterface, SessionUpdateTimestampHandlerInterface {
    public $calls = 0; public $throwAt = 0;
    function open($p, $n): bool { return true; } function close(): bool { echo "close\n"; return true; }
    function read($id): string|false { return ''; } function write($id, $d): bool { return true; }
    function destroy($id): bool { return true; } function gc($m): int|false { return 0; }
    function updateTimestamp($id, $d): bool { return true; } function validateId($id): bool { return true; }
    function create_sid(): string { if (++$this->calls === $this->throwAt) throw new RuntimeException('create_sid failed'); return 'session' . $this->calls; }
}
"""
FAILING_PY = r"""
class RuntimeException(Exception): pass
class Failing(SessionHandlerInterface, SessionIdInterface, SessionUpdateTimestampHandlerInterface):
    calls = 0; throwAt = 0
    def open(self, p, n): return True
    def close(self): echo("close\n"); return True
    def read(self, id): return ""
    def write(self, id, d): return True
    def destroy(self, id): return True
    def gc(self, m): return 0
    def updateTimestamp(self, id, d): return True
    def validateId(self, id): return True
    def create_sid(self):
        self.calls += 1
        if self.calls == self.throwAt: raise RuntimeException("create_sid failed")
        return f"session{self.calls}"
"""

PHPT += [
    Phpt(
        "session_regenerate_id_create_sid_throws",
        php=FAILING_PHP + r"""foreach ([2, 3] as $at) { $h = new Failing; $h->throwAt = $at; session_set_save_handler($h); session_id(''); session_start();
  try { session_regenerate_id(); } catch (Throwable $e) { error($e); } echo "calls: {$h->calls}\n"; var_dump(session_status()); }""",
        py=FAILING_PY + r"""for at in [2, 3]:
    h = Failing(); h.throwAt = at; session_set_save_handler(h); session_id(""); session_start()
    try:
        session_regenerate_id()
    except Exception as e:
        error(e)
    echo(f"calls: {h.calls}\n"); var_dump(session_status())""",
        ini={**NO_COOKIES, "use_strict_mode": "1"}, errors={"Error": "PHPFatalError"},
    ),
    Phpt(
        "session_regenerate_id_create_sid_fails_close",
        php=r"""class C extends SessionHandler { public $opens = 0; public $closes = 0; public $n = 0;
  function open($p, $n): bool { $this->opens++; return true; } function close(): bool { $this->closes++; return true; }
  function read($id): string { return ''; } function write($id, $d): bool { return true; } function destroy($id): bool { return true; }
  function gc($m): int|false { return 0; }
  function create_sid(): string { if (++$this->n === 2) throw new RuntimeException('create_sid failed'); return parent::create_sid(); } }
$h = new C; session_set_save_handler($h, true); $started = session_start();
try { session_regenerate_id(); } catch (Throwable $e) { $msg = get_class($e) . ': ' . $e->getMessage(); }
echo $msg ?? 'no exception', "\n"; var_dump($started, session_status() === PHP_SESSION_NONE); echo "open={$h->opens} close={$h->closes}\n";""",
        py=r"""class RuntimeException(Exception): pass
class C(SessionHandler):
    opens = closes = n = 0
    def open(self, p, n): self.opens += 1; return True
    def close(self): self.closes += 1; return True
    def read(self, id): return ""
    def write(self, id, d): return True
    def destroy(self, id): return True
    def gc(self, m): return 0
    def create_sid(self):
        self.n += 1
        if self.n == 2: raise RuntimeException("create_sid failed")
        return super().create_sid()
h = C(); session_set_save_handler(h, True); started = session_start(); msg = None
try:
    session_regenerate_id()
except Exception as e:
    msg = f"{type(e).__name__}: {e}"
echo(msg or "no exception", "\n"); var_dump(started, session_status() == PHP_SESSION_NONE); echo(f"open={h.opens} close={h.closes}\n")""",
        ini=NO_COOKIES, errors={"Error": "PHPFatalError"},
    ),
    Phpt(
        "gh23061 (create_sid returns an array)",
        php=r"""class A extends SessionHandler { #[\ReturnTypeWillChange] function create_sid() { return [3, 6]; } }
session_set_save_handler(new A); try { session_start(); } catch (Error $e) { error($e); } var_dump(session_status());""",
        py=r"""class A(SessionHandler):
    def create_sid(self): return [3, 6]
session_set_save_handler(A())
try:
    session_start()
except PHPFatalError as e:
    error(e)
var_dump(session_status())""",
        ini=NO_COOKIES, errors={"Error": "PHPFatalError"},
    ),
    Phpt(
        "bug60634_error_5 (error thrown in close)",
        php=r"""class H implements SessionHandlerInterface { function open($p, $n): bool { return true; }
  function close(): bool { echo "close: goodbye cruel world\n"; throw new Error('in close'); }
  function read($id): string { return ''; } function write($id, $d): bool { echo "write\n"; return true; } function destroy($id): bool { return true; } function gc($m): int { return 1; } }
session_set_save_handler(new H); session_start(); try { session_write_close(); } catch (Error $e) { error($e); } var_dump(session_status()); echo "um, hi\n";""",
        py=r"""class H(SessionHandlerInterface):
    def open(self, p, n): return True
    def close(self): echo("close: goodbye cruel world\n"); raise RuntimeError("in close")
    def read(self, id): return ""
    def write(self, id, d): echo("write\n"); return True
    def destroy(self, id): return True
    def gc(self, m): return 1
session_set_save_handler(H()); session_start()
try:
    session_write_close()
except RuntimeError as e:
    error(e)
var_dump(session_status()); echo("um, hi\n")""",
        ini=NO_COOKIES, errors={"Error": "RuntimeError"},
    ),
    Phpt(
        "bug80889a (callables when save_handler is invalid)",
        php=r"""$a = ini_get('session.save_handler'); session_set_save_handler(fn($p, $n) => true, fn() => true, fn($id) => '', fn($id, $d) => true, fn($id) => true, fn($m) => true);
var_dump($a, ini_get('session.save_handler'));""",
        py=r"""a = ini_get("session.save_handler"); session_set_save_handler(lambda p, n: True, lambda: True, lambda id: "", lambda id, d: True, lambda id: True, lambda m: True)
var_dump(a, ini_get("session.save_handler"))""",
        ini={**NO_COOKIES, "save_handler": "whatever"},
    ),
]


PHPT += [
    Phpt(
        "010 / 011 (encode and decode without a session)",
        php=r"""$a = explode(";", (string)@session_encode()); var_dump($a); print "I live\n";""",
        py=r"""import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    e = session_encode()
var_dump(("" if e is False else e).split(";")); echo("I live\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "013 (destroy and restart with ids set)",
        php=r"""session_id("abtest"); session_start(); session_destroy(); session_id("abtest2"); session_start(); var_dump(session_id()); session_destroy(); print "I live\n";""",
        py=r"""session_id("abtest"); session_start(); session_destroy(); session_id("abtest2"); session_start(); var_dump(session_id()); session_destroy(); echo("I live\n")""",
        ini={**NO_COOKIES, "use_strict_mode": "0"},
    ),
    Phpt(
        "014 (use_trans_sid cannot change while active)",
        php=r"""session_id("abtest"); session_start(); var_dump(ini_set("session.use_trans_sid", "1")); var_dump(ini_set("session.use_trans_sid", "0"));
var_dump(ini_get("session.use_trans_sid")); session_destroy();""",
        py=r"""session_id("abtest"); session_start(); var_dump(ini_set("session.use_trans_sid", "1")); var_dump(ini_set("session.use_trans_sid", "0"))
var_dump(ini_get("session.use_trans_sid")); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "017 (session_start() from a constructor)",
        php=r"""class Kill { function __construct() { var_dump(session_start()); } } $k = new Kill(); print "I live\n"; session_destroy();""",
        py=r"""class Kill:
    def __init__(self): var_dump(session_start())
k = Kill(); echo("I live\n"); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "bug65475 (strict mode keeps its own ids)",
        php=r"""session_start(); $_SESSION['cnt'] = 1; $id = session_id(); session_write_close(); session_start(); var_dump($id === session_id()); $_SESSION['cnt']++;
session_write_close(); session_start(); var_dump($id === session_id()); var_dump($_SESSION['cnt']); session_destroy();""",
        py=r"""session_start(); SESSION["cnt"] = 1; id = session_id(); session_write_close(); session_start(); var_dump(id == session_id()); SESSION["cnt"] += 1
session_write_close(); session_start(); var_dump(id == session_id()); var_dump(SESSION["cnt"]); session_destroy()""",
        ini={**NO_COOKIES, "use_strict_mode": "1"},
    ),
    Phpt(
        "bug66827 (session cookie given as an array)",
        php=r"""session_start(); var_dump(strlen(session_id())); echo "OK\n"; session_destroy();""",
        py=r"""session_start(); var_dump(len(session_id())); echo("OK\n"); session_destroy()""",
        cgi=True, cookie="PHPSESSID[]=x; PHPSESSID[a]=y",
    ),
    Phpt(
        "bug72562 (php_binary payload with a bad length)",
        php=r"""ini_set('session.serialize_handler', 'php_binary'); session_start(); var_dump(session_decode("\x1xi:1;\x2y")); var_dump(session_status(), $_SESSION);""",
        py=r"""ini_set("session.serialize_handler", "php_binary"); session_start(); var_dump(session_decode(b"\x01xi:1;\x02y")); var_dump(session_status(), SESSION)""",
        ini=NO_COOKIES,
    ),
]


PHPT += [
    Phpt(
        "gh23043 (create_sid returns an empty id)",
        php=r"""class A extends SessionHandler { function read($b): string { return ""; } function create_sid(): string { var_dump(session_id()); return ''; } }
session_set_save_handler(new A); session_start(); session_write_close(); session_start();""",
        py=r"""class A(SessionHandler):
    def read(self, b): return ""
    def create_sid(self): var_dump(session_id()); return ""
session_set_save_handler(A()); session_start(); session_write_close(); session_start()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh23061-abort (a failed start leaves nothing open)",
        php=r"""class Broken extends SessionHandler { #[\ReturnTypeWillChange] function create_sid() { return [3, 6]; } }
class Own extends SessionHandler { function open(string $p, string $n): bool { return true; } function read(string $id): string|false { return parent::read($id); }
  function close(): bool { return true; } }
session_set_save_handler(new Broken); $m = ''; try { session_start(); } catch (Error $e) { $m = get_class($e) . ': ' . $e->getMessage(); }
session_set_save_handler(new Own); $started = session_start(); session_write_close(); echo $m, "\n"; var_dump($started);""",
        py=r"""class Broken(SessionHandler):
    def create_sid(self): return [3, 6]
class Own(SessionHandler):
    def open(self, p, n): return True
    def read(self, id): return super().read(id)
    def close(self): return True
session_set_save_handler(Broken()); m = ""
try:
    session_start()
except PHPFatalError as e:
    m = f"Error: {e}"
session_set_save_handler(Own()); started = session_start(); session_write_close(); echo(m, "\n"); var_dump(started)""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh23328 (classes implementing the interfaces in any order)",
        php=r"""abstract class HandlerFirst implements SessionHandlerInterface, SessionIdInterface, SessionUpdateTimestampHandlerInterface {}
abstract class HandlerLast implements SessionIdInterface, SessionUpdateTimestampHandlerInterface, SessionHandlerInterface {}
abstract class MissingBoth implements SessionHandlerInterface {}
var_dump(is_subclass_of('HandlerLast', 'SessionHandlerInterface'), is_subclass_of('MissingBoth', 'SessionIdInterface')); echo "Done\n";""",
        py=r"""class HandlerFirst(SessionHandlerInterface, SessionIdInterface, SessionUpdateTimestampHandlerInterface): pass
class HandlerLast(SessionIdInterface, SessionUpdateTimestampHandlerInterface, SessionHandlerInterface): pass
class MissingBoth(SessionHandlerInterface): pass
var_dump(issubclass(HandlerLast, SessionHandlerInterface), issubclass(MissingBoth, SessionIdInterface)); echo("Done\n")""",
        ini=NO_COOKIES,
    ),
]


PHPT += [
    Phpt(
        "recursive_handler_argv_leak (session_destroy() inside write())",
        php=r"""class H extends SessionHandler { public $tripped = false;
  function write($id, $data): bool { if (!$this->tripped) { $this->tripped = true; var_dump(session_destroy()); } return true; } }
session_set_save_handler(new H, true); session_start(); $_SESSION['x'] = 1; var_dump(session_write_close()); var_dump(session_status()); echo "done\n";""",
        py=r"""class H(SessionHandler):
    tripped = False
    def write(self, id, data):
        if not self.tripped:
            self.tripped = True; var_dump(session_destroy())
        return True
session_set_save_handler(H(), True); session_start(); SESSION["x"] = 1; var_dump(session_write_close()); var_dump(session_status()); echo("done\n")""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "gh_gc_retval_leak (gc returns a string)",
        php=r"""session_set_save_handler(fn($p, $n) => true, fn() => true, fn($id) => "", fn($id, $d) => true, fn($id) => true, fn($m) => str_repeat("x", 100));
session_start(); var_dump(session_gc()); session_write_close();""",
        py=r"""session_set_save_handler(lambda p, n: True, lambda: True, lambda id: "", lambda id, d: True, lambda id: True, lambda m: "x" * 100)
session_start(); var_dump(session_gc()); session_write_close()""",
        ini=NO_COOKIES,
    ),
]


PHPT += [
    Phpt(
        "005 (custom handler, several starts, objects and arrays)",
        php=LOGGING_PHP + r"""class foo { public $bar = "ok"; public $yes = 1; function method() { $this->yes++; } }
$h = new LogHandler; $h->data['abtest'] = 'baz|O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}arr|a:1:{i:3;O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}}';
session_set_save_handler($h); session_id('abtest'); session_start(); $_SESSION['baz']->method(); $_SESSION['arr'][3]->method(); var_dump($_SESSION['baz']->yes); session_write_close();
session_start(); $_SESSION['baz']->method(); $_SESSION['c'] = 123; session_write_close(); session_start(); var_dump($_SESSION['baz']->yes, $_SESSION['c']); session_destroy();""",
        py=LOGGING_PY + r"""h = LogHandler(); h.data["abtest"] = 'baz|O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}arr|a:1:{i:3;O:3:"foo":2:{s:3:"bar";s:2:"ok";s:3:"yes";i:1;}}'
session_set_save_handler(h); session_id("abtest"); session_start(); SESSION["baz"].properties["yes"] += 1; SESSION["arr"][3].properties["yes"] += 1; var_dump(SESSION["baz"].properties["yes"]); session_write_close()
session_start(); SESSION["baz"].properties["yes"] += 1; SESSION["c"] = 123; session_write_close(); session_start(); var_dump(SESSION["baz"].properties["yes"], SESSION["c"]); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "006 (one object referenced twice)",
        php=r"""class a { public $test = "hallo"; } class b { public $a; function __construct($a) { $this->a = $a; } }
$a = new a; $b = new b($a); session_start(); $_SESSION['a'] = $a; $_SESSION['b'] = $b; $e = session_encode(); echo $e, "\n"; session_write_close();
session_start(); $_SESSION['a']->test = 'changed'; var_dump($_SESSION['b']->a->test); echo session_encode(), "\n"; session_destroy();""",
        py=r"""from phpsess.core.codec import PHPObject, PHPReference
a = PHPObject("a", {"test": "hallo"}); b = PHPObject("b", {"a": a})
session_start(); SESSION["a"] = a; SESSION["b"] = b; echo(session_encode(), "\n"); session_write_close()
session_start(); SESSION["a"].properties["test"] = "changed"; var_dump(SESSION["b"].properties["a"].properties["test"]); echo(session_encode(), "\n"); session_destroy()""",
        ini=NO_COOKIES,
    ),
    Phpt(
        "026 (array references kept across a write)",
        php=r"""session_start(); $x = [1, 2]; $_SESSION['r1'] = &$x; $_SESSION['r2'] = &$x; echo session_encode(), "\n"; session_write_close();
session_start(); $_SESSION['r1'][] = 3; var_dump($_SESSION['r2']); echo session_encode(), "\n"; session_destroy();""",
        py=r"""from phpsess.core.codec import PHPReference
session_start(); x = PHPReference([1, 2]); SESSION["r1"] = x; SESSION["r2"] = x; echo(session_encode(), "\n"); session_write_close()
session_start(); r = SESSION["r1"]; r.value.append(3) if isinstance(r.value, list) else r.value.__setitem__(len(r.value), 3); var_dump(SESSION["r2"]); echo(session_encode(), "\n"); session_destroy()""",
        ini=NO_COOKIES,
    ),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root: Path = tmp_path_factory.mktemp("phpt")
    return {o.test.name: o for o in run_all(PHPT, root)}


@pytest.mark.parametrize("name", [t.name for t in PHPT])
def test_phpt_port_prints_what_php_prints(name: str, outcomes: dict[str, Outcome]) -> None:
    o = outcomes[name]
    if not o.same:
        pytest.fail(
            f"{name}: the port differs from PHP 8.2\n--- PHP\n{o.php}\n--- port\n{o.py}\n"
            f"--- port stderr\n{o.py_stderr[-3000:]}",
            pytrace=False,
        )
