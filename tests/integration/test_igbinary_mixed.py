"""Sessions stored with ``session.serialize_handler = igbinary`` shared by real PHP 8.2
(+ php-igbinary, phpredis, php-memcached) and phpsess: concurrent increments from both
sides end exact on the files, redis and memcached handlers, and the stored bytes are
igbinary's. Runs php, python, redis-server and memcached processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from phpsess.core import igbinary
from tests.integration.memcached_server import MemcachedProcess, memcached_server  # noqa: F401
from tests.integration.redis_server import RedisProcess, redis_server  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).absolute().parents[2]
PHP_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=msgpack.so", "-d", "extension=memcached.so",
                  "-d", "extension=redis.so"]
PROCESSES = 3  # of each language
PER_PROCESS = 25

PHP_INCREMENT = (
    '<?php fwrite(STDERR, "ready\\n"); fgets(STDIN);'
    'for ($i = 0; $i < (int)$argv[2]; $i++) {'
    '  session_id($argv[1]); if (!session_start()) exit(3);'
    '  $_SESSION["count"] = ($_SESSION["count"] ?? 0) + 1; $_SESSION["by"][] = "php";'
    '  $_SESSION["by"] = array_slice($_SESSION["by"], -3);'
    '  session_write_close();'
    '}'
)

PY_INCREMENT = r"""
import sys, warnings
warnings.simplefilter("error")
import phpsess
from phpsess import SESSION
handler, save_path, sid, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print("ready", file=sys.stderr, flush=True)
sys.stdin.readline()
for i in range(n):
    phpsess.ini_set("session.save_handler", handler)
    phpsess.ini_set("session.save_path", save_path)
    phpsess.ini_set("session.serialize_handler", "igbinary")
    phpsess.ini_set("session.lock_timeout", "60")
    phpsess.ini_set("session.use_strict_mode", "0")
    phpsess.ini_set("session.gc_probability", "0")
    phpsess.session_id(sid)
    assert phpsess.session_start()
    SESSION["count"] = SESSION.get("count", 0) + 1
    by = SESSION.get("by")  # a PHPArray (session.php_arrays): its values, as PHP's foreach sees them
    writers = list(by.values()) if by is not None else []
    SESSION["by"] = (writers + ["python"])[-3:]  # a PHP list, as array_slice() makes
    phpsess.session_write_close()
"""

PHP_READ = '<?php session_id($argv[1]); session_start(); echo $_SESSION["count"];'

STORES = ["files", "redis", "memcached"]


@pytest.fixture(scope="module", autouse=True)
def _php_extensions_load() -> None:
    out = subprocess.run([require("php"), "-n", *PHP_EXTENSIONS, "-r",
                          'echo phpversion("igbinary"), phpversion("redis"), phpversion("memcached");'],
                         capture_output=True, text=True)
    if out.returncode != 0 or out.stderr:
        pytest.fail(f"php-igbinary, php-redis and php-memcached must load with php -n: {out.stderr}")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    name: str = request.param
    if name == "files":
        d = tmp_path / "sessions"
        d.mkdir(mode=0o700)
        yield name, str(d), {}
    elif name == "redis":
        srv: RedisProcess = request.getfixturevalue("redis_server")
        yield name, srv.url, {"redis.session.locking_enabled": "1", "redis.session.lock_wait_time": "1000",
                              "redis.session.lock_retries": "60000", "redis.session.lock_expire": "30"}
    else:
        mc: MemcachedProcess = request.getfixturevalue("memcached_server")
        yield name, mc.address, {"memcached.sess_lock_wait_min": "1", "memcached.sess_lock_wait_max": "10",
                                 "memcached.sess_lock_retries": "6000", "memcached.sess_lock_expire": "30"}


def php_cmd(script: Path, handler: str, save_path: str, extra: dict[str, str], *args: str) -> list[str]:
    cmd = [require("php"), "-n", *PHP_EXTENSIONS]
    ini = dict(PHP_BASE_INI)
    ini.update({"session.save_handler": handler, "session.save_path": save_path,
                "session.serialize_handler": "igbinary", "session.use_strict_mode": "0"})
    ini.update(extra)
    for k, v in ini.items():
        cmd += ["-d", f"{k}={v}"]
    return [*cmd, str(script), *args]


def raw_bytes(name: str, save_path: str, sid: str) -> bytes | None:
    """The stored session as the store holds it."""
    if name == "files":
        return (Path(save_path) / f"sess_{sid}").read_bytes()
    if name == "redis":
        import redis

        port = int(save_path.rsplit(":", 1)[1])
        with redis.Redis(port=port) as r:
            return r.get(f"PHPREDIS_SESSION:{sid}")  # type: ignore[no-any-return]
    import socket

    host, _, port_s = save_path.partition(":")
    with socket.create_connection((host, int(port_s)), timeout=2) as s:
        f = s.makefile("rwb")
        f.write(f"get memc.sess.key.{sid}\r\n".encode())
        f.flush()
        head = f.readline().split()
        return None if head[0] == b"END" else f.read(int(head[3]) + 2)[:-2]


def test_php_and_python_increments_on_igbinary_sessions_end_exact(
    store: tuple[str, str, dict[str, str]], tmp_path: Path
) -> None:
    name, save_path, php_ini = store
    sid = "igb" + os.urandom(12).hex()
    inc = tmp_path / "inc.php"
    inc.write_text(PHP_INCREMENT)
    php = php_cmd(inc, name, save_path, php_ini, sid, str(PER_PROCESS))
    py = [sys.executable, "-c", PY_INCREMENT, name, save_path, sid, str(PER_PROCESS)]
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_INTERFACE", "PHPSESS_INI")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for cmd in [php, py] * PROCESSES]
    try:
        for p in procs:
            assert p.stderr is not None and p.stderr.readline() == b"ready\n", p.args[:3]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out == b"" and err == b"", (p.args[:3], out, err[-2000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    total = 2 * PROCESSES * PER_PROCESS
    data = raw_bytes(name, save_path, sid)
    assert data is not None and data.startswith(b"\x00\x00\x00\x02"), data  # igbinary's header
    value = igbinary.decode_session(data)
    assert value["count"] == total and set(value["by"]) <= {"php", "python"}, value
    assert igbinary.encode_session(value) == data  # phpsess writes back PHP's bytes
    read = tmp_path / "read.php"
    read.write_text(PHP_READ)
    out = subprocess.run(php_cmd(read, name, save_path, php_ini, sid), capture_output=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stderr == b"" and out.stdout == str(total).encode(), out
