"""The redis save handler: save_path parsing (against PHP), phpredis's layout, and a lock
that holds, against a real redis-server on 127.0.0.1 started by the tests."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.errors import InvalidSessionId, LockBusy, LockTimeout, SaveHandlerError
from phpsess.storage.base import handler_class
from phpsess.storage.redis import PHPREDIS_RELEASE_SCRIPT, RedisHandler, lock_secret
from phpsess.core.redis_url import (
    DEFAULT_PREFIX,
    LockOptions,
    RedisServer,
    SavePathError,
    parse_save_path,
    pick_server,
)
from phpsess.core.superglobals import parse_query
from tests.integration.redis_server import RedisProcess, free_port, redis_server  # noqa: F401
from tests.phptools import run_php

ROOT = Path(__file__).absolute().parents[2]


# -- save_path: pure parsing ------------------------------------------------------------------


def test_parse_save_path_single_host_has_phpredis_defaults() -> None:
    (s,) = parse_save_path("tcp://127.0.0.1:6379")
    assert s == RedisServer(scheme="tcp", host="127.0.0.1", port=6379)
    assert (s.weight, s.database, s.timeout, s.read_timeout, s.prefix) == (1, -1, 86400.0, 0.0, DEFAULT_PREFIX)
    assert s.lock == LockOptions(enabled=True, expire=30.0, timeout=None, poll=0.005, refresh=False)
    assert s.address == "127.0.0.1:6379"


SAVE_PATHS = [
    ("host:6380", [("tcp", "host", 6380)]),
    ("tcp://h", [("tcp", "h", 6379)]),  # library.c: port 0 means 6379
    ("tcp://h:1, tcp://g:2\ttcp://f:3", [("tcp", "h", 1), ("tcp", "g", 2), ("tcp", "f", 3)]),
    (" ,tcp://h:1,,", [("tcp", "h", 1)]),
    ("unix:///run/redis.sock", [("unix", "/run/redis.sock", 0)]),
    ("unix:/run/redis.sock?database=1", [("unix", "/run/redis.sock", 0)]),
    ("/run/redis.sock", [("unix", "/run/redis.sock", 0)]),
    ("tls://h:6380", [("tls", "h", 6380)]),
    ("ssl://h:6380", [("tls", "h", 6380)]),
    ("tcp://[::1]:7000", [("tcp", "::1", 7000)]),
    ("tcp://user:pw@h:1", [("tcp", "h", 1)]),  # URL credentials are ignored by phpredis
]


@pytest.mark.parametrize(("save_path", "expected"), SAVE_PATHS)
def test_parse_save_path_forms(save_path: str, expected: list[tuple[str, str, int]]) -> None:
    assert [(s.scheme, s.host, s.port) for s in parse_save_path(save_path)] == expected


def test_parse_save_path_parameters() -> None:
    (s,) = parse_save_path(
        "tcp://h:1?weight=3&database=2&timeout=2.5&read_timeout=1.5&persistent=yes"
        "&persistent_id=x&retry_interval=100&prefix=APP%3A&auth=s3cret"
    )
    assert (s.weight, s.database, s.timeout, s.read_timeout) == (3, 2, 2.5, 1.5)
    assert (s.persistent, s.persistent_id, s.retry_interval) == (True, "x", 100)
    assert (s.prefix, s.user, s.password) == ("APP:", None, "s3cret")
    assert s.session_key("abc") == "APP:abc" and s.lock_key("abc") == "APP:abc_LOCK"


@pytest.mark.parametrize(
    ("query", "user", "password"),
    [
        ("auth=pw", None, "pw"),
        ("auth[]=u&auth[]=pw", "u", "pw"),
        ("auth[user]=u&auth[pass]=pw", "u", "pw"),
        ("auth[]=pw", None, "pw"),
        ("auth=pa#ss", None, "pa#ss"),  # the fragment is glued back onto the query
        ("auth[]=a&auth[]=b&auth[]=c", None, None),  # library.c: 1 or 2 elements only
    ],
)
def test_parse_save_path_auth(query: str, user: str | None, password: str | None) -> None:
    (s,) = parse_save_path("tcp://h:1?" + query)
    assert (s.user, s.password) == (user, password)


def test_parse_save_path_lock_parameters() -> None:
    (s,) = parse_save_path("tcp://h:1?lock_expire=5&lock_timeout=2.5&lock_poll=0.01&lock_refresh=1")
    assert s.lock == LockOptions(enabled=True, expire=5.0, timeout=2.5, poll=0.01, refresh=True)
    (s,) = parse_save_path("tcp://h:1?locking=0&lock_timeout=0")
    assert s.lock.enabled is False and s.lock.timeout == 0.0


@pytest.mark.parametrize(
    "save_path",
    [
        "",
        " , ",
        "localhost",  # PHP reads a path (a unix socket named "localhost")
        "127.0.0.1:6379?weight=2",  # PHP reads scheme "127.0.0.1": parameters need tcp://
        "redis://h:1",
        "tcp://h:1?weight=0",
        "tcp://h:1?weight=-2",
        "tcp://h:1?timeout=0",
        "tcp://h:1?timeout=-1",
        "tcp://:1",
        "tcp://h:99999",
        "tcp://h:1?lock_expire=0",
        "tcp://h:1?lock_timeout=-1",
        "unix://host/run/redis.sock",
    ],
)
def test_parse_save_path_refuses(save_path: str) -> None:
    with pytest.raises(SavePathError):
        parse_save_path(save_path)


PHP_QUERIES = [
    "a=1&b=2",
    "a.b=1&c d=2& lead=1&un[closed=3",
    "auth[]=u&auth[]=p&x[k]=v",
    "plus=a+b%2Bc&pct=%41%zz",
    "dup=1&dup=2&e&=f&[z]=1",
    "prefix=APP%3A&database=03&weight=2abc",
]


@pytest.mark.parametrize("query", PHP_QUERIES)
def test_parse_query_matches_php_parse_str(query: str) -> None:
    out = run_php(f"<?php parse_str({json.dumps(query)}, $r); echo json_encode($r);")
    assert out.returncode == 0, out.stderr
    # (JSON makes the integer keys of a PHP array strings on both sides)
    assert json.loads(json.dumps(parse_query(query))) == json.loads(out.stdout)


def test_phpredis_release_script_is_byte_identical_to_phpredis() -> None:
    # redis_session.c: LOCK_RELEASE_SHA_STR
    sha = hashlib.sha1(PHPREDIS_RELEASE_SCRIPT.encode()).hexdigest()
    assert sha == "b70c2384248f88e6b75b9f89241a180f856ad852"


# -- pick_server: phpredis's distribution --------------------------------------------------------


def test_pick_server_reads_first_four_bytes_little_endian_over_reversed_servers() -> None:
    a, b, c = parse_save_path("tcp://a:1?weight=1, tcp://b:1?weight=2, tcp://c:1?weight=3")
    servers = [a, b, c]
    # pool order is reversed (c, b, a) and slots are c:0-2, b:3-4, a:5
    for sid, want in [("\x00\x00\x00\x00xyz", c), ("\x02\x00\x00\x00", c), ("\x03\x00\x00\x00", b),
                      ("\x04\x00\x00\x00", b), ("\x05\x00\x00\x00", a), ("\x06\x00\x00\x00", c)]:
        assert pick_server(servers, sid) is want
    # "0000" = 0x30303030 = 808464432; % 6 = 0 -> c
    assert 808464432 % 6 == 0 and pick_server(servers, "0000abcd") is c


def test_pick_server_spreads_by_weight() -> None:
    servers = parse_save_path("tcp://a:1?weight=1, tcp://b:1?weight=3")
    cfg = SessionConfig({"sid_bits_per_character": "6"})
    rng = random.Random(1)
    hits = {"a": 0, "b": 0}
    for _ in range(4000):
        hits[pick_server(servers, ids.create_id(cfg, rng.randbytes)).host] += 1
    assert 0.2 < hits["a"] / 4000 < 0.3


def test_registry_names_the_redis_handler() -> None:
    assert handler_class("redis") is RedisHandler
    assert handler_class("REDIS") is RedisHandler


def test_lock_secret_starts_like_phpredis_and_is_unique() -> None:
    import socket

    a, b = lock_secret(), lock_secret()
    assert a.startswith(f"{socket.gethostname()}|{os.getpid()}|") and a != b


# -- against a real redis-server -------------------------------------------------------------------


@pytest.fixture
def url(redis_server: RedisProcess) -> str:  # noqa: F811
    """A save_path with short lock times, so the tests stay fast."""
    return redis_server.url + "?lock_expire=5&lock_timeout=2"


@pytest.fixture
def r(redis_server: RedisProcess) -> redis.Redis:  # noqa: F811
    """A plain client on the test server, to look at keys as phpredis would see them."""
    return redis.Redis(port=redis_server.port)


def make(save_path: str, **ini: object) -> RedisHandler:
    """An opened handler with the given session.* settings."""
    h = RedisHandler(SessionConfig(ini))
    h.open(save_path, "PHPSESSID")
    return h


@pytest.fixture
def sid() -> str:
    return ids.create_id(SessionConfig())


def test_read_of_absent_session_is_empty_and_write_reads_back(url: str, sid: str) -> None:
    h = make(url)
    assert h.read(sid) == b""
    h.write(sid, b"a|i:1;")
    h.close()
    h = make(url)
    assert h.read(sid) == b"a|i:1;"
    h.close()


def test_layout_is_phpredis_key_with_setex_gc_maxlifetime(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url, gc_maxlifetime=600)
    h.read(sid)
    h.write(sid, b"x|s:1:\"y\";")
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b'x|s:1:"y";'
    assert 598 <= r.ttl(f"PHPREDIS_SESSION:{sid}") <= 600
    h.close()


def test_binary_payload_round_trips_unchanged(url: str, sid: str) -> None:
    payload = bytes(range(256)) * 3
    h = make(url)
    h.read(sid)
    h.write(sid, payload)
    h.close()
    h = make(url)
    assert h.read(sid) == payload
    h.close()


def test_prefix_and_database_parameters(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    h = make(redis_server.url + "?prefix=APP%3A&database=3")
    h.read(sid)
    h.write(sid, b"v")
    db3 = redis.Redis(port=redis_server.port, db=3)
    assert db3.get(f"APP:{sid}") == b"v" and db3.exists(f"APP:{sid}_LOCK")
    h.close()
    assert not db3.exists(f"APP:{sid}_LOCK")


def test_unix_socket_save_path(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    h = make(redis_server.unix_url)
    h.read(sid)
    h.write(sid, b"u")
    h.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"u"


def test_gc_maxlifetime_is_capped_and_defaulted_like_phpredis(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url, gc_maxlifetime=2**40)
    h.read(sid)
    h.write(sid, b"v")
    h.close()
    assert r.ttl(f"PHPREDIS_SESSION:{sid}") > 2**31 - 10
    h = make(url, gc_maxlifetime=0)
    h.read(sid)
    h.write(sid, b"v")
    h.close()
    assert 1430 < r.ttl(f"PHPREDIS_SESSION:{sid}") <= 1440


def test_update_timestamp_is_an_expire_not_a_write(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url, gc_maxlifetime=100)
    h.read(sid)
    h.write(sid, b"old")
    h.close()
    h = make(url, gc_maxlifetime=900)
    h.read(sid)
    h.update_timestamp(sid, b"ignored-while-the-key-exists")
    h.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"old"
    assert r.ttl(f"PHPREDIS_SESSION:{sid}") > 800


def test_update_timestamp_rewrites_a_key_that_expired_during_the_request(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url)
    h.read(sid)
    r.delete(f"PHPREDIS_SESSION:{sid}")  # as if its TTL ran out mid-request
    h.update_timestamp(sid, b"kept")
    h.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"kept"


def test_destroy_deletes_and_unlocks_and_tolerates_absent(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url)
    h.destroy(sid)  # never existed: no error
    h.read(sid)
    h.write(sid, b"v")
    h.destroy(sid)
    assert not r.exists(f"PHPREDIS_SESSION:{sid}", f"PHPREDIS_SESSION:{sid}_LOCK")
    h.close()  # nothing held any more: a no-op
    other = make(url)
    assert other.read(sid) == b""
    other.close()


def test_gc_returns_zero(url: str) -> None:
    assert make(url).gc(1440) == 0


def test_validate_id_checks_existence(url: str, sid: str) -> None:
    h = make(url)
    assert h.validate_id(sid) is False
    h.read(sid)
    h.write(sid, b"v")
    h.close()
    assert h.validate_id(sid) is True
    assert h.validate_id("bad id") is False


def test_create_sid_is_fresh_and_follows_config(url: str) -> None:
    h = make(url, sid_length=40, sid_bits_per_character=6)
    sids = {h.create_sid() for _ in range(20)}
    assert len(sids) == 20
    assert all(len(s) == 40 and ids.is_valid_id(s) and not h.validate_id(s) for s in sids)


def test_invalid_ids_never_reach_redis(url: str) -> None:
    h = make(url)
    for bad in ("", "abc_LOCK", "a b", "x" * 257):
        with pytest.raises(InvalidSessionId):
            h.read(bad)
    with pytest.raises(InvalidSessionId):
        h.write("abc_LOCK", b"x")


def test_close_is_safe_when_nothing_is_open() -> None:
    h = RedisHandler()
    h.close()
    h.close()


def test_open_refuses_a_bad_save_path() -> None:
    with pytest.raises(SaveHandlerError) as exc:
        RedisHandler().open("redis://h:1", "PHPSESSID")
    assert exc.value.operation == "open" and isinstance(exc.value.__cause__, SavePathError)


# -- the lock -------------------------------------------------------------------------------------


def test_lock_is_held_from_read_to_close_with_phpredis_key(url: str, sid: str, r: redis.Redis) -> None:
    import socket

    h = make(url)
    h.read(sid)
    value = r.get(f"PHPREDIS_SESSION:{sid}_LOCK")
    assert value is not None and value.decode().startswith(f"{socket.gethostname()}|{os.getpid()}|")
    assert 4000 < r.pttl(f"PHPREDIS_SESSION:{sid}_LOCK") <= 5000  # lock_expire=5
    h.close()
    assert not r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")


def test_a_session_key_of_the_wrong_type_fails_the_read_and_leaves_no_lock(url: str, sid: str, r: redis.Redis) -> None:
    """Someone stored a hash under the session's key: a clear error naming the server, and the
    lock taken in the same round trip is given back at once (not left for lock_expire)."""
    r.hset(f"PHPREDIS_SESSION:{sid}", "a", "1")
    h = make(url)
    with pytest.raises(SaveHandlerError, match="cannot read session .* on redis server .*WRONGTYPE"):
        h.read(sid)
    assert not r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")
    assert r.type(f"PHPREDIS_SESSION:{sid}") == b"hash"  # and nothing of it was changed


def test_busy_lock_raises_lock_timeout_and_never_writes(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    holder = make(redis_server.url)
    holder.read(sid)
    holder.write(sid, b"holder")
    waiter = make(redis_server.url + "?lock_timeout=0.2")
    t0 = time.monotonic()
    with pytest.raises(LockTimeout) as exc:
        waiter.read(sid)
    assert 0.2 <= time.monotonic() - t0 < 1.0
    assert exc.value.sid == sid and exc.value.waited >= 0.2 and "held by" in str(exc.value)
    with pytest.raises(LockTimeout):
        waiter.write(sid, b"waiter")  # still no lock: nothing written
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"holder"
    holder.close()


def test_session_lock_timeout_setting_is_the_default_wait_bound(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    holder = make(redis_server.url)
    holder.read(sid)
    waiter = make(redis_server.url, lock_timeout=0.15)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        waiter.read(sid)
    assert 0.15 <= time.monotonic() - t0 < 1.0
    # the save_path parameter wins over the ini setting
    waiter = make(redis_server.url + "?lock_timeout=0.01", lock_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        waiter.read(sid)
    assert time.monotonic() - t0 < 1.0
    holder.close()


def test_lock_timeout_zero_in_save_path_waits_without_bound(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    holder = make(redis_server.url)
    holder.read(sid)
    waiter = make(redis_server.url + "?lock_timeout=0", lock_timeout=0.05)
    timer = threading.Timer(0.3, holder.close)
    timer.start()
    waiter.read(sid)  # longer than 0.05 s, no LockTimeout
    timer.join()
    assert waiter.lock_info.waited > 0.25
    waiter.close()


def test_lock_max_waiters_counts_subscribed_waiters(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    holder = make(redis_server.url)
    holder.read(sid)
    first = make(redis_server.url + "?lock_timeout=5")
    t = threading.Thread(target=first.read, args=(sid,))
    t.start()
    r = redis.Redis(port=redis_server.port)
    deadline = time.monotonic() + 5
    while r.pubsub_numsub(f"PHPREDIS_SESSION:{sid}_LOCK")[0][1] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    second = make(redis_server.url + "?lock_timeout=5", lock_max_waiters=1)
    with pytest.raises(LockBusy) as exc:
        second.read(sid)
    assert exc.value.waiters == 1 and exc.value.sid == sid
    holder.close()
    t.join(5)
    first.close()
    r.close()


def test_long_waits_are_logged_like_the_files_handler(
    redis_server: RedisProcess, sid: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    holder = make(redis_server.url)
    holder.read(sid)
    waiter = make(redis_server.url, lock_wait_log_ms=50)
    timer = threading.Timer(0.1, holder.close)
    timer.start()
    with caplog.at_level("WARNING", logger="phpsess.lock"):
        waiter.read(sid)
    timer.join()
    waiter.close()
    assert any(sid in rec.getMessage() and rec.name == "phpsess.lock" for rec in caplog.records)


def test_release_wakes_a_waiter_without_polling(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    holder = make(redis_server.url)
    holder.read(sid)
    waiter = make(redis_server.url + "?lock_poll=5&lock_timeout=10")  # polling alone would take 5 s
    got: list[float] = []

    def wait() -> None:
        waiter.read(sid)
        got.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    released = time.monotonic()
    holder.close()
    t.join(5)
    assert got and got[0] - released < 1.0  # (typically < 1 ms)
    assert 0.15 < waiter.lock_info.waited < 1.5
    waiter.close()


def test_phpredis_style_release_is_seen_by_the_poll(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    lock = f"PHPREDIS_SESSION:{sid}_LOCK"
    assert r.set(lock, "otherhost|4242", nx=True, px=10000)  # what phpredis stores
    waiter = make(redis_server.url + "?lock_poll=0.005&lock_timeout=5")
    done: list[float] = []
    t = threading.Thread(target=lambda: (waiter.read(sid), done.append(time.monotonic())))
    t.start()
    time.sleep(0.1)
    assert r.eval(PHPREDIS_RELEASE_SCRIPT, 1, lock, "otherhost|4242") == 1  # phpredis's release
    released = time.monotonic()
    t.join(5)
    assert done and done[0] - released < 1.0  # (typically ~ lock_poll)
    waiter.close()


def test_keyspace_notifications_wake_waiters_on_phpredis_release(sid: str) -> None:
    with RedisProcess(extra=("--notify-keyspace-events", "Kg")) as srv:
        r = redis.Redis(port=srv.port)
        lock = f"PHPREDIS_SESSION:{sid}_LOCK"
        r.set(lock, "otherhost|4242", nx=True, px=10000)
        waiter = make(srv.url + "?lock_poll=5&lock_timeout=10")
        done: list[float] = []
        t = threading.Thread(target=lambda: (waiter.read(sid), done.append(time.monotonic())))
        t.start()
        time.sleep(0.2)
        r.eval(PHPREDIS_RELEASE_SCRIPT, 1, lock, "otherhost|4242")
        released = time.monotonic()
        t.join(10)
        assert done and done[0] - released < 2.0  # polling alone would take 5 s
        waiter.close()
        r.close()


@pytest.mark.parametrize(
    ("rights", "signalled"),
    [((), False), (("&PHPREDIS_SESSION:*",), True), (("&PHPREDIS_SESSION:*", "&__keyspace@*"), True)],
    ids=["no-channels", "lock-channel", "all-channels"],
)
def test_waiters_still_work_when_acls_refuse_channels(
    redis_server: RedisProcess, sid: str, r: redis.Redis, rights: tuple[str, ...], signalled: bool  # noqa: F811
) -> None:
    # Redis 7 gives a new ACL user no pub/sub channels unless told: waiters fall back to polling
    user = f"user{len(rights)}{sid[:8]}"
    r.execute_command("ACL", "SETUSER", user, "on", ">pw", "resetchannels", "~*", "+@all", *rights)
    url = f"{redis_server.url}?auth[]={user}&auth[]=pw&lock_poll=1&lock_timeout=5"
    holder = make(url)
    holder.read(sid)
    waiter = make(url)
    released: list[float] = []

    def release() -> None:
        holder.close()
        released.append(time.monotonic())

    timer = threading.Timer(0.1, release)
    timer.start()
    waiter.read(sid)
    got = time.monotonic()
    timer.join()
    assert released and waiter.lock_info.waited > 0.05
    if signalled:
        assert got - released[0] < 0.5  # woken by the PUBLISH, not by the 1 s poll
    waiter.close()
    r.execute_command("ACL", "DELUSER", user)


def test_expired_holder_cannot_overwrite_the_next_owner(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    slow = make(redis_server.url + "?lock_expire=0.1")
    slow.read(sid)
    time.sleep(0.15)  # its lock expires
    nxt = make(redis_server.url)
    assert nxt.read(sid) == b""
    nxt.write(sid, b"next")
    with pytest.raises(SaveHandlerError) as exc:
        slow.write(sid, b"stale")
    assert exc.value.operation == "write" and "expired" in str(exc.value)
    slow.close()  # must not release the next owner's lock
    assert r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")
    nxt.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"next"


@pytest.mark.parametrize("operation", ["update_timestamp", "destroy"])
def test_expired_holder_cannot_touch_or_destroy(redis_server: RedisProcess, sid: str, r: redis.Redis, operation: str) -> None:  # noqa: F811
    seed = make(redis_server.url)
    seed.read(sid)
    seed.write(sid, b"data")
    seed.close()
    slow = make(redis_server.url + "?lock_expire=0.1")
    slow.read(sid)
    time.sleep(0.15)
    nxt = make(redis_server.url)
    nxt.read(sid)
    with pytest.raises(SaveHandlerError):
        if operation == "destroy":
            slow.destroy(sid)
        else:
            slow.update_timestamp(sid, b"data")
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"data"
    nxt.close()


# -- the end of a request: write and release in one round trip ---------------------------------


def _count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every batch the request path sends (one write, its replies read: one round trip)."""
    from phpsess.storage.redislink import Link

    sent = [0]
    exchange = Link._exchange

    def counting(self: Link, data: bytes, count: int) -> list[object]:
        sent[0] += 1
        return exchange(self, data, count)

    monkeypatch.setattr(Link, "_exchange", counting)
    return sent


@pytest.mark.parametrize("touch", [False, True])
def test_write_last_writes_and_releases_in_one_round_trip(
    url: str, sid: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, touch: bool
) -> None:
    warm = make(url)  # the scripts are loaded (EVALSHA finds them)
    warm.read(sid)
    warm.write_last(sid, b"a|i:1;", touch=False)
    sent = _count_round_trips(monkeypatch)
    h = make(url, gc_maxlifetime=600)
    assert h.read(sid) == b"a|i:1;"
    assert sent[0] == 1  # SET NX PX + GET
    waiter = make(url)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(waiter.read(sid)))
    t.start()
    time.sleep(0.1)  # it waits for our lock
    h.write_last(sid, b"a|i:1;" if touch else b"a|i:2;", touch=touch)
    t.join(5)
    assert sent[0] >= 2
    assert got == [b"a|i:1;" if touch else b"a|i:2;"]  # woken by the release, reads the write
    assert 590 <= r.ttl(f"PHPREDIS_SESSION:{sid}") <= 600
    h.close()  # nothing left to release: the waiter keeps its lock
    assert r.get(f"PHPREDIS_SESSION:{sid}_LOCK") is not None
    waiter.close()
    assert not r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")


def test_a_session_cycle_is_two_round_trips(url: str, sid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from phpsess import php
    from phpsess.session.context import request_context
    from phpsess.session.request import Request

    config = SessionConfig({"save_handler": "redis", "save_path": url, "gc_probability": 0})
    sent = [0]
    for n in range(3):
        if n == 2:
            sent = _count_round_trips(monkeypatch)
        req = Request(environ={"HTTP_COOKIE": f"PHPSESSID={sid}", "REQUEST_METHOD": "GET"}, config=config)
        with request_context(req):
            assert php.session_start()
            php.SESSION["n"] = php.SESSION.get("n", 0) + 1
            assert php.session_write_close()
    assert sent[0] == 2  # lock + read, then write + release
    h = make(url)
    assert h.read(sid) == b"n|i:3;"
    h.close()


@pytest.mark.parametrize("touch", [False, True])
def test_write_last_after_the_lock_expired_writes_nothing(
    redis_server: RedisProcess, sid: str, r: redis.Redis, touch: bool  # noqa: F811
) -> None:
    seed = make(redis_server.url)
    seed.read(sid)
    seed.write_last(sid, b"data", touch=False)
    slow = make(redis_server.url + "?lock_expire=0.1")
    slow.read(sid)
    time.sleep(0.15)  # its lock expires
    nxt = make(redis_server.url)
    nxt.read(sid)
    r.delete(f"PHPREDIS_SESSION:{sid}")  # (a touch would write an expired key again)
    with pytest.raises(SaveHandlerError) as exc:
        slow.write_last(sid, b"stale", touch=touch)
    assert "expired" in str(exc.value)
    assert not r.exists(f"PHPREDIS_SESSION:{sid}")
    slow.close()  # must not release the next owner's lock
    assert r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")
    nxt.close()


def test_store_release_script_answers_a_retry_that_finds_its_write_done(r: redis.Redis, sid: str) -> None:
    from phpsess.storage.rediscluster import STORE_RELEASE_SCRIPT

    lock, key = f"{{s:{sid}}}_LOCK", f"s:{sid}"
    r.set(lock, "me")
    assert r.eval(STORE_RELEASE_SCRIPT, 2, lock, key, "me", 100, "v", "", "") == 1
    assert r.get(key) == b"v" and not r.exists(lock)
    # the reply was lost; the retry finds the lock gone and its own data: done, not "lost"
    assert r.eval(STORE_RELEASE_SCRIPT, 2, lock, key, "me", 100, "v", "", "1") == 2
    # a first try, or another request's data, is a lost lock
    assert r.eval(STORE_RELEASE_SCRIPT, 2, lock, key, "me", 100, "v", "", "") == 0
    assert r.eval(STORE_RELEASE_SCRIPT, 2, lock, key, "me", 100, "w", "", "1") == 0
    assert r.get(key) == b"v"
    r.delete(key)


def test_a_persistent_connection_survives_a_server_restart(sid: str) -> None:
    with RedisProcess() as srv:
        url = srv.url + "?timeout=1&read_timeout=1"
        h = make(url)
        h.read(sid)
        h.write_last(sid, b"n|i:1;", touch=False)
        srv.kill()
        srv.start()  # same port: the idle connection is dead, the next request must not fail
        h = make(url)
        assert h.read(sid) == b""
        h.write_last(sid, b"n|i:2;", touch=False)
        h = make(url)
        assert h.read(sid) == b"n|i:2;"
        h.close()


def test_a_thread_waits_on_one_pubsub_connection_wait_after_wait(url: str, sid: str, r: redis.Redis) -> None:
    import queue

    lock = f"PHPREDIS_SESSION:{sid}_LOCK"
    releases: queue.Queue[RedisHandler | None] = queue.Queue()

    def releaser() -> None:  # one thread (one connection) releases every holder
        while (holder := releases.get()) is not None:
            time.sleep(0.1)
            holder.close()

    thread = threading.Thread(target=releaser)
    thread.start()

    def wait_once() -> None:
        holder = make(url)
        holder.read(sid)
        releases.put(holder)
        waiter = make(url)
        waiter.read(sid)  # woken by the release
        assert waiter.lock_info.waited > 0.05
        deadline = time.monotonic() + 2
        while r.pubsub_numsub(lock)[0][1] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.pubsub_numsub(lock)[0][1] == 0  # unsubscribed: no longer counted as a waiter
        waiter.close()

    try:
        wait_once()
        before = r.info("stats")["total_connections_received"]
        wait_once()
        wait_once()
        assert r.info("stats")["total_connections_received"] == before  # no new connection
    finally:
        releases.put(None)
        thread.join()


def test_lock_refresh_keeps_a_long_request_locked(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    long = make(redis_server.url + "?lock_expire=0.6&lock_refresh=1")
    long.read(sid)
    time.sleep(1.5)  # more than twice the lock's life
    with pytest.raises(LockTimeout):
        make(redis_server.url + "?lock_timeout=0.01").read(sid)
    long.write(sid, b"long")
    long.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"long"
    assert not r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")


def test_locking_can_be_turned_off_explicitly(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    a = make(redis_server.url + "?locking=0")
    b = make(redis_server.url + "?locking=0")
    a.read(sid)
    b.read(sid)  # no wait
    assert not r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")
    a.write(sid, b"a")
    b.write(sid, b"b")
    a.close()
    b.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"b"


def test_write_without_read_takes_the_lock_first(url: str, sid: str, r: redis.Redis) -> None:
    h = make(url)
    h.write(sid, b"w")
    assert r.exists(f"PHPREDIS_SESSION:{sid}_LOCK")
    h.close()
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"w"


def test_reading_another_id_releases_the_first(url: str, r: redis.Redis) -> None:
    a, b = ids.create_id(SessionConfig()), ids.create_id(SessionConfig())
    h = make(url)
    h.read(a)
    h.read(b)
    assert not r.exists(f"PHPREDIS_SESSION:{a}_LOCK") and r.exists(f"PHPREDIS_SESSION:{b}_LOCK")
    h.close()


# -- many processes ---------------------------------------------------------------------------------

INCREMENT = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.redis import RedisHandler
url, sid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", file=sys.stderr, flush=True)
sys.stdin.readline()  # start barrier
spans = []
for _ in range(n):
    h = RedisHandler(SessionConfig())
    h.open(url, "PHPSESSID")
    data = h.read(sid)
    start = time.monotonic()
    count = int(data[len(b"count|i:"):-1]) if data else 0
    time.sleep(0.0005)
    h.write(sid, b"count|i:%d;" % (count + 1))
    spans.append((start, time.monotonic()))
    h.close()
    time.sleep(0.001)  # a client's next request comes a round trip later, never at once
print(repr(spans))
"""


def run_children(code: str, args: list[list[str]], timeout: float = 60) -> list[str]:
    """Run ``code`` in one Python process per args list, all at once; return their stdouts.

    Each child says "ready" on stderr and waits for a line on stdin, so that all
    of them start working together (interpreter start-up takes a while).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *a], cwd=ROOT, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for a in args
    ]
    for p in procs:
        assert p.stderr is not None and p.stderr.readline() == b"ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    return outs


def test_thousand_increments_from_many_processes_end_at_exactly_1000(redis_server: RedisProcess, sid: str, r: redis.Redis) -> None:  # noqa: F811
    url = redis_server.url + "?lock_timeout=30"
    outs = run_children(INCREMENT, [[url, sid, "125"] for _ in range(8)])
    assert r.get(f"PHPREDIS_SESSION:{sid}") == b"count|i:1000;"
    # and no two processes were ever inside read..write at once
    per_child = [eval(out) for out in outs]  # noqa: S307 - our own children's repr
    spans = sorted(s for child in per_child for s in child)
    assert len(spans) == 1000
    # the children really competed: their first..last windows overlap
    windows = [(c[0][0], c[-1][1]) for c in per_child]
    assert max(w[0] for w in windows) < min(w[1] for w in windows)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start


HOLD_FOREVER = r"""
import sys, time
from phpsess.core.config import SessionConfig
from phpsess.storage.redis import RedisHandler
h = RedisHandler(SessionConfig())
h.open(sys.argv[1], "PHPSESSID")
h.read(sys.argv[2])
h.write(sys.argv[2], b"by|s:4:\"dead\";")
print("locked", flush=True)
time.sleep(60)
"""


def test_kill_9_holder_lock_expires_and_the_next_proceeds(redis_server: RedisProcess, sid: str) -> None:  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", HOLD_FOREVER, redis_server.url + "?lock_expire=0.6", sid],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"locked\n"
        locked_at = time.monotonic()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()
    h = make(redis_server.url + "?lock_timeout=5")
    assert h.read(sid) == b'by|s:4:"dead";'
    assert 0.3 < time.monotonic() - locked_at < 2.0
    h.close()


# -- the server goes away ---------------------------------------------------------------------------


def test_unreachable_server_is_a_clear_error_never_a_fresh_session(sid: str) -> None:
    port = free_port()
    h = make(f"tcp://127.0.0.1:{port}?timeout=1")
    for call in (lambda: h.read(sid), lambda: h.write(sid, b"x"), lambda: h.validate_id(sid),
                 h.create_sid, lambda: h.destroy(sid)):
        with pytest.raises(SaveHandlerError) as exc:
            call()
        assert f"127.0.0.1:{port}" in str(exc.value)
        assert isinstance(exc.value.__cause__, redis.RedisError)
        assert not isinstance(exc.value, LockTimeout)


def test_server_killed_and_restarted_during_a_run(sid: str) -> None:
    with RedisProcess() as srv:
        url = srv.url + "?timeout=1&read_timeout=1"

        def increment() -> None:
            h = make(url)
            try:
                data = h.read(sid)
                n = int(data[len(b"n|i:"):-1]) if data else 0
                h.write(sid, b"n|i:%d;" % (n + 1))
            finally:
                try:
                    h.close()
                except SaveHandlerError:
                    pass

        for _ in range(5):
            increment()
        holder = make(url)
        holder.read(sid)  # a request in flight when the server dies
        srv.kill()
        with pytest.raises(SaveHandlerError) as exc:
            holder.write(sid, b"lost")
        assert f"127.0.0.1:{srv.port}" in str(exc.value)
        with pytest.raises(SaveHandlerError):
            holder.close()
        holder.close()  # the failed close forgot the lock: now a no-op
        for _ in range(3):
            with pytest.raises(SaveHandlerError) as exc:
                increment()
            assert f"127.0.0.1:{srv.port}" in str(exc.value)
        srv.start()  # same port, empty (no persistence)
        for _ in range(5):
            increment()
        check = make(url)
        assert check.read(sid) == b"n|i:5;"
        check.close()


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    time.sleep(0)  # let finished threads go
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not leaked, leaked


def test_phpsess_locks_and_show_on_redis(url: str, sid: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`phpsess locks` lists the held lock with its holder's pid; `phpsess show` decodes."""
    import json as _json

    from phpsess.tools import admin

    config = SessionConfig({"save_handler": "redis", "save_path": url})
    h = make(url)
    h.read(sid)
    h.write(sid, b"a|i:1;")
    try:
        assert admin.locks(config, json=True) == 0
        held = [lock for lock in _json.loads(capsys.readouterr().out) if lock["id"] == sid]
        assert len(held) == 1 and held[0]["pid"] == os.getpid(), held
        assert admin.locks(config) == 0
        assert sid in capsys.readouterr().out
    finally:
        h.close()
    assert admin.show(config, sid, json=True) == 0
    assert _json.loads(capsys.readouterr().out) == {"a": 1}


def test_phpsess_locks_and_show_with_redis_down_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A dead server is an error naming it (exit 1, one line), never a traceback nor "no locked
    sessions"."""
    from phpsess.tools import admin

    config = SessionConfig({"save_handler": "redis", "save_path": "tcp://127.0.0.1:1?timeout=1"})
    assert admin.locks(config) == 1
    err = capsys.readouterr().err
    assert err.startswith("phpsess locks: cannot list the locks on redis server 127.0.0.1:1:") and err.count("\n") == 1
    assert admin.show(config, "abcdef0123456789abcdef0123456789") == 1
    err = capsys.readouterr().err
    assert "cannot read it from redis server 127.0.0.1:1" in err and "Traceback" not in err
