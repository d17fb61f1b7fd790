"""What a ported page relies on, in the pool's request path (phpsess.runtime.sapi.handle_request):
exit/die, includes per request, output buffering at the end of the request, $_FILES' temporary
files, ini settings outside session.*. (Against php-cgi: tests/oracle/test_porting_oracle.py.)"""

from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from phpsess.core.engine import EngineConfig, parse_error_level
from phpsess.runtime.diagnostics import uncaught_text
from phpsess.runtime.sapi import handle_request, reset_environ
from phpsess.session.obuffer import OutputBuffers

__all__: list[str] = []


class Sink:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def send(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status, self.headers = status, headers

    def write(self, data: bytes) -> None:
        self.body += data


@pytest.fixture
def root(tmp_path: Path) -> Any:
    d = tmp_path / "www"
    d.mkdir()
    yield d
    reset_environ()


def write(root: Path, name: str, code: str) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(code))
    return p


def serve(root: Path, name: str, env: dict[str, str] | None = None, body: bytes = b"", **kw: Any) -> Sink:
    sink = Sink()
    environ = {"SCRIPT_FILENAME": str(root / name), "REQUEST_METHOD": "GET", "SCRIPT_NAME": f"/{name}",
               **(env or {})}
    handle_request(environ, body, str(root), sink.send, sink.write, **kw)
    return sink


@pytest.mark.parametrize(("code", "body"), [
    ('import sys\nprint("a", end="")\nsys.exit("Access denied")\nprint("never")', b"aAccess denied"),
    ('import phpsess\nphpsess.die("bye")', b"bye"),
    ('import sys\nsys.exit(3)', b""),
    ('raise SystemExit("raised")', b"raised"),
])
def test_exit_with_a_string_prints_it_and_ends_the_script(root: Path, code: str, body: bytes) -> None:
    write(root, "x.py", code)
    s = serve(root, "x.py")
    assert (s.status, s.body) == (200, body)


def test_redirect_after_output_works_under_output_buffering(root: Path) -> None:
    write(root, "r.py", """
        import phpsess
        print("some output")
        phpsess.header("Location: cart.php")
        phpsess.die()
    """)
    s = serve(root, "r.py")
    assert (s.status, ("Location", "cart.php") in s.headers, s.body) == (302, True, b"some output\n")


def test_buffers_are_flushed_after_shutdown_functions_and_before_the_session_write(root: Path) -> None:
    write(root, "b.py", """
        import phpsess
        phpsess.ob_start(lambda buf, phase: buf.upper())
        phpsess.register_shutdown_function(lambda: phpsess.echo(" from shutdown"))
        phpsess.echo("body")
    """)
    assert serve(root, "b.py").body == b"BODY FROM SHUTDOWN"


def test_include_runs_in_the_callers_globals_at_every_request(root: Path) -> None:
    write(root, "lib/auth.py", "import phpsess\nCOUNT = globals().get('COUNT', 0) + 1\nWHO = __file__\n")
    write(root, "page.py", """
        import phpsess
        phpsess.require_once("lib/auth.py")
        phpsess.require_once("lib/auth.py")
        phpsess.echo(COUNT, " ", WHO.endswith("auth.py"), " ", __file__.endswith("page.py"), " ",
                     len(phpsess.get_included_files()))
    """)
    for _ in range(3):
        assert serve(root, "page.py").body == b"1 1 1 2"


def test_require_of_a_missing_file_is_a_fatal_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, "m.py", "import phpsess\nphpsess.echo('a')\nphpsess.require('gone.py')\nphpsess.echo('b')\n")
    with pytest.warns(Warning, match=r"require\(gone.py\): Failed to open stream"):
        s = serve(root, "m.py")
    assert (s.status, s.body) == (500, b"a")
    assert "PHP Fatal error:  Uncaught Error: Failed opening required 'gone.py'" in capsys.readouterr().err


UPLOAD = (b'--B\r\nContent-Disposition: form-data; name="up"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n'
          b'hello\r\n--B\r\nContent-Disposition: form-data; name="keep"; filename="b.txt"\r\n\r\nkept\r\n--B--\r\n')


def test_upload_temporary_files_are_deleted_unless_moved(root: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "uploads"
    tmp.mkdir()
    write(root, "u.py", f"""
        import phpsess
        f = phpsess.FILES
        ok = phpsess.move_uploaded_file(f["keep"]["tmp_name"], {str(tmp_path / 'kept.txt')!r})
        phpsess.echo(f["up"]["error"], f["up"]["size"], phpsess.is_uploaded_file(f["up"]["tmp_name"]), ok,
                     phpsess.move_uploaded_file("/etc/passwd", "/tmp/x"))
    """)
    env = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "multipart/form-data; boundary=B"}
    s = serve(root, "u.py", env, UPLOAD, engine=EngineConfig({"upload_tmp_dir": str(tmp)}))
    assert s.body == b"0511"  # false echoes as ""
    assert os.listdir(tmp) == []
    assert (tmp_path / "kept.txt").read_text() == "kept"


def test_request_merges_get_and_post_per_request_order(root: Path) -> None:
    write(root, "q.py", "import phpsess\nphpsess.echo(sorted(phpsess.REQUEST.items()))\n")
    env = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded",
           "QUERY_STRING": "a=1&b=2", "HTTP_COOKIE": "c=3"}
    assert serve(root, "q.py", env, b"a=P").body == b"[('a', 'P'), ('b', '2')]"
    assert serve(root, "q.py", env, b"a=P", engine=EngineConfig({"request_order": "PGC"})).body == \
        b"[('a', '1'), ('b', '2'), ('c', '3')]"


def test_server_has_php_self_and_request_time(root: Path) -> None:
    write(root, "s.py", "import phpsess\nS = phpsess.SERVER\nphpsess.echo(S['PHP_SELF'], ' ', "
                        "type(S['REQUEST_TIME']).__name__, ' ', type(S['REQUEST_TIME_FLOAT']).__name__)\n")
    assert serve(root, "s.py", {"PATH_INFO": "/more"}).body == b"/s.py/more int float"


def test_warnings_are_not_deduplicated(root: Path) -> None:
    write(root, "w.py", "import phpsess\nfor i in range(3):\n    phpsess.session_regenerate_id()\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        serve(root, "w.py")
    assert len([w for w in rec if "regenerated" in str(w.message)]) == 3


def test_error_reporting_expressions_as_php_ini_writes_them() -> None:
    assert parse_error_level("E_ALL & ~E_DEPRECATED & ~E_STRICT") == 22527
    assert parse_error_level("E_ALL & ~(E_NOTICE | E_WARNING)") == 32757
    assert parse_error_level("-1") == -1
    assert parse_error_level("") == 0


def test_output_buffers_follow_phps_phases_and_chunks() -> None:
    out: list[bytes] = []
    ob = OutputBuffers(out.append)
    phases: list[int] = []
    ob.start(lambda b, p: phases.append(p) or f"<{b}>", 4)
    ob.write(b"ab")
    ob.write(b"cdef")  # 6 >= 4: through the handler
    ob.write(b"g")
    ob.end_all()
    assert (out, phases) == ([b"<abcdef>", b"<g>"], [1, 8])


def test_uncaught_text_is_phps() -> None:
    def f() -> None:
        raise KeyError("k")

    try:
        f()
    except KeyError as exc:
        text, where, line = uncaught_text(exc)
    assert text.startswith(f"Uncaught KeyError: 'k' in {__file__}:{line}\nStack trace:\n#0 {__file__}(")
    assert text.endswith("): f()\n#1 {main}\n  thrown") and where == __file__


def test_session_written_before_start_is_discarded_as_php_and_logged(
        root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # PHP: $_SESSION['a'] = 1; session_start(); var_dump($_SESSION) -> array(0) {} [obs php-cgi]
    (tmp_path / "s").mkdir(mode=0o700)
    write(root, "early.py", f"""
        import phpsess
        phpsess.SESSION["cart"] = [1]
        phpsess.session_start({{"save_path": {str(tmp_path / 's')!r}}})
        phpsess.echo(len(phpsess.SESSION))
    """)
    assert serve(root, "early.py").body == b"0"
    assert "SESSION was written before session_start() (keys 'cart')" in caplog.text


def test_error_log_file_gets_phps_timestamped_lines(tmp_path: Path) -> None:
    from phpsess.runtime.diagnostics import report
    from phpsess.session.request import Request

    log = tmp_path / "php_errors.log"
    req = Request(environ={"REQUEST_METHOD": "GET", "REQUEST_URI": "/x.py"}, clock=lambda: 0.0,
                  engine=EngineConfig({"error_log": str(log), "error_reporting": "E_ALL & ~E_NOTICE"}))
    report(req, 2, "something(): failed", "/srv/x.py", 7)
    report(req, 8, "a notice, not reported", "/srv/x.py", 8)
    assert log.read_text() == "[01-Jan-1970 00:00:00 UTC] PHP Warning:  something(): failed in /srv/x.py on line 7\n"
    req.log_context = True  # the pools: the request and the session too
    report(req, 2, "again", "/srv/x.py", 9)
    assert log.read_text().splitlines()[1] == (
        '[01-Jan-1970 00:00:00 UTC] PHP Warning:  again in /srv/x.py on line 9 (request "GET /x.py")')
