"""Operations commands behind ``phpsess show|gc|locks|destroy``. File system, Redis (and
Redis Cluster) and memcached I/O, stdout.

* ``phpsess show ID_OR_FILE``: decode a stored session to readable text or JSON;
* ``phpsess gc --save-path PATH --maxlifetime SECONDS``: for cron (what Debian's
  sessionclean does for PHP), any directory depth, safe while requests hold
  locks: a locked, awaited or freshly written session is never deleted;
* ``phpsess locks [--save-path PATH] [--json]``: which sessions are locked now,
  by whom, with how many waiters (:mod:`phpsess.tools.inspect` for files; the lock keys
  of a Redis Cluster or memcached save_path);
* ``phpsess destroy ID...``: delete sessions, waiting for their lock like a request.

The CLI calls each as ``tools.NAME(config=SessionConfig, **parsed_arguments)``;
each returns the process exit status (0 ok, 1 failure, 2 undecodable data).
"""

from __future__ import annotations

import base64
import errno
import json as _json
import logging
import os
import stat
import sys
import time
from typing import Any, Iterator

from ..core.config import SessionConfig
from ..core.phparray import PHPArray

__all__ = ["show", "gc", "locks", "destroy", "to_json", "json_text", "read_session_file"]

log = logging.getLogger(__name__)

#: how long ``show`` waits for a request's lock before reading without it
SHOW_LOCK_WAIT = 1.0


def to_json(value: Any) -> Any:
    """A JSON-friendly view of a decoded PHP value. Pure.

    Objects become ``{"__class__": NAME, prop: value...}`` (private/protected
    property names keep PHP's ``\\0`` markers, written ``\\0``), custom-serialized
    objects ``{"__class__": NAME, "__serialized__": ...}``, enums
    ``{"__enum__": "Class::Case"}``, PHP references ``{"__reference__": value}``,
    bytes that are not UTF-8 ``{"__bytes_base64__": ...}``, NAN/INF their PHP spelling.

    Every value PHP can store has a view of its own size: an object or reference met
    more than once (``r:``/``R:`` in the payload, cycles included) is written in full
    the first time, with ``"__id__": N``, and as ``{"__same_as__": N}`` after that, so a
    40-level DAG of shared objects stays as small as its payload.  No recursion:
    nesting is bounded by memory, not by Python's stack.
    """
    shared = _shared_nodes(value)
    numbers: dict[int, int] = {}
    open_ids: set[int] = set()  # containers being filled: a Python cycle without PHP types
    root: list[Any] = []
    # (items left, the JSON container they fill, the id of their source while open)
    stack: list[tuple[Iterator[tuple[Any, Any]], Any, int]] = [(iter(((None, value),)), root, 0)]
    while stack:
        items, target, _ = stack[-1]
        for key, v in items:
            out, children = _json_node(v, shared, numbers, open_ids)
            if target.__class__ is list:
                target.append(out)
            else:
                target[key] = out
            if children is not None:
                open_ids.add(id(v))
                stack.append((children, out, id(v)))
                break
        else:
            open_ids.discard(stack.pop()[2])
    return root[0]


_NODE_TYPES: tuple[type, ...] = ()


def _node_types() -> tuple[type, ...]:
    """The decoded types that may be met more than once in one session (``r:``/``R:``)."""
    global _NODE_TYPES
    if not _NODE_TYPES:
        from ..core import codec

        _NODE_TYPES = (codec.PHPObject, codec.PHPCustomObject, codec.PHPReference)
    return _NODE_TYPES


def _children(value: Any) -> Iterator[Any] | None:
    """The values directly inside ``value`` (None for a scalar)."""
    from ..core import codec

    if isinstance(value, (dict, PHPArray)):
        return iter(value.values())
    if isinstance(value, (list, tuple)):
        return iter(value)
    if isinstance(value, codec.PHPObject):
        return iter(value.properties.values())
    if isinstance(value, codec.PHPReference):
        return iter((value.value,))
    return None


def _shared_nodes(value: Any) -> set[int]:
    """The ids of the objects and references met more than once in ``value``; each is
    looked into once, so this is linear in the size of the graph."""
    nodes = _node_types()
    seen: set[int] = set()
    shared: set[int] = set()
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        for v in stack[-1]:
            if isinstance(v, nodes) or isinstance(v, (dict, list, tuple, PHPArray)):
                if id(v) in seen:
                    if isinstance(v, nodes):
                        shared.add(id(v))
                    continue
                seen.add(id(v))
            sub = _children(v)
            if sub is not None:
                stack.append(sub)
                break
        else:
            stack.pop()
    return shared


def _json_node(
    v: Any, shared: set[int], numbers: dict[int, int], open_ids: set[int]
) -> tuple[Any, Iterator[tuple[Any, Any]] | None]:
    """One value's JSON view: ``(scalar, None)``, or an empty container and the
    ``(key, value)`` pairs that fill it."""
    from ..core import codec

    if isinstance(v, (dict, list, tuple, PHPArray)) and id(v) in open_ids:
        return {"__recursion__": True}, None
    if isinstance(v, PHPArray):
        if v.is_list():
            return [], ((None, x) for x in v.values())
        return {}, ((_name(k), x) for k, x in v.items())
    if isinstance(v, dict):
        return {}, ((_name(k), x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return [], ((None, x) for x in v)
    if isinstance(v, (bytes, bytearray)):
        return {"__bytes_base64__": base64.b64encode(bytes(v)).decode("ascii")}, None
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return ("NAN" if v != v else ("INF" if v > 0 else "-INF")), None
    if isinstance(v, codec.PHPEnum):
        return {"__enum__": f"{_name(v.class_name)}::{_name(v.case)}"}, None
    if not isinstance(v, _node_types()):
        return v, None
    number = numbers.get(id(v))
    if number is not None:
        return {"__same_as__": number}, None
    out: dict[str, Any] = {}
    if isinstance(v, codec.PHPObject):
        out["__class__"] = _name(v.class_name)
        items: Iterator[tuple[Any, Any]] = ((_name(k).replace("\0", "\\0"), x) for k, x in v.properties.items())
    elif isinstance(v, codec.PHPCustomObject):
        out["__class__"] = _name(v.class_name)
        items = iter((("__serialized__", bytes(v.data)),))
    elif isinstance(v, codec.PHPReference):
        items = iter((("__reference__", v.value),))
    else:
        return v, None
    if id(v) in shared:
        number = numbers[id(v)] = len(numbers) + 1
        out["__id__"] = number
    return out, items


#: deeper levels of ``phpsess show``'s text are not indented further
MAX_INDENT_LEVELS = 40


def json_text(value: Any, indent: int | None = None) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=False)`` for the plain data of
    :func:`to_json`, without recursion (a session may nest 4,096 levels deep).

    Indentation stops growing at :data:`MAX_INDENT_LEVELS` levels, so that the text
    of deep nesting stays linear in its size (3,000 levels would otherwise print
    18 MB of spaces); the JSON means the same.
    """
    enc = _json.JSONEncoder(ensure_ascii=False).encode
    out: list[str] = []
    write = out.append
    item_sep = "," if indent is not None else ", "
    # (items left, closing bracket, depth, is a dict, first item still to come)
    stack: list[list[Any]] = [[iter(((None, value),)), "", 0, False, True]]
    while stack:
        top = stack[-1]
        items, closer, depth, is_dict, _ = top
        for key, v in items:
            if not top[4]:
                write(item_sep)
            top[4] = False
            if depth and indent is not None:
                write("\n" + " " * (indent * min(depth, MAX_INDENT_LEVELS)))
            if is_dict:
                write(enc(key) + ": ")
            if isinstance(v, dict) and v:
                write("{")
                stack.append([iter(v.items()), "}", depth + 1, True, True])
                break
            if isinstance(v, list) and v:
                write("[")
                stack.append([iter(((None, x) for x in v)), "]", depth + 1, False, True])
                break
            write("{}" if isinstance(v, dict) else "[]" if isinstance(v, list) else enc(v))
        else:
            stack.pop()
            if closer:
                if indent is not None:
                    write("\n" + " " * (indent * min(depth - 1, MAX_INDENT_LEVELS)))
                write(closer)
    return "".join(out)


def _name(key: Any) -> str:
    """A key or class name as JSON text: bytes that are not UTF-8 keep their bytes as ``\\xNN``."""
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "backslashreplace")
    return str(key)


def _json_dumps(value: Any, indent: int | None = None) -> str:
    return json_text(value, indent)


#: the stores whose handler can read a session without its lock and list its locks
_KEYED_STORES = ("rediscluster", "memcached")
#: the stores whose sessions expire by a TTL the server enforces (nothing for gc to do)
_TTL_STORES = ("redis", "rediscluster", "memcached")


def _save_path(config: SessionConfig, save_path: str | None) -> str:
    return save_path if save_path is not None else config.save_path


def _with_handler(config: SessionConfig, save_handler: str | None) -> SessionConfig:
    """``config``, with ``--save-handler`` applied when given."""
    if save_handler is None:
        return config
    cfg = config.copy()
    cfg.set("save_handler", save_handler, startup=True)
    return cfg


def _keyed_handler(config: SessionConfig, save_path: str) -> Any:
    """An opened rediscluster or memcached handler on ``save_path`` (for peek/list_locks)."""
    from ..storage.base import handler_class

    handler = handler_class(config.save_handler)(config)
    handler.open(save_path, config.name)
    return handler


def _basedir(raw: str) -> str:
    from ..storage.files import parse_save_path

    return parse_save_path(raw).basedir


def _session_path(config: SessionConfig, sid: str, save_path: str | None) -> str:
    """The file of ``sid`` (an id, or already a path to a ``sess_*`` file)."""
    from ..storage.files import parse_save_path, session_file_path

    if (os.sep in sid or os.path.basename(sid).startswith("sess_")) and os.path.lexists(sid):
        return sid
    return session_file_path(parse_save_path(_save_path(config, save_path)), sid)


def read_session_file(path: str, *, wait: float = SHOW_LOCK_WAIT) -> tuple[bytes, bool]:
    """Read a ``sess_*`` file under a shared flock, as a read-only request would.

    Waits up to ``wait`` seconds for a request holding the lock; after that reads
    without the lock (the files handler's writes never pass through a torn state).
    Never creates the file.

    :returns: ``(data, locked)``: the bytes (crash padding stripped) and whether they
        were read under the lock.
    :raises OSError: the file cannot be opened (``FileNotFoundError`` when absent), or
        is not a regular file (a FIFO or a device is never read, so never waited on).
    """
    from ..storage import flock as locking

    # O_NONBLOCK: opening a FIFO planted as sess_<id> must not wait for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        locked = locking.try_lock(fd, shared=True)
        if not locked and wait > 0:
            try:
                locking.wait_lock(fd, shared=True, timeout=wait)
                locked = True
            except TimeoutError:
                locked = False
        size = os.fstat(fd).st_size
        chunks = []
        done = 0
        while done < size:
            chunk = os.pread(fd, size - done, done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks), locked
    finally:
        os.close(fd)


def _read_redis(config: SessionConfig, sid: str, save_path: str) -> bytes | None:
    from ..storage.redis import client_for
    from ..core.redis_url import parse_save_path, pick_server

    from redis.exceptions import RedisError

    from ..errors import SaveHandlerError

    server = pick_server(parse_save_path(save_path), sid)
    try:
        data = client_for(server).get(server.session_key(sid))
    except RedisError as exc:
        raise SaveHandlerError(f"cannot read it from redis server {server.address}: {exc}",
                               handler="redis", operation="read", cause=exc)
    if data is None:
        return None
    return data if isinstance(data, bytes) else str(data).encode()


def show(
    config: SessionConfig,
    sid: str,
    raw: bool = False,
    json: bool = False,  # noqa: A002 - the option's name
    save_path: str | None = None,
    serialize_handler: str | None = None,
    save_handler: str | None = None,
) -> int:
    """``phpsess show``: print a stored session, decoded (or ``raw`` bytes, or ``json``).

    ``sid`` is a session id (looked up with ``session.save_handler``: files,
    redis, rediscluster or memcached, read without waiting for its lock) or the
    path of a ``sess_*`` file.  The text form starts with a
    ``# path (N bytes, handler, modified ...)`` line, then indented JSON.

    :returns: 0; 1 when there is no such session or id; 2 when the data does not decode.
    """
    from ..core import formats as encoding
    from ..errors import InvalidSessionId, SaveHandlerError, SessionDecodeError
    from ..storage.files import strip_crash_padding

    config = _with_handler(config, save_handler)
    handler = serialize_handler or config.serialize_handler
    where = _save_path(config, save_path)
    is_file = os.sep in sid or os.path.basename(sid).startswith("sess_")
    mtime: float | None = None
    try:
        if config.save_handler == "redis" and not is_file:
            data = _read_redis(config, sid, where)
            if data is None:
                print(f"phpsess show: no session {sid} in {where}", file=sys.stderr)
                return 1
            label = f"{sid} ({where})"
        elif config.save_handler in _KEYED_STORES and not is_file:
            data = _keyed_handler(config, where).peek(sid)
            if data is None:
                print(f"phpsess show: no session {sid} in {config.save_handler} {where}", file=sys.stderr)
                return 1
            label = f"{sid} ({config.save_handler} {where})"
        else:
            path = _session_path(config, sid, save_path)
            try:
                data, locked = read_session_file(path)
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:
                print(f"phpsess show: no session file {path}", file=sys.stderr)
                return 1
            if not locked:
                print(f"phpsess show: {path} is locked by a request; read without its lock", file=sys.stderr)
            data = strip_crash_padding(data, handler)
            label = path
    except (InvalidSessionId, SaveHandlerError, OSError) as exc:
        print(f"phpsess show: {sid}: {exc}", file=sys.stderr)
        return 1
    if raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        decoded = encoding.decode(data, handler) if data else {}
    except SessionDecodeError as exc:
        print(f"phpsess show: {label} does not decode as {handler!r}: {exc}", file=sys.stderr)
        return 2
    if json:
        print(_json_dumps(to_json(decoded)))
        return 0
    when = "" if mtime is None else f", modified {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(mtime))}"
    print(f"# {label}  ({len(data)} bytes, {handler}{when})")
    print(_json_dumps(to_json(decoded), indent=2))
    return 0


def gc(
    config: SessionConfig,
    maxlifetime: int | None = None,
    dry_run: bool = False,
    save_path: str | None = None,
    save_handler: str | None = None,
) -> int:
    """``phpsess gc``: delete the sessions idle longer than ``maxlifetime`` (default
    ``session.gc_maxlifetime``) under save_path, at any directory depth.

    Unlike PHP's own gc (depth 0 only, deletes locked files), this works with
    ``N;PATH`` save paths and never deletes a session in use
    (:func:`phpsess.storage.files.sweep`).
    With ``session.save_handler = redis``, ``rediscluster`` or ``memcached`` there is
    nothing to do (keys expire by their TTL, as PHP's handlers set it).
    """
    from ..storage.files import sweep
    from ..storage.registry import clean_registry
    from .inspect import session_files

    config = _with_handler(config, save_handler)
    if config.save_handler in _TTL_STORES:
        print(f"phpsess gc: {config.save_handler} sessions expire by their TTL; nothing to do")
        return 0
    raw = _save_path(config, save_path)
    try:
        root = _basedir(raw)
    except Exception as exc:  # SaveHandlerError: an invalid N;MODE part
        print(f"phpsess gc: invalid save_path {raw!r}: {exc}", file=sys.stderr)
        return 1
    lifetime = config.gc_maxlifetime if maxlifetime is None else maxlifetime
    if not os.path.isdir(root):
        print(f"phpsess gc: {root} is not a directory", file=sys.stderr)
        return 1
    deleted = sweep(session_files(raw), lifetime, dry_run=dry_run)
    if not dry_run:
        clean_registry()
    verb = "would delete" if dry_run else "deleted"
    for path in deleted:
        print(f"{verb} {path}")
    print(f"phpsess gc: {verb} {len(deleted)} session(s) idle > {lifetime} s under {root}")
    return 0


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 100:
        return f"{value:.1f}s"
    if value < 6000:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _redis_locks(save_path: str, as_json: bool) -> int:
    """``phpsess locks`` on Redis: the ``<prefix><id>_LOCK`` keys of every server, their holder
    (phpredis's and phpsess's lock value: ``host|pid|...``) and time to expiry.  A server
    that cannot be reached is an error (exit 1), never "no locked sessions"."""
    from redis.exceptions import RedisError

    from ..core.redis_url import parse_save_path
    from ..storage.redis import client_for

    try:
        servers = parse_save_path(save_path)
    except ValueError as exc:
        print(f"phpsess locks: invalid save_path {save_path!r}: {exc}", file=sys.stderr)
        return 1
    found: list[dict[str, object]] = []
    for server in servers:
        client = client_for(server)
        try:
            for key in client.scan_iter(match=_glob_escape(server.prefix) + "*_LOCK", count=1000):
                name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                value = client.get(key)
                ttl = client.pttl(key)
                holder = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
                host, _, rest = holder.partition("|")
                pid = rest.partition("|")[0]
                found.append({
                    "id": name[len(server.prefix):-len("_LOCK")], "key": name, "server": server.address,
                    "host": host, "pid": int(pid) if pid.isdigit() else None,
                    "expires_in_seconds": ttl / 1000 if isinstance(ttl, int) and ttl >= 0 else None,
                })
        except RedisError as exc:
            print(f"phpsess locks: cannot list the locks on redis server {server.address}: {exc}", file=sys.stderr)
            return 1
    if as_json:
        print(_json_dumps(found))
        return 0
    if not found:
        print(f"no locked sessions on {', '.join(s.address for s in servers)}")
        return 0
    print(f"{'ID':<34} {'HOST':<20} {'PID':>7} {'EXPIRES':>8}  SERVER")
    for lock in found:
        exp = lock["expires_in_seconds"]
        print(f"{_printable(str(lock['id'])):<34} {_printable(str(lock['host']))[:20]:<20} "
              f"{lock['pid'] if lock['pid'] is not None else '-':>7} "
              f"{_seconds(exp if isinstance(exp, float) else None):>8}  {lock['server']}")
    return 0


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def locks(
    config: SessionConfig,
    save_path: str | None = None,
    json: bool = False,  # noqa: A002 - the option's name
    save_handler: str | None = None,
) -> int:
    """``phpsess locks``: the locked sessions under save_path, their holders and waiters.

    ``json``: a JSON list, one object per locked session, with the keys ``id``,
    ``path``, ``pid``, ``mode``, ``cmdline``, ``process_seconds``,
    ``held_seconds`` (null when unknown: PHP processes), ``waiters``,
    ``waiter_pids`` and ``holders`` (every holder of a shared lock; for a phpsess
    pool worker also the request it serves: ``method``, ``uri``, ``script`` and
    ``request_seconds``).

    With ``rediscluster`` or ``memcached``: the lock keys of save_path's servers, with the
    keys ``id``, ``key``, ``server``, ``holder`` (the lock value: ``hostname|pid|...``, or
    ``1`` for php-memcached), ``host`` and ``pid`` (when the value names them),
    ``expires_in_seconds`` (until the lock expires by itself, as for Redis) and ``waiters``
    (phpsess requests waiting; PHP's are not counted).
    """
    from ..storage.registry import clean_registry
    from .inspect import inspect_locks

    config = _with_handler(config, save_handler)
    raw = _save_path(config, save_path)
    if config.save_handler in _KEYED_STORES:
        return _store_locks(config, raw, json)
    if config.save_handler == "redis":
        return _redis_locks(raw, json)
    try:
        root = _basedir(raw)
    except Exception as exc:
        print(f"phpsess locks: invalid save_path {raw!r}: {exc}", file=sys.stderr)
        return 1
    found = inspect_locks(raw)
    clean_registry()
    if json:
        print(_json_dumps([lock.as_json() for lock in found]))
        return 0
    if not found:
        print(f"no locked sessions under {root}")
        return 0
    print(f"{'ID':<34} {'PID':>7} {'MODE':<5} {'HELD':>6} {'REQUEST':>7} {'RUNNING':>7} {'WAITERS':>7}  "
          "COMMAND (a pool worker: its request)")
    for lock in found:
        for n, h in enumerate(lock.holders):
            what = f"{h.method} {h.uri} ({h.script})" if h.script or h.uri else h.cmdline
            print(
                f"{lock.id if n == 0 else '':<34} {h.pid:>7} {h.mode:<5} {_seconds(h.held_seconds):>6} "
                f"{_seconds(h.request_seconds):>7} {_seconds(h.process_seconds):>7} "
                f"{lock.waiters if n == 0 else '':>7}  {_printable(what)[:100]}"
            )
    return 0


def _store_locks(config: SessionConfig, save_path: str, json: bool) -> int:  # noqa: A002
    """``phpsess locks`` on a Redis Cluster or memcached save_path."""
    from ..errors import SaveHandlerError

    try:
        found = _keyed_handler(config, save_path).list_locks()
    except SaveHandlerError as exc:
        print(f"phpsess locks: {exc}", file=sys.stderr)
        return 1
    if json:
        print(_json_dumps([lock.as_json() for lock in found]))
        return 0
    if not found:
        print(f"no locked sessions in {config.save_handler} {save_path}")
        return 0
    print(f"{'ID':<34} {'SERVER':<21} {'PID':>7} {'EXPIRES':>7} {'WAITERS':>7}  HOLDER")
    for lock in found:
        pid = lock.pid()
        print(f"{lock.sid:<34} {lock.where:<21} {pid if pid is not None else '-':>7} {_seconds(lock.ttl):>7} "
              f"{lock.waiters:>7}  {_printable(lock.holder)[:80]}")
    return 0


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a URI comes from a client)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def destroy(config: SessionConfig, sids: list[str], save_path: str | None = None,
            save_handler: str | None = None) -> int:
    """``phpsess destroy ID...``: delete sessions through the configured save handler.

    Each session's lock is taken first (waiting for a running request, as
    ``session_destroy()`` would; bounded by ``session.lock_timeout``), so a
    request in progress finishes before its session goes.

    :returns: 0, or 1 when an id was invalid, absent, or could not be destroyed.
    """
    from ..errors import InvalidSessionId, SaveHandlerError
    from ..storage.base import handler_class

    cfg = _with_handler(config, save_handler).copy()
    if save_path is not None:
        cfg.set("save_path", save_path, startup=True)
    handler = handler_class(cfg.save_handler)(cfg)
    status = 0
    for sid in sids:
        try:
            handler.open(cfg.save_path, cfg.name)
            if not handler.validate_id(sid):
                print(f"phpsess destroy: {sid}: no such session", file=sys.stderr)
                status = 1
                continue
            handler.read(sid)
            handler.destroy(sid)
            print(f"destroyed {sid}")
        except (InvalidSessionId, SaveHandlerError) as exc:
            print(f"phpsess destroy: {sid}: {exc}", file=sys.stderr)
            status = 1
        finally:
            try:
                handler.close()
            except SaveHandlerError:
                pass
    return status
