"""phpsess's redis handler and real PHP 8.2 + phpredis sharing one redis-server: the same
keys and bytes, and one lock that both respect. Runs php, python and redis-server processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest
import redis

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.errors import LockTimeout
from phpsess.storage.redis import RedisHandler
from phpsess.core.redis_url import parse_save_path, pick_server
from tests.integration.redis_server import RedisProcess, redis_server  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).absolute().parents[2]

#: phpredis needs igbinary loaded first (Debian builds it with igbinary support);
#: -n disables ini scanning, so both are loaded by hand
PHP_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=redis.so"]


def php_args(script: Path, args: Sequence[str], ini: Mapping[str, str]) -> list[str]:
    """The command line running ``script`` with phpredis as the session handler."""
    cmd = [require("php"), "-n", *PHP_EXTENSIONS]
    settings = dict(PHP_BASE_INI)
    settings.update({"session.save_handler": "redis", "session.use_strict_mode": "0"})
    settings.update(ini)
    for k, v in settings.items():
        cmd += ["-d", f'{k}="{v}"' if any(c in v for c in "=&?;") else f"{k}={v}"]
    return [*cmd, str(script), *args]


@pytest.fixture(scope="module", autouse=True)
def _phpredis_is_installed() -> None:
    out = subprocess.run([require("php"), "-n", *PHP_EXTENSIONS, "-r", 'echo phpversion("redis");'],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(f"php-redis (phpredis) does not load with php -n: {out.stderr} (run .ci/run)")


@pytest.fixture
def php_script(tmp_path: Path) -> Iterator["ScriptFactory"]:
    yield ScriptFactory(tmp_path)


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


def locking_ini(**extra: str) -> dict[str, str]:
    """phpredis with its lock on, and limits generous enough for the tests to wait."""
    ini = {
        "redis.session.locking_enabled": "1",
        "redis.session.lock_wait_time": "1000",  # µs between tries
        "redis.session.lock_retries": "10000",  # 10 s
        "redis.session.lock_expire": "20",
    }
    ini.update(extra)
    return ini


def make(save_path: str, **ini: object) -> RedisHandler:
    h = RedisHandler(SessionConfig(ini))
    h.open(save_path, "PHPSESSID")
    return h


def new_sid() -> str:
    return ids.create_id(SessionConfig())


def test_php_writes_python_reads_the_same_bytes(redis_server: RedisProcess, php_script: ScriptFactory) -> None:  # noqa: F811
    sid = new_sid()
    script = php_script(
        'session_id($argv[1]); session_start();'
        '$_SESSION = ["n" => 1, "s" => "héllo", "a" => [1, 2.5, true, null]];'
        'echo session_encode();'
    )
    out = subprocess.run(php_args(script, [sid], {"session.save_path": redis_server.url,
                                                   "session.gc_maxlifetime": "777"}),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    encoded = out.stdout
    assert encoded == b'n|i:1;s|s:6:"h\xc3\xa9llo";a|a:4:{i:0;i:1;i:1;d:2.5;i:2;b:1;i:3;N;}'
    h = make(redis_server.url)
    assert h.read(sid) == encoded
    h.close()
    r = redis.Redis(port=redis_server.port)
    assert 770 <= r.ttl(f"PHPREDIS_SESSION:{sid}") <= 777


def test_python_writes_php_reads(redis_server: RedisProcess, php_script: ScriptFactory) -> None:  # noqa: F811
    sid = new_sid()
    h = make(redis_server.url)
    h.read(sid)
    h.write(sid, b'n|i:41;s|s:6:"h\xc3\xa9llo";')
    h.close()
    script = php_script('session_id($argv[1]); session_start(); echo json_encode($_SESSION); $_SESSION["n"]++;')
    out = subprocess.run(php_args(script, [sid], {"session.save_path": redis_server.url, **locking_ini()}),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    assert json.loads(out.stdout) == {"n": 41, "s": "héllo"}
    h = make(redis_server.url)
    assert h.read(sid) == b'n|i:42;s|s:6:"h\xc3\xa9llo";'
    h.close()


def test_python_holds_the_lock_and_php_waits(redis_server: RedisProcess, php_script: ScriptFactory) -> None:  # noqa: F811
    sid = new_sid()
    script = php_script(
        '$t = microtime(true); session_id($argv[1]); session_start();'
        'printf("%.3f\\n", microtime(true) - $t);'
        '$_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1;'
    )
    h = make(redis_server.url)
    assert h.read(sid) == b""
    php = subprocess.Popen(php_args(script, [sid], {"session.save_path": redis_server.url, **locking_ini()}),
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
    assert php.returncode == 0 and err == b"" and b"Notice" not in out, (out, err)
    assert float(out) >= 0.4
    h = make(redis_server.url)
    assert h.read(sid) == b"n|i:2;"  # PHP saw our write and added to it
    h.close()


def test_php_holds_the_lock_and_python_waits(redis_server: RedisProcess, php_script: ScriptFactory) -> None:  # noqa: F811
    sid = new_sid()
    script = php_script(
        'session_id($argv[1]); session_start(); echo getmypid(), "\\n"; flush();'
        'usleep(600000); $_SESSION["by"] = "php";'
    )
    php = subprocess.Popen(php_args(script, [sid], {"session.save_path": redis_server.url, **locking_ini()}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert php.stdout is not None
        pid = int(php.stdout.readline())
        r = redis.Redis(port=redis_server.port)
        # phpredis's lock value: hostname|pid
        assert r.get(f"PHPREDIS_SESSION:{sid}_LOCK") == f"{socket.gethostname()}|{pid}".encode()
        with pytest.raises(LockTimeout) as exc:
            make(redis_server.url + "?lock_timeout=0.1").read(sid)
        assert f"{socket.gethostname()}|{pid}" in str(exc.value)
        h = make(redis_server.url + "?lock_timeout=10")
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
    assert err == b"" and b"Warning" not in out and b"Notice" not in out, (out, err)


INCREMENT = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.redis import RedisHandler
url, sid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", file=sys.stderr, flush=True)
sys.stdin.readline()  # all processes start together
first = last = 0.0
for i in range(n):
    h = RedisHandler(SessionConfig())
    h.open(url, "PHPSESSID")
    data = h.read(sid)
    first = first or time.time()
    count = int(data[len(b"count|i:"):-1]) if data else 0
    h.write(sid, b"count|i:%d;" % (count + 1))
    h.close()
    last = time.time()
print(first, last)
"""


def test_php_and_python_increments_interleave_without_loss(redis_server: RedisProcess, php_script: ScriptFactory) -> None:  # noqa: F811
    sid = new_sid()
    per_process = 100
    script = php_script(
        'fwrite(STDERR, "ready\\n"); fgets(STDIN); $first = 0;'
        'for ($i = 0; $i < (int)$argv[2]; $i++) {'
        '  session_id($argv[1]); session_start(); $first = $first ?: microtime(true);'
        '  $_SESSION["count"] = ($_SESSION["count"] ?? 0) + 1;'
        '  session_write_close();'
        '}'
        'echo $first, " ", microtime(true);'
    )
    php_cmd = php_args(script, [sid, str(per_process)], {"session.save_path": redis_server.url, **locking_ini()})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py_cmd = [sys.executable, "-c", INCREMENT, redis_server.url + "?lock_timeout=30", sid, str(per_process)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
             for cmd in [php_cmd, py_cmd] * 3]
    for p in procs:  # a start barrier: every interpreter is up before anyone increments
        # (on stderr: output on stdout would count as headers sent and make session_start() fail)
        assert p.stderr is not None and p.stderr.readline() == b"ready\n", p.args[:2]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and err == b"", (p.args[:2], out, err)
        first, last = map(float, out.split())
        spans.append((first, last))
    r = redis.Redis(port=redis_server.port)
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"count|i:%d;" % (6 * per_process)
    # PHP and Python really ran at the same time (spans of php and python processes overlap)
    php_spans, py_spans = spans[0::2], spans[1::2]
    assert any(p0 < q1 and q0 < p1 for p0, p1 in php_spans for q0, q1 in py_spans), spans


def test_several_servers_sessions_land_where_phpredis_puts_them(php_script: ScriptFactory) -> None:
    with RedisProcess() as a, RedisProcess() as b:
        save_path = f"{a.url}?weight=1, {b.url}?weight=2"
        sids = [ids.create_id(SessionConfig({"sid_bits_per_character": "6"})) for _ in range(40)]
        script = php_script(
            'foreach (array_slice($argv, 1) as $sid) {'
            '  session_id($sid); session_start(); $_SESSION["sid"] = $sid; session_write_close();'
            '}'
        )
        out = subprocess.run(php_args(script, sids, {"session.save_path": save_path}), capture_output=True, timeout=60)
        assert out.returncode == 0 and out.stderr == b"" and out.stdout == b"", out
        servers = parse_save_path(save_path)
        ports = {a.port: redis.Redis(port=a.port), b.port: redis.Redis(port=b.port)}
        landed = {a.port: 0, b.port: 0}
        for sid in sids:
            want = pick_server(servers, sid).port
            other = b.port if want == a.port else a.port
            assert ports[want].exists(f"PHPREDIS_SESSION:{sid}"), sid
            assert not ports[other].exists(f"PHPREDIS_SESSION:{sid}"), sid
            landed[want] += 1
            h = make(save_path)
            assert h.read(sid) == b'sid|s:%d:"%s";' % (len(sid), sid.encode())
            h.close()
        assert landed[a.port] > 0 and landed[b.port] > 0
        for c in ports.values():
            c.close()


FACADE = r"""
import sys
import phpsess
phpsess.ini_set("session.save_handler", "redis")
phpsess.ini_set("session.save_path", sys.argv[1])
phpsess.session_id(sys.argv[2])
phpsess.session_start()
phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
phpsess.SESSION["by"] = "python"
phpsess.session_write_close()
"""


def test_session_start_in_python_and_php_take_turns_on_one_session(
    redis_server: RedisProcess, php_script: ScriptFactory  # noqa: F811
) -> None:
    sid = new_sid()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = php_script(
        'session_id($argv[1]); session_start();'
        '$_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1; $_SESSION["by"] = "php";'
    )
    for turn in range(3):
        py = subprocess.run([sys.executable, "-c", FACADE, redis_server.url, sid], cwd=ROOT, env=env,
                            capture_output=True, timeout=60)
        assert py.returncode == 0 and py.stderr == b"", py
        php = subprocess.run(php_args(script, [sid], {"session.save_path": redis_server.url, **locking_ini()}),
                             capture_output=True, timeout=30)
        assert php.returncode == 0 and php.stderr == b"" and php.stdout == b"", php
    r = redis.Redis(port=redis_server.port)
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b'n|i:6;by|s:3:"php";'
