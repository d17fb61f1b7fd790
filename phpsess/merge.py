"""Merge mode (``session.concurrency = merge``): requests that neither block nor lose updates.

PHP offers two bad choices for a page that fires many AJAX requests on one
session: hold the lock (requests run one after another) or close early (a
script can no longer write after its slow work).  In merge mode:

1. ``session_start()`` reads the session under the lock and releases the lock
   at once, remembering each top-level key's serialized value (the *base*);
2. the script works with no lock held;
3. at write time the lock is taken again, the stored session is re-read, and
   only the top-level keys this request changed (set, modified or deleted,
   compared by their serialized bytes against the base) are applied onto it,
   then it is written and the lock released.

Conflict rule: two requests that change the *same* key resolve by **last
write wins per key** (the later write of that key replaces the earlier one;
keys the later request did not change keep the earlier request's values).
Every write still happens under the handler's lock, so the stored bytes stay
readable by PHP and a PHP request using the plain locked files handler never
loses its writes either.  No I/O of its own: storage goes through the handler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from . import codec, encoding
from .errors import SessionDecodeError, SessionEncodeError

if TYPE_CHECKING:
    from .handlers.base import SaveHandler
    from .session import Session

__all__ = ["snapshot", "changes", "apply_changes", "merge_write"]

log = logging.getLogger(__name__)

_DELETED = object()


def snapshot(data: Mapping[Any, Any]) -> dict[Any, bytes]:
    """Each top-level key's serialized value, to detect this request's changes later."""
    out: dict[Any, bytes] = {}
    for key, value in data.items():
        try:
            out[key] = codec.dumps(value)
        except SessionEncodeError:
            out[key] = b""
    return out


def changes(base: Mapping[Any, bytes], data: Mapping[Any, Any]) -> dict[Any, Any]:
    """The keys ``data`` changed relative to ``base``: new values, or a deletion marker."""
    out: dict[Any, Any] = {}
    for key, value in data.items():
        old = base.get(key)
        if old is None or codec.dumps(value) != old:
            out[key] = value
    for key in base:
        if key not in data:
            out[key] = _DELETED
    return out


def apply_changes(stored: Mapping[Any, Any], delta: Mapping[Any, Any]) -> dict[Any, Any]:
    """``stored`` with ``delta`` applied (last write wins per key); order kept where possible."""
    merged = dict(stored)
    for key, value in delta.items():
        if value is _DELETED:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merge_write(session: "Session", handler: "SaveHandler", sid: str) -> None:
    """Take the lock again, re-read, apply this request's changes, write (step 3 above)."""
    cfg = session.config
    base = session.merge_base or {}
    delta = changes(base, session.data)
    if not delta:
        return  # nothing changed: nothing to write, the lock is not even taken
    handler.open(cfg.save_path, cfg.name)
    raw = handler.read(sid)
    try:
        stored = encoding.decode(raw, cfg.serialize_handler) if raw else {}
    except SessionDecodeError:
        log.warning("merge: stored session %s no longer decodes; writing this request's data", sid)
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    merged = apply_changes(stored, delta)
    session.data = merged
    payload = encoding.encode(merged, cfg.serialize_handler)
    handler.write(sid, payload or b"")
