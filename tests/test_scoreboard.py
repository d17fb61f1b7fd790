"""The pool's scoreboard: what a worker writes into its slot is what the master and the
status page read back."""

from __future__ import annotations

import time

import pytest

from phpsess.runtime import scoreboard
from phpsess.runtime.scoreboard import Scoreboard, WorkerSlot, WorkerState


def test_a_request_read_back_field_by_field() -> None:
    board = Scoreboard(3)
    board.claim(1, 4242, 7)
    view = board.read(1)
    assert (view.pid, view.state, view.generation) == (4242, WorkerState.STARTING, 7)
    slot = WorkerSlot(board, 1)
    slot.own(5151)
    slot.set_state(WorkerState.IDLE)
    assert board.read(1).state == WorkerState.IDLE and board.read(1).pid == 5151
    slot.accepted()
    v = board.read(1)
    assert v.state == WorkerState.READING and v.accepted == 1 and v.requests == 0
    assert v.running_for(time.monotonic()) >= 0 and abs(v.request_start - time.time()) < 5
    slot.request_started("GET", "/cart.py?x=1", "/srv/www/cart.py", 12, "alice")
    v = board.read(1)
    assert (v.state, v.method, v.uri, v.script, v.content_length, v.user) == (
        WorkerState.RUNNING, "GET", "/cart.py?x=1", "/srv/www/cart.py", 12, "alice")
    slot.session_lock("abc123", "/tmp/sess_abc123", True, 0.25)
    v = board.read(1)
    assert v.waiting_lock and v.lock_wait == 0.25 and (v.session, v.lock) == ("abc123", "/tmp/sess_abc123")
    slot.session_lock("abc123", "/tmp/sess_abc123", False, 0.5)
    slot.slow_logged()
    v = board.read(1)
    assert not v.waiting_lock and v.lock_wait == 0.5 and v.slow_logged
    slot.request_done(12.5, 30 << 20)
    v = board.read(1)
    assert (v.state, v.requests, v.accepted, v.last_cpu, v.last_memory) == (WorkerState.IDLE, 1, 1, 12.5, 30 << 20)
    assert 0 <= v.last_duration < 5 and not v.waiting_lock
    # the next request starts clean: no session, no wait, not slow-logged
    slot.accepted()
    slot.request_started("POST", "/b.py", "/srv/www/b.py", 0, "")
    v = board.read(1)
    assert (v.session, v.lock, v.lock_wait, v.slow_logged, v.accepted) == ("", "", 0.0, False, 2)
    # the neighbours are untouched
    assert board.read(0).pid == 0 and board.read(2).pid == 0
    assert [s for s, _ in board.views()] == [1]


def test_a_new_writer_carries_on_from_the_slot() -> None:
    board = Scoreboard(1)
    board.claim(0, 1, 0)
    first = WorkerSlot(board, 0)
    first.accepted()
    first.request_started("GET", "/", "/x.py", 0, "")
    first.request_done(1.0, 1)
    again = WorkerSlot(board, 0)  # (as after a re-exec: the counts go on)
    again.accepted()
    again.request_started("GET", "/", "/x.py", 0, "")
    again.request_done(1.0, 1)
    v = board.read(0)
    assert (v.requests, v.accepted) == (2, 2)
    assert board._at(0) % 8 == 0


STEPS = [
    ("own", (5151,)),
    ("set_state", (WorkerState.IDLE,)),
    ("accepted", ()),
    ("request_started", ("GET", "/a.py", "/srv/a.py", 3, "bob")),
    ("session_lock", ("s1", "/tmp/sess_s1", True, 0.0)),
    ("session_lock", ("s1", "/tmp/sess_s1", False, 0.125)),
    ("slow_logged", ()),
    ("request_done", (2.5, 1 << 20)),
    ("accepted", ()),
    ("request_started", ("POST", "/b.py", "/srv/b.py", 0, "")),
    ("request_done", (0.5, 2 << 20)),
    ("set_state", (WorkerState.FINISHING,)),
]


@pytest.mark.parametrize("upto", range(1, len(STEPS) + 1))
def test_partial_writes_leave_the_slot_as_the_writer_sees_it(upto: int) -> None:
    """After any step, the slot's numbers are the writer's whole record (as one full
    write would leave them) and its sequence number is even: a reader never sees a mix."""
    board = Scoreboard(2)
    board.claim(1, 1, 3)
    slot = WorkerSlot(board, 1)
    for name, args in STEPS[:upto]:
        getattr(slot, name)(*args)
    fixed = scoreboard._FIXED.unpack_from(board.map, board._at(1))
    assert fixed[0] % 2 == 0 and fixed[0] == slot.seq
    assert list(fixed[1:]) == slot.fields
