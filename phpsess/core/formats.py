"""The ``session.serialize_handler`` formats: ``php``, ``php_serialize``, ``php_binary`` and
``igbinary``. No I/O.

Byte for byte as PHP 8.2's ``ext/session/session.c`` (``PS_SERIALIZER_ENCODE_FUNC``/``DECODE_FUNC``):

* ``php`` (default): ``key|value`` for each entry, no separator, no terminator.  Integer
  keys are skipped (PHP warns ``Skipping numeric key N``: pass ``on_skip``); a key
  containing ``|`` makes the whole encoding "nothing" (``None``); ``!`` has no special
  meaning in 8.2.
* ``php_binary``: one byte (key length), the key, the value; keys longer than 127 bytes
  are skipped silently, integer keys with the same warning.
* ``php_serialize``: the whole session array through ``serialize()``, integer keys
  included; decoding ignores bytes after the value.
* ``igbinary`` (php-igbinary's session serializer, :mod:`phpsess.core.igbinary`): the
  whole session array in igbinary's binary format, integer keys written but skipped
  when reading, bytes after the value ignored; an empty session is 6 bytes, not
  "nothing".

All values of one session share one reference-numbering context, so ``r:n``/``R:n``
may point across keys.  ``encode`` returns ``None`` for PHP's "nothing" (an empty
``php``/``php_binary`` session, or a ``|`` in a key with ``php``): the caller writes
``b""``.  Keys decoded from a payload keep their exact type: a ``php`` session key
``"12"`` is the string ``"12"`` (PHP keeps it as a string key too) and is written back;
only ``int`` keys are skipped (``canonicalize_keys=True`` skips ``"12"`` as well, the
way PHP treats ``$_SESSION['12'] = ...`` set by a script).
"""

from __future__ import annotations

from typing import Any, Callable, Final, Literal, Mapping

from .codec import (
    MAX_DEPTH,
    AllowedClasses,
    RefContext,
    _Fallback,
    _fast_value,
    _parse,
    _str_len,
    _text_value,
    dump_pairs,
    _SLICE_FREE,
    _charge,
    _fast_end,
    _fast_pieces,
    native_decode_php,
    native_decode_value,
    native_dump_pairs,
    php_array_key,
    to_php_arrays,
    trim_caches,
)
from . import igbinary
from ..errors import SessionDecodeError, SessionEncodeError

__all__ = [
    "HANDLERS",
    "encode",
    "decode",
    "encode_php",
    "decode_php",
    "encode_php_binary",
    "decode_php_binary",
    "encode_php_serialize",
    "decode_php_serialize",
    "split_php",
    "decode_cost",
]

#: the serialize handlers PHP 8.2 ships (``session.serialize_handler``), and php-igbinary's
HANDLERS: Final = ("php", "php_serialize", "php_binary", "igbinary")

OnSkip = Callable[[int], None]


def _check_handler(handler: str) -> None:
    if handler not in HANDLERS:
        raise ValueError(f"unknown session.serialize_handler {handler!r}; expected one of {HANDLERS}")


def _key_text(key: Any, on_skip: OnSkip | None, canonicalize: bool) -> str | None:
    """A session key as text for php/php_binary, or None when PHP skips it as numeric."""
    if isinstance(key, int):
        if on_skip is not None:
            on_skip(int(key))
        return None
    if isinstance(key, str):
        _str_len(key)  # refuse lone surrogates
        if canonicalize:
            k = php_array_key(key)
            if isinstance(k, int):
                if on_skip is not None:
                    on_skip(k)
                return None
        return key
    if isinstance(key, (bytes, bytearray)):
        if canonicalize:
            k = php_array_key(bytes(key))
            if isinstance(k, int):
                if on_skip is not None:
                    on_skip(k)
                return None
        return bytes(key).decode("utf-8", "surrogateescape")
    raise SessionEncodeError(f"session key must be str, not {type(key).__name__}")


def _finish(out: list[str]) -> bytes:
    return "".join(out).encode("utf-8", "surrogateescape")


def _encode_named(
    data: Mapping[Any, Any],
    head: Callable[[str], "str | None | Literal[False]"],
    on_skip: OnSkip | None,
    precision: int,
    canonicalize_keys: bool,
) -> bytes | None:
    """``php``/``php_binary``: each entry as ``head(key)`` then its value.  ``head``
    returns None to leave the entry out, False to write nothing at all."""
    pairs = []
    for key, value in data.items():
        k = _key_text(key, on_skip, canonicalize_keys)
        if k is None:
            continue
        h = head(k)
        if h is None:
            continue
        if h is False:
            return None
        pairs.append((h, value))
    if not pairs:
        return None
    native = native_dump_pairs(pairs, precision)
    if native is not None:
        return native
    out: list[str] = []
    dump_pairs(out, iter(pairs), RefContext(), precision)
    return _finish(out)


def _php_head(k: str) -> "str | None | Literal[False]":
    if "|" in k:
        return False  # PS_DELIMITER in a key: PHP writes nothing (8.2.36: silently)
    return k + "|"


def _php_binary_head(k: str) -> "str | None | Literal[False]":
    n = len(k) if k.isascii() else len(k.encode("utf-8", "surrogateescape"))
    return None if n > 127 else chr(n) + k  # PS_BIN_MAX: longer keys dropped without a warning


def encode_php(
    data: Mapping[Any, Any],
    *,
    on_skip: OnSkip | None = None,
    precision: int = -1,
    canonicalize_keys: bool = False,
) -> bytes | None:
    """``php`` handler: ``key|value...``; None when empty or a key contains ``|``."""
    return _encode_named(data, _php_head, on_skip, precision, canonicalize_keys)


def encode_php_binary(
    data: Mapping[Any, Any],
    *,
    on_skip: OnSkip | None = None,
    precision: int = -1,
    canonicalize_keys: bool = False,
) -> bytes | None:
    """``php_binary`` handler: length byte, key, value; None when nothing is written."""
    return _encode_named(data, _php_binary_head, on_skip, precision, canonicalize_keys)


def encode_php_serialize(data: Mapping[Any, Any], *, precision: int = -1) -> bytes:
    """``php_serialize`` handler: ``serialize($_SESSION)`` (``a:0:{}`` when empty)."""
    value = data if type(data) is dict else dict(data.items())
    native = native_dump_pairs([("", value)], precision)
    if native is not None:
        return native
    out: list[str] = []
    dump_pairs(out, iter((("", value),)), RefContext(), precision)
    return _finish(out)


def encode(
    data: Mapping[Any, Any],
    handler: str,
    *,
    on_skip: OnSkip | None = None,
    precision: int = -1,
    canonicalize_keys: bool = False,
) -> bytes | None:
    """Encode a session's data with ``handler`` (``session.serialize_handler``).

    :param on_skip: called with each integer key that ``php``/``php_binary`` drop (PHP
        warns ``Skipping numeric key N``), in order, up to an aborting ``|`` key.
    :param canonicalize_keys: treat numeric string keys (``"12"``) as PHP array
        assignment does, i.e. as integer keys (skipped by ``php``/``php_binary``).
    :returns: the payload, or None for PHP's "nothing" (write ``b""``).
    :raises SessionEncodeError: a value PHP cannot represent.
    :raises ValueError: unknown handler.
    """
    if handler == "php":
        return encode_php(data, on_skip=on_skip, precision=precision, canonicalize_keys=canonicalize_keys)
    if handler == "php_serialize":
        return encode_php_serialize(data, precision=precision)
    if handler == "php_binary":
        return encode_php_binary(data, on_skip=on_skip, precision=precision, canonicalize_keys=canonicalize_keys)
    if handler == "igbinary":
        return igbinary.encode_session(data)
    _check_handler(handler)
    raise AssertionError("unreachable")


def _decode_named(
    payload: bytes | bytearray | memoryview,
    split: Callable[[str], tuple[Any, str]],
    name_at: Callable[[str, int, int], tuple[Any, int]],
    allowed_classes: AllowedClasses,
    max_depth: int,
) -> dict[Any, Any]:
    """``php``/``php_binary``: names and values until the end; a repeated name wins last.

    The fast path reads ``;``-pieces, ``split(piece)`` cutting a name off the front
    (raising _Fallback when it cannot tell); the exact parser reads with
    ``name_at(text, pos, end)`` -> (name, position of its value).
    """
    try:
        return _decode_named_in(payload, split, name_at, allowed_classes, max_depth)
    finally:
        trim_caches()  # what one large payload added does not stay in the worker


def _decode_named_in(
    payload: bytes | bytearray | memoryview,
    split: Callable[[str], tuple[Any, str]],
    name_at: Callable[[str, int, int], tuple[Any, int]],
    allowed_classes: AllowedClasses,
    max_depth: int,
) -> dict[Any, Any]:
    ctx = RefContext(allowed_classes=allowed_classes, max_depth=max_depth)
    nxt = _fast_pieces(ctx, payload)
    if nxt is not None:
        try:
            out: dict[Any, Any] = {}
            p = nxt()
            while p:
                if len(p) > _SLICE_FREE:
                    _charge(ctx, len(p))  # split() copies the rest of p
                name, rest = split(p)
                out[name], p = _fast_value(rest, nxt, ctx)
            _fast_end(nxt, p)
            return out
        except (_Fallback, StopIteration):
            pass  # the exact parser decides, and says where it fails
    text = ctx.text_of(payload)
    end = ctx.size
    cells: dict[Any, list[Any]] = {}
    pos = 0
    while pos < end:
        name, at = name_at(text, pos, end)
        cell: list[Any] = []
        pos = _parse(text, at, ctx, cell)
        cells[name] = cell
    # A cell is a top-level value's own slot: an R: met later may have boxed it.
    return {name: cell[0] for name, cell in cells.items()}


def _name(text: str) -> Any:
    return text if text.isascii() else _text_value(text)


def _php_split(p: str) -> tuple[Any, str]:
    bar = p.find("|")
    if bar < 0:
        raise _Fallback  # a name holding ";", or no "|": the exact parser decides
    return _name(p[:bar]), p[bar + 1 :]


def _php_name_at(text: str, pos: int, end: int) -> tuple[Any, int]:
    bar = text.find("|", pos)
    if bar < 0:
        raise SessionDecodeError("session variable name without '|'", pos)
    return _name(text[pos:bar]), bar + 1


def _php_binary_split(p: str) -> tuple[Any, str]:
    n = ord(p[0]) & 0x7F
    name = p[1 : 1 + n]
    if len(name) != n:
        raise _Fallback
    return _name(name), p[1 + n :]


def _php_binary_name_at(text: str, pos: int, end: int) -> tuple[Any, int]:
    n = ord(text[pos]) & 0x7F
    if pos + n >= end:
        raise SessionDecodeError("session variable name runs past the end", pos)
    return _name(text[pos + 1 : pos + 1 + n]), pos + 1 + n


def decode_php(
    payload: bytes | bytearray | memoryview,
    *,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
) -> dict[Any, Any]:
    """``php`` handler: repeat ``name|value`` until the end; a duplicate name wins last.

    :raises SessionDecodeError: a name without ``|`` (also a trailing one), a bad value.
    """
    native = native_decode_php(payload, allowed_classes, max_depth)
    if native is not None:
        return native
    return _decode_named(payload, _php_split, _php_name_at, allowed_classes, max_depth)


def decode_php_binary(
    payload: bytes | bytearray | memoryview,
    *,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
) -> dict[Any, Any]:
    """``php_binary`` handler: length byte (the 0x80 bit ignored), name, value; repeat.

    :raises SessionDecodeError: a name running past the end, a bad value.
    """
    return _decode_named(payload, _php_binary_split, _php_binary_name_at, allowed_classes, max_depth)


def decode_php_serialize(
    payload: bytes | bytearray | memoryview,
    *,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """``php_serialize`` handler: one ``unserialize()``; bytes after the value are ignored.

    An array comes back as a dict (a list-shaped array too, keyed 0..n-1); empty input
    and ``N;`` give ``{}``.  Any other value (``i:5;``...) is returned as it is: PHP
    makes it ``$_SESSION`` itself, and the caller decides what to do with it.
    """
    if not payload:
        return {}
    native = native_decode_value(payload, allowed_classes, max_depth)
    ctx = RefContext(allowed_classes=allowed_classes, max_depth=max_depth)
    nxt = None if native is not None else _fast_pieces(ctx, payload)
    value: Any
    try:
        if native is not None:
            value = native[0]
        elif nxt is None:
            raise _Fallback
        else:
            value = _fast_value(nxt(), nxt, ctx)[0]
    except (_Fallback, StopIteration):
        text = ctx.text_of(payload)
        cell: list[Any] = []
        _parse(text, 0, ctx, cell)
        value = cell[0]
    finally:
        trim_caches()
    if value is None:
        return {}
    if type(value) is list:
        return dict(enumerate(value))
    return value


def decode(
    payload: bytes | bytearray | memoryview,
    handler: str,
    *,
    allowed_classes: AllowedClasses = True,
    max_depth: int = MAX_DEPTH,
    php_arrays: bool = False,
) -> Any:
    """Decode a stored session payload written with ``handler``.

    :param php_arrays: the arrays in the values as :class:`PHPArray`
        (``session.php_arrays``), i.e. ``codec.to_php_arrays(result, keep_top=True)``.
    :returns: the session data as a dict.  With ``php_serialize`` a payload that is
        not an array comes back as the value itself (see :func:`decode_php_serialize`).
    :raises SessionDecodeError: where PHP fails to decode (and destroys the session).
    :raises ValueError: unknown handler.
    """
    if php_arrays:
        if handler == "php":
            native = native_decode_php(payload, allowed_classes, max_depth, True)
            if native is not None:
                return native
        return to_php_arrays(
            decode(payload, handler, allowed_classes=allowed_classes, max_depth=max_depth), keep_top=True
        )
    if handler == "php":
        return decode_php(payload, allowed_classes=allowed_classes, max_depth=max_depth)
    if handler == "php_serialize":
        return decode_php_serialize(payload, allowed_classes=allowed_classes, max_depth=max_depth)
    if handler == "php_binary":
        return decode_php_binary(payload, allowed_classes=allowed_classes, max_depth=max_depth)
    if handler == "igbinary":
        return igbinary.decode_session(payload, allowed_classes=allowed_classes, max_depth=max_depth)
    _check_handler(handler)
    raise AssertionError("unreachable")


def split_php(payload: bytes | bytearray | memoryview) -> list[tuple[Any, int, int]] | None:
    """Find the top-level ``php`` entries without keeping their values.

    :returns: ``[(name, start, end), ...]`` where ``payload[start:end]`` is the
        serialized value of ``name`` (decode it alone with :func:`codec.loads`), or
        None when the payload contains ``r:``/``R:`` (values then depend on each other's
        numbering and must be decoded together).
    :raises SessionDecodeError: as :func:`decode_php`.
    """
    ctx = RefContext()
    text = ctx.text_of(payload)
    if ctx.track:
        return None
    end = ctx.size
    find = text.find
    out: list[tuple[Any, int, int]] = []
    pos = 0
    while pos < end:
        bar = find("|", pos)
        if bar < 0:
            raise SessionDecodeError("session variable name without '|'", pos)
        name: Any = text[pos:bar]
        if not name.isascii():
            name = _text_value(name)
        cell: list[Any] = []
        pos = _parse(text, bar + 1, ctx, cell)
        out.append((name, bar + 1, pos))
    trim_caches()
    return out


def decode_cost(payload: bytes | bytearray | memoryview) -> int:
    """The peak memory PHP takes to decode ``payload``, in bytes, estimated (for
    ``memory_limit``): the payload (PHP reads it into one string), as much again for the
    strings decoded from it, 32 bytes per value (a bucket), 350 per array or object (a
    small hash table) and, for growing the tables, 60 bytes per value rounded up to a
    power of two (a table of 2**k slots of 40 bytes, with the old half alive while it
    grows).  Follows ``memory_get_peak_usage()`` of PHP 8.2 within 25 % for sessions of
    scalars, strings and small arrays; counted in C, at memory speed.
    """
    data = bytes(payload) if not isinstance(payload, bytes) else payload
    containers = data.count(b"{")
    values = data.count(b";") + containers
    return 2 * len(data) + 32 * values + 60 * (1 << max(values - 1, 0).bit_length()) + 350 * containers
