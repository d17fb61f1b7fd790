"""Faults and load through nginx + ``phpsess fpm``, the short versions of tests/soak/ (seconds
each): workers killed with SIGKILL under load (files and Redis), a full disk, a read-only
disk, Redis killed and restarted, ten seconds of the mixed workload.  Starts nginx, pools
and redis-servers on loopback, mounts small tmpfs file systems (root); every fixture
stops and unmounts what it started.  Long runs and their figures: docs/reliability.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.soak.soak_kill import run_kill
from tests.soak.soak_load import run_load
from tests.soak.soak_storage import run_disk_full, run_read_only, run_redis_restart
from tests.soak.stack import Http, fpm_stack, rss

pytestmark = pytest.mark.slow

__all__: list[str] = []


def quiet(_text: str) -> None:
    """Swallow the scenario's JSON report (the assertions show what matters)."""


def need_root() -> None:
    """Mounting a tmpfs needs root; the test command runs as root (a loud failure otherwise)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and must run as root (as .ci/run does)")


# -- kill -9 ------------------------------------------------------------------------------
@pytest.mark.parametrize("handler", ["files", "redis"])
def test_killing_workers_under_load_loses_no_acknowledged_write(tmp_path: Path, handler: str) -> None:
    r = run_kill(tmp_path, handler=handler, kills=30, workers=6, clients=12, sessions=10, hold_ms=3, log=quiet)
    assert r["problems"] == []
    assert r["kills"] == 30
    assert r["acknowledged_writes"] > 100 and r["statuses"].get("502", 0) > 0  # some kills cut requests
    assert r.get("empty_files", 0) == 0 and r.get("undecodable", 0) == 0
    assert r["fpm_tracebacks"] == 0


# -- full disk -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def disk_full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_root()
    return run_disk_full(tmp_path_factory.mktemp("full"), load_seconds=1.5, log=quiet)


def test_full_disk_fails_requests_with_php_s_warning_and_recovers(disk_full: dict[str, Any]) -> None:
    single = disk_full["single_requests"]
    assert single["new session"]["status"] == 503
    assert "Failed to write session data (files)" in single["new session"]["text"]
    assert single["write within its page"] == "acknowledged"  # no new block needed
    assert single["write growing past its page"]["status"] == 503
    assert set(disk_full["load_statuses"]) <= {"200", "503"}  # never a crash, never a 502
    assert all(n is not None for n in disk_full["after_space_freed"].values())
    assert disk_full["problems"] == []
    # the new session whose first write failed stays as an empty file, as with PHP: it
    # was never acknowledged and reads as an empty session
    assert len(disk_full["empty_files"]) <= 1


def test_full_disk_leaves_the_old_session_when_a_write_cannot_grow_it(disk_full: dict[str, Any]) -> None:
    after = disk_full["single_requests"]["file after the failed growth"]
    assert after["still_the_old_session"], after
    assert disk_full["lost_acknowledged"] == []
    assert disk_full["sessions_failing_once_after_space_freed"] == 0


def test_full_disk_error_names_the_cause(disk_full: dict[str, Any]) -> None:
    text = disk_full["single_requests"]["write growing past its page"]["text"]
    assert "No space left on device" in text or "Write wrote less bytes than requested" in text, text


# -- read-only disk --------------------------------------------------------------------------
def test_read_only_save_path_fails_clearly_and_recovers(tmp_path: Path) -> None:
    need_root()
    r = run_read_only(tmp_path, log=quiet)
    assert r["problems"] == []
    for label in ("existing session", "new session", "chosen id", "read_and_close"):
        out = r["requests"][label]
        assert out["status"] == 503
        assert "failed: Read-only file system (30)" in out["text"], out
        assert "Failed to read session data: files" in out["text"]


# -- Redis killed and restarted ---------------------------------------------------------------
def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    r = run_redis_restart(tmp_path, restarts=1, down=1.0, up=2.5, log=quiet)
    assert r["problems"] == []
    assert r["failed_requests_while_down"][0] > 0
    assert any("Connection refused" in e for e in r["errors"]), r["errors"]
    assert r["seconds_to_first_success_after_restart"][0] < 1.0
    assert r["acknowledged_writes"] > 50


# -- load ----------------------------------------------------------------------------------
def test_ten_seconds_of_mixed_load(tmp_path: Path) -> None:
    r = run_load(tmp_path, seconds=10, workers=4, clients=8, idle=3, sample=1, window=3, log=quiet)
    assert r["problems"] == []
    assert r["errors"] == 0 and r["requests"] > 1000
    assert set(r["by_kind"]) == {"new", "returning", "view", "hot", "login"}
    assert r["fds_idle_end"] == r["fds_idle_start"]
    assert max(r["worker_rss_growth_mib"]) < 10
    assert abs(r["throughput_change"]) < 0.5  # a smoke check; the soak run holds 10 %


def test_paced_load_offers_its_rate_and_records_latency(tmp_path: Path) -> None:
    r = run_load(tmp_path, seconds=6, workers=2, clients=4, idle=3, sample=1, window=2, rate=150, log=quiet)
    assert r["problems"] == [] and r["errors"] == 0
    assert r["offered_rate_rps"] == 150
    # the clients keep to their schedule: never more than the rate over the run (the
    # report rounds its length to 0.1 s: up to 0.05 s more) plus the start-up spread of
    # one interval per client
    assert r["requests"] <= 150 * (r["seconds"] + 0.05) + 4
    assert all(s["latency_ms"]["p50"] is not None for s in r["samples"])
    assert r["latency_ms_last_window"]["p99"] is not None


def test_worker_memory_does_not_grow_with_distinct_cookies(tmp_path: Path) -> None:
    with fpm_stack(tmp_path, workers=1) as st:
        h = Http(st.port)
        pid = st.worker_pids()[0]
        for i in range(2000):  # warm-up: compiled script, buffers, caches
            h.get("/ping.py", cookie=f"PHPSESSID={i:032x}")
        before = rss(pid)
        n = 25000
        for i in range(2000, 2000 + n):
            h.get("/ping.py", cookie=f"PHPSESSID={i:032x}")
        per_request = (rss(pid) - before) / n
        h.close()
    assert per_request < 25, f"{per_request:.1f} bytes per request"
