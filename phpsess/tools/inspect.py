"""The lock inspector behind ``phpsess locks``: which session files are locked right now,
by whom, with how many waiters.  Reads /proc/locks, the save_path directory, the lock
registries (:mod:`phpsess.storage.registry`) and, through psutil (the ``tools`` extra:
``pip install phpsess[tools]``), the holders' command lines and ages.

This answers "why does my page hang?": every locked ``sess_*`` file under a save_path
with the pid and command line of the process holding its flock, how long that process
has run, how long it has held the lock when known (phpsess's own processes), and how
many processes wait for it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Iterator

from ..storage.files import parse_save_path
from ..storage.flock import PROC_LOCKS, LockEntry, parse_proc_locks
from ..storage.registry import read_registry

__all__ = ["Holder", "SessionLock", "session_files", "inspect_locks"]


def session_files(save_path: str) -> Iterator[str]:
    """Every ``sess_*`` file under the directory of ``save_path`` (``PATH``, ``N;PATH``,
    ``N;MODE;PATH``; empty = the temp dir), at any depth."""
    for path, _dev, _ino in _walk(_save_dir(save_path)):
        yield path


def _save_dir(save_path: str) -> str:
    try:
        return parse_save_path(save_path).basedir
    except Exception:  # an out-of-range N or MODE: the path is still the last part
        return save_path.rsplit(";", 1)[-1]


def _walk(root: str) -> Iterator[tuple[str, int, int]]:
    """``(path, st_dev, inode)`` of each ``sess_*`` entry under ``root``, symlinks not followed.

    One ``stat`` per directory: entries share their directory's device (bind
    mounts aside), and ``scandir`` gives the inode without a ``stat`` per file.
    """
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            dev = os.stat(top).st_dev
            it = os.scandir(top)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.name.startswith("sess_"):
                        yield entry.path, dev, entry.inode()
                except OSError:
                    continue


@dataclasses.dataclass
class Holder:
    """A process holding a session's flock (several for a shared lock)."""

    pid: int
    mode: str  # WRITE (exclusive) or READ (shared)
    cmdline: str
    process_seconds: float | None  # how long the process has been running
    held_seconds: float | None  # how long it has held this lock (phpsess processes only)
    #: the request a phpsess pool worker was serving when it took the lock (empty: unknown)
    method: str = ""
    uri: str = ""
    script: str = ""
    request_seconds: float | None = None  # how long that request has run


@dataclasses.dataclass
class SessionLock:
    """A locked session file and what is known about its holder(s) and waiters.

    ``pid``, ``mode``, ``cmdline``, ``process_seconds`` and ``held_seconds``
    describe the first holder; ``holders`` lists all of them (more than one for
    shared locks, e.g. ``read_and_close`` requests).
    """

    id: str
    path: str
    pid: int
    mode: str
    cmdline: str
    process_seconds: float | None
    held_seconds: float | None
    waiters: int
    waiter_pids: list[int]
    holders: list[Holder]

    def as_json(self) -> dict[str, Any]:
        """The JSON object ``phpsess locks --json`` prints for this lock."""
        return dataclasses.asdict(self)


#: shown instead of a holder's command line when psutil is not installed
NO_PSUTIL = "(install phpsess[tools] for the command line)"


def _process(pid: int, now: float) -> tuple[str, float | None]:
    """A process's command line and how long it has run, through psutil (an extra)."""
    try:
        import psutil
    except ImportError:
        return NO_PSUTIL, None
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline()) or f"[{proc.name()}]"
        return cmdline, round(max(0.0, now - proc.create_time()), 3)
    except (psutil.Error, OSError):
        return "", None


def _describe(pid: int, dev: int, ino: int, mode: str, now: float, registry_dir_: str | None) -> Holder:
    cmdline, process_seconds = _process(pid, now)
    records = read_registry(pid, registry_dir_)
    for rec in records or ():
        if rec.dev == dev and rec.inode == ino and rec.shared == (mode == "READ"):
            held = round(max(0.0, now - rec.acquired), 3)
            age = round(max(0.0, now - rec.request_started), 3) if rec.request_started else None
            return Holder(pid, mode, cmdline, process_seconds, held, rec.method, rec.uri, rec.script, age)
    return Holder(pid, mode, cmdline, process_seconds, None)


def inspect_locks(
    save_path: str,
    *,
    proc_locks: str = PROC_LOCKS,
    registry: str | None = None,
    now: float | None = None,
) -> list[SessionLock]:
    """The session files under ``save_path`` (any depth) that some process holds a flock on now.

    :param proc_locks: the lock table to read (tests pass a file).
    :param registry: the lock registry directory (default: each holder's user's, see
        :func:`phpsess.storage.registry.registry_dir`; ``"off"``:
        do not look, every ``held_seconds`` is None).
    :returns: one :class:`SessionLock` per locked file, most waiters first.
    """
    with open(proc_locks, encoding="ascii", errors="replace") as fh:
        entries = [e for e in parse_proc_locks(fh.read()) if e.kind == "FLOCK"]
    if not entries:
        return []
    by_inode: dict[tuple[tuple[int, int], int], list[LockEntry]] = {}
    for e in entries:
        by_inode.setdefault((e.dev, e.inode), []).append(e)
    t = time.time() if now is None else now
    reg = registry  # None: each holder's own user's registry directory
    result: list[SessionLock] = []
    for path, dev, ino in _walk(_save_dir(save_path)):
        found = by_inode.get(((os.major(dev), os.minor(dev)), ino))
        if not found:
            continue
        holders = [e for e in found if not e.blocked]
        waiters = [e for e in found if e.blocked]
        if not holders:
            continue
        described = [_describe(h.pid, dev, ino, h.mode, t, reg) for h in holders]
        first = described[0]
        result.append(
            SessionLock(
                id=os.path.basename(path)[5:],
                path=path,
                pid=first.pid,
                mode=first.mode,
                cmdline=first.cmdline,
                process_seconds=first.process_seconds,
                held_seconds=first.held_seconds,
                waiters=len(waiters),
                waiter_pids=[w.pid for w in waiters],
                holders=described,
            )
        )
    result.sort(key=lambda lock: (-lock.waiters, lock.path))
    return result
