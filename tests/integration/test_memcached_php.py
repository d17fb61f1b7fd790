"""phpsess's memcached handler and real PHP 8.2 + php-memcached 3.2 sharing memcached servers:
the same keys, bytes and servers, and one lock that both respect. Runs php, python and
memcached processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.core.memcached_url import Distribution, parse_save_path
from phpsess.errors import LockTimeout, SaveHandlerError
from phpsess.storage.memcached import MemcachedHandler
from tests.integration.memcached_server import MemcachedProcess, memcached_server, memcached_trio  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).absolute().parents[2]

#: Debian's php-memcached is built with igbinary and msgpack: with -n all three are loaded by hand
PHP_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=msgpack.so", "-d", "extension=memcached.so"]


def php_args(script: Path, args: Sequence[str], ini: Mapping[str, str]) -> list[str]:
    """The command line running ``script`` with php-memcached as the session handler."""
    cmd = [require("php"), "-n", *PHP_EXTENSIONS]
    settings = dict(PHP_BASE_INI)
    settings.update({"session.save_handler": "memcached", "session.use_strict_mode": "0"})
    settings.update(ini)
    for k, v in settings.items():
        cmd += ["-d", f'{k}="{v}"' if any(c in v for c in "=&?;, ") else f"{k}={v}"]
    return [*cmd, str(script), *args]


def waiting_ini(**extra: str) -> dict[str, str]:
    """php-memcached waiting long enough for the tests (its default gives up after ~0.75 s)."""
    ini = {
        "memcached.sess_lock_wait_min": "2",
        "memcached.sess_lock_wait_max": "20",
        "memcached.sess_lock_retries": "2000",  # ~40 s
        "memcached.sess_lock_expire": "30",
    }
    ini.update(extra)
    return ini


@pytest.fixture(scope="module", autouse=True)
def _php_memcached_is_installed() -> None:
    out = subprocess.run([require("php"), "-n", *PHP_EXTENSIONS, "-r", 'echo phpversion("memcached");'],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(f"php-memcached does not load with php -n: {out.stderr} (scripts/test.sh installs it)")


class ScriptFactory:
    """Writes PHP scripts into a temp dir."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.n = 0

    def __call__(self, body: str) -> Path:
        self.n += 1
        path = self.where / f"s{self.n}.php"
        path.write_text("<?php\n" + body)
        return path


@pytest.fixture
def php_script(tmp_path: Path) -> Iterator[ScriptFactory]:
    yield ScriptFactory(tmp_path)


def make(save_path: str, **ini: object) -> MemcachedHandler:
    h = MemcachedHandler(SessionConfig(ini))
    h.open(save_path, "PHPSESSID")
    return h


def new_sid() -> str:
    return ids.create_id(SessionConfig())


def test_php_writes_python_reads_the_same_keys_and_bytes(memcached_server: MemcachedProcess,  # noqa: F811
                                                         php_script: ScriptFactory) -> None:
    sid = new_sid()
    script = php_script(
        'session_id($argv[1]); session_start();'
        '$_SESSION = ["n" => 1, "s" => "héllo", "a" => [1, 2.5, true, null]];'
        'echo session_encode();'
    )
    out = subprocess.run(php_args(script, [sid], {"session.save_path": memcached_server.address}),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    assert memcached_server.get(f"memc.sess.key.{sid}") == out.stdout
    assert memcached_server.get(f"memc.sess.key.lock.{sid}") is None  # released
    h = make(memcached_server.address)
    assert h.read(sid) == out.stdout
    h.close()


def test_python_writes_php_reads_with_another_prefix(memcached_server: MemcachedProcess,  # noqa: F811
                                                     php_script: ScriptFactory) -> None:
    sid = new_sid()
    h = make(memcached_server.address, **{"memcached.sess_prefix": "app1."})
    h.read(sid)
    h.write(sid, b'n|i:41;s|s:6:"h\xc3\xa9llo";')
    h.close()
    assert memcached_server.get(f"app1.{sid}") == b'n|i:41;s|s:6:"h\xc3\xa9llo";'
    script = php_script('session_id($argv[1]); session_start(); echo json_encode($_SESSION); $_SESSION["n"]++;')
    out = subprocess.run(php_args(script, [sid], {"session.save_path": memcached_server.address,
                                                  "memcached.sess_prefix": "app1."}),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    assert json.loads(out.stdout) == {"n": 41, "s": "héllo"}
    assert make(memcached_server.address, **{"memcached.sess_prefix": "app1."}).read(sid) == (
        b'n|i:42;s|s:6:"h\xc3\xa9llo";')


def test_python_holds_the_lock_and_php_waits(memcached_server: MemcachedProcess,  # noqa: F811
                                             php_script: ScriptFactory) -> None:
    sid = new_sid()
    script = php_script(
        '$t = microtime(true); session_id($argv[1]); session_start();'
        'printf("%.3f\\n", microtime(true) - $t);'
        '$_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1;'
    )
    h = make(memcached_server.address)
    assert h.read(sid) == b""
    assert memcached_server.get(f"memc.sess.key.lock.{sid}", ).startswith(b"phpsess|")  # type: ignore[union-attr]
    php = subprocess.Popen(php_args(script, [sid], {"session.save_path": memcached_server.address, **waiting_ini()}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert php.poll() is None  # still waiting for our lock
        h.write(sid, b"n|i:1;")
        h.close()
        out, err = php.communicate(timeout=30)
    finally:
        if php.poll() is None:
            php.kill()
            php.communicate()
    assert php.returncode == 0 and err == b"" and b"Warning" not in out, (out, err)
    assert float(out) >= 0.4
    assert make(memcached_server.address).read(sid) == b"n|i:2;"  # PHP saw our write and added to it


def test_php_holds_the_lock_and_python_waits(memcached_server: MemcachedProcess,  # noqa: F811
                                             php_script: ScriptFactory) -> None:
    sid = new_sid()
    script = php_script(
        'session_id($argv[1]); session_start(); fwrite(STDERR, "locked\\n");'
        'usleep(600000); $_SESSION["by"] = "php";'
    )
    php = subprocess.Popen(php_args(script, [sid], {"session.save_path": memcached_server.address}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert php.stderr is not None and php.stderr.readline() == b"locked\n"
        assert memcached_server.get(f"memc.sess.key.lock.{sid}") == b"1"  # php-memcached's lock value
        with pytest.raises(LockTimeout) as exc:
            make(memcached_server.address, lock_timeout=0.1).read(sid)
        assert "held by a PHP request" in str(exc.value) and memcached_server.address in str(exc.value)
        h = make(memcached_server.address, lock_timeout=10)
        t0 = time.monotonic()
        assert h.read(sid) == b'by|s:3:"php";'
        assert 0.2 < time.monotonic() - t0 < 5
        h.write(sid, b'by|s:6:"python";')
        h.close()
        assert php.wait(10) == 0
    finally:
        if php.poll() is None:
            php.kill()
        out, err = php.communicate()
    assert err == b"" and out == b"", (out, err)


def test_php_gives_up_where_phpsess_raises(memcached_server: MemcachedProcess,  # noqa: F811
                                          php_script: ScriptFactory) -> None:
    """php-memcached's default wait: ~0.75 s, then session_start() fails with a warning.
    phpsess waits as long, then raises LockTimeout naming the setting."""
    sid = new_sid()
    h = make(memcached_server.address)
    h.read(sid)
    script = php_script('$t = microtime(true); session_id($argv[1]); var_dump(session_start());'
                        'printf("%.2f", microtime(true) - $t);')
    out = subprocess.run(php_args(script, [sid], {"session.save_path": memcached_server.address}),
                         capture_output=True, timeout=30)
    assert b"Unable to clear session lock record" in out.stdout and b"bool(false)" in out.stdout, out
    assert 0.6 < float(out.stdout.rsplit(b"\n", 1)[-1]) < 2.0
    t0 = time.monotonic()
    with pytest.raises(LockTimeout, match="memcached.sess_lock_retries = 0.75 s"):
        make(memcached_server.address).read(sid)
    assert 0.6 < time.monotonic() - t0 < 2.0
    h.close()


INCREMENT = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.memcached import MemcachedHandler
save_path, sid, n, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
handler = sys.argv[5] if len(sys.argv) > 5 else "php"
print("ready", file=sys.stderr, flush=True)
sys.stdin.readline()  # all processes start together
waited = 0.0
for i in range(n):
    h = MemcachedHandler(SessionConfig({"lock_timeout": 60, "memcached.sess_lock_wait_min": 2,
                                        "memcached.sess_lock_wait_max": 20, "serialize_handler": handler}))
    h.open(save_path, "PHPSESSID")
    data = h.read(sid)
    waited = max(waited, h.lock_info.waited)
    count = int(data[len(b"count|i:"):-1]) if data else 0
    time.sleep(hold)
    h.write(sid, b"count|i:%d;" % (count + 1))
    h.close()
print(waited)
"""

PHP_INCREMENT = (
    'fwrite(STDERR, "ready\\n"); fgets(STDIN); $waited = 0;'
    'for ($i = 0; $i < (int)$argv[2]; $i++) {'
    '  $t = microtime(true); session_id($argv[1]); if (!session_start()) exit(3);'
    '  $waited = max($waited, microtime(true) - $t);'
    '  $c = ($_SESSION["count"] ?? 0); usleep((int)($argv[3] * 1e6)); $_SESSION["count"] = $c + 1;'
    '  session_write_close();'
    '}'
    'echo $waited;'
)


def run_together(cmds: list[list[str]], timeout: float = 120) -> list[bytes]:
    """Start every command, wait for each to say ready on stderr, release them at once."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for cmd in cmds]
    try:
        for p in procs:
            assert p.stderr is not None and p.stderr.readline() == b"ready\n", p.args[:3]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0 and err == b"", (p.args[:3], out, err)
            outs.append(out)
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_ten_concurrent_increments_half_php_half_python_end_exact(memcached_server: MemcachedProcess,  # noqa: F811
                                                                  php_script: ScriptFactory) -> None:
    """Each holds the session 50 ms before writing: without one lock for both, most
    increments would be lost; every process (PHP and Python) has to wait for the others."""
    sid = new_sid()
    script = php_script(PHP_INCREMENT)
    php_cmd = php_args(script, [sid, "1", "0.05"], {"session.save_path": memcached_server.address,
                                                    **waiting_ini()})
    py_cmd = [sys.executable, "-c", INCREMENT, memcached_server.address, sid, "1", "0.05"]
    outs = run_together([php_cmd, py_cmd] * 5)
    assert memcached_server.get(f"memc.sess.key.{sid}") == b"count|i:10;"
    waits = [float(o) for o in outs]
    assert max(waits[0::2]) > 0.04 and max(waits[1::2]) > 0.04, waits  # both sides waited


def test_many_increments_from_php_and_python_end_exact(memcached_server: MemcachedProcess,  # noqa: F811
                                                       php_script: ScriptFactory) -> None:
    sid = new_sid()
    script = php_script(PHP_INCREMENT)
    php_cmd = php_args(script, [sid, "40", "0"], {"session.save_path": memcached_server.address, **waiting_ini()})
    py_cmd = [sys.executable, "-c", INCREMENT, memcached_server.address, sid, "40", "0"]
    run_together([php_cmd, py_cmd] * 3)
    assert memcached_server.get(f"memc.sess.key.{sid}") == b"count|i:240;"


HOLD_FOREVER = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.memcached import MemcachedHandler
h = MemcachedHandler(SessionConfig({"memcached.sess_lock_expire": int(sys.argv[3])}))
h.open(sys.argv[1], "PHPSESSID")
h.read(sys.argv[2])
print("locked", file=sys.stderr, flush=True)
time.sleep(600)
"""


def test_a_killed_python_holder_frees_the_session_after_its_lock_expiry(
    memcached_server: MemcachedProcess, php_script: ScriptFactory  # noqa: F811
) -> None:
    sid = new_sid()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOREVER, memcached_server.address, sid, "2"],
                              cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        assert holder.stderr is not None and holder.stderr.readline() == b"locked\n"
        killed = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    script = php_script('session_id($argv[1]); var_dump(session_start()); $_SESSION["n"] = 1;')
    out = subprocess.run(php_args(script, [sid], {"session.save_path": memcached_server.address, **waiting_ini()}),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == b"bool(true)\n", out
    assert 1.0 < time.monotonic() - killed < 4.5  # memcached's expiry has a 1 s granularity
    h = make(memcached_server.address, lock_timeout=5)
    assert h.read(sid) == b"n|i:1;"
    h.close()


def test_a_killed_php_holder_frees_the_session_after_its_lock_expiry(
    memcached_server: MemcachedProcess, php_script: ScriptFactory  # noqa: F811
) -> None:
    sid = new_sid()
    script = php_script('session_id($argv[1]); session_start(); fwrite(STDERR, "locked\\n"); sleep(600);')
    php = subprocess.Popen(php_args(script, [sid], {"session.save_path": memcached_server.address,
                                                    "memcached.sess_lock_expire": "2"}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert php.stderr is not None and php.stderr.readline() == b"locked\n"
        php.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        php.wait(10)
    finally:
        if php.poll() is None:
            php.kill()
        php.communicate()
    h = make(memcached_server.address, lock_timeout=10)
    assert h.read(sid) == b""
    assert 1.0 < time.monotonic() - killed < 4.5
    h.write(sid, b"n|i:1;")
    h.close()


def test_a_holder_whose_lock_expired_writes_nothing(memcached_server: MemcachedProcess) -> None:  # noqa: F811
    sid = new_sid()
    slow = make(memcached_server.address, **{"memcached.sess_lock_expire": 1})
    slow.read(sid)
    time.sleep(2.1)
    fast = make(memcached_server.address, lock_timeout=5)
    fast.read(sid)
    fast.write(sid, b"by|s:4:\"fast\";")
    with pytest.raises(SaveHandlerError, match="refusing to write session .* expired"):
        slow.write(sid, b"by|s:4:\"slow\";")
    slow.close()
    assert memcached_server.get(f"memc.sess.key.lock.{sid}", ).startswith(b"phpsess|")  # type: ignore[union-attr]
    fast.close()  # the slow one's close did not delete the fast one's lock
    assert memcached_server.get(f"memc.sess.key.{sid}") == b'by|s:4:"fast";'


@pytest.mark.parametrize(("layout", "ini"), [
    ("{0}, {1}:2, {2}", {}),
    ("{0},{1}:3,{2}:1", {"memcached.sess_consistent_hash_type": "ketama_weighted"}),
    ("{0},{1},{2}", {"memcached.sess_consistent_hash": "0"}),
], ids=["ketama", "ketama_weighted", "modulo"])
def test_sessions_and_locks_land_where_php_memcached_puts_them(
    memcached_trio: list[MemcachedProcess], php_script: ScriptFactory, layout: str, ini: dict[str, str],  # noqa: F811
) -> None:
    save_path = layout.format(*(s.address for s in memcached_trio))
    for s in memcached_trio:
        s.flush()
    sids = [new_sid() for _ in range(60)]
    script = php_script(
        'foreach (array_slice($argv, 1) as $sid) {'
        '  session_id($sid); session_start(); $_SESSION["sid"] = $sid; session_write_close();'
        '}'
        'session_id($argv[1]); session_start(); fwrite(STDERR, "locked\\n"); fgets(STDIN);'
    )
    php = subprocess.Popen(php_args(script, sids, {"session.save_path": save_path, **ini}),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert php.stderr is not None and php.stderr.readline() == b"locked\n"
        dist = Distribution(parse_save_path(save_path), consistent=ini.get("memcached.sess_consistent_hash") != "0",
                            weighted="ketama_weighted" in ini.values())
        by_port = {s.port: s for s in memcached_trio}
        # PHP's lock of the first session is on the server libmemcached picks for "lock.<id>"
        lock_at = [s.port for s in memcached_trio if s.get(f"memc.sess.key.lock.{sids[0]}") == b"1"]
        assert lock_at == [dist.server_for("lock." + sids[0]).port]
        assert php.stdin is not None
        php.stdin.write(b"\n")
        php.stdin.flush()
        assert php.wait(30) == 0
    finally:
        if php.poll() is None:
            php.kill()
        php.communicate()
    landed = {s.port: 0 for s in memcached_trio}
    for sid in sids:
        held = [s.port for s in memcached_trio if s.get(f"memc.sess.key.{sid}") is not None]
        assert held == [dist.server_for(sid).port], sid
        landed[held[0]] += 1
        h = make(save_path, **ini)
        assert h.read(sid) == b'sid|s:%d:"%s";' % (len(sid), sid.encode())
        h.close()
        assert by_port[held[0]].get(f"memc.sess.key.lock.{sid}") is None
    assert all(landed.values()), landed


def test_replicas_are_written_like_libmemcached_and_read_when_a_server_is_down(
    php_script: ScriptFactory,
) -> None:
    with MemcachedProcess() as a, MemcachedProcess() as b, MemcachedProcess() as c:
        save_path = f"{a.address},{b.address},{c.address}"
        ini = {"memcached.sess_number_of_replicas": "1"}
        sid = new_sid()
        script = php_script('session_id($argv[1]); session_start(); $_SESSION["by"] = "php";')
        out = subprocess.run(php_args(script, [sid], {"session.save_path": save_path, **ini}),
                             capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stderr == b"", out
        dist = Distribution(parse_save_path(save_path))
        primary, replica = dist.replicas(sid, 1)
        servers = {s.port: s for s in (a, b, c)}
        holders = sorted(p for p, s in servers.items() if s.get(f"memc.sess.key.{sid}") == b'by|s:3:"php";')
        assert holders == sorted([primary.port, replica.port])
        h = make(save_path, **ini)
        h.read(sid)
        h.write(sid, b'by|s:6:"python";')
        h.close()
        assert servers[replica.port].get(f"memc.sess.key.{sid}") == b'by|s:6:"python";'
        servers[primary.port].kill()
        h = make(save_path, **{**ini, "memcached.sess_locking": "0"})
        assert h.read(sid) == b'by|s:6:"python";'  # from the replica
        h.close()
        with pytest.raises(SaveHandlerError, match=f"memcached server 127.0.0.1:{primary.port}"):
            h.write(sid, b"x|i:1;")
