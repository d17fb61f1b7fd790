"""The lock inspector: which session files are locked right now, by whom, with how many waiters.
Reads /proc/locks, the save_path directory and (through psutil) the holders' processes.

This answers "why does my page hang?": ``phpsess locks`` lists every locked
``sess_*`` file under a save_path with the pid and command line of the process
holding its flock, how long that process has run, how long it has held the
lock when known, and how many processes wait for it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Iterable

__all__ = ["LockEntry", "SessionLock", "parse_proc_locks", "session_files", "inspect_locks"]


@dataclasses.dataclass(frozen=True)
class LockEntry:
    """One line of /proc/locks."""

    kind: str  # FLOCK, POSIX, OFDLCK, LEASE
    mode: str  # READ or WRITE
    pid: int
    dev: tuple[int, int]  # (major, minor)
    inode: int
    blocked: bool  # a waiter ("->" line), not a holder


def parse_proc_locks(text: str) -> list[LockEntry]:
    """Parse the text of /proc/locks. Pure.

    ``1: FLOCK  ADVISORY  WRITE 4242 08:01:1835016 0 EOF`` is a holder;
    ``1: -> FLOCK  ADVISORY  WRITE 4243 08:01:1835016 0 EOF`` a process waiting for it.
    Major and minor device numbers are hexadecimal.
    """
    out: list[LockEntry] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        blocked = parts[1] == "->"
        fields = parts[2:] if blocked else parts[1:]
        if len(fields) < 5:
            continue
        kind, _advisory, mode, pid_s, where = fields[:5]
        try:
            major_s, minor_s, inode_s = where.split(":")
            entry = LockEntry(
                kind=kind,
                mode=mode,
                pid=int(pid_s),
                dev=(int(major_s, 16), int(minor_s, 16)),
                inode=int(inode_s),
                blocked=blocked,
            )
        except ValueError:
            continue
        out.append(entry)
    return out


def session_files(save_path: str) -> Iterable[str]:
    """Every ``sess_*`` file under ``save_path`` (the path part of ``N;MODE;PATH``), any depth."""
    root = save_path.rsplit(";", 1)[-1] if ";" in save_path else save_path
    root = root or "/tmp"
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith("sess_"):
                yield os.path.join(dirpath, name)


@dataclasses.dataclass
class SessionLock:
    """A locked session file and what is known about its holder and waiters."""

    id: str
    path: str
    pid: int
    mode: str
    cmdline: str
    process_seconds: float | None
    held_seconds: float | None
    waiters: int
    waiter_pids: list[int]

    def as_json(self) -> dict[str, Any]:
        """The JSON object ``phpsess locks --json`` prints for this lock."""
        return dataclasses.asdict(self)


def inspect_locks(save_path: str, proc_locks: str = "/proc/locks") -> list[SessionLock]:
    """The session files under ``save_path`` that some process holds a lock on now."""
    import psutil

    with open(proc_locks, encoding="ascii", errors="replace") as fh:
        entries = parse_proc_locks(fh.read())
    by_inode: dict[tuple[tuple[int, int], int], list[LockEntry]] = {}
    for e in entries:
        by_inode.setdefault((e.dev, e.inode), []).append(e)
    result: list[SessionLock] = []
    now = time.time()
    for path in session_files(save_path):
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        key = ((os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino)
        found = by_inode.get(key)
        if not found:
            continue
        holders = [e for e in found if not e.blocked]
        waiters = [e for e in found if e.blocked]
        if not holders:
            continue
        holder = holders[0]
        cmdline = ""
        process_seconds: float | None = None
        try:
            proc = psutil.Process(holder.pid)
            cmdline = " ".join(proc.cmdline())
            process_seconds = round(now - proc.create_time(), 3)
        except (psutil.Error, OSError):
            pass
        result.append(
            SessionLock(
                id=os.path.basename(path)[5:],
                path=path,
                pid=holder.pid,
                mode=holder.mode,
                cmdline=cmdline,
                process_seconds=process_seconds,
                held_seconds=None,  # the kernel does not record when a flock was taken
                waiters=len(waiters),
                waiter_pids=[w.pid for w in waiters],
            )
        )
    result.sort(key=lambda lock: (-lock.waiters, lock.path))
    return result

