"""A ported page in the pool (``phpsess serve``, two workers; ``phpsess fpm`` runs the same
handle_request): included files run per request and are read again once edited, as
opcache's validate_timestamps; PHP's diagnostics and fatal errors go to the pool's log with
the time, the request and the session id; display_errors from the ini shows them in the
page. Runs a server.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.integration.nginx import http_get
from tests.integration.serve_process import ServeProcess

__all__: list[str] = []

PAGE = """import phpsess
phpsess.require_once("lib/auth.py")
phpsess.echo(VERSION, " ", phpsess.session_id() != "")
"""
AUTH = """import phpsess
phpsess.session_start()
VERSION = "v1"
"""
ERRORS = """import phpsess
phpsess.session_start()
phpsess.include("nowhere.py")
def f():
    raise ValueError("broken cart")
phpsess.echo("before|")
f()
"""


def _bump(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a visibly newer mtime


def test_included_files_run_per_request_and_are_reread_when_edited(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "lib").mkdir(parents=True)
    (root / "page.py").write_text(PAGE)
    (root / "lib" / "auth.py").write_text(AUTH)
    with ServeProcess(root, tmp_path, workers=2) as srv:
        for _ in range(6):  # every worker, several times: a session (and cookie) every time
            r = http_get(srv.port, "/page.py")
            assert (r.status, r.text) == (200, "v1 1")  # echo true prints 1, as PHP
            assert len(r.all("Set-Cookie")) == 1
        _bump(root / "lib" / "auth.py", AUTH.replace("v1", "v2"))
        _bump(root / "page.py", PAGE.replace('" "', '" + "'))
        for _ in range(4):
            assert http_get(srv.port, "/page.py").text == "v2 + 1"


def test_errors_are_logged_with_time_request_and_session(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "errors.py").write_text(ERRORS)
    with ServeProcess(root, tmp_path, workers=2) as srv:
        r = http_get(srv.port, "/errors.py?x=1")
        # Debian's php.ini: display_errors off, output buffered: a 500 with what was printed
        assert (r.status, r.text) == (500, "before|")
        sid = r.all("Set-Cookie")[0].split(";")[0].split("=")[1]
        deadline = time.monotonic() + 5
        while "Uncaught" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = srv.log()
    page = str(root.resolve() / "errors.py")
    stamp = r"\[\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d UTC\]"
    where = f'\\(request "GET /errors.py\\?x=1", session {sid}\\)'
    assert re.search(
        f"{stamp} PHP Warning:  include\\(nowhere.py\\): Failed to open stream: No such file or directory "
        f"in {re.escape(page)} on line 3 {where}", log), log
    assert re.search(
        f"{stamp} PHP Warning:  include\\(\\): Failed opening 'nowhere.py' for inclusion "
        f"\\(include_path='.:/usr/share/php'\\) in {re.escape(page)} on line 3 {where}", log), log
    assert re.search(
        f"{stamp} PHP Fatal error:  Uncaught ValueError: broken cart in {re.escape(page)}:5\nStack trace:\n"
        f"#0 {re.escape(page)}\\(7\\): f\\(\\)\n#1 {{main}}\n  thrown in {re.escape(page)} on line 5 {where}\n"
        "Traceback \\(most recent call last\\):", log), log


def test_display_errors_from_the_ini_shows_them_in_the_page(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "errors.py").write_text(ERRORS)
    ini = {"display_errors": "On", "html_errors": "Off", "log_errors": "Off"}
    with ServeProcess(root, tmp_path, workers=1, ini=ini) as srv:
        r = http_get(srv.port, "/errors.py")
    page = str(root.resolve() / "errors.py")
    assert r.status == 200  # display_errors on: PHP keeps the status
    assert r.text == (
        f"\nWarning: include(nowhere.py): Failed to open stream: No such file or directory in {page} on line 3\n"
        f"\nWarning: include(): Failed opening 'nowhere.py' for inclusion (include_path='.:/usr/share/php') "
        f"in {page} on line 3\n"
        f"before|\nFatal error: Uncaught ValueError: broken cart in {page}:5\nStack trace:\n#0 {page}(7): f()\n"
        f"#1 {{main}}\n  thrown in {page} on line 5\n")


def test_fpm_runs_includes_per_request_and_rereads_edits(tmp_path: Path) -> None:
    from tests.integration.nginx import fcgi_request, start_fpm

    root = tmp_path / "www"
    (root / "lib").mkdir(parents=True)
    (root / "page.py").write_text(PAGE)
    (root / "lib" / "auth.py").write_text(AUTH)
    (tmp_path / "s").mkdir(mode=0o700)
    ini = tmp_path / "phpsess.ini"
    ini.write_text(f"session.save_path = {tmp_path / 's'}\n")
    sock = str(tmp_path / "fpm.sock")
    params = {"SCRIPT_FILENAME": str(root / "page.py"), "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/page.py",
              "REQUEST_URI": "/page.py", "GATEWAY_INTERFACE": "CGI/1.1"}

    def get() -> tuple[str, int]:
        out, _ = fcgi_request(sock, params)
        head, _, body = out.partition(b"\r\n\r\n")
        return body.decode(), head.count(b"Set-Cookie: PHPSESSID=")

    with start_fpm(root, sock, workers=2, ini=str(ini)):
        assert [get() for _ in range(6)] == [("v1 1", 1)] * 6
        _bump(root / "lib" / "auth.py", AUTH.replace("v1", "v2"))
        assert [get() for _ in range(4)] == [("v2 1", 1)] * 4
