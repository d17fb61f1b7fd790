"""Lock-wait telemetry: how long requests waited for their session lock. No I/O.

Each pool worker records its requests' waits into its own slot of a buffer
the master shares with all workers (an anonymous shared mapping made before
forking), so the master can sum them without asking anyone: ``phpsess fpm``
prints the summary (count, p50, p99, max) on SIGUSR1 and when it stops.

A slot is a log-scale histogram: bucket ``i`` counts waits in
``[2**i, 2**(i+1))`` microseconds (bucket 0 also holds waits under 1 µs), so a
percentile is known to within a factor of two, which is what "why is my page
slow" needs; the exact maximum is kept beside it.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Final, Iterable

__all__ = ["BUCKETS", "SLOT_SIZE", "record", "record_words", "slot_words", "read_slot", "WaitSummary", "summarize", "format_summary"]

#: log2 buckets of microseconds: up to 2**40 µs (~12 days)
BUCKETS: Final = 40
# count, total_us, max_us, then the buckets; all unsigned 64-bit
_SLOT: Final = struct.Struct(f"<3Q{BUCKETS}Q")
SLOT_SIZE: Final = _SLOT.size
_HEAD: Final = struct.Struct("<3Q")
_Q: Final = struct.Struct("<Q")


def bucket_of(micros: int) -> int:
    """The histogram bucket of a wait of ``micros`` microseconds."""
    return min(max(micros, 1).bit_length() - 1, BUCKETS - 1)


def record(buf: bytearray | memoryview | object, slot: int, seconds: float) -> None:
    """Add one request's wait (``seconds``) to ``slot`` of the shared buffer ``buf``.

    Only the worker owning ``slot`` writes to it, so no lock is needed.
    """
    base = slot * SLOT_SIZE
    micros = int(seconds * 1e6)
    count, total, peak = _HEAD.unpack_from(buf, base)  # type: ignore[arg-type]
    _HEAD.pack_into(buf, base, count + 1, total + micros, max(peak, micros))  # type: ignore[arg-type]
    at = base + _HEAD.size + 8 * bucket_of(micros)
    (n,) = _Q.unpack_from(buf, at)  # type: ignore[arg-type]
    _Q.pack_into(buf, at, n + 1)  # type: ignore[arg-type]


_WORDS_PER_SLOT: Final = SLOT_SIZE // 8
_NATIVE_LE: Final = sys.byteorder == "little"


def slot_words(buf: bytearray | memoryview | object) -> memoryview | None:
    """A view of ``buf`` as 64-bit words for :func:`record_words` (None where the
    machine's byte order is not the buffer's little-endian)."""
    if not _NATIVE_LE:
        return None
    return memoryview(buf).cast("B").cast("Q")  # type: ignore[arg-type]


def record_words(words: memoryview, slot: int, seconds: float) -> None:
    """:func:`record` through a :func:`slot_words` view: the same bytes, a few times cheaper."""
    base = slot * _WORDS_PER_SLOT
    micros = int(seconds * 1e6)
    words[base] += 1
    words[base + 1] += micros
    if micros > words[base + 2]:
        words[base + 2] = micros
    words[base + 3 + bucket_of(micros)] += 1


def read_slot(buf: bytes | bytearray | memoryview | object, slot: int) -> tuple[int, int, int, list[int]]:
    """``(count, total_us, max_us, buckets)`` of one slot."""
    values = _SLOT.unpack_from(buf, slot * SLOT_SIZE)  # type: ignore[arg-type]
    return values[0], values[1], values[2], list(values[3:])


@dataclass(frozen=True)
class WaitSummary:
    """Lock waits of all requests so far (seconds; percentiles are bucket upper bounds)."""

    count: int
    p50: float
    p99: float
    max: float
    mean: float


def summarize(slots: Iterable[tuple[int, int, int, list[int]]]) -> WaitSummary:
    """Sum per-worker slots into one summary."""
    count = total = peak = 0
    buckets = [0] * BUCKETS
    for c, t, m, b in slots:
        count += c
        total += t
        peak = max(peak, m)
        for i, n in enumerate(b):
            buckets[i] += n
    if count == 0:
        return WaitSummary(0, 0.0, 0.0, 0.0, 0.0)

    def percentile(p: float) -> float:
        need = p * count
        seen = 0
        for i, n in enumerate(buckets):
            seen += n
            if seen >= need:
                return float(min(2 ** (i + 1), peak)) / 1e6  # the bucket's upper bound, never above the max
        return peak / 1e6

    return WaitSummary(count, percentile(0.5), percentile(0.99), peak / 1e6, total / count / 1e6)


def format_summary(s: WaitSummary) -> str:
    """One log line: ``lock waits: 1234 requests, p50 < 2 µs, p99 < 512 ms, max 0.734 s``."""
    if s.count == 0:
        return "lock waits: no requests yet"
    return (
        f"lock waits: {s.count} requests, p50 <= {_human(s.p50)}, p99 <= {_human(s.p99)}, "
        f"max {_human(s.max)}, mean {_human(s.mean)}"
    )


def _human(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
