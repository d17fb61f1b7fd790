"""The ``memory`` save handler: sessions in a process-local dict. No I/O.

The reference implementation of the :class:`~phpsess.storage.base.SaveHandler`
contract, used by the tests and by single-process experiments.  All instances of
one process share one store, partitioned by ``save_path``; each session id has a
``threading.Lock`` held from :meth:`~MemoryHandler.read` to
:meth:`~MemoryHandler.close`, so two requests (threads) of one process exclude
each other as two PHP processes do on a ``sess_`` file.  Nothing is shared with
other processes and nothing survives the process.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..core import ids
from ..core.config import SessionConfig
from ..errors import SaveHandlerError
from .base import LockInfo, SaveHandler

__all__ = ["MemoryHandler", "MemoryStore", "STORE"]


class _Slot:
    """One session id: its lock and how many requests wait for it."""

    __slots__ = ("lock", "waiters")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiters = 0


class MemoryStore:
    """Payloads and per-id locks, keyed by ``(save_path, sid)``."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()  # guards the two dicts and the waiter counts
        self.data: dict[tuple[str, str], tuple[bytes, float]] = {}
        self.slots: dict[tuple[str, str], _Slot] = {}

    def slot(self, key: tuple[str, str]) -> _Slot:
        """The lock slot of ``key``, created on first use."""
        with self.mutex:
            slot = self.slots.get(key)
            if slot is None:
                slot = self.slots[key] = _Slot()
            return slot

    def clear(self) -> None:
        """Forget every session (locks held right now stay valid for their holders)."""
        with self.mutex:
            self.data.clear()
            self.slots = {k: s for k, s in self.slots.items() if s.lock.locked()}


#: the process-wide store every MemoryHandler uses unless given another
STORE = MemoryStore()


class MemoryHandler(SaveHandler):
    """``session.save_handler = memory``: the contract, in a dict.

    ``clock`` (``time.time``) dates writes for :meth:`gc`; tests replace it.
    """

    name = "memory"
    has_validator = True

    def __init__(self, config: SessionConfig | None = None, store: MemoryStore | None = None) -> None:
        super().__init__(config)
        self.store = STORE if store is None else store
        self.clock: Callable[[], float] = time.time
        self.save_path: str | None = None
        self._held: tuple[str, str] | None = None
        self._slot: _Slot | None = None

    def _key(self, sid: str) -> tuple[str, str]:
        self.check_id(sid)
        if self.save_path is None:
            raise SaveHandlerError("memory handler used before open()", handler="memory", operation="open")
        return (self.save_path, sid)

    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: choose the partition ``save_path`` of the store."""
        self.close()
        self.save_path = save_path

    def close(self) -> None:
        """PS_CLOSE: release the lock of the id read, if any."""
        slot = self._slot
        self._slot = None
        self._held = None
        if slot is not None:
            slot.lock.release()

    def _lock(self, sid: str) -> tuple[str, str]:
        key = self._key(sid)
        if self._held == key:
            self.lock_info = LockInfo(0.0, False)
            return key
        self.close()
        waited = self.acquire_lock(sid)
        self._held = key
        self._slot = self.store.slot(key)
        self.lock_acquired(sid, shared=False, waited=waited)
        return key

    # -- the lock policy's hooks (SaveHandler.acquire_lock): a threading.Lock per id
    def _lock_try(self, sid: str, shared: bool) -> bool:
        return self.store.slot(self._key(sid)).lock.acquire(blocking=False)

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        slot = self.store.slot(self._key(sid))
        with self.store.mutex:
            slot.waiters += 1
        try:
            return slot.lock.acquire(timeout=-1 if timeout is None else timeout)
        finally:
            with self.store.mutex:
                slot.waiters -= 1

    def _lock_waiters(self, sid: str) -> int:
        return self.store.slot(self._key(sid)).waiters

    def _lock_where(self, sid: str) -> str:
        return f"memory store {self.save_path!r}"

    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: lock ``sid`` (always exclusively) and return its payload, ``b""`` if absent."""
        key = self._lock(sid)
        entry = self.store.data.get(key)
        return b"" if entry is None else entry[0]

    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: store ``data`` (locking ``sid`` first if :meth:`read` did not)."""
        key = self._lock(sid)
        with self.store.mutex:
            self.store.data[key] = (bytes(data), self.clock())

    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP: date the entry now; write ``data`` if it is gone."""
        key = self._key(sid)
        with self.store.mutex:
            entry = self.store.data.get(key)
            if entry is not None:
                self.store.data[key] = (entry[0], self.clock())
                return
        self.write(sid, data)

    def destroy(self, sid: str) -> None:
        """PS_DESTROY: forget ``sid`` and release its lock if held.  Missing is fine."""
        key = self._key(sid)
        with self.store.mutex:
            self.store.data.pop(key, None)
        if self._held == key:
            self.close()

    def gc(self, max_lifetime: int, *, now: float | None = None) -> int:
        """PS_GC: forget entries dated more than ``max_lifetime`` s ago, except locked ones."""
        if self.save_path is None:
            raise SaveHandlerError("memory handler used before open()", handler="memory", operation="gc")
        t_now = int(self.clock() if now is None else now)
        deleted = 0
        with self.store.mutex:
            for key, (_, mtime) in list(self.store.data.items()):
                if key[0] != self.save_path or t_now - int(mtime) <= max_lifetime:
                    continue
                slot = self.store.slots.get(key)
                if slot is not None and slot.lock.locked():
                    continue
                del self.store.data[key]
                deleted += 1
        return deleted

    def create_sid(self) -> str:
        """PS_CREATE_SID: a new id that is not stored yet (up to 4 tries, as files)."""
        return self.unused_id(self.validate_id)

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID: True when ``sid`` is a valid id and stored."""
        return ids.is_valid_id(sid) and self._key(sid) in self.store.data
