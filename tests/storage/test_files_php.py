"""The files handler against real PHP 8.2 on the same directory: the same lock (both
ways), the same bytes (both ways), the same save_path parsing and messages, and PHP
reading what a killed phpsess writer may leave.  Runs ``php -n`` (tests/phptools.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from phpsess.storage import flock as locking
from phpsess.core.config import SessionConfig
from phpsess.errors import LockBusy, SaveHandlerError
from phpsess.storage.files import FilesHandler, crash_safe_image

from tests.phptools import PHP_BASE_INI, require, run_php
from .conftest import SID

INI = {"session.use_cookies": "0", "session.cache_limiter": "", "session.use_strict_mode": "0"}


def make(save_path: str, **settings: Any) -> FilesHandler:
    h = FilesHandler(SessionConfig(settings))
    h.open(save_path, "PHPSESSID")
    return h


def php_args(code: str, ini: dict[str, str]) -> list[str]:
    args = [require("php"), "-n"]
    for k, v in {**PHP_BASE_INI, **INI, **ini}.items():
        args += ["-d", f"{k}={v}"]
    return args + ["-r", code]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """PHP processes a test starts; killed if still running at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def php_start(procs: list[subprocess.Popen[bytes]], code: str, save_path: str, **ini: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        php_args(code, {"session.save_path": save_path, **ini}), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    procs.append(p)
    return p


def php(code: str, save_path: str, **ini: str) -> str:
    r = run_php("<?php " + code, {**INI, "session.save_path": save_path, **ini})
    return (r.stdout + r.stderr).decode("utf-8", "replace")


# -- the lock, both ways -----------------------------------------------------------------------


def test_php_holding_the_session_blocks_our_read(tmp_path: Path, procs: list[Any]) -> None:
    p = php_start(
        procs,
        f'session_id("{SID}"); session_start(); echo "locked\\n"; usleep(400000);'
        '$_SESSION["by"] = "php"; session_write_close(); echo microtime(true), "\\n";',
        str(tmp_path),
    )
    assert p.stdout is not None
    assert p.stdout.readline() == b"locked\n"
    h = make(str(tmp_path))
    data = h.read(SID)
    got = time.time()
    h.close()
    released = float(p.stdout.readline())
    assert data == b'by|s:3:"php";'
    assert got > released - 0.05  # PHP reads its clock just after it released
    assert h.lock_info.waited > 0.25


def test_our_lock_blocks_php_session_start(tmp_path: Path, procs: list[Any]) -> None:
    h = make(str(tmp_path))
    h.read(SID)
    p = php_start(
        procs,
        f'$t = microtime(true); session_id("{SID}"); session_start();'
        'echo json_encode([$t, microtime(true), session_encode()]);',
        str(tmp_path),
    )
    time.sleep(0.4)
    h.write(SID, b'by|s:6:"python";')
    released = time.time()
    h.close()
    out, err = p.communicate(timeout=10)
    asked, got, encoded = json.loads(out)
    assert err == b""
    assert encoded == 'by|s:6:"python";'
    assert got - asked > 0.3  # PHP waited for us ...
    assert -0.001 <= got - released < 0.1  # ... and got the lock as soon as we closed


@pytest.mark.parametrize("timeout", [0.0, 2.0])
def test_lock_handoff_from_php_is_prompt(tmp_path: Path, procs: list[Any], timeout: float) -> None:
    p = php_start(
        procs,
        f'session_id("{SID}"); session_start(); echo "locked\\n"; usleep(200000);'
        'session_write_close(); echo sprintf("%.6f", microtime(true)), "\\n"; usleep(300000);',
        str(tmp_path),
    )
    assert p.stdout is not None
    assert p.stdout.readline() == b"locked\n"
    h = make(str(tmp_path), lock_timeout=timeout)
    h.read(SID)
    got = time.time()
    h.close()
    released = float(p.stdout.readline())
    assert got - released < 0.1  # PHP's close wakes us (bench: ~0.15 ms with PHP's abort)


def test_shared_lock_blocks_php_and_php_blocks_shared_readers(tmp_path: Path, procs: list[Any]) -> None:
    h = make(str(tmp_path))
    h.read(SID, shared=True)
    p = php_start(procs, f'session_id("{SID}"); session_start(); echo microtime(true);', str(tmp_path))
    time.sleep(0.3)
    released = time.time()
    h.close()
    out, _ = p.communicate(timeout=10)
    assert float(out) >= released

    p = php_start(procs, f'session_id("{SID}"); session_start(); echo "locked\\n"; usleep(300000);', str(tmp_path))
    assert p.stdout is not None and p.stdout.readline() == b"locked\n"
    h = make(str(tmp_path))
    h.read(SID, shared=True)
    assert h.lock_info.waited > 0.15
    h.close()


def test_lock_max_waiters_counts_php_waiters(tmp_path: Path, procs: list[Any]) -> None:
    holder = php_start(procs, f'session_id("{SID}"); session_start(); echo "locked\\n"; sleep(30);', str(tmp_path))
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    for _ in range(2):
        php_start(procs, f'session_id("{SID}"); session_start();', str(tmp_path))
    st = os.stat(tmp_path / f"sess_{SID}")
    deadline = time.monotonic() + 5
    while locking.count_waiters(st.st_dev, st.st_ino) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(LockBusy) as info:
        make(str(tmp_path), lock_max_waiters=2).read(SID)
    assert info.value.waiters == 2


def test_gc_spares_a_file_php_holds(tmp_path: Path, procs: list[Any]) -> None:
    p = php_start(procs, f'session_id("{SID}"); session_start(); echo "locked\\n"; sleep(30);', str(tmp_path))
    assert p.stdout is not None and p.stdout.readline() == b"locked\n"
    old = time.time() - 5000
    os.utime(tmp_path / f"sess_{SID}", (old, old))
    (tmp_path / "sess_idle").write_bytes(b"")
    os.utime(tmp_path / "sess_idle", (old, old))
    assert make(str(tmp_path)).gc(1440) == 1
    assert (tmp_path / f"sess_{SID}").exists() and not (tmp_path / "sess_idle").exists()


def test_destroy_while_php_waits_gives_php_an_empty_session(tmp_path: Path, procs: list[Any]) -> None:
    h = make(str(tmp_path))
    h.read(SID)
    h.write(SID, b'user|s:5:"alice";')
    p = php_start(procs, f'session_id("{SID}"); session_start(); echo json_encode($_SESSION);', str(tmp_path))
    time.sleep(0.3)
    h.destroy(SID)
    out, err = p.communicate(timeout=10)
    assert (out, err) == (b"[]", b"")  # not the destroyed {"user":"alice"}


# -- the bytes, both ways ------------------------------------------------------------------------

SETUPS = [
    '$_SESSION["n"] = 1;',
    '$_SESSION["user"] = "alice"; $_SESSION["cart"] = [1, 2.5, true, null, "é"];',
    '$o = new stdClass; $o->x = [1]; $_SESSION["o"] = $o; $_SESSION["o2"] = $o; $_SESSION["r"] = &$_SESSION["o"];',
    '$_SESSION["big"] = str_repeat("x", 10000); $_SESSION["f"] = 0.1;',
]
SERIALIZERS = ["php", "php_serialize", "php_binary"]


@pytest.mark.parametrize("handler", SERIALIZERS)
@pytest.mark.parametrize("setup", SETUPS)
def test_php_writes_and_we_read_the_same_bytes(tmp_path: Path, handler: str, setup: str) -> None:
    out = run_php(
        f'<?php session_id("{SID}"); session_start(); {setup} echo session_encode(); session_write_close();',
        {**INI, "session.save_path": str(tmp_path), "session.serialize_handler": handler},
    )
    assert out.stderr == b""
    on_disk = (tmp_path / f"sess_{SID}").read_bytes()
    assert on_disk == out.stdout
    h = make(str(tmp_path), serialize_handler=handler)
    assert h.read(SID) == on_disk
    h.close()


@pytest.mark.parametrize("handler", SERIALIZERS)
def test_we_write_and_php_reads_it(tmp_path: Path, handler: str) -> None:
    # payloads PHP produced, written by us over a longer and then a shorter old file
    payloads = []
    for setup in SETUPS:
        payloads.append(
            run_php(
                f"<?php session_start(); {setup} echo session_encode(); session_abort();",
                {**INI, "session.save_path": str(tmp_path), "session.serialize_handler": handler},
            ).stdout
        )
    h = make(str(tmp_path), serialize_handler=handler)
    for data in payloads + payloads[::-1]:
        h.read(SID)
        h.write(SID, data)
        h.close()
        out = run_php(
            f'<?php session_id("{SID}"); session_start(); echo session_encode();',
            {**INI, "session.save_path": str(tmp_path), "session.serialize_handler": handler},
        )
        assert (out.stdout, out.stderr) == (data, b"")


# -- what a killed writer leaves behind, as PHP reads it ------------------------------------------


def _php_view(tmp_path: Path, content: bytes, handler: str) -> Any:
    (tmp_path / f"sess_{SID}").write_bytes(content)
    out = php(
        f'session_id("{SID}"); $ok = session_start(); $k = array_key_first($_SESSION ?? []);'
        '$c = $_SESSION; if ($k !== null) { $c[$k] = "CHANGED"; }'
        'echo json_encode([$ok, base64_encode(session_encode()), base64_encode(serialize($_SESSION)),'
        '$k === null ? null : $_SESSION[$k] === "CHANGED"]); session_abort();',
        str(tmp_path),
        **{"session.serialize_handler": handler},
    )
    return json.loads(out)


@pytest.mark.parametrize("handler", SERIALIZERS)
@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("old_size", [0, 3000, 20000])
def test_php_decodes_the_interrupted_shrink_as_the_new_session(
    tmp_path: Path, handler: str, setup: str, old_size: int
) -> None:
    new = run_php(
        f"<?php session_start(); {setup} echo session_encode(); session_abort();",
        {**INI, "session.save_path": str(tmp_path), "session.serialize_handler": handler},
    ).stdout
    old = b"\xff" * max(old_size, len(new) + 1)  # any old bytes: the image covers them all
    image = crash_safe_image(new, len(old), handler)
    torn = image + old[len(image):]  # the file between our pwrite and our ftruncate
    expected = _php_view(tmp_path, new, handler)
    assert expected[0] is True
    assert _php_view(tmp_path, torn, handler) == expected


def test_php_s_own_order_loses_the_session_when_killed_between(tmp_path: Path) -> None:
    # why phpsess does not truncate first: PHP sees the empty file as an empty session
    assert _php_view(tmp_path, b"", "php") == [True, "", "YTowOnt9", None]


# -- save_path parsing and messages, compared with PHP -----------------------------------------


def _created(root: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(root)), stat.S_IMODE(p.stat().st_mode)) for p in root.rglob("sess_*")
    )


SPECS = [
    ("{d}", SID),
    ("0;0640;{d}", SID),
    ("0;0999;{d}", SID),
    ("1;{d}", SID),  # subdirectory "0" exists
    ("2;{d}", SID),  # "0/1" does not
    ("abc;{d}", SID),
    ("3;{d}", "ab"),
    ("-1;{d}", SID),
    ("99999999999999999999;{d}", SID),
    ("1;-5;{d}", SID),
    ("1;17777;{d}", SID),
    ("{d}", "bad$id"),
    ("{d}", "a" * 300),
    ("0;0644;{d}/semi;colon", SID),  # only the first two ';' split
]


@pytest.mark.parametrize(("spec", "sid"), SPECS)
def test_save_path_forms_behave_as_in_php(tmp_path: Path, spec: str, sid: str) -> None:
    php_dir = tmp_path / "php"
    our_dir = tmp_path / "ours"
    for d in (php_dir, our_dir):
        (d / "0").mkdir(parents=True)
        (d / "semi;colon").mkdir()
    old = os.umask(0o022)
    try:
        # ini_set, not -d: the command line's ini parser would cut the value at ';'
        r = run_php(
            f"<?php ini_set('session.save_path', '{spec.format(d=php_dir)}');"
            f"session_id('{sid}'); session_start(); session_write_close();",
            {**INI, "display_errors": "stderr"},
        )
        php_warnings = [
            line.removeprefix("Warning: ").removeprefix("session_start(): ").rsplit(" in Command line code", 1)[0]
            for line in r.stderr.decode().splitlines()
            if line.startswith("Warning: ")
        ]
        ours: list[str] = []
        h = FilesHandler()
        try:
            h.open(spec.format(d=our_dir), "PHPSESSID")
            h.read(sid)
            h.write(sid, b"")
            h.close()
        except (SaveHandlerError, ValueError) as exc:
            ours.append(str(exc))
    finally:
        os.umask(old)
    # PHP adds its own session.c warning after the handler's ("Failed to read session data...")
    assert ours == [w.replace(str(php_dir), str(our_dir)) for w in php_warnings[: len(ours)]]
    assert bool(ours) == bool(php_warnings)
    assert _created(our_dir) == _created(php_dir)


# -- measurements (printed with -s; asserted loosely) ---------------------------------------------


def test_php_waits_for_a_killed_holder_only_until_the_kernel_releases(tmp_path: Path, procs: list[Any]) -> None:
    # the flock dies with its process: a phpsess request killed mid-request frees PHP at once
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            h = make(str(tmp_path))
            h.read(SID)
            os.write(w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    p = php_start(procs, f'session_id("{SID}"); session_start(); echo microtime(true);', str(tmp_path))
    time.sleep(0.2)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    out, _ = p.communicate(timeout=10)
    assert 0 <= float(out) - killed < 0.1
