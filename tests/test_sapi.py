"""phpsess.runtime.sapi: running a script file per request, as php-fpm runs a .php file."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from phpsess.runtime import sapi as scripts
from phpsess.core.config import SessionConfig
from phpsess.core.engine import EngineConfig
from phpsess.session.request import Request
from phpsess.session.context import request_context
from phpsess.runtime.sapi import (
    DEFAULT_CONTENT_TYPE,
    cgi_head,
    compile_script,
    finalize_headers,
    handle_request,
    process_state,
    reset_environ,
    resolve_script,
    run_script,
)
from tests.gctools import cycle_garbage


class Sink:
    """Collects what handle_request sends, and checks the order (headers first, once)."""

    def __init__(self) -> None:
        self.head: list[tuple[int, list[tuple[str, str]]]] = []
        self.body: list[bytes] = []

    def send_headers(self, status: int, headers: list[tuple[str, str]]) -> None:
        assert not self.head, "headers sent twice"
        assert not self.body, "headers sent after body"
        self.head.append((status, list(headers)))

    def write(self, data: bytes) -> None:
        assert self.head, "body before headers"
        self.body.append(data)

    @property
    def status(self) -> int:
        return self.head[0][0]

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self.head[0][1]

    @property
    def text(self) -> str:
        return b"".join(self.body).decode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "www"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _restore_environ() -> Any:
    yield
    reset_environ()


def write(root: Path, name: str, code: str) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(code))
    return p


def serve(root: Path, name: str, *, environ: dict[str, str] | None = None, body: bytes = b"", **kw: Any) -> Sink:
    env = {"SCRIPT_FILENAME": str(root / name), "REQUEST_METHOD": "GET", "GATEWAY_INTERFACE": "CGI/1.1"}
    env.update(environ or {})
    sink = Sink()
    handle_request(env, body, str(root), sink.send_headers, sink.write, **kw)
    return sink


# -- pure helpers -------------------------------------------------------------------------
def test_finalize_headers_adds_phps_default_content_type_last() -> None:
    assert finalize_headers(200, [("X-A", "1")]) == (200, [("X-A", "1"), DEFAULT_CONTENT_TYPE])
    assert DEFAULT_CONTENT_TYPE == ("Content-type", "text/html; charset=UTF-8")


def test_finalize_headers_keeps_a_content_type_the_script_set() -> None:
    hs = [("content-TYPE", "application/json")]
    assert finalize_headers(200, hs) == (200, hs)


def test_finalize_headers_applies_a_status_header_line() -> None:
    assert finalize_headers(200, [("Status", "404 Nope"), ("X", "y")]) == (
        404, [("X", "y"), DEFAULT_CONTENT_TYPE])


def test_cgi_head_is_status_line_headers_blank_line() -> None:
    assert cgi_head(200, [("Set-Cookie", "PHPSESSID=x; path=/"), DEFAULT_CONTENT_TYPE]) == (
        b"Status: 200 OK\r\nSet-Cookie: PHPSESSID=x; path=/\r\n"
        b"Content-type: text/html; charset=UTF-8\r\n\r\n"
    )
    assert cgi_head(302, [("Location", "/x")]) == b"Status: 302 Found\r\nLocation: /x\r\n\r\n"


def test_cgi_head_unknown_status_has_no_reason_phrase() -> None:
    assert cgi_head(299, []) == b"Status: 299\r\n\r\n"


# -- run_script ---------------------------------------------------------------------------
def test_run_script_runs_as_main_with_file_set(root: Path) -> None:
    p = write(root, "a.py", """
        print(__name__, __file__ == globals()["__file__"], __file__)
    """)
    s = serve(root, "a.py")
    assert s.text == f"__main__ True {p}\n"


def test_each_request_gets_fresh_globals(root: Path) -> None:
    write(root, "g.py", """
        print("leak" in globals())
        leak = 1
    """)
    assert serve(root, "g.py").text == "False\n"
    assert serve(root, "g.py").text == "False\n"


def test_main_module_is_restored_after_the_script(root: Path) -> None:
    write(root, "m.py", """
        import sys
        print(sys.modules["__main__"].__dict__ is globals())
    """)
    before = sys.modules["__main__"]
    assert serve(root, "m.py").text == "True\n"
    assert sys.modules["__main__"] is before


def test_compiled_code_is_cached_and_recompiled_when_the_file_changes(root: Path) -> None:
    p = write(root, "c.py", "print(1)\n")
    code = compile_script(str(p))
    assert compile_script(str(p)) is code
    p.write_text("print(22)\n")
    os.utime(p, ns=(1, 1))
    code2 = compile_script(str(p))
    assert code2 is not code
    assert serve(root, "c.py").text == "22\n"


def test_sys_exit_ends_the_script_normally(root: Path) -> None:
    write(root, "e.py", """
        import sys
        print("before")
        sys.exit(3)
        print("after")
    """)
    s = serve(root, "e.py")
    assert (s.status, s.text) == (200, "before\n")


def test_exception_is_a_500_with_the_traceback_on_stderr(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, "boom.py", """
        from phpsess.session.context import current_request
        current_request().header("X-A: 1")
        raise ValueError("boom")
    """)
    s = serve(root, "boom.py")
    assert s.status == 500
    assert s.headers == [("X-A", "1"), DEFAULT_CONTENT_TYPE]  # PHP keeps earlier header() lines
    err = capsys.readouterr().err
    assert "ValueError: boom" in err
    assert 'boom.py", line 4' in err
    assert "scripts.py" not in err  # only the script's own frames


def test_exception_keeps_a_status_the_script_chose(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # php-cgi -d display_errors=0: http_response_code(404); throw ... -> 404
    write(root, "nf.py", """
        from phpsess.session.context import current_request
        current_request().status = 404
        raise ValueError("boom")
    """)
    assert serve(root, "nf.py").status == 404
    capsys.readouterr()


def test_exception_after_output_keeps_status_and_body(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # php-cgi -d output_buffering=0: echo "partial"; throw ... -> 200, the body kept
    write(root, "late.py", """
        print("partial")
        raise ValueError("late")
    """)
    s = serve(root, "late.py", engine=EngineConfig({"output_buffering": "0"}))
    assert (s.status, s.text) == (200, "partial\n")
    assert "ValueError: late" in capsys.readouterr().err


def test_exception_after_buffered_output_is_a_500_with_the_body(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # php-cgi under Debian's php.ini (output_buffering = 4096): the output is still in the
    # buffer, headers unsent: 500, and the buffer still flushed [obs php-cgi]
    write(root, "late.py", """
        print("partial")
        raise ValueError("late")
    """)
    s = serve(root, "late.py")
    assert (s.status, s.text) == (500, "partial\n")
    err = capsys.readouterr().err
    assert "PHP Fatal error:  Uncaught ValueError: late in " in err
    assert 'late.py", line 3' in err


def test_syntax_error_is_a_500(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, "syn.py", "print(\n")
    assert serve(root, "syn.py").status == 500
    assert "SyntaxError" in capsys.readouterr().err


def test_run_script_makes_the_request_current_without_shutting_it_down(root: Path) -> None:
    p = write(root, "r.py", """
        from phpsess.session.context import current_request
        current_request().header("X-Ran: yes")
    """)
    req = Request(environ={})
    run_script(str(p), req)
    assert req.headers == [("X-Ran", "yes")] and not req.finished


def test_shutdown_functions_run_after_an_exception(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, "sd.py", """
        from phpsess.session.context import current_request
        req = current_request()
        req.register_shutdown_function(print, "shutdown ran")
        raise RuntimeError("x")
    """)
    s = serve(root, "sd.py")
    assert (s.status, s.text) == (500, "shutdown ran\n")
    capsys.readouterr()


def test_failing_shutdown_function_is_reported_not_raised(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, "sdf.py", """
        from phpsess.session.context import current_request
        def bad():
            raise KeyError("in shutdown")
        current_request().register_shutdown_function(bad)
        print("body")
    """)
    s = serve(root, "sdf.py")
    assert s.text == "body\n"
    assert "KeyError" in capsys.readouterr().err


# -- headers before the body --------------------------------------------------------------
def test_headers_are_final_at_the_first_body_byte(root: Path) -> None:
    write(root, "h.py", """
        from phpsess.session.context import current_request
        req = current_request()
        req.header("X-Before: 1")
        print(req.headers_sent)
        print(req.headers_sent)
    """)
    s = serve(root, "h.py", engine=EngineConfig({"output_buffering": "0"}))
    assert s.headers == [("X-Before", "1"), DEFAULT_CONTENT_TYPE]
    assert s.text == "False\nTrue\n"


def test_headers_go_out_at_the_end_when_nothing_is_printed(root: Path) -> None:
    write(root, "q.py", """
        from phpsess.session.context import current_request
        current_request().header("Location: /next")
    """)
    s = serve(root, "q.py")
    assert s.status == 302 and ("Location", "/next") in s.headers and s.body == []


def test_script_content_type_replaces_the_default(root: Path) -> None:
    write(root, "j.py", """
        from phpsess.session.context import current_request
        current_request().header("Content-Type: application/json")
        print("{}")
    """)
    assert serve(root, "j.py").headers == [("Content-Type", "application/json")]


# -- which scripts run --------------------------------------------------------------------
def test_scripts_outside_root_are_404_and_never_run(tmp_path: Path, root: Path) -> None:
    marker = tmp_path / "ran"
    outside = tmp_path / "outside.py"
    outside.write_text(f"open({str(marker)!r}, 'w').close()\n")
    (root / "link.py").symlink_to(outside)
    (root / "sub").mkdir()
    for env in (
        {"SCRIPT_FILENAME": str(outside)},
        {"SCRIPT_FILENAME": str(root / "link.py")},  # symlink escape
        {"SCRIPT_FILENAME": str(root / ".." / "outside.py")},
        {"SCRIPT_FILENAME": str(root / "sub" / ".." / ".." / "outside.py")},
        {"SCRIPT_FILENAME": str(root / "missing.py")},
        {"SCRIPT_FILENAME": str(root / "sub")},
    ):
        sink = Sink()
        handle_request(env, b"", str(root), sink.send_headers, sink.write)
        assert (sink.status, sink.text) == (404, "File not found.\n"), env
    assert not marker.exists()


def test_only_py_files_run(root: Path) -> None:
    write(root, "data.txt", "print('no')\n")
    assert serve(root, "data.txt").status == 404


def test_symlink_inside_root_runs_the_target(root: Path) -> None:
    target = write(root, "lib/real.py", "print(__file__)\n")
    (root / "alias.py").symlink_to(target)
    assert serve(root, "alias.py").text == f"{target}\n"


def test_script_name_is_used_without_script_filename(root: Path) -> None:
    write(root, "sn.py", "print('via SCRIPT_NAME')\n")
    sink = Sink()
    handle_request({"SCRIPT_NAME": "/sn.py"}, b"", str(root), sink.send_headers, sink.write)
    assert sink.text == "via SCRIPT_NAME\n"


def test_resolve_script(root: Path, tmp_path: Path) -> None:
    p = write(root, "x.py", "")
    assert resolve_script({"SCRIPT_FILENAME": str(p)}, str(root)) == str(p)
    assert resolve_script({"SCRIPT_FILENAME": str(p) + "\0.py"}, str(root)) is None
    assert resolve_script({}, str(root)) is None
    # a root given through a symlink works too
    (tmp_path / "rootlink").symlink_to(root)
    assert resolve_script({"SCRIPT_FILENAME": str(tmp_path / "rootlink" / "x.py")}, str(tmp_path / "rootlink")) == str(p)


# -- the CGI view of the request ----------------------------------------------------------
def test_script_reads_the_request_the_cgi_way(root: Path) -> None:
    write(root, "cgi.py", """
        import os, sys
        print(os.environ["QUERY_STRING"], os.environ["REQUEST_METHOD"], sys.stdin.read(), os.getcwd(), sys.argv == [__file__])
    """)
    s = serve(root, "cgi.py", environ={"QUERY_STRING": "a=1", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "4"},
              body=b"x=yz")
    assert s.text == f"a=1 POST x=yz {root} True\n"


def test_nothing_of_one_request_is_left_for_the_next(root: Path) -> None:
    write(root, "set.py", """
        import os, sys
        os.environ["SET_BY_SCRIPT"] = "1"
        os.environ["PATH"] = "/nowhere"
        print(os.environ.get("HTTP_COOKIE"))
    """)
    write(root, "get.py", """
        import os, sys
        print(os.environ.get("SET_BY_SCRIPT"), os.environ.get("HTTP_COOKIE"), os.environ["PATH"] != "/nowhere")
    """)
    stdin, argv = sys.stdin, sys.argv
    assert serve(root, "set.py", environ={"HTTP_COOKIE": "a=b"}).text == "a=b\n"
    assert serve(root, "get.py").text == "None None True\n"
    assert sys.stdin is stdin and sys.argv is argv


def test_reset_environ_restores_the_workers_environment(root: Path) -> None:
    before = dict(os.environ)
    write(root, "n.py", "")
    serve(root, "n.py", environ={"QUERY_STRING": "q", "HOME": "/elsewhere"})
    assert os.environ["HOME"] == "/elsewhere"
    reset_environ()
    assert dict(os.environ) == before


def test_the_workers_own_changes_between_requests_are_its_environment(root: Path) -> None:
    write(root, "w.py", """
        import os
        print(os.environ.get("SET_BY_WORKER"), os.environ.get("QUERY_STRING"))
        os.environ["SET_BY_SCRIPT_W"] = "1"
    """)
    try:
        assert serve(root, "w.py", environ={"QUERY_STRING": "q"}).text == "None q\n"
        os.environ["SET_BY_WORKER"] = "w"  # the worker itself, between two requests
        assert serve(root, "w.py", environ={}).text == "w None\n"
        assert "SET_BY_SCRIPT_W" not in os.environ  # the script's change was undone
        reset_environ()
        assert os.environ["SET_BY_WORKER"] == "w"
        del os.environ["SET_BY_WORKER"]  # and a removal is the worker's too
        assert serve(root, "w.py", environ={}).text == "None None\n"
    finally:
        os.environ.pop("SET_BY_WORKER", None)
        reset_environ()


def test_script_directory_is_importable_and_cwd(root: Path) -> None:
    write(root, "app/helper_mod_for_scripts_test.py", "VALUE = 42\n")
    write(root, "app/page.py", """
        import helper_mod_for_scripts_test as h
        print(h.VALUE)
    """)
    path_before = list(sys.path)
    try:
        assert serve(root, "app/page.py").text == "42\n"
        assert sys.path == path_before
    finally:
        sys.modules.pop("helper_mod_for_scripts_test", None)


def test_process_globals_false_leaves_the_process_alone(root: Path) -> None:
    write(root, "p.py", "import os; print(os.environ.get('QUERY_STRING'))\n")
    os.environ.pop("QUERY_STRING", None)
    assert serve(root, "p.py", environ={"QUERY_STRING": "zz"}, process_globals=False).text == "None\n"


def test_process_state_restores_stdin_and_argv(root: Path) -> None:
    stdin, argv = sys.stdin, sys.argv
    with process_state({"A_VAR_FOR_TEST": "1"}, b"body", str(root / "x.py")):
        assert sys.stdin.read() == "body" and sys.argv == [str(root / "x.py")]
        assert os.environ["A_VAR_FOR_TEST"] == "1"
    assert sys.stdin is stdin and sys.argv is argv


def test_config_argument_is_the_requests_settings(root: Path) -> None:
    write(root, "cfg.py", """
        from phpsess.session.context import current_request
        print(current_request().config.name)
    """)
    assert serve(root, "cfg.py", config=SessionConfig({"name": "MYSESS"})).text == "MYSESS\n"


# -- with sessions (PHP writes the session after a fatal error and after exit) -------------
SESSION_SCRIPT = """
    import sys
    import phpsess
    phpsess.ini_set("session.save_path", {save_path!r})
    phpsess.session_start()
    phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
    {end}
    print(phpsess.SESSION["n"])
"""


@pytest.mark.parametrize("end", ["", "sys.exit(0)", "raise ValueError('fatal')"])
def test_session_is_written_and_unlocked_on_every_exit_path(
    root: Path, tmp_path: Path, end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    save = tmp_path / "sessions"
    save.mkdir()
    write(root, "s.py", SESSION_SCRIPT.format(save_path=str(save), end=end))
    sid = "abcdefghijklmnopqrstuvwxyz012345"
    for n in (1, 2):
        s = serve(root, "s.py", environ={"HTTP_COOKIE": f"PHPSESSID={sid}"})
        assert s.text == ("" if end else f"{n}\n")
        assert s.status == (500 if "raise" in end else 200)
    data = (save / f"sess_{sid}").read_bytes()
    assert data == b"n|i:2;"
    with open(save / f"sess_{sid}", "rb") as f:  # unlocked
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    capsys.readouterr()


def test_fresh_session_per_request(root: Path, tmp_path: Path) -> None:
    save = tmp_path / "sessions"
    save.mkdir()
    write(root, "s.py", SESSION_SCRIPT.format(save_path=str(save), end=""))
    a = serve(root, "s.py")
    b = serve(root, "s.py")
    assert a.text == b.text == "1\n"  # no cookie: each request its own new session
    cookies = [v for s in (a, b) for n, v in s.headers if n == "Set-Cookie"]
    assert len(cookies) == 2 and cookies[0] != cookies[1]


def test_request_context_is_left_after_handle_request(root: Path) -> None:
    from phpsess.session.context import active_request

    write(root, "x.py", "print(1)\n")
    serve(root, "x.py")
    assert active_request() is None
    # and run_script inside an existing context uses that context
    req = Request(environ={})
    with request_context(req, shutdown=False):
        run_script(str(write(root, "y.py", "pass\n")), req)
    assert scripts is not None


def test_shutdown_function_defined_by_the_script_sees_its_globals(root: Path) -> None:
    write(root, "sg.py", """
        from phpsess.session.context import current_request
        GREETING = "bye"
        def on_shutdown():
            print(GREETING, __name__)
        current_request().register_shutdown_function(on_shutdown)
        print("hello")
    """)
    assert serve(root, "sg.py").text == "hello\nbye __main__\n"


CYCLE_FREE_SCRIPTS = {
    "counter": "phpsess.session_start()\nphpsess.SESSION['n'] = phpsess.SESSION.get('n', 0) + 1\nprint('n')\n",
    "regenerate": "phpsess.session_start()\nphpsess.session_regenerate_id(True)\nphpsess.SESSION['u'] = 'x'\n",
    "destroy": "phpsess.session_start()\nphpsess.session_destroy()\n",
    "read_and_close": "phpsess.session_start({'read_and_close': True})\nprint(dict(phpsess.SESSION))\n",
    "raises": "phpsess.session_start()\nraise ValueError('fatal')\n",
    "exits": "import sys\nphpsess.session_start()\nsys.exit(0)\n",
    "no session": "print('hi')\n",
}


class _Monitor:
    """A pool worker's lock monitor (its scoreboard slot's), long-lived as the slot is."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool, float]] = []

    def __call__(self, sid: str, where: str, waiting: bool, waited: float) -> None:
        self.calls.append((sid, where, waiting, waited))


@pytest.mark.parametrize("monitored", [False, True], ids=["plain", "lock monitor"])
@pytest.mark.parametrize("name", sorted(CYCLE_FREE_SCRIPTS))
def test_a_finished_request_leaves_nothing_for_the_cycle_collector(
    root: Path, tmp_path: Path, name: str, monitored: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pool worker pays for every object a request leaves in a reference cycle
    (the collector's passes cost ~15 % of a new-session request when Request and
    Session referred to each other): everything of a request must die by refcount,
    also with the lock monitor a pool worker passes (the handler's wait callback once
    referred back to the session that caches the handler)."""
    save = tmp_path / "sessions"
    save.mkdir()
    code = f"import phpsess\nphpsess.ini_set('session.save_path', {str(save)!r})\n" + CYCLE_FREE_SCRIPTS[name]
    write(root, "c.py", code)
    cookie = {"HTTP_COOKIE": "PHPSESSID=abcdefghijklmnopqrstuvwxyz012345"}
    kw: dict[str, Any] = {"lock_monitor": _Monitor()} if monitored else {}
    serve(root, "c.py", environ=cookie, **kw)  # first run: compile and cache
    _, left = cycle_garbage(lambda: serve(root, "c.py", environ=cookie, **kw))
    capsys.readouterr()
    assert left == []


def test_the_lock_monitor_hears_of_a_wait_and_of_the_lock_taken(root: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """What the scoreboard shows of a request's session lock: told that the read waits
    (where the lock is), then that the lock is held and how long the wait was."""
    import fcntl
    import threading

    save = tmp_path / "sessions"
    save.mkdir()
    sid = "abcdefghijklmnopqrstuvwxyz012345"
    path = save / f"sess_{sid}"
    path.write_bytes(b"n|i:1;")
    write(root, "c.py", f"import phpsess\nphpsess.ini_set('session.save_path', {str(save)!r})\n"
                        "phpsess.session_start()\nprint(phpsess.SESSION['n'])\n")
    monitor = _Monitor()
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        timer = threading.Timer(0.3, fcntl.flock, (held, fcntl.LOCK_UN))
        timer.start()
        try:
            sink = serve(root, "c.py", environ={"HTTP_COOKIE": f"PHPSESSID={sid}"}, lock_monitor=monitor)
        finally:
            timer.join()
    capsys.readouterr()
    assert b"".join(sink.body) == b"1\n"
    waits = [c for c in monitor.calls if c[2]]
    assert waits and waits[0][0] == sid and waits[0][1].endswith(f"sess_{sid}")
    held_calls = [c for c in monitor.calls if not c[2] and c[0] == sid]
    assert held_calls and held_calls[0][3] >= 0.2


@pytest.mark.parametrize("path", ["/a/b", "/b", "/", "a", "a/b/", "//x", "///", "/a//b", "", "a//", "/srv/www/x.py"])
def test_the_scripts_directory_is_os_path_dirname(path: str) -> None:
    assert scripts._dirname(path) == os.path.dirname(path)
