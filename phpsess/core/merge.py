"""Merge mode (``session.concurrency = merge``): requests that neither block nor lose updates.
No I/O: this module computes and applies changes; the session stores them through its
save handler (:meth:`phpsess.session.session.Session.write_merged`).

PHP offers two bad choices for a page that fires many AJAX requests on one
session: hold the lock (requests run one after another) or close early (a
script can no longer write after its slow work).  In merge mode:

1. ``session_start()`` reads the session under the lock and releases the lock
   at once, remembering each top-level key's serialized value (the *base*,
   :func:`snapshot`);
2. the script works with no lock held;
3. at write time the lock is taken again, the stored session is re-read, and
   only the top-level keys this request changed (set, modified or deleted,
   compared by their serialized bytes against the base: :func:`changes`) are
   applied onto it (:func:`apply_changes`), then it is written and the lock
   released.  When the request changed nothing, the stored session is only
   touched (``update_timestamp``, as PHP's ``lazy_write``), never rewritten
   from this request's possibly stale copy.

Conflict rule (``session.merge_conflict``), when two requests change the *same*
top-level key:

* ``overwrite`` (default): **last write wins per key** -- the later write of
  that key replaces the earlier one; keys the later request did not change keep
  the other request's values; a key this request deleted is deleted even if
  another request changed it meanwhile;
* ``error``: the write is refused with :class:`~phpsess.errors.MergeConflict`
  (nothing at all is written, the lock is released) when another request
  changed one of this request's changed keys since this request read it (even
  to the same value: two requests that both turned ``n = 1`` into ``n = 2`` lost
  an increment).  ``session_write_close()`` raises it,
  so the script can ``session_start()`` again (which reads the current data)
  and redo its change; at the end of the request it is logged.

The unit of merging is the top-level key: two requests that change different
entries *inside* one array stored under one key conflict on that key.  Every
write still happens under the handler's lock, so the stored bytes stay readable
by PHP and a PHP request using the plain locked files handler never loses its
writes either.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import MergeConflict, SessionEncodeError
from . import codec


class _Deleted:
    """The marker :func:`changes` uses for a key this request deleted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"


#: the value :func:`changes` gives a key this request deleted
DELETED: Any = _Deleted()

#: the base of a value that cannot be serialized: never equal to any serialization
_UNENCODABLE = b""


def _dumps(value: Any) -> bytes:
    try:
        return codec.dumps(value)
    except SessionEncodeError:
        return _UNENCODABLE


def snapshot(data: Mapping[Any, Any]) -> dict[Any, bytes]:
    """Each top-level key's serialized value, to find this request's changes later. Pure.

    A value that cannot be serialized gets ``b""``, so it always counts as changed.
    """
    return {key: _dumps(value) for key, value in data.items()}


def changes(base: Mapping[Any, bytes], data: Mapping[Any, Any]) -> dict[Any, Any]:
    """The keys ``data`` changed relative to ``base``: their new value, or :data:`DELETED`. Pure.

    A key counts as changed when it is new, when it is gone, or when its value's
    serialization differs from the base's (so replacing a value by an equal one is
    no change, and changing an entry inside an array changes the array's key).
    """
    out: dict[Any, Any] = {}
    for key, value in data.items():
        old = base.get(key)
        if old is None or old == _UNENCODABLE or _dumps(value) != old:
            out[key] = value
    for key in base:
        if key not in data:
            out[key] = DELETED
    return out


def apply_changes(stored: Mapping[Any, Any], delta: Mapping[Any, Any]) -> dict[Any, Any]:
    """``stored`` with ``delta`` applied (last write wins per key). Pure.

    Keys keep their stored order; keys new to ``stored`` come after, in ``delta``'s order.
    """
    merged = dict(stored)
    for key, value in delta.items():
        if value is DELETED:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def conflicts(base: Mapping[Any, bytes], stored: Mapping[Any, Any], delta: Mapping[Any, Any]) -> list[Any]:
    """The keys of ``delta`` that another request changed since ``base`` was read. Pure.

    A key conflicts when its stored value (or absence) is no longer the one this
    request read -- a compare-and-swap per key.  Even when the other request wrote
    the very value this one wants (two requests that both turned ``n = 1`` into
    ``n = 2``), it is a conflict: for a read-modify-write that *is* the lost update.
    """
    out: list[Any] = []
    for key in delta:
        now = _dumps(stored[key]) if key in stored else None
        if now == base.get(key) and now != _UNENCODABLE:
            continue  # untouched by others since we read it
        out.append(key)
    return out


def merge_stored(
    base: Mapping[Any, bytes],
    data: Mapping[Any, Any],
    stored: Mapping[Any, Any],
    *,
    on_conflict: str = "overwrite",
) -> dict[Any, Any] | None:
    """What merge mode writes: ``stored`` (re-read under the lock) with this request's changes.

    :param base: :func:`snapshot` of the data as this request read it.
    :param data: this request's ``$_SESSION`` now.
    :param on_conflict: ``"overwrite"`` (last write wins per key) or ``"error"``.
    :returns: the merged data, or None when this request changed nothing.
    :raises MergeConflict: ``on_conflict="error"`` and another request changed a key
        this request changed (``.keys`` lists them).  Pure.
    """
    delta = changes(base, data)
    if not delta:
        return None
    if on_conflict == "error":
        clash = conflicts(base, stored, delta)
        if clash:
            raise MergeConflict([str(k) for k in clash])
    return apply_changes(stored, delta)
