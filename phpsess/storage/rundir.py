"""A directory that only this user can write, for phpsess's own small files: the lock
registries (:mod:`phpsess.storage.registry`) and the gc sweep lock of the files handler.
Creates and checks directories (``mkdir``, ``lstat``).

Shared places such as ``/dev/shm`` and ``/tmp`` let any local user create names in
them, so phpsess never opens its own files there directly: it keeps them in
``/dev/shm/phpsess-<uid>`` (``/tmp/phpsess-<uid>`` without ``/dev/shm``), a
directory of its own with mode 0711: others may open a file they know the name
of (``phpsess locks`` reads another user's registries), never list it or create
anything in it.  A directory of that name that is not a real directory, belongs
to someone else, or is writable by others was planted: it is refused, with a
warning, and the features that use it are off for the process (sessions work
as before).  ``$PHPSESS_RUNTIME_DIR`` names another base directory.
"""

from __future__ import annotations

import logging
import os
import stat

__all__ = ["runtime_dir", "is_private_dir"]

log = logging.getLogger(__name__)

_refused: set[str] = set()


def _base() -> str:
    base = os.environ.get("PHPSESS_RUNTIME_DIR", "")
    if base:
        return base
    return "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


def is_private_dir(path: str, uid: int) -> bool:
    """True when ``path`` is a real directory (not a symlink) owned by ``uid`` (or root)
    that neither its group nor others can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid in (uid, 0)
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def runtime_dir(uid: int | None = None, *, create: bool = True) -> str | None:
    """The private directory of ``uid`` (default: this process's effective uid), made when
    missing (``create``); None when it cannot be had safely.

    Another user's directory is only looked up (``create`` is ignored for it).
    """
    me = os.geteuid()
    owner = me if uid is None else uid
    path = os.path.join(_base(), f"phpsess-{owner}")
    if create and owner == me:
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            pass
        except OSError as exc:
            _refuse(path, f"cannot create it: {exc.strerror or exc}")
            return None
    if is_private_dir(path, owner):
        return path
    if owner == me and os.path.lexists(path):
        _refuse(path, "it is not a directory of this user's that only this user can write")
    return None


def _refuse(path: str, why: str) -> None:
    if path not in _refused:
        _refused.add(path)
        log.warning("phpsess runtime directory %s refused: %s (lock registry and gc lock off)", path, why)
