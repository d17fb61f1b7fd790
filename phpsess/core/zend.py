"""PHP's value conversions and C's number parsing, written once. No I/O.

Every place where phpsess has to turn a value into what PHP would see -- an option
of ``session_start()``, a ``setcookie()`` option, a parameter of a Redis save_path,
the ``N`` and ``MODE`` of a files save_path, an ini value -- calls one of these:

* C's ``strtol``/``strtoul``/``strtod`` on the leading part of a string
  (:func:`strtol`, :func:`strtoul`, :func:`strtod`), and C's view of a PHP string
  (:func:`c_str`: everything before the first NUL);
* PHP's casts, as ``Zend/zend_operators.c`` does them: ``(int)`` (:func:`intval`),
  ``(float)`` (:func:`floatval`), ``(bool)`` (:func:`truthy`), ``(string)``
  (:func:`strval`), and ``is_numeric()`` on a string (:func:`is_numeric_string`);
* the wrap-around of C's 64- and 32-bit integers (:func:`to_signed64`, :func:`to_int32`);
* PHP's type names in its ``TypeError`` messages (:func:`type_name`).

The tests compare each of them with PHP 8.2 itself (``tests/oracle/test_zend_oracle.py``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

__all__ = [
    "C_SPACE",
    "LONG_MIN",
    "LONG_MAX",
    "ULONG_MAX",
    "c_str",
    "to_signed64",
    "to_int32",
    "strtol",
    "strtoul",
    "strtod",
    "is_numeric_string",
    "intval",
    "floatval",
    "truthy",
    "strval",
    "float_to_string",
    "type_name",
]

#: C isspace() in the "C" locale (also zend_is_whitespace of the ini scanner)
C_SPACE: Final = " \t\n\r\v\f"
LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1
ULONG_MAX: Final = (1 << 64) - 1
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def c_str(s: str) -> str:
    """What C sees of a PHP string: everything before the first NUL byte."""
    i = s.find("\0")
    return s if i < 0 else s[:i]


def to_signed64(v: int) -> int:
    """``v`` wrapped to a signed 64-bit integer, as C's arithmetic on ``zend_long`` wraps."""
    v &= ULONG_MAX
    return v - (1 << 64) if v > LONG_MAX else v


def to_int32(v: int) -> int:
    """``v`` wrapped to a signed 32-bit ``int`` (C's ``(int)`` of a ``long``)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v > 0x7FFFFFFF else v


def strtol(s: str, base: int = 10) -> tuple[int, int, bool]:
    """C ``strtol(s, &end, base)`` for base 2 to 36.

    Leading white space and one sign are accepted; conversion stops at the first
    character that is not a digit of ``base``.

    :returns: ``(value, end, erange)``: the value saturated to a 64-bit ``long``,
        the index where conversion stopped (0 when there were no digits, as C sets
        ``end`` back to ``s``), and whether the value was out of range.
    """
    i = 0
    n = len(s)
    while i < n and s[i] in C_SPACE:
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    digits = _DIGITS[:base]
    j = i
    while j < n and s[j].isascii() and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, 0, False
    v = int(s[i:j], base)
    if neg:
        v = -v
    if v > LONG_MAX:
        return LONG_MAX, j, True
    if v < LONG_MIN:
        return LONG_MIN, j, True
    return v, j, False


def strtoul(s: str, i: int, base: int) -> tuple[int, int, bool]:
    """C ``strtoul(s + i, &end, base)`` for the digit run at ``i`` (no sign or blanks there).

    :returns: ``(value, end, overflowed)``; ``base`` 0 means octal after a leading 0.
    """
    if base == 0:
        base = 8 if s[i : i + 1] == "0" else 10
    digits = _DIGITS[:base]
    j = i
    n = len(s)
    while j < n and s[j].isascii() and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, i, False
    v = int(s[i:j], base)
    if v > ULONG_MAX:
        return ULONG_MAX, j, True
    return v, j, False


_DECIMAL_PREFIX: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def strtod(s: str) -> float:
    """``zend_strtod`` on the leading part of ``s`` (decimal only, no inf/nan): garbage gives 0.0."""
    m = _DECIMAL_PREFIX.match(s.lstrip(C_SPACE))
    return float(m.group()) if m is not None else 0.0


#: is_numeric_string_ex: leading blanks, a decimal integer or float; trailing blanks (PHP 8)
_NUMERIC_PREFIX: Final = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_NUMERIC: Final = re.compile(_NUMERIC_PREFIX.pattern + r"[ \t\n\r\v\f]*\Z")


def is_numeric_string(s: str) -> bool:
    """PHP's ``is_numeric()`` of a string: a decimal integer or float, blanks around allowed."""
    return _NUMERIC.match(s) is not None


def _double_to_long_cap(f: float) -> int:
    """``zend_dval_to_lval_cap``: what ``(int)`` makes of a numeric string's float value."""
    if math.isnan(f) or math.isinf(f):
        return 0
    if not -(2.0**63) <= f < 2.0**63:
        return LONG_MAX if f > 0 else LONG_MIN
    return int(f)


def _double_to_long(f: float) -> int:
    """``zend_dval_to_lval`` (64-bit, PHP 8): ``(int)`` of a float wraps modulo 2**64."""
    if math.isnan(f) or math.isinf(f):
        return 0
    return to_signed64(int(f))


def _number(value: Any, *, as_float: bool = False) -> int | float:
    """The number PHP's ``(int)``/``(float)`` start from: a string's numeric prefix (an int
    for integer text, however long, unless ``as_float``; a float otherwise; 0 for none),
    0 or 1 for null, bools and arrays, ints and floats as they are."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        m = _NUMERIC_PREFIX.match(value)
        if m is None:
            return 0
        text = m.group(1)
        if as_float or "." in text or "e" in text or "E" in text:
            return float(text)  # ("-0" is -0.0)
        return int(text)
    if isinstance(value, (int, float)):  # bool too
        return value
    if value is None:
        return 0
    if isinstance(value, (list, tuple, dict)):
        return 1 if value else 0
    return 1


def intval(value: Any) -> int:
    """PHP's ``(int)$value`` (``zval_get_long``).

    ``"12abc"`` -> 12, ``" 1e3"`` -> 1000, ``"1e100"`` -> ``PHP_INT_MAX``, ``"x"`` -> 0,
    ``1.9`` -> 1, ``1e19`` -> wraps as PHP 8 does, ``null`` -> 0, an array -> 0 or 1.
    """
    n = _number(value)
    if isinstance(n, float):
        # a numeric string's float is capped (zend_dval_to_lval_cap), a float wraps
        return _double_to_long_cap(n) if isinstance(value, (str, bytes, bytearray)) else _double_to_long(n)
    if isinstance(value, (str, bytes, bytearray)) and not LONG_MIN <= n <= LONG_MAX:
        return LONG_MAX if n > 0 else LONG_MIN  # an integer string past long: a float, capped
    return to_signed64(int(n))


def floatval(value: Any) -> float:
    """PHP's ``(float)$value`` (``zval_get_double``): ``"1.5e3x"`` -> 1500.0, ``"x"`` -> 0.0."""
    return float(_number(value, as_float=True))


def truthy(value: Any) -> bool:
    """PHP's ``(bool)$value``: ``""``, ``"0"``, 0, 0.0, ``null`` and ``[]`` are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) not in (b"", b"0")
    return bool(value)


def float_to_string(value: float, precision: int = 14) -> str:
    """A float as PHP writes it with ``precision`` significant digits (``zend_gcvt``;
    ``smart_str_append_double``): ``(string)$f`` and ``ini_set()`` use ``precision``
    (14), ``serialize()`` uses ``serialize_precision``.

    ``-1`` (``serialize_precision``'s default) gives the shortest representation that
    round-trips: ``0.1``, ``1`` (no ``.0``), ``-0``, ``1.0E+25``, ``1.5E-7``, ``INF``,
    ``-INF``, ``NAN``.  14 gives ``1.0E+20``, ``0.33333333333333``.
    """
    if precision < 0:
        r = repr(value)
        if "e" not in r and "n" not in r:
            return r[:-2] if r.endswith(".0") else r
        ndigit = 17
    else:
        ndigit = precision
    if value != value or value in (math.inf, -math.inf):
        # zend_gcvt: snprintf(buf, ndigit + 1, ...), so a small precision truncates.
        text = "NAN" if value != value else ("INF" if value > 0 else "-INF")
        return text[:ndigit]
    negative = math.copysign(1.0, value) < 0
    if precision < 0:
        mantissa, _, exp = repr(abs(value)).partition("e")
        whole, _, frac = mantissa.partition(".")
        if exp:
            digits = whole + frac
            decpt = int(exp) + 1
        else:
            # Python's fixed notation: find the decimal point position from the digits.
            if whole != "0":
                digits = whole + frac
                decpt = len(whole)
            else:
                stripped = frac.lstrip("0")
                decpt = len(stripped) - len(frac)
                digits = stripped or "0"
    else:
        mantissa, _, exp = ("%.*e" % (max(ndigit, 1) - 1, abs(value))).partition("e")
        digits = mantissa.replace(".", "")
        decpt = int(exp) + 1
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        decpt = 1
    sign = "-" if negative else ""
    if (decpt < -3) if decpt < 0 else (decpt > ndigit):
        e = decpt - 1
        return f"{sign}{digits[0]}.{digits[1:] or '0'}E{'-' if e < 0 else '+'}{abs(e)}"
    if decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    if len(digits) <= decpt:
        return sign + digits + "0" * (decpt - len(digits))
    return f"{sign}{digits[:decpt]}.{digits[decpt:]}"


def strval(value: Any) -> str:
    """PHP's ``(string)$value`` of a scalar, as ``ini_set()`` stores it.

    ``true`` -> ``"1"``, ``false``/``null`` -> ``""``, ints in decimal, floats as PHP
    prints them (``1.5``, ``100.0`` -> ``"100"``, ``1e20`` -> ``"1.0E+20"``); bytes
    are decoded with surrogateescape so every byte survives.
    """
    if isinstance(value, str):
        return value
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, float):
        return float_to_string(value)
    return str(value)


def type_name(value: Any) -> str:
    """The PHP type name of a Python value, as PHP's ``TypeError`` messages spell it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, (list, tuple, dict)):
        return "array"
    return type(value).__name__
