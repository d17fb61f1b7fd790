"""``phpsess fpm`` (phpsess.runtime.fpm) behind a real nginx with the shipped conf/nginx.conf:
worker processes, session locks across workers, crashes, signals, 404/500.  Starts nginx
and pools of real processes; every fixture stops what it starts."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from phpsess.tools.cli import build_parser
from phpsess.runtime.fpm import parse_listen
from tests.integration.nginx import (
    PYTHONPATH,
    Nginx,
    Response,
    fcgi_request,
    shipped_conf,
    start_fpm,
    stop_process,
    wait_for,
    wait_for_socket,
)

pytestmark = pytest.mark.slow

WORKERS = 16

SCRIPTS = {
    # 500 ms of work on the session: hold (PHP's default), close, read_and_close
    "slow.py": """
        import json, os, time
        import phpsess
        from phpsess import GET, SESSION
        started = time.time()
        mode = GET.get("mode", "hold")
        if mode == "read_and_close":
            phpsess.session_start({"read_and_close": True})
        else:
            phpsess.session_start()
        locked = time.time()
        if mode != "read_and_close":
            SESSION["n"] = SESSION.get("n", 0) + 1
        if mode == "close":
            phpsess.session_write_close()
        time.sleep(float(GET.get("s", "0.5")))
        phpsess.header("Content-Type: application/json")
        print(json.dumps({"pid": os.getpid(), "start": started, "locked": locked, "end": time.time(),
                          "n": SESSION.get("n", 0)}))
    """,
    "counter.py": """
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
        print(phpsess.SESSION["n"])
    """,
    "boom.py": """
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["boom"] = phpsess.SESSION.get("boom", 0) + 1
        raise RuntimeError("boom")
    """,
    # writes its pid (after taking the session lock), then sleeps
    "pidfile.py": """
        import os, time
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["started"] = True
        with open(phpsess.GET["f"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(phpsess.GET.get("s", "30")))
        print("done")
    """,
    "pid.py": """
        import os
        print(os.getpid())
    """,
    "cgiview.py": """
        import os, sys
        import phpsess
        print(json.dumps({
            "query": os.environ.get("QUERY_STRING"), "method": os.environ.get("REQUEST_METHOD"),
            "stdin": sys.stdin.read(), "post": dict(phpsess.POST), "get": dict(phpsess.GET),
            "cwd": os.getcwd(), "argv": sys.argv, "file": __file__, "name": __name__,
            "server_script": phpsess.SERVER.get("SCRIPT_FILENAME"),
        }))
    """.replace("import os, sys", "import json, os, sys"),
    # leaves every kind of state behind; leakcheck.py looks for it
    "leakset.py": """
        import os, sys
        import phpsess
        phpsess.session_start()
        phpsess.SESSION["mine"] = "secret"
        phpsess.header("X-Leak: yes")
        phpsess.http_response_code(404)
        os.environ["LEAKED_ENV"] = "1"
        sys.argv.append("leaked")
        leaked_global = 1
        print("set")
    """,
    "leakcheck.py": """
        import json, os, sys
        import phpsess
        phpsess.session_start()
        print(json.dumps({
            "global": "leaked_global" in globals(), "env": os.environ.get("LEAKED_ENV"),
            "cookie": os.environ.get("HTTP_COOKIE"), "argv": sys.argv[1:], "session": dict(phpsess.SESSION),
            "headers": phpsess.headers_list(), "code": phpsess.http_response_code(), "pid": os.getpid(),
        }))
    """,
    "version.py": """
        print("v1")
    """,
}


def sid(tag: str) -> str:
    """A valid session id (32 hex digits), new at each call; ``tag`` only helps reading logs."""
    return (tag.encode().hex()[:8] + os.urandom(16).hex())[:32]


def make_site(base: Path) -> tuple[Path, Path, Path]:
    root = base / "www"
    root.mkdir()
    sessions = base / "sessions"
    sessions.mkdir()
    for name, code in SCRIPTS.items():
        (root / name).write_text(textwrap.dedent(code).lstrip())
    ini = base / "phpsess.ini"
    ini.write_text(f"session.save_path = {sessions}\nsession.gc_probability = 0\n")
    return root, sessions, ini


class Site:
    """The module's pool + nginx, and helpers."""

    def __init__(self, base: Path, root: Path, sessions: Path, master: subprocess.Popen[bytes], ng: Nginx,
                 socket_path: str) -> None:
        self.base, self.root, self.sessions, self.master, self.nginx = base, root, sessions, master, ng
        self.socket = socket_path

    def get(self, path: str, cookie_sid: str | None = None, **kw: Any) -> Response:
        if cookie_sid:
            kw["cookie"] = f"PHPSESSID={cookie_sid}"
        return self.nginx.get(path, **kw)

    def workers(self) -> list[psutil.Process]:
        children: list[psutil.Process] = psutil.Process(self.master.pid).children()
        return children

    def parallel(self, paths: list[tuple[str, str]]) -> tuple[float, list[Response]]:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(paths)) as ex:
            results = list(ex.map(lambda p: self.get(p[0], p[1]), paths))
        return time.monotonic() - started, results


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("fpm")
    root, sessions, ini = make_site(base)
    sock = str(base / "fpm.sock")
    with start_fpm(root, sock, workers=WORKERS, ini=str(ini)) as master:
        with shipped_conf(base / "nginx", root=root, fpm_socket=sock) as ng:
            s = Site(base, root, sessions, master, ng, sock)
            wait_for(lambda: len(s.workers()) == WORKERS, 10, "the workers")
            yield s


# -- the pool ----------------------------------------------------------------------------
def test_pool_really_runs_16_worker_processes(site: Site) -> None:
    workers = site.workers()
    assert len(workers) == WORKERS
    assert all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    pids = {int(site.get("/pid.py").text) for _ in range(40)}
    assert pids <= {w.pid for w in workers}


def test_counter_through_nginx(site: Site) -> None:
    r = site.get("/counter.py")
    assert (r.status, r.body) == (200, b"1\n")
    cookie = r.header("Set-Cookie")
    assert cookie and cookie.startswith("PHPSESSID=") and cookie.endswith("; path=/")
    assert r.header("Cache-Control") == "no-store, no-cache, must-revalidate"
    assert r.header("Content-Type") == "text/html; charset=UTF-8"
    again = site.nginx.get("/counter.py", cookie=cookie.split(";")[0])
    assert again.body == b"2\n" and again.header("Set-Cookie") is None


# -- session locks across workers ------------------------------------------------------------
def test_held_session_makes_ten_requests_wait_in_turn(site: Site) -> None:
    s = sid("held")
    elapsed, rs = site.parallel([("/slow.py?mode=hold", s)] * 10)
    assert all(r.status == 200 for r in rs), rs
    data = [json.loads(r.body) for r in rs]
    assert elapsed >= 4.5, elapsed
    assert len({d["pid"] for d in data}) > 1  # really different worker processes
    assert sorted(d["n"] for d in data) == list(range(1, 11))
    locked = sorted(d["locked"] for d in data)
    assert all(b - a >= 0.45 for a, b in zip(locked, locked[1:]))  # each waited for the lock
    assert site.get("/counter.py", s).body == b"11\n"


def test_sigusr1_logs_the_lock_wait_summary_of_the_whole_pool(site: Site) -> None:
    s = sid("waits")
    site.parallel([("/slow.py?mode=hold&s=0.2", s)] * 4)  # the last one waits ~0.6 s
    log_path = Path(site.socket).with_suffix(".log")
    before = log_path.read_text().count("lock waits:")
    os.kill(site.master.pid, signal.SIGUSR1)
    wait_for(lambda: log_path.read_text().count("lock waits:") > before, 5, "the summary")
    line = [x for x in log_path.read_text().splitlines() if "lock waits:" in x][-1]
    count = int(line.split("lock waits: ")[1].split(" requests")[0])
    assert count >= 4, line
    assert "p50 <=" in line and "p99 <=" in line
    peak = line.split("max ")[1].split(",")[0]
    assert peak.endswith(" ms") and float(peak[:-3]) >= 400 or peak.endswith(" s"), line


@pytest.mark.parametrize("mode", ["close", "read_and_close"])
def test_closed_session_lets_ten_requests_run_together(site: Site, mode: str) -> None:
    s = sid(mode)
    elapsed, rs = site.parallel([(f"/slow.py?mode={mode}", s)] * 10)
    assert all(r.status == 200 for r in rs), rs
    assert elapsed < 2.0, elapsed
    assert len({json.loads(r.body)["pid"] for r in rs}) == 10
    expected = b"11\n" if mode == "close" else b"1\n"  # close: all 10 wrote their +1
    assert site.get("/counter.py", s).body == expected


def test_different_sessions_never_wait_for_each_other(site: Site) -> None:
    elapsed, rs = site.parallel([("/slow.py?mode=hold", sid(f"diff{i}")) for i in range(10)])
    assert all(r.status == 200 and json.loads(r.body)["n"] == 1 for r in rs)
    assert elapsed < 2.0, elapsed


# -- failures --------------------------------------------------------------------------------
def test_exception_is_500_and_the_session_is_written_and_unlocked(site: Site) -> None:
    s = sid("boom")
    for n in (1, 2):
        started = time.monotonic()
        r = site.get("/boom.py", s)
        assert r.status == 500 and r.body == b""
        assert time.monotonic() - started < 2.0
        assert (site.sessions / f"sess_{s}").read_bytes() == f"boom|i:{n};".encode()
    with open(site.sessions / f"sess_{s}", "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    log = Path(site.socket).with_suffix(".log").read_text()
    assert "RuntimeError: boom" in log


def test_script_outside_root_is_404_and_never_runs(site: Site) -> None:
    marker = site.base / "outside-ran"
    outside = site.base / "outside.py"
    outside.write_text(f"open({str(marker)!r}, 'w').close()\nprint('ran')\n")
    link = site.root / "escape.py"
    if not link.exists():
        link.symlink_to(outside)
    r = site.get("/escape.py")
    assert r.status == 404
    # straight to the pool, without nginx: SCRIPT_FILENAME outside --root
    for name in (str(outside), str(site.root / ".." / "outside.py"), str(link), "/etc/passwd"):
        out, _ = fcgi_request(site.socket, {"SCRIPT_FILENAME": name, "REQUEST_METHOD": "GET"})
        assert out.startswith(b"Status: 404 Not Found\r\n") and out.endswith(b"File not found.\n")
    assert not marker.exists()


def test_missing_script_is_nginx_404(site: Site) -> None:
    assert site.get("/nope.py").status == 404


def test_kill_9_of_a_busy_worker_releases_its_lock_and_is_replaced(site: Site) -> None:
    victim_sid, other_sid = sid("victim"), sid("other")
    pidfile = site.base / "victim.pid"
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        victim = ex.submit(site.get, f"/pidfile.py?f={pidfile}&s=30", victim_sid)
        other = ex.submit(site.get, "/slow.py?mode=hold&s=1.5", other_sid)
        wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", 10, "the victim's pid file")
        pid = int(pidfile.read_text())
        before = {w.pid for w in site.workers()}
        assert pid in before
        os.kill(pid, signal.SIGKILL)
        assert victim.result(30).status == 502  # nginx: upstream closed the connection
        r = other.result(30)
        assert r.status == 200 and json.loads(r.body)["n"] == 1  # the other session undisturbed
    started = time.monotonic()
    r = site.get("/counter.py", victim_sid)  # the lock died with the worker
    assert r.status == 200 and time.monotonic() - started < 2.0
    assert r.body == b"1\n"  # the killed request wrote nothing (as a killed php-fpm child)
    wait_for(lambda: len(site.workers()) == WORKERS and pid not in {w.pid for w in site.workers()}, 10,
             "a replacement worker")


def test_idle_worker_killed_is_replaced(site: Site) -> None:
    victim = site.workers()[0].pid
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(site.workers()) == WORKERS and victim not in {w.pid for w in site.workers()}, 10,
             "a replacement worker")
    assert site.get("/counter.py").status == 200


# -- one request at a time, nothing left behind ------------------------------------------------
def test_script_reads_its_request_the_cgi_way_and_through_superglobals(site: Site) -> None:
    r = site.nginx.get("/cgiview.py?a=1", method="POST", body=b"b=2",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    d = json.loads(r.body)
    script = str(site.root / "cgiview.py")
    assert d == {
        "query": "a=1", "method": "POST", "stdin": "b=2", "post": {"b": "2"}, "get": {"a": "1"},
        "cwd": str(site.root), "argv": [script], "file": script, "name": "__main__", "server_script": script,
    }


def test_changed_script_is_recompiled(site: Site) -> None:
    p = site.root / "version.py"
    assert {site.get("/version.py").body for _ in range(WORKERS * 2)} == {b"v1\n"}
    p.write_text("print('v2')\n")
    assert {site.get("/version.py").body for _ in range(WORKERS * 2)} == {b"v2\n"}


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[tuple[Path, str, Path]]:
    root, sessions, ini = make_site(tmp_path)
    sock = str(tmp_path / "one.sock")
    with start_fpm(root, sock, workers=1, ini=str(ini)) as master:
        yield root, sock, sessions
    assert master.poll() is not None


def _fcgi(sock: str, root: Path, script: str, **params: str) -> tuple[int, dict[str, str], bytes]:
    env = {"SCRIPT_FILENAME": str(root / script), "REQUEST_METHOD": "GET", "GATEWAY_INTERFACE": "CGI/1.1"}
    env.update(params)
    out, _ = fcgi_request(sock, env)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        n, _, v = ln.partition(": ")
        headers[n] = v
    return status, headers, body


def test_nothing_of_one_request_survives_into_the_next(one_worker: tuple[Path, str, Path]) -> None:
    root, sock, _ = one_worker
    s = sid("leak")
    status, headers, body = _fcgi(sock, root, "leakset.py", HTTP_COOKIE=f"PHPSESSID={s}")
    assert (status, headers.get("X-Leak"), body) == (404, "yes", b"set\n")
    status, headers, body = _fcgi(sock, root, "leakcheck.py")
    d = json.loads(body)
    assert status == 200 and "X-Leak" not in headers
    assert d["global"] is False and d["env"] is None and d["cookie"] is None and d["argv"] == []
    assert d["session"] == {} and d["code"] == 200 and all("Leak" not in h for h in d["headers"])


def test_max_requests_recycles_workers(tmp_path: Path) -> None:
    root, _, ini = make_site(tmp_path)
    sock = str(tmp_path / "mr.sock")
    with start_fpm(root, sock, workers=2, max_requests=3, ini=str(ini)) as master:
        pids = [int(_fcgi(sock, root, "pid.py")[2]) for _ in range(12)]
        assert len(set(pids)) >= 4
        assert max(pids.count(p) for p in set(pids)) <= 3
        wait_for(lambda: len(psutil.Process(master.pid).children()) == 2, 10, "two workers")


# -- signals ---------------------------------------------------------------------------------
def _pool_with_busy_worker(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[psutil.Process], str, Any]:
    root, _, ini = make_site(tmp_path)
    sock = str(tmp_path / "sig.sock")
    ctx = start_fpm(root, sock, workers=4, ini=str(ini))
    master = ctx.__enter__()
    wait_for(lambda: len(psutil.Process(master.pid).children()) == 4, 10, "the workers")
    workers = psutil.Process(master.pid).children()
    return master, workers, sock, ctx


def test_sigterm_stops_the_master_and_every_worker(tmp_path: Path) -> None:
    master, workers, sock, ctx = _pool_with_busy_worker(tmp_path)
    root = tmp_path / "www"
    pidfile = tmp_path / "busy.pid"
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        busy = ex.submit(fcgi_request, sock, {"SCRIPT_FILENAME": str(root / "pidfile.py"),
                                              "QUERY_STRING": f"f={pidfile}&s=60", "REQUEST_METHOD": "GET"})
        wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", 10, "a busy worker")
        started = time.monotonic()
        master.send_signal(signal.SIGTERM)
        master.wait(10)
        assert time.monotonic() - started < 5.0
        with pytest.raises(ConnectionError):
            busy.result(10)
    wait_for(lambda: not any(_alive(w) for w in workers), 5, "the workers to exit")
    assert not os.path.exists(sock)
    ctx.__exit__(None, None, None)


def test_master_killed_with_sigkill_leaves_no_orphans(tmp_path: Path) -> None:
    master, workers, _sock, ctx = _pool_with_busy_worker(tmp_path)
    master.kill()
    master.wait(10)
    wait_for(lambda: not any(_alive(w) for w in workers), 5, "the workers to die with their master")
    ctx.__exit__(None, None, None)


def test_sigquit_lets_running_requests_finish(tmp_path: Path) -> None:
    master, workers, sock, ctx = _pool_with_busy_worker(tmp_path)
    root = tmp_path / "www"
    pidfile = tmp_path / "q.pid"
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        busy = ex.submit(fcgi_request, sock, {"SCRIPT_FILENAME": str(root / "pidfile.py"),
                                              "QUERY_STRING": f"f={pidfile}&s=1", "REQUEST_METHOD": "GET"})
        wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", 10, "a busy worker")
        master.send_signal(signal.SIGQUIT)
        out, _ = busy.result(10)
        assert out.endswith(b"\r\n\r\ndone\n")
    master.wait(10)
    wait_for(lambda: not any(_alive(w) for w in workers), 5, "the workers to exit")
    ctx.__exit__(None, None, None)


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- the command line ------------------------------------------------------------------------
def test_parse_listen() -> None:
    assert parse_listen("/run/phpsess/fpm.sock") == "/run/phpsess/fpm.sock"
    assert parse_listen("unix:/tmp/x.sock") == "/tmp/x.sock"
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen("9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_listen("localhost")


def test_fpm_arguments() -> None:
    a = build_parser().parse_args(
        ["fpm", "--listen", "/tmp/s.sock", "--root", "/srv", "--workers", "16", "--max-requests", "500",
         "--ini", "x.ini"])
    assert (a.command, a.listen, a.root, a.workers, a.max_requests, a.ini) == (
        "fpm", "/tmp/s.sock", "/srv", 16, 500, "x.ini")
    b = build_parser().parse_args(["serve", "--root", "cgi-bin"])
    assert (b.port, b.host, b.workers, b.ini) == (8080, "127.0.0.1", 16, None)


def test_fpm_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["fpm", "--listen", "x", "--root", "/", "--workers", "0"],
                 ["fpm", "--listen", "x", "--max-execution-time", "soon"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(args)
    capsys.readouterr()


def test_fpm_without_listen_or_root_says_which_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    from phpsess.tools.cli import main

    assert main(["fpm", "--root", "/srv"]) == 78  # EX_CONFIG, as php-fpm
    assert "no listen address: give --listen ADDR" in caplog.text
    assert main(["fpm", "--listen", "/tmp/x.sock"]) == 78
    assert "no document root: give --root DIR" in caplog.text


def test_python_m_phpsess_help() -> None:
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    r = subprocess.run([sys.executable, "-m", "phpsess", "--help"], capture_output=True, env=env, timeout=60)
    assert r.returncode == 0
    for cmd in (b"fpm", b"serve", b"show", b"gc", b"locks", b"destroy"):
        assert cmd in r.stdout


def test_tool_commands_are_dispatched(tmp_path: Path) -> None:
    (tmp_path / "sess_abc123").write_bytes(b"n|i:3;")
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    env.pop("PHPSESS_INI", None)
    run = [sys.executable, "-m", "phpsess"]
    r = subprocess.run(run + ["show", "abc123", "--json", "--save-path", str(tmp_path)],
                       capture_output=True, env=env, timeout=60)
    assert (r.returncode, json.loads(r.stdout)) == (0, {"n": 3}), r.stderr
    r = subprocess.run(run + ["destroy", "abc123", "--save-path", str(tmp_path)], capture_output=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and not (tmp_path / "sess_abc123").exists(), r.stderr


def test_second_pool_on_the_same_socket_refuses_to_start(site: Site) -> None:
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    r = subprocess.run([sys.executable, "-m", "phpsess", "fpm", "--listen", site.socket, "--root", str(site.root)],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 2 and b"another process is listening" in r.stderr
    assert site.get("/pid.py").status == 200  # the running pool is untouched


def test_tcp_listen(tmp_path: Path) -> None:
    from tests.integration.nginx import free_port

    root, _, ini = make_site(tmp_path)
    port = free_port()
    args = [sys.executable, "-m", "phpsess", "fpm", "--listen", f"127.0.0.1:{port}", "--root", str(root),
            "--workers", "2", "--ini", str(ini)]
    proc = subprocess.Popen(args, env=dict(os.environ, PYTHONPATH=PYTHONPATH), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_socket(("127.0.0.1", port), 15)
        out, _ = fcgi_request(("127.0.0.1", port), {"SCRIPT_FILENAME": str(root / "pid.py")})
        assert out.startswith(b"Status: 200 OK\r\n")
    finally:
        stop_process(proc)


def test_stopped_workers_leave_no_lock_registry_behind(tmp_path: Path) -> None:
    # a worker stopped with SIGTERM never runs its own clean-up: the master deletes
    # /dev/shm/phpsess-locks.<pid> when it reaps it (here in a private directory)
    root, _, ini = make_site(tmp_path)
    reg = tmp_path / "registry"
    reg.mkdir()
    sock = str(tmp_path / "reg.sock")
    with start_fpm(root, sock, workers=2, max_requests=2, ini=str(ini), env={"PHPSESS_LOCK_REGISTRY": str(reg)}):
        for i in range(6):  # recycled workers (max_requests) are reaped too
            assert _fcgi(sock, root, "counter.py", HTTP_COOKIE=f"PHPSESSID={sid(f'reg{i}')}")[0] == 200
        assert any(p.name.startswith("phpsess-locks.") for p in reg.iterdir())  # the live workers'
    assert [p.name for p in reg.iterdir()] == []
