"""Lazy $_SESSION for the ``php`` serializer: decode a key when the script touches it,
re-encode only the keys it touched. No I/O.

A request that reads one key of a 10 KB session should cost barely more than
one that reads a 100-byte session.  Finding where each top-level value ends
needs a full parse in pure Python (PHP strings are length-prefixed), so the
boundaries come from the last time this process *wrote* that exact payload:

* at close, :func:`encode_entries` encodes the session key by key and returns the
  payload together with each value's ``(key, start, end)``; the session keeps
  them in a small per-process cache (:data:`SPANS`), keyed by session id;
* at the next start, when the bytes read are identical to the cached payload
  (one memcmp), the session becomes a :class:`SessionData` over those bytes:
  nothing is decoded until a key is used, and at close the untouched keys are
  copied as bytes.

Any other payload (written by PHP or by another process) is decoded in full, as
before.  Payloads with ``r:``/``R:`` are never split (their numbering spans keys).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import Any, Callable, Final, Iterable, Iterator, Mapping

from . import codec
from .phparray import PHPArray
from ..errors import SessionEncodeError

__all__ = ["SessionData", "encode_entries", "SpanCache", "SPANS", "is_array"]

Entries = list[tuple[Any, int, int]]


class _Raw:
    """A value not decoded yet: its bytes are ``payload[start:end]``."""

    __slots__ = ("start", "end")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


class SessionData:
    """``$_SESSION`` over a stored ``php`` payload, decoding each value on first use.

    A MutableMapping (registered as one, with the mapping methods written out rather than
    inherited: so it compiles to a native class, whose ``isinstance`` stays its own).
    """

    __slots__ = ("_payload", "_d", "_php_arrays")

    def __init__(self, payload: bytes, entries: Entries, *, php_arrays: bool = False) -> None:
        self._payload = payload
        self._d: dict[Any, Any] = {key: _Raw(start, end) for key, start, end in entries}
        #: decoded arrays become PHPArray (session.php_arrays), else list/dict
        self._php_arrays = php_arrays

    def __getitem__(self, key: Any) -> Any:
        value = self._d[key]
        if type(value) is _Raw:
            raw = self._payload[value.start : value.end]
            value = _SCALARS.get(raw, _Raw)
            if value is _Raw:
                if raw[:2] == b"i:" and raw[2:-1].isdigit() and len(raw) < 21:
                    value = int(raw[2:-1])  # the common counter: no parser needed
                else:
                    value = codec.loads(raw)
                    if self._php_arrays:
                        value = codec.to_php_arrays(value)
            self._d[key] = value
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._d[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def copy(self) -> dict[Any, Any]:
        """A plain dict with every value decoded."""
        return {key: self[key] for key in list(self._d)}

    # -- the rest of MutableMapping's methods ----------------------------------------------
    def keys(self) -> KeysView[Any]:
        """The keys, as a view."""
        return KeysView(self)

    def items(self) -> ItemsView[Any, Any]:
        """``(key, value)`` pairs (values decoded), as a view."""
        return ItemsView(self)

    def values(self) -> ValuesView[Any]:
        """The values (decoded), as a view."""
        return ValuesView(self)

    def get(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when there is no such key."""
        if key in self._d:
            return self[key]
        return default

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (``default`` when missing, if given)."""
        if key in self._d:
            value = self[key]
            del self._d[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last ``(key, value)`` pair."""
        if not self._d:
            raise KeyError("popitem(): session data is empty")
        key = next(reversed(self._d))
        return key, self.pop(key)

    def clear(self) -> None:
        """Remove every key."""
        self._d.clear()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, set to ``default`` first when missing."""
        if key in self._d:
            return self[key]
        self._d[key] = default
        return default

    def update(self, other: Any = (), /, **kw: Any) -> None:
        """Set the keys of ``other`` (a mapping or ``(key, value)`` pairs) and ``kw``."""
        pairs: Iterable[Any]
        if isinstance(other, Mapping):
            pairs = other.items()
        elif hasattr(other, "keys"):
            pairs = ((k, other[k]) for k in other.keys())
        else:
            pairs = other
        for key, value in pairs:
            self._d[key] = value
        for key, value in kw.items():
            self._d[key] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]  # mutable, as dict

    def raw_items(self) -> Iterator[tuple[Any, bytes | None, Any]]:
        """``(key, raw bytes or None, value)``: raw bytes for keys never touched."""
        payload = self._payload
        for key, value in self._d.items():
            if type(value) is _Raw:
                yield key, payload[value.start : value.end], None
            else:
                yield key, None, value


MutableMapping.register(SessionData)

#: scalars whose bytes decode without the parser
_SCALARS: Final[dict[bytes, Any]] = {b"N;": None, b"b:0;": False, b"b:1;": True, b"i:0;": 0, b"i:1;": 1}


def is_array(value: Any) -> bool:
    """True for what PHP would call an array in ``$_SESSION`` (dict or SessionData)."""
    return isinstance(value, (dict, SessionData))


def encode_entries(
    data: Mapping[Any, Any], on_skip: Callable[[int], None] | None = None
) -> tuple[bytes | None, Entries | None]:
    """Encode ``data`` with the ``php`` serializer, key by key.

    :returns: ``(payload, entries)``; ``payload`` is what ``encoding.encode(data,
        "php")`` gives (None for PHP's "nothing"); ``entries`` are the value
        boundaries, or None when some value holds objects or references (their
        numbering then spans keys, so the caller must use the whole-session encoder;
        ``on_skip`` has then not been called).
    """
    parts: list[bytes] = []
    entries: Entries = []
    skipped: list[int] = []
    pos = 0
    native = codec.NATIVE_PATH
    items = data.raw_items() if isinstance(data, SessionData) else (
        (k, None, v) for k, v in data.items()
    )
    for key, raw, value in items:
        if isinstance(key, int):
            skipped.append(key)
            continue
        if isinstance(key, str):
            kb = key.encode("utf-8", "surrogateescape")
            delimited = "|" in key  # (only "|" encodes to the byte "|")
        elif isinstance(key, (bytes, bytearray)):
            kb = bytes(key)
            delimited = kb.find(b"|") >= 0  # (not `in`: it tries the needle as an int first)
        else:
            raise SessionEncodeError(f"session key must be str, not {type(key).__name__}")
        if delimited:
            _report(skipped, on_skip)
            return None, []  # PS_DELIMITER in a key: PHP writes nothing
        if raw is None:
            t = type(value)
            if t is int and -(2**63) <= value < 2**63:
                raw = b"i:%d;" % value
            elif t is bool or value is None:
                raw = b"b:1;" if value is True else b"b:0;" if value is False else b"N;"
            elif native and (raw := codec.native_dump_pairs([("", value)], -1)) is not None:
                pass  # the compiled encoder writes no objects nor references: self-contained
            elif not _plain(value):
                return None, None  # nothing reported: the caller encodes the whole session
            else:
                raw = codec.dumps(value)
        parts.append(kb)
        parts.append(b"|")
        parts.append(raw)
        start = pos + len(kb) + 1
        pos = start + len(raw)
        entries.append((key, start, pos))
    _report(skipped, on_skip)
    if not parts:
        return None, []
    return b"".join(parts), entries


def _report(skipped: list[int], on_skip: Callable[[int], None] | None) -> None:
    if on_skip is not None:
        for key in skipped:
            on_skip(key)


def _plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` holds no PHP objects or references (so its encoding is self-contained)."""
    t = type(value)
    if t is dict or t is PHPArray:
        if depth > 64:
            return False
        return all(_plain(v, depth + 1) for v in value.values())
    if t is list or t is tuple:
        if depth > 64:
            return False
        return all(_plain(v, depth + 1) for v in value)
    return t in (int, str, bytes, float, bool) or value is None


class SpanCache:
    """The payloads this process wrote last, per session id, with their value boundaries.

    Bounded in bytes, since clients choose what goes into their sessions: a payload
    over ``max_payload`` is not kept, and the least recently used are dropped while
    the total cost passes ``max_bytes`` (or the count ``max_entries``).  An entry
    costs its payload twice (the bytes, and the keys of its boundaries) plus 100
    bytes per boundary.
    """

    def __init__(self, max_entries: int = 512, max_payload: int = 256 << 10, max_bytes: int = 2 << 20) -> None:
        self.max_entries = max_entries
        self.max_payload = max_payload
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[str, tuple[bytes, Entries, int]] = OrderedDict()

    def remember(self, sid: str, payload: bytes, entries: Entries) -> None:
        """Note that ``payload`` (with ``entries``) is what this process stored for ``sid``."""
        self.forget(sid)
        cost = 2 * len(payload) + 100 * len(entries) + len(sid)
        if len(payload) > self.max_payload or cost > self.max_bytes:
            return
        self._d[sid] = (payload, entries, cost)
        self.bytes += cost
        while len(self._d) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._d.popitem(last=False)[1][2]

    def lookup(self, sid: str, payload: bytes) -> Entries | None:
        """The boundaries of ``payload`` when it is exactly what was remembered for ``sid``."""
        hit = self._d.get(sid)
        if hit is None or hit[0] != payload:
            return None
        self._d.move_to_end(sid)
        return hit[1]

    def forget(self, sid: str) -> None:
        """Drop ``sid`` (destroyed, or its write failed)."""
        hit = self._d.pop(sid, None)
        if hit is not None:
            self.bytes -= hit[2]


#: the per-process cache the Session uses
SPANS: Final = SpanCache()
