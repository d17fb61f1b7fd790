"""Operations commands behind ``phpsess show|gc|locks|destroy``. File system I/O, stdout.

* ``phpsess show ID_OR_FILE``: decode a stored session to readable text or JSON;
* ``phpsess gc --save-path PATH --maxlifetime SECONDS``: for cron (what Debian's
  sessionclean does for PHP), any directory depth, safe while requests hold
  locks: a locked or freshly written session is never deleted;
* ``phpsess locks [--save-path PATH] [--json]``: which sessions are locked now,
  by whom, with how many waiters (phpsess/locks.py);
* ``phpsess destroy ID...``: delete sessions, waiting for their lock like a request.

Each returns the process exit status.
"""

from __future__ import annotations

import base64
import fcntl
import json as _json
import os
import sys
import time
from typing import Any, Iterable

from .config import SessionConfig

__all__ = ["show", "gc", "locks", "destroy", "to_json", "gc_files"]


def to_json(value: Any) -> Any:
    """A JSON-friendly view of a decoded PHP value (objects as ``{"__class__": ..., ...}``)."""
    from . import codec

    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return {"__bytes_base64__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return repr(value)
    obj_types = tuple(
        t for t in (getattr(codec, n, None) for n in ("PHPObject", "PHPCustomObject", "PHPEnum", "PHPReference")) if t
    )
    if obj_types and isinstance(value, obj_types):
        name = type(value).__name__
        if name == "PHPObject":
            props = {str(k).replace("\0", "\\0"): to_json(v) for k, v in value.properties.items()}
            return {"__class__": value.class_name, **props}
        if name == "PHPCustomObject":
            return {"__class__": value.class_name, "__serialized__": to_json(value.data)}
        if name == "PHPEnum":
            return {"__enum__": f"{value.class_name}::{value.case}"}
        return {"__reference__": to_json(value.value)}
    return value


def _session_path(config: SessionConfig, sid: str, save_path: str | None) -> str:
    from . import ids

    if os.sep in sid and os.path.exists(sid):
        return sid
    if not ids.is_valid_id(sid):
        raise ValueError(f"invalid session id {sid!r}")
    raw = save_path if save_path is not None else config.save_path
    depth, path = _split_save_path(raw)
    parts = [path] + [sid[i] for i in range(depth)] + ["sess_" + sid]
    return os.path.join(*parts)


def _split_save_path(raw: str) -> tuple[int, str]:
    parts = raw.split(";", 2)
    if len(parts) == 1:
        depth, path = 0, parts[0]
    elif len(parts) == 2:
        depth, path = _strtol(parts[0]), parts[1]
    else:
        depth, path = _strtol(parts[0]), parts[2]
    import tempfile

    return depth, path or tempfile.gettempdir()


def _strtol(s: str) -> int:
    s = s.strip()
    digits = ""
    for ch in s:
        if ch.isdigit():
            digits += ch
        else:
            break
    return int(digits) if digits else 0


def show(
    config: SessionConfig,
    sid: str,
    raw: bool = False,
    json: bool = False,  # noqa: A002 - the option's name
    save_path: str | None = None,
    serialize_handler: str | None = None,
) -> int:
    """Print a stored session (``sid`` may be an id or a ``sess_*`` file path)."""
    from . import encoding
    from .errors import SessionDecodeError

    path = _session_path(config, sid, save_path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        print(f"phpsess show: no session file {path}", file=sys.stderr)
        return 1
    if raw:
        sys.stdout.buffer.write(data)
        return 0
    handler = serialize_handler or config.serialize_handler
    try:
        decoded = encoding.decode(data, handler) if data else {}
    except SessionDecodeError as exc:
        print(f"phpsess show: {path} does not decode as {handler!r}: {exc}", file=sys.stderr)
        return 2
    if json:
        print(_json_dumps(to_json(decoded)))
    else:
        st = os.stat(path)
        print(f"# {path}  ({len(data)} bytes, {handler}, modified {time.ctime(st.st_mtime)})")
        print(_json_dumps(to_json(decoded), indent=2))
    return 0


def _json_dumps(value: Any, indent: int | None = None) -> str:
    return _json.dumps(value, indent=indent, ensure_ascii=False)


def gc_files(paths: Iterable[str], maxlifetime: int, *, now: float | None = None, dry_run: bool = False) -> list[str]:
    """Delete the session files among ``paths`` idle longer than ``maxlifetime`` seconds.

    A file is deleted only when its flock can be taken without waiting (no
    request holds it) and, under that lock, its mtime is still too old and the
    path still names the locked file.  Returns the deleted paths.
    """
    deleted: list[str] = []
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        t = time.time() if now is None else now
        if t - st.st_mtime <= maxlifetime:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a request holds it: alive, whatever its mtime says
            locked = os.fstat(fd)
            try:
                current = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if (current.st_dev, current.st_ino) != (locked.st_dev, locked.st_ino):
                continue
            t = time.time() if now is None else now
            if t - locked.st_mtime <= maxlifetime:
                continue  # written meanwhile
            if not dry_run:
                os.unlink(path)
            deleted.append(path)
        finally:
            os.close(fd)
    return deleted


def gc(
    config: SessionConfig,
    maxlifetime: int | None = None,
    dry_run: bool = False,
    save_path: str | None = None,
) -> int:
    """``phpsess gc``: delete expired sessions under save_path at any depth."""
    from .locks import session_files

    raw = save_path if save_path is not None else config.save_path
    _depth, root = _split_save_path(raw)
    lifetime = config.gc_maxlifetime if maxlifetime is None else maxlifetime
    if not os.path.isdir(root):
        print(f"phpsess gc: {root} is not a directory", file=sys.stderr)
        return 1
    deleted = gc_files(session_files(root), lifetime, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for path in deleted:
        print(f"{verb} {path}")
    print(f"phpsess gc: {verb} {len(deleted)} session(s) idle > {lifetime} s under {root}")
    return 0


def locks(
    config: SessionConfig,
    save_path: str | None = None,
    json: bool = False,  # noqa: A002 - the option's name
) -> int:
    """``phpsess locks``: the locked sessions under save_path, their holders and waiters."""
    from .locks import inspect_locks

    raw = save_path if save_path is not None else config.save_path
    _depth, root = _split_save_path(raw)
    found = inspect_locks(root)
    if json:
        print(_json_dumps([lock.as_json() for lock in found]))
        return 0
    if not found:
        print(f"no locked sessions under {root}")
        return 0
    print(f"{'ID':<34} {'PID':>7} {'MODE':<5} {'RUNNING':>9} {'WAITERS':>7}  COMMAND")
    for lock in found:
        running = "-" if lock.process_seconds is None else f"{lock.process_seconds:.1f}s"
        print(f"{lock.id:<34} {lock.pid:>7} {lock.mode:<5} {running:>9} {lock.waiters:>7}  {lock.cmdline[:80]}")
    return 0


def destroy(config: SessionConfig, sids: list[str], save_path: str | None = None) -> int:
    """``phpsess destroy ID...``: delete sessions through the configured save handler."""
    from .handlers.base import handler_class

    cfg = config.copy()
    if save_path is not None:
        cfg.set("save_path", save_path, startup=True)
    handler = handler_class(cfg.save_handler)(cfg)
    handler.open(cfg.save_path, cfg.name)
    status = 0
    for sid in sids:
        try:
            handler.read(sid)
            handler.destroy(sid)
            print(f"destroyed {sid}")
        except Exception as exc:  # report and go on with the others
            print(f"phpsess destroy: {sid}: {exc}", file=sys.stderr)
            status = 1
        finally:
            handler.close()
    return status
