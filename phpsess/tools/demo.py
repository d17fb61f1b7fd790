"""The demo's two needs outside its pages: where its pages are (the checkout's ``cgi-bin``
or the copy shipped inside the package) and a private directory for its sessions.
Looks at and creates directories (``stat``, ``mkdir``).

``phpsess serve`` with no ``--root`` serves ``./cgi-bin`` when there is one (a
checkout, or an application laid out the same way), else :func:`demo_root`.

PHP's default ``session.save_path`` is the system's temporary directory, which
every local user can list (mode 1777): anyone there reads the session ids from the
file names.  The demo pages therefore keep their sessions in a directory of their
own, mode 0700, unless a ``session.save_path`` was configured (``--ini``,
``$PHPSESS_INI``): :func:`use_private_save_path`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .. import php
from ..storage.rundir import runtime_dir

__all__ = ["PACKAGED_ROOT", "CHECKOUT_ROOT", "demo_root", "default_root", "private_save_path",
           "use_private_save_path", "save_path_note"]

#: where ``pip install phpsess`` puts the demo pages (setup.py copies ``cgi-bin`` there)
PACKAGED_ROOT = Path(__file__).resolve().parent.parent / "cgi-bin"
#: the demo pages of a checkout (an editable install runs from one)
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent.parent / "cgi-bin"


def demo_root() -> str:
    """The directory of the demo pages: the packaged copy, else the checkout's.

    :raises FileNotFoundError: neither exists (a broken install).
    """
    for candidate in (PACKAGED_ROOT, CHECKOUT_ROOT):
        if (candidate / "demo.py").is_file():
            return str(candidate)
    raise FileNotFoundError(2, f"the demo pages are missing (looked in {PACKAGED_ROOT} and {CHECKOUT_ROOT})")


def default_root() -> str:
    """``phpsess serve``'s root when none is given: ``./cgi-bin`` if it is a directory,
    else :func:`demo_root`."""
    return "cgi-bin" if os.path.isdir("cgi-bin") else demo_root()


def private_save_path() -> str:
    """The demo's session directory, made when missing: ``phpsess-<uid>/demo-sessions``
    under phpsess's runtime directory (:func:`phpsess.storage.rundir.runtime_dir`), else
    ``phpsess-demo-<uid>`` in the temporary directory; mode 0700, owned by this user.

    :raises PermissionError: the directory exists but is not private (a symlink, another
        user's, or readable by others): it is refused, not used.
    """
    uid = os.geteuid()
    base = runtime_dir()
    path = os.path.join(base, "demo-sessions") if base else os.path.join(tempfile.gettempdir(), f"phpsess-demo-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise PermissionError(1, f"refusing the demo's session directory {path}: it must be a directory of "
                                 f"uid {uid} with mode 0700 (it is {stat.filemode(st.st_mode)}, uid {st.st_uid})")
    return path


def use_private_save_path() -> str:
    """Point ``session.save_path`` at :func:`private_save_path` unless one is configured.

    :returns: the save path in effect.
    """
    configured = php.ini_get("session.save_path")
    if isinstance(configured, str) and configured:
        return configured
    path = private_save_path()
    php.ini_set("session.save_path", path)
    return path


def save_path_note(save_path: str) -> str:
    """``"/path (mode 0700)"``: where sessions are kept, for the page to say."""
    directory = save_path.rsplit(";", 1)[-1] or tempfile.gettempdir()
    try:
        mode = f"mode {stat.S_IMODE(os.stat(directory).st_mode):04o}"
    except OSError as exc:
        mode = exc.strerror or "missing"
    return f"{directory} ({mode})"
