"""phpsess's rediscluster handler on a real Redis Cluster (3 masters, 3 replicas): exact
counts under load, through a master's crash and a slot migration, and the same sessions
as PHP + phpredis's ``rediscluster`` handler. Runs python, php and redis-server processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as Client

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.core.rediscluster_url import key_slot, lock_key_for
from phpsess.errors import LockTimeout, SaveHandlerError
from phpsess.storage.rediscluster import RedisClusterHandler
from tests.integration.redis_cluster import RedisCluster, redis_cluster  # noqa: F401
from tests.phptools import PHP_BASE_INI, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).absolute().parents[2]
PHP_EXTENSIONS = ["-d", "extension=igbinary.so", "-d", "extension=redis.so"]


def make(save_path: str, **ini: object) -> RedisClusterHandler:
    h = RedisClusterHandler(SessionConfig(ini))
    h.open(save_path, "PHPSESSID")
    return h


def new_sid() -> str:
    return ids.create_id(SessionConfig())


@pytest.fixture
def client(redis_cluster: RedisCluster) -> Iterator[Client]:  # noqa: F811
    c = Client(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in redis_cluster.nodes if n.alive])
    yield c
    c.close()


def test_key_slot_crc16_is_cluster_c_s() -> None:
    import random

    from redis.crc import key_slot as redis_py_key_slot

    from phpsess.core.rediscluster_url import crc16, crc16_table_driven

    assert crc16(b"123456789") == crc16_table_driven(b"123456789") == 0x31C3  # the XMODEM check value
    rng = random.Random(20)
    for n in range(500):
        data = bytes(rng.randrange(256) for _ in range(n % 90))
        assert crc16(data) == crc16_table_driven(data)
        key = b"PHPREDIS_CLUSTER_SESSION:" + data.replace(b"{", b"(")
        assert key_slot(key) == redis_py_key_slot(key)


def test_lock_and_session_share_a_slot_and_keys_are_phpredis(redis_cluster: RedisCluster,  # noqa: F811
                                                            client: Client) -> None:
    sid = new_sid()
    h = make(redis_cluster.save_path)
    assert h.read(sid) == b""
    key, lock = f"PHPREDIS_CLUSTER_SESSION:{sid}", "{PHPREDIS_CLUSTER_SESSION:" + sid + "}_LOCK"
    assert lock_key_for(key) == lock and key_slot(key) == key_slot(lock) == client.keyslot(key)
    assert client.get(lock).startswith(b"%s|%d|" % (os.uname().nodename.encode(), os.getpid()))  # type: ignore[union-attr]
    h.write(sid, b"n|i:1;")
    h.close()
    assert client.get(key) == b"n|i:1;" and client.get(lock) is None
    assert 1430 <= client.ttl(key) <= 1440


def test_write_last_writes_releases_and_waits_in_one_round_trip(redis_cluster: RedisCluster,  # noqa: F811
                                                                 client: Client,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from phpsess.storage.redislink import Link

    sid = new_sid()
    key, lock = f"PHPREDIS_CLUSTER_SESSION:{sid}", "{PHPREDIS_CLUSTER_SESSION:" + sid + "}_LOCK"
    warm = make(redis_cluster.save_path)
    warm.read(sid)
    warm.write_last(sid, b"n|i:1;", touch=False)  # (the scripts are loaded on that master)
    sent = [0]
    exchange = Link._exchange

    def counting(self: Link, data: bytes, count: int) -> list[object]:
        sent[0] += 1
        return exchange(self, data, count)

    monkeypatch.setattr(Link, "_exchange", counting)
    h = make(redis_cluster.save_path)
    assert h.read(sid) == b"n|i:1;"
    h.write_last(sid, b"n|i:2;", touch=False)
    assert sent[0] == 2  # ACQUIRE + WAIT, then STORE_RELEASE + WAIT
    h.close()  # nothing left to release
    assert client.get(key) == b"n|i:2;" and client.get(lock) is None
    # its lock lost, nothing is written
    slow = make(redis_cluster.save_path + "&lock_expire=0.1")
    slow.read(sid)
    time.sleep(0.15)
    nxt = make(redis_cluster.save_path)
    nxt.read(sid)
    with pytest.raises(SaveHandlerError):
        slow.write_last(sid, b"stale", touch=False)
    assert client.get(key) == b"n|i:2;" and client.get(lock) is not None
    nxt.close()


INCREMENT = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.rediscluster import RedisClusterHandler
save_path, sid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", file=sys.stderr, flush=True)
sys.stdin.readline()
for i in range(n):
    h = RedisClusterHandler(SessionConfig({"serialize_handler": "php"}))
    h.open(save_path, "PHPSESSID")
    data = h.read(sid)
    count = int(data[len(b"count|i:"):-1]) if data else 0
    h.write(sid, b"count|i:%d;" % (count + 1))
    h.close()
    if i % 10 == 0:
        print(i, file=sys.stderr, flush=True)
print("done")
"""


def run_increments(save_path: str, sid: str, processes: int, per_process: int,
                   during: Callable[[], None] | None = None, after: int = 0) -> None:
    """``processes`` Python processes incrementing one session ``per_process`` times each;
    ``during()`` runs once the processes reported ``after`` increments in total."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENT, save_path, sid, str(per_process)], cwd=ROOT,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(processes)]
    progress = [0] * processes
    errors: list[bytes] = []

    def watch(i: int, p: subprocess.Popen[bytes]) -> None:
        assert p.stderr is not None
        for line in p.stderr:
            if line.strip().isdigit():
                progress[i] = int(line) + 1
            else:
                errors.append(line)

    watchers: list[threading.Thread] = []
    try:
        for p in procs:
            assert p.stderr is not None and p.stderr.readline() == b"ready\n"
        watchers = [threading.Thread(target=watch, args=(i, p), daemon=True) for i, p in enumerate(procs)]
        for w in watchers:
            w.start()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        if during is not None:
            deadline = time.monotonic() + 60
            while sum(progress) < after and time.monotonic() < deadline:
                time.sleep(0.01)
            during()
        # each stderr is its watcher's alone: it reads to the end (the process has exited)
        # before stdout is read here (communicate() would read and close stderr under it)
        for w, p in zip(watchers, procs):
            w.join(180)
            p.wait(timeout=30)
            assert p.stdout is not None
            out = p.stdout.read()
            assert p.returncode == 0 and out == b"done\n", (out, b"".join(errors)[-3000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for w in watchers:
            if w.ident is not None:  # (started)
                w.join(10)  # a dead process's stderr ends: its watcher too
        for p in procs:
            for pipe in (p.stdin, p.stdout, p.stderr):
                if pipe is not None:
                    pipe.close()
    assert not [e for e in errors if b"Traceback" in e or b"Error" in e], b"".join(errors)[-3000:]


def count_of(client: Client, sid: str) -> bytes | None:
    client.nodes_manager.initialize()
    return client.get(f"PHPREDIS_CLUSTER_SESSION:{sid}")  # type: ignore[no-any-return]


def test_thousand_increments_from_eight_processes_end_exact(redis_cluster: RedisCluster,  # noqa: F811
                                                            client: Client) -> None:
    sid = new_sid()
    run_increments(redis_cluster.save_path, sid, 8, 125)
    assert count_of(client, sid) == b"count|i:1000;"


def test_thousand_increments_end_exact_while_the_master_crashes_and_fails_over(
    redis_cluster: RedisCluster, client: Client  # noqa: F811
) -> None:
    sid = new_sid()
    slot = key_slot(f"PHPREDIS_CLUSTER_SESSION:{sid}")
    before = redis_cluster.master_of_slot(slot).port
    moved: list[tuple[int, int]] = []
    run_increments(redis_cluster.save_path, sid, 8, 125,
                   during=lambda: moved.append(redis_cluster.fail_over(slot, crash=True)), after=250)
    assert moved and moved[0][0] == before and redis_cluster.master_of_slot(slot).port == moved[0][1]
    assert count_of(client, sid) == b"count|i:1000;"


def test_thousand_increments_end_exact_while_the_slot_migrates(redis_cluster: RedisCluster,  # noqa: F811
                                                               client: Client) -> None:
    sid = new_sid()
    slot = key_slot(f"PHPREDIS_CLUSTER_SESSION:{sid}")
    moved: list[tuple[int, int]] = []
    run_increments(redis_cluster.save_path, sid, 8, 125,
                   during=lambda: moved.append(redis_cluster.migrate_slot(slot, pause=0.2)), after=250)
    assert moved and redis_cluster.master_of_slot(slot).port == moved[0][1] != moved[0][0]
    assert count_of(client, sid) == b"count|i:1000;"


def test_the_lock_survives_a_crash_of_its_master(redis_cluster: RedisCluster, client: Client) -> None:  # noqa: F811
    """WAIT after SET: the promoted replica has the lock, so nobody else gets the session
    while its holder lives; the holder then writes to the new master and releases."""
    sid = new_sid()
    slot = key_slot(f"PHPREDIS_CLUSTER_SESSION:{sid}")
    holder = make(redis_cluster.save_path)
    assert holder.read(sid) == b""
    redis_cluster.fail_over(slot, crash=True)
    with pytest.raises(LockTimeout):
        make(redis_cluster.save_path, lock_timeout=0.3).read(sid)
    holder.write(sid, b"by|s:6:\"holder\";")
    holder.close()
    other = make(redis_cluster.save_path, lock_timeout=5)
    assert other.read(sid) == b'by|s:6:"holder";'
    other.close()


# -- PHP + phpredis's rediscluster handler -------------------------------------------------------


def php_args(script: Path, args: Sequence[str], ini: Mapping[str, str]) -> list[str]:
    cmd = [require("php"), "-n", *PHP_EXTENSIONS]
    settings = dict(PHP_BASE_INI)
    settings.update({"session.save_handler": "rediscluster", "session.use_strict_mode": "0"})
    settings.update(ini)
    for k, v in settings.items():
        cmd += ["-d", f'{k}="{v}"' if any(c in v for c in "=&?;[]") else f"{k}={v}"]
    return [*cmd, str(script), *args]


def test_php_and_python_read_and_write_the_same_sessions(redis_cluster: RedisCluster,  # noqa: F811
                                                         tmp_path: Path, client: Client) -> None:
    sids = [new_sid() for _ in range(12)]
    script = tmp_path / "php.php"
    script.write_text(
        "<?php\n"
        'foreach (array_slice($argv, 1) as $sid) {'
        '  session_id($sid); session_start(); $_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1;'
        '  $_SESSION["php"] = "héllo"; session_write_close();'
        '}'
    )
    out = subprocess.run(php_args(script, sids, {"session.save_path": redis_cluster.save_path,
                                                 "session.gc_maxlifetime": "777"}),
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b"", out
    for sid in sids:  # spread over the masters, where phpredis put them
        assert 770 <= client.ttl(f"PHPREDIS_CLUSTER_SESSION:{sid}") <= 777
        h = make(redis_cluster.save_path)
        assert h.read(sid) == b'n|i:1;php|s:6:"h\xc3\xa9llo";'
        h.write(sid, b'n|i:2;php|s:6:"h\xc3\xa9llo";py|b:1;')
        h.close()
    assert len({client.keyslot(f"PHPREDIS_CLUSTER_SESSION:{s}") for s in sids}) == len(sids)
    out = subprocess.run(php_args(script, sids, {"session.save_path": redis_cluster.save_path}),
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stderr == b"", out
    for sid in sids:
        assert client.get(f"PHPREDIS_CLUSTER_SESSION:{sid}") == b'n|i:3;php|s:6:"h\xc3\xa9llo";py|b:1;'


def test_php_waits_for_nothing_phpsess_waits_for_php_never(redis_cluster: RedisCluster,  # noqa: F811
                                                           tmp_path: Path, client: Client) -> None:
    """phpredis's cluster handler takes no lock: a PHP request runs while phpsess holds the
    session (docs/redis.md says so), and phpsess's fenced write still lands."""
    sid = new_sid()
    h = make(redis_cluster.save_path)
    h.read(sid)
    script = tmp_path / "php.php"
    script.write_text('<?php session_id($argv[1]); $t = microtime(true); session_start();'
                      'printf("%.3f", microtime(true) - $t); $_SESSION["by"] = "php";')
    out = subprocess.run(php_args(script, [sid], {"session.save_path": redis_cluster.save_path}),
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and float(out.stdout) < 0.5, out
    h.write(sid, b'by|s:6:"python";')
    h.close()
    assert client.get(f"PHPREDIS_CLUSTER_SESSION:{sid}") == b'by|s:6:"python";'


def test_an_unreachable_cluster_fails_naming_its_seeds() -> None:
    h = make("seed[]=127.0.0.1:1&seed[]=127.0.0.1:2&timeout=0.2&retry_timeout=0.2")
    with pytest.raises(SaveHandlerError) as info:
        h.read(new_sid())
    assert "127.0.0.1:1" in str(info.value) and "rediscluster save handler" in str(info.value)
    assert isinstance(info.value, SaveHandlerError)
    assert isinstance(info.value.__cause__, (redis.RedisError, redis.exceptions.RedisClusterException))
