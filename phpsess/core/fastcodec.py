"""The codec's compiled path: decode and encode the common values with native-int
scanning, for mypyc.  No I/O.

This module is written for mypyc (``phpsess/compiled.py``): the payload is read as
``bytes`` (``raw[i]`` is a machine byte when compiled) with i64 positions, recursion
over a native class, module constants as ``Final`` (C statics), the output as
ready-made pieces joined once.  Its caches are bounded: a fixed table of short decoded
strings, and the encoder's pieces of short strings, keys and floats (emptied by
``codec.clear_caches``).  Interpreted, it would be slower than
:mod:`phpsess.core.codec`'s own fast path, so the codec uses it only when it is
compiled (``codec.NATIVE_PATH``; the tests run it interpreted too, against the exact
parser and the Python encoder).  docs/performance.md (codec) says what each part gained.

It handles ``N``, ``b``, ``i``, ``d``, ``s`` and arrays (``a``), nested at most
:data:`DEPTH` (1,024) levels, and nothing else: an object, a reference, an escaped string, an
unusual number (``i:+1;``, 19 digits, ``d:.5;``, ``NAN``) or any malformed input makes
it give up (``None``), and the caller runs the Python codec on the same input, which
decides exactly as before (values, errors and their offsets).  What it returns is
what the exact parser returns for the same bytes (lists for arrays keyed ``0..n-1``,
dicts otherwise, ``str`` for UTF-8 strings and ``bytes`` for the others); what it
writes is what ``codec.dump_pairs`` writes.  It reads every byte at most once before
giving up, so that decoding stays linear whatever the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .phparray import _PENDING, PHPArray
from .zend import float_to_string

if TYPE_CHECKING:
    # a native 64-bit int when compiled; only in annotations (never evaluated), so
    # that plain Python does not need mypy_extensions
    from mypy_extensions import i64

__all__ = ["DEPTH", "decode_php", "decode_value", "dump_pairs", "clear_caches"]

#: deepest nesting handled here (the Python codec does deeper, up to max_depth, with
#: its own stack).  This path recurses, two small C frames (~100 bytes each) a level:
#: at most ~200 KB of stack.  Deep enough that no realistic session, nor the scaling
#: tests' shapes, falls off it halfway (a value nested deeper is decoded twice: here up
#: to this depth, then by the Python codec, linear still but several times slower)
DEPTH: Final = 1024

_PHP_INT_MAX: Final = 9223372036854775807
_PHP_INT_MIN: Final = -9223372036854775808

_LIST_KEYS: Final = [f"i:{i};" for i in range(1024)]
_POW10: Final = [float(10**i) for i in range(23)]
#: the decoder's table of short ASCII strings, indexed by a hash of their text (a
#: slot holds the last string that hashed there; "" when empty): bounded, shared by
#: all decodes, and never wrong (a hit is compared with the text)
_INTERN_LEN: Final = 24
_INTERN_MASK: Final = 2047
_INTERN: Final = [""] * (_INTERN_MASK + 1)


class _Unsupported(Exception):
    """Internal: not for this path; the caller runs the Python codec."""


def _text_value(s: str) -> Any:
    """A latin-1 slice of the payload as phpsess represents a PHP string."""
    raw = s.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class _Reader:
    """The payload as latin-1 text with a ``;`` sentinel (``codec.RefContext.text_of``),
    and a position in it.  Positions are native ints (i64) when compiled."""

    def __init__(self, text: str, size: i64, limit: i64, arrays: bool) -> None:
        self.text = text
        #: arrays as PHPArray (session.php_arrays), else lists and dicts
        self.arrays = arrays
        #: the same as bytes, for reading (a byte is a native int, no str involved)
        self.raw = text.encode("latin-1")
        self.size: i64 = size
        self.pos: i64 = 0
        #: containers may be opened while fewer than this many are open
        self.limit: i64 = limit

    def string(self, a: i64, b: i64) -> Any:
        """``text[a:b]`` as a PHP string: str when ASCII or UTF-8, else bytes."""
        if b - a > _INTERN_LEN:
            v = self.text[a:b]
            return v if v.isascii() else _text_value(v)
        # short ASCII strings (keys above all: "sku", "qty"... in every item) come from
        # a small table, so that a repeated one is neither allocated nor hashed again
        raw = self.raw
        h: i64 = b - a
        seen: i64 = 0  # the bits of all its bytes: 0x80 is set for a non-ASCII one
        i = a
        while i < b:
            c: i64 = raw[i]
            h = h * 31 + c
            seen |= c
            i += 1
        if seen >= 128:
            return _text_value(self.text[a:b])
        slot = h & _INTERN_MASK
        e = _INTERN[slot]
        if len(e) == b - a:
            j: i64 = 0
            while a + j < b and ord(e[j]) == raw[a + j]:
                j += 1
            if a + j == b:
                return e
        v = self.text[a:b]
        _INTERN[slot] = v
        return v

    def length(self, stop: i64) -> i64:
        """Read ``[0-9]{1,18}`` then the character ``stop`` (a code) at pos; return the number."""
        raw = self.raw
        p = self.pos
        end = p + 18
        n: i64 = 0
        c: i64 = raw[p]
        while 48 <= c <= 57:
            n = n * 10 + (c - 48)
            p += 1
            if p > end:
                raise _Unsupported
            c = raw[p]
        if p == self.pos or c != stop:
            raise _Unsupported
        self.pos = p + 1
        return n

    def integer(self) -> int:
        """Read ``-?[0-9]{1,18};`` at pos; return the number."""
        if self.raw[self.pos] == 45:
            self.pos += 1
            return -self.length(59)
        return self.length(59)

    def key(self) -> Any:
        """An array key at pos: ``i:`` or ``s:`` (canonical numeric strings become ints)."""
        raw = self.raw
        p = self.pos
        if raw[p + 1] != 58:
            raise _Unsupported
        self.pos = p + 2
        if raw[p] == 105:
            return self.integer()
        if raw[p] != 115:
            raise _Unsupported
        n = self.length(58)
        a: i64 = self.pos + 1
        b: i64 = a + n
        if raw[a - 1] != 34 or raw[b] != 34 or raw[b + 1] != 59:
            raise _Unsupported
        self.pos = b + 2
        if _canonical_key(raw, a, b):
            k = int(self.text[a:b])
            if _PHP_INT_MIN <= k <= _PHP_INT_MAX:
                return k
        return self.string(a, b)

    def value(self, depth: i64) -> Any:
        """The value at pos; pos moves past it."""
        raw = self.raw
        p = self.pos
        c: i64 = raw[p]
        if raw[p + 1] != 58:
            if c == 78 and raw[p + 1] == 59:  # N;
                self.pos = p + 2
                return None
            raise _Unsupported
        self.pos = p + 2
        if c == 115:  # s:<n>:"<n bytes>";
            n = self.length(58)
            a: i64 = self.pos + 1
            b: i64 = a + n
            if raw[a - 1] != 34 or raw[b] != 34 or raw[b + 1] != 59:
                raise _Unsupported
            self.pos = b + 2
            return self.string(a, b)
        if c == 105:  # i:
            return self.integer()
        if c == 97:  # a:
            return self.array(depth)
        if c == 100:  # d:
            return self.double()
        if c == 98 and raw[p + 3] == 59:  # b:
            if raw[p + 2] == 49:
                self.pos = p + 4
                return True
            if raw[p + 2] == 48:
                self.pos = p + 4
                return False
        raise _Unsupported

    def double(self) -> float:
        """Read ``-?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?;`` at pos (PHP writes no other
        finite float); the others (``.5``, ``INF``...) are left to the Python codec."""
        raw = self.raw
        a = self.pos
        p = a
        negative = raw[p] == 45
        if negative:
            p += 1
        q = p
        m: i64 = 0  # the first 18 digits as an integer (exact in a double up to 15)
        c: i64 = raw[p]
        while 48 <= c <= 57:
            if p - q < 18:
                m = m * 10 + (c - 48)
            p += 1
            c = raw[p]
        if p == q:
            raise _Unsupported
        digits: i64 = p - q
        scale: i64 = 0
        if c == 46:  # .
            p += 1
            q = p
            c = raw[p]
            while 48 <= c <= 57:
                if digits + (p - q) < 18:
                    m = m * 10 + (c - 48)
                p += 1
                c = raw[p]
            if p == q:
                raise _Unsupported
            scale = p - q
            digits += scale
        exact = True
        if c == 69 or c == 101:  # E e
            exact = False
            p += 1
            if raw[p] == 43 or raw[p] == 45:
                p += 1
            q = p
            while 48 <= raw[p] <= 57:
                p += 1
            if p == q:
                raise _Unsupported
        if raw[p] != 59:
            raise _Unsupported
        self.pos = p + 1
        if exact and digits <= 15:  # (then scale <= 15 too)
            # both exact doubles (m < 2**53, 10**scale exact up to 1e22): one correctly
            # rounded division gives what float() (strtod) gives
            f = float(m) / _POW10[scale]
            return -f if negative else f
        return float(self.text[a:p])

    def array(self, depth: i64) -> Any:
        """``a:`` after its ``a:``: a list when its keys are ``0..n-1`` in order, else a dict."""
        raw = self.raw
        n = self.length(58)
        p = self.pos
        if raw[p] != 123:
            raise _Unsupported
        self.pos = p + 1
        if n == 0:
            if raw[p + 1] != 125:
                raise _Unsupported
            self.pos = p + 2
            if self.arrays:
                return _php_array({}, None)
            empty: list[Any] = []
            return empty
        if depth >= self.limit:
            raise _Unsupported
        depth += 1
        if self.arrays:
            return self.php_array(n, depth)
        items: list[Any] = []
        i: i64 = 0
        # a list while the keys are i:0;, i:1;, ... (the common case: no key parsing)
        while i < n:
            p = self.pos
            if raw[p] == 105 and raw[p + 1] == 58:
                self.pos = p + 2
                k = self.integer()
                if k == i:
                    items.append(self.value(depth))
                    i += 1
                    continue
                key: Any = k
            else:
                key = self.key()
            # not a list (or a duplicate key): go on as a dict
            d: dict[Any, Any] = dict(enumerate(items)) if items else {}
            d[key] = self.value(depth)
            i += 1
            while i < n:
                key = self.key()
                d[key] = self.value(depth)
                i += 1
            self.close()
            if 0 in d and _is_list_dict(d):
                return list(d.values())
            return d
        self.close()
        return items

    def php_array(self, n: i64, depth: i64) -> Any:
        """The ``n`` entries of an array as a PHPArray (what ``codec.to_php_arrays``
        makes of the exact parser's list or dict)."""
        raw = self.raw
        d: dict[Any, Any] = {}
        i: i64 = 0
        listed = True  # the keys so far are 0..i-1 in order
        while i < n:
            p = self.pos
            if raw[p] == 105 and raw[p + 1] == 58:
                self.pos = p + 2
                k = self.integer()
                if k != i:
                    listed = False
                d[k] = self.value(depth)
            else:
                listed = False
                key = self.key()  # (before the value: d[self.key()] = ... reads the value first)
                d[key] = self.value(depth)
            i += 1
        self.close()
        # the next free key: n for a list, else found from the keys when needed
        return _php_array(d, n if listed else _PENDING_NEXT)

    def close(self) -> None:
        if self.raw[self.pos] != 125:
            raise _Unsupported
        self.pos += 1


def _php_array(d: dict[Any, Any], next_free: Any) -> Any:
    """``PHPArray._trusted``: a PHPArray around ``d`` (canonical keys), not copied."""
    a = _NEW(_PHPARRAY)
    a._d = d
    a._next = next_free
    return a


# (Final: read from C statics when compiled, where a global is a dict lookup)
_PHPARRAY: Final = PHPArray
_NEW: Final[Any] = object.__new__
_PENDING_NEXT: Final[Any] = _PENDING


def _canonical_key(raw: bytes, a: i64, b: i64) -> bool:
    """Whether ``raw[a:b]`` is ``-?[1-9][0-9]{0,18}|0`` (a PHP array's integer key)."""
    p = a
    if p < b and raw[p] == 45:
        p += 1
    if p >= b:
        return False
    c: i64 = raw[p]
    if c == 48:
        return p == a and b == a + 1
    if c < 49 or c > 57 or b - p > 19:
        return False
    p += 1
    while p < b:
        c = raw[p]
        if c < 48 or c > 57:
            return False
        p += 1
    return True


def _canonical_int(s: str) -> bool:
    """Whether ``s`` is ``-?[1-9][0-9]{0,18}|0`` (a PHP array's integer key)."""
    b: i64 = len(s)
    p: i64 = 0
    if b and s[0] == "-":
        p = 1
    if p >= b:
        return False
    c: i64 = ord(s[p])
    if c == 48:
        return b == 1
    if c < 49 or c > 57 or b - p > 19:
        return False
    p += 1
    while p < b:
        c = ord(s[p])
        if c < 48 or c > 57:
            return False
        p += 1
    return True


def _is_list_dict(d: dict[Any, Any]) -> bool:
    i = 0
    for k in d:
        if type(k) is not int or k != i:
            return False
        i += 1
    return True


def decode_php(text: str, size: int, max_depth: int, arrays: bool = False) -> dict[Any, Any] | None:
    """The ``php`` session format: ``name|value`` until the end, a repeated name wins
    last.  ``text`` is the payload as latin-1 plus a ``;`` sentinel, ``size`` its real
    length; ``arrays``: arrays as PHPArray (the session's dict stays a dict).  None: not
    for this path (see the module docstring)."""
    r = _Reader(text, size, DEPTH if max_depth <= 0 else min(max_depth, DEPTH), arrays)
    out: dict[Any, Any] = {}
    try:
        while r.pos < size:
            bar = text.find("|", r.pos)
            if bar < 0:
                return None
            name = r.string(r.pos, bar)
            r.pos = bar + 1
            v = r.value(0)
            if r.pos > size:  # ran into the sentinel
                return None
            out[name] = v
    except (_Unsupported, IndexError, ValueError, RecursionError):  # (interpreted: Python's stack)
        return None
    return out


def decode_value(text: str, size: int, max_depth: int) -> tuple[Any, int] | None:
    """One value at the start of ``text`` (as :func:`decode_php`): ``(value, end)``, or
    None when not for this path."""
    r = _Reader(text, size, DEPTH if max_depth <= 0 else min(max_depth, DEPTH), False)
    try:
        v = r.value(0)
    except (_Unsupported, IndexError, ValueError, RecursionError):  # (interpreted: Python's stack)
        return None
    if r.pos > size:
        return None
    return v, r.pos


# ---------------------------------------------------------------------------- encoder


def dump_pairs(pairs: list[tuple[str, Any]], precision: int) -> str | None:
    """Each ``(prefix, value)`` as ``prefix`` then the serialized value, as one str (to
    be encoded with ``"utf-8", "surrogateescape"``), or None when a value is not for
    this path (an object, a reference, a tuple, a lone surrogate, a cycle or deeper
    than :data:`DEPTH`...): ``codec.dump_pairs`` then writes it, or says what is wrong.
    """
    # The output is a list of small pieces joined once: constant pieces and the
    # ready-made ones of the tables cost no allocation, where an f-string per value
    # would build (and copy) a str each time.
    out: list[str] = []
    if len(_FLOATS) >= _FLOATS_MAX:
        _FLOATS.clear()
    if len(_STR_PIECES) >= _FLOATS_MAX:
        _STR_PIECES.clear()
    if len(_KEY_PIECES) >= _FLOATS_MAX:
        _KEY_PIECES.clear()
    try:
        for prefix, v in pairs:
            out.append(prefix)
            _dump(out, v, precision, 0)
    except (_Unsupported, UnicodeEncodeError, RecursionError):  # (interpreted: Python's stack)
        return None
    return "".join(out)


def clear_caches() -> None:
    """Empty the decoder's string table and the encoder's caches (``codec.clear_caches``)."""
    _FLOATS.clear()
    _STR_PIECES.clear()
    _KEY_PIECES.clear()
    for i in range(len(_INTERN)):
        _INTERN[i] = ""


#: ready-made pieces for small numbers: "i:5;", "s:5:\"", "a:5:{"
_SMALL: Final = 1024
_INT_KEYS: Final = _LIST_KEYS
_STR_HEADS: Final = [f's:{i}:"' for i in range(_SMALL)]
_ARRAY_HEADS: Final = [f"a:{i}:{{" for i in range(_SMALL)]
#: float -> its "d:...;" piece in the default precision (never 0.0/-0.0: equal keys,
#: different pieces; NAN is never found again); emptied when full
_FLOATS: Final[dict[float, str]] = {}
_FLOATS_MAX: Final = 4096
#: str value -> its piece ('s:3:"EUR";'), str array key -> its piece ('s:3:"sku";',
#: "i:5;" for "5"), for strings of at most _PIECE_LEN characters, at most _FLOATS_MAX
#: entries each: a worker writes the same keys and values request after request
#: (together with the table of decoded strings, at most about 2 MiB stay)
_STR_PIECES: Final[dict[str, str]] = {}
_KEY_PIECES: Final[dict[str, str]] = {}
_PIECE_LEN: Final = 64


def _str_size(s: str) -> int:
    """The length of ``s`` in UTF-8 bytes (UnicodeEncodeError for a lone surrogate)."""
    n = len(s)
    i = 0
    while i < n:
        if ord(s[i]) >= 128:
            return len(s.encode("utf-8"))
        i += 1
    return n


def _dump_str(out: list[str], s: str) -> None:
    piece = _STR_PIECES.get(s)
    if piece is not None:
        out.append(piece)
        return
    n = _str_size(s)
    if len(s) <= _PIECE_LEN:
        piece = f's:{n}:"{s}";'
        if len(_STR_PIECES) < _FLOATS_MAX:
            _STR_PIECES[s] = piece
        out.append(piece)
        return
    out.append(_STR_HEADS[n] if n < _SMALL else f's:{n}:"')
    out.append(s)
    out.append('";')


def _dump_int(out: list[str], n: int) -> None:
    if 0 <= n < _SMALL:
        out.append(_INT_KEYS[n])
    elif n < _PHP_INT_MIN or n > _PHP_INT_MAX:
        raise _Unsupported
    else:
        out.append(f"i:{n};")


def _dump(out: list[str], v: Any, precision: int, depth: int) -> None:
    t = type(v)
    if t is str:
        _dump_str(out, v)
    elif t is int:
        _dump_int(out, v)
    elif t is _PHPARRAY:
        _dump_dict(out, v._d, precision, depth)
    elif t is dict:
        _dump_dict(out, v, precision, depth)
    elif t is list:
        lst: list[Any] = v
        if not _open_array(out, len(lst), depth):
            return
        keys = _INT_KEYS
        i = 0
        for item in lst:
            out.append(keys[i] if i < _SMALL else f"i:{i};")
            _dump(out, item, precision, depth + 1)
            i += 1
        out.append("}")
    elif t is float:
        _dump_float(out, v, precision)
    elif t is bool:
        out.append("b:1;" if v else "b:0;")
    elif v is None:
        out.append("N;")
    elif t is bytes:
        b: bytes = v
        n = len(b)
        out.append(_STR_HEADS[n] if n < _SMALL else f's:{n}:"')
        out.append(b.decode("utf-8", "surrogateescape"))
        out.append('";')
    else:
        raise _Unsupported


def _dump_float(out: list[str], f: float, precision: int) -> None:
    if precision >= 0:
        out.append(f"d:{float_to_string(f, precision)};")
        return
    piece = _FLOATS.get(f)
    if piece is None:
        r = _decimal(f)
        if not r:
            r = repr(f)
            if "e" in r or "n" in r:
                r = float_to_string(f, precision)
            elif r.endswith(".0"):
                r = r[:-2]
        piece = f"d:{r};"
        if f != 0.0 and len(_FLOATS) < _FLOATS_MAX:
            _FLOATS[f] = piece
    out.append(piece)


def _decimal(f: float) -> str:
    """``repr(f)`` without a trailing ``.0`` (PHP's text for ``serialize_precision`` -1)
    when ``f`` is a decimal of at most 15 significant digits between 1e-4 and 1e15, found
    without the shortest-digits algorithm; "" for the others (the caller uses repr).

    The first ``k`` for which ``m = round(|f| * 10**k)`` (below 10**15) gives back
    ``f`` as ``m / 10**k`` (exact operands, one correctly rounded division) has the
    fewest digits after the point, hence the fewest digits: it is the shortest text
    that reads back as ``f``, and the only one of its length (two decimals of at most
    15 digits are never one double), i.e. what repr() writes.
    """
    a = -f if f < 0.0 else f
    if not 1e-4 <= a < 1e15:
        return ""
    k: i64 = 0
    while k <= 15:
        scale = _POW10[k]
        x = a * scale + 0.5
        if x >= 1e15:
            return ""
        m: i64 = int(x)
        if float(m) / scale == a:
            digits = str(m)
            if k:
                if len(digits) <= k:
                    digits = "0." + "0" * (k - len(digits)) + digits
                else:
                    digits = digits[: len(digits) - k] + "." + digits[len(digits) - k :]
            return "-" + digits if f < 0.0 else digits
        k += 1
    return ""


def _open_array(out: list[str], n: int, depth: int) -> bool:
    """Write the head of an array of ``n`` elements; False when it is empty (then written
    whole, nothing to follow).  :raises _Unsupported: nested deeper than :data:`DEPTH`."""
    if n == 0:
        out.append("a:0:{}")
        return False
    if depth >= DEPTH:
        raise _Unsupported
    out.append(_ARRAY_HEADS[n] if n < _SMALL else f"a:{n}:{{")
    return True


def _dump_dict(out: list[str], d: dict[Any, Any], precision: int, depth: int) -> None:
    if not _open_array(out, len(d), depth):
        return
    for k, item in d.items():
        t = type(k)
        if t is str:
            _dump_key(out, k)
        elif t is int:
            _dump_int(out, k)
        elif t is bytes:
            b: bytes = k
            if b.isascii():
                _dump_key(out, b.decode("ascii"))
            else:
                out.append(_STR_HEADS[len(b)] if len(b) < _SMALL else f's:{len(b)}:"')
                out.append(b.decode("utf-8", "surrogateescape"))
                out.append('";')
        else:
            raise _Unsupported
        _dump(out, item, precision, depth + 1)
    out.append("}")


def _dump_key(out: list[str], s: str) -> None:
    """A str array key as ``codec._ArrayKeys`` writes it (``"5"`` is the key 5)."""
    piece = _KEY_PIECES.get(s)
    if piece is None:
        piece = _key_piece(s)
        if len(s) <= _PIECE_LEN and len(_KEY_PIECES) < _FLOATS_MAX:
            _KEY_PIECES[s] = piece
    out.append(piece)


def _key_piece(s: str) -> str:
    if _canonical_int(s):
        n = int(s)
        if _PHP_INT_MIN <= n <= _PHP_INT_MAX:
            return f"i:{n};"
    return f's:{_str_size(s)}:"{s}";'
