"""flup6's WSGIServer serving a WSGI app wrapped in SessionMiddleware over FastCGI, behind a
real nginx, with PHP reading the session it wrote (examples/wsgi_fastcgi.py). Starts nginx
and the flup server (stopped by the test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.nginx import REPO, Nginx, _pythonpath_env, stop_process, wait_for_socket
from tests.phptools import run_php

pytestmark = pytest.mark.slow


def test_flup_serves_a_session_middleware_app_that_php_reads(tmp_path: Path) -> None:
    save = tmp_path / "sessions"
    save.mkdir()
    sock = str(tmp_path / "app.sock")
    log = open(tmp_path / "flup.log", "wb")
    server = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "wsgi_fastcgi.py"), sock, str(save)],
        env=_pythonpath_env(), stderr=log,
    )
    try:
        wait_for_socket(sock)
        body = f"location / {{ include {tmp_path}/nginx/fastcgi_params; fastcgi_pass unix:{sock}; }}"
        with Nginx(tmp_path / "nginx", body) as ng:
            first = ng.get("/")
            assert first.status == 200 and first.body == b"n = 1\n", first
            cookie = first.header("Set-Cookie").split(";")[0]
            for n in (2, 3):
                assert ng.get("/", cookie=cookie).body == f"n = {n}\n".encode()
    finally:
        stop_process(server)
        log.close()
    sid = cookie.split("=", 1)[1]
    assert (save / f"sess_{sid}").read_bytes() == b"n|i:3;"
    php = run_php(f'<?php session_id("{sid}"); session_start(); echo $_SESSION["n"];',
                  {"session.save_path": str(save)})
    assert php.stdout == b"3", php.stderr
