"""The lock registry: which session locks this process holds, and since when. Writes a
one-page file per process (``/dev/shm/phpsess-locks.<pid>``, mapped into memory) and reads
other processes' files for the lock inspector (:mod:`phpsess.tools.inspect`).

The kernel does not record when a flock was taken, so how long a lock has been
held is unknown for PHP's processes.  phpsess's files handler records each lock
it takes here (:func:`note_acquired` / :func:`note_released`): recording costs a
few memory writes and no system call.  A reader believes a record only when the
process that wrote it is the one the kernel names as the holder (same pid and
same process start time) and the record names the same device and inode.
``$PHPSESS_LOCK_REGISTRY`` sets the directory (``off`` disables recording).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import mmap
import os
import struct
import threading
import time

__all__ = [
    "RegistryRecord",
    "note_acquired",
    "note_released",
    "read_registry",
    "registry_dir",
    "registry_path",
    "clean_registry",
    "forget_registry",
]

log = logging.getLogger(__name__)

_MAGIC = b"PHPSESL1"
_HEADER = struct.Struct("<8sIIQ")  # magic, pid, reserved, process start time (clock ticks)
_SLOT = struct.Struct("<IIQQd")  # state (0 free, 1 exclusive, 2 shared), reserved, dev, ino, acquired
_SIZE = 4096
_NSLOTS = (_SIZE - _HEADER.size) // _SLOT.size


@dataclasses.dataclass(frozen=True)
class RegistryRecord:
    """One lock a phpsess process says it holds: on which inode, since when (epoch seconds)."""

    dev: int  # st_dev
    inode: int
    shared: bool
    acquired: float


def _off(value: str) -> bool:
    return value.lower() in ("", "off", "0", "no", "none")


def registry_dir() -> str | None:
    """Where lock registries live: ``$PHPSESS_LOCK_REGISTRY``, else ``/dev/shm``; None when off."""
    value = os.environ.get("PHPSESS_LOCK_REGISTRY", "/dev/shm")
    return None if _off(value) else value


def registry_path(pid: int, directory: str | None = None) -> str | None:
    """The registry file of process ``pid`` in ``directory`` (default :func:`registry_dir`);
    None when registries are off (``directory="off"`` too)."""
    d = directory if directory is not None else registry_dir()
    return None if d is None or _off(d) else os.path.join(d, f"phpsess-locks.{pid}")


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    rest = text[text.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


class _Registry:
    """This process's registry: a mapped file, one slot per lock held."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.pid = -1
        self.map: mmap.mmap | None = None
        self.path: str | None = None
        self.free: list[int] = []
        self.disabled = False
        self.forked = False

    def _setup(self) -> bool:
        pid = os.getpid()
        if self.pid == pid:
            return self.map is not None
        # first use, or a forked child: the inherited mapping is the parent's file
        if self.map is not None:
            try:
                self.map.close()
            except (BufferError, ValueError):
                pass
        self.pid = pid
        self.map = None
        self.free = list(range(_NSLOTS - 1, -1, -1))
        path = registry_path(pid)
        if path is None:
            return False
        start = _start_time(pid)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                if os.fstat(fd).st_uid != os.geteuid():
                    raise PermissionError(f"{path} belongs to another user")
                os.ftruncate(fd, _SIZE)
                mapped = mmap.mmap(fd, _SIZE)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("lock registry %s unavailable: %s", path, exc)
            return False
        _HEADER.pack_into(mapped, 0, _MAGIC, pid, 0, start or 0)
        self.map = mapped
        self.path = path
        atexit.register(self._remove, pid, path)
        # processes that ended through os._exit (forked workers) left theirs behind:
        # each new registry sweeps them, so they never pile up
        clean_registry(os.path.dirname(path))
        return True

    @staticmethod
    def _remove(pid: int, path: str) -> None:
        if os.getpid() == pid:
            try:
                os.unlink(path)
            except OSError:
                pass

    def acquired(self, dev: int, ino: int, shared: bool, when: float) -> int:
        with self.mutex:
            if self.forked or self.map is None:
                self.forked = False
                if self.disabled or not self._setup():
                    self.disabled = True
                    return -1
            if not self.free:
                return -1
            slot = self.free.pop()
            assert self.map is not None
            _SLOT.pack_into(self.map, _HEADER.size + slot * _SLOT.size, 2 if shared else 1, 0, dev, ino, when)
            return slot

    def released(self, slot: int) -> None:
        with self.mutex:
            if slot < 0 or self.forked or self.map is None:
                return
            at = _HEADER.size + slot * _SLOT.size
            self.map[at : at + 4] = b"\0\0\0\0"
            self.free.append(slot)

    def after_fork(self) -> None:
        """In a forked child: the inherited mapping is the parent's file; set up anew on use."""
        self.mutex = threading.Lock()
        self.forked = True
        self.disabled = False


_registry = _Registry()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _registry.after_fork())


def note_acquired(dev: int, ino: int, *, shared: bool = False, when: float | None = None) -> int:
    """Record that this process now holds the flock of inode ``ino`` on ``dev`` (``st_dev``).

    Called by the files handler right after it obtains a session lock.  Never
    raises; returns the registry slot to pass to :func:`note_released` (-1 when
    nothing could be recorded).
    """
    try:
        return _registry.acquired(dev, ino, shared, time.time() if when is None else when)
    except Exception as exc:  # recording is best effort: a session must never fail for it
        log.debug("lock registry: %s", exc)
        return -1


def note_released(slot: int) -> None:
    """Forget the lock recorded in ``slot`` (the handler released it). Never raises."""
    try:
        _registry.released(slot)
    except Exception as exc:
        log.debug("lock registry: %s", exc)


def read_registry(pid: int, directory: str | None = None) -> list[RegistryRecord] | None:
    """The locks process ``pid`` has recorded, or None when it has no valid registry
    (never recorded, registries off, or the file belongs to an earlier process with that pid)."""
    path = registry_path(pid, directory)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(_SIZE)
            owner = os.fstat(fh.fileno()).st_uid
        if owner != os.stat(f"/proc/{pid}").st_uid:
            return None  # not written by that process: another user's file
    except OSError:
        return None
    if len(data) < _SIZE:
        return None
    magic, rec_pid, _reserved, start = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC or rec_pid != pid or start == 0 or start != _start_time(pid):
        return None
    out: list[RegistryRecord] = []
    for slot in range(_NSLOTS):
        state, _r, dev, ino, acquired = _SLOT.unpack_from(data, _HEADER.size + slot * _SLOT.size)
        if state in (1, 2):
            out.append(RegistryRecord(dev, ino, state == 2, acquired))
    return out


def forget_registry(pid: int, directory: str | None = None) -> None:
    """Delete the registry of ``pid``, a child its parent has just reaped (a worker
    stopped by SIGTERM or killed never runs its own clean-up).  Missing: nothing to do."""
    path = registry_path(pid, directory)
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def clean_registry(directory: str | None = None) -> int:
    """Delete the registries of processes that no longer run (they exited without
    cleaning up, e.g. through ``os._exit``); returns how many were deleted."""
    d = directory if directory is not None else registry_dir()
    if d is None or _off(d):
        return 0
    deleted = 0
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    for name in names:
        if not name.startswith("phpsess-locks."):
            continue
        try:
            pid = int(name.rsplit(".", 1)[1])
        except ValueError:
            continue
        if read_registry(pid, d) is not None:
            continue  # a live process's
        try:
            with open(os.path.join(d, name), "rb") as fh:
                head = fh.read(_HEADER.size)
        except OSError:
            continue
        if len(head) == _HEADER.size and _HEADER.unpack(head)[3] == 0 and os.path.exists(f"/proc/{pid}"):
            continue  # being created right now (start time not written yet)
        try:
            os.unlink(os.path.join(d, name))
            deleted += 1
        except OSError:
            pass
    return deleted
