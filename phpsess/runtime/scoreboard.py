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
STATES: Final = {
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
_FIXED_FIELDS: Final = "QqiidqqddddqqdBB"
_FIXED: Final = struct.Struct("<" + _FIXED_FIELDS + "6x")


def _offset(field: int) -> int:
    """Byte offset in a slot of :data:`_FIXED`'s field number ``field`` (0: the sequence)."""
    return struct.calcsize("<" + _FIXED_FIELDS[:field])


# where a worker stores each field (every number is aligned to its size, as the typed
# views need: a slot starts at a multiple of 64)
_OFF_PID: Final = _offset(1)
_OFF_STATE: Final = _offset(2)
_OFF_REQUESTS: Final = _offset(5)
_OFF_ACCEPTED: Final = _offset(6)
_OFF_REQUEST_START: Final = _offset(7)
_OFF_REQUEST_START_MONO: Final = _offset(8)
_OFF_LAST_DURATION: Final = _offset(9)
_OFF_LAST_CPU: Final = _offset(10)
_OFF_LAST_MEMORY: Final = _offset(11)
_OFF_CONTENT_LENGTH: Final = _offset(12)
_OFF_LOCK_WAIT: Final = _offset(13)
_OFF_WAITING: Final = _offset(14)
_OFF_SLOW: Final = _offset(15)
#: the request's words, then the session's: each group written with one pack_into
_REQUEST_TEXT: Final = struct.Struct("<16s512s512s64s")  # method, uri, script, user
_SESSION_TEXT: Final = struct.Struct("<128s256s")  # session id, where its lock is
_TEXT: Final = (("method", 16), ("uri", 512), ("script", 512), ("user", 64), ("session", 128), ("lock", 256))
_TEXT_SIZE: Final = sum(n for _, n in _TEXT)
SLOT_SIZE: Final = ((_FIXED.size + _TEXT_SIZE) + 63) // 64 * 64
# the pool's own figures: start time, max active processes, max children reached,
# slow requests, accepted connections and requests of workers that have exited
_SEQ: Final = struct.Struct("<Q")
_HEADER: Final = struct.Struct("<dqqqqq")
_HEADER_SIZE: Final = 64

# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_now: Final = time.time
_monotonic: Final = time.monotonic


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
    """A worker's writer for its own slot: cheap updates at each step of a request.

    The writer keeps its slot's record in attributes and, at each step, stores only the
    fields that changed, each straight into the mapping through a typed view (the
    numbers' offsets are those of :data:`_FIXED`), between two stores of the sequence
    number: far cheaper than packing the whole record again (a step is a few item
    stores, not a 17-argument ``pack_into``)."""

    __slots__ = (
        "map", "at", "seq", "_q", "_d", "_i", "_b", "_seq_at", "_has_session",
        "pid", "state", "generation", "started", "requests_count", "accepted_count", "request_start",
        "request_start_mono", "last_duration", "last_cpu", "last_memory", "content_length",
        "lock_wait", "waiting_lock", "slow_logged_flag",
    )

    map: mmap.mmap
    at: int
    seq: int
    pid: int
    state: int
    generation: int
    started: float
    requests_count: int
    accepted_count: int
    request_start: float
    request_start_mono: float
    last_duration: float
    last_cpu: float
    last_memory: int
    content_length: int
    lock_wait: float
    waiting_lock: int
    slow_logged_flag: int

    def __init__(self, board: Scoreboard, slot: int) -> None:
        self.map = board.map
        self.at = at = board._at(slot)
        f = _FIXED.unpack_from(self.map, at)
        self.seq, self.pid, self.state, self.generation = f[0], f[1], f[2], f[3]
        self.started, self.requests_count, self.accepted_count = f[4], f[5], f[6]
        self.request_start, self.request_start_mono, self.last_duration = f[7], f[8], f[9]
        self.last_cpu, self.last_memory, self.content_length = f[10], f[11], f[12]
        self.lock_wait, self.waiting_lock, self.slow_logged_flag = f[13], f[14], f[15]
        view = memoryview(self.map)
        self._q = view.cast("q")  # the 8-byte integers, indexed by offset // 8
        self._d = view.cast("d")  # the doubles, likewise
        self._i = view.cast("i")  # the 4-byte integers, indexed by offset // 4
        self._b = view  # the flags, by byte offset
        self._seq_at = at // 8
        self._has_session = False

    @property
    def fields(self) -> list[object]:
        """The writer's record, in :data:`_FIXED`'s order after the sequence number."""
        return [
            self.pid, self.state, self.generation, self.started, self.requests_count, self.accepted_count,
            self.request_start, self.request_start_mono, self.last_duration, self.last_cpu,
            self.last_memory, self.content_length, self.lock_wait, self.waiting_lock,
            self.slow_logged_flag,
        ]

    def _begin(self) -> None:
        self.seq += 1
        self._q[self._seq_at] = self.seq  # odd: being written

    def _end(self) -> None:
        self.seq += 1
        self._q[self._seq_at] = self.seq

    def own(self, pid: int) -> None:
        """The new worker takes its slot: its pid (the master wrote a placeholder)."""
        self.pid = pid
        self._begin()
        self._q[(self.at + _OFF_PID) // 8] = pid
        self._end()

    def set_state(self, state: int) -> None:
        """The worker's state (IDLE between requests); nothing written when it is already so."""
        if self.state == state:
            return
        self.state = state
        self._begin()
        self._i[(self.at + _OFF_STATE) // 4] = state
        self._end()

    def accepted(self) -> None:
        """A connection was accepted: state READING, the count goes up."""
        at = self.at
        self.state = WorkerState.READING
        self.accepted_count += 1
        self.request_start = _now()
        self.request_start_mono = _monotonic()
        self._begin()
        self._i[(at + _OFF_STATE) // 4] = WorkerState.READING
        self._q[(at + _OFF_ACCEPTED) // 8] = self.accepted_count
        d = self._d
        d[(at + _OFF_REQUEST_START) // 8] = self.request_start
        d[(at + _OFF_REQUEST_START_MONO) // 8] = self.request_start_mono
        self._end()

    def request_started(self, method: str, uri: str, script: str, content_length: int, user: str) -> None:
        """A request was read and its script starts."""
        at = self.at
        self.state = WorkerState.RUNNING
        self.request_start = _now()
        self.request_start_mono = _monotonic()
        self.content_length = content_length
        self._begin()
        self._i[(at + _OFF_STATE) // 4] = WorkerState.RUNNING
        d = self._d
        d[(at + _OFF_REQUEST_START) // 8] = self.request_start
        d[(at + _OFF_REQUEST_START_MONO) // 8] = self.request_start_mono
        self._q[(at + _OFF_CONTENT_LENGTH) // 8] = content_length
        if self.lock_wait != 0.0:
            self.lock_wait = 0.0
            d[(at + _OFF_LOCK_WAIT) // 8] = 0.0
        if self.waiting_lock or self.slow_logged_flag:
            self.waiting_lock = self.slow_logged_flag = 0
            self._b[at + _OFF_WAITING] = 0
            self._b[at + _OFF_SLOW] = 0
        _REQUEST_TEXT.pack_into(
            self.map, at + _FIXED.size, method.encode("latin-1", "replace"), uri.encode("utf-8", "replace"),
            script.encode("utf-8", "replace"), user.encode("utf-8", "replace"),
        )
        if self._has_session:
            _SESSION_TEXT.pack_into(self.map, at + _FIXED.size + _REQUEST_TEXT.size, b"", b"")
            self._has_session = False
        self._end()

    def session_lock(self, sid: str, where: str, waiting: bool, waited: float = 0.0) -> None:
        """The request waits for (``waiting``) or holds the lock of session ``sid``."""
        at = self.at
        self.lock_wait = waited
        self.waiting_lock = 1 if waiting else 0
        self._begin()
        self._d[(at + _OFF_LOCK_WAIT) // 8] = waited
        self._b[at + _OFF_WAITING] = self.waiting_lock
        _SESSION_TEXT.pack_into(
            self.map, at + _FIXED.size + _REQUEST_TEXT.size,
            sid.encode("utf-8", "replace"), where.encode("utf-8", "replace"),
        )
        self._has_session = True
        self._end()

    def request_done(self, cpu: float, memory: int) -> None:
        """The request is answered: its duration, CPU and memory; state IDLE."""
        at = self.at
        self.state = WorkerState.IDLE
        self.requests_count += 1
        self.last_duration = _monotonic() - self.request_start_mono
        self.last_cpu = cpu
        self.last_memory = memory
        self._begin()
        self._i[(at + _OFF_STATE) // 4] = WorkerState.IDLE
        q = self._q
        q[(at + _OFF_REQUESTS) // 8] = self.requests_count
        q[(at + _OFF_LAST_MEMORY) // 8] = memory
        d = self._d
        d[(at + _OFF_LAST_DURATION) // 8] = self.last_duration
        d[(at + _OFF_LAST_CPU) // 8] = cpu
        if self.waiting_lock:
            self.waiting_lock = 0
            self._b[at + _OFF_WAITING] = 0
        self._end()

    def slow_logged(self) -> None:
        """The current request has had its slow-log entry."""
        self.slow_logged_flag = 1
        self._begin()
        self._b[self.at + _OFF_SLOW] = 1
        self._end()
