"""PHP's ``serialize()`` / ``unserialize()`` format for one value, byte for byte as PHP 8.2. No I/O.

``dumps(value) -> bytes`` and ``loads(data) -> value`` work like :mod:`json`'s.  The
mapping between PHP and Python values is documented in ``docs/types.md``:

* PHP ``null``/``bool``/``int``/``float`` are ``None``/``bool``/``int``/``float``;
* a PHP string is a ``str`` when it is valid UTF-8 and ``bytes`` otherwise, so every
  string survives a round trip unchanged (PHP strings are bytes);
* a PHP array is a ``list`` when its keys are exactly ``0..n-1`` in order (and for the
  empty array), otherwise a ``dict`` with ``int`` and ``str``/``bytes`` keys;
* objects become plain data: :class:`PHPObject`, :class:`PHPCustomObject` (``C:``),
  :class:`PHPEnum`; no Python code is ever instantiated from a payload;
* PHP references (``&``, written ``R:n``) become a shared :class:`PHPReference` box.

Reference numbering (``r:n``/``R:n``) follows ``ext/standard/var.c`` and
``var_unserializer.re``; a :class:`RefContext` holds one numbering context
so that the session formats (``formats.py``) share it across all keys of a session.

Implementation notes (speed matters; see ``bench/codec.py``).  In the compiled build,
the values it handles (no objects nor references) first go through
:mod:`phpsess.core.fastcodec` (``NATIVE_PATH``), which gives up on anything else; what
follows is the Python codec, the only one in the plain build.  The decoder works on the
payload decoded as latin-1, so that character offsets are byte offsets and every slice
is a ``str``; ASCII strings need no further work (``str.isascii`` is O(1)), others are
re-encoded and decoded as UTF-8.  A payload without ``r:``/``R:`` first goes through a
fast path that splits it at ``;`` in one C call and looks each token up in bounded
caches of tokens already decoded; anything unusual falls back to the exact parser,
which is also the only one that reports errors (the tests check that both agree).
Both directions use an explicit stack instead of recursion: nesting is limited by
PHP's ``unserialize_max_depth`` (4096), never by Python's stack.  The encoder builds
one ``str`` and encodes it once with ``surrogateescape``; ``bytes`` values enter it
through ``surrogateescape`` decoding, which gives back exactly the original bytes.
"""

from __future__ import annotations

import codecs
import itertools
import re
import sys
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

from ..errors import SessionDecodeError, SessionEncodeError
from . import fastcodec
from .phparray import PHPArray
from .zend import float_to_string

__all__ = [
    "dumps",
    "loads",
    "loads_prefix",
    "dump_pairs",
    "PHPObject",
    "PHPCustomObject",
    "PHPEnum",
    "PHPReference",
    "RefContext",
    "PHP_INT_MAX",
    "PHP_INT_MIN",
    "MAX_DEPTH",
    "php_array_key",
    "is_valid_class_name",
    "clear_caches",
    "trim_caches",
    "to_php_arrays",
]

#: largest PHP ``int`` (64-bit)
PHP_INT_MAX = 9223372036854775807
#: smallest PHP ``int``
PHP_INT_MIN = -9223372036854775808
#: PHP's default ``unserialize_max_depth``
MAX_DEPTH = 4096

AllowedClasses = Union[bool, Iterable[str]]


# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------

_EQ_ACTIVE = threading.local()


def _cyclic_eq(a: object, b: object, compare: Callable[[], bool]) -> bool:
    """Run ``compare()`` unless ``a == b`` is already being decided further up.

    Decoded objects and references may form cycles (``$o->self = $o``); a pair met
    again while it is compared is taken as equal, which makes ``==`` terminate and
    compare the two graphs by their shape.
    """
    active = getattr(_EQ_ACTIVE, "pairs", None)
    if active is None:
        active = _EQ_ACTIVE.pairs = set()
    pair = (id(a), id(b))
    if pair in active:
        return True
    active.add(pair)
    try:
        return compare()
    finally:
        active.discard(pair)


class PHPObject:
    """A PHP object (``O:``) as plain data: its class name and its properties.

    ``properties`` keeps PHP's raw property names, mangled as PHP serializes them:
    ``"name"`` (public), ``"\\0*\\0name"`` (protected), ``"\\0Class\\0name"`` (private);
    integer keys (written by ``__serialize()``, e.g. ``ArrayObject``) stay ints.
    Identity matters: the same ``PHPObject`` met twice is serialized as ``r:n`` the
    second time, as PHP does for one object.  ``incomplete`` is True when the decoder
    was told the class is not allowed (PHP would build ``__PHP_Incomplete_Class``);
    it does not change how the object serializes (PHP also writes the original
    class name back).  ``skipped`` is only igbinary's (:mod:`phpsess.core.igbinary`):
    the positions among the properties where igbinary wrote an entry without a value
    (an uninitialized typed property), so that the object is written back the same;
    ``serialize()`` leaves such properties out, as PHP does.  Equality compares class
    name and properties.
    """

    __slots__ = ("class_name", "properties", "incomplete", "skipped")

    def __init__(
        self,
        class_name: str | bytes,
        properties: dict[Any, Any] | None = None,
        *,
        incomplete: bool = False,
        skipped: tuple[int, ...] = (),
    ) -> None:
        self.class_name = class_name
        self.properties: dict[Any, Any] = {} if properties is None else properties
        self.incomplete = incomplete
        self.skipped = skipped

    def __eq__(self, other: object) -> bool:
        if type(other) is not PHPObject:
            return NotImplemented
        if self is other:
            return True
        return _cyclic_eq(
            self, other, lambda: self.class_name == other.class_name and self.properties == other.properties
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        flag = ", incomplete=True" if self.incomplete else ""
        return f"PHPObject({self.class_name!r}, {self.properties!r}{flag})"


class PHPCustomObject:
    """An object of a class implementing ``Serializable`` (``C:``); its data kept opaque.

    ``data`` is exactly what the class's ``serialize()`` method returned, as bytes.
    Unlike PHP (which drops the data of a class it cannot load), phpsess always keeps
    it, so the object serializes back to the same bytes.
    """

    __slots__ = ("class_name", "data", "incomplete")

    def __init__(self, class_name: str | bytes, data: bytes, *, incomplete: bool = False) -> None:
        self.class_name = class_name
        self.data = data
        self.incomplete = incomplete

    def __eq__(self, other: object) -> bool:
        if type(other) is not PHPCustomObject:
            return NotImplemented
        return self.class_name == other.class_name and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PHPCustomObject({self.class_name!r}, {self.data!r})"


class PHPEnum:
    """A PHP 8.1+ enum case (``E:``), e.g. ``PHPEnum("Suit", "Hearts")``.

    Enum cases are singletons in PHP, so equal ``PHPEnum`` values are one object for
    reference numbering: a case met a second time is written ``r:n``, as PHP does.
    Immutable and hashable.
    """

    __slots__ = ("class_name", "case")
    class_name: str | bytes
    case: str | bytes

    def __init__(self, class_name: str | bytes, case: str | bytes) -> None:
        object.__setattr__(self, "class_name", class_name)
        object.__setattr__(self, "case", case)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PHPEnum is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not PHPEnum:
            return NotImplemented
        return bool(self.class_name == other.class_name and self.case == other.case)

    def __hash__(self) -> int:
        return hash((PHPEnum, self.class_name, self.case))

    def __repr__(self) -> str:
        return f"PHPEnum({self.class_name!r}, {self.case!r})"


class PHPReference:
    """A PHP reference (``&``): a box shared by every slot that references one value.

    Two places holding the *same* ``PHPReference`` serialize as the value and then
    ``R:n``; a box that appears once serializes as its plain value, as PHP does for a
    reference with a single holder.  Equality compares the boxed values.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if type(other) is not PHPReference:
            return NotImplemented
        if self is other:
            return True
        return _cyclic_eq(self, other, lambda: bool(self.value == other.value))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PHPReference({self.value!r})"


_OBJECT_TYPES = (PHPObject, PHPCustomObject, PHPEnum)


# --------------------------------------------------------------------------------------
# Shared reference-numbering context
# --------------------------------------------------------------------------------------


class RefContext:
    """One reference-numbering context (``var_hash`` of var.c), shared by all values of a session.

    Encoding: ``counter`` is the number of values written so far (the next value gets
    ``counter + 1``); ``ids`` maps an object/reference identity to the number it got.
    Decoding: ``slots`` is PHP's slot table, one ``(holder, key)`` location per value
    (``R:`` values excepted), so ``R:n`` can turn slot *n* into a shared
    :class:`PHPReference` after the fact.  The decoder only fills it when the payload
    can contain ``r:``/``R:`` at all (``track``).  It also carries the decode options
    (``allowed``, ``max_depth``), the payload as decoder text (:meth:`text_of`) and the
    token caches.
    """

    __slots__ = (
        "counter", "ids", "slots", "track", "allowed", "max_depth",
        "values", "keys", "props", "size", "budget", "_src", "_text",
    )

    def __init__(self, *, allowed_classes: AllowedClasses = True, max_depth: int = MAX_DEPTH) -> None:
        self.counter = 0
        self.ids: dict[Any, int] = {}
        self.slots: list[tuple[list[Any], Any]] = []
        self.track = True
        self.allowed: bool | frozenset[bytes] = _allowed_set(allowed_classes)
        self.max_depth = max_depth
        # decoder caches: token text (up to its ';') -> value, array key, property name
        trim_caches()
        self.values = _VALUES
        self.keys = _KEYS
        self.props = _PROPS
        self.size = 0
        # what the fast path may still copy re-slicing long pieces (see _charge)
        self.budget = 0
        self._src: object = None
        self._text = ";"

    def text_of(self, data: bytes | bytearray | memoryview | str) -> str:
        """Return the text the decoder works on: ``data`` as latin-1 plus a ``;`` sentinel.

        Latin-1 makes character offsets byte offsets; the sentinel lets the hot loop
        ``find(";")`` without checking for -1 (``size`` is the real length).  The first
        call for a payload also decides whether slots must be tracked: only when it
        contains something that looks like ``r:<n>;`` or ``R:<n>;``.
        """
        if data is self._src:
            return self._text
        if isinstance(data, str):
            raw = data.encode("utf-8", "surrogateescape")
        else:
            raw = bytes(data)
        text = raw.decode("latin-1")
        self._src = data
        self._text = text + ";"
        self.size = len(text)
        self.budget = 4 * len(text) + _SLICE_FREE * 64
        if not self.slots:
            self.track = ("R:" in text or "r:" in text) and _REF_TOKEN.search(text) is not None
        return self._text


def _allowed_set(allowed_classes: AllowedClasses) -> bool | frozenset[bytes]:
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


_REF_TOKEN = re.compile(r"[rR]:[0-9]+;")

# Token caches shared by all decodes (a worker decodes the same keys and values over
# and over): token text up to its ";" -> the immutable value it decodes to.  Only
# short tokens are kept (at most _CACHE_TOKEN_MAX characters, so each entry takes at
# most about 400 bytes), no cache takes more than _CACHE_LIMIT entries, and all the
# caches, the encoder's too, are emptied when together they hold more than
# _CACHE_LIMIT entries (trim_caches(), at the start and the end of every call): what
# stays in a worker between requests is at most about 3 MiB, whatever clients send.
_CACHE_LIMIT = 8192
_CACHE_TOKEN_MAX = 96
_SEED: dict[str, Any] = {"b:1": True, "b:0": False, "N": None}
_VALUES: dict[str, Any] = dict(_SEED)  # scalar values
_KEYS: dict[str, Any] = {}  # array keys ("s:1:\"5\"" -> 5)
_PROPS: dict[str, Any] = {}  # property names (no numeric-string canonicalisation)
# "a:2:{s:1:\"x\"" -> (2, "s:1:\"x\"", 1): count, first key piece, 0 (a list: the
# first key is i:0) or 1 (a dict)
_HEADERS: dict[str, tuple[int, str, int]] = {}


def trim_caches() -> None:
    """Empty the decoder's and encoder's caches if together they hold more than the limit."""
    if (
        len(_VALUES) + len(_KEYS) + len(_PROPS) + len(_HEADERS) + len(_ARRAY_KEY_PIECES)
        + len(_PROP_KEY_PIECES) + len(_STR_PIECES) + len(_INT_PIECES) + len(_FLOAT_PIECES)
    ) > _CACHE_LIMIT:
        clear_caches()


def clear_caches() -> None:
    """Empty the decoder's and encoder's caches (benchmarks use it to measure cold runs)."""
    _VALUES.clear()
    _VALUES.update(_SEED)
    _KEYS.clear()
    _PROPS.clear()
    _HEADERS.clear()
    _clear_encoder_caches()


def _clear_encoder_caches() -> None:
    fastcodec.clear_caches()
    _ARRAY_KEY_PIECES.clear()
    _PROP_KEY_PIECES.clear()
    _STR_PIECES.clear()
    _INT_PIECES.clear()
    _FLOAT_PIECES.clear()


# --------------------------------------------------------------------------------------
# Scalars: PHP rules
# --------------------------------------------------------------------------------------

_CANONICAL_INT = re.compile(r"-?[1-9][0-9]{0,18}|0")
_INT_STARTS = frozenset("-0123456789")  # how a canonical decimal key can begin


def php_array_key(key: str | bytes | int) -> str | bytes | int:
    """Return ``key`` as a PHP array stores it: canonical decimal strings become ints.

    ``"5"`` -> ``5``, ``"-3"`` -> ``-3``; ``"05"``, ``"-0"``, ``"+1"``, ``" 1"`` and
    values outside the 64-bit range stay strings (``ZEND_HANDLE_NUMERIC_STR``).
    """
    if type(key) is str and (not key or key[0] not in _INT_STARTS):
        return key  # the usual name-like key, at once
    if isinstance(key, int):
        return int(key)
    s = key.decode("latin-1") if isinstance(key, bytes) else key
    if _CANONICAL_INT.fullmatch(s):
        n = int(s)
        if PHP_INT_MIN <= n <= PHP_INT_MAX:
            return n
    return key


# Valid characters of a class name in unserialize() (zend_is_valid_class_name); a name
# must also be non-empty and not start with a namespace separator.
_CLASS_NAME = re.compile(r"[A-Za-z0-9_\\\x80-\xff]+")
_ENUM_CASE = re.compile(r"[A-Za-z0-9_\x80-\xff]+")


def is_valid_class_name(name: str | bytes) -> bool:
    """Whether ``unserialize()`` accepts ``name`` (raw bytes, or str as UTF-8) as a class name."""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    s = name.decode("latin-1")
    return bool(_CLASS_NAME.fullmatch(s)) and s[0] != "\\"


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------

_INT_BODY = re.compile(r"[+-]?[0-9]+")
_FLOAT_BODY = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NAN|INF|-INF")
_BAD_ESCAPE = re.compile(r"\\(?![0-9a-fA-F]{2})")  # in an S: body, "\\" starts a \xx escape
# ready-made "i:<n>;" keys of list elements: a cheap startswith() in the hot loop
_LIST_KEYS = tuple(f"i:{i};" for i in range(1024))
_NLIST_KEYS = len(_LIST_KEYS)


class _Fail(Exception):
    """Internal: a decode error with its reason; turned into SessionDecodeError."""


def _text_value(s: str) -> str | bytes:
    """A latin-1 slice of the payload as phpsess represents a PHP string."""
    raw = s.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _parse_int(s: str) -> int:
    """An ``i:`` body: ``[+-]?[0-9]+``, leading zeros allowed.

    PHP clamps out-of-range values to ``PHP_INT_MAX``/``PHP_INT_MIN`` (with the warning
    "Numerical result out of range"); phpsess clamps silently, whatever the length.
    """
    if not _INT_BODY.fullmatch(s):
        raise _Fail("bad integer")
    negative = s[0] == "-"
    digits = s.lstrip("+-").lstrip("0")
    if len(digits) > 19:
        return PHP_INT_MIN if negative else PHP_INT_MAX
    v = int(digits or "0")
    if negative:
        return max(-v, PHP_INT_MIN)
    return min(v, PHP_INT_MAX)


def _parse_escaped(text: str, pos: int, n: int, end: int) -> tuple[str, int]:
    """``S:`` strings: ``n`` bytes where ``\\xx`` (two hex digits) stands for one byte.

    C-level calls only, so that an ``S:`` of 100,000 escapes costs no Python loop.
    Hex digits are never backslashes, so the body is valid up to the first backslash
    not followed by two hex digits (one regex search).  The raw length ``L`` of ``n``
    units satisfies ``L = n + 2 * (backslashes in L)``; iterating from ``L = n`` gets
    there in a few steps over valid units; then the window decodes at once.
    """
    limit = min(end, pos + 3 * n + 2)
    bad = _BAD_ESCAPE.search(text, pos, limit)
    valid_end = bad.start() if bad else limit
    length = n
    while True:
        if pos + length > valid_end:
            raise _Fail("bad or truncated escaped string")
        grown = n + 2 * text.count("\\", pos, pos + length)
        if grown == length:
            break
        length = grown
    raw = text[pos : pos + length]
    if "\\" in raw:
        raw = codecs.decode(raw.replace("\\", "\\x").encode("latin-1"), "unicode_escape")
    if len(raw) != n:
        raise _Fail("bad escaped string")
    return raw, pos + length


def _class_name(text: str, pos: int) -> tuple[str, int]:
    """Parse ``<len>:"<name>"`` at ``pos`` (after ``O:``/``C:``/``E:``); return (name, pos after quote)."""
    colon = text.index(":", pos)
    ls = text[pos:colon]
    if not ls.isdigit():
        raise _Fail("bad length")
    n = int(ls)
    if text[colon + 1] != '"':
        raise _Fail('expected "')
    start = colon + 2
    name = text[start : start + n]
    if len(name) != n or text[start + n : start + n + 1] != '"':
        raise _Fail("truncated name")
    return name, start + n + 1


def _object_header(text: str, pos: int) -> tuple[str, int, int]:
    """Parse ``O:<len>:"<name>":<n>:{`` (or ``C:``) at ``pos``: (class name, ``n``, the
    position after the ``{``).  ``n`` counts properties (``O``) or data bytes (``C``)."""
    if text[pos + 1] != ":":
        raise _Fail("bad object")
    name, p = _class_name(text, pos + 2)
    if not _CLASS_NAME.fullmatch(name) or name[0] == "\\":
        raise _Fail("invalid class name")
    if text[p] != ":":
        raise _Fail("bad object header")
    colon = text.index(":", p + 1)
    ls = text[p + 1 : colon]
    if not ls.isdigit() or text[colon + 1] != "{":
        raise _Fail("bad object header")
    return name, int(ls), colon + 2


def _is_list_dict(d: dict[Any, Any]) -> bool:
    i = 0
    for k in d:
        if k.__class__ is not int or k != i:
            return False
        i += 1
    return True


def _replace_container(old: Any, new: Any, parent: Any, pkey: Any) -> None:
    """A container changed type (list <-> dict) after being stored in its parent."""
    cur = parent[pkey]
    if cur is old:
        parent[pkey] = new
    elif type(cur) is PHPReference and cur.value is old:
        cur.value = new


def _parse(text: str, pos: int, ctx: RefContext, cell: list[Any]) -> int:
    """Parse one serialized value at ``pos``; append it to ``cell``; return the end offset.

    ``text`` is the payload as latin-1 plus a ``;`` sentinel (see ``RefContext.text_of``).
    Containers are created and stored in their parent when opened (as PHP does), so
    ``R:n`` to an enclosing array finds it.  With ``ctx.track`` every value except
    ``R:`` gets a slot ``(holder, key)``; ``holder[0]`` is the container it lives in
    (the indirection survives a list turning into a dict).

    Hot path: a scalar token is everything up to the next ``;``; its text is looked up
    in the token caches (``ctx.values``/``ctx.keys``/``ctx.props``), so a repeated key
    or value costs one ``find``, one slice and one dict lookup.  A miss is parsed
    exactly at ``pos`` (strings by their declared length) and cached only if it really
    ended at that ``;``.  This is the exact parser: errors are always reported by it.
    """
    track = ctx.track
    slots = ctx.slots
    max_depth = ctx.max_depth
    allowed = ctx.allowed
    size = ctx.size
    vget = ctx.values.get
    vcache = ctx.values
    climit = _CACHE_LIMIT
    akeys = ctx.keys
    pkeys = ctx.props
    find = text.find
    index = text.index
    startswith = text.startswith
    list_keys = _LIST_KEYS
    nlist_keys = _NLIST_KEYS
    miss = _MISS
    opened = _OPENED

    # Parents of the current container: (cont, kind, key, remaining, holder).
    stack: list[tuple[Any, int, Any, int, Any]] = []
    cont: Any = cell  # where the next value goes
    kind = 0  # 0: list (append), 1: dict of an array, 2: object properties
    key: Any = 0
    remaining = 1
    holder: Any = [cell] if track else None
    v: Any = None
    start = pos
    try:
        while True:
            # ================= one value at pos, for (cont, key) =================
            start = pos
            if track:
                slots.append((holder, key))
            # Only a token short enough to be cached is looked up, so that the search
            # for its ";" is bounded: an unbounded find() per value is quadratic on
            # input without ";" (k0|a:0:{}k1|a:0:{}...).  Scalars that need their ";"
            # search again without bound, and consume what they searched.
            semi = find(";", pos, pos + _TOKEN_WINDOW)
            v = vget(text[pos:semi], miss) if semi >= 0 else miss
            if v is not miss:
                pos = semi + 1
            else:
                c = text[pos]
                if semi < 0 and c in _SEMI_TOKENS:
                    semi = find(";", pos)
                if c == "s":
                    colon = index(":", pos + 2)
                    ls = text[pos + 2 : colon]
                    if not ls.isdigit() or text[pos + 1] != ":":
                        raise _Fail("bad string length")
                    a = colon + 2
                    b = a + int(ls)
                    if text[colon + 1] != '"' or text[b : b + 2] != '";':
                        raise _Fail("bad string")
                    v = text[a:b]
                    if not v.isascii():
                        v = _text_value(v)
                    pos = b + 2
                    if b == semi - 1 and semi - start <= _CACHE_TOKEN_MAX and len(vcache) < climit:
                        vcache[text[start:semi]] = v
                elif c == "i":
                    s = text[pos + 2 : semi]
                    if s.isdigit() and len(s) < 19 and text[pos + 1] == ":":
                        v = int(s)
                    else:
                        if text[pos + 1] != ":":
                            raise _Fail("bad integer")
                        v = _parse_int(s)
                    pos = semi + 1
                    if semi - start <= _CACHE_TOKEN_MAX and len(vcache) < climit:
                        vcache[text[start:semi]] = v
                elif c == "a":
                    colon = index(":", pos + 2)
                    ls = text[pos + 2 : colon]
                    if not ls.isdigit() or text[pos + 1] != ":" or text[colon + 1] != "{":
                        raise _Fail("bad array header")
                    n = int(ls)
                    pos = colon + 2
                    if n == 0:
                        if text[pos] != "}":
                            raise _Fail("expected }")
                        pos += 1
                        v = []
                    else:
                        if max_depth and len(stack) >= max_depth:
                            raise _Fail(f"maximum depth of {max_depth} exceeded")
                        new: Any
                        if startswith("i:0;", pos):
                            new = []
                            nkind = 0
                        else:
                            new = {}
                            nkind = 1
                        if kind == 0:
                            cont.append(new)
                        else:
                            cont[key] = new
                        stack.append((cont, kind, key, remaining, holder))
                        cont = new
                        kind = nkind
                        remaining = n
                        if track:
                            holder = [new]
                        v = opened
                elif c == "d":
                    s = text[pos + 2 : semi]
                    if text[pos + 1] != ":" or not _FLOAT_BODY.fullmatch(s):
                        raise _Fail("bad float")
                    v = float(s)
                    pos = semi + 1
                    if semi - start <= _CACHE_TOKEN_MAX and len(vcache) < climit:
                        vcache[text[start:semi]] = v
                elif c == "b":
                    if startswith("b:1;", pos):
                        v = True
                    elif startswith("b:0;", pos):
                        v = False
                    else:
                        raise _Fail("bad boolean")
                    pos += 4
                elif c == "N":
                    if text[pos + 1] != ";":
                        raise _Fail("bad null")
                    v = None
                    pos += 2
                elif c == "O":
                    name, n, pos = _object_header(text, pos)
                    if max_depth and len(stack) >= max_depth:
                        raise _Fail(f"maximum depth of {max_depth} exceeded")
                    obj = PHPObject(
                        name if name.isascii() else _text_value(name), {}, incomplete=_incomplete(allowed, name)
                    )
                    if n == 0:
                        if text[pos] != "}":
                            raise _Fail("expected }")
                        pos += 1
                        v = obj
                    else:
                        if kind == 0:
                            cont.append(obj)
                        else:
                            cont[key] = obj
                        stack.append((cont, kind, key, remaining, holder))
                        cont = obj.properties
                        kind = 2
                        remaining = n
                        if track:
                            holder = [cont]
                        v = opened
                elif c == "r" or c == "R":
                    s = text[pos + 2 : semi]
                    if text[pos + 1] != ":" or not s.isdigit():
                        raise _Fail("bad reference")
                    num = int(s)
                    if not track:
                        raise _Fail("reference to an unknown value")
                    if c == "R":
                        slots.pop()  # R: takes no slot
                        if not 1 <= num <= len(slots):
                            raise _Fail("reference to an unknown value")
                        thold, tkey = slots[num - 1]
                        if thold is holder and tkey == key:
                            raise _Fail("reference to the value being written")
                        tcont = thold[0]
                        tv = tcont[tkey]
                        if type(tv) is not PHPReference:
                            tv = PHPReference(tv)
                            tcont[tkey] = tv
                        v = tv
                    else:
                        if not 1 <= num < len(slots):
                            raise _Fail("reference to an unknown value")
                        thold, tkey = slots[num - 1]
                        tv = thold[0][tkey]
                        if type(tv) is PHPReference:
                            tv = tv.value
                        if type(tv) not in _OBJECT_TYPES:
                            raise _Fail("r: to a value that is not an object")
                        v = tv
                    pos = semi + 1
                elif c == "C":
                    name, n, a = _object_header(text, pos)
                    b = a + n
                    if text[b : b + 1] != "}":
                        raise _Fail("bad custom object data")
                    v = PHPCustomObject(
                        name if name.isascii() else _text_value(name),
                        text[a:b].encode("latin-1"),
                        incomplete=_incomplete(allowed, name),
                    )
                    pos = b + 1
                elif c == "E":
                    if text[pos + 1] != ":":
                        raise _Fail("bad enum")
                    name, p = _class_name(text, pos + 2)
                    if text[p] != ";":
                        raise _Fail("bad enum")
                    cls, sep, case = name.partition(":")
                    if not sep or not _CLASS_NAME.fullmatch(cls) or cls[0] == "\\" or not _ENUM_CASE.fullmatch(case):
                        raise _Fail("bad enum name")
                    v = PHPEnum(
                        cls if cls.isascii() else _text_value(cls), case if case.isascii() else _text_value(case)
                    )
                    pos = p + 1
                elif c == "S":
                    colon = index(":", pos + 2)
                    ls = text[pos + 2 : colon]
                    if not ls.isdigit() or text[pos + 1] != ":" or text[colon + 1] != '"':
                        raise _Fail("bad string")
                    v, b = _parse_escaped(text, colon + 2, int(ls), size)
                    if text[b : b + 2] != '";':
                        raise _Fail("bad string")
                    if not v.isascii():
                        v = _text_value(v)
                    pos = b + 2
                else:
                    raise _Fail("unexpected byte")

            # ============ store the value, close the containers it completes ============
            if v is not opened:
                if kind == 0:
                    cont.append(v)
                else:
                    cont[key] = v
                remaining -= 1
                while not remaining:
                    if not stack:
                        if pos > size:  # the value ran into the ';' sentinel
                            start = size
                            raise _Fail("truncated data")
                        return pos
                    start = pos
                    if text[pos] != "}":
                        raise _Fail("expected }")
                    pos += 1
                    done = cont
                    dkind = kind
                    cont, kind, key, remaining, pholder = stack.pop()
                    if dkind == 1 and 0 in done and _is_list_dict(done):
                        lst = list(done.values())
                        _replace_container(done, lst, cont, key if kind else len(cont) - 1)
                        if track:
                            holder[0] = lst
                    holder = pholder
                    remaining -= 1

            # ======================= the next key of cont =======================
            start = pos
            if kind == 0:
                k = len(cont)
                if k < nlist_keys and startswith(list_keys[k], pos):
                    pos += len(list_keys[k])
                    key = k
                    continue
                if k >= nlist_keys:
                    lk = f"i:{k};"
                    if startswith(lk, pos):
                        pos += len(lk)
                        key = k
                        continue
                semi = find(";", pos, pos + _TOKEN_WINDOW)
                key = akeys.get(text[pos:semi], miss) if semi >= 0 else miss
                if key is miss:
                    key, pos = _parse_key(text, pos, akeys, False)
                else:
                    pos = semi + 1
                if key != k or key.__class__ is not int:
                    # not a list after all (or a duplicate key): go on as a dict
                    old = cont
                    cont = dict(enumerate(old))
                    kind = 1
                    pcont, pkind, pkey, _, _ = stack[-1]
                    _replace_container(old, cont, pcont, pkey if pkind else len(pcont) - 1)
                    if track:
                        holder[0] = cont
            else:
                kc = akeys if kind == 1 else pkeys
                semi = find(";", pos, pos + _TOKEN_WINDOW)
                key = kc.get(text[pos:semi], miss) if semi >= 0 else miss
                if key is miss:
                    key, pos = _parse_key(text, pos, kc, kind == 2)
                else:
                    pos = semi + 1
    except _Fail as exc:
        raise SessionDecodeError(str(exc), min(start, size)) from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError):
        # ValueError: str.index() found no delimiter, int() of a huge number;
        # IndexError: the payload ended inside a value.
        start = min(start, size)
        reason = "truncated data" if start >= size else "malformed data"
        raise SessionDecodeError(reason, start) from None


_MISS: Any = object()
_OPENED: Any = object()
#: how far _parse looks for the ";" of a token it may find in the caches
_TOKEN_WINDOW = _CACHE_TOKEN_MAX + 1
#: the values that end at their ";" (the others end by their length or a "}")
_SEMI_TOKENS = frozenset("idrR")


def _incomplete(allowed: bool | frozenset[bytes], name: str) -> bool:
    """Whether ``allowed_classes`` makes PHP build ``__PHP_Incomplete_Class`` for ``name``."""
    if allowed is True:
        return False
    if allowed is False:
        return True
    return name.encode("latin-1").lower() not in allowed


def _parse_key(text: str, pos: int, cache: dict[str, Any], prop: bool) -> tuple[Any, int]:
    """An array key (``i:`` or ``s:``; numeric strings become ints) or, with ``prop``, a
    property name (strings stay strings).  The token is added to ``cache``.
    """
    c = text[pos]
    if c == "s":
        colon = text.index(":", pos + 2)
        ls = text[pos + 2 : colon]
        if not ls.isdigit() or text[pos + 1] != ":":
            raise _Fail("bad key length")
        a = colon + 2
        b = a + int(ls)
        if text[colon + 1] != '"' or text[b : b + 2] != '";':
            raise _Fail("bad key")
        k: Any = text[a:b]
        if not prop and k[:1] in _NUMERIC_START and _CANONICAL_INT.fullmatch(k):
            n = int(k)
            if PHP_INT_MIN <= n <= PHP_INT_MAX:
                k = n
        if k.__class__ is str and not k.isascii():
            k = _text_value(k)
        if b + 1 - pos <= _CACHE_TOKEN_MAX and text.find(";", pos, b + 2) == b + 1 and len(cache) < _CACHE_LIMIT:
            cache[text[pos : b + 1]] = k
        return k, b + 2
    if c == "i":
        semi = text.index(";", pos + 2)
        if text[pos + 1] != ":":
            raise _Fail("bad key")
        # An object's integer keys are kept as ints: __serialize() writes them
        # (O:11:"ArrayObject":4:{i:0;...}) and they must be written back the same way.
        k = _parse_int(text[pos + 2 : semi])
        if semi - pos <= _CACHE_TOKEN_MAX and len(cache) < _CACHE_LIMIT:
            cache[text[pos:semi]] = k
        return k, semi + 1
    raise _Fail("array key must be an integer or a string")


_NUMERIC_START = frozenset("-0123456789")


# --------------------------------------------------------------------------------------
# Decoder fast path
# --------------------------------------------------------------------------------------
#
# The exact parser above walks the payload with find()/slices: about ten C calls per
# token.  For payloads without r:/R:, the fast path first splits the whole text at ";"
# (one C call), so a token that ends with ";" is one list item; a repeated token is
# then one dict lookup.  What is not split cleanly is handled from the start of a
# piece: container headers ("a:2:{" + the first key), closing braces glued in front
# of the next key, a string holding ";" (its pieces are joined back by its length).
# Anything else (C:, E:, S:, odd input, any error) raises _Fallback and the caller
# runs the exact parser on the whole payload, so both accept and produce exactly the
# same things; tests/test_codec.py checks that on random input.


class _Fallback(Exception):
    """Internal: the fast path cannot decide; run the exact parser."""


#: slices of a piece up to this length are not charged (see _charge)
_SLICE_FREE = 256


def _charge(ctx: RefContext, n: int) -> None:
    """Count ``n`` characters copied by re-slicing a long piece; fall back past the budget.

    The fast path cuts what it consumed off the front of a piece (``p[i:]``).  A piece
    holding thousands of values glued together without ``;`` (``k0|a:0:{}k1|a:0:{}...``
    is one piece) would be copied once per value, quadratic; past a budget of a few
    times the payload the exact parser, which is linear, takes over.
    """
    ctx.budget -= n
    if ctx.budget < 0:
        raise _Fallback


#: False runs only the exact parser (the tests compare both paths)
FAST_PATH = True
#: whether the compiled path (:mod:`phpsess.core.fastcodec`) runs first, for the values
#: it handles (with FAST_PATH): when that module is compiled (interpreted, it is slower
#: than the fast path below; the tests also run it interpreted)
NATIVE_PATH = not (getattr(fastcodec, "__file__", None) or ".py").endswith(".py")


def _native_text(data: bytes | bytearray | memoryview | str) -> str:
    """The payload as fastcodec reads it: latin-1 text, without the sentinel."""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape").decode("latin-1")
    return (data if type(data) is bytes else bytes(data)).decode("latin-1")


def native_decode_php(
    payload: bytes | bytearray | memoryview, allowed_classes: AllowedClasses, max_depth: int, arrays: bool = False
) -> dict[Any, Any] | None:
    """The ``php`` session format through the compiled path, or None (the caller decodes).
    ``arrays``: arrays as PHPArray, as ``to_php_arrays(..., keep_top=True)`` makes them."""
    if not (FAST_PATH and NATIVE_PATH):
        return None
    if allowed_classes is not True:
        _allowed_set(allowed_classes)  # its TypeError, as RefContext would raise it
    text = _native_text(payload)
    return fastcodec.decode_php(text + ";", len(text), max_depth, arrays)


def native_decode_value(
    data: bytes | bytearray | memoryview | str, allowed_classes: AllowedClasses, max_depth: int
) -> tuple[Any, int, int] | None:
    """The value at the start of ``data`` through the compiled path: ``(value, end,
    size)``, or None (the caller decodes)."""
    if not (FAST_PATH and NATIVE_PATH):
        return None
    if allowed_classes is not True:
        _allowed_set(allowed_classes)  # its TypeError, as RefContext would raise it
    text = _native_text(data)
    got = fastcodec.decode_value(text + ";", len(text), max_depth)
    if got is None:
        return None
    return got[0], got[1], len(text)


def native_dump_pairs(pairs: list[tuple[str, Any]], precision: int) -> bytes | None:
    """:func:`dump_pairs` through the compiled path, encoded, or None (the caller encodes)."""
    if not (FAST_PATH and NATIVE_PATH):
        return None
    text = fastcodec.dump_pairs(pairs, precision)
    return None if text is None else text.encode("utf-8", "surrogateescape")


_LIST_TOKENS = tuple(k[:-1] for k in _LIST_KEYS)  # "i:0", "i:1", ...


def _fast_key(p: str, cache: dict[str, Any], prop: bool) -> Any:
    """Parse the key token ``p`` (a whole piece) with the exact rules, or fall back."""
    try:
        key, end = _parse_key(p + ";", 0, cache, prop)
    except (_Fail, ValueError, IndexError):
        raise _Fallback from None
    if end != len(p) + 1:
        raise _Fallback
    return key


def _fast_miss(p: str, nxt: Callable[[], str], ctx: RefContext, depth: int) -> tuple[Any, str, Any]:
    """A value piece not in the cache: parse it from its start.

    :returns: ``(value, rest, None)`` for a finished value (``rest``: the next piece, or
        what follows an empty ``a:0:{}``/``O:..:0:{}`` in this piece), or
        ``(value, first_key_piece, (kind, count, container))`` for an opened array or
        object (``container`` is what its entries fill: the list/dict itself, or the
        object's properties).
    :raises _Fallback: for anything else (r:, R:, C:, E:, S:, invalid input).
    """
    c = p[:1]
    if c == "a":
        h = _HEADERS.get(p)
        if h is not None:
            n, p, kind = h
        else:
            q = p.find(":", 2)
            ls = p[2:q]
            if q < 0 or p[1] != ":" or not ls.isdigit() or p[q + 1 : q + 2] != "{":
                raise _Fallback
            n = int(ls)
            first = p[q + 2 :]
            if len(first) > _SLICE_FREE:
                _charge(ctx, len(first))
            kind = 0 if first == "i:0" else 1
            if n and len(p) <= _CACHE_TOKEN_MAX and len(_HEADERS) < _CACHE_LIMIT:
                _HEADERS[p] = (n, first, kind)
            p = first
        if n == 0:
            if p[:1] != "}":
                raise _Fallback
            if len(p) > _SLICE_FREE:
                _charge(ctx, len(p))
            return [], p[1:], None  # what follows "a:0:{}" is glued to it
        if ctx.max_depth and depth >= ctx.max_depth:
            raise _Fallback
        new: Any = [] if kind == 0 else {}
        return new, p, (kind, n, new)
    if c == "s":
        q = p.find(":", 2)
        ls = p[2:q]
        if q < 0 or p[1] != ":" or not ls.isdigit():
            raise _Fallback
        need = q + int(ls) + 3  # s:<n>:"<n bytes>"
        whole = True
        if len(p) != need:
            if len(p) > need or need > ctx.size:
                raise _Fallback
            # the string holds ";": join the pieces back
            parts = [p]
            total = len(p)
            while total < need:
                x = nxt()
                parts.append(x)
                total += len(x) + 1
            p = ";".join(parts)
            if len(p) != need:
                raise _Fallback
            whole = False
        if p[q + 1] != '"' or p[-1] != '"':
            raise _Fallback
        v: Any = p[q + 2 : -1]
        if not v.isascii():
            v = _text_value(v)
        if whole and need <= _CACHE_TOKEN_MAX and len(ctx.values) < _CACHE_LIMIT:
            ctx.values[p] = v
        return v, nxt(), None
    if c == "i":
        s = p[2:]
        if p[1] != ":":
            raise _Fallback
        v = int(s) if s.isdigit() and len(s) < 19 else _parse_int(s)
        if len(p) <= _CACHE_TOKEN_MAX and len(ctx.values) < _CACHE_LIMIT:
            ctx.values[p] = v
        return v, nxt(), None
    if c == "d":
        s = p[2:]
        if p[1] != ":" or not _FLOAT_BODY.fullmatch(s):
            raise _Fallback
        v = float(s)
        if len(p) <= _CACHE_TOKEN_MAX and len(ctx.values) < _CACHE_LIMIT:
            ctx.values[p] = v
        return v, nxt(), None
    if c == "O":
        if p[1] != ":":
            raise _Fallback
        name, e = _class_name(p, 2)
        if not _CLASS_NAME.fullmatch(name) or name[0] == "\\" or p[e : e + 1] != ":":
            raise _Fallback
        q = p.find(":", e + 1)
        ls = p[e + 1 : q]
        if q < 0 or not ls.isdigit() or p[q + 1 : q + 2] != "{":
            raise _Fallback
        n = int(ls)
        p = p[q + 2 :]
        if len(p) > _SLICE_FREE:
            _charge(ctx, len(p))
        if ctx.max_depth and depth >= ctx.max_depth:
            raise _Fallback
        obj = PHPObject(name if name.isascii() else _text_value(name), {}, incomplete=_incomplete(ctx.allowed, name))
        if n == 0:
            if p[:1] != "}":
                raise _Fallback
            if len(p) > _SLICE_FREE:
                _charge(ctx, len(p))
            return obj, p[1:], None
        return obj, p, (2, n, obj.properties)
    # b: and N are in the cache in every valid form; r:, R:, C:, E:, S: and anything
    # invalid go to the exact parser.
    raise _Fallback


def _fast_value(p: str, nxt: Callable[[], str], ctx: RefContext) -> tuple[Any, str]:
    """Decode the value that starts at the beginning of piece ``p``.

    :returns: the value and the rest of the input as a piece: what follows the value
        in ``p`` when it ended with ``}``, else the next piece.
    :raises _Fallback: on anything the fast path does not handle.
    :raises StopIteration: the pieces ran out (also a fallback for the caller).
    """
    vget = ctx.values.get
    akeys = ctx.keys
    pkeys = ctx.props
    aget = akeys.get
    pget = pkeys.get
    miss = _MISS
    list_tokens = _LIST_TOKENS
    nlist = _NLIST_KEYS
    hget = _HEADERS.get
    depth_limit = ctx.max_depth or sys.maxsize  # a container at len(stack) >= this falls back
    # next(it) is a few ns cheaper than the bound nxt(), and pairs reads an array's
    # entries two pieces at a time in C (zip over one iterator: key piece, value piece)
    it = nxt.__self__  # type: ignore[attr-defined]
    next_ = next
    pairs = zip(it, it)
    try:
        v = vget(p, miss)
        if v is not miss:
            return v, next_(it)
        v, p, opened = _fast_miss(p, nxt, ctx, 0)
        if opened is None:
            return v, p
        cell = [v]
        # Parents of the current container: (container, kind, key, remaining).
        stack: list[tuple[Any, int, Any, int]] = [(cell, 0, 0, 1)]
        kind, remaining, cont = opened  # kind 0: list (append), 1: array dict, 2: properties
        key: Any = 0
        while True:
            # ------- key/value entries; those whose value is a known token are stored
            # ------- right here (most entries), the others go on below
            if kind == 1:  # an array dict: the common case, in a tight loop
                key = aget(p, miss)
                if key is miss:
                    key = _fast_key(p, akeys, False)
                p = next_(it)
                v = vget(p, miss)
                if v is not miss:
                    cont[key] = v
                    remaining -= 1
                    if remaining:
                        # the next key is the next piece: the rest in pairs
                        for kp, p in pairs:
                            key = aget(kp, miss)
                            if key is miss:
                                key = _fast_key(kp, akeys, False)
                            v = vget(p, miss)
                            if v is miss:
                                break
                            cont[key] = v
                            remaining -= 1
                            if not remaining:
                                break
                    if v is not miss:
                        p = next_(it)  # (the pieces ran out: StopIteration, a fallback)
            else:
                if kind == 0:
                    k = len(cont)
                    if k < nlist and p == list_tokens[k]:
                        key = k
                    elif p == f"i:{k}":  # a long list: no cache, no parser
                        key = k
                    else:
                        key = aget(p, miss)
                        if key is miss:
                            key = _fast_key(p, akeys, False)
                        if key != k or key.__class__ is not int:
                            # not a list after all (or a duplicate key): go on as a dict
                            old = cont
                            cont = dict(enumerate(old))
                            kind = 1
                            pcont, pkind, pkey, _ = stack[-1]
                            _replace_container(old, cont, pcont, pkey if pkind else len(pcont) - 1)
                else:
                    key = pget(p, miss)
                    if key is miss:
                        key = _fast_key(p, pkeys, True)
                p = next_(it)
                v = vget(p, miss)
                if v is not miss:
                    if kind == 0:
                        cont.append(v)
                    else:
                        cont[key] = v
                    p = next_(it)
                    remaining -= 1
            if v is miss:
                # ---------------- a value that is not a known token ----------------
                h = hget(p)
                if h is not None:
                    # a known array header glued to its first key (one in six pieces
                    # of a typical session): what _fast_miss would do, without the call
                    if len(stack) >= depth_limit:
                        raise _Fallback
                    remaining_inner, p, kind_inner = h
                    v = [] if kind_inner == 0 else {}
                    if kind == 0:
                        cont.append(v)
                    else:
                        cont[key] = v
                    stack.append((cont, kind, key, remaining))
                    kind = kind_inner
                    remaining = remaining_inner
                    cont = v
                    continue  # p is its first key
                v, p, opened = _fast_miss(p, nxt, ctx, len(stack))
                if kind == 0:
                    cont.append(v)
                else:
                    cont[key] = v
                if opened is not None:
                    stack.append((cont, kind, key, remaining))
                    kind, remaining, cont = opened
                    continue  # p is its first key
                remaining -= 1
            if remaining:
                continue
            # ---------------- close what this value completes ----------------
            i = 0  # the closing braces are glued in front of what follows
            while not remaining:
                if p[i] != "}":  # (past the end: IndexError, a fallback too)
                    raise _Fallback
                i += 1
                done = cont
                dkind = kind
                cont, kind, key, remaining = stack.pop()
                if dkind == 1 and 0 in done and _is_list_dict(done):
                    _replace_container(done, list(done.values()), cont, key if kind else len(cont) - 1)
                remaining -= 1
                if not stack:
                    if len(p) > _SLICE_FREE:
                        _charge(ctx, len(p))
                    return cell[0], p[i:]
            if len(p) > _SLICE_FREE:
                _charge(ctx, len(p))
            p = p[i:]
    except (_Fail, ValueError, IndexError, KeyError, TypeError, OverflowError):
        raise _Fallback from None


def _fast_pieces(ctx: RefContext, data: bytes | bytearray | memoryview | str) -> Callable[[], str] | None:
    """Prepare the fast path for ``data``: the ``next`` of its ``;``-pieces, or None.

    None means the payload needs the exact parser (it may hold ``r:``/``R:``).
    """
    text = ctx.text_of(data)
    if ctx.track or not FAST_PATH:
        return None
    pieces = text.split(";")
    pieces.pop()  # the piece after the sentinel ";"
    return iter(pieces).__next__


def _fast_end(nxt: Callable[[], str], rest: str) -> None:
    """Check that nothing follows the last value (``rest`` and no more pieces)."""
    if rest:
        raise _Fallback
    try:
        nxt()
    except StopIteration:
        return
    raise _Fallback


def loads_prefix(
    data: bytes | bytearray | memoryview | str,
    offset: int = 0,
    *,
    ctx: RefContext | None = None,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
) -> tuple[Any, int]:
    """Decode the one value that starts at ``offset``; return ``(value, end_offset)``.

    Bytes after the value are left alone (the session decoders use this).  Pass one
    ``ctx`` for consecutive values that share PHP's reference numbering (a session's
    keys); ``allowed_classes``/``max_depth`` are then taken from it.

    :raises SessionDecodeError: ``.offset`` is where the bad value starts.
    """
    if ctx is None:
        ctx = RefContext(allowed_classes=allowed_classes, max_depth=max_depth)
    text = ctx.text_of(data)
    if not 0 <= offset < ctx.size:
        raise SessionDecodeError("no value at this offset", min(max(offset, 0), ctx.size))
    cell: list[Any] = []
    end = _parse(text, offset, ctx, cell)
    return cell[0], end


def loads(
    data: bytes | bytearray | memoryview | str,
    *,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Decode PHP ``serialize()`` output (``str`` input is UTF-8 encoded first).

    ``allowed_classes`` works as PHP's option: False, or a list of class names
    (case-insensitive) outside of which objects are marked ``incomplete``.
    ``max_depth`` is PHP's ``unserialize_max_depth`` (0: no limit).

    :raises SessionDecodeError: on anything PHP's ``unserialize()`` refuses, and also
        on bytes after the value (PHP 8.2 ignores them silently; 8.3 warns).
    """
    try:
        return _loads(data, allowed_classes, max_depth)
    finally:
        trim_caches()


def _loads(data: bytes | bytearray | memoryview | str, allowed_classes: AllowedClasses, max_depth: int) -> Any:
    native = native_decode_value(data, allowed_classes, max_depth)
    if native is not None and native[1] == native[2]:
        return native[0]
    ctx = RefContext(allowed_classes=allowed_classes, max_depth=max_depth)
    nxt = _fast_pieces(ctx, data)
    if not ctx.size:
        raise SessionDecodeError("empty data", 0)
    if nxt is not None:
        try:
            value, rest = _fast_value(nxt(), nxt, ctx)
            _fast_end(nxt, rest)
            return value
        except (_Fallback, StopIteration):
            pass  # the exact parser decides, and says where it fails
    text = ctx.text_of(data)
    cell: list[Any] = []
    end = _parse(text, 0, ctx, cell)
    if end != ctx.size:
        raise SessionDecodeError("unexpected data after the value", end)
    return cell[0]


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


def _str_len(s: str) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise SessionEncodeError(f"string {s[:40]!r} cannot be encoded as UTF-8 (lone surrogate)") from None


def _bytes_text(b: bytes | bytearray | memoryview) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


class _ArrayKeys(dict):  # type: ignore[type-arg]
    """Cache: Python dict key -> its serialized PHP array key (``i:5;`` / ``s:1:"a";``)."""

    def __missing__(self, k: Any) -> str:
        t = type(k)
        if t is str or isinstance(k, str):
            if k[:1] in _NUMERIC_START and _CANONICAL_INT.fullmatch(k) and PHP_INT_MIN <= int(k) <= PHP_INT_MAX:
                piece = f"i:{int(k)};"  # PHP arrays canonicalise "5" to 5
            else:
                piece = f's:{_str_len(k)}:"{k}";'
        elif t is int or isinstance(k, int):
            if not PHP_INT_MIN <= k <= PHP_INT_MAX:
                raise SessionEncodeError(f"array key {k} is outside PHP's 64-bit int range")
            piece = f"i:{int(k)};"
        elif isinstance(k, bytes):
            if k.isascii():
                same: str = self[k.decode("ascii")]  # b"5" is the key 5, b"a" is "a"
                return same
            piece = f's:{len(k)}:"{_bytes_text(k)}";'
        elif isinstance(k, float) and k.is_integer() and PHP_INT_MIN <= k <= PHP_INT_MAX:
            piece = f"i:{int(k)};"  # PHP casts integral float keys to int
        else:
            raise SessionEncodeError(f"unsupported array key {k!r:.60} ({t.__name__}): use int or str")
        if len(piece) <= _CACHE_TOKEN_MAX and len(self) < _CACHE_LIMIT:
            self[k] = piece  # (a client's 2 MB field name must not stay in the worker)
        return piece


class _PropKeys(dict):  # type: ignore[type-arg]
    """Cache: property name -> serialized name; str as is (no numeric canonicalisation),
    int as ``i:`` (what ``__serialize()`` arrays produce)."""

    def __missing__(self, k: Any) -> str:
        if isinstance(k, str):
            piece = f's:{_str_len(k)}:"{k}";'
        elif isinstance(k, (bytes, bytearray, memoryview)):
            return f's:{len(bytes(k))}:"{_bytes_text(k)}";'
        elif isinstance(k, int) and PHP_INT_MIN <= k <= PHP_INT_MAX:
            piece = f"i:{int(k)};"
        else:
            raise SessionEncodeError(f"unsupported property name {k!r:.60}: use str (or int)")
        if len(piece) <= _CACHE_TOKEN_MAX and len(self) < _CACHE_LIMIT:
            self[k] = piece
        return piece


# Encoder caches shared by all calls (emptied past _CACHE_LIMIT, like the decoder's):
# dict key -> its serialized form.
_ARRAY_KEY_PIECES = _ArrayKeys()
_PROP_KEY_PIECES = _PropKeys()
# Scalar value -> its serialized form, one dict per type (1, 1.0 and True are equal
# dict keys, so they must not share one).  A worker re-encodes the same users' values
# request after request; a hit is one lookup instead of building the piece.  Only
# short strings are kept; floats only in the default precision, and never 0.0/-0.0
# (equal keys, different pieces) or NAN (never found again).
_STR_PIECES: dict[str, str] = {}
_INT_PIECES: dict[int, str] = {}
_FLOAT_PIECES: dict[float, str] = {}
_NO_PIECES: dict[float, str] = {}  # the float cache when precision is not the default: always a miss


def _str_piece(v: str) -> str:
    """``s:<bytes>:"<v>";`` for a str value (cached when short).

    :raises SessionEncodeError: a lone surrogate (no UTF-8 form).
    """
    piece = f's:{_str_len(v)}:"{v}";'
    if len(v) <= _CACHE_TOKEN_MAX and len(_STR_PIECES) < _CACHE_LIMIT:
        _STR_PIECES[v] = piece
    return piece


def _int_piece(v: int) -> str:
    """``i:<v>;`` for an int value in PHP's range (cached)."""
    if not PHP_INT_MIN <= v <= PHP_INT_MAX:
        raise SessionEncodeError(f"int {v} is outside PHP's 64-bit range")
    piece = f"i:{v};"
    if len(_INT_PIECES) < _CACHE_LIMIT:
        _INT_PIECES[v] = piece
    return piece


def _float_piece(v: float, precision: int) -> str:
    """``d:<v>;`` as PHP writes it with ``serialize_precision``; cached for -1."""
    piece = f"d:{float_to_string(v, precision)};"
    if precision < 0 and v and len(_FLOAT_PIECES) < _CACHE_LIMIT:  # not 0.0/-0.0 (NAN: never found again)
        _FLOAT_PIECES[v] = piece
    return piece


def _name_text(name: str | bytes, what: str) -> tuple[str, int]:
    """A class/enum name as output text and its length in bytes."""
    if isinstance(name, str):
        return name, _str_len(name)
    if isinstance(name, (bytes, bytearray)):
        return _bytes_text(name), len(name)
    raise SessionEncodeError(f"{what} must be str, not {type(name).__name__}")


def _list_keys() -> Iterator[str]:
    """``i:0;``, ``i:1;``, ... for lists longer than the ready-made table."""
    return itertools.chain(_LIST_KEYS, map("i:{};".format, itertools.count(_NLIST_KEYS)))


def dump_pairs(
    out: list[str],
    pairs: Iterable[tuple[str, Any]],
    ctx: RefContext,
    precision: int = -1,
) -> None:
    """Serialize values into ``out`` (a list of str pieces): the low-level encoder.

    ``pairs`` yields ``(prefix, value)``: ``prefix`` is written as is before the value
    (``""`` for a lone value, ``"key|"`` for the ``php`` session encoding, ...).  All
    values share ``ctx``'s reference numbering.  Join ``out`` and encode it with
    ``"utf-8", "surrogateescape"`` to get the bytes.

    :raises SessionEncodeError: for a value PHP cannot represent.
    """
    # Every value appends exactly one piece (its key, then its serialized form or its
    # container header), so the number PHP gives a value (var.c php_add_var_hash) is
    # the count of pieces so far, minus the "}" pieces and the "R:" pieces (which take
    # no number): no per-value counter in the loop.
    ids = ctx.ids
    out0 = len(out) - ctx.counter  # so that number = len(out) - out0 - skipped + 1
    skipped = 0  # "}" and "R:" pieces
    trim_caches()
    akeys = _ARRAY_KEY_PIECES
    pkeys = _PROP_KEY_PIECES
    sget = _STR_PIECES.get
    iget = _INT_PIECES.get
    fget: Callable[[float], str | None] = _FLOAT_PIECES.get if precision < 0 else _NO_PIECES.get
    append = out.append
    # (iterator, closing piece, container) of the enclosing levels; the containers
    # are there for cycle detection
    stack: list[Any] = []
    it: Iterator[tuple[str, Any]] = iter(pairs)
    closer = ""
    check_at = 1024
    try:
        while True:
            for k, v in it:
                t = type(v)
                if t is str:
                    piece = sget(v)
                    append(k + (piece if piece is not None else _str_piece(v)))
                elif t is int:
                    piece = iget(v)
                    append(k + (piece if piece is not None else _int_piece(v)))
                elif t is dict:
                    if not v:
                        append(f"{k}a:0:{{}}")
                        continue
                    append(f"{k}a:{len(v)}:{{")
                    stack.append((it, closer, v))
                    it = zip(map(akeys.__getitem__, v), v.values())
                    closer = "}"
                    if len(stack) >= check_at:
                        check_at = _check_cycle(stack, check_at)
                    break
                elif t is list:
                    if not v:
                        append(f"{k}a:0:{{}}")
                        continue
                    append(f"{k}a:{len(v)}:{{")
                    stack.append((it, closer, v))
                    it = zip(_LIST_KEYS if len(v) <= _NLIST_KEYS else _list_keys(), v)
                    closer = "}"
                    if len(stack) >= check_at:
                        check_at = _check_cycle(stack, check_at)
                    break
                elif t is PHPArray:
                    d = v._d
                    if not d:
                        append(f"{k}a:0:{{}}")
                        continue
                    append(f"{k}a:{len(d)}:{{")
                    stack.append((it, closer, v))
                    it = zip(map(akeys.__getitem__, d), d.values())
                    closer = "}"
                    if len(stack) >= check_at:
                        check_at = _check_cycle(stack, check_at)
                    break
                elif t is float:
                    piece = fget(v)
                    append(k + (piece if piece is not None else _float_piece(v, precision)))
                elif t is bool:
                    append(f"{k}b:1;" if v else f"{k}b:0;")
                elif v is None:
                    append(f"{k}N;")
                elif t is PHPObject:
                    num = ids.get(id(v))
                    if num is not None:
                        append(f"{k}r:{num};")
                        continue
                    ids[id(v)] = len(out) - out0 - skipped + 1
                    cname, clen = _name_text(v.class_name, "class name")
                    props = v.properties
                    if not props:
                        append(f'{k}O:{clen}:"{cname}":0:{{}}')
                        continue
                    append(f'{k}O:{clen}:"{cname}":{len(props)}:{{')
                    stack.append((it, closer, v))
                    it = zip(map(pkeys.__getitem__, props), props.values())
                    closer = "}"
                    if len(stack) >= check_at:
                        check_at = _check_cycle(stack, check_at)
                    break
                elif t is PHPReference:
                    inner = v.value
                    ti = type(inner)
                    if ti is PHPReference:
                        raise SessionEncodeError("a PHPReference cannot hold another PHPReference")
                    # php_add_var_hash(): a reference to an object is keyed by the object
                    ident: Any
                    if ti is PHPEnum:
                        ident = (PHPEnum, inner.class_name, inner.case)
                    elif ti is PHPObject or ti is PHPCustomObject:
                        ident = id(inner)
                    else:
                        ident = None
                    num = ids.get(id(v) if ident is None else ident)
                    if num is not None:
                        append(f"{k}R:{num};")
                        skipped += 1  # R: takes no number
                        continue
                    if ident is None:  # (objects register themselves when written)
                        ids[id(v)] = len(out) - out0 - skipped + 1
                    # first time: write the referenced value itself, under the same key
                    stack.append((it, closer, v))
                    it = iter(((k, inner),))
                    closer = ""
                    break
                else:
                    piece, sub = _encode_other(k, v, t, ids, len(out) - out0 - skipped + 1)
                    append(piece)
                    if sub is None:
                        continue
                    stack.append((it, closer, v))
                    it = sub
                    closer = "}"
                    if len(stack) >= check_at:
                        check_at = _check_cycle(stack, check_at)
                    break
            else:
                if not stack:
                    break
                if closer:
                    append(closer)
                    skipped += 1
                it, closer, _ = stack.pop()
    finally:
        ctx.counter = len(out) - out0 - skipped
        trim_caches()


def _encode_other(k: str, v: Any, t: type, ids: dict[Any, int], num: int) -> tuple[str, Any]:
    """Less common types: ``(piece, None)`` for a finished value, or ``(header, items)``.

    ``num`` is the number this value gets if it is an object seen for the first time.
    """
    if t is tuple or isinstance(v, (list, tuple)):
        if not v:
            return f"{k}a:0:{{}}", None
        return f"{k}a:{len(v)}:{{", zip(_LIST_KEYS if len(v) <= _NLIST_KEYS else _list_keys(), v)
    if t is bytes or isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return f'{k}s:{len(b)}:"{_bytes_text(b)}";', None
    if t is PHPEnum:
        ident = (PHPEnum, v.class_name, v.case)
        seen = ids.get(ident)
        if seen is not None:
            return f"{k}r:{seen};", None
        ids[ident] = num
        cname, clen = _name_text(v.class_name, "enum name")
        case, caselen = _name_text(v.case, "enum case")
        return f'{k}E:{clen + 1 + caselen}:"{cname}:{case}";', None
    if t is PHPCustomObject:
        seen = ids.get(id(v))
        if seen is not None:
            return f"{k}r:{seen};", None
        ids[id(v)] = num
        cname, clen = _name_text(v.class_name, "class name")
        data = bytes(v.data)
        return f'{k}C:{clen}:"{cname}":{len(data)}:{{{_bytes_text(data)}}}', None
    if isinstance(v, bool):
        return (f"{k}b:1;" if v else f"{k}b:0;"), None
    if isinstance(v, int):
        if not PHP_INT_MIN <= v <= PHP_INT_MAX:
            raise SessionEncodeError(f"int {v} is outside PHP's 64-bit range")
        return f"{k}i:{int(v)};", None
    if isinstance(v, float):
        return f"{k}d:{float_to_string(float(v), -1)};", None
    if isinstance(v, str):
        s = str(v)
        return f'{k}s:{_str_len(s)}:"{s}";', None
    if isinstance(v, Mapping):
        if not v:
            return f"{k}a:0:{{}}", None
        return f"{k}a:{len(v)}:{{", zip(map(_ARRAY_KEY_PIECES.__getitem__, v.keys()), v.values())
    raise SessionEncodeError(
        f"cannot serialize {t.__module__}.{t.__qualname__} value {v!r:.60}: PHP has no such type "
        "(use dict, list, tuple, str, bytes, int, float, bool, None or the PHP* value types)"
    )


def _check_cycle(stack: list[Any], check_at: int) -> int:
    """Raise if a container is its own ancestor; return the depth of the next check.

    ``stack`` holds ``(iterator, closer, container)`` for each open level.
    """
    seen = set()
    for _, _, c in stack:
        if id(c) in seen:
            raise SessionEncodeError("recursive array: a list or dict contains itself (use a PHPReference)")
        seen.add(id(c))
    return check_at * 2


def dumps(value: Any, *, precision: int = -1) -> bytes:
    """Serialize ``value`` exactly as PHP 8.2's ``serialize()`` would.

    ``precision`` is PHP's ``serialize_precision`` (-1: shortest round-trip floats).

    :raises SessionEncodeError: for ints outside 64 bits, strings with lone
        surrogates, and types PHP has no equivalent for (set, functions, objects).
    """
    native = native_dump_pairs([("", value)], precision)
    if native is not None:
        return native
    out: list[str] = []
    dump_pairs(out, (("", value),), RefContext(), precision)
    return "".join(out).encode("utf-8", "surrogateescape")


def to_php_arrays(value: Any, *, keep_top: bool = False) -> Any:
    """``value`` with every ``list``/``dict`` in it (at any depth, inside objects and
    references too) turned into a :class:`PHPArray`; returns the converted value.

    Meant for what the decoder returns: lists are arrays with keys ``0..n-1``, dict keys
    are canonical already (each dict becomes the table of its PHPArray, not copied);
    object property tables stay dicts.  Linear, no recursion; an object or reference
    met twice is converted once.  ``keep_top``: a top-level dict (a session's
    variables) stays a dict, converted in place below.
    """
    seen: set[int] = set()
    if keep_top and type(value) is dict:
        result: Any = value
    else:
        holder = {0: value}
        to_php_arrays(holder, keep_top=True)
        return holder[0]
    # (a table, the (key, value) pairs of it still to look at); values are replaced in
    # place, which dict iteration allows
    stack: list[tuple[dict[Any, Any], Iterator[tuple[Any, Any]]]] = [(result, iter(result.items()))]
    while stack:
        d, pairs = stack[-1]
        for k, v in pairs:
            t = type(v)
            if t is PHPReference:
                if id(v) in seen:
                    continue
                seen.add(id(v))
                inner = v.value
                t = type(inner)
                if t is list or t is dict:
                    v.value = a = PHPArray._trusted_list(inner) if t is list else PHPArray._trusted(inner)
                    stack.append((a._d, iter(a._d.items())))
                    break
                v = inner  # an object in the box: looked into below
            if t is list:
                d[k] = a = PHPArray._trusted_list(v)
            elif t is dict:
                d[k] = a = PHPArray._trusted(v)
            elif t is PHPObject:
                if id(v) in seen:
                    continue
                seen.add(id(v))
                stack.append((v.properties, iter(v.properties.items())))
                break
            else:
                continue
            stack.append((a._d, iter(a._d.items())))
            break
        else:
            stack.pop()
    return result
