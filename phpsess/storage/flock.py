"""BSD ``flock`` with a bounded wait, and counting who waits for a lock. Does I/O: flock
on descriptors it is given, reads ``/proc/locks``, and may arm ``ITIMER_REAL``/SIGALRM.

PHP's files handler takes ``flock(fd, LOCK_EX)`` and waits forever.  phpsess keeps
exactly that lock (so PHP and Python exclude each other) and adds an optional bound:

* the uncontended path is a single ``flock(LOCK_NB)`` syscall (:func:`try_lock`);
* without a bound, :func:`wait_lock` is a plain blocking ``flock`` (Python retries
  it on EINTR), which the kernel hands over to the next waiter in microseconds;
* with a bound, in the main thread, the blocking ``flock`` is interrupted by a
  one-shot ``ITIMER_REAL`` whose SIGALRM handler raises; elsewhere (threads, or
  when the application already runs its own ``ITIMER_REAL``) it polls with
  ``LOCK_NB`` and sleeps growing from 50 µs to 5 ms.  Never the 10-100 ms sleeps of
  polling lock libraries: those add their sleep to every handoff.

:func:`count_waiters` reads the kernel's lock table (:func:`parse_proc_locks`), where a process blocked in
``flock`` appears as a ``->`` line under the holder: a waiter that dies vanishes
from the table with it, so the count can never stay stuck.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import signal
import threading
import time
from types import FrameType

__all__ = [
    "try_lock",
    "wait_lock",
    "lock",
    "count_waiters",
    "parse_proc_locks",
    "count_blocked",
    "LockEntry",
    "PROC_LOCKS",
    "POLL_MIN",
    "POLL_MAX",
]

#: the kernel's table of file locks (Linux)
PROC_LOCKS = "/proc/locks"
#: first and longest sleep between LOCK_NB attempts when polling (seconds)
POLL_MIN = 50e-6
POLL_MAX = 5e-3


def _op(shared: bool) -> int:
    return fcntl.LOCK_SH if shared else fcntl.LOCK_EX


_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
_SH_NB = fcntl.LOCK_SH | fcntl.LOCK_NB


def try_lock(fd: int, *, shared: bool = False) -> bool:
    """One ``flock(fd, LOCK_EX|LOCK_NB)`` (``LOCK_SH`` when ``shared``).

    :returns: True when the lock is now held by ``fd``'s open file description.
    :raises OSError: for errors other than "held by someone else".
    """
    try:
        fcntl.flock(fd, _SH_NB if shared else _EX_NB)  # (constants: this runs every request)
    except BlockingIOError:
        return False
    except OSError as exc:  # some kernels/filesystems say EACCES or EAGAIN
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class _Expired(BaseException):
    """Raised by our SIGALRM handler to break out of a blocking flock.

    A BaseException so that no ``except Exception`` between the signal and us
    can swallow it (there is none: it is raised inside ``fcntl.flock``).
    """


def _can_use_alarm() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getitimer(signal.ITIMER_REAL)[0] != 0.0:
        return False  # the application's own timer is running: leave it alone
    return signal.getsignal(signal.SIGALRM) is not None  # None: a C-level handler


def _wait_alarm(fd: int, op: int, timeout: float) -> bool:
    armed = [True]

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            raise _Expired

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            fcntl.flock(fd, op)
            armed[0] = False
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Expired:
        # the timer may have fired between flock returning and the disarm: a
        # non-blocking retry on the same description tells whether we hold it
        return try_lock(fd, shared=op == fcntl.LOCK_SH)
    finally:
        signal.signal(signal.SIGALRM, old)
    return True


def _wait_poll(fd: int, shared: bool, deadline: float) -> bool:
    delay = POLL_MIN
    while True:
        if try_lock(fd, shared=shared):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, POLL_MAX)


def wait_lock(fd: int, *, shared: bool = False, timeout: float = 0.0) -> None:
    """Block until ``fd`` holds the flock; ``timeout`` seconds at most (0: forever, as PHP).

    :raises TimeoutError: when ``timeout`` > 0 expires first (the lock is not held).
    :raises OSError: from ``flock`` itself.
    """
    op = _op(shared)
    if timeout <= 0:
        fcntl.flock(fd, op)  # PEP 475: retried on EINTR after signal handlers ran
        return
    deadline = time.monotonic() + timeout
    if _can_use_alarm():
        if _wait_alarm(fd, op, timeout):
            return
    elif _wait_poll(fd, shared, deadline):
        return
    raise TimeoutError(errno.ETIMEDOUT, f"flock not obtained within {timeout:g} s")


def lock(fd: int, *, shared: bool = False, timeout: float = 0.0) -> float:
    """:func:`try_lock`, then :func:`wait_lock` if contended.

    :returns: the seconds spent waiting (0.0 when uncontended).
    :raises TimeoutError: see :func:`wait_lock`.
    """
    if try_lock(fd, shared=shared):
        return 0.0
    t0 = time.perf_counter()
    wait_lock(fd, shared=shared, timeout=timeout)
    return time.perf_counter() - t0


def count_blocked(text: str, dev: int, ino: int) -> int:
    """Count the blocked FLOCK requests (``->`` lines) on inode ``ino`` of device ``dev``
    (``st_dev``) in the text of /proc/locks.  Pure."""
    where = (os.major(dev), os.minor(dev))
    return sum(
        1 for e in parse_proc_locks(text) if e.blocked and e.kind == "FLOCK" and e.dev == where and e.inode == ino
    )


@dataclasses.dataclass(frozen=True)
class LockEntry:
    """One line of /proc/locks."""

    kind: str  # FLOCK, POSIX, OFDLCK, LEASE, DELEG
    mode: str  # READ or WRITE
    pid: int
    dev: tuple[int, int]  # (major, minor)
    inode: int
    blocked: bool  # a waiter ("->" line), not a holder


def parse_proc_locks(text: str) -> list[LockEntry]:
    """Parse the text of /proc/locks. Pure.

    ``1: FLOCK  ADVISORY  WRITE 4242 08:01:1835016 0 EOF`` is a holder;
    ``1: -> FLOCK  ADVISORY  WRITE 4243 08:01:1835016 0 EOF`` a process waiting for
    it (newer kernels indent a waiter that waits behind another waiter:
    ``1:  -> FLOCK ...``).  Major and minor device numbers are hexadecimal.
    Lines that do not parse (other lock kinds' layouts, a torn read) are skipped.
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


def count_waiters(dev: int, ino: int) -> int:
    """How many processes (PHP's included) are blocked in flock on this inode now.

    Reads ``/proc/locks`` (about 15 µs with a short table); only locks of processes
    in our PID namespace are visible.  Returns 0 when the table cannot be read.
    """
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return 0
    return count_blocked(text, dev, ino)
