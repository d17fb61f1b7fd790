"""The /proc/locks parser (storage/flock.py), the inspector (tools/inspect.py) and the lock registry
(storage/registry.py: held_seconds).  Real flocks on files in tmp_path, held by this process or a child."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from phpsess.core.config import SessionConfig
from phpsess.storage import registry as locks
from phpsess.storage.files import FilesHandler
from phpsess.storage.flock import LockEntry, parse_proc_locks
from phpsess.tools.inspect import inspect_locks

__all__: list[str] = []

SID = "0123456789abcdef0123456789abcdef"
SID2 = "fedcba9876543210fedcba9876543210"

PROC_LOCKS = """\
1: FLOCK  ADVISORY  WRITE 8025 fe:00:2171646 0 EOF
1: -> FLOCK  ADVISORY  WRITE 8036 fe:00:2171646 0 EOF
1:  -> FLOCK  ADVISORY  READ 8035 fe:00:2171646 0 EOF
2: POSIX  ADVISORY  WRITE 312 08:11:131 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:05:7 0 0
4: FLOCK  ADVISORY  READ  900 103:0a:55 0 EOF
5: LEASE  ACTIVE    READ 77 00:2d:12 0 EOF
garbage
6: FLOCK  ADVISORY  WRITE x fe:00:1 0 EOF
"""


def test_parse_proc_locks_reads_holders_waiters_and_waiters_of_waiters() -> None:
    assert parse_proc_locks(PROC_LOCKS) == [
        LockEntry("FLOCK", "WRITE", 8025, (0xFE, 0), 2171646, False),
        LockEntry("FLOCK", "WRITE", 8036, (0xFE, 0), 2171646, True),
        LockEntry("FLOCK", "READ", 8035, (0xFE, 0), 2171646, True),
        LockEntry("POSIX", "WRITE", 312, (8, 0x11), 131, False),
        LockEntry("OFDLCK", "READ", -1, (0, 5), 7, False),
        LockEntry("FLOCK", "READ", 900, (0x103, 0x0A), 55, False),
        LockEntry("LEASE", "READ", 77, (0, 0x2D), 12, False),
    ]


def test_parse_proc_locks_of_the_real_table_does_not_fail() -> None:
    with open("/proc/locks", encoding="ascii", errors="replace") as fh:
        parse_proc_locks(fh.read())


def fake_table(tmp_path: Path, path: Path, lines: list[str]) -> str:
    """A /proc/locks text naming ``path``'s device and inode."""
    st = os.stat(path)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    table = tmp_path / "proc_locks"
    table.write_text("".join(line.format(where=where) + "\n" for line in lines))
    return str(table)


def test_inspect_locks_matches_files_by_device_and_inode_and_counts_waiters(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    f = tmp_path / "a" / f"sess_{SID}"
    f.write_bytes(b"")
    (tmp_path / f"sess_{SID2}").write_bytes(b"")  # not locked
    (tmp_path / "not_a_session").write_bytes(b"")
    table = fake_table(tmp_path, f, [
        "1: FLOCK  ADVISORY  WRITE {pid} {{where}} 0 EOF".format(pid=os.getpid()),
        "1: -> FLOCK  ADVISORY  WRITE 999999 {where} 0 EOF",
        "1:  -> FLOCK  ADVISORY  READ 999998 {where} 0 EOF",
        "2: POSIX  ADVISORY  WRITE 1 {where} 0 EOF",  # another lock kind: ignored
    ])
    [lock] = inspect_locks(f"1;{tmp_path}", proc_locks=table, registry="off")
    assert (lock.id, lock.path, lock.pid, lock.mode) == (SID, str(f), os.getpid(), "WRITE")
    assert lock.waiters == 2 and lock.waiter_pids == [999999, 999998]
    assert str(Path(sys.executable).name) in lock.cmdline or "python" in lock.cmdline
    assert lock.process_seconds is not None and lock.process_seconds >= 0
    assert lock.held_seconds is None  # this process recorded nothing for that inode
    assert set(lock.as_json()) >= {"id", "path", "pid", "cmdline", "held_seconds", "waiters"}


def test_inspect_locks_lists_every_holder_of_a_shared_lock_and_sorts_by_waiters(tmp_path: Path) -> None:
    a, b = tmp_path / f"sess_{SID}", tmp_path / f"sess_{SID2}"
    a.write_bytes(b"")
    b.write_bytes(b"")
    st_a, st_b = os.stat(a), os.stat(b)
    wa = f"{os.major(st_a.st_dev):02x}:{os.minor(st_a.st_dev):02x}:{st_a.st_ino}"
    wb = f"{os.major(st_b.st_dev):02x}:{os.minor(st_b.st_dev):02x}:{st_b.st_ino}"
    table = tmp_path / "proc_locks"
    table.write_text(
        f"1: FLOCK  ADVISORY  READ 1 {wa} 0 EOF\n2: FLOCK  ADVISORY  READ 999997 {wa} 0 EOF\n"
        f"3: FLOCK  ADVISORY  WRITE 1 {wb} 0 EOF\n3: -> FLOCK  ADVISORY  WRITE 999996 {wb} 0 EOF\n"
    )
    found = inspect_locks(str(tmp_path), proc_locks=str(table), registry="off")
    assert [lock.id for lock in found] == [SID2, SID]
    assert [h.pid for h in found[1].holders] == [1, 999997]
    assert found[1].holders[1].cmdline == "" and found[1].holders[1].process_seconds is None  # gone


def test_inspect_locks_without_any_lock_is_empty(tmp_path: Path) -> None:
    table = tmp_path / "proc_locks"
    table.write_text("")
    (tmp_path / f"sess_{SID}").write_bytes(b"")
    assert inspect_locks(str(tmp_path), proc_locks=str(table)) == []


def test_inspect_locks_sees_a_real_flock_of_a_child_process(tmp_path: Path) -> None:
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(b"x|i:1;")
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX);"
        "print('locked', flush=True); sys.stdin.readline()"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(f)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        [lock] = inspect_locks(str(tmp_path))
        assert lock.pid == child.pid and lock.mode == "WRITE" and lock.waiters == 0
        assert "import fcntl" in lock.cmdline
    finally:
        child.communicate(b"\n", timeout=10)
    assert inspect_locks(str(tmp_path)) == []


# -- the registry ------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private registry directory for this process."""
    d = tmp_path / "registry"
    d.mkdir()
    monkeypatch.setenv("PHPSESS_LOCK_REGISTRY", str(d))
    monkeypatch.setattr(locks, "_registry", locks._Registry())
    yield d


def test_registry_records_and_forgets_locks(registry: Path) -> None:
    assert locks.read_registry(os.getpid()) is None
    s1 = locks.note_acquired(11, 22, when=1000.0)
    s2 = locks.note_acquired(33, 44, shared=True, when=2000.0)
    assert (registry / f"phpsess-locks.{os.getpid()}").exists()
    assert locks.read_registry(os.getpid()) == [
        locks.RegistryRecord(11, 22, False, 1000.0),
        locks.RegistryRecord(33, 44, True, 2000.0),
    ]
    locks.note_released(s1)
    assert locks.read_registry(os.getpid()) == [locks.RegistryRecord(33, 44, True, 2000.0)]
    locks.note_released(s2)
    assert locks.read_registry(os.getpid()) == []


def test_registry_off_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHPSESS_LOCK_REGISTRY", "off")
    monkeypatch.setattr(locks, "_registry", locks._Registry())
    assert locks.note_acquired(1, 2) == -1
    locks.note_released(-1)
    assert locks.registry_dir() is None and locks.read_registry(os.getpid()) is None


def test_registry_of_an_earlier_process_with_the_same_pid_is_not_believed(registry: Path) -> None:
    locks.note_acquired(1, 2)
    path = registry / f"phpsess-locks.{os.getpid()}"
    data = bytearray(path.read_bytes())
    data[16:24] = (12345).to_bytes(8, "little")  # another start time
    path.write_bytes(bytes(data))
    assert locks.read_registry(os.getpid()) is None


def test_registry_of_a_forked_child_is_its_own(registry: Path) -> None:
    locks.note_acquired(1, 2, when=5.0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            locks.note_acquired(3, 4, when=6.0)
            os.write(w, b"x")
            time.sleep(5)
        finally:
            os._exit(0)
    try:
        assert os.read(r, 1) == b"x"
        assert locks.read_registry(pid) == [locks.RegistryRecord(3, 4, False, 6.0)]
        assert locks.read_registry(os.getpid()) == [locks.RegistryRecord(1, 2, False, 5.0)]
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    # the child died through a signal: its registry is left behind, and swept
    assert (registry / f"phpsess-locks.{pid}").exists()
    assert locks.clean_registry() == 1
    assert not (registry / f"phpsess-locks.{pid}").exists()
    assert (registry / f"phpsess-locks.{os.getpid()}").exists()



def test_a_pool_worker_prepares_its_registry_without_sweeping(registry: Path) -> None:
    """A pool worker's registry costs no scan of the directory (its master deletes each
    worker's registry as it reaps it): every new worker would pay for a crowded directory
    in private memory.  A process on its own still sweeps."""
    stale = registry / "phpsess-locks.999999999"  # no such pid: left by an ended process
    stale.write_bytes(b"\0" * 4096)
    assert locks.prepare(sweep=False)
    assert (registry / f"phpsess-locks.{os.getpid()}").exists()
    assert stale.exists()
    locks._registry = locks._Registry()  # a new process (the fixture restores the original)
    assert locks.prepare()
    assert not stale.exists()


def test_the_sweep_streams_a_crowded_directory(registry: Path) -> None:
    """Thousands of unrelated entries (the gc lock files of many save paths) are walked
    one at a time, and only stale registries go."""
    for i in range(3000):
        (registry / f"gc-{i:024x}.lock").touch()
    (registry / "phpsess-locks.999999999").write_bytes(b"\0" * 4096)
    assert locks.clean_registry() == 1
    assert len(list(registry.iterdir())) == 3000
def test_files_handler_records_its_lock_and_the_inspector_reports_held_seconds(registry: Path, tmp_path: Path) -> None:
    save = tmp_path / "s"
    save.mkdir()
    h = FilesHandler(SessionConfig({"save_path": str(save)}))
    h.open(str(save), "PHPSESSID")
    t0 = time.time()
    h.read(SID)
    try:
        time.sleep(0.2)
        [lock] = inspect_locks(str(save), registry=str(registry))
        assert lock.pid == os.getpid()
        assert lock.held_seconds is not None and 0.2 <= lock.held_seconds <= time.time() - t0 + 0.01
        st = os.stat(save / f"sess_{SID}")
        [record] = locks.read_registry(os.getpid()) or [None]
        assert record is not None
        assert (record.dev, record.inode, record.shared) == (st.st_dev, st.st_ino, False)
        assert record.acquired == pytest.approx(t0, abs=0.05)
    finally:
        h.close()
    assert locks.read_registry(os.getpid()) == []
    h.read(SID, shared=True)
    try:
        [lock] = inspect_locks(str(save), registry=str(registry))
        assert lock.mode == "READ" and lock.held_seconds is not None and lock.held_seconds < 0.1
    finally:
        h.close()


def test_held_seconds_is_unknown_for_a_lock_taken_without_the_registry(registry: Path, tmp_path: Path) -> None:
    f = tmp_path / f"sess_{SID}"
    f.write_bytes(b"")
    locks.note_acquired(1, 2)  # this process has a registry, but not for that file
    fd = os.open(f, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        [lock] = inspect_locks(str(tmp_path), registry=str(registry))
        assert lock.pid == os.getpid() and lock.held_seconds is None
    finally:
        os.close(fd)


# -- nothing a local user plants blocks, crashes or misleads the registry (issue 15, item 1) ---
NOBODY = 65534


@pytest.fixture
def runtime_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A base directory standing for /dev/shm, shared with "other users"."""
    base = tmp_path / "shm"
    base.mkdir()
    base.chmod(0o1777)
    monkeypatch.delenv("PHPSESS_LOCK_REGISTRY", raising=False)
    monkeypatch.setenv("PHPSESS_RUNTIME_DIR", str(base))
    monkeypatch.setattr(locks, "_registry", locks._Registry())
    return base


def _plant(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to("/etc/passwd")
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)
    elif kind == "foreign":
        path.write_bytes(b"PHPSESL1" + b"\0" * 4088)
        os.chown(path, NOBODY, NOBODY)
    elif kind == "device":
        os.symlink("/dev/zero", path)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "huge", "foreign", "device"])
def test_planted_registry_files_never_block_or_mislead(runtime_base: Path, tmp_path: Path, kind: str) -> None:
    """The registries live in a directory of this user's; whatever is planted there (or in
    the shared base, where phpsess 0.1 kept them) is skipped without blocking."""
    mine = Path(locks.registry_dir() or "")
    assert mine.parent == runtime_base and mine.stat().st_mode & 0o777 == 0o711
    for where in (runtime_base, mine):
        _plant(where / "phpsess-locks.424242", kind)
        _plant(where / f"phpsess-locks.{os.getppid()}", kind)
    script = (
        "import sys, time; from phpsess.core.config import SessionConfig; "
        "from phpsess.storage.files import FilesHandler; from phpsess.storage import registry; "
        "from phpsess.tools.inspect import inspect_locks; "
        "h = FilesHandler(SessionConfig()); h.open(sys.argv[1], 'PHPSESSID'); "
        "h.read('abcdef0123456789'); inspect_locks(sys.argv[1]); registry.clean_registry(); "
        "print(registry.read_registry(424242), registry.read_registry(%d)); h.close()" % os.getppid()
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    save = tmp_path / "save"
    save.mkdir()
    proc = subprocess.run([sys.executable, "-c", script, str(save)], capture_output=True, timeout=20, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"None None\n"


def test_a_planted_runtime_directory_is_refused_and_sessions_still_work(
    runtime_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another user made /dev/shm/phpsess-<our uid> first: no registry, a warning, no failure."""
    planted = runtime_base / f"phpsess-{os.geteuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, NOBODY, NOBODY)
    with caplog.at_level("WARNING", logger="phpsess.storage.rundir"):
        assert locks.registry_dir() is None
    assert "refused" in caplog.text
    h = FilesHandler(SessionConfig())
    h.open(str(tmp_path), "PHPSESSID")
    h.read("abcdef0123456789")
    h.write("abcdef0123456789", b"a|i:1;")
    h.close()
    assert list(planted.iterdir()) == []
    planted.rmdir()
    planted.symlink_to(tmp_path)  # a link to a directory of ours is refused too
    assert locks.registry_dir() is None


def test_inspector_without_psutil_still_lists_holders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil is the ``tools`` extra: without it the holder is still named, by pid."""
    import sys as _sys

    from phpsess.tools import inspect as inspector

    monkeypatch.setitem(_sys.modules, "psutil", None)
    path = tmp_path / "sess_abc"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        [lock] = inspector.inspect_locks(str(tmp_path), registry="off")
    finally:
        os.close(fd)
    assert lock.pid == os.getpid() and lock.cmdline == inspector.NO_PSUTIL and lock.process_seconds is None
