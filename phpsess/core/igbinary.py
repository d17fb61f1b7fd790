"""igbinary's binary format (php-igbinary 3.x, format version 2), byte for byte. No I/O.

``dumps(value)`` / ``loads(data)`` are ``igbinary_serialize()`` / ``igbinary_unserialize()``;
:func:`encode_session` / :func:`decode_session` are the ``igbinary`` session serializer
(``session.serialize_handler = igbinary``).  Values use the codec's Python model
(``docs/types.md``): ``None``/``bool``/``int``/``float``, ``str`` (valid UTF-8) or
``bytes``, ``list``/``dict`` for arrays, :class:`~phpsess.core.codec.PHPObject`,
:class:`~phpsess.core.codec.PHPCustomObject` (``Serializable``),
:class:`~phpsess.core.codec.PHPEnum` and :class:`~phpsess.core.codec.PHPReference`.

The format (``src/php7/igbinary.c``): a 4-byte header ``00 00 00 02``, then one value;
each value is a type byte and its payload, integers big-endian:

* ``00`` null, ``04``/``05`` false/true, ``06``..``0b``, ``20``/``21`` integers by size
  and sign (8, 16, 32, 64 bits; the magnitude is stored), ``0c`` a double (8 bytes);
* ``0d`` the empty string, ``11``/``12``/``13``/``26`` a string with an 8/16/32/64-bit
  length; every non-empty string (array key, value, class name, enum case) gets the
  next number of the *string table*, and a string met again is written as its number
  (``0e``/``0f``/``10``);
* ``14``/``15``/``16`` an array: a count, then key and value pairs (a ``00`` key stands for
  an entry without a value, skipped when reading);
* ``17``/``18``/``19`` an object whose class name follows (``1a``/``1b``/``1c``: a class
  name from the string table), then an array of properties (also what ``__serialize()``
  returned), ``1d``/``1e``/``1f`` + bytes for ``Serializable``, or ``27`` + case name for
  an enum case;
* every array, object, and referenced scalar gets the next number of the *reference
  table* when first written (the session array is number 0); the same array met again
  is written ``01``/``02``/``03`` + its number (igbinary keys arrays by their memory
  address, so two slots holding one PHP array -- and every empty array, which PHP
  shares -- give a back-reference), the same object ``22``/``23``/``24`` + its number;
* ``25`` marks a PHP reference (``&``) held in more than one place: the value follows,
  or a back-reference to the reference group.

How the Python model keeps the bytes: a back-reference to an array decodes to the *same*
``list``/``dict`` object in both slots, and the encoder writes a ``list``/``dict`` met
again (by identity) as a back-reference, so what PHP wrote is written back unchanged.
A ``25`` value decodes to a :class:`PHPReference`, and a ``PHPReference`` is always
written with its ``25`` marker (PHP writes one whenever the reference has two holders,
counting holders outside the session; ``serialize()`` instead writes a box used once as
its plain value).  Both directions use an explicit stack (any depth, linear time);
decoding is bounded by ``max_depth`` (PHP's ``unserialize_max_depth``, 4096) and
refuses anything malformed with :class:`~phpsess.errors.SessionDecodeError`.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator, Mapping

from ..errors import SessionDecodeError, SessionEncodeError
from .codec import (
    MAX_DEPTH,
    PHP_INT_MAX,
    PHP_INT_MIN,
    AllowedClasses,
    PHPCustomObject,
    PHPEnum,
    PHPObject,
    PHPReference,
    php_array_key,
)

__all__ = ["HEADER", "dumps", "loads", "encode_session", "decode_session"]

#: what every igbinary payload starts with (format version 2; version 1 is read too)
HEADER = b"\x00\x00\x00\x02"
_HEADER_V1 = b"\x00\x00\x00\x01"

# type bytes (igbinary.c: enum igbinary_type)
T_NULL = 0x00
T_REF8, T_REF16, T_REF32 = 0x01, 0x02, 0x03
T_FALSE, T_TRUE = 0x04, 0x05
T_LONG8P, T_LONG8N, T_LONG16P, T_LONG16N, T_LONG32P, T_LONG32N = 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B
T_DOUBLE = 0x0C
T_STRING_EMPTY = 0x0D
T_STRING_ID8, T_STRING_ID16, T_STRING_ID32 = 0x0E, 0x0F, 0x10
T_STRING8, T_STRING16, T_STRING32 = 0x11, 0x12, 0x13
T_ARRAY8, T_ARRAY16, T_ARRAY32 = 0x14, 0x15, 0x16
T_OBJECT8, T_OBJECT16, T_OBJECT32 = 0x17, 0x18, 0x19
T_OBJECT_ID8, T_OBJECT_ID16, T_OBJECT_ID32 = 0x1A, 0x1B, 0x1C
T_OBJECT_SER8, T_OBJECT_SER16, T_OBJECT_SER32 = 0x1D, 0x1E, 0x1F
T_LONG64P, T_LONG64N = 0x20, 0x21
T_OBJREF8, T_OBJREF16, T_OBJREF32 = 0x22, 0x23, 0x24
T_REF = 0x25
T_STRING64 = 0x26
T_ENUM_CASE = 0x27

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DOUBLE = struct.Struct(">d")

#: how many bytes follow a type byte that carries a number of 1, 2, 4 or 8 bytes
_WIDTH = {
    T_REF8: 1, T_REF16: 2, T_REF32: 4, T_OBJREF8: 1, T_OBJREF16: 2, T_OBJREF32: 4,
    T_LONG8P: 1, T_LONG8N: 1, T_LONG16P: 2, T_LONG16N: 2, T_LONG32P: 4, T_LONG32N: 4,
    T_LONG64P: 8, T_LONG64N: 8,
    T_STRING_ID8: 1, T_STRING_ID16: 2, T_STRING_ID32: 4,
    T_OBJECT_ID8: 1, T_OBJECT_ID16: 2, T_OBJECT_ID32: 4,
    T_STRING8: 1, T_STRING16: 2, T_STRING32: 4, T_STRING64: 8,
    T_OBJECT8: 1, T_OBJECT16: 2, T_OBJECT32: 4,
    T_OBJECT_SER8: 1, T_OBJECT_SER16: 2, T_OBJECT_SER32: 4,
    T_ARRAY8: 1, T_ARRAY16: 2, T_ARRAY32: 4,
}
_NEGATIVE = frozenset((T_LONG8N, T_LONG16N, T_LONG32N, T_LONG64N))
_LONGS = frozenset((T_LONG8P, T_LONG8N, T_LONG16P, T_LONG16N, T_LONG32P, T_LONG32N, T_LONG64P, T_LONG64N))
_STRINGS = frozenset((T_STRING8, T_STRING16, T_STRING32, T_STRING64))
_STRING_IDS = frozenset((T_STRING_ID8, T_STRING_ID16, T_STRING_ID32))
_ARRAYS = frozenset((T_ARRAY8, T_ARRAY16, T_ARRAY32))
_BACKREFS = frozenset((T_REF8, T_REF16, T_REF32, T_OBJREF8, T_OBJREF16, T_OBJREF32))
_OBJECTS = frozenset((T_OBJECT8, T_OBJECT16, T_OBJECT32, T_OBJECT_ID8, T_OBJECT_ID16, T_OBJECT_ID32))
_SERIALIZED = frozenset((T_OBJECT_SER8, T_OBJECT_SER16, T_OBJECT_SER32))


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------


class _Fail(Exception):
    """Internal: a decode error at an offset; becomes SessionDecodeError."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _text(raw: bytes) -> str | bytes:
    """A PHP string as the codec represents it: ``str`` when valid UTF-8, else ``bytes``."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class _Open:
    """An array or property table being read: where it sits, so that it can be put
    back as a ``list`` when its keys turn out to be ``0..n-1``."""

    __slots__ = ("cont", "left", "count", "props", "parent", "pkey", "box", "ref", "aliases", "boxes",
                 "skipped")

    def __init__(self, cont: dict[Any, Any], left: int, props: PHPObject | None, parent: Any, pkey: Any,
                 box: PHPReference | None, ref: int) -> None:
        self.cont = cont  # always a dict while open (list-shaped ones become lists at close)
        self.left = left  # entries still to read
        self.count = left
        self.props = props  # the object whose properties these are (never a list)
        self.skipped: list[int] | None = None  # positions of entries without a value (properties)
        self.parent = parent  # the dict it was stored in (None for properties)
        self.pkey = pkey
        self.box = box  # the PHPReference holding it, if it was read as a reference
        self.ref = ref  # its number in the reference table (-1: none)
        self.aliases: list[tuple[dict[Any, Any], Any]] | None = None  # other slots that hold it
        self.boxes: list[PHPReference] | None = None  # references made to it while open (25 01 n)


class _Decoder:
    """One decode: the buffer, the string table, the reference table, the open arrays."""

    def __init__(self, data: bytes, allowed: bool | frozenset[bytes], max_depth: int) -> None:
        self.data = data
        self.end = len(data)
        self.strings: list[str | bytes] = []
        self.refs: list[Any] = []  # value, or the PHPReference box of a reference group
        self.allowed = allowed
        self.max_depth = max_depth
        self.open: dict[int, _Open] = {}  # id(dict) -> its frame, while open

    def number(self, pos: int, width: int) -> int:
        """The big-endian unsigned number of ``width`` bytes at ``pos``."""
        end = pos + width
        if end > self.end:
            raise _Fail("end of data", pos)
        data = self.data
        if width == 1:
            return data[pos]
        if width == 2:
            return int(_U16.unpack_from(data, pos)[0])
        if width == 4:
            return int(_U32.unpack_from(data, pos)[0])
        return int(_U64.unpack_from(data, pos)[0])

    def chars(self, pos: int, t: int) -> tuple[str | bytes, int]:
        """A string written in full at ``pos`` (after its type byte ``t``); it joins the table."""
        width = _WIDTH[t]
        n = self.number(pos, width)
        start = pos + width
        if n > self.end - start:
            raise _Fail("string runs past the end of data", pos - 1)
        value = _text(self.data[start : start + n])
        self.strings.append(value)
        return value, start + n

    def string_id(self, pos: int, t: int) -> tuple[str | bytes, int]:
        """A string from the table, by its number at ``pos``."""
        width = _WIDTH[t]
        i = self.number(pos, width)
        if i >= len(self.strings):
            raise _Fail("string index out of bounds", pos - 1)
        return self.strings[i], pos + width

    def long(self, pos: int, t: int) -> tuple[int, int]:
        """An integer of type ``t`` at ``pos`` (igbinary_unserialize_long)."""
        width = _WIDTH[t]
        k = self.number(pos, width)
        if width == 8 and (k > 0x8000000000000000 or (k == 0x8000000000000000 and t == T_LONG64P)):
            k = 0  # "too big 64bit long": PHP warns and reads 0
        return (-k if t in _NEGATIVE else k), pos + width

    def key(self, pos: int) -> tuple[Any, int, bool]:
        """An array key or property name at ``pos``: (key, next position, has a value)."""
        if pos >= self.end:
            raise _Fail("end of data", pos)
        t = self.data[pos]
        pos += 1
        if t in _LONGS:
            k, pos = self.long(pos, t)
            return k, pos, True
        if t in _STRINGS:
            s, pos = self.chars(pos, t)
            return s, pos, True
        if t in _STRING_IDS:
            s, pos = self.string_id(pos, t)
            return s, pos, True
        if t == T_STRING_EMPTY:
            return "", pos, True
        if t == T_NULL:
            return None, pos, False
        raise _Fail(f"unknown key type {t:#04x}", pos - 1)

    def place(self, holder: dict[Any, Any], key: Any, value: Any) -> None:
        """Store ``value`` in ``holder[key]``; an array still open remembers the slot."""
        holder[key] = value
        if type(value) is dict:
            frame = self.open.get(id(value))
            if frame is not None:
                if frame.aliases is None:
                    frame.aliases = []
                frame.aliases.append((holder, key))

    def close(self, frame: _Open) -> None:
        """An array is complete: make it a list when its keys are exactly 0..n-1."""
        del self.open[id(frame.cont)]
        d = frame.cont
        if frame.props is not None:
            if frame.skipped:
                frame.props.skipped = tuple(frame.skipped)
            return
        if not _is_list_shaped(d):
            return
        new: list[Any] = list(d.values())
        for holder, key in [(frame.parent, frame.pkey), *(frame.aliases or ())]:
            if holder.get(key) is d:
                holder[key] = new
        if frame.box is not None and frame.box.value is d:
            frame.box.value = new
        if frame.ref >= 0:
            entry = self.refs[frame.ref]
            if entry is d:
                self.refs[frame.ref] = new
            elif type(entry) is PHPReference and entry.value is d:
                entry.value = new
        for box in frame.boxes or ():
            if box.value is d:
                box.value = new

    def run(self, pos: int) -> tuple[Any, int]:
        """Decode one value at ``pos``; return it and the position after it."""
        data = self.data
        end = self.end
        refs = self.refs
        root: dict[Any, Any] = {}
        stack: list[_Open] = []
        holder: dict[Any, Any] = root  # where the next value goes
        hkey: Any = 0
        want_ref = False
        while True:
            # ---- one value at pos, for holder[hkey] ----
            if pos >= end:
                raise _Fail("end of data", pos)
            t = data[pos]
            start = pos
            pos += 1
            value: Any
            if t == T_REF:
                if want_ref:  # 25 25 ...: one reference, as PHP reads it
                    continue
                want_ref = True
                continue
            opened: _Open | None = None
            if t in _STRINGS:
                value, pos = self.chars(pos, t)
            elif t in _LONGS:
                value, pos = self.long(pos, t)
            elif t in _STRING_IDS:
                value, pos = self.string_id(pos, t)
            elif t == T_STRING_EMPTY:
                value = ""
            elif t == T_NULL:
                value = None
            elif t == T_TRUE:
                value = True
            elif t == T_FALSE:
                value = False
            elif t == T_DOUBLE:
                if pos + 8 > end:
                    raise _Fail("end of data", start)
                value = _DOUBLE.unpack_from(data, pos)[0]
                pos += 8
            elif t in _ARRAYS:
                n = self.number(pos, _WIDTH[t])
                pos += _WIDTH[t]
                if n > end - pos:
                    raise _Fail(f"array of {n} entries in {end - pos} bytes", start)
                cont: dict[Any, Any] = {}
                box = PHPReference(cont) if want_ref else None
                ref = len(refs)
                refs.append(box if box is not None else cont)
                value = box if box is not None else cont
                if n == 0:
                    value = box if box is not None else []
                    if box is not None:
                        box.value = []
                    else:
                        refs[ref] = value
                else:
                    if self.max_depth and len(stack) >= self.max_depth:
                        raise _Fail(f"maximum depth of {self.max_depth} exceeded", start)
                    opened = _Open(cont, n, None, holder, hkey, box, ref)
            elif t in _BACKREFS:
                width = _WIDTH[t]
                n = self.number(pos, width)
                pos += width
                if n >= len(refs):
                    raise _Fail(f"reference {n} to a value not read yet", start)
                entry = refs[n]
                if want_ref:
                    if type(entry) is not PHPReference:
                        inner_frame = self.open.get(id(entry)) if type(entry) is dict else None
                        entry = PHPReference(entry)
                        refs[n] = entry
                        if inner_frame is not None:
                            if inner_frame.boxes is None:
                                inner_frame.boxes = []
                            inner_frame.boxes.append(entry)
                    value = entry
                else:
                    value = entry.value if type(entry) is PHPReference else entry
            elif t in _OBJECTS:
                if t >= T_OBJECT_ID8:
                    name, pos = self.string_id(pos, t)
                else:
                    name, pos = self.chars(pos, t)
                ref = len(refs)
                refs.append(None)
                if pos >= end:
                    raise _Fail("end of data", pos)
                inner = data[pos]
                pos += 1
                incomplete = self.incomplete(name)
                if inner in _ARRAYS:
                    n = self.number(pos, _WIDTH[inner])
                    pos += _WIDTH[inner]
                    if n > end - pos:
                        raise _Fail(f"object of {n} properties in {end - pos} bytes", start)
                    obj: Any = PHPObject(name, {}, incomplete=incomplete)
                    if n:
                        if self.max_depth and len(stack) >= self.max_depth:
                            raise _Fail(f"maximum depth of {self.max_depth} exceeded", start)
                        opened = _Open(obj.properties, n, obj, None, None, None, -1)
                elif inner in _SERIALIZED:
                    width = _WIDTH[inner]
                    n = self.number(pos, width)
                    pos += width
                    if n > end - pos:
                        raise _Fail("serialized object data runs past the end", start)
                    obj = PHPCustomObject(name, bytes(data[pos : pos + n]), incomplete=incomplete)
                    pos += n
                elif inner == T_ENUM_CASE:
                    if pos >= end:
                        raise _Fail("end of data", pos)
                    ct = data[pos]
                    pos += 1
                    if ct in _STRINGS:
                        case, pos = self.chars(pos, ct)
                    elif ct in _STRING_IDS:
                        case, pos = self.string_id(pos, ct)
                    else:
                        raise _Fail(f"bad enum case type {ct:#04x}", pos - 1)
                    obj = PHPEnum(name, case)
                else:
                    raise _Fail(f"unknown object inner type {inner:#04x}", pos - 1)
                value = PHPReference(obj) if want_ref else obj
                refs[ref] = value
            else:
                raise _Fail(f"unknown type {t:#04x}", start)
            if want_ref and t not in _ARRAYS and t not in _BACKREFS and t not in _OBJECTS:
                value = PHPReference(value)  # a referenced scalar joins the reference table
                refs.append(value)
            want_ref = False
            self.place(holder, hkey, value)
            if opened is not None:
                self.open[id(opened.cont)] = opened
                stack.append(opened)
            # ---- the next slot: a key of the innermost open array, or done ----
            while True:
                if not stack:
                    return root[0], pos
                frame = stack[-1]
                if frame.left == 0:
                    stack.pop()
                    self.close(frame)
                    continue
                frame.left -= 1
                k, pos, has_value = self.key(pos)
                if not has_value:
                    if frame.props is not None:
                        if frame.skipped is None:
                            frame.skipped = []
                        frame.skipped.append(frame.count - frame.left - 1)
                    continue
                holder = frame.cont
                hkey = k
                break

    def incomplete(self, name: str | bytes) -> bool:
        """Whether ``allowed_classes`` makes PHP build ``__PHP_Incomplete_Class`` for ``name``."""
        allowed = self.allowed
        if allowed is True:
            return False
        if allowed is False:
            return True
        raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        return raw.lower() not in allowed


def _is_list_shaped(d: dict[Any, Any]) -> bool:
    i = 0
    for k in d:
        if k.__class__ is not int or k != i:
            return False
        i += 1
    return True


def _allowed(allowed_classes: AllowedClasses) -> bool | frozenset[bytes]:
    if allowed_classes is True or allowed_classes is False:
        return allowed_classes
    if isinstance(allowed_classes, (str, bytes)):
        raise TypeError("allowed_classes must be a bool or an iterable of class names")
    names = set()
    for name in allowed_classes:
        if isinstance(name, str):
            names.add(name.encode("utf-8", "surrogateescape").lower())
        elif isinstance(name, bytes):
            names.add(name.lower())
        else:
            raise TypeError("allowed_classes must contain only class names (str)")
    return frozenset(names)


def _decode(data: bytes | bytearray | memoryview, allowed_classes: AllowedClasses,
            max_depth: int) -> tuple[Any, int]:
    raw = bytes(data)
    if len(raw) < 5:
        raise SessionDecodeError(f"igbinary data needs at least 5 bytes, got {len(raw)}", 0)
    if raw[:4] != HEADER and raw[:4] != _HEADER_V1:
        raise SessionDecodeError("not igbinary data (no \\x00\\x00\\x00\\x02 header)", 0)
    dec = _Decoder(raw, _allowed(allowed_classes), max_depth)
    try:
        return dec.run(4)
    except _Fail as exc:
        raise SessionDecodeError(str(exc), exc.offset)
    except (struct.error, IndexError, OverflowError, MemoryError, RecursionError):
        raise SessionDecodeError("malformed igbinary data", len(raw))


def loads(data: bytes | bytearray | memoryview, *, allowed_classes: AllowedClasses = True,
          max_depth: int = MAX_DEPTH) -> Any:
    """``igbinary_unserialize()``: the one value of ``data``.

    :param allowed_classes: as :func:`phpsess.core.codec.loads` (objects of other classes
        are marked ``incomplete``).
    :param max_depth: nesting bound (PHP's ``unserialize_max_depth``; 0: none).
    :raises SessionDecodeError: malformed data, or bytes after the value (PHP warns
        "received more data to unserialize than expected" and fails).
    """
    value, end = _decode(data, allowed_classes, max_depth)
    if end != len(data):
        raise SessionDecodeError("received more data to unserialize than expected", end)
    return value


def decode_session(payload: bytes | bytearray | memoryview, *, allowed_classes: AllowedClasses = True,
                   max_depth: int = MAX_DEPTH) -> dict[Any, Any]:
    """The ``igbinary`` session serializer's decode (``PS_SERIALIZER_DECODE_FUNC(igbinary)``).

    The payload is one igbinary array (or object) of the session's variables; integer
    keys are skipped, as PHP skips them, and bytes after the value are ignored, as PHP
    ignores them.  Empty input is an empty session.

    :raises SessionDecodeError: malformed data, or a value that is neither an array nor
        an object (PHP fails the decode and destroys the session).
    """
    if not payload:
        return {}
    value, _ = _decode(payload, allowed_classes, max_depth)
    if type(value) is PHPReference:
        value = value.value
    if type(value) is PHPObject:
        value = value.properties
    if type(value) is list:
        return {}  # keys 0..n-1: all skipped
    if type(value) is not dict:
        raise SessionDecodeError("igbinary session data is not an array", 4)
    if all(type(k) is not int for k in value):
        return value
    return {k: v for k, v in value.items() if type(k) is not int}


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


def _sized(out: bytearray, t8: int, n: int) -> None:
    """A type byte of the 8/16/32-bit family starting at ``t8``, then ``n`` in that width."""
    if n <= 0xFF:
        out.append(t8)
        out.append(n)
    elif n <= 0xFFFF:
        out.append(t8 + 1)
        out += _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out.append(t8 + 2)
        out += _U32.pack(n)
    else:
        raise SessionEncodeError(f"igbinary cannot count {n} (more than 32 bits)")


def _long(out: bytearray, v: int) -> None:
    """igbinary_serialize_long."""
    if v >= 0:
        if v <= 0xFF:
            out.append(T_LONG8P)
            out.append(v)
        elif v <= 0xFFFF:
            out.append(T_LONG16P)
            out += _U16.pack(v)
        elif v <= 0xFFFFFFFF:
            out.append(T_LONG32P)
            out += _U32.pack(v)
        elif v <= PHP_INT_MAX:
            out.append(T_LONG64P)
            out += _U64.pack(v)
        else:
            raise SessionEncodeError(f"int {v} is outside PHP's 64-bit range")
    else:
        k = -v
        if k <= 0xFF:
            out.append(T_LONG8N)
            out.append(k)
        elif k <= 0xFFFF:
            out.append(T_LONG16N)
            out += _U16.pack(k)
        elif k <= 0xFFFFFFFF:
            out.append(T_LONG32N)
            out += _U32.pack(k)
        elif v >= PHP_INT_MIN:
            out.append(T_LONG64N)
            out += _U64.pack(k)
        else:
            raise SessionEncodeError(f"int {v} is outside PHP's 64-bit range")


def _raw(s: str | bytes | bytearray | memoryview, what: str) -> bytes:
    if isinstance(s, str):
        try:
            return s.encode("utf-8")
        except UnicodeEncodeError:
            raise SessionEncodeError(f"{what} {s[:40]!r} cannot be encoded as UTF-8 (lone surrogate)")
    return bytes(s)


class _NoKey:
    """The key of a value written without one (the top-level value)."""


_NO_KEY: Any = _NoKey()
#: an entry written as a lone ``00`` key (PHPObject.skipped)
_SKIP: Any = _NoKey()


def _with_skipped(props: dict[Any, Any], skipped: tuple[int, ...]) -> Iterator[tuple[Any, Any]]:
    """The properties with a placeholder at each of the ``skipped`` positions."""
    holes = set(skipped)
    items = iter(props.items())
    left = len(props)
    for i in range(len(props) + len(holes)):
        if (i in holes or not left):
            yield _SKIP, None
        else:
            left -= 1
            yield next(items)


class _Encoder:
    """One encode: the output, the string table, the reference table."""

    def __init__(self) -> None:
        self.out = bytearray(HEADER)
        self.strings: dict[bytes, int] = {}
        self.refs: dict[Any, int] = {}
        self.ref_count = 0
        self.keep: list[Any] = []  # objects keyed by id() stay alive until the end

    def string(self, raw: bytes) -> None:
        """igbinary_serialize_string (compact_strings = On)."""
        out = self.out
        n = len(raw)
        if n == 0:
            out.append(T_STRING_EMPTY)
            return
        i = self.strings.get(raw)
        if i is not None:
            _sized(out, T_STRING_ID8, i)
            return
        self.strings[raw] = len(self.strings)
        if n <= 0xFF:
            out.append(T_STRING8)
            out.append(n)
        elif n <= 0xFFFF:
            out.append(T_STRING16)
            out += _U16.pack(n)
        elif n <= 0xFFFFFFFF:
            out.append(T_STRING32)
            out += _U32.pack(n)
        else:
            out.append(T_STRING64)
            out += _U64.pack(n)
        out += raw

    def class_name(self, name: str | bytes) -> None:
        """igbinary_serialize_object_name: in full the first time, then by number."""
        raw = _raw(name, "class name")
        if not raw:
            raise SessionEncodeError("an object needs a class name")
        i = self.strings.get(raw)
        if i is not None:
            _sized(self.out, T_OBJECT_ID8, i)
            return
        self.strings[raw] = len(self.strings)
        _sized(self.out, T_OBJECT8, len(raw))
        self.out += raw

    def seen(self, key: Any, obj: Any, t8: int) -> bool:
        """igbinary_serialize_array_ref: True (and the back-reference written) when
        ``key`` has a number already; else give it the next number.  The first
        non-object to take a number (the top-level array) is not keyed by identity."""
        if self.ref_count == 0 and t8 == T_REF8:
            self.ref_count = 1
            return False
        n = self.refs.get(key)
        if n is not None:
            _sized(self.out, t8, n)
            return True
        self.refs[key] = self.ref_count
        self.ref_count += 1
        self.keep.append(obj)
        return False

    def array_key(self, k: Any) -> None:
        """A key of a PHP array: canonical numeric strings become ints, as PHP arrays do."""
        if isinstance(k, (str, bytes, bytearray, memoryview)):
            pk = php_array_key(k if isinstance(k, (str, bytes)) else bytes(k))
            if isinstance(pk, int):
                _long(self.out, pk)
            else:
                self.string(_raw(pk, "array key"))
        elif isinstance(k, int):
            _long(self.out, int(k))
        elif isinstance(k, float) and k.is_integer() and PHP_INT_MIN <= k <= PHP_INT_MAX:
            _long(self.out, int(k))
        else:
            raise SessionEncodeError(f"unsupported array key {k!r} ({type(k).__name__}): use int or str")

    def prop_key(self, k: Any) -> None:
        """A property name: strings as they are, ints (``__serialize()`` arrays) as ints."""
        if isinstance(k, (str, bytes, bytearray, memoryview)):
            self.string(_raw(k, "property name"))
        elif isinstance(k, int) and not isinstance(k, bool):
            _long(self.out, int(k))
        else:
            raise SessionEncodeError(f"unsupported property name {k!r}: use str (or int)")

    def scalar(self, v: Any) -> bool:
        """Write ``v`` if it is a scalar PHP value; False when it is not one."""
        out = self.out
        t = type(v)
        if t is str:
            self.string(_raw(v, "string"))
        elif t is int:
            _long(out, v)
        elif v is None:
            out.append(T_NULL)
        elif t is bool:
            out.append(T_TRUE if v else T_FALSE)
        elif t is float:
            out.append(T_DOUBLE)
            out += _DOUBLE.pack(v)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self.string(bytes(v))
        elif isinstance(v, bool):
            out.append(T_TRUE if v else T_FALSE)
        elif isinstance(v, int):
            _long(out, int(v))
        elif isinstance(v, float):
            out.append(T_DOUBLE)
            out += _DOUBLE.pack(float(v))
        elif isinstance(v, str):
            self.string(_raw(str(v), "string"))
        else:
            return False
        return True

    def run(self, top: Any) -> bytes:
        """Write ``top`` after the header and return the bytes."""
        out = self.out
        # the enclosing levels: (their iterator, property keys?, container id)
        stack: list[tuple[Iterator[tuple[Any, Any]], bool, int]] = []
        open_ids: set[int] = set()
        it: Iterator[tuple[Any, Any]] = iter(((_NO_KEY, top),))
        props = False
        while True:
            for k, v in it:
                if k is not _NO_KEY:
                    if k is _SKIP:
                        out.append(T_NULL)
                        continue
                    if props:
                        self.prop_key(k)
                    else:
                        self.array_key(k)
                if self.scalar(v):
                    continue
                t = type(v)
                box = None
                if t is PHPReference:
                    box = v
                    v = v.value
                    t = type(v)
                    if t is PHPReference:
                        raise SessionEncodeError("a PHPReference cannot hold another PHPReference")
                    out.append(T_REF)
                if t is PHPObject:
                    if self.seen(id(v), v, T_OBJREF8):
                        continue
                    self.class_name(v.class_name)
                    p = v.properties
                    holes = v.skipped
                    _sized(out, T_ARRAY8, len(p) + len(set(holes)))
                    if p or holes:
                        stack.append((it, props, -1))
                        it, props = (_with_skipped(p, holes) if holes else iter(p.items())), True
                        break
                    continue
                if t is PHPCustomObject:
                    if self.seen(id(v), v, T_OBJREF8):
                        continue
                    self.class_name(v.class_name)
                    data = bytes(v.data)
                    _sized(out, T_OBJECT_SER8, len(data))
                    out += data
                    continue
                if t is PHPEnum:
                    if self.seen((PHPEnum, v.class_name, v.case), v, T_OBJREF8):
                        continue
                    self.class_name(v.class_name)
                    out.append(T_ENUM_CASE)
                    case = _raw(v.case, "enum case")
                    if not case:
                        raise SessionEncodeError("an enum case needs a name")
                    self.string(case)
                    continue
                if t is dict or t is list or t is tuple or isinstance(v, (Mapping, list, tuple)):
                    if box is None and id(v) in open_ids:
                        raise SessionEncodeError(
                            "recursive array: a list or dict contains itself (use a PHPReference)")
                    if self.seen(id(box) if box is not None else id(v), box if box is not None else v, T_REF8):
                        continue
                    items: Iterator[tuple[Any, Any]] = iter(v.items()) if isinstance(v, Mapping) else enumerate(v)
                    n = len(v)
                    _sized(out, T_ARRAY8, n)
                    if n:
                        stack.append((it, props, id(v)))
                        open_ids.add(id(v))
                        it, props = items, False
                        break
                    continue
                if box is not None:
                    # a referenced scalar: the reference group takes a number, then the value
                    if not self.seen(id(box), box, T_REF8):
                        if not self.scalar(v):
                            raise _unsupported(v)
                    continue
                raise _unsupported(v)
            else:
                if not stack:
                    return bytes(out)
                it, props, cid = stack.pop()
                open_ids.discard(cid)


def _unsupported(v: Any) -> SessionEncodeError:
    t = type(v)
    return SessionEncodeError(
        f"cannot serialize {t.__module__}.{t.__qualname__} value {v!r:.60}: PHP has no such type "
        "(use dict, list, tuple, str, bytes, int, float, bool, None or the PHP* value types)"
    )


def dumps(value: Any) -> bytes:
    """``igbinary_serialize($value)`` (without the trailing NUL, as the PHP function).

    :raises SessionEncodeError: for values PHP cannot hold (as :func:`phpsess.core.codec.dumps`).
    """
    return _Encoder().run(value)


def encode_session(data: Mapping[Any, Any]) -> bytes:
    """The ``igbinary`` session serializer's encode: the header and the session array
    (number 0 of the reference table), integer keys included.  An empty session is the
    6 bytes ``00 00 00 02 14 00``, never "nothing".

    :raises SessionEncodeError: for values PHP cannot hold.
    """
    return _Encoder().run(data if type(data) is dict else dict(data.items()))
