"""``os.environ`` that notes when anyone changes it: how a pool worker knows, without
comparing the whole environment before and after every request, whether a script (or
the worker itself, between requests) changed it.  Plain Python on purpose: a class
derived from ``os._Environ`` cannot be compiled with mypyc, and it only runs when
something writes to ``os.environ``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["watch", "take_changed", "CHANGED"]

#: ``[True]`` once ``os.environ`` was changed through its mapping methods (read and
#: cleared by :func:`take_changed`, or directly by compiled callers: no Python call)
CHANGED = [False]


class _WatchedEnviron(os._Environ):  # type: ignore[type-arg]
    """os.environ's own class, plus a note of every change made through it (``update``,
    ``pop``, ``clear``, ``setdefault`` and ``|=`` all come through these two)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        CHANGED[0] = True
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        CHANGED[0] = True
        super().__delitem__(key)


def watch() -> bool:
    """Start noting changes of ``os.environ`` (idempotent); False where ``os.environ`` is
    not CPython's ``os._Environ`` (then nothing is noted)."""
    env = os.environ
    if isinstance(env, _WatchedEnviron):
        return True
    if type(env) is not getattr(os, "_Environ", None):
        return False
    env.__class__ = _WatchedEnviron
    return True


def take_changed() -> bool:
    """True when ``os.environ`` was changed since the last call (through its mapping
    methods); the note is cleared."""
    changed = CHANGED[0]
    CHANGED[0] = False
    return changed
