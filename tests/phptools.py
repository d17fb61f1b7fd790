"""Helpers for tests that run real PHP 8.2, nginx, redis-server. Runs subprocesses.

A missing binary is a loud failure (pytest.fail), never a silent skip: the
test command (.ci/run) installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Mapping

import pytest

__all__ = ["require", "run_php", "PHP_BASE_INI"]

#: settings every oracle run passes to PHP with -n (no php.ini), so both sides agree
PHP_BASE_INI: dict[str, str] = {
    "session.save_path": "",
    "session.gc_probability": "0",
    "serialize_precision": "-1",
    "display_errors": "1",
    "error_reporting": "-1",
    "html_errors": "0",
    "log_errors": "0",
}


def require(binary: str) -> str:
    """Return the path of ``binary`` or fail the test loudly."""
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if path is None:
        for d in ("/usr/sbin", "/usr/bin", "/sbin"):
            if os.path.exists(os.path.join(d, binary)):
                path = os.path.join(d, binary)
                break
    if path is None:
        pytest.fail(f"{binary} is required for this test and is not installed (run .ci/run to install it)")
    return path


def run_php(
    code: str,
    ini: Mapping[str, str] | None = None,
    *,
    binary: str = "php",
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` (a full PHP script, starting with ``<?php``) with ``php -n`` and the given ini."""
    exe = require(binary)
    args = [exe, "-n"]
    settings = dict(PHP_BASE_INI)
    settings.update(ini or {})
    for k, v in settings.items():
        args += ["-d", f"{k}={v}"]
    args += ["-r", code.removeprefix("<?php")] if binary == "php" else []
    return subprocess.run(
        args, input=stdin, capture_output=True, timeout=timeout, env=dict(env) if env else None, cwd=cwd
    )
