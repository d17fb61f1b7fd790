"""A few seconds of the seeded protocol fuzzer (tests/soak/soak_protocol_fuzz.py) against
``phpsess fpm`` (FastCGI socket) and ``phpsess serve`` (HTTP): no hang past the limits, no
worker lost, memory back to idle, the canary session intact.  The long run is the soak
script's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.soak_protocol_fuzz import fuzz

pytestmark = pytest.mark.slow


def test_fuzzed_fastcgi_and_http_neither_hang_nor_kill_nor_bloat_the_pools(tmp_path: Path) -> None:
    figures = fuzz(4.0, 20261206, tmp_path, workers=2, clients=6)
    print(figures)
    assert figures["problems"] == []
    assert figures["fpm"]["connections"] >= 10 and figures["serve"]["connections"] >= 10
