"""Fuzz the decoders: generated and mutated payloads through ``codec.loads`` and the
three session decoders, and what decodes encoded back.  Runs in this process only.

The inputs and the checks are those of ``tests/soak/soak_fuzz.py`` (grammar-built
values with hostile lengths and counts, mutated valid payloads, random bytes,
pathological shapes); this script runs them without memory tracing (faster) and with
the re-encode check: every value a decoder returns must encode again with the
matching encoder.  Reported: any exception other than ``SessionDecodeError`` (a crash:
``RecursionError``, ``MemoryError``, ...), any call slower than ``--max-ms`` (re-timed
three times first), a decoded value that does not encode, and the slowest call.  Exit
status 1 when something was reported.  ``python -m tests.soak.soak_fuzz`` adds the
memory bound (tracemalloc) and defaults to 1,000,000 inputs.

    python bench/fuzz_codec.py                 # 100,000 inputs
    python bench/fuzz_codec.py --count 20000 --seed 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the repository instead of bench/ (whose http.py would shadow the standard library's)
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.soak.soak_fuzz import fuzz  # noqa: E402

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; print a report; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100000, help="number of inputs (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-ms", type=float, default=100.0, help="report calls slower than this")
    args = ap.parse_args(argv)
    r = fuzz(args.count, seed=args.seed, max_ms=args.max_ms, trace_memory=False, reencode=True,
             progress=lambda s: print(s, file=sys.stderr, flush=True))
    calls, total = r["decoder_calls"], r["seconds"]
    print(f"inputs: {r['inputs']}   decoder calls: {calls}   time: {total:.1f} s "
          f"({calls / max(total, 1e-9):,.0f} calls/s)   by generator: {r['by_generator']}")
    for key, n in r["outcomes"].items():
        print(f"  {key:24} {n:8}")
    print(f"slowest call (re-timed when over --max-ms): {r['slowest_call_ms_under_tracing']:.2f} ms "
          f"({r['slowest_call']})")
    if r["problem_count"]:
        print(f"PROBLEMS: {r['problem_count']}")
        for p in r["problems"][:20]:
            print(f"  {p['decoder']}: {p['what']}\n    input ({p['size']} bytes): {p['input'][:200]}")
        return 1
    print("no problems: every input was decoded or refused with SessionDecodeError, "
          "and every decoded value encodes again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
