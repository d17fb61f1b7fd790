"""Tests of phpsess/tools/admin.py: ``phpsess show``, ``gc``, ``locks`` and ``destroy`` on real
files in tmp_path (locks held by this process or a child), a few through ``python -m phpsess``."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from phpsess.storage import flock as locking
from phpsess.storage.files import sweep
from phpsess.tools import admin as tools
from phpsess.core.codec import PHPEnum, PHPObject, loads
from phpsess.core.config import SessionConfig
from phpsess.storage.files import FilesHandler
from tests.phptools import run_php

__all__: list[str] = []

SID = "0123456789abcdef0123456789abcdef"
SID2 = "fedcba9876543210fedcba9876543210"
ROOT = Path(__file__).absolute().parents[1]


def cfg(save: Path | str, **ini: Any) -> SessionConfig:
    return SessionConfig({"save_path": str(save), **ini})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PHPSESS_INI", None)
    return subprocess.run([sys.executable, "-m", "phpsess", *args], capture_output=True, text=True,
                          timeout=30, env=env, cwd=str(ROOT))


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


# -- to_json -------------------------------------------------------------------------------------
def test_to_json_of_php_values() -> None:
    value = {
        "n": 1, "f": 1.5, "s": "héllo", "b": True, "null": None, 3: [1, 2],
        "bin": b"\xff\x00", "nan": float("nan"), "inf": float("-inf"),
        "o": PHPObject("User", {"name": "x", "\0User\0secret": 1, "\0*\0prot": 2}),
        "e": loads(b'E:11:"Suit:Hearts";'),
    }
    assert isinstance(value["e"], PHPEnum)
    assert tools.to_json(value) == {
        "n": 1, "f": 1.5, "s": "héllo", "b": True, "null": None, "3": [1, 2],
        "bin": {"__bytes_base64__": "/wA="}, "nan": "NAN", "inf": "-INF",
        "o": {"__class__": "User", "name": "x", "\\0User\\0secret": 1, "\\0*\\0prot": 2},
        "e": {"__enum__": "Suit::Hearts"},
    }


def test_to_json_of_non_utf8_keys_and_names() -> None:
    value = {b"\xff": 1, "o": PHPObject(b"N\xe9", {b"\0A\0p\xff": 2})}
    assert tools.to_json(value) == {"\\xff": 1, "o": {"__class__": "N\\xe9", "\\0A\\0p\\xff": 2}}
    json.dumps(tools.to_json(value))


# -- show ----------------------------------------------------------------------------------------
def test_show_prints_a_header_line_and_indented_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / f"sess_{SID}").write_bytes(b'n|i:1;s|s:3:"h\xc3\xa9";')
    assert tools.show(cfg(tmp_path), SID) == 0
    out = capsys.readouterr().out
    first, rest = out.split("\n", 1)
    assert first.startswith(f"# {tmp_path}/sess_{SID}  (18 bytes, php, modified ")
    assert json.loads(rest) == {"n": 1, "s": "hé"}
    assert '  "n": 1' in rest


def test_show_json_raw_and_by_file_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(b"a|a:1:{i:0;b:1;}")
    assert tools.show(cfg("/nonexistent"), str(f), json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"a": [True]}
    assert tools.show(cfg(tmp_path), SID, raw=True) == 0
    assert capsys.readouterr().out == "a|a:1:{i:0;b:1;}"


def test_show_with_directory_depth_and_other_serialize_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "0" / "1").mkdir(parents=True)
    (tmp_path / "0" / "1" / f"sess_{SID}").write_bytes(b'a:1:{s:1:"k";d:0.5;}')
    assert tools.show(cfg(f"2;{tmp_path}"), SID, json=True, serialize_handler="php_serialize") == 0
    assert json.loads(capsys.readouterr().out) == {"k": 0.5}
    assert tools.show(cfg(tmp_path, serialize_handler="php_serialize"), SID, save_path=f"2;0600;{tmp_path}",
                      json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"k": 0.5}


def test_show_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tools.show(cfg(tmp_path), SID) == 1
    assert "no session file" in capsys.readouterr().err
    assert tools.show(cfg(tmp_path), "bad id!") == 1
    assert "bad id!" in capsys.readouterr().err
    (tmp_path / f"sess_{SID}").write_bytes(b"garbage")
    assert tools.show(cfg(tmp_path), SID) == 2
    assert "does not decode as 'php'" in capsys.readouterr().err
    assert not (tmp_path / f"sess_{SID2}").exists()  # show never creates a file


def test_show_waits_briefly_for_a_locked_session_then_reads_it_anyway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "SHOW_LOCK_WAIT", 0.05)
    h = FilesHandler(cfg(tmp_path))
    h.open(str(tmp_path), "PHPSESSID")
    h.read(SID)
    h.write(SID, b"n|i:7;")
    try:
        assert tools.show(cfg(tmp_path), SID, json=True) == 0
    finally:
        h.close()
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"n": 7}
    assert "locked by a request; read without its lock" in captured.err


def test_show_strips_the_crash_padding_of_a_writer_killed_mid_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from phpsess.storage.files import crash_safe_image

    (tmp_path / f"sess_{SID}").write_bytes(crash_safe_image(b"a|i:1;", 40, "php"))
    assert tools.show(cfg(tmp_path), SID, raw=True) == 0
    assert capsys.readouterr().out == "a|i:1;"


def test_show_decodes_a_session_php_wrote(tmp_path: Path) -> None:
    out = run_php(
        '<?php enum Suit { case Hearts; } class User { public $name = "ana"; private $pw = "x"; }'
        'session_id("' + SID + '"); session_start(); $_SESSION["u"] = new User; $_SESSION["e"] = Suit::Hearts;'
        '$_SESSION["list"] = [1, 2.5, "three"];',
        {"session.save_path": str(tmp_path)},
    )
    assert out.returncode == 0 and out.stdout == b"", out
    res = cli("show", "--json", "--save-path", str(tmp_path), SID)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "u": {"__class__": "User", "name": "ana", "\\0User\\0pw": "x"},
        "e": {"__enum__": "Suit::Hearts"},
        "list": [1, 2.5, "three"],
    }


# Sessions PHP writes that once broke show: a cycle (RecursionError, exit 1), 3,000
# nested arrays (RecursionError), a DAG of 40 levels of shared objects (1.6 KB; 20 s
# and 650 MB expanding 2**40 paths).
HOSTILE_PHP = {
    "cycle": '$o = new stdClass; $o->self = $o; $_SESSION["o"] = $o; $a = ["x" => 1]; $a["me"] = &$a;'
             '$_SESSION["a"] = $a;',
    "deep": '$v = []; for ($i = 0; $i < 3000; $i++) { $v = [$v]; } $_SESSION["deep"] = $v;',
    "dag": '$o = new stdClass; for ($i = 0; $i < 40; $i++) { $n = new stdClass; $n->a = $o; $n->b = $o; $o = $n; }'
           '$_SESSION["dag"] = $o;',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PHP))
def test_show_prints_any_graph_php_stores_quickly(tmp_path: Path, case: str) -> None:
    out = run_php(f'<?php session_id("{SID}"); session_start(); {HOSTILE_PHP[case]}',
                  {"session.save_path": str(tmp_path)})
    assert out.returncode == 0 and out.stdout == b"", out
    size = (tmp_path / f"sess_{SID}").stat().st_size
    for args in (["--json"], []):
        t0 = time.monotonic()
        res = cli("show", *args, "--save-path", str(tmp_path), SID)
        assert res.returncode == 0, res.stderr[-2000:]
        assert time.monotonic() - t0 < 15
        assert len(res.stdout) < 20 * size + 1000  # output of the payload's size, not of its paths
    doc = json.loads(cli("show", "--json", "--save-path", str(tmp_path), SID).stdout) if case != "deep" else None
    if case == "cycle":
        assert doc == {  # o|O:8:"stdClass":1:{s:4:"self";r:1;}a|a:2:{...s:2:"me";a:2:{...s:2:"me";R:5;}}
            "o": {"__class__": "stdClass", "__id__": 1, "self": {"__same_as__": 1}},
            "a": {"x": 1, "me": {"__id__": 2, "__reference__": {"x": 1, "me": {"__same_as__": 2}}}},
        }
    if case == "dag":
        node = doc["dag"]
        for _ in range(39):
            assert node["b"] == {"__same_as__": node["a"]["__id__"]}
            node = node["a"]


def test_json_text_is_json_dumps_without_recursion() -> None:
    for value in ({"n": 1, "s": "hé", "l": [1, [], {}, [2.5, None, True]], "e": {}}, [], {}, "x", [[[]]]):
        for indent in (None, 2):
            assert tools.json_text(value, indent) == json.dumps(value, indent=indent, ensure_ascii=False)
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert tools.json_text(tools.to_json(deep)).startswith("[[[[")


def test_show_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / f"sess_{SID}")
    t0 = time.monotonic()
    res = cli("show", "--save-path", str(tmp_path), SID)
    assert res.returncode == 1 and "not a regular file" in res.stderr, res
    assert time.monotonic() - t0 < 15


# -- gc ------------------------------------------------------------------------------------------
def make_sessions(root: Path, depth: int, sids: list[str], old: float) -> list[Path]:
    paths = []
    for sid in sids:
        d = root.joinpath(*sid[:depth])
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"sess_{sid}"
        p.write_bytes(b"n|i:1;")
        age(p, old)
        paths.append(p)
    return paths


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_gc_deletes_expired_sessions_at_any_depth(
    tmp_path: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make_sessions(tmp_path, depth, [SID], 3600)
    fresh = make_sessions(tmp_path, depth, [SID2], 10)
    (tmp_path / "other_file").write_bytes(b"")
    age(tmp_path / "other_file", 3600)
    save = f"{depth};{tmp_path}" if depth else str(tmp_path)
    assert tools.gc(cfg(save), maxlifetime=60) == 0
    assert not old[0].exists() and fresh[0].exists() and (tmp_path / "other_file").exists()
    out = capsys.readouterr().out
    assert f"deleted {old[0]}" in out
    assert f"phpsess gc: deleted 1 session(s) idle > 60 s under {tmp_path}" in out


def test_gc_uses_gc_maxlifetime_by_default_and_dry_run_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [a, b] = make_sessions(tmp_path, 0, [SID, SID2], 0)
    age(a, 1500)  # > 1440, PHP's default gc_maxlifetime
    age(b, 1000)
    assert tools.gc(cfg(tmp_path), dry_run=True) == 0
    assert a.exists() and f"would delete {a}" in capsys.readouterr().out
    assert tools.gc(cfg(tmp_path)) == 0
    assert not a.exists() and b.exists()


def test_gc_never_deletes_a_locked_session(tmp_path: Path) -> None:
    [a, b] = make_sessions(tmp_path, 0, [SID, SID2], 3600)
    fd = os.open(a, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # even a shared (read_and_close) lock
    try:
        assert sweep([str(a), str(b)], 60) == [str(b)]
    finally:
        os.close(fd)
    assert a.exists()


def test_gc_keeps_a_session_written_between_its_look_and_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [a] = make_sessions(tmp_path, 0, [SID], 3600)
    real = locking.try_lock

    def write_then_lock(fd: int, *, shared: bool = False) -> bool:
        os.utime(a)  # a request wrote it after gc's stat()
        return real(fd, shared=shared)

    monkeypatch.setattr(locking, "try_lock", write_then_lock)
    assert sweep([str(a)], 60) == []
    assert a.exists()


def test_gc_keeps_a_file_that_replaced_the_one_it_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [a] = make_sessions(tmp_path, 0, [SID], 3600)
    real = locking.try_lock

    def replace_then_lock(fd: int, *, shared: bool = False) -> bool:
        os.unlink(a)
        a.write_bytes(b"new|i:1;")
        age(a, 3600)
        return real(fd, shared=shared)

    monkeypatch.setattr(locking, "try_lock", replace_then_lock)
    assert sweep([str(a)], 60) == []
    assert a.read_bytes() == b"new|i:1;"


def test_gc_keeps_a_session_a_request_is_waiting_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [a] = make_sessions(tmp_path, 0, [SID], 3600)
    real = locking.try_lock
    code = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)"
    waiter: list[subprocess.Popen[bytes]] = []

    def lock_then_get_a_waiter(fd: int, *, shared: bool = False) -> bool:
        ok = real(fd, shared=shared)
        st = os.fstat(fd)
        waiter.append(subprocess.Popen([sys.executable, "-c", code, str(a)]))
        deadline = time.monotonic() + 10
        while locking.count_waiters(st.st_dev, st.st_ino) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return ok

    monkeypatch.setattr(locking, "try_lock", lock_then_get_a_waiter)
    try:
        assert sweep([str(a)], 60) == []
    finally:
        for p in waiter:
            p.wait(10)  # it got the lock once gc let go
    assert a.exists() and waiter[0].returncode == 0


def test_gc_leaves_symlinks_and_their_targets_alone(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"x")
    age(target, 3600)
    link = tmp_path / f"sess_{SID}"
    link.symlink_to(target)
    os.utime(link, (0, 0), follow_symlinks=False)
    assert sweep([str(link)], 60) == []
    assert link.is_symlink() and target.read_bytes() == b"x"


def test_gc_errors_and_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tools.gc(cfg(tmp_path / "missing"), maxlifetime=1) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert tools.gc(cfg("tcp://127.0.0.1:1", save_handler="redis"), maxlifetime=1) == 0
    assert "expire by their TTL" in capsys.readouterr().out


def test_gc_command_line(tmp_path: Path) -> None:
    [a] = make_sessions(tmp_path, 1, [SID], 120)
    res = cli("gc", "--save-path", f"1;{tmp_path}", "--maxlifetime", "100")
    assert res.returncode == 0, res.stderr
    assert not a.exists()
    assert "deleted 1 session(s)" in res.stdout


# -- locks ---------------------------------------------------------------------------------------
def test_locks_text_and_json_for_a_lock_this_process_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tools.locks(cfg(tmp_path)) == 0
    assert capsys.readouterr().out == f"no locked sessions under {tmp_path}\n"
    h = FilesHandler(cfg(tmp_path))
    h.open(str(tmp_path), "PHPSESSID")
    h.read(SID)
    try:
        assert tools.locks(cfg("/elsewhere"), save_path=str(tmp_path), json=True) == 0
        [entry] = json.loads(capsys.readouterr().out)
        assert entry["id"] == SID and entry["pid"] == os.getpid() and entry["waiters"] == 0
        assert entry["path"] == f"{tmp_path}/sess_{SID}"
        assert entry["held_seconds"] is None or entry["held_seconds"] >= 0
        assert tools.locks(cfg(tmp_path)) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["ID", "PID", "MODE", "HELD", "REQUEST", "RUNNING", "WAITERS", "COMMAND",
                                         "(a", "pool", "worker:", "its", "request)"]
        assert lines[1].split()[:3] == [SID, str(os.getpid()), "WRITE"]
    finally:
        h.close()


# -- destroy ---------------------------------------------------------------------------------------
def test_destroy_deletes_existing_sessions_and_reports_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / f"sess_{SID}").write_bytes(b"n|i:1;")
    assert tools.destroy(cfg(tmp_path), [SID, SID2, "bad id!"]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"destroyed {SID}\n"
    assert f"{SID2}: no such session" in captured.err and "bad id!: no such session" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_destroy_waits_for_the_request_holding_the_session(tmp_path: Path) -> None:
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(b"n|i:1;")
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX);"
        "print('locked', flush=True); time.sleep(0.4); os.pwrite(fd, b'n|i:2;', 0)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(f)], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"locked\n"
    t0 = time.monotonic()
    assert tools.destroy(cfg(tmp_path), [SID]) == 0
    assert time.monotonic() - t0 > 0.25
    child.communicate(timeout=10)
    assert not f.exists()


def test_destroy_with_lock_timeout_gives_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(b"n|i:1;")
    fd = os.open(f, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert tools.destroy(cfg(tmp_path, lock_timeout=0.05), [SID]) == 1
    finally:
        os.close(fd)
    assert "not acquired within session.lock_timeout" in capsys.readouterr().err
    assert f.exists()


def test_destroy_command_line_with_depth(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / f"sess_{SID}").write_bytes(b"n|i:1;")
    res = cli("destroy", "--save-path", f"1;{tmp_path}", SID)
    assert res.returncode == 0 and res.stdout == f"destroyed {SID}\n", res.stderr
    assert not (tmp_path / "0" / f"sess_{SID}").exists()
