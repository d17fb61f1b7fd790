"""What a piece of work leaves for Python's cycle collector.  No I/O of its own."""

from __future__ import annotations

import gc
from typing import Any, Callable

__all__ = ["cycle_garbage"]


def cycle_garbage(work: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``work`` with the collector off, then collect: ``work``'s result and the
    sorted type names of the objects that only the cycle collector could free (the
    reference cycles ``work`` left behind)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = work()
        gc.collect()
        return result, sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
