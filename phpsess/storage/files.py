"""The ``files`` save handler: ``sess_<id>`` files shared with PHP. Does file I/O.

A one-for-one port of PHP 8.2's ``ext/session/mod_files.c``: same ``save_path``
syntax (``PATH``, ``N;PATH``, ``N;MODE;PATH``), same file names and modes, and the
same lock -- BSD ``flock(LOCK_EX)`` on the session file, taken by :meth:`read` and
held until :meth:`close` -- so PHP and Python requests exclude each other.

Where phpsess differs, PHP cannot tell (docs/handlers.md, "files"):

* writes never pass through an empty or torn file (``pwrite`` over the old bytes,
  then ``ftruncate`` to the new length, with a tail PHP's decoder ignores), and
  never replace the inode PHP locks;
* the lock wait may be bounded (``session.lock_timeout``) and the queue capped
  (``session.lock_max_waiters``);
* gc never deletes a file another request holds locked;
* a reader that wins the lock on a file that was deleted meanwhile opens it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import stat
import time
from typing import Any, Final, Iterable, Iterator

from ..core import ids
from . import flock, registry
from .rundir import runtime_dir
from ..core.config import SessionConfig
from ..core.zend import strtol
from ..errors import InvalidSessionId, SaveHandlerError, SessionError
from .base import LockInfo, SaveHandler

__all__ = [
    "FilesHandler",
    "SavePath",
    "parse_save_path",
    "session_file_path",
    "default_temp_dir",
    "crash_safe_image",
    "sweep",
    "sweep_lock",
    "strip_crash_padding",
    "MAXPATHLEN",
    "FILE_PREFIX",
]

log: Final = logging.getLogger(__name__)

# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_fstat: Final = os.fstat
_close: Final = os.close
_open: Final = os.open

#: Linux PATH_MAX, PHP's MAXPATHLEN
MAXPATHLEN: Final = 4096
#: mod_files.c: FILE_PREFIX
FILE_PREFIX: Final = "sess_"

_SIZE_T: Final = 1 << 64
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_ERROR: Final = (
    "Failed to create session data file path. Too short session ID, "
    f"invalid save_path or path length exceeds {MAXPATHLEN} characters"
)
_warned_listable: Final[set[str]] = set()


def _warn_if_listable(basedir: str) -> None:
    """Warn once per process when other users can list ``basedir``: they can read the
    session ids from the file names (Debian keeps /var/lib/php/sessions at 1733)."""
    if basedir in _warned_listable:
        return
    _warned_listable.add(basedir)
    try:
        mode = os.stat(basedir).st_mode
    except OSError:
        return  # surfaces at read, with PHP's message
    if mode & stat.S_IROTH:
        log.warning(
            "session.save_path %s can be listed by other users (mode %o): they can read "
            "session ids from the file names and hijack sessions; use a directory with "
            "mode 1733 or 0700", basedir, stat.S_IMODE(mode))


_libc: Any = None


def _reserve(fd: int, size: int) -> None:
    """Allocate the blocks a growing write needs without changing the file's size
    (``fallocate(FALLOC_FL_KEEP_SIZE)``), so a full disk fails before the write
    instead of leaving the first page of the new session over the old one.

    :raises OSError: ENOSPC (file systems without fallocate are left as they are).
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _libc = False
    if _libc is False:
        return
    if _libc.fallocate(fd, 1, 0, size) != 0:  # 1 = FALLOC_FL_KEEP_SIZE
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err, os.strerror(err))


#: save_path string -> (parsed, {sid: path}): shared by the handler instances of a process
_PARSED: Final[dict[str, tuple["SavePath", dict[str, str]]]] = {}
#: retries of a read whose file was deleted while we waited for its lock
_MAX_REOPEN: Final = 100


# -- pure helpers ----------------------------------------------------------------------


class SavePath:
    """A parsed ``session.save_path``: directory depth, file mode, base directory."""

    __slots__ = ("dirdepth", "filemode", "basedir")

    def __init__(self, dirdepth: int, filemode: int, basedir: str) -> None:
        self.dirdepth = dirdepth  # as PHP's size_t: a negative N wraps to a huge depth
        self.filemode = filemode
        self.basedir = basedir

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SavePath):
            return NotImplemented
        return (self.dirdepth, self.filemode, self.basedir) == (
            other.dirdepth,
            other.filemode,
            other.basedir,
        )

    def __repr__(self) -> str:
        return f"SavePath({self.dirdepth}, 0o{self.filemode:o}, {self.basedir!r})"


def default_temp_dir(environ: dict[str, str] | None = None) -> str:
    """PHP's ``php_get_temporary_directory()`` on Linux: ``$TMPDIR`` (one trailing ``/``
    dropped) when set and non-empty, else ``P_tmpdir`` = ``/tmp``.

    Reads only the environment, never the file system (unlike ``tempfile.gettempdir``,
    which also looks at ``$TEMP``/``$TMP`` and probes directories).
    """
    env = os.environ if environ is None else environ
    value = env.get("TMPDIR", "")
    if value:
        return value[:-1] if value.endswith("/") else value
    return "/tmp"


def parse_save_path(save_path: str, environ: dict[str, str] | None = None) -> SavePath:
    """Parse ``PATH`` | ``N;PATH`` | ``N;MODE;PATH`` exactly as ``PS_OPEN_FUNC(files)``.

    Empty means the temp dir (:func:`default_temp_dir`).  Only the first two ``;``
    split (the path may contain more).  ``N`` is ``strtol`` base 10 (garbage: 0;
    negative: wraps like C's ``size_t``), ``MODE`` ``strtol`` base 8 (``"0999"``: 0),
    default ``0600``.  No I/O.

    :raises SaveHandlerError: with PHP's text, for an out-of-range ``N`` or ``MODE``.
    """
    if save_path == "":
        save_path = default_temp_dir(environ)
    parts = save_path.split(";", 2)
    dirdepth = 0
    filemode = 0o600
    if len(parts) > 1:
        value, _, erange = strtol(parts[0], 10)
        if erange:
            raise SaveHandlerError(
                "The first parameter in session.save_path is invalid", handler="files", operation="open"
            )
        dirdepth = value % _SIZE_T
    if len(parts) > 2:
        value, _, erange = strtol(parts[1], 8)
        if erange or value < 0 or value > 0o7777:
            raise SaveHandlerError(
                "The second parameter in session.save_path is invalid", handler="files", operation="open"
            )
        filemode = value
    return SavePath(dirdepth, filemode, parts[-1])


def session_file_path(sp: SavePath, sid: str) -> str:
    """``PATH/[id[0]/.../id[N-1]/]sess_<id>`` (``ps_files_path_create``). Pure.

    :raises InvalidSessionId: ``sid`` fails PHP's key check (``[A-Za-z0-9,-]{1,256}``).
    :raises SaveHandlerError: id not longer than the depth, empty base directory, or
        a path over ``MAXPATHLEN`` -- PHP's "Failed to create session data file path".
    """
    sid = sid.split("\0", 1)[0]  # mod_files.c works on the C string: a NUL ends the id
    if not ids.is_valid_id(sid):
        raise InvalidSessionId(sid)
    base = sp.basedir
    base_len = len(base) if base.isascii() else len(os.fsencode(base))  # (bytes, as PHP counts)
    depth = sp.dirdepth
    if base_len == 0 or len(sid) <= depth or base_len + 2 * depth + len(sid) + 5 + 6 > MAXPATHLEN:
        raise SaveHandlerError(_PATH_ERROR, handler="files", operation="open")
    sub = "".join(c + "/" for c in sid[:depth])
    return f"{sp.basedir}/{sub}{FILE_PREFIX}{sid}"


def crash_safe_image(new: bytes, old_size: int, serialize_handler: str) -> bytes:
    """The bytes to ``pwrite`` at offset 0 before ``ftruncate(len(new))`` when shrinking.

    The image is ``new`` followed by a tail that PHP's decoder of
    ``serialize_handler`` ignores, long enough to cover all ``old_size`` old bytes,
    so that the file reads as ``new`` both before and after the truncation:

    * ``php_serialize``: ``unserialize()`` stops after the outer array -- no tail needed;
    * ``php``: ``<first key>|R:0…01;`` re-assigns the first key to a reference to
      its own value (slot 1), zero-padded to the needed length (at least one zero:
      PHP never writes one, so :func:`strip_crash_padding` can recognise it);
    * ``php_binary``: the same with the binary key header.

    When ``new`` does not start with a key (not session data), ``new`` is returned.  Pure.
    """
    head = _padding_head(new, serialize_handler)
    if head is None:
        return new
    zeros = max(1, old_size - len(new) - len(head) - 2)  # 2: "1;"
    return new + head + b"0" * zeros + b"1;"


def _padding_head(data: bytes, serialize_handler: str) -> bytes | None:
    """``<first key>|R:`` (php) or ``<len><first key>R:`` (php_binary) of ``data``, or None."""
    if serialize_handler == "php":
        bar = data.find(b"|")
        return None if bar < 0 else data[: bar + 1] + b"R:"
    if serialize_handler == "php_binary":
        if not data:
            return None
        keylen = data[0] & 0x7F
        return None if keylen + 1 >= len(data) else data[: keylen + 1] + b"R:"
    return None


def strip_crash_padding(data: bytes, serialize_handler: str) -> bytes:
    """Undo a :func:`crash_safe_image` left behind by a writer killed before its truncate.

    The tail re-assigns the first key (which PHP's encoders never write twice) with
    a zero-padded ``R:0…01;`` (which they never write at all), so it cannot be
    mistaken for session data.  Anything else is returned unchanged.  Pure.
    """
    if data[-3:] != b"01;":  # the common case, at once
        return data
    head = _padding_head(data, serialize_handler)
    if head is None:
        return data
    end = len(data) - 2
    while end > 0 and data[end - 1] == 0x30:  # the zero padding
        end -= 1
    if end == len(data) - 2:
        return data  # no leading zero: PHP's own R:n, not our padding
    start = end - len(head)
    if start <= 0 or data[start:end] != head or data[start - 1] not in b";}":
        return data
    return data[:start]


# -- gc ---------------------------------------------------------------------------------


def sweep(
    paths: Iterable[str],
    max_lifetime: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
    unlink_others: bool = False,
) -> list[str]:
    """Delete the session files among ``paths`` idle (mtime) longer than ``max_lifetime``
    seconds, with PHP's arithmetic (whole seconds); return the deleted paths.

    Safe while requests run, PHP's included: a file is deleted only when its flock
    can be taken without waiting (no request holds it), nobody waits for it in
    ``flock`` either, and -- under that lock -- its mtime is still too old and the
    path still names the locked inode.  Entries that are not regular files
    (symlinks, FIFOs) are never opened in a blocking way; with ``unlink_others``
    they are judged by ``stat`` and unlinked as PHP's gc does, else left alone.
    ``dry_run``: what would be deleted (nothing is locked but for the check).
    """
    return [path for path in paths if _sweep_one(path, max_lifetime, now, dry_run, unlink_others)]


def _sweep_one(path: str, max_lifetime: float, now: float | None, dry_run: bool, unlink_others: bool) -> bool:
    """:func:`sweep` of one path: True when it was (or, ``dry_run``, would be) deleted."""
    t = int(time.time() if now is None else now)
    try:
        st = os.stat(path) if unlink_others else os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    if t - int(st.st_mtime) <= max_lifetime:
        return False
    try:
        fd = _open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        # not a regular file we can lock (a symlink: ELOOP...): PHP's plain stat + unlink
        if unlink_others and exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EACCES):
            return dry_run or _unlink_quietly(path)
        return False
    try:
        if not flock.try_lock(fd):
            return False  # a request holds it: alive, whatever its mtime says
        locked = _fstat(fd)
        if not stat.S_ISREG(locked.st_mode):
            # a fifo or device named sess_*: PHP unlinks it too
            return unlink_others and (dry_run or _unlink_quietly(path))
        if locked.st_nlink == 0:
            return False
        current = os.stat(path, follow_symlinks=False)
        if (current.st_dev, current.st_ino) != (locked.st_dev, locked.st_ino):
            return False  # replaced meanwhile: not the file we judged
        t = int(time.time() if now is None else now)
        if t - int(locked.st_mtime) <= max_lifetime:
            return False  # written meanwhile
        if flock.count_waiters(locked.st_dev, locked.st_ino):
            return False  # a request is queued for it: about to be used
        return dry_run or _unlink_quietly(path)
    except OSError:
        return False
    finally:
        _close(fd)


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError as exc:
        log.warning("gc: cannot delete %s: %s", path, exc)
        return False
    return True


@contextlib.contextmanager
def sweep_lock(basedir: str) -> Iterator[bool]:
    """``with sweep_lock(dir) as mine:`` -- ``mine`` is True for the one process of this
    user that may sweep ``dir`` now, False while another one does.

    A fasteners inter-process lock on a file in the user's private runtime directory
    (:mod:`phpsess.storage.rundir`; a POSIX record lock, never waited for: the sweep
    is skipped, as PHP skips gc by chance).  Without a runtime directory every
    process may sweep (as in PHP).  The sweeper deletes the lock file before letting
    go of it, so no file is left per save_path ever swept (a process that opened the
    old file meanwhile may then sweep beside the next one: only an economy is lost,
    gc is safe in parallel).
    """
    directory = runtime_dir()
    if directory is None:
        yield True
        return
    import fasteners

    digest = hashlib.sha256(os.fsencode(os.path.abspath(basedir))).hexdigest()[:24]
    path = os.path.join(directory, f"gc-{digest}.lock")
    lock = fasteners.InterProcessLock(path)
    try:
        mine = lock.acquire(blocking=False)
    except OSError as exc:
        log.debug("gc sweep lock unavailable: %s", exc)
        mine = True
    try:
        yield bool(mine)
    finally:
        if lock.acquired:
            try:
                os.unlink(path)  # while still held: a later sweep makes a new one
            except OSError:
                pass
            lock.release()
        else:
            # fasteners keeps the lock file open after a failed non-blocking acquire
            getattr(lock, "_do_close", lambda: None)()


# -- the handler -----------------------------------------------------------------------


def _oserror_text(exc: OSError) -> str:
    code = exc.errno or 0
    return f"{os.strerror(code)} ({code})"


class FilesHandler(SaveHandler):
    """PHP's ``files`` save handler (``session.save_handler = files``).

    One instance serves one request: :meth:`read` opens ``sess_<id>`` and takes its
    flock, kept (with the descriptor) until :meth:`close`, :meth:`destroy`, or an
    operation on another id.
    """

    name = "files"
    has_validator = True

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self.save_path: SavePath | None = None
        self._save_path_raw = ""
        self._fd = -1
        self._sid: str | None = None
        self._path = ""
        self._size = 0
        self._shared = False
        self._registry_slot = -1  # phpsess.storage.registry record of the lock held (held_seconds)
        self._lock_fd = -1  # the descriptor being locked, for the lock hooks
        self._lock_st: os.stat_result | None = None
        self._paths: dict[str, str] = {}  # sid -> path under the current save_path

    # -- PS_OPEN / PS_CLOSE ---------------------------------------------------------------
    def open(self, save_path: str, name: str) -> None:
        """PS_OPEN: parse ``save_path``; no file system access (errors surface at read).

        :raises SaveHandlerError: PHP's "The first/second parameter in
            session.save_path is invalid".
        """
        self.close()
        if self.save_path is not None and save_path == self._save_path_raw and save_path:
            return  # same save_path as the last open: parsed already, path cache still right
        cached = _PARSED.get(save_path) if save_path else None
        if cached is None:
            cached = (parse_save_path(save_path), {})
            _warn_if_listable(cached[0].basedir)
            if save_path:  # "" depends on $TMPDIR: parsed each time
                if len(_PARSED) >= 64:
                    _PARSED.clear()
                _PARSED[save_path] = cached
        self.save_path, self._paths = cached
        self._save_path_raw = save_path

    def close(self) -> None:
        """PS_CLOSE: close the descriptor, which releases the flock.  Safe when nothing is open."""
        fd = self._fd
        self._fd = -1
        self._sid = None
        self._shared = False
        if fd >= 0:
            if self._registry_slot >= 0:
                registry.note_released(self._registry_slot)
                self._registry_slot = -1
            _close(fd)

    # -- paths ----------------------------------------------------------------------------
    def path(self, sid: str) -> str:
        """The file that holds ``sid`` (no I/O).

        :raises InvalidSessionId: for an id PHP's files handler refuses.
        :raises SaveHandlerError: too short id / path too long, or :meth:`open` not called.
        """
        if self.save_path is None:
            raise SaveHandlerError("files handler used before open()", handler="files", operation="open")
        path = self._paths.get(sid)
        if path is None:
            path = session_file_path(self.save_path, sid)
            if len(self._paths) >= 1024:
                self._paths.clear()
            self._paths[sid] = path
        return path

    # -- opening and locking (ps_files_open) ------------------------------------------------
    def _open_locked(self, sid: str, shared: bool, operation: str) -> None:
        """Open ``sid``'s file and lock it, unless it is already open (ps_files_open)."""
        if self._fd >= 0 and self._sid == sid and self._shared == shared:
            self.lock_info = LockInfo(0.0, shared)
            try:
                self._size = _fstat(self._fd).st_size
            except OSError as exc:
                raise SaveHandlerError(
                    f"fstat failed: {_oserror_text(exc)}", handler="files", operation=operation,
                    cause=exc,
                )
            return
        self.close()
        self.lock_info = LockInfo(0.0, shared)
        path = self.path(sid)
        deadline: float | None = None  # the policy's, from the first wait on
        waited = 0.0
        for _ in range(_MAX_REOPEN):
            fd = self._lock_fd = self._open_file(path)
            try:
                now_waited = self.acquire_lock(sid, shared=shared, deadline=deadline, waited=waited)
                waited += now_waited
                # taken at once: _lock_try's fstat is the file's; after a wait, look again
                st = _fstat(fd) if now_waited or self._lock_st is None else self._lock_st
            except SessionError:
                _close(fd)
                raise
            except OSError as exc:
                _close(fd)
                raise SaveHandlerError(
                    f"flock({path}) failed: {_oserror_text(exc)}", handler="files", operation="lock",
                    cause=exc,
                )
            except BaseException:  # KeyboardInterrupt while waiting...
                _close(fd)
                raise
            finally:
                self._lock_fd = -1
            if st.st_nlink == 0:
                # destroy() or gc unlinked the file while we waited for its lock:
                # lock the file now at that path instead (PHP would use the dead inode)
                _close(fd)
                deadline = self.lock_deadline(waited)
                continue
            self._fd = fd
            self._sid = sid
            self._path = path
            self._size = st.st_size
            self._shared = shared
            self._registry_slot = registry.note_acquired(st.st_dev, st.st_ino, shared=shared)
            self.lock_acquired(sid, shared=shared, waited=waited)
            return
        raise SaveHandlerError(
            f"session file {path} was deleted {_MAX_REOPEN} times while waiting for its lock",
            handler="files",
            operation=operation,
        )

    # -- the lock policy's hooks (SaveHandler.acquire_lock): flock on the file being opened
    def _lock_try(self, sid: str, shared: bool) -> bool:
        fd = self._lock_fd
        got = flock.try_lock(fd, shared=shared)
        st = self._lock_st = _fstat(fd)
        self._check_owner(st)  # before waiting too, as PHP checks before its flock
        return got

    def _lock_wait(self, sid: str, shared: bool, timeout: float | None) -> bool:
        try:
            flock.wait_lock(self._lock_fd, shared=shared, timeout=0.0 if timeout is None else timeout)
        except TimeoutError:
            return False
        return True

    def _lock_waiters(self, sid: str) -> int:
        st = self._lock_st
        return 0 if st is None else flock.count_waiters(st.st_dev, st.st_ino)

    def _lock_where(self, sid: str) -> str:
        return self.path(sid)

    def _open_file(self, path: str) -> int:
        try:
            return _open(path, _OPEN_FLAGS, self.save_path.filemode if self.save_path else 0o600)
        except OSError as exc:
            # O_NOFOLLOW: a planted symlink gives ELOOP and nothing is created at its target
            raise SaveHandlerError(
                f"open({path}, O_RDWR) failed: {_oserror_text(exc)}", handler="files", operation="open",
                cause=exc,
            )

    @staticmethod
    def _check_owner(st: os.stat_result) -> None:
        # mod_files.c: accept files of root, of our real or effective uid, or anything as root
        uid = st.st_uid
        if uid != 0 and os.getuid() != 0 and uid != os.getuid() and uid != os.geteuid():
            raise SaveHandlerError(
                "Session data file is not created by your uid", handler="files", operation="open"
            )

    # -- PS_READ ----------------------------------------------------------------------------
    def read(self, sid: str, *, shared: bool = False) -> bytes:
        """PS_READ: open (creating it empty) and lock ``sid``'s file, return its bytes.

        The flock (``LOCK_EX``; ``LOCK_SH`` when ``shared``, for read_and_close) is
        held until :meth:`close`.  ``lock_info.waited`` says how long it waited.

        :raises InvalidSessionId: illegal characters or over 256 characters; nothing
            is touched on disk.
        :raises SaveHandlerError: PHP's texts: ``open(PATH, O_RDWR) failed: ...``
            (missing directory, symlink), ``Session data file is not created by your
            uid``, ``Read failed: ...``, ``Read returned less bytes than requested``.
        :raises LockTimeout: ``session.lock_timeout`` expired first.
        :raises LockBusy: ``session.lock_max_waiters`` requests already wait.
        """
        self._open_locked(sid, shared, "read")
        fd = self._fd
        try:
            size = self._size
            if size == 0:
                return b""
            data = os.pread(fd, size, 0)
            while len(data) < size:
                more = os.pread(fd, size - len(data), len(data))
                if not more:
                    raise SaveHandlerError(
                        "Read returned less bytes than requested", handler="files", operation="read"
                    )
                data += more
        except OSError as exc:
            raise SaveHandlerError(
                f"Read failed: {_oserror_text(exc)}", handler="files", operation="read",
                cause=exc,
            )
        clean = strip_crash_padding(data, self.config.serialize_handler)
        if len(clean) != len(data) and not shared:
            # a writer died between its pwrite and its ftruncate: finish its work
            try:
                os.ftruncate(fd, len(clean))
                self._size = len(clean)
            except OSError:
                pass
        return clean

    # -- PS_WRITE ---------------------------------------------------------------------------
    def write(self, sid: str, data: bytes) -> None:
        """PS_WRITE: replace ``sid``'s bytes in place, on the same locked inode.

        Opens and locks the file first if :meth:`read` did not (PHP does the same).
        Growing or same size: one ``pwrite`` at offset 0 (growing over old bytes: their
        blocks reserved first, so a full disk fails before anything changes; over an
        empty file: emptied again if the write fails).  Empty: ``ftruncate(0)``.
        Shrinking: ``pwrite`` of :func:`crash_safe_image` then ``ftruncate(len)``.
        So a process killed at any instant leaves the old or the new session as PHP
        reads it (for writes of up to one page; docs/handlers.md).

        :raises SaveHandlerError: ``Write failed: ...`` / ``Write wrote less bytes
            than requested``, or a write under a shared (read-only) lock.
        """
        if self._fd < 0 or self._sid != sid:
            self._open_locked(sid, False, "write")
        if self._shared:
            raise SaveHandlerError(
                f"session {sid} is locked read-only (shared); it cannot be written",
                handler="files",
                operation="write",
            )
        fd = self._fd
        old = self._size
        n = len(data)
        try:
            if n == 0:
                os.ftruncate(fd, 0)  # also when already empty: PHP's write refreshes the mtime
            elif n >= old:
                if old:
                    if n > old:
                        _reserve(fd, n)  # ENOSPC now, before a byte of the session changes
                    self._pwrite_all(fd, data)
                else:
                    # an empty file has nothing to protect (and reserving first cost a
                    # system call per new session): a failed write is undone instead
                    try:
                        self._pwrite_all(fd, data)
                    except BaseException:
                        try:
                            os.ftruncate(fd, 0)
                        except OSError:
                            pass
                        raise
            else:
                self._pwrite_all(fd, crash_safe_image(data, old, self.config.serialize_handler))
                os.ftruncate(fd, n)
        except OSError as exc:
            raise SaveHandlerError(
                f"Write failed: {_oserror_text(exc)}", handler="files", operation="write",
                cause=exc,
            )
        self._size = n

    @staticmethod
    def _pwrite_all(fd: int, data: bytes) -> None:
        done = os.pwrite(fd, data, 0)
        if done == len(data):
            return
        view = memoryview(data)
        while done < len(data):
            try:
                step = os.pwrite(fd, view[done:], done)
            except OSError as exc:
                raise SaveHandlerError(
                    "Write wrote less bytes than requested", handler="files", operation="write",
                    cause=exc,
                )
            if step <= 0:
                raise SaveHandlerError(
                    "Write wrote less bytes than requested", handler="files", operation="write"
                )
            done += step

    # -- PS_UPDATE_TIMESTAMP ----------------------------------------------------------------
    def update_timestamp(self, sid: str, data: bytes) -> None:
        """PS_UPDATE_TIMESTAMP: ``utime(path)`` (atime = mtime = now); if that fails
        (the file is gone), :meth:`write` ``data`` instead, as PHP does."""
        path = self.path(sid)
        try:
            os.utime(path)
        except OSError:
            self.write(sid, data)

    # -- PS_DESTROY -------------------------------------------------------------------------
    def destroy(self, sid: str) -> None:
        """PS_DESTROY: delete ``sid``'s file.  A missing file is not an error.

        When this handler holds ``sid`` locked, the file is unlinked, emptied and
        only then closed (PHP closes first, so a waiting request would lock and read
        the destroyed data): a phpsess waiter then opens a fresh file at the path,
        a PHP waiter reads an empty session.  With nothing open for ``sid``, any
        other open session is closed (as PHP) and the file is unlinked if present.

        :raises InvalidSessionId: illegal id; nothing is touched.
        :raises SaveHandlerError: unlink failed and the file still exists.
        """
        path = self.path(sid)
        if self._fd >= 0 and self._sid == sid:
            fd = self._fd
            try:
                self._unlink(path)
                if not self._shared:  # shared readers may still be reading it
                    try:
                        os.ftruncate(fd, 0)
                    except OSError:
                        pass  # the file is already unlinked: emptying it only helps waiters
            finally:
                self.close()
            return
        self.close()
        self._unlink(path)

    @staticmethod
    def _unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            if not os.path.lexists(path):
                return
            raise SaveHandlerError(
                f"unlink({path}) failed: {_oserror_text(exc)}", handler="files", operation="destroy",
                cause=exc,
            )

    # -- PS_GC ------------------------------------------------------------------------------
    def gc(self, max_lifetime: int, *, now: float | None = None) -> int:
        """PS_GC: delete ``sess_*`` files whose mtime is more than ``max_lifetime``
        seconds old; return how many.  Depth > 0: nothing, -1 (as PHP).

        Unlike PHP, a session in use is never deleted (:func:`sweep`), and only one
        process of this user sweeps a directory at a time: when another one is
        sweeping it already, this one returns 0 at once (:func:`sweep_lock`) instead
        of scanning the same directory beside it.  Entries that are not regular
        files (symlinks...) are judged by ``stat`` and unlinked as PHP does.

        :param now: the clock (``time.time()``), for tests.
        :raises SaveHandlerError: PHP's ``ps_files_cleanup_dir: opendir(...) failed``.
        """
        if self.save_path is None:
            raise SaveHandlerError("files handler used before open()", handler="files", operation="gc")
        if self.save_path.dirdepth != 0:
            return -1  # mod_files.c: cleanup only for dirdepth == 0
        basedir = self.save_path.basedir
        try:
            entries = os.scandir(basedir)
        except OSError as exc:
            raise SaveHandlerError(
                f"ps_files_cleanup_dir: opendir({basedir}) failed: {_oserror_text(exc)}",
                handler="files",
                operation="gc",
                cause=exc,
            )
        with entries, sweep_lock(basedir) as mine:
            if not mine:
                log.debug("gc of %s: another process is sweeping it", basedir)
                return 0
            names = [
                f"{basedir}/{e.name}" for e in entries
                if e.name.startswith(FILE_PREFIX)
                and len(os.fsencode(e.name)) + len(os.fsencode(basedir)) + 2 < MAXPATHLEN
            ]
            deleted = len(sweep(names, max_lifetime, now=now, unlink_others=True))
        log.debug("gc of %s: %d deleted", basedir, deleted)
        return deleted

    # -- PS_CREATE_SID / PS_VALIDATE_SID ----------------------------------------------------
    def create_sid(self) -> str:
        """PS_CREATE_SID: a new id from :func:`phpsess.core.ids.create_id`; if its file
        exists, try again (PHP: at most 3 retries).

        :raises SaveHandlerError: four ids in a row collided.
        """
        return self.unused_id(self._exists)

    def validate_id(self, sid: str) -> bool:
        """PS_VALIDATE_SID: True when ``sid`` is a valid id and its file exists (``stat``)."""
        return self._exists(sid)

    def _exists(self, sid: str) -> bool:
        try:
            path = self.path(sid)
        except (InvalidSessionId, SaveHandlerError):
            return False
        # PHP stat()s the path; access(F_OK) answers the same (the file is there and
        # the directories searchable) without an exception for the usual "no"
        return os.access(path, os.F_OK)

