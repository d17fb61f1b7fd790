"""``phpsess show|locks|gc|destroy`` on the shared stores: a real memcached and a real Redis
Cluster (3 masters, 3 replicas), with locks held by phpsess and by PHP + php-memcached.
Runs memcached, redis-server, php and python processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.storage.base import SaveHandler, handler_class
from phpsess.tools import admin
from tests.integration.memcached_server import MemcachedProcess, memcached_server  # noqa: F401
from tests.integration.redis_cluster import RedisCluster, redis_cluster  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).absolute().parents[2]


@pytest.fixture(params=["memcached", "rediscluster"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(save_handler, save_path) of a store with a prefix unique to the test."""
    prefix = f"t{os.urandom(4).hex()}:"
    if request.param == "memcached":
        mc: MemcachedProcess = request.getfixturevalue("memcached_server")
        yield "memcached", mc.address
    else:
        rc: RedisCluster = request.getfixturevalue("redis_cluster")
        yield "rediscluster", rc.save_path + "&prefix=" + prefix


def handler(name: str, save_path: str, **ini: object) -> SaveHandler:
    h = handler_class(name)(SessionConfig({"serialize_handler": "php", **ini}))
    h.open(save_path, "PHPSESSID")
    return h


def new_sid() -> str:
    return ids.create_id(SessionConfig())


def test_show_decodes_a_stored_session_without_waiting_for_its_lock(
    store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, save_path = store
    sid = new_sid()
    h = handler(name, save_path)
    h.read(sid)
    h.write(sid, b'user|s:5:"alice";n|i:3;')
    h.close()
    holder = handler(name, save_path)
    holder.read(sid)  # a request holds the session: show reads it anyway, at once
    try:
        started = time.monotonic()
        assert admin.show(SessionConfig(), sid, json=True, save_path=save_path, save_handler=name) == 0
        assert time.monotonic() - started < 1.0
        assert json.loads(capsys.readouterr().out) == {"user": "alice", "n": 3}
        assert admin.show(SessionConfig(), sid, save_path=save_path, save_handler=name) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"# {sid} ({name} ") and '"user": "alice"' in out
        missing = new_sid()
        assert admin.show(SessionConfig(), missing, save_path=save_path, save_handler=name) == 1
        assert f"no session {missing}" in capsys.readouterr().err
    finally:
        holder.close()


def test_locks_lists_the_holder_its_expiry_and_waiters(store: tuple[str, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    name, save_path = store
    sid = new_sid()
    expire = {"memcached.sess_lock_expire": 30} if name == "memcached" else {}
    holder = handler(name, save_path, **expire)
    holder.read(sid)
    waiter_done = threading.Event()

    def wait() -> None:
        w = handler(name, save_path, lock_timeout=20)
        w.read(sid)
        w.close()
        waiter_done.set()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            assert admin.locks(SessionConfig(), save_path=save_path, json=True, save_handler=name) == 0
            found = [lock for lock in json.loads(capsys.readouterr().out) if lock["id"] == sid]
            if found and found[0]["waiters"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 1, found
        lock = found[0]
        assert lock["pid"] == os.getpid() and lock["waiters"] == 1, lock
        assert 0 < lock["expires_in_seconds"] <= 30 and f"|{os.getpid()}|" in lock["holder"], lock
        assert lock["host"] == socket.gethostname(), lock
        assert admin.locks(SessionConfig(), save_path=save_path, save_handler=name) == 0
        table = capsys.readouterr().out
        assert table.startswith("ID ") and sid in table and str(os.getpid()) in table
    finally:
        holder.close()
    assert waiter_done.wait(10)
    t.join(5)
    assert admin.locks(SessionConfig(), save_path=save_path, json=True, save_handler=name) == 0
    assert sid not in [lock["id"] for lock in json.loads(capsys.readouterr().out)]


def test_gc_has_nothing_to_do_and_destroy_deletes(store: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    name, save_path = store
    sid = new_sid()
    h = handler(name, save_path)
    h.read(sid)
    h.write(sid, b"n|i:1;")
    h.close()
    assert admin.gc(SessionConfig(), save_path=save_path, save_handler=name) == 0
    assert "expire by their TTL" in capsys.readouterr().out
    assert admin.destroy(SessionConfig(), [sid], save_path=save_path, save_handler=name) == 0
    assert capsys.readouterr().out == f"destroyed {sid}\n"
    assert handler(name, save_path).validate_id(sid) is False
    assert admin.destroy(SessionConfig(), [sid], save_path=save_path, save_handler=name) == 1
    assert "no such session" in capsys.readouterr().err


def test_locks_command_line_shows_a_lock_php_holds_on_memcached(memcached_server: MemcachedProcess,  # noqa: F811
                                                               tmp_path: Path) -> None:
    sid = new_sid()
    script = tmp_path / "hold.php"
    script.write_text('<?php session_id($argv[1]); session_start(); fwrite(STDERR, "locked\\n"); sleep(60);')
    cmd = [require("php"), "-n", "-d", "extension=igbinary.so", "-d", "extension=msgpack.so",
           "-d", "extension=memcached.so"]
    for k, v in {**PHP_BASE_INI, "session.save_handler": "memcached", "session.use_strict_mode": "0",
                 "session.save_path": memcached_server.address, "memcached.sess_lock_expire": "40"}.items():
        cmd += ["-d", f"{k}={v}"]
    php = subprocess.Popen([*cmd, str(script), sid], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert php.stderr is not None and php.stderr.readline() == b"locked\n"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-m", "phpsess", "locks", "--json", "--save-handler", "memcached",
                              "--save-path", memcached_server.address], capture_output=True, text=True,
                             timeout=60, env=env, cwd=ROOT)
        assert out.returncode == 0 and out.stderr == "", out
        (lock,) = [lock for lock in json.loads(out.stdout) if lock["id"] == sid]
        assert lock["holder"] == "1" and lock["pid"] is None and lock["host"] == ""
        assert 30 < lock["expires_in_seconds"] <= 40
        assert lock["key"] == f"memc.sess.key.lock.{sid}" and lock["server"] == memcached_server.address
    finally:
        php.kill()
        php.communicate()
