"""phpsess.core.telemetry: log-scale lock-wait histograms summed across workers."""

from __future__ import annotations

from phpsess.core import telemetry


def test_summary_of_two_workers_slots() -> None:
    buf = bytearray(telemetry.SLOT_SIZE * 2)
    for wait in [0.0] * 90 + [0.5] * 9 + [0.73]:
        telemetry.record(buf, 0, wait)
    telemetry.record(buf, 1, 0.000003)
    s = telemetry.summarize(telemetry.read_slot(buf, i) for i in range(2))
    assert s.count == 101
    assert s.p50 == 2e-6  # bucket [1, 2) µs holds the zero waits
    assert 0.5 <= s.p99 <= 2 * 0.5 and s.p99 <= s.max == 0.73
    assert abs(s.mean - (9 * 0.5 + 0.73 + 0.000003) / 101) < 1e-6


def test_empty_pool_and_the_log_line() -> None:
    assert telemetry.format_summary(telemetry.summarize([])) == "lock waits: no requests yet"
    line = telemetry.format_summary(telemetry.WaitSummary(3, 2e-6, 0.524288, 0.73, 0.25))
    assert line == "lock waits: 3 requests, p50 <= 2 µs, p99 <= 524.3 ms, max 730.0 ms, mean 250.0 ms"


def test_percentiles_never_exceed_the_exact_maximum() -> None:
    buf = bytearray(telemetry.SLOT_SIZE)
    telemetry.record(buf, 0, 0.3)
    s = telemetry.summarize([telemetry.read_slot(buf, 0)])
    assert s.p50 == s.p99 == s.max == 0.3


def test_recording_through_the_word_view_writes_the_same_bytes() -> None:
    import mmap
    import random

    rng = random.Random(7)
    plain = bytearray(telemetry.SLOT_SIZE * 3)
    shared = mmap.mmap(-1, telemetry.SLOT_SIZE * 3)  # what the pool's workers write to
    words = telemetry.slot_words(shared)
    assert words is not None  # x86 and arm64 are little-endian
    waits = [0.0, 1e-7, 1e-6, 2e-6, 3.3e-6, 0.25, 7.5, 1e7] + [rng.random() * 10 for _ in range(500)]
    for wait in waits:
        slot = rng.randrange(3)
        telemetry.record(plain, slot, wait)
        telemetry.record_words(words, slot, wait)
    assert bytes(plain) == shared[:]
    words.release()
    shared.close()
