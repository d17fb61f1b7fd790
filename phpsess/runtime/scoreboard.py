"""The pool's scoreboard: what each worker is doing, in memory the master shares with its
workers.  Creates one anonymous shared mapping (before forking); each worker writes only its
own slot, the master and the status page read them all.

php-fpm keeps the same kind of table (its "scoreboard"), and the status page's fields
come from it: a worker's state, how many requests it served, the request it serves now
(method, URI, script, how long so far), its last request's duration, CPU and memory.
phpsess adds what only it knows: the session a request holds or waits for, and how long
it waited for its lock.

A slot is written with a sequence number around it (odd while writing), so a reader
that catches a write half-done reads again: no lock between processes is needed.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
import time
from typing import Final, Iterator

__all__ = ["Scoreboard", "SlotView", "WorkerState", "STATES"]


class WorkerState:
    """A worker's state, as php-fpm names it on the status page."""

    FREE: Final = 0  # no worker in this slot
    STARTING: Final = 1  # forked, not ready yet
    IDLE: Final = 2  # waiting for a connection
    READING: Final = 3  # reading a request ("Reading headers")
    RUNNING: Final = 4  # running a script
    FINISHING: Final = 5  # writing the response, logging


#: the status page's names of the states
STATES = {
    WorkerState.FREE: "Free",
    WorkerState.STARTING: "Starting",
    WorkerState.IDLE: "Idle",
    WorkerState.READING: "Reading headers",
    WorkerState.RUNNING: "Running",
    WorkerState.FINISHING: "Finishing",
}

# seq, pid, state, generation, started (epoch), requests, accepted, request start (epoch),
# request start (monotonic), last duration, last cpu, last memory, content length,
# lock wait (s), waiting for a lock (bool), slow logged (bool)
_FIXED = struct.Struct("<QqiidqqddddqqdBB6x")
#: the request's words, then the session's: each group written with one pack_into
_REQUEST_TEXT = struct.Struct("<16s512s512s64s")  # method, uri, script, user
_SESSION_TEXT = struct.Struct("<128s256s")  # session id, where its lock is
_TEXT = (("method", 16), ("uri", 512), ("script", 512), ("user", 64), ("session", 128), ("lock", 256))
_TEXT_SIZE = sum(n for _, n in _TEXT)
SLOT_SIZE = ((_FIXED.size + _TEXT_SIZE) + 63) // 64 * 64
# the pool's own figures: start time, max active processes, max children reached,
# slow requests, accepted connections and requests of workers that have exited
_SEQ = struct.Struct("<Q")
_HEADER = struct.Struct("<dqqqqq")
_HEADER_SIZE = 64


@dataclasses.dataclass
class SlotView:
    """One worker's slot, as read."""

    pid: int
    state: int
    generation: int
    started: float
    requests: int
    accepted: int
    request_start: float
    request_start_mono: float
    last_duration: float
    last_cpu: float
    last_memory: int
    content_length: int
    lock_wait: float
    waiting_lock: bool
    slow_logged: bool
    method: str
    uri: str
    script: str
    user: str
    session: str
    lock: str

    @property
    def state_name(self) -> str:
        """The status page's name of :attr:`state`."""
        return STATES.get(self.state, "Unknown")

    def running_for(self, now_mono: float) -> float:
        """Seconds the current request has run (0 when there is none)."""
        if self.state not in (WorkerState.READING, WorkerState.RUNNING, WorkerState.FINISHING):
            return 0.0
        return max(0.0, now_mono - self.request_start_mono)


class Scoreboard:
    """``slots`` worker slots and the pool's header in one shared anonymous mapping.

    :param slots: how many workers the pool may have at once (``pm.max_children``).
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.map = mmap.mmap(-1, _HEADER_SIZE + SLOT_SIZE * max(1, slots))
        _HEADER.pack_into(self.map, 0, time.time(), 0, 0, 0, 0, 0)

    # -- the pool's header (written by the master) ----------------------------------------
    def header(self) -> tuple[float, int, int, int, int, int]:
        """(start time, max active, max children reached, slow requests, accepted and
        requests of exited workers)."""
        t0, m, c, s, a, r = _HEADER.unpack_from(self.map, 0)
        return t0, m, c, s, a, r

    def update_header(self, *, max_active: int | None = None, children_reached: int = 0,
                      slow: int = 0, accepted: int = 0, requests: int = 0, start: float | None = None) -> None:
        """Add to the pool's counters (only the master calls this)."""
        t0, m, c, s, a, r = self.header()
        _HEADER.pack_into(
            self.map, 0, t0 if start is None else start, max(m, max_active or 0),
            c + children_reached, s + slow, a + accepted, r + requests,
        )

    # -- slots ------------------------------------------------------------------------------
    def _at(self, slot: int) -> int:
        return _HEADER_SIZE + slot * SLOT_SIZE

    def claim(self, slot: int, pid: int, generation: int) -> None:
        """The master gives ``slot`` to a new worker ``pid`` (state STARTING)."""
        at = self._at(slot)
        self.map[at : at + SLOT_SIZE] = b"\0" * SLOT_SIZE
        _FIXED.pack_into(
            self.map, at, 2, pid, WorkerState.STARTING, generation, time.time(), 0, 0, 0.0, 0.0,
            0.0, 0.0, 0, 0, 0.0, 0, 0,
        )

    def release(self, slot: int) -> SlotView:
        """The worker of ``slot`` has exited: free the slot; return what it said last."""
        view = self.read(slot)
        at = self._at(slot)
        self.map[at : at + SLOT_SIZE] = b"\0" * SLOT_SIZE
        return view

    def read(self, slot: int) -> SlotView:
        """A consistent copy of ``slot`` (read again while its worker writes)."""
        at = self._at(slot)
        for _ in range(100):
            raw = bytes(self.map[at : at + SLOT_SIZE])
            seq = _FIXED.unpack_from(raw, 0)[0]
            if seq % 2 == 0 and _SEQ.unpack_from(self.map, at)[0] == seq:
                break
        fixed = _FIXED.unpack_from(raw, 0)
        texts = []
        pos = _FIXED.size
        for _name, size in _TEXT:
            texts.append(raw[pos : pos + size].split(b"\0", 1)[0].decode("utf-8", "replace"))
            pos += size
        args: list[object] = [*fixed[1:14], bool(fixed[14]), bool(fixed[15]), *texts]
        return SlotView(*args)  # type: ignore[arg-type]

    def views(self) -> Iterator[tuple[int, SlotView]]:
        """``(slot, view)`` of every slot in use."""
        for slot in range(self.slots):
            view = self.read(slot)
            if view.pid:
                yield slot, view


class WorkerSlot:
    """A worker's writer for its own slot: cheap updates at each step of a request (one
    ``pack_into`` for the numbers, one per group of words that changed)."""

    __slots__ = ("map", "at", "seq", "fields", "_has_session")

    def __init__(self, board: Scoreboard, slot: int) -> None:
        self.map = board.map
        self.at = board._at(slot)
        fixed = _FIXED.unpack_from(self.map, self.at)
        self.seq = fixed[0]
        self.fields = list(fixed[1:])
        self._has_session = False

    def _begin(self) -> None:
        self.seq += 1
        _SEQ.pack_into(self.map, self.at, self.seq)  # odd: being written

    def _end(self) -> None:
        self.seq += 1
        _FIXED.pack_into(self.map, self.at, self.seq, *self.fields)

    def own(self, pid: int) -> None:
        """The new worker takes its slot: its pid (the master wrote a placeholder)."""
        self.fields[0] = pid
        self._begin()
        self._end()

    def set_state(self, state: int) -> None:
        """The worker's state (IDLE between requests); nothing written when it is already so."""
        if self.fields[1] == state:
            return
        self.fields[1] = state
        self._begin()
        self._end()

    def accepted(self) -> None:
        """A connection was accepted: state READING, the count goes up."""
        f = self.fields
        f[1] = WorkerState.READING
        f[5] += 1
        f[6] = time.time()
        f[7] = time.monotonic()
        self._begin()
        self._end()

    def request_started(self, method: str, uri: str, script: str, content_length: int, user: str) -> None:
        """A request was read and its script starts."""
        f = self.fields
        f[1] = WorkerState.RUNNING
        f[6] = time.time()
        f[7] = time.monotonic()
        f[11] = content_length
        f[12] = 0.0
        f[13] = 0
        f[14] = 0
        self._begin()
        at = self.at + _FIXED.size
        _REQUEST_TEXT.pack_into(
            self.map, at, method.encode("latin-1", "replace"), uri.encode("utf-8", "replace"),
            script.encode("utf-8", "replace"), user.encode("utf-8", "replace"),
        )
        if self._has_session:
            _SESSION_TEXT.pack_into(self.map, at + _REQUEST_TEXT.size, b"", b"")
            self._has_session = False
        self._end()

    def session_lock(self, sid: str, where: str, waiting: bool, waited: float = 0.0) -> None:
        """The request waits for (``waiting``) or holds the lock of session ``sid``."""
        self.fields[12] = waited
        self.fields[13] = 1 if waiting else 0
        self._begin()
        _SESSION_TEXT.pack_into(
            self.map, self.at + _FIXED.size + _REQUEST_TEXT.size,
            sid.encode("utf-8", "replace"), where.encode("utf-8", "replace"),
        )
        self._has_session = True
        self._end()

    def request_done(self, cpu: float, memory: int) -> None:
        """The request is answered: its duration, CPU and memory; state IDLE."""
        f = self.fields
        f[1] = WorkerState.IDLE
        f[4] += 1
        f[8] = time.monotonic() - f[7]
        f[9] = cpu
        f[10] = memory
        f[13] = 0
        self._begin()
        self._end()

    def slow_logged(self) -> None:
        """The current request has had its slow-log entry."""
        self.fields[14] = 1
        self._begin()
        self._end()
