"""The save handler contract: what every handler in conftest.BACKENDS must do.

Handler-specific quirks live in test_files.py (and test_redis.py).  "Another
request" is a forked process for storage shared between processes (a thread for
the process-local memory handler).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

import pytest

from phpsess.core import ids
from phpsess.core.config import SAVE_HANDLERS, SessionConfig
from phpsess.errors import InvalidSessionId, LockBusy, LockTimeout, SaveHandlerError
from phpsess.storage.base import SaveHandler, handler_class
from phpsess.storage.memory import MemoryHandler, MemoryStore

from .conftest import SID, SID2, Channel, Ctx

PAYLOAD = b'user|s:5:"alice";n|i:3;'


def test_registry_resolves_the_handler_by_name(ctx: Ctx) -> None:
    cls = handler_class(ctx.backend.name.upper())
    assert cls.name == ctx.backend.name  # type: ignore[attr-defined]
    assert ctx.backend.name in SAVE_HANDLERS


def test_read_of_a_missing_id_returns_empty_bytes(handler: SaveHandler) -> None:
    assert handler.read(SID) == b""
    handler.close()


def test_write_then_read_in_another_request_round_trips(ctx: Ctx) -> None:
    h = ctx.make()
    assert h.read(SID) == b""
    h.write(SID, PAYLOAD)
    h.close()
    h2 = ctx.make()
    assert h2.read(SID) == PAYLOAD
    h2.close()


@pytest.mark.parametrize(
    "second",
    [b"", b"x", PAYLOAD[:-3] + b"99;", PAYLOAD + b'more|s:3:"abc";', bytes(range(256)) * 20],
    ids=["empty", "shorter", "same-length", "longer", "binary-multipage"],
)
def test_overwrite_stores_exactly_the_new_bytes(ctx: Ctx, second: bytes) -> None:
    h = ctx.make()
    h.read(SID)
    h.write(SID, PAYLOAD)
    h.close()
    h = ctx.make()
    h.read(SID)
    h.write(SID, second)
    h.close()
    h = ctx.make()
    assert h.read(SID) == second
    h.close()


def test_write_without_read_stores_the_data(ctx: Ctx) -> None:
    h = ctx.make()
    h.write(SID, PAYLOAD)
    h.close()
    assert ctx.make().read(SID) == PAYLOAD


def test_reading_twice_in_one_request_returns_the_current_data(handler: SaveHandler) -> None:
    handler.read(SID)
    handler.write(SID, PAYLOAD)
    assert handler.read(SID) == PAYLOAD
    handler.close()


def test_close_is_safe_when_nothing_is_open(handler: SaveHandler) -> None:
    handler.close()
    handler.close()


def test_sessions_are_independent(ctx: Ctx) -> None:
    h = ctx.make()
    h.write(SID, b"a|i:1;")
    h.write(SID2, b"b|i:2;")  # moves the lock to SID2, as PHP's handler does
    h.close()
    h = ctx.make()
    assert (h.read(SID), h.read(SID2)) == (b"a|i:1;", b"b|i:2;")
    h.close()


def test_destroy_deletes_and_is_idempotent(ctx: Ctx) -> None:
    h = ctx.make()
    h.read(SID)
    h.write(SID, PAYLOAD)
    h.destroy(SID)  # releases the lock too
    h.destroy(SID)
    h.destroy(SID2)  # never existed
    h.close()
    h2 = ctx.make()
    assert not h2.validate_id(SID)
    assert h2.read(SID) == b""
    h2.close()


def test_destroy_without_read_deletes(ctx: Ctx) -> None:
    h = ctx.make()
    h.write(SID, PAYLOAD)
    h.close()
    h2 = ctx.make()
    h2.destroy(SID)
    assert not h2.validate_id(SID)


def test_validate_id_is_true_only_for_stored_ids(ctx: Ctx) -> None:
    h = ctx.make()
    assert not h.validate_id(SID)
    h.write(SID, PAYLOAD)
    h.close()
    assert ctx.make().validate_id(SID)


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_create_sid_has_the_configured_length_and_alphabet(ctx: Ctx, bits: int) -> None:
    h = ctx.make(sid_length=40, sid_bits_per_character=bits)
    made = {h.create_sid() for _ in range(50)}
    assert len(made) == 50
    for sid in made:
        assert len(sid) == 40
        assert set(sid) <= set(ids.ALPHABET[: 1 << bits])
        assert not h.validate_id(sid)


def test_create_sid_skips_ids_that_exist(ctx: Ctx) -> None:
    h = ctx.make()
    h.random_bytes = lambda n: bytes(n)  # type: ignore[attr-defined]
    taken = h.create_sid()
    assert taken == "0" * 32
    h.write(taken, b"x|i:1;")
    h.close()
    draws = iter([bytes(32), bytes(32), b"\x11" * 32])
    h.random_bytes = lambda n: next(draws)[:n]  # type: ignore[attr-defined]
    assert h.create_sid() == "1" * 32


def test_create_sid_gives_up_after_four_collisions(ctx: Ctx) -> None:
    h = ctx.make()
    h.random_bytes = lambda n: bytes(n)  # type: ignore[attr-defined]
    sid = h.create_sid()
    h.write(sid, b"x|i:1;")
    h.close()
    with pytest.raises(SaveHandlerError):
        h.create_sid()


def test_update_timestamp_keeps_the_data_and_refreshes_it(ctx: Ctx) -> None:
    h = ctx.make()
    h.read(SID)
    h.write(SID, PAYLOAD)
    h.close()
    ctx.age(h, SID, 5000)
    h = ctx.make()
    h.read(SID)
    h.update_timestamp(SID, PAYLOAD)
    h.close()
    if ctx.backend.gc_deletes:
        assert ctx.make().gc(1440) == 0
    assert ctx.make().read(SID) == PAYLOAD


def test_update_timestamp_of_a_missing_id_writes_the_data(ctx: Ctx) -> None:
    h = ctx.make()
    h.update_timestamp(SID, PAYLOAD)
    h.close()
    assert ctx.make().read(SID) == PAYLOAD


def test_gc_removes_expired_sessions_and_keeps_fresh_ones(ctx: Ctx) -> None:
    if not ctx.backend.gc_deletes:
        pytest.skip(f"{ctx.backend.name} expires sessions by itself")
    h = ctx.make()
    h.write(SID, b"old|b:1;")
    h.write(SID2, b"new|b:1;")
    h.close()
    ctx.age(h, SID, 2000)
    assert ctx.make().gc(1440) == 1
    h = ctx.make()
    assert not h.validate_id(SID)
    assert h.validate_id(SID2)


# -- locking: another request waits ----------------------------------------------------


def _read_and_report(ctx: Ctx, sid: str, **settings: Any) -> Any:
    def run(chan: Channel) -> Any:
        h = ctx.make(**settings)
        h.validate_id(SID + "x")  # connected (a cluster's slot map read) before the clock starts
        chan.send(("started", time.monotonic()))
        data = h.read(sid)
        got = time.monotonic()
        h.close()
        return (got, data, h.lock_info.waited)

    return run


def test_lock_excludes_another_request_until_close(ctx: Ctx) -> None:
    h = ctx.make()
    h.read(SID)
    peer = ctx.peer(_read_and_report(ctx, SID))
    assert peer.recv()[0] == "started"
    time.sleep(0.2)
    assert not peer.chan.poll(0)  # still blocked in read
    h.write(SID, PAYLOAD)
    released = time.monotonic()
    h.close()
    got, data, waited = peer.result()
    assert got >= released
    assert data == PAYLOAD
    assert waited >= 0.15


def test_uncontended_read_reports_no_wait(handler: SaveHandler) -> None:
    handler.read(SID)
    assert handler.lock_info.waited == 0.0
    assert handler.lock_info.shared is False
    handler.close()


def test_lock_timeout_raises_lock_timeout_within_its_bound(ctx: Ctx) -> None:
    def hold(chan: Channel) -> Any:
        h = ctx.make()
        h.read(SID)
        chan.send(("locked",))
        chan.recv(30)  # until told to stop
        h.close()
        return "released"

    peer = ctx.peer(hold)
    assert peer.recv() == ("locked",)
    h = ctx.make(lock_timeout=0.25)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout) as info:
        h.read(SID)
    elapsed = time.monotonic() - t0
    assert 0.24 <= elapsed < 1.0
    assert info.value.sid == SID
    assert 0.24 <= info.value.waited < 1.0
    assert SID in str(info.value)
    peer.send("stop")
    assert peer.result() == "released"
    # and once released, the same handler gets it
    assert h.read(SID) == b""
    h.close()


def _hold(ctx: Ctx) -> Callable[[Channel], Any]:
    def hold(chan: Channel) -> Any:
        h = ctx.make()
        h.read(SID)
        chan.send(("locked",))
        chan.recv(30)  # until told to stop
        h.close()
        return "released"

    return hold


def test_lock_timeout_message_is_the_policys(ctx: Ctx) -> None:
    """One message for every backend: the id, the setting, how long, and which lock."""
    peer = ctx.peer(_hold(ctx))
    assert peer.recv() == ("locked",)
    h = ctx.make(lock_timeout=0.1)
    with pytest.raises(LockTimeout) as info:
        h.read(SID)
    assert re.match(
        rf"Session lock for {SID} not acquired within session.lock_timeout = 0.1 s \(waited 0\.\d{{3}} s for .+\)",
        str(info.value),
    ), str(info.value)
    assert info.value.handler == ctx.backend.name and info.value.operation == "lock"
    peer.send("stop")
    assert peer.result() == "released"


def test_waiter_cap_refuses_to_queue_with_the_policys_message(ctx: Ctx) -> None:
    peer = ctx.peer(_hold(ctx))
    assert peer.recv() == ("locked",)
    waiter = ctx.peer(_read_and_report(ctx, SID))
    assert waiter.recv()[0] == "started"
    h = ctx.make(lock_max_waiters=1, lock_timeout=0.05)
    deadline = time.monotonic() + 5
    while True:  # until the waiter really waits (it counts for the cap)
        try:
            h.read(SID)
        except LockBusy as exc:
            info = exc
            break
        except LockTimeout:
            pass
        assert time.monotonic() < deadline, "the waiter was never counted"
        h.close()
        time.sleep(0.01)
    assert info.waiters >= 1 and info.sid == SID
    assert re.match(rf"Session {SID} is busy: \d+ requests already wait for its lock \(.+; "
                    r"session.lock_max_waiters = 1\)$", str(info)), str(info)
    peer.send("stop")
    assert peer.result() == "released"
    waiter.result()


def test_long_waits_are_logged_by_the_policy(ctx: Ctx, caplog: pytest.LogCaptureFixture) -> None:
    peer = ctx.peer(_hold(ctx))
    assert peer.recv() == ("locked",)
    h = ctx.make(lock_wait_log_ms=50)

    def release_soon() -> None:
        time.sleep(0.2)
        peer.send("stop")

    t = threading.Thread(target=release_soon)
    t.start()
    with caplog.at_level("WARNING", logger="phpsess.lock"):
        h.read(SID)
    t.join()
    assert h.lock_info.waited >= 0.1
    [rec] = [r for r in caplog.records if r.name == "phpsess.lock"]
    assert rec.getMessage().startswith("waited ") and SID in rec.getMessage()
    h.close()
    assert peer.result() == "released"


@pytest.mark.parametrize("bad", ["", "x_LOCK", "a/b", "../x", "a b", "x" * 257, "é"])
def test_every_backend_refuses_ids_php_refuses(handler: SaveHandler, bad: str) -> None:
    for call in (lambda: handler.read(bad), lambda: handler.write(bad, PAYLOAD), lambda: handler.destroy(bad)):
        with pytest.raises(InvalidSessionId):
            call()
    assert handler.validate_id(bad) is False


def test_lock_is_handed_to_the_waiter_that_then_sees_the_new_data(ctx: Ctx) -> None:
    h = ctx.make()
    h.read(SID)
    peers = [ctx.peer(_read_and_report(ctx, SID)) for _ in range(3)]
    for p in peers:
        assert p.recv()[0] == "started"
    time.sleep(0.1)
    h.write(SID, PAYLOAD)
    h.close()
    for p in peers:
        _, data, _ = p.result()
        assert data == PAYLOAD


# -- the reference handler's own extras --------------------------------------------------


def test_memory_handler_caps_its_queue_and_counts_waiters() -> None:
    store = MemoryStore()

    def make(**settings: Any) -> MemoryHandler:
        h = MemoryHandler(SessionConfig(settings), store=store)
        h.open("p", "PHPSESSID")
        return h

    def wait_for_it() -> None:
        h = make()
        h.read(SID)
        h.close()

    holder = make()
    holder.read(SID)
    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    deadline = time.monotonic() + 5
    while store.slot(("p", SID)).waiters < 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with pytest.raises(LockBusy) as info:
        make(lock_max_waiters=1).read(SID)
    assert info.value.waiters == 1
    holder.close()
    waiter.join(5)
    assert not waiter.is_alive()


def test_a_handler_class_missing_an_operation_cannot_be_instantiated() -> None:
    """As abc refuses an abstract class (also when SaveHandler is compiled with mypyc)."""

    class ReadOnly(SaveHandler):
        def read(self, sid: str, *, shared: bool = False) -> bytes:
            return b""

    with pytest.raises(TypeError, match=r"^Can't instantiate abstract class ReadOnly with abstract methods "
                                        r"close, destroy, gc, open, write$"):
        ReadOnly()
    with pytest.raises(TypeError, match="abstract class SaveHandler"):
        SaveHandler()  # type: ignore[abstract]
