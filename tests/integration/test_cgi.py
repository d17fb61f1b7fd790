"""A script under a CGI host (phpsess.runtime.cgi): real nginx + Debian's fcgiwrap, and php-cgi as the
oracle for the bytes of the CGI response. Starts nginx and fcgiwrap (stopped by the fixture)."""

from __future__ import annotations

import concurrent.futures
import fcntl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.nginx import PYTHONPATH, Nginx, Response, start_fcgiwrap
from tests.phptools import require

pytestmark = pytest.mark.slow

PY = sys.executable
SID = "cgitestsession0123456789abcdefg"

# each script as a Python page and the PHP page it stands for
SCRIPTS: dict[str, tuple[str, str]] = {
    "counter": (
        """
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
        phpsess.header("X-A: 1")
        print(f"n = {phpsess.SESSION['n']}")
        """,
        """<?php session_start(); $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
        header("X-A: 1"); echo "n = {$_SESSION['n']}\\n";""",
    ),
    "sent": (
        """
        import phpsess
        phpsess.header("X-Before: yes")
        print(phpsess.headers_sent())
        print(phpsess.headers_sent())
        """,
        """<?php header("X-Before: yes"); echo headers_sent() ? "True\\n" : "False\\n";
        echo headers_sent() ? "True\\n" : "False\\n";""",
    ),
    "boom": (
        """
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["boom"] = phpsess.SESSION.get("boom", 0) + 1
        phpsess.header("X-A: 1")
        raise ValueError("boom")
        """,
        """<?php session_start(); $_SESSION['boom'] = ($_SESSION['boom'] ?? 0) + 1;
        header("X-A: 1"); throw new Exception("boom");""",
    ),
    "exit": (
        """
        import sys
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["e"] = phpsess.SESSION.get("e", 0) + 1
        print("before", phpsess.SESSION["e"])
        sys.exit(3)
        print("after")
        """,
        """<?php session_start(); $_SESSION['e'] = ($_SESSION['e'] ?? 0) + 1;
        echo "before {$_SESSION['e']}\\n"; exit(3); echo "after\\n";""",
    ),
    "redirect": (
        """
        import phpsess
        phpsess.header("Location: /elsewhere")
        """,
        """<?php header("Location: /elsewhere");""",
    ),
    "quiet": (
        """
        import phpsess
        phpsess.session_start()
        """,
        """<?php session_start();""",
    ),
    "post": (
        """
        import sys
        import phpsess
        print(phpsess.POST.get("a"), phpsess.GET.get("q"), sys.stdin.read())
        """,
        """<?php echo $_POST['a'], " ", $_GET['q'], " ", file_get_contents("php://input"), "\\n";""",
    ),
    # header injection: PHP warns, drops the line, and answers 200 (a trailing CRLF is trimmed)
    "inject": (
        """
        import phpsess
        phpsess.session_start()
        phpsess.header("X-A: a\\r\\nSet-Cookie: evil=1")
        phpsess.header("X-B: b\\nc")
        phpsess.header("X-C: c\\rd")
        phpsess.header("X-D: d\\x00e")
        phpsess.header("X-E: trailing\\r\\n")
        print("body")
        """,
        """<?php session_start(); header("X-A: a\\r\\nSet-Cookie: evil=1"); header("X-B: b\\nc");
        header("X-C: c\\rd"); header("X-D: d\\0e"); header("X-E: trailing\\r\\n"); echo "body\\n";""",
    ),
    "env": (
        """
        import os
        import phpsess
        print(os.environ["REQUEST_METHOD"], os.environ["QUERY_STRING"], os.environ["SCRIPT_FILENAME"].endswith("env.py"))
        """,
        "",
    ),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A document root with every script (Python and PHP), a session dir and an ini file."""
    base = tmp_path_factory.mktemp("cgi")
    root = base / "www"
    root.mkdir()
    sessions = base / "sessions"
    sessions.mkdir()
    php_cgi = require("php-cgi")
    for name, (py, php) in SCRIPTS.items():
        p = root / f"{name}.py"
        p.write_text(f"#!{PY}\n" + textwrap.dedent(py).lstrip())
        p.chmod(0o755)
        if php:
            q = root / f"{name}.php"
            q.write_text(f"#!{php_cgi}\n" + textwrap.dedent(php).strip() + "\n")
            q.chmod(0o755)
    settings = {"session.save_path": str(sessions), "session.gc_probability": "0"}
    (base / "phpsess.ini").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    # php-cgi reads $PHPRC/php.ini; display_errors=0 as in production (fatal error -> 500)
    php_settings = dict(settings, display_errors="0", log_errors="0", html_errors="0")
    (base / "php.ini").write_text("".join(f"{k} = {v}\n" for k, v in php_settings.items()))
    return base


def run_cgi(site: Path, script: str, *, query: str = "", cookie: str = "", body: bytes = b"",
            content_type: str = "") -> subprocess.CompletedProcess[bytes]:
    """Run one script the way a CGI host does: environment variables, body on stdin."""
    path = site / "www" / script
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": "POST" if body else "GET",
        "SCRIPT_FILENAME": str(path),
        "SCRIPT_NAME": f"/{script}",
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REDIRECT_STATUS": "200",  # php-cgi's force_redirect
        "PYTHONPATH": PYTHONPATH,
        "PHPSESS_INI": str(site / "phpsess.ini"),
        "PHPRC": str(site),
        "PHP_INI_SCAN_DIR": "",
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = content_type
    return subprocess.run([str(path)], input=body, env=env, capture_output=True, timeout=60, cwd=str(site / "www"))


def as_phpsess_would_print(php_stdout: bytes) -> bytes:
    """php-cgi's output with X-Powered-By dropped and the Status line phpsess always sends."""
    lines = php_stdout.split(b"\r\n")
    lines = [ln for ln in lines if not ln.startswith(b"X-Powered-By:")]
    if not lines[0].startswith(b"Status:"):
        lines.insert(0, b"Status: 200 OK")
    return b"\r\n".join(lines)


# -- the CGI response, byte for byte against php-cgi ---------------------------------------
@pytest.mark.parametrize("name", ["counter", "sent", "boom", "exit", "redirect", "quiet", "inject"])
def test_cgi_response_bytes_match_php_cgi(site: Path, name: str) -> None:
    cookie = f"PHPSESSID={SID}{name}"
    sess = site / "sessions" / f"sess_{SID}{name}"
    php = run_cgi(site, f"{name}.php", cookie=cookie)
    php_file = sess.read_bytes() if sess.exists() else None
    if sess.exists():
        sess.unlink()
    py = run_cgi(site, f"{name}.py", cookie=cookie)
    assert py.stdout == as_phpsess_would_print(php.stdout), py.stderr.decode()
    # and the session file they leave is the same
    assert (sess.read_bytes() if sess.exists() else None) == php_file


def test_new_session_cookie_and_headers_in_phps_order(site: Path) -> None:
    php = run_cgi(site, "counter.php")
    py = run_cgi(site, "counter.py")

    def shape(out: bytes) -> list[bytes]:
        head = as_phpsess_would_print(out).split(b"\r\n\r\n")[0].split(b"\r\n")
        return [ln.split(b"=")[0] if ln.startswith(b"Set-Cookie") else ln for ln in head]

    assert shape(py.stdout) == shape(php.stdout)
    assert py.stdout.split(b"\r\n")[1].startswith(b"Set-Cookie: PHPSESSID=")
    assert py.stdout.split(b"\r\n")[1].endswith(b"; path=/")


def test_uncaught_exception_is_500_traceback_on_stderr_session_written(site: Path) -> None:
    cookie = f"PHPSESSID={SID}x1"
    for n in (1, 2):
        r = run_cgi(site, "boom.py", cookie=cookie)
        assert r.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
        assert b"ValueError: boom" in r.stderr
    assert (site / "sessions" / f"sess_{SID}x1").read_bytes() == b"boom|i:2;"


def test_sys_exit_mid_script_still_writes_the_session(site: Path) -> None:
    cookie = f"PHPSESSID={SID}x2"
    bodies = [run_cgi(site, "exit.py", cookie=cookie).stdout.split(b"\r\n\r\n", 1)[1] for _ in range(2)]
    assert bodies == [b"before 1\n", b"before 2\n"]


def test_body_is_read_once_and_still_on_stdin(site: Path) -> None:
    r = run_cgi(site, "post.py", query="q=9", body=b"a=1&b=2", content_type="application/x-www-form-urlencoded")
    assert r.stdout.endswith(b"\r\n\r\n1 9 a=1&b=2\n"), r.stderr.decode()


def test_outside_cgi_import_phpsess_does_not_take_over_stdout(site: Path) -> None:
    env = {"PYTHONPATH": PYTHONPATH, "PHPSESS_INI": str(site / "phpsess.ini")}
    r = subprocess.run([PY, "-c", "import phpsess; print('plain')"], env=env, capture_output=True, timeout=60)
    assert r.stdout == b"plain\n", r.stderr.decode()


# -- under a real CGI host: nginx + fcgiwrap -----------------------------------------------
@pytest.fixture(scope="module")
def nginx_cgi(site: Path) -> Iterator[Nginx]:
    sock = str(site / "fcgiwrap.sock")
    body = f"""
        root {site / "www"};
        location ~ \\.(py|php)$ {{
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param PYTHONPATH {PYTHONPATH};
            fastcgi_param PHPSESS_INI {site / "phpsess.ini"};
            fastcgi_param PHPRC {site};
            fastcgi_param PHP_INI_SCAN_DIR "";
            fastcgi_pass unix:{sock};
        }}
    """
    with start_fcgiwrap(sock, children=4):
        with Nginx(site / "nginx", body) as ng:
            yield ng


def get(ng: Nginx, path: str, **kw: object) -> Response:
    return ng.get(path, **kw)


def test_fcgiwrap_status_headers_and_cookie(nginx_cgi: Nginx) -> None:
    r = get(nginx_cgi, "/counter.py")
    assert r.status == 200, nginx_cgi.error_log()
    assert r.body == b"n = 1\n"
    cookie = r.header("Set-Cookie")
    assert cookie is not None and cookie.startswith("PHPSESSID=") and cookie.endswith("; path=/")
    assert r.header("Cache-Control") == "no-store, no-cache, must-revalidate"
    assert r.header("Expires") == "Thu, 19 Nov 1981 08:52:00 GMT"
    assert r.header("Pragma") == "no-cache"
    assert r.header("X-A") == "1"
    assert r.header("Content-Type") == "text/html; charset=UTF-8"
    sid = cookie.split(";")[0]
    r2 = get(nginx_cgi, "/counter.py", cookie=sid)
    assert r2.body == b"n = 2\n" and r2.header("Set-Cookie") is None


def test_fcgiwrap_same_headers_as_php_cgi(nginx_cgi: Nginx) -> None:
    skip = {"date", "server", "x-powered-by", "transfer-encoding", "connection", "set-cookie"}
    py = get(nginx_cgi, "/counter.py")
    php = get(nginx_cgi, "/counter.php")
    assert [(n, v) for n, v in py.headers if n.lower() not in skip] == [
        (n, v) for n, v in php.headers if n.lower() not in skip
    ]
    assert py.status == php.status == 200 and py.body == php.body


def test_fcgiwrap_headers_sent_after_first_byte(nginx_cgi: Nginx) -> None:
    r = get(nginx_cgi, "/sent.py")
    assert (r.body, r.header("X-Before")) == (b"False\nTrue\n", "yes")


def test_fcgiwrap_exception_is_500_and_session_unlocked(nginx_cgi: Nginx, site: Path) -> None:
    cookie = f"PHPSESSID={SID}ng1"
    r = get(nginx_cgi, "/boom.py", cookie=cookie)
    assert r.status == 500 and r.header("X-A") == "1"
    path = site / "sessions" / f"sess_{SID}ng1"
    assert path.read_bytes() == b"boom|i:1;"
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it
    # fcgiwrap -f passes the script's stderr to nginx, as php-fpm passes PHP's error log
    assert "ValueError: boom" in nginx_cgi.error_log()


def test_fcgiwrap_sys_exit_writes_the_session(nginx_cgi: Nginx) -> None:
    cookie = f"PHPSESSID={SID}ng2"
    assert get(nginx_cgi, "/exit.py", cookie=cookie).body == b"before 1\n"
    r = get(nginx_cgi, "/exit.py", cookie=cookie)
    assert (r.status, r.body) == (200, b"before 2\n")


def test_fcgiwrap_redirect_and_empty_body(nginx_cgi: Nginx) -> None:
    r = get(nginx_cgi, "/redirect.py")
    assert (r.status, r.header("Location"), r.body) == (302, "/elsewhere", b"")
    q = get(nginx_cgi, "/quiet.py")
    assert q.status == 200 and q.body == b"" and q.header("Set-Cookie")


def test_fcgiwrap_post_body_and_environment(nginx_cgi: Nginx) -> None:
    r = get(nginx_cgi, "/post.py?q=7", method="POST", body=b"a=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.body == b"x 7 a=x\n"
    assert get(nginx_cgi, "/env.py?z=1").body == b"GET z=1 True\n"


def test_fcgiwrap_session_lock_serializes_requests(nginx_cgi: Nginx, site: Path) -> None:
    """Two CGI processes on one session: the second waits for the first's lock."""
    (site / "www" / "hold.py").write_text(
        f"#!{PY}\nimport time\nimport phpsess\nphpsess.session_start()\n"
        "phpsess.SESSION['h'] = phpsess.SESSION.get('h', 0) + 1\ntime.sleep(0.5)\nprint(phpsess.SESSION['h'])\n"
    )
    (site / "www" / "hold.py").chmod(0o755)
    cookie = f"PHPSESSID={SID}ng3"
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        bodies = sorted(ex.map(lambda _: get(nginx_cgi, "/hold.py", cookie=cookie).body, range(3)))
    assert bodies == [b"1\n", b"2\n", b"3\n"]
    assert time.monotonic() - started >= 1.4



# -- activation rules ----------------------------------------------------------------------
def test_arm_is_a_no_op_outside_cgi_and_inside_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from phpsess.runtime import cgi
    from phpsess.session.context import request_context
    from phpsess.session.request import Request

    monkeypatch.delenv("GATEWAY_INTERFACE", raising=False)
    cgi.arm()
    assert not cgi._armed and cgi.active_request() is None
    monkeypatch.setenv("GATEWAY_INTERFACE", "CGI/1.1")
    with request_context(Request(environ={}), shutdown=False):  # as in a pool worker
        cgi.arm()
    assert not cgi._armed and cgi.active_request() is None


def _run_under_cgi(tmp_path: Path, args: list[str], body: bytes = b"", **env: str) -> subprocess.CompletedProcess[bytes]:
    environ = {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH, "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": "GET", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
        "PHPSESS_INI": "", "PHPSESS_LOCK_REGISTRY": "off", **env,
    }
    return subprocess.run([PY, *args], input=body, capture_output=True, env=environ, cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("module", ["phpsess.wsgi", "phpsess.runtime.wsgi", "phpsess.runtime.server",
                                    "phpsess.runtime.fpm", "phpsess.tools.cli",
                                    "phpsess.django", "phpsess.flask", "phpsess.asgi",
                                    "phpsess.runtime.django", "phpsess.runtime.flask", "phpsess.runtime.asgi"])
def test_importing_another_entry_point_under_cgi_prints_nothing(tmp_path: Path, module: str) -> None:
    proc = _run_under_cgi(tmp_path, ["-c", f"import {module}"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""


def test_the_framework_entry_points_import_their_framework_only_when_used(tmp_path: Path) -> None:
    code = ("import sys, phpsess, phpsess.django, phpsess.flask, phpsess.asgi\n"
            "print(sorted(m for m in ('django', 'flask', 'starlette', 'anyio') if m in sys.modules))\n"
            "phpsess.flask.PHPSessionInterface\n"
            "print('flask' in sys.modules)\n")
    proc = _run_under_cgi(tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"[]\nTrue\n"  # (and under CGI: no CGI response either)


def test_a_module_that_imports_phpsess_is_not_the_cgi_script(tmp_path: Path) -> None:
    (tmp_path / "lib.py").write_text("import phpsess\nimport phpsess.core.codec\n")
    proc = _run_under_cgi(tmp_path, ["-c", "import lib; print('plain output')"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"plain output\n"


def test_a_cgi_script_that_only_imports_phpsess_answers_an_empty_page(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("import phpsess\n")
    proc = _run_under_cgi(tmp_path, ["empty.py"], SCRIPT_FILENAME=str(tmp_path / "empty.py"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Status: 200 OK\r\nContent-type: text/html; charset=UTF-8\r\n\r\n"


def test_a_wsgi_app_under_wsgiref_cgihandler_writes_its_own_response(tmp_path: Path) -> None:
    """phpsess.wsgi inside a CGI script served by wsgiref: one response, wsgiref's."""
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import phpsess
        from phpsess.wsgi import SessionMiddleware
        from wsgiref.handlers import CGIHandler

        def app(environ, start_response):
            phpsess.session_start()
            phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"n={phpsess.SESSION['n']}".encode()]

        CGIHandler().run(SessionMiddleware(app, {"save_path": %r}))
    """ % str(tmp_path)))
    proc = _run_under_cgi(tmp_path, ["app.py"], SCRIPT_FILENAME=str(tmp_path / "app.py"))
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK\r\n") and head.count(b"Status:") == 1, proc.stdout
    assert b"Set-Cookie: PHPSESSID=" in head
    assert body == b"n=1"


def test_a_content_length_past_the_body_reads_what_there_is(tmp_path: Path) -> None:
    """CONTENT_LENGTH of 10**12 or past 2**63 with a 3-byte body: the page runs (as php-cgi)."""
    (tmp_path / "post.py").write_text("import phpsess\nprint(len(phpsess.POST), phpsess.POST.get('a'))\n")
    for length in (str(10**12), str(2**63), str(2**64 + 5), "9" * 5000):
        proc = _run_under_cgi(tmp_path, ["post.py"], b"a=1", SCRIPT_FILENAME=str(tmp_path / "post.py"),
                              REQUEST_METHOD="POST", CONTENT_TYPE="application/x-www-form-urlencoded",
                              CONTENT_LENGTH=length)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.endswith(b"\r\n\r\n1 1\n"), proc.stdout


def test_read_body_reads_content_length_bytes() -> None:
    import io

    from phpsess.runtime.cgi import read_body

    assert read_body(io.BytesIO(b"abcdef"), "4") == b"abcd"
    assert read_body(io.BytesIO(b"abc"), "10") == b"abc"
    assert read_body(io.BytesIO(b"abc"), None) == b""
    assert read_body(io.BytesIO(b"abc"), "x") == b""
