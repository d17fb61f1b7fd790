"""The memcached handler's round trips: a locked session cycle in as many as php-memcached's
(4), with the meta protocol; the classic commands for a server without it; a pooled
connection that a server restart closed. Runs memcached processes and a counting proxy."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Iterator

import pytest

from phpsess.core import ids
from phpsess.core.config import SessionConfig
from phpsess.errors import LockTimeout, SaveHandlerError
from phpsess.storage import memcached as mc_module
from phpsess.storage.memcached import MemcachedHandler, speaks_meta
from tests.integration.memcached_server import MemcachedProcess, memcached_server  # noqa: F401
from tests.integration.trip_proxy import RoundTripProxy

pytestmark = pytest.mark.slow


@pytest.fixture()
def proxy(memcached_server: MemcachedProcess) -> Iterator[RoundTripProxy]:  # noqa: F811
    with RoundTripProxy(memcached_server.port) as p:
        yield p


def make(save_path: str, **ini: object) -> MemcachedHandler:
    h = MemcachedHandler(SessionConfig(ini))
    h.open(save_path, "PHPSESSID")
    return h


def cycle(save_path: str, sid: str, payload: bytes) -> bytes:
    h = make(save_path)
    data = h.read(sid)
    h.write(sid, payload)
    h.close()
    return data


def test_a_locked_cycle_is_four_round_trips_as_php_memcacheds(proxy: RoundTripProxy) -> None:
    save_path = f"127.0.0.1:{proxy.port}"
    sid = ids.create_id(SessionConfig())
    cycle(save_path, sid, b"n|i:1;")  # the connection, and the meta protocol probe
    proxy.trips = 0
    for i in range(2, 12):
        assert cycle(save_path, sid, b"n|i:%d;" % i) == b"n|i:%d;" % (i - 1)
    assert proxy.trips == 40  # lock add + read, renew, set, compare-and-delete


def test_a_server_without_the_meta_protocol_gets_the_classic_commands(
        memcached_server: MemcachedProcess, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    key = (os.getpid(), "127.0.0.1", memcached_server.port)
    monkeypatch.setitem(mc_module._meta_capable, key, False)
    save_path = memcached_server.address
    sid = ids.create_id(SessionConfig())
    assert cycle(save_path, sid, b"n|i:1;") == b""
    assert cycle(save_path, sid, b"n|i:2;") == b"n|i:1;"
    holder = make(save_path, **{"memcached.sess_lock_expire": 1})
    holder.read(sid)
    with pytest.raises(LockTimeout):
        make(save_path, lock_timeout=0.2).read(sid)
    time.sleep(2.1)
    other = make(save_path, lock_timeout=5)
    other.read(sid)
    with pytest.raises(SaveHandlerError, match="refusing to write session .* expired"):
        holder.write(sid, b"n|i:99;")
    holder.close()
    other.write(sid, b"n|i:3;")
    other.close()
    assert memcached_server.get(f"memc.sess.key.{sid}") == b"n|i:3;"
    assert memcached_server.get(f"memc.sess.key.lock.{sid}") is None


def test_the_probe_tells_an_older_memcached() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def answer() -> None:
        conn, _ = srv.accept()
        with conn:
            while conn.recv(4096):
                conn.sendall(b"ERROR\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        from phpsess.core.memcached_url import MemcachedServer

        assert speaks_meta(MemcachedServer("127.0.0.1", port), 1.0) is False
    finally:
        srv.close()
        mc_module._meta_capable.pop((os.getpid(), "127.0.0.1", port), None)


def test_a_pooled_connection_closed_by_a_restart_is_replaced() -> None:
    with MemcachedProcess() as first:
        port = first.port
        save_path = first.address
        sid = ids.create_id(SessionConfig())
        cycle(save_path, sid, b"n|i:1;")
    with MemcachedProcess(port=port):
        assert cycle(save_path, sid, b"n|i:2;") == b""  # the restart lost the session, not the cycle
        assert cycle(save_path, sid, b"n|i:3;") == b"n|i:2;"


def test_the_last_write_and_the_release_are_one_round_trip(proxy: RoundTripProxy,
                                                           memcached_server: MemcachedProcess) -> None:  # noqa: F811
    save_path = f"127.0.0.1:{proxy.port}"
    sid = ids.create_id(SessionConfig())
    cycle(save_path, sid, b"n|i:1;")
    proxy.trips = 0
    for i in range(2, 12):
        h = make(save_path)
        assert h.read(sid) == b"n|i:%d;" % (i - 1)
        h.write_last(sid, b"n|i:%d;" % i)
        assert memcached_server.get(f"memc.sess.key.lock.{sid}") is None  # released already
        h.close()
    assert proxy.trips == 30  # lock add + read, renew, set + compare-and-delete
    assert memcached_server.get(f"memc.sess.key.{sid}") == b"n|i:11;"


def test_a_last_write_whose_lock_expired_writes_nothing_and_keeps_the_next_lock(
        memcached_server: MemcachedProcess) -> None:  # noqa: F811
    sid = ids.create_id(SessionConfig())
    slow = make(memcached_server.address, **{"memcached.sess_lock_expire": 1})
    slow.read(sid)
    time.sleep(2.1)
    fast = make(memcached_server.address, lock_timeout=5)
    fast.read(sid)
    with pytest.raises(SaveHandlerError, match="refusing to write session .* expired"):
        slow.write_last(sid, b"by|s:4:\"slow\";")
    slow.close()
    assert memcached_server.get(f"memc.sess.key.lock.{sid}").startswith(b"phpsess|")  # type: ignore[union-attr]
    assert memcached_server.get(f"memc.sess.key.{sid}") is None
    fast.write_last(sid, b"by|s:4:\"fast\";")
    fast.close()
    assert memcached_server.get(f"memc.sess.key.{sid}") == b'by|s:4:"fast";'
    assert memcached_server.get(f"memc.sess.key.lock.{sid}") is None
