"""The lock registry: which session locks this process holds, and since when. Writes a
one-page file per process (``phpsess-locks.<pid>``, mapped into memory) in the user's
private runtime directory (:mod:`phpsess.storage.rundir`) and reads other processes' files
for the lock inspector (:mod:`phpsess.tools.inspect`).

The kernel does not record when a flock was taken, so how long a lock has been
held is unknown for PHP's processes.  phpsess's files handler records each lock
it takes here (:func:`note_acquired` / :func:`note_released`): recording costs a
few memory writes and no system call.  A reader believes a record only when the
process that wrote it is the one the kernel names as the holder (same pid and
same process start time) and the record names the same device and inode.
``$PHPSESS_LOCK_REGISTRY`` sets the directory (``off`` disables recording).

Nothing in a registry directory can block or mislead a reader: files are opened
without following links and without blocking (a FIFO or device planted under a
registry's name is skipped), must be regular files of exactly one page owned by
the process they describe, and the default directory is one only its user can
write.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import mmap
import os
import stat
import struct
import threading
import time
from typing import Final, Iterator

from .rundir import is_private_dir, runtime_dir

__all__ = [
    "RegistryRecord",
    "note_acquired",
    "note_released",
    "set_request",
    "prepare",
    "read_registry",
    "registry_dir",
    "registry_path",
    "clean_registry",
    "forget_registry",
]

log: Final = logging.getLogger(__name__)

_MAGIC: Final = b"PHPSESL2"
_HEADER: Final = struct.Struct("<8sIIQ")  # magic, pid, reserved, process start time (clock ticks)
# the request the process serves (written with its first lock): started (epoch), method,
# URI, script; a sequence number around it (odd while written)
_REQUEST: Final = struct.Struct("<Qd16s240s256s")
_SLOT: Final = struct.Struct("<IIQQd")  # state (0 free, 1 exclusive, 2 shared), reserved, dev, ino, acquired
_SIZE: Final = 4096
_SLOTS_AT: Final = _HEADER.size + _REQUEST.size
_NSLOTS: Final = (_SIZE - _SLOTS_AT) // _SLOT.size


@dataclasses.dataclass(frozen=True)
class RegistryRecord:
    """One lock a phpsess process says it holds: on which inode, since when (epoch seconds)."""

    dev: int  # st_dev
    inode: int
    shared: bool
    acquired: float
    #: the request the process was serving when it took the lock (empty when unknown)
    method: str = ""
    uri: str = ""
    script: str = ""
    #: when that request started (epoch seconds; 0.0 when unknown)
    request_started: float = 0.0


def _off(value: str) -> bool:
    return value.lower() in ("", "off", "0", "no", "none")


def registry_dir(uid: int | None = None) -> str | None:
    """Where the lock registries of ``uid``'s processes live (default: this process's user):
    ``$PHPSESS_LOCK_REGISTRY`` when set (one directory for every user; ``off``: none),
    else that user's private runtime directory.  None when there is none to use."""
    value = os.environ.get("PHPSESS_LOCK_REGISTRY")
    if value is not None:
        if _off(value):
            return None
        return value if is_private_dir(value, os.geteuid()) or uid not in (None, os.geteuid()) else None
    return runtime_dir(uid, create=uid is None or uid == os.geteuid())


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def registry_path(pid: int, directory: str | None = None) -> str | None:
    """The registry file of process ``pid`` in ``directory`` (default: its user's
    :func:`registry_dir`); None when registries are off (``directory="off"`` too)."""
    if directory is None:
        uid = os.geteuid() if pid == os.getpid() else _owner(pid)
        if uid is None:
            return None
        d = registry_dir(uid)
    else:
        d = directory
    return None if d is None or _off(d) else os.path.join(d, f"phpsess-locks.{pid}")


def _read_page(path: str, owner: int) -> bytes | None:
    """The one page of the registry file ``path``, if it is a regular file of ``owner`` of
    exactly that size; never follows a link, never blocks (FIFOs, devices)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != _SIZE or st.st_uid != owner:
            return None
        data = os.pread(fd, _SIZE, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == _SIZE else None


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
        #: (started, method, uri, script) of the request being served, and whether it is in
        #: the page yet (written with the first lock the request takes)
        self.request: tuple[float, bytes, bytes, bytes] | None = None
        self.request_written = True
        self.request_seq = 0

    def _setup(self, sweep: bool = True) -> bool:
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
        # each new registry sweeps them, so they never pile up (a pool's master deletes
        # its workers' as it reaps them: they need not sweep)
        if sweep:
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
            if not self.request_written:
                self._write_request()
            _SLOT.pack_into(self.map, _SLOTS_AT + slot * _SLOT.size, 2 if shared else 1, 0, dev, ino, when)
            return slot

    def _write_request(self) -> None:
        assert self.map is not None
        started, method, uri, script = self.request or (0.0, b"", b"", b"")
        self.request_seq += 1
        _REQUEST.pack_into(self.map, _HEADER.size, self.request_seq, started, method, uri, script)
        self.request_seq += 1
        struct.pack_into("<Q", self.map, _HEADER.size, self.request_seq)
        self.request_written = True

    def set_request(self, started: float, method: str, uri: str, script: str) -> None:
        self.request = (
            started, method.encode("latin-1", "replace")[:16], uri.encode("utf-8", "replace")[:240],
            script.encode("utf-8", "replace")[:256],
        )
        self.request_written = False

    def released(self, slot: int) -> None:
        with self.mutex:
            if slot < 0 or self.forked or self.map is None:
                return
            at = _SLOTS_AT + slot * _SLOT.size
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


def set_request(method: str, uri: str, script: str, started: float | None = None) -> None:
    """The request this process now serves (a pool's worker, per request): recorded beside
    the locks it takes, so ``phpsess locks`` can name the script, URI and request age of
    a holder.  Costs no system call; written to the page with the request's first lock."""
    _registry.set_request(time.time() if started is None else started, method, uri, script)


def prepare(sweep: bool = True) -> bool:
    """Set up this process's registry now rather than at its first lock (a pool worker
    at start: its descriptors stay the same from then on).  True when recording is on.

    :param sweep: also delete the registries that ended processes left behind; a pool
        worker passes False (its master deletes each worker's as it reaps it, and a sweep
        of a crowded directory would cost every new worker private memory).
    """
    try:
        with _registry.mutex:
            if _registry.forked or _registry.map is None:
                _registry.forked = False
                if _registry.disabled or not _registry._setup(sweep):
                    _registry.disabled = True
                    return False
            return True
    except Exception as exc:
        log.debug("lock registry: %s", exc)
        return False


def note_released(slot: int) -> None:
    """Forget the lock recorded in ``slot`` (the handler released it). Never raises."""
    try:
        _registry.released(slot)
    except Exception as exc:
        log.debug("lock registry: %s", exc)


def read_registry(pid: int, directory: str | None = None) -> list[RegistryRecord] | None:
    """The locks process ``pid`` has recorded, or None when it has no valid registry
    (never recorded, registries off, the file belongs to an earlier process with that pid
    or to another user, or is not a registry at all)."""
    path = registry_path(pid, directory)
    owner = _owner(pid)
    if path is None or owner is None:
        return None
    data = _read_page(path, owner)
    if data is None:
        return None
    magic, rec_pid, _reserved, start = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC or rec_pid != pid or start == 0 or start != _start_time(pid):
        return None
    seq, started, method, uri, script = _REQUEST.unpack_from(data, _HEADER.size)
    if seq % 2:
        started, method, uri, script = 0.0, b"", b"", b""  # caught while being written
    request = {
        "method": _text(method), "uri": _text(uri), "script": _text(script),
        "request_started": started if started > 0 else 0.0,
    }
    out: list[RegistryRecord] = []
    for slot in range(_NSLOTS):
        state, _r, dev, ino, acquired = _SLOT.unpack_from(data, _SLOTS_AT + slot * _SLOT.size)
        if state in (1, 2):
            out.append(RegistryRecord(dev, ino, state == 2, acquired, **request))  # type: ignore[arg-type]
    return out


def _text(raw: bytes) -> str:
    """A NUL-padded field of the page as text (another process wrote it: never trusted)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def forget_registry(pid: int, directory: str | None = None, *, uid: int | None = None) -> None:
    """Delete the registry of ``pid``, a child its parent has just reaped (a worker
    stopped by SIGTERM or killed never runs its own clean-up).  The child ran as ``uid``
    (default: this process's user).  Missing: nothing to do."""
    d = directory if directory is not None else registry_dir(uid)
    if d is None or _off(d):
        return
    try:
        os.unlink(os.path.join(d, f"phpsess-locks.{pid}"))
    except OSError:
        pass


def clean_registry(directory: str | None = None) -> int:
    """Delete the registries this user's processes left behind when they ended without
    cleaning up (``os._exit``, a kill), or that an earlier process with the same pid
    left; returns how many were deleted.  Only regular files of this user are touched."""
    d = directory if directory is not None else registry_dir()
    if d is None or _off(d):
        return 0
    me = os.geteuid()
    try:
        entries = os.scandir(d)  # one entry at a time: a crowded directory costs no memory
    except OSError:
        return 0
    with entries:
        return _clean_entries(entries, me)


def _clean_entries(entries: Iterator[os.DirEntry[str]], me: int) -> int:
    deleted = 0
    for entry in entries:
        name = entry.name
        if not name.startswith("phpsess-locks."):
            continue
        try:
            pid = int(name[len("phpsess-locks."):])
            st = entry.stat(follow_symlinks=False)
        except (ValueError, OSError):
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != me:
            continue
        if _owner(pid) is not None:
            data = _read_page(entry.path, me)
            if data is None:
                continue  # a live process's, being created
            start = _HEADER.unpack_from(data, 0)[3]
            if start == 0 or start == _start_time(pid):
                continue  # a live process's
        try:
            os.unlink(entry.path)
            deleted += 1
        except OSError:
            pass
    return deleted
