"""phpsess.runtime.metering: the steps a pool worker takes around each script (title,
scoreboard), as ``ps`` and the status page see them."""

from __future__ import annotations

import mmap
import textwrap
from pathlib import Path
from typing import Any

import pytest

from phpsess.core import telemetry
from phpsess.runtime import metering
from phpsess.runtime.sapi import reset_environ
from phpsess.runtime.scoreboard import Scoreboard, WorkerSlot, WorkerState


@pytest.fixture
def titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every title the process is given (setproctitle's calls, each a system call)."""
    seen: list[str] = []
    monkeypatch.setattr(metering, "_setproctitle", seen.append)
    monkeypatch.setattr(metering, "_title", [""])
    return seen


@pytest.fixture
def meter(tmp_path: Path) -> Any:
    board = Scoreboard(1)
    board.claim(0, 1, 0)
    slot = WorkerSlot(board, 0)
    root = tmp_path / "www"
    root.mkdir()
    for name in ("a.py", "b.py"):
        (root / name).write_text(textwrap.dedent("print('x')\n"))
    m = metering.ScriptMeter(slot, mmap.mmap(-1, telemetry.SLOT_SIZE), 0, "www", str(root), 0.0, 0)
    yield m, board, root
    reset_environ()


def _run(m: metering.ScriptMeter, root: Path, name: str) -> None:
    out: list[bytes] = []
    env = {"SCRIPT_FILENAME": str(root / name), "REQUEST_METHOD": "GET", "REQUEST_URI": f"/{name}"}
    m.run_script(env, b"", 0, lambda status, headers: None, out.append)
    assert b"".join(out) == b"x\n"


def test_set_title_skips_the_title_already_set(titles: list[str]) -> None:
    metering.set_title("phpsess: pool www")
    metering.set_title("phpsess: pool www")
    metering.set_title("phpsess: pool www /a.py")
    assert titles == ["phpsess: pool www", "phpsess: pool www /a.py"]


def test_a_busy_worker_keeps_its_script_title_until_it_waits(titles: list[str], meter: Any) -> None:
    """The title names the running script; a worker that goes from one request of a
    script to the next changes nothing (no system call per request), another script
    changes it, and the pool's title comes back when the worker waits for work."""
    m, board, root = meter
    m.idle()
    assert titles == []  # (the pool sets the idle title itself at start)
    for _ in range(3):
        _run(m, root, "a.py")
    assert titles == [f"phpsess: pool www {root}/a.py"]
    _run(m, root, "b.py")
    m.idle()
    m.idle()
    _run(m, root, "b.py")
    assert titles == [f"phpsess: pool www {root}/a.py", f"phpsess: pool www {root}/b.py",
                      "phpsess: pool www", f"phpsess: pool www {root}/b.py"]
    view = board.read(0)
    assert (view.script, view.uri, view.state) == (f"{root}/b.py", "/b.py", WorkerState.RUNNING)
