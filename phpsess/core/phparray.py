"""PHPArray: a PHP array in Python, an ordered map with PHP's key rules. No I/O.

A PHP array is one type where Python has two: ``[p0, p1]`` is the map ``{0: p0, 1: p1}``.
Decoding it to a ``list`` loses that: ``del cart[0]`` would renumber product 1 to key 0,
and ``cart["1"]`` would miss the key PHP stored as ``i:1``.  :class:`PHPArray` keeps
PHP's semantics at every nesting level:

* keys are canonicalised as PHP does for ``$a[$k]``: ``"1"`` and ``1`` (and ``True``,
  and ``1.0``) are the same key 1; ``"01"``, ``"-0"``, ``"1 "`` stay strings; ``None``
  is ``""``; a ``bytes`` key that is UTF-8 is the same as its ``str``;
* :meth:`PHPArray.append` (``$a[] = $x``) uses PHP's next free integer key: one more
  than the largest integer key the array ever held (so deleting never renumbers, and
  a key freed at the end is not reused), 0 for an array without one;
* order is insertion order, as in PHP, and survives a round trip byte for byte.

``docs/types.md`` says when to prefer it and how to get plain lists and dicts instead
(``session.php_arrays = 0``).  :func:`phpsess.core.codec.to_php_arrays` turns what the
decoder returns into PHPArrays.
"""

from __future__ import annotations

import math
import re
from collections.abc import MutableMapping
from typing import Any, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView

__all__ = ["PHPArray", "php_key"]

_INT_MAX = 9223372036854775807
_INT_MIN = -9223372036854775808
_CANONICAL_INT = re.compile(r"-?[1-9][0-9]{0,18}|0")


def php_key(key: Any) -> int | str | bytes:
    """``key`` as a PHP array stores it (``zend_hash`` offsets of ``$a[$key]``).

    :raises TypeError: PHP's "Illegal offset type" (lists, dicts, objects...).
    :raises ValueError: an integer outside PHP's 64-bit range, a NAN or infinite float.
    """
    t = type(key)
    if t is str:
        if key[:1] in "-0123456789" and _CANONICAL_INT.fullmatch(key):
            n = int(key)
            if _INT_MIN <= n <= _INT_MAX:
                return n
        return key  # type: ignore[no-any-return]
    if t is int:
        if not _INT_MIN <= key <= _INT_MAX:
            raise ValueError(f"array key {key} is outside PHP's 64-bit int range")
        return key  # type: ignore[no-any-return]
    if t is bool:
        return int(key)
    if key is None:
        return ""
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        try:
            return php_key(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return raw
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ValueError(f"array key {key!r} is not a finite number")
        return php_key(int(key))  # PHP truncates (and warns when it loses precision)
    if isinstance(key, int):
        return php_key(int(key))
    if isinstance(key, str):
        return php_key(str(key))
    raise TypeError(f"Illegal offset type: {type(key).__name__} cannot be a PHP array key")


class PHPArray(MutableMapping):  # type: ignore[type-arg]
    """An ordered map with PHP's array keys (see the module docstring).

    ``PHPArray()``, ``PHPArray({1: "a", "k": "b"})``, ``PHPArray(["a", "b"])`` (keys 0
    and 1) or ``PHPArray(pairs)``.  A mapping of keys; ``==`` compares key/value pairs
    in any order (PHP's ``==``), also with a ``dict``, and with a ``list`` when the keys
    are ``0..n-1``.  :meth:`is_list` says whether PHP's ``array_is_list()`` would be true.
    """

    __slots__ = ("_d", "_next")

    def __init__(self, items: Mapping[Any, Any] | Iterable[Any] | None = None) -> None:
        self._d: dict[int | str | bytes, Any] = {}
        # nNextFreeElement; None: no integer key yet; _PENDING: not computed yet
        self._next: Any = None
        if items is None:
            return
        if isinstance(items, (list, tuple)):
            for v in items:
                self.append(v)
        elif isinstance(items, Mapping):
            for k, v in items.items():
                self[k] = v
        else:
            for k, v in items:
                self[k] = v

    @classmethod
    def _trusted(cls, d: dict[Any, Any]) -> PHPArray:
        """Wrap ``d`` whose keys are already canonical (the decoder's), without copying."""
        a = cls.__new__(cls)
        a._d = d
        a._next = _PENDING  # found from the keys when first needed
        return a

    @classmethod
    def _trusted_list(cls, values: list[Any]) -> PHPArray:
        """Keys 0..n-1 for ``values`` (a decoded list)."""
        a = cls.__new__(cls)
        a._d = dict(enumerate(values))
        a._next = len(values) if values else None
        return a

    # -- the mapping ----------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        try:
            return self._d[key]
        except (KeyError, TypeError):
            return self._d[php_key(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        k = php_key(key)
        self._d[k] = value
        if isinstance(k, int):
            n = self._next if self._next is not _PENDING else self._next_free()
            if n is None or k >= n:
                self._next = k + 1 if k < _INT_MAX else _INT_MAX

    def __delitem__(self, key: Any) -> None:
        if self._next is _PENDING:
            self._next_free()  # from the keys as they were: a freed last key is not reused
        del self._d[php_key(key)]  # never renumbers, never lowers the next free key

    def __contains__(self, key: object) -> bool:
        try:
            return php_key(key) in self._d
        except (TypeError, ValueError):
            return False

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __reversed__(self) -> Iterator[Any]:
        return iter(reversed(self._d.keys()))

    def keys(self) -> KeysView[Any]:
        """The keys in PHP's order (a view)."""
        return self._d.keys()

    def values(self) -> ValuesView[Any]:
        """The values in PHP's order (a view)."""
        return self._d.values()

    def items(self) -> ItemsView[Any, Any]:
        """``(key, value)`` pairs in PHP's order (a view)."""
        return self._d.items()

    def get(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when absent (``$a[$k] ?? $default``)."""
        try:
            return self[key]
        except (KeyError, TypeError, ValueError):
            return default

    def clear(self) -> None:
        """Remove every element; like PHP, the next free key stays where it was."""
        if self._next is _PENDING:
            self._next_free()
        self._d.clear()

    # -- PHP ------------------------------------------------------------------------------
    def append(self, value: Any) -> int:
        """``$a[] = value``: store at PHP's next free integer key and return that key.

        :raises ValueError: PHP's "Cannot add element to the array as the next element is
            already occupied" (the array holds ``PHP_INT_MAX``).
        """
        n = self._next if self._next is not _PENDING else self._next_free()
        k = 0 if n is None else n
        if k in self._d:
            raise ValueError("Cannot add element to the array as the next element is already occupied")
        self._d[k] = value
        self._next = k + 1 if k < _INT_MAX else _INT_MAX
        return k

    @property
    def next_index(self) -> int:
        """The key the next :meth:`append` takes."""
        n = self._next if self._next is not _PENDING else self._next_free()
        return 0 if n is None else n

    def _next_free(self) -> Any:
        """PHP's next free key of a decoded array: one more than its largest int key."""
        top = None
        for k in self._d:
            if k.__class__ is int and (top is None or k >= top):
                top = k
        self._next = None if top is None else (top + 1 if top < _INT_MAX else _INT_MAX)
        return self._next

    def is_list(self) -> bool:
        """PHP's ``array_is_list()``: keys are exactly ``0..n-1`` in order."""
        for i, k in enumerate(self._d):
            if k != i or k.__class__ is not int:
                return False
        return True

    def to_python(self) -> dict[Any, Any] | list[Any]:
        """A plain ``list`` when :meth:`is_list`, else a ``dict`` (one level; values as they are)."""
        return list(self._d.values()) if self.is_list() else dict(self._d)

    def copy(self) -> PHPArray:
        """A shallow copy (PHP copies arrays on assignment; nested arrays are shared here)."""
        a = PHPArray.__new__(PHPArray)
        a._d = self._d.copy()
        a._next = self._next
        return a

    __copy__ = copy

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PHPArray):
            return self._d == other._d
        if isinstance(other, dict):
            try:
                return self._d == {php_key(k): v for k, v in other.items()}
            except (TypeError, ValueError):
                return False
        if isinstance(other, (list, tuple)):
            return len(other) == len(self._d) and all(
                self._d.get(i, _ABSENT) == v for i, v in enumerate(other)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PHPArray({self._d!r})"


_ABSENT: Any = object()
_PENDING: Any = object()
