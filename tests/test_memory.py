"""A worker's memory after hostile workloads stays within a few MiB of idle.

Clients choose what goes into sessions: before the per-process caches were bounded in
bytes, 2,400 POSTs into fresh sessions left each pool worker at 517 MiB, 200 logins
with a 1 MB user name added 206 MiB, and ``$_SESSION['old_input'] = $_POST`` with
2 MB field names added 434 MiB in 100 requests.  tests/memworker.py serves such
requests in a process of its own, as a pool worker does, and reports its resident size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: what a worker may keep over idle after each workload (its caches: a few MiB)
BOUND_MIB = 8


def test_worker_memory_after_hostile_sessions_stays_near_idle(tmp_path: Path) -> None:
    save, root = tmp_path / "sessions", tmp_path / "root"
    save.mkdir(mode=0o700)
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.memworker", str(save), str(root), str(REPO / "cgi-bin")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    idle = figures.pop("idle")
    for workload, rss in figures.items():
        assert rss - idle <= BOUND_MIB, f"{workload}: {idle:.1f} -> {rss:.1f} MiB ({figures})"
