"""memory_limit: a request stops at PHP's fatal error instead of decoding a huge session.

A 100 MB session of small keys once took 50 s and 4.3 GB for one request; php-cgi stops
at ``memory_limit`` (128M by default) in a fraction of a second with ``Allowed memory
size of N bytes exhausted (tried to allocate M bytes)``, a 500, and the stored session
untouched.  The boundary is checked against php-cgi itself: a session PHP loads under
32M loads here, one PHP refuses is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from phpsess.core import formats
from phpsess.core.config import SessionConfig
from phpsess.errors import ConfigError
from phpsess.runtime.sapi import handle_request, reset_environ
from phpsess.storage import flock
from tests.phptools import require

SID = "bigbigbigbigbigbigbigbigbig0"


@pytest.fixture(autouse=True)
def _restore_environ() -> Any:
    yield
    reset_environ()


def _session(path: Path, keys: int) -> bytes:
    data = b"".join(b"k%d|i:%d;" % (i, i) for i in range(keys))
    path.write_bytes(data)
    return data


def _php_cgi(script: Path, save: Path, memory_limit: str) -> tuple[int, bytes, bytes]:
    env = {"REDIRECT_STATUS": "200", "SCRIPT_FILENAME": str(script), "REQUEST_METHOD": "GET",
           "HTTP_COOKIE": f"PHPSESSID={SID}", "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run(
        [require("php-cgi"), "-n", "-d", f"memory_limit={memory_limit}", "-d", "display_errors=0",
         "-d", "log_errors=1", "-d", f"session.save_path={save}"],
        env=env, capture_output=True, timeout=60,
    )
    status = 500 if b"Status: 500" in proc.stdout.split(b"\r\n\r\n")[0] else 200
    return status, proc.stdout, proc.stderr


def _ours(script: Path, save: Path, memory_limit: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    cfg = SessionConfig({"save_path": str(save), "gc_probability": "0", "memory_limit": memory_limit})
    seen: list[int] = []
    body: list[bytes] = []
    env = {"SCRIPT_FILENAME": str(script), "REQUEST_METHOD": "GET", "HTTP_COOKIE": f"PHPSESSID={SID}"}
    capsys.readouterr()
    handle_request(env, b"", str(script.parent), lambda s, h: seen.append(s), body.append, config=cfg)
    return seen[0], b"".join(body).decode(), capsys.readouterr().err


@pytest.mark.parametrize(("keys", "php_loads"), [(200_000, True), (300_000, False)])
def test_memory_limit_stops_where_php_stops(
    tmp_path: Path, keys: int, php_loads: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "s"
    save.mkdir(mode=0o700)
    www = tmp_path / "www"
    www.mkdir()
    stored = _session(save / f"sess_{SID}", keys)
    digest = hashlib.sha256(stored).hexdigest()
    (www / "s.php").write_text('<?php\nsession_start(); $_SESSION["x"] = 1; echo count($_SESSION), "\\n";\n')
    (www / "s.py").write_text('import phpsess\nphpsess.session_start(); phpsess.SESSION["x"] = 1; print(len(phpsess.SESSION))\n')

    status, out, err = _php_cgi(www / "s.php", save, "32M")
    assert status == (200 if php_loads else 500), (out[-300:], err[-300:])
    if not php_loads:
        assert b"PHP Fatal error:  Allowed memory size of 33554432 bytes exhausted (tried to allocate " in err
        assert hashlib.sha256((save / f"sess_{SID}").read_bytes()).hexdigest() == digest  # untouched
    else:
        (save / f"sess_{SID}").write_bytes(stored)

    t0 = time.monotonic()
    status, body, err = _ours(www / "s.py", save, "32M", capsys)
    elapsed = time.monotonic() - t0
    if php_loads:
        assert status == 200 and body == f"{keys + 1}\n", err
        return
    assert status == 500
    assert body == ""
    # (the log line carries the time and the request around it, as every PHP error in a pool)
    assert "PHP Fatal error:  Allowed memory size of 33554432 bytes exhausted (tried to allocate " in err, err
    assert f" bytes) in {www / 's.py'} on line 2" in err, err
    assert hashlib.sha256((save / f"sess_{SID}").read_bytes()).hexdigest() == digest  # untouched
    assert elapsed < 2.0  # measured before decoding: a few ms here
    fd = os.open(save / f"sess_{SID}", os.O_RDWR)
    try:
        assert flock.try_lock(fd)  # the lock was released
    finally:
        os.close(fd)


def test_the_estimate_follows_php_memory_get_usage(tmp_path: Path) -> None:
    """decode_cost() is within 25 % of PHP's peak memory while it decodes the session."""
    from tests.phptools import run_php

    shapes = {
        "scalars": b"".join(b"k%d|i:%d;" % (i, i) for i in range(50_000)),
        "small arrays": b"".join(b'k%d|a:1:{i:0;s:3:"abc";}' % i for i in range(20_000)),
        "strings": b"".join(b'k%d|s:100:"%s";' % (i, b"x" * 100) for i in range(20_000)),
    }
    for name, payload in shapes.items():
        (tmp_path / f"sess_{SID}").write_bytes(payload)
        out = run_php(
            f'<?php $m = memory_get_usage(); session_id("{SID}"); session_start(); '
            'echo memory_get_peak_usage() - $m; session_abort();',
            {"session.save_path": str(tmp_path), "memory_limit": "-1"},
        )
        php = int(out.stdout)
        ours = formats.decode_cost(payload)
        assert 0.75 * php <= ours <= 1.25 * php + 200_000, (name, php, ours)


@pytest.mark.parametrize(("raw", "limit"), [("128M", 128 << 20), ("64m", 64 << 20), ("2G", 2 << 30),
                                            ("-1", 0), (" 8M", 8 << 20), ("0x1000000", 1 << 24)])
def test_memory_limit_takes_phps_quantities(raw: str, limit: int) -> None:
    cfg = SessionConfig({"memory_limit": raw})
    assert cfg.memory_limit == limit and cfg.get("memory_limit") == raw


def test_memory_limit_below_what_php_uses_is_refused_with_phps_warning() -> None:
    for raw, shown in (("0", 0), ("1k", 1024), ("abc", 0)):
        with pytest.raises(ConfigError) as e:
            SessionConfig({"memory_limit": raw})
        assert str(e.value) == f"Failed to set memory limit to {shown} bytes (Current memory usage is 2097152 bytes)"
    assert SessionConfig().memory_limit == 128 << 20
    assert SessionConfig.canonical("session.memory_limit") is None  # a core setting, no session. form
    assert SessionConfig().as_ini()["memory_limit"] == "128M"
