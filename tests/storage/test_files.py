"""The files handler's own behaviour: PHP's save_path syntax, layout, modes, id and
symlink refusal, gc by mtime that spares locked files, crash-safe writes (killing
writers), bounded lock waits and lock_max_waiters.  Comparisons with real PHP are in
test_files_php.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from phpsess.storage import flock as locking
from phpsess.core.config import SessionConfig
from phpsess.errors import InvalidSessionId, LockBusy, LockTimeout, SaveHandlerError
from phpsess.storage.files import (
    FilesHandler,
    SavePath,
    crash_safe_image,
    strip_crash_padding,
    default_temp_dir,
    parse_save_path,
    session_file_path,
)

from .conftest import SID, SID2, Channel, Ctx

HUGE = (1 << 64) - 1  # a negative N, as PHP's size_t sees it


def make(save_path: str, **settings: Any) -> FilesHandler:
    h = FilesHandler(SessionConfig(settings))
    h.open(save_path, "PHPSESSID")
    return h


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test; restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


# -- save_path syntax (PS_OPEN_FUNC(files)) -------------------------------------------------


@pytest.mark.parametrize(
    ("save_path", "expected"),
    [
        ("/p", SavePath(0, 0o600, "/p")),
        ("2;/p", SavePath(2, 0o600, "/p")),
        ("2;0644;/p", SavePath(2, 0o644, "/p")),
        ("0;666;/p", SavePath(0, 0o666, "/p")),
        ("1;2;3;4", SavePath(1, 0o2, "3;4")),  # only two splits: the path keeps its ';'
        ("abc;/p", SavePath(0, 0o600, "/p")),  # strtol garbage -> 0
        (" 3x;/p", SavePath(3, 0o600, "/p")),
        ("+2;/p", SavePath(2, 0o600, "/p")),
        ("-1;/p", SavePath(HUGE, 0o600, "/p")),  # size_t wrap: every id is "too short"
        ("0;0999;/p", SavePath(0, 0, "/p")),  # octal stops at 9
        ("0;0x1ff;/p", SavePath(0, 0, "/p")),
        ("0;7777;/p", SavePath(0, 0o7777, "/p")),
        ("0;-0;/p", SavePath(0, 0, "/p")),
        (";/p", SavePath(0, 0o600, "/p")),
        ("1;", SavePath(1, 0o600, "")),
        ("/tmp/a b", SavePath(0, 0o600, "/tmp/a b")),
    ],
)
def test_save_path_is_parsed_as_php_does(save_path: str, expected: SavePath) -> None:
    assert parse_save_path(save_path) == expected


@pytest.mark.parametrize(
    ("save_path", "message"),
    [
        ("99999999999999999999;/p", "The first parameter in session.save_path is invalid"),
        ("-99999999999999999999;/p", "The first parameter in session.save_path is invalid"),
        ("1;-1;/p", "The second parameter in session.save_path is invalid"),
        ("1;10000;/p", "The second parameter in session.save_path is invalid"),
        ("1;7777777777777777777777;/p", "The second parameter in session.save_path is invalid"),
    ],
)
def test_invalid_save_path_parameters_fail_open_with_php_text(save_path: str, message: str) -> None:
    with pytest.raises(SaveHandlerError, match=f"^{message}$") as info:
        FilesHandler().open(save_path, "PHPSESSID")
    assert info.value.operation == "open"


def test_empty_save_path_is_tmpdir_or_tmp() -> None:
    assert default_temp_dir({}) == "/tmp"
    assert default_temp_dir({"TMPDIR": ""}) == "/tmp"
    assert default_temp_dir({"TMPDIR": "/var/x/"}) == "/var/x"
    assert default_temp_dir({"TMPDIR": "/var/x"}) == "/var/x"
    assert parse_save_path("", {"TMPDIR": "/srv/t/"}) == SavePath(0, 0o600, "/srv/t")


def test_open_does_not_touch_the_file_system(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    h = make(f"2;0644;{missing}")
    assert not missing.exists()
    with pytest.raises(SaveHandlerError, match=r"^open\(.*/nope/0/1/sess_0123.*, O_RDWR\) failed: "
                       r"No such file or directory \(2\)$"):
        h.read(SID)
    assert not missing.exists()


# -- layout and modes ------------------------------------------------------------------------


def test_depth_layout_uses_the_first_characters_of_the_id(tmp_path: Path) -> None:
    (tmp_path / "0" / "1").mkdir(parents=True)
    h = make(f"2;{tmp_path}")
    h.write(SID, b"a|i:1;")
    h.close()
    assert (tmp_path / "0" / "1" / f"sess_{SID}").read_bytes() == b"a|i:1;"
    assert session_file_path(SavePath(3, 0o600, "/b"), "abcd") == "/b/a/b/c/sess_abcd"
    assert session_file_path(SavePath(0, 0o600, "/b/"), "abcd") == "/b//sess_abcd"


def test_gc_with_depth_does_nothing_and_returns_minus_one(tmp_path: Path) -> None:
    assert make(f"1;{tmp_path}").gc(0) == -1


@pytest.mark.parametrize(
    ("save_path", "sid"),
    [("3;/b", "abc"), ("-1;/b", SID), ("1;", SID), ("/" + "d" * 4060, "a" * 26)],
    ids=["id-not-longer-than-depth", "negative-depth", "empty-basedir", "path-over-4096"],
)
def test_unbuildable_paths_fail_with_php_text(save_path: str, sid: str) -> None:
    h = make(save_path)
    with pytest.raises(SaveHandlerError, match="^Failed to create session data file path. Too short session "
                       "ID, invalid save_path or path length exceeds 4096 characters$"):
        h.read(sid)


def test_path_limit_is_exactly_php_s() -> None:
    base = "/" + "d" * (4096 - 11 - 32 - 1)  # base + "/" + "sess_" + id + NUL fits
    assert session_file_path(SavePath(0, 0o600, base), SID).endswith(SID)
    with pytest.raises(SaveHandlerError):
        session_file_path(SavePath(0, 0o600, base + "d"), SID)


@pytest.mark.parametrize(
    ("spec", "mask", "mode"),
    [("", 0o022, 0o600), ("0;0666;", 0o022, 0o644), ("0;0666;", 0o000, 0o666), ("0;0999;", 0o022, 0o000),
     ("0;0640;", 0o077, 0o600)],
)
def test_new_files_get_the_save_path_mode_under_the_umask(
    tmp_path: Path, umask: Any, spec: str, mask: int, mode: int
) -> None:
    umask(mask)
    h = make(f"{spec}{tmp_path}")
    h.read(SID)
    h.close()
    assert stat.S_IMODE(os.stat(tmp_path / f"sess_{SID}").st_mode) == mode


def test_existing_file_mode_is_left_alone(tmp_path: Path) -> None:
    p = tmp_path / f"sess_{SID}"
    p.write_bytes(b"a|i:1;")
    p.chmod(0o640)
    h = make(f"0;0600;{tmp_path}")
    assert h.read(SID) == b"a|i:1;"
    h.write(SID, b"b|i:2;")
    h.close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o640


# -- ids and symlinks never escape save_path ------------------------------------------------

# "a\0b" is not here: PHP cuts an id at its NUL (mod_files.c uses the C string), see below
BAD_IDS = ["../x", "..", "a/b", "/etc/passwd", "\0b", "a b", "a.b", "", "x" * 257, "é", "a\nb"]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("sid", BAD_IDS, ids=repr)
def test_invalid_ids_are_refused_before_touching_the_disk(tmp_path: Path, sid: str) -> None:
    save = tmp_path / "s"
    save.mkdir()
    (tmp_path / "x").mkdir()
    before = _tree(tmp_path)
    h = make(str(save))
    for op in (lambda: h.read(sid), lambda: h.write(sid, b"a|i:1;"), lambda: h.destroy(sid),
               lambda: h.update_timestamp(sid, b"a|i:1;")):
        with pytest.raises(InvalidSessionId, match="^Session ID is too long or contains illegal characters. "
                           'Only the A-Z, a-z, 0-9, "-", and "," characters are allowed$'):
            op()
    assert h.validate_id(sid) is False
    assert _tree(tmp_path) == before


def test_long_ids_are_valid_but_the_file_name_limit_applies_as_in_php(tmp_path: Path) -> None:
    h = make(str(tmp_path))
    sid = "a-," * 83 + "z"  # 250 characters: sess_ + id is NAME_MAX (255)
    h.write(sid, b"a|i:1;")
    h.close()
    assert (tmp_path / f"sess_{sid}").exists()
    with pytest.raises(SaveHandlerError, match=r"File name too long \(36\)$"):
        h.read(sid + "a")


@pytest.mark.parametrize("target_exists", [False, True])
def test_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path, target_exists: bool) -> None:
    save = tmp_path / "s"
    save.mkdir()
    target = tmp_path / "victim"
    if target_exists:
        target.write_bytes(b"precious")
    (save / f"sess_{SID}").symlink_to(target)
    h = make(str(save))
    with pytest.raises(SaveHandlerError, match=r"^open\(.*sess_0123.*, O_RDWR\) failed: "
                       r"Too many levels of symbolic links \(40\)$") as info:
        h.read(SID)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(SaveHandlerError):
        h.write(SID, b"evil|i:1;")
    assert target.exists() == target_exists
    if target_exists:
        assert target.read_bytes() == b"precious"


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory any uid can use (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="phpsess-uid-", dir="/tmp"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_file_of_another_uid_is_refused_unless_we_are_root(world_dir: Path) -> None:
    shared = world_dir
    for name, uid in (("foreign", 4321), ("rootfile", 0)):
        p = shared / f"sess_{name}"
        p.write_bytes(b"a|i:1;")
        p.chmod(0o666)
        os.chown(p, uid, uid)
    # as root (the test process) everything is accepted, as PHP does
    h = make(str(shared))
    assert h.read("foreign") == b"a|i:1;"
    h.close()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        out = []
        try:
            os.setgid(65534)
            os.setuid(65534)
            for name in ("foreign", "rootfile"):
                try:
                    out.append(repr(make(str(shared)).read(name)))
                except SaveHandlerError as exc:
                    out.append(str(exc))
        finally:
            os.write(w, "\n".join(out).encode())
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        lines = fh.read().decode().split("\n")
    assert lines == ["Session data file is not created by your uid", "b'a|i:1;'"]


# -- read and write -----------------------------------------------------------------------


def test_new_session_file_is_created_empty_by_read(tmp_path: Path) -> None:
    h = make(str(tmp_path))
    assert h.read(SID) == b""
    assert (tmp_path / f"sess_{SID}").read_bytes() == b""
    h.close()


def test_writes_keep_the_inode_php_locks(tmp_path: Path) -> None:
    h = make(str(tmp_path))
    h.read(SID)
    ino = os.stat(tmp_path / f"sess_{SID}").st_ino
    for data in (b"a|i:1;" * 50, b"a|i:2;", b"", b"b|i:3;" * 700, b"c|i:4;"):
        h.write(SID, data)
        assert os.stat(tmp_path / f"sess_{SID}").st_ino == ino
        assert (tmp_path / f"sess_{SID}").read_bytes() == data
    h.close()


def test_write_under_a_shared_lock_is_refused(tmp_path: Path) -> None:
    h = make(str(tmp_path))
    h.read(SID, shared=True)
    assert h.lock_info.shared
    with pytest.raises(SaveHandlerError, match="read-only"):
        h.write(SID, b"a|i:1;")
    h.close()


def test_shared_readers_share_and_exclude_writers(files_ctx: Ctx) -> None:
    a = files_ctx.make()
    a.read(SID, shared=True)
    b = files_ctx.make(lock_timeout=0.1)
    assert b.read(SID, shared=True) == b""  # no wait
    b.close()
    c = files_ctx.make(lock_timeout=0.1)
    with pytest.raises(LockTimeout):
        c.read(SID)
    a.close()
    c.read(SID)
    c.close()


def test_update_timestamp_touches_without_rewriting(tmp_path: Path) -> None:
    h = make(str(tmp_path))
    h.write(SID, b"a|i:1;")
    h.close()
    p = tmp_path / f"sess_{SID}"
    os.utime(p, (1000, 1000))
    ino = p.stat().st_ino
    h = make(str(tmp_path))
    h.read(SID)
    h.update_timestamp(SID, b"IGNORED")
    h.close()
    st = p.stat()
    assert st.st_ino == ino and p.read_bytes() == b"a|i:1;"
    assert abs(st.st_mtime - time.time()) < 5 and abs(st.st_atime - time.time()) < 5


def test_read_reports_a_short_file_as_php(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make(str(tmp_path))
    h.write(SID, b"a|i:1;")
    h.close()
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real_pread(fd, min(n, 2), off) if off == 0 else b"")
    with pytest.raises(SaveHandlerError, match="^Read returned less bytes than requested$"):
        make(str(tmp_path)).read(SID)


def test_write_errors_carry_php_text_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make(str(tmp_path))
    h.read(SID)

    def enospc(*a: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", enospc)
    with pytest.raises(SaveHandlerError, match=r"^Write failed: No space left on device \(28\)$") as info:
        h.write(SID, b"a|i:1;")
    assert info.value.handler == "files" and info.value.operation == "write"
    assert isinstance(info.value.__cause__, OSError)
    h.close()


# -- destroy --------------------------------------------------------------------------------


def test_destroy_with_a_waiting_request_gives_it_a_fresh_file(files_ctx: Ctx, tmp_path: Path) -> None:
    h = files_ctx.make()
    h.read(SID)
    h.write(SID, b"secret|s:3:\"yes\";")

    def waiter(chan: Channel) -> Any:
        w = files_ctx.make()
        chan.send(("started",))
        data = w.read(SID)
        w.write(SID, b"after|i:1;")
        w.close()
        return data

    peer = files_ctx.peer(waiter)
    peer.recv()
    time.sleep(0.1)
    h.destroy(SID)
    assert peer.result() == b""  # not the destroyed data
    assert (tmp_path / f"sess_{SID}").read_bytes() == b"after|i:1;"  # its write was not lost


def test_destroy_of_another_id_releases_the_open_one(files_ctx: Ctx) -> None:
    h = files_ctx.make()
    h.read(SID)
    h.destroy(SID2)
    other = files_ctx.make(lock_timeout=0.1)
    other.read(SID)  # not locked any more
    other.close()


# -- gc ---------------------------------------------------------------------------------------


def _session(tmp_path: Path, sid: str, age: float, now: float, data: bytes = b"a|i:1;") -> Path:
    p = tmp_path / f"sess_{sid}"
    p.write_bytes(data)
    os.utime(p, (now - age, now - age))
    return p


def test_gc_deletes_by_mtime_strictly_older_than_the_lifetime(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    old = _session(tmp_path, "old", 1441, now)
    edge = _session(tmp_path, "edge", 1440, now)
    fresh = _session(tmp_path, "fresh", 10, now)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    os.utime(other, (0, 0))
    prefix_only = tmp_path / "sess_"
    prefix_only.write_text("")
    os.utime(prefix_only, (0, 0))
    assert make(str(tmp_path)).gc(1440, now=now) == 2
    assert not old.exists() and not prefix_only.exists()
    assert edge.exists() and fresh.exists() and other.exists()


def test_gc_never_deletes_a_locked_file(files_ctx: Ctx, tmp_path: Path) -> None:
    now = time.time()
    def hold(chan: Channel) -> Any:
        h = files_ctx.make()
        h.read("busy")
        chan.send(("locked",))
        chan.recv(30)
        h.close()
        return "done"

    _session(tmp_path, "busy", 5000, now)
    peer = files_ctx.peer(hold)
    assert peer.recv() == ("locked",)
    os.utime(tmp_path / "sess_busy", (now - 5000, now - 5000))
    _session(tmp_path, "idle", 5000, now)
    mine = files_ctx.make()
    mine.read("mine")  # this request's own session, locked by us
    os.utime(tmp_path / "sess_mine", (now - 5000, now - 5000))
    assert mine.gc(1440) == 1
    assert (tmp_path / "sess_busy").exists() and (tmp_path / "sess_mine").exists()
    assert not (tmp_path / "sess_idle").exists()
    peer.send("stop")
    assert peer.result() == "done"
    mine.close()
    assert files_ctx.make().gc(1440) == 2


def test_gc_rechecks_mtime_under_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    p = _session(tmp_path, "racy", 5000, now)
    real_try_lock = locking.try_lock

    def refreshed_meanwhile(fd: int, *, shared: bool = False) -> bool:
        os.utime(p)  # another request wrote it between our stat and our lock
        return real_try_lock(fd, shared=shared)

    monkeypatch.setattr(locking, "try_lock", refreshed_meanwhile)
    assert make(str(tmp_path)).gc(1440) == 0
    assert p.exists()


def test_gc_of_a_missing_directory_fails_with_php_text(tmp_path: Path) -> None:
    with pytest.raises(SaveHandlerError, match=r"^ps_files_cleanup_dir: opendir\(.*/gone\) failed: "
                       r"No such file or directory \(2\)$"):
        make(str(tmp_path / "gone")).gc(1440)


def test_gc_unlinks_stale_symlinks_as_php(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_text("x")
    os.utime(target, (0, 0))
    link = tmp_path / "sess_link"
    link.symlink_to(target)
    assert make(str(tmp_path)).gc(1440) == 1
    assert not os.path.lexists(link) and target.exists()


# -- crash safety: kill writers at random instants --------------------------------------------

KILLS = int(os.environ.get("PHPSESS_KILLS", "200"))

SEQUENCES = {
    "php": [b'a|i:1;', b'a|i:1;big|s:900:"' + b"x" * 900 + b'";', b'a|i:2;', b"",
            b'a|i:3;list|a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}', b'z|b:1;', b'a|i:1;big|s:3000:"' + b"y" * 3000 + b'";'],
    "php_serialize": [b'a:1:{s:1:"a";i:1;}', b'a:2:{s:1:"a";i:1;s:3:"big";s:900:"' + b"x" * 900 + b'";}',
                      b'a:0:{}', b'a:1:{s:1:"z";b:1;}'],
    "php_binary": [b'\x01ai:1;', b'\x01ai:1;\x03bigs:900:"' + b"x" * 900 + b'";', b'\x01zb:1;', b""],
}


def _allowed_states(seq: list[bytes], handler: str) -> dict[bytes, bytes]:
    """Every file content a kill may leave -> the session it decodes to."""
    out = {p: p for p in seq}
    for new in seq:
        for old in seq:  # the first write of a child follows whatever was there
            if len(new) < len(old) and new:
                image = crash_safe_image(new, len(old), handler)  # pwritten, not yet truncated
                out[image + old[len(image):]] = new
    return out


def _writer(path: str, sid: str, seq: list[bytes], handler: str, php_order: bool, ready: int) -> None:
    h = make(path, serialize_handler=handler)
    i = random.randrange(len(seq))
    os.write(ready, b"r")
    while True:
        data = seq[i % len(seq)]
        if php_order:  # what PHP 8.2.36 does: ftruncate(0), then pwrite
            fd = os.open(h.path(sid), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.pread(fd, 1 << 16, 0)
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.close(fd)
        else:
            h.read(sid)
            h.write(sid, data)
            h.close()
        i += 1


def _kill_writers(
    tmp_path: Path, handler: str, kills: int, php_order: bool = False, seq: list[bytes] | None = None
) -> dict[str, int]:
    seq = SEQUENCES[handler] if seq is None else seq
    allowed = _allowed_states(seq, handler)
    path = str(tmp_path)
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(seq[0])
    outcome = {"old-or-new": 0, "padded": 0, "bad": 0}
    rng = random.Random(1234)
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child, killed by the parent
            try:
                os.close(r)
                _writer(path, SID, seq, handler, php_order, w)
            finally:
                os._exit(1)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        time.sleep(rng.random() * 0.002)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        data = f.read_bytes()
        if data not in allowed:
            outcome["bad"] += 1
        elif data in seq:
            outcome["old-or-new"] += 1
        else:
            outcome["padded"] += 1
    return outcome


@pytest.mark.parametrize("handler", sorted(SEQUENCES))
def test_killed_writers_always_leave_old_or_new_session(tmp_path: Path, handler: str) -> None:
    outcome = _kill_writers(tmp_path, handler, KILLS)
    print(handler, outcome)
    assert outcome["bad"] == 0, outcome


def test_the_kill_test_does_catch_php_s_truncate_then_write(tmp_path: Path) -> None:
    # control: the same harness finds empty files left by PHP's order of operations
    seq = [p for p in SEQUENCES["php"] if p]
    outcome = _kill_writers(tmp_path, "php", KILLS, php_order=True, seq=seq)
    print("php order", outcome)
    assert outcome["bad"] > 0, outcome


def test_every_state_a_kill_leaves_reads_back_as_old_or_new() -> None:
    encoding = pytest.importorskip("phpsess.core.formats")
    for handler, seq in SEQUENCES.items():
        for image, new in _allowed_states(seq, handler).items():
            if new:
                # what our read() returns decodes as the new data ...
                stripped = strip_crash_padding(image, handler)
                assert encoding.decode(stripped, handler) == encoding.decode(new, handler)
                # ... and the raw image, as PHP decodes it, re-encodes to the new bytes
                assert encoding.encode(encoding.decode(image, handler), handler) == new


@pytest.mark.parametrize(
    ("new", "old_size", "handler", "image"),
    [
        (b"a|i:1;", 30, "php", b"a|i:1;a|R:0000000000000000001;"),
        (b"a|i:1;", 6, "php", b"a|i:1;a|R:01;"),
        (b"key|N;b|i:1;", 0, "php", b"key|N;b|i:1;key|R:01;"),
        (b"\x01ai:1;", 20, "php_binary", b"\x01ai:1;\x01aR:000000001;"),
        (b'a:1:{s:1:"a";i:1;}', 99, "php_serialize", b'a:1:{s:1:"a";i:1;}'),
        (b"garbage", 99, "php", b"garbage"),
        (b"\x09a", 99, "php_binary", b"\x09a"),
    ],
)
def test_crash_safe_image(new: bytes, old_size: int, handler: str, image: bytes) -> None:
    assert crash_safe_image(new, old_size, handler) == image
    assert image.startswith(new)
    if image != new:
        assert len(image) >= old_size
    assert strip_crash_padding(image, handler) == new


@pytest.mark.parametrize(
    ("data", "handler"),
    [
        (b"a|i:1;b|R:1;", "php"),  # PHP's own reference: no zero
        (b"a|i:1;;a|R:01;", "php"),  # not PHP output either (R:01): taken as padding
        (b"a|i:1;xa|R:01;", "php"),  # a key ending in "a"
        (b'a|s:6:"a|R:01";', "php"),
        (b"a|R:01;", "php"),
        (b"\x01ai:1;\x01bR:01;", "php_binary"),
        (b'a:1:{s:1:"a";i:1;}a|R:01;', "php_serialize"),
    ],
)
def test_strip_crash_padding_leaves_real_data_alone(data: bytes, handler: str) -> None:
    expected = data[: -len(b"a|R:01;")] if data == b"a|i:1;;a|R:01;" else data
    assert strip_crash_padding(data, handler) == expected


def test_reading_a_padded_file_returns_and_restores_the_new_data(tmp_path: Path) -> None:
    p = tmp_path / f"sess_{SID}"
    p.write_bytes(crash_safe_image(b"a|i:1;", 40, "php"))
    assert make(str(tmp_path)).read(SID) == b"a|i:1;"
    assert p.read_bytes() == b"a|i:1;"


# -- bounded waits and lock_max_waiters --------------------------------------------------------


def _holder(files_ctx: Ctx, sid: str = SID) -> Any:
    def hold(chan: Channel) -> Any:
        h = files_ctx.make()
        h.read(sid)
        chan.send(("locked",))
        chan.recv(60)
        h.close()
        return "released"

    return hold


def _waiter(files_ctx: Ctx, sid: str = SID) -> Any:
    def wait(chan: Channel) -> Any:
        h = files_ctx.make()
        chan.send(("waiting",))
        h.read(sid)
        h.close()
        return "got it"

    return wait


def _wait_for_waiters(st: os.stat_result, n: int) -> None:
    deadline = time.monotonic() + 5
    while locking.count_waiters(st.st_dev, st.st_ino) != n:
        assert time.monotonic() < deadline, "waiters did not show up in /proc/locks"
        time.sleep(0.005)


def test_lock_max_waiters_fails_fast_when_the_queue_is_full(files_ctx: Ctx, tmp_path: Path) -> None:
    holder = files_ctx.peer(_holder(files_ctx))
    assert holder.recv() == ("locked",)
    waiters = [files_ctx.peer(_waiter(files_ctx)) for _ in range(2)]
    for w in waiters:
        assert w.recv() == ("waiting",)
    st = os.stat(tmp_path / f"sess_{SID}")
    _wait_for_waiters(st, 2)

    h = files_ctx.make(lock_max_waiters=2)
    t0 = time.monotonic()
    with pytest.raises(LockBusy) as info:
        h.read(SID)
    assert time.monotonic() - t0 < 0.5  # refused, not queued
    assert info.value.waiters == 2 and info.value.sid == SID
    assert "2 requests already wait" in str(info.value)

    # a waiter that dies leaves the queue with it
    os.kill(waiters[0].pid, signal.SIGKILL)
    _wait_for_waiters(st, 1)
    h = files_ctx.make(lock_max_waiters=2, lock_timeout=0.1)
    with pytest.raises(LockTimeout):  # queued (and timed out), not refused
        h.read(SID)

    holder.send("stop")
    assert holder.result() == "released"
    assert waiters[1].result() == "got it"


def test_count_waiters_parses_proc_locks() -> None:
    dev = os.makedev(0xFE, 0)
    text = (
        "1: FLOCK  ADVISORY  WRITE 21030 fe:00:2147449 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 21072 fe:00:2147449 0 EOF\n"
        "1:  -> FLOCK  ADVISORY  READ 21074 fe:00:2147449 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 21075 fe:00:999 0 EOF\n"
        "3: -> POSIX  ADVISORY  WRITE 21076 fe:00:2147449 0 EOF\n"
        "4: FLOCK  ADVISORY  WRITE 21077 fe:01:2147449 0 EOF\n"
    )
    assert locking.count_blocked(text, dev, 2147449) == 2
    assert locking.count_blocked("", dev, 1) == 0


def _hold_in_peer(files_ctx: Ctx) -> Any:
    holder = files_ctx.peer(_holder(files_ctx))
    assert holder.recv() == ("locked",)
    return holder


def test_timeout_in_the_main_thread_restores_sigalrm(files_ctx: Ctx) -> None:
    holder = _hold_in_peer(files_ctx)
    calls: list[int] = []

    def app_handler(signum: int, frame: Any) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGALRM, app_handler)
    try:
        h = files_ctx.make(lock_timeout=0.1)
        with pytest.raises(LockTimeout):
            h.read(SID)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGALRM) is app_handler
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        time.sleep(0.05)
        assert calls == [signal.SIGALRM]  # the application's handler is back
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    holder.send("stop")
    holder.result()


def test_timeout_leaves_a_running_application_timer_alone(files_ctx: Ctx) -> None:
    holder = _hold_in_peer(files_ctx)
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        h = files_ctx.make(lock_timeout=0.1)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout):
            h.read(SID)
        assert 0.09 < time.monotonic() - t0 < 0.5
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 29 < left <= 30
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    holder.send("stop")
    holder.result()


def test_timeout_in_a_thread_polls_and_hands_over_quickly(files_ctx: Ctx) -> None:
    holder = _hold_in_peer(files_ctx)
    box: dict[str, Any] = {}

    def in_thread() -> None:
        h = files_ctx.make(lock_timeout=0.15)
        t0 = time.monotonic()
        try:
            h.read(SID)
        except LockTimeout as exc:
            box["timeout"] = (time.monotonic() - t0, exc.waited)
        h2 = files_ctx.make(lock_timeout=10)
        box["second"] = h2.read(SID)
        box["got"] = time.monotonic()
        h2.close()

    t = threading.Thread(target=in_thread)
    t.start()
    time.sleep(0.4)
    holder.send("stop")
    released = time.monotonic()
    holder.result()
    t.join(10)
    elapsed, waited = box["timeout"]
    assert 0.14 < elapsed < 0.6 and 0.14 < waited < 0.6
    assert box["got"] - released < 0.1  # polling sleeps are at most 5 ms (plus scheduling)


@pytest.mark.parametrize("timeout", [0.0, 5.0], ids=["no-timeout", "with-timeout"])
def test_main_thread_waits_in_a_blocking_flock_and_gets_the_lock_at_once(files_ctx: Ctx, timeout: float) -> None:
    def hold_and_release(chan: Channel) -> Any:
        h = files_ctx.make()
        while chan.recv(30) == "lock":
            h.read(SID)
            chan.send(("locked",))
            time.sleep(0.03)  # the test is blocked in read() by now
            released = time.monotonic()
            h.close()
            chan.send(("released", released))
        return "done"

    peer = files_ctx.peer(hold_and_release)
    h = files_ctx.make(lock_timeout=timeout)
    delays = []
    for _ in range(5):
        peer.send("lock")
        assert peer.recv() == ("locked",)
        h.read(SID)
        got = time.monotonic()
        h.close()
        kind, released = peer.recv()
        delays.append(got - released)
        assert 0.01 < h.lock_info.waited < 1
    peer.send("stop")
    assert peer.result() == "done"
    delays.sort()
    assert 0 <= delays[2] < 0.01, delays  # median handoff: no sleeping poll loop in between


def test_long_waits_are_logged(files_ctx: Ctx, caplog: pytest.LogCaptureFixture) -> None:
    holder = _hold_in_peer(files_ctx)
    threading.Timer(0.15, lambda: holder.send("stop")).start()
    h = files_ctx.make(lock_wait_log_ms=100)
    with caplog.at_level("WARNING", logger="phpsess.lock"):
        h.read(SID)
    h.close()
    holder.result()
    assert any(SID in r.getMessage() and r.name == "phpsess.lock" for r in caplog.records)


def test_timeout_in_the_main_thread_works_while_other_threads_run(files_ctx: Ctx) -> None:
    holder = _hold_in_peer(files_ctx)
    stop = threading.Event()
    def spin() -> None:
        while not stop.is_set():
            time.sleep(0.0001)

    busy = [threading.Thread(target=spin), threading.Thread(target=stop.wait)]
    for t in busy:
        t.start()
    try:
        h = files_ctx.make(lock_timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout):
            h.read(SID)
        assert time.monotonic() - t0 < 1.0  # SIGALRM reached the thread blocked in flock
    finally:
        stop.set()
        for t in busy:
            t.join()
    holder.send("stop")
    holder.result()


def test_an_id_is_cut_at_its_first_nul_as_php_does(tmp_path: Path) -> None:
    from phpsess.storage.files import parse_save_path, session_file_path

    assert session_file_path(parse_save_path(str(tmp_path)), "abc\0../x") == str(tmp_path / "sess_abc")


def test_only_one_process_sweeps_a_directory_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fasteners' inter-process lock, in the user's private runtime directory: while
    another process sweeps the save_path, gc returns 0 at once and deletes nothing."""
    monkeypatch.setenv("PHPSESS_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    save = tmp_path / "save"
    save.mkdir()
    old = save / f"sess_{SID}"
    old.write_bytes(b"a|i:1;")
    os.utime(old, (time.time() - 5000, time.time() - 5000))
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from phpsess.storage.files import sweep_lock\n"
         "with sweep_lock(sys.argv[1]) as mine:\n"
         "    print(mine, flush=True); sys.stdin.readline()", str(save)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"True\n"
        h = FilesHandler(SessionConfig())
        h.open(str(save), "PHPSESSID")
        assert h.gc(1440) == 0 and old.exists()
    finally:
        holder.communicate(b"\n", timeout=10)
    assert h.gc(1440) == 1 and not old.exists()
    # the sweeper deleted its lock file: none piles up per save_path ever swept
    assert not [p.name for p in (tmp_path / "run" / f"phpsess-{os.geteuid()}").iterdir() if p.name.startswith("gc-")]
